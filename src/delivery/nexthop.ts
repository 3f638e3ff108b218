/**
 * @module delivery/nexthop
 * SUMMARY: the SMTP client's next-hop destination and its hosts. parseNexthop() reads
 * `[host]:port`, `[ip]`, `[ipv6:addr]` (no MX lookup), `host`, `host:port` (MX lookup), or a
 * list of them. resolveNexthop() returns { kind: 'ok', hosts } in the order to try (MX
 * preference, equal ones shuffled, IPv4 before IPv6) or { kind: 'fail', status, reason }
 * (4.x.x defer, 5.x.x bounce; Postfix's texts). Loops: an MX list is cut at our own listener
 * (smtp_truncate_self), other lists skip it; nothing left is 5.4.6.
 * DIAGNOSTICS: nothing is thrown; DNS trouble is a fail result.
 * SEE ALSO: smtp(8) "next-hop destination", smtp_addr.c, RFC 5321 5.1, RFC 7505 (null MX).
 */
import { isIP } from 'node:net';
import type { DnsAnswer, DnsClient } from '../dns/resolver.js';
import { isValidHostname, isValidIPv4, isValidIPv6 } from '../mail/address.js';

/** One destination of a next-hop list. */
export interface Destination {
  /** Host name or bare IP address (brackets and `ipv6:` removed). */
  readonly host: string;
  readonly port: number;
  /** True for `host` and `host:port`: look up MX records first. */
  readonly mx: boolean;
}

export type ParsedNexthop = { readonly ok: true; readonly destinations: readonly Destination[] } | { readonly ok: false; readonly reason: string };

/** A host to connect to: the name for messages ("HOST[IP]") and the address to use. */
export interface SmtpHost {
  readonly hostname: string;
  readonly address: string;
  readonly port: number;
  /** MX preference (0 for a host without MX records). */
  readonly preference: number;
}

export type HostList =
  | { readonly kind: 'ok'; readonly hosts: readonly SmtpHost[] }
  /** status 4.x.x: defer; 5.x.x: bounce. */
  | { readonly kind: 'fail'; readonly status: string; readonly reason: string };

export interface ResolveOptions {
  readonly dns: DnsClient;
  /** True when IP:PORT is one of greygate's own listeners. */
  readonly isSelf: (ip: string, port: number) => boolean;
  /** Postfix smtp_mx_address_limit: addresses kept after sorting (0 = all). */
  readonly addressLimit?: number;
  /** Shuffle MX hosts of equal preference (RFC 5321 5.1); tests turn it off. */
  readonly randomize?: boolean;
}

const SERVICES: Readonly<Record<string, number>> = { smtp: 25, submission: 587, submissions: 465, smtps: 465 };

function parsePort(text: string): number | null {
  if (/^\d{1,5}$/.test(text)) {
    const n = Number(text);
    return n >= 1 && n <= 65535 ? n : null;
  }
  return SERVICES[text.toLowerCase()] ?? null;
}

/** parseOne - one `[host]:port`, `host:port`, `[ipv6:addr]` ... destination */
function parseOne(text: string, defaultPort: number): Destination | string {
  let rest = text;
  let port = defaultPort;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) return `missing "]" in next-hop destination "${text}"`;
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) return `bad next-hop destination "${text}"`;
      const p = parsePort(after.slice(1));
      if (p === null) return `bad port in next-hop destination "${text}"`;
      port = p;
    }
    let host = rest.slice(1, close);
    if (host.slice(0, 5).toLowerCase() === 'ipv6:') host = host.slice(5);
    if (!isValidIPv4(host) && !isValidIPv6(host) && !isValidHostname(stripDot(host))) return `bad host name in next-hop destination "${text}"`;
    return { host: stripDot(host).toLowerCase(), port, mx: false };
  }
  // An unbracketed IPv6 address cannot carry a port: take it whole.
  if (isValidIPv6(rest)) return { host: rest.toLowerCase(), port, mx: false };
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    const p = parsePort(rest.slice(colon + 1));
    if (p === null) return `bad port in next-hop destination "${text}"`;
    port = p;
    rest = rest.slice(0, colon);
  }
  const host = stripDot(rest).toLowerCase();
  // A bare address needs no DNS, as in Postfix, where the MX lookup of a numeric name fails
  // and the host lookup then takes the address as it is.
  if (isValidIPv4(host)) return { host, port, mx: false };
  if (!isValidHostname(host)) return `bad host name in next-hop destination "${text}"`;
  return { host, port, mx: true };
}

function stripDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/** parseNexthop - a next-hop destination (or a list of them) as a routed job carries it */
export function parseNexthop(text: string, defaultPort = 25): ParsedNexthop {
  const items = text.split(/[\s,]+/).filter((s) => s !== '');
  if (items.length === 0) return { ok: false, reason: 'empty next-hop destination' };
  const destinations: Destination[] = [];
  for (const item of items) {
    const d = parseOne(item, defaultPort);
    if (typeof d === 'string') return { ok: false, reason: d };
    destinations.push(d);
  }
  return { ok: true, destinations };
}

/* ---- DNS ---- */

interface LookupFailure {
  readonly status: string;
  readonly reason: string;
}

/** Postfix dns_strerror() words for a failed query, and the soft/hard status that goes with it. */
function dnsFailure(name: string, type: string, answer: Exclude<DnsAnswer<unknown>, { status: 'ok' }>): LookupFailure {
  // 'fail' (REFUSED, FORMERR...) defers rather than bounces as Postfix's DNS_FAIL would: it
  // nearly always means our own resolver is misconfigured, and a bounce cannot be undone.
  if (answer.status === 'notfound') {
    const words = answer.reason === 'ENODATA' ? 'Host found but no data record of requested type' : 'Host not found';
    return { status: '5.4.4', reason: `Host or domain name not found. Name service error for name=${name} type=${type}: ${words}` };
  }
  return { status: '4.4.3', reason: `Host or domain name not found. Name service error for name=${name} type=${type}: Host not found, try again` };
}

/** A soft failure dominates past and future hard ones (smtp_addr_one's "XXX" note). */
function worse(a: LookupFailure | null, b: LookupFailure): LookupFailure {
  if (a === null) return b;
  if (a.status.startsWith('4') && !b.status.startsWith('4')) return a;
  return b;
}

/** hostAddresses - the A and AAAA records of NAME, IPv4 first; or why there are none */
async function hostAddresses(dns: DnsClient, name: string): Promise<{ addresses: string[] } | { failure: LookupFailure }> {
  if (isIP(name)) return { addresses: [name] };
  const [a, aaaa] = await Promise.all([dns.a(name), dns.aaaa(name)]);
  const addresses = [...(a.status === 'ok' ? a.records : []), ...(aaaa.status === 'ok' ? aaaa.records : [])];
  if (addresses.length > 0) return { addresses };
  // Both failed: report the more telling one, and the AAAA query when they failed alike,
  // as dns_lookup_rl() reports the last of equal results.
  const fa = dnsFailure(name, 'A', a as Exclude<typeof a, { status: 'ok' }>);
  const f6 = dnsFailure(name, 'AAAA', aaaa as Exclude<typeof aaaa, { status: 'ok' }>);
  return { failure: fa.status.startsWith('4') && !f6.status.startsWith('4') ? fa : f6 };
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** mxHosts - MX lookup with RFC 5321 5.1 implicit MX and RFC 7505 null MX */
async function mxHosts(d: Destination, opts: ResolveOptions): Promise<HostList> {
  const mx = await opts.dns.mx(d.host);
  if (mx.status === 'notfound') return plainHosts(d, opts);
  if (mx.status !== 'ok') {
    const f = dnsFailure(d.host, 'MX', mx);
    return { kind: 'fail', ...f };
  }
  if (mx.records.some((r) => r.exchange === '' || r.exchange === '.')) {
    return { kind: 'fail', status: '5.1.10', reason: `Domain ${d.host} does not accept mail (nullMX)` };
  }
  if (mx.records.length === 0) return plainHosts(d, opts);
  const byPreference = new Map<number, string[]>();
  for (const r of mx.records) {
    const names = byPreference.get(r.priority) ?? [];
    const name = r.exchange.toLowerCase();
    if (!names.includes(name)) names.push(name);
    byPreference.set(r.priority, names);
  }
  const ordered: Array<{ name: string; preference: number }> = [];
  for (const pref of [...byPreference.keys()].sort((x, y) => x - y)) {
    const names = byPreference.get(pref)!;
    for (const name of opts.randomize === false ? names : shuffle(names)) ordered.push({ name, preference: pref });
  }
  const lookups = await Promise.all(ordered.map((o) => hostAddresses(opts.dns, o.name)));
  const hosts: SmtpHost[] = [];
  let why: LookupFailure | null = null;
  for (let i = 0; i < lookups.length; i++) {
    const l = lookups[i]!;
    const o = ordered[i]!;
    if ('failure' in l) why = worse(why, l.failure);
    else for (const address of l.addresses) hosts.push({ hostname: o.name, address, port: d.port, preference: o.preference });
  }
  if (hosts.length === 0) {
    const f = why ?? { status: '4.4.3', reason: `no MX host for ${d.host} has a valid address record` };
    return { kind: 'fail', ...f };
  }
  // smtp_truncate_self: only hosts more preferred than ourselves; a backup MX relays to the
  // primary, never to another backup or to itself.
  const bestPref = ordered[0]!.preference;
  const self = hosts.find((h) => opts.isSelf(h.address, h.port));
  if (self) {
    const kept = hosts.filter((h) => h.preference < self.preference);
    if (kept.length === 0) {
      return self.preference === bestPref
        ? { kind: 'fail', status: '5.4.6', reason: `mail for ${d.host} loops back to myself` }
        : { kind: 'fail', status: '4.4.4', reason: `unable to find primary relay for ${d.host}` };
    }
    return { kind: 'ok', hosts: limit(kept, opts) };
  }
  return { kind: 'ok', hosts: limit(hosts, opts) };
}

/** plainHosts - `[host]`, an address, or a domain without MX records: its own addresses */
async function plainHosts(d: Destination, opts: ResolveOptions): Promise<HostList> {
  const l = await hostAddresses(opts.dns, d.host);
  if ('failure' in l) return { kind: 'fail', ...l.failure };
  const hosts = l.addresses.map((address) => ({ hostname: d.host, address, port: d.port, preference: 0 }));
  const others = hosts.filter((h) => !opts.isSelf(h.address, h.port));
  if (others.length === 0) return { kind: 'fail', status: '5.4.6', reason: `mail for ${d.host} loops back to myself` };
  return { kind: 'ok', hosts: limit(others, opts) };
}

function limit(hosts: SmtpHost[], opts: ResolveOptions): SmtpHost[] {
  const n = opts.addressLimit ?? 0;
  return n > 0 ? hosts.slice(0, n) : hosts;
}

/**
 * resolveNexthop - the hosts to try for DESTINATIONS, in order. With several destinations
 * their lists are joined; when none yields a host, a soft failure wins over a hard one.
 */
export async function resolveNexthop(destinations: readonly Destination[], opts: ResolveOptions): Promise<HostList> {
  const lists = await Promise.all(destinations.map((d) => (d.mx ? mxHosts(d, opts) : plainHosts(d, opts))));
  const hosts: SmtpHost[] = [];
  let why: LookupFailure | null = null;
  for (const l of lists) {
    if (l.kind === 'ok') hosts.push(...l.hosts);
    else why = worse(why, l);
  }
  if (hosts.length > 0) return { kind: 'ok', hosts: limit(hosts, opts) };
  return { kind: 'fail', ...(why ?? { status: '4.3.5', reason: 'empty next-hop destination' }) };
}
