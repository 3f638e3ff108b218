/**
 * @module dns/dnsbl
 * SUMMARY: DNS block/allow list queries as reject_rbl_client, reject_rhsbl_* and
 * permit_dnswl_client make them. parseDnsxlSite("zen.example=127.0.0.[2..11]") splits the
 * list domain from its reply filter (Postfix ip_match syntax: per octet a number or
 * [a;b..c]); clientQuery() builds the reversed-address name (IPv6 as 32 nibbles);
 * DnsxlCache.query() asks for the A records and, when listed, the TXT text;
 * parseWeightedDnsxlSite() reads postscreen's "domain=filter*weight" entries.
 * Answers in 127.255.255.0/24 (Spamhaus "you used a public resolver" and the like) and
 * answers outside 127.0.0.0/8 are errors, never listings; errors are returned, never thrown,
 * and the caller fails open as Postfix does. Results are cached for their TTL (at most
 * 300 s; "not listed" for 60 s), errors not at all.
 * SEE ALSO: postconf(5) reject_rbl_client, default_rbl_reply; Postfix smtpd_check.c
 * rbl_pagein(), find_dnsxl_addr(), ip_match.c.
 */
import ipaddr from 'ipaddr.js';
import type { DnsClient } from './resolver.js';

/** One reply-filter octet: the accepted values 0..255 as a bitmap. */
type OctetSet = Uint8Array;

export interface ReplyFilter {
  readonly text: string;
  test(addr: string): boolean;
}

/** Parse an ip_match pattern such as "127.0.0.[2..11]" or "127.0.[0..255].[2;4;8..10]". */
export function parseReplyFilter(text: string): ReplyFilter | { error: string } {
  const parts = splitOctets(text);
  if (parts === null || parts.length !== 4) return { error: `bad address pattern: "${text}": need four octets` };
  const sets: OctetSet[] = [];
  for (const p of parts) {
    const set = new Uint8Array(256);
    if (/^\d{1,3}$/.test(p)) {
      const v = Number(p);
      if (v > 255) return { error: `bad address pattern: "${text}": octet value ${v} out of range` };
      set[v] = 1;
    } else if (p.startsWith('[') && p.endsWith(']')) {
      for (const item of p.slice(1, -1).split(';')) {
        const m = /^(\d{1,3})(?:\.\.(\d{1,3}))?$/.exec(item);
        if (!m) return { error: `bad address pattern: "${text}": bad octet set "${p}"` };
        const lo = Number(m[1]);
        const hi = m[2] === undefined ? lo : Number(m[2]);
        if (lo > 255 || hi > 255 || lo > hi) return { error: `bad address pattern: "${text}": bad range "${item}"` };
        for (let v = lo; v <= hi; v++) set[v] = 1;
      }
    } else return { error: `bad address pattern: "${text}": bad octet "${p}"` };
    sets.push(set);
  }
  return {
    text,
    test(addr: string): boolean {
      const o = addr.split('.');
      if (o.length !== 4) return false;
      for (let i = 0; i < 4; i++) if (sets[i]![Number(o[i])] !== 1) return false;
      return true;
    },
  };
}

/** Split at dots that are not inside [...]. */
function splitOctets(text: string): string[] | null {
  const out: string[] = [];
  let cur = '';
  let inSet = false;
  for (const c of text) {
    if (c === '[') {
      if (inSet) return null;
      inSet = true;
    } else if (c === ']') {
      if (!inSet) return null;
      inSet = false;
    }
    if (c === '.' && !inSet) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (inSet) return null;
  out.push(cur);
  return out;
}

export interface DnsxlSite {
  /** As configured, e.g. "zen.example=127.0.0.[2..11]": the key for rbl_reply_maps. */
  readonly spec: string;
  /** The list's domain, e.g. "zen.example" ($rbl_domain). */
  readonly domain: string;
  readonly filter: ReplyFilter | null;
}

export function parseDnsxlSite(spec: string): DnsxlSite | { error: string } {
  const eq = spec.indexOf('=');
  const domain = (eq < 0 ? spec : spec.slice(0, eq)).toLowerCase();
  if (domain === '' || !/^[a-z0-9_.-]+$/.test(domain)) return { error: `bad DNS list domain: "${spec}"` };
  if (eq < 0) return { spec, domain, filter: null };
  const f = parseReplyFilter(spec.slice(eq + 1));
  if ('error' in f) return f;
  return { spec, domain, filter: f };
}

export interface WeightedDnsxlSite extends DnsxlSite {
  /** How much a listing adds to the client's score; negative for allow lists. */
  readonly weight: number;
}

/**
 * A postscreen_dnsbl_sites entry, "domain[=filter][*weight]" (weight 1 when absent):
 * split at the first "*" and then at "=", as postscreen_dnsbl.c psc_dnsbl_add_site() does.
 */
export function parseWeightedDnsxlSite(entry: string): WeightedDnsxlSite | { error: string } {
  const star = entry.indexOf('*');
  let weight = 1;
  if (star >= 0) {
    const w = entry.slice(star + 1);
    if (!/^[+-]?\d{1,9}$/.test(w)) return { error: `bad DNSBL weight factor "${w}" in "${entry}"` };
    weight = Number(w);
  }
  const site = parseDnsxlSite(star >= 0 ? entry.slice(0, star) : entry);
  if ('error' in site) return { error: `${site.error} in "${entry}"` };
  return { ...site, weight };
}

/** The reversed client address: "4.3.2.1" for 1.2.3.4, 32 nibbles for IPv6. */
export function clientQuery(addr: string): string | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.process(addr);
  } catch {
    return null;
  }
  if (parsed.kind() === 'ipv4') return parsed.toByteArray().reverse().join('.');
  const nibbles: string[] = [];
  const bytes = parsed.toByteArray();
  for (let i = bytes.length - 1; i >= 0; i--) {
    const b = bytes[i]!;
    nibbles.push((b & 0xf).toString(16), (b >> 4).toString(16));
  }
  return nibbles.join('.');
}

export type DnsxlResult =
  | { readonly kind: 'listed'; readonly addresses: readonly string[]; readonly txt: string | null }
  | { readonly kind: 'clean' }
  | { readonly kind: 'error'; readonly reason: string };

const TXT_LIMIT = 500;
const MAX_TTL = 300;
const NEGATIVE_TTL = 60;
const CACHE_LIMIT = 10000;

type Raw = { kind: 'listed'; addresses: readonly string[]; txt: string | null } | { kind: 'clean' };

/**
 * A TTL-bounded cache of list answers; one per policy snapshot. The reply filter is applied
 * after the cache, so one query serves every filter on the same list.
 */
export class DnsxlCache {
  private readonly entries = new Map<string, { expires: number; raw: Raw }>();
  /**
   * Lookups in flight: parallel connections from one client (spambots open several at
   * once) and a list named twice with different filters share one query, as postscreen's
   * reference-counted scores do.
   */
  private readonly inflight = new Map<string, Promise<Raw | { kind: 'error'; reason: string }>>();
  constructor(
    private readonly dns: DnsClient,
    private readonly now: () => number = Date.now,
  ) {}

  /** Look NAME (already "<reversed>.<domain>" or "<domain>.<list>") up and apply FILTER. */
  async query(name: string, filter: ReplyFilter | null): Promise<DnsxlResult> {
    const raw = await this.lookup(name.toLowerCase());
    if (raw.kind !== 'listed') return raw;
    if (filter && !raw.addresses.some((a) => filter.test(a))) return { kind: 'clean' };
    return raw;
  }

  private lookup(name: string): Promise<Raw | { kind: 'error'; reason: string }> {
    const hit = this.entries.get(name);
    if (hit && hit.expires > this.now()) return Promise.resolve(hit.raw);
    let p = this.inflight.get(name);
    if (!p) {
      p = this.fetch(name).finally(() => this.inflight.delete(name));
      this.inflight.set(name, p);
    }
    return p;
  }

  private async fetch(name: string): Promise<Raw | { kind: 'error'; reason: string }> {
    const t = this.now();
    const a = await this.dns.a(name);
    if (a.status === 'notfound') return this.store(name, { kind: 'clean' }, NEGATIVE_TTL, t);
    if (a.status !== 'ok') return { kind: 'error', reason: `${name}: RBL lookup error: ${a.reason}` };
    for (const addr of a.records) {
      // Spamhaus and others answer 127.255.255.x for refused queries: never a listing.
      if (addr.startsWith('127.255.255.')) return { kind: 'error', reason: `${name}: DNS list refused the query: ${addr}` };
      if (!addr.startsWith('127.')) return { kind: 'error', reason: `${name}: DNS list answer outside 127.0.0.0/8: ${addr}` };
    }
    let txt: string | null = null;
    const t2 = await this.dns.txt(name);
    if (t2.status === 'ok' && t2.records.length > 0) {
      let buf = '';
      for (const r of t2.records) {
        if (buf.length >= TXT_LIMIT) break;
        if (buf) buf += ' / ';
        buf += r;
      }
      txt = buf.slice(0, TXT_LIMIT);
    }
    return this.store(name, { kind: 'listed', addresses: a.records, txt }, Math.min(a.ttl ?? MAX_TTL, MAX_TTL), t);
  }

  private store(name: string, raw: Raw, ttl: number, t: number): Raw {
    if (ttl > 0) {
      if (this.entries.size >= CACHE_LIMIT) this.entries.clear();
      this.entries.set(name, { expires: t + ttl * 1000, raw });
    }
    return raw;
  }
}
