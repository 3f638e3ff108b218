/**
 * @module dns/resolver
 * SUMMARY: the DNS lookups the restriction engine needs (A, AAAA, TXT, MX, PTR) and the
 * forward-confirmed client name (Postfix's client_name / reverse_client_name), behind the
 * DnsClient interface so that tests and `greygate trace` can substitute their own.
 * createDnsClient(config) uses node:dns/promises with `dns_resolvers` (IP[:PORT] or
 * [IPv6]:PORT; empty = system resolvers) and `dns_timeout` per query.
 * Every answer is a value: ok | notfound (NXDOMAIN or no data) | retry (timeout, SERVFAIL,
 * unreachable server) | fail (refused, malformed); nothing is thrown.
 * SEE ALSO: Postfix dns_lookup.c (DNS_OK/NOTFOUND/RETRY/FAIL), smtpd_peer.c.
 */
import { Resolver } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';
import type { Config } from '../config/config.js';
import { isValidHostname, isValidHostAddr } from '../mail/address.js';
import { normalizeClientAddress } from '../mail/mynetworks.js';

export type DnsAnswer<T> =
  | { readonly status: 'ok'; readonly records: readonly T[]; /** seconds; the smallest record TTL, when known */ readonly ttl?: number }
  | { readonly status: 'notfound' | 'retry' | 'fail'; readonly reason: string };

export interface MxRecord {
  readonly exchange: string;
  readonly priority: number;
}

/** Postfix SMTPD_PEER_CODE_*: how a client name was (or was not) found. */
export type PeerStatus = 'ok' | 'temp' | 'perm' | 'forged';

export interface ClientName {
  /** Forward-confirmed name, or "unknown". */
  readonly name: string;
  /** The PTR name as found, or "unknown". */
  readonly reverseName: string;
  readonly nameStatus: PeerStatus;
  readonly reverseNameStatus: PeerStatus;
}

export interface DnsClient {
  a(name: string): Promise<DnsAnswer<string>>;
  aaaa(name: string): Promise<DnsAnswer<string>>;
  /** Each TXT record with its strings joined. */
  txt(name: string): Promise<DnsAnswer<string>>;
  /** A null MX comes back as one record with exchange "". */
  mx(name: string): Promise<DnsAnswer<MxRecord>>;
  /** PTR names of an address, without trailing dots. */
  reverse(ip: string): Promise<DnsAnswer<string>>;
  verifiedClientName(ip: string): Promise<ClientName>;
}

export interface DnsClientOptions {
  /** "IP", "IP:PORT", "[IPv6]:PORT"; empty = the system's resolvers. */
  readonly servers: readonly string[];
  readonly timeoutMs: number;
}

const NOTFOUND_CODES = new Set(['ENOTFOUND', 'ENODATA']);
const FAIL_CODES = new Set(['EREFUSED', 'ENOTIMP', 'EFORMERR', 'EBADRESP', 'EBADQUERY', 'EBADNAME', 'EBADFAMILY', 'EBADSTR']);

function classify(err: unknown): { status: 'notfound' | 'retry' | 'fail'; reason: string } {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const reason = code || (err as Error).message || 'lookup error';
  if (NOTFOUND_CODES.has(code)) return { status: 'notfound', reason };
  if (FAIL_CODES.has(code)) return { status: 'fail', reason };
  return { status: 'retry', reason };
}

/** "1.2.3.4:5353" → "1.2.3.4:5353"; "::1" → "[::1]"; "[::1]:53" stays: what setServers takes. */
export function parseResolverAddress(entry: string): string | null {
  const t = entry.trim();
  if (t === '') return null;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (bracket) {
    if (!ipaddr.IPv6.isValid(bracket[1]!)) return null;
    return bracket[2] ? `[${bracket[1]}]:${bracket[2]}` : `[${bracket[1]}]`;
  }
  if (ipaddr.IPv6.isValid(t)) return `[${t}]`;
  const v4 = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(t);
  if (v4 && ipaddr.IPv4.isValidFourPartDecimal(v4[1]!)) {
    if (v4[2] !== undefined && (Number(v4[2]) < 1 || Number(v4[2]) > 65535)) return null;
    return t;
  }
  return null;
}

/** The in-addr.arpa / ip6.arpa name of an address (IPv4-mapped IPv6 as IPv4). */
export function arpaName(ip: string): string | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.process(normalizeClientAddress(ip));
  } catch {
    return null;
  }
  const bytes = parsed.toByteArray();
  if (parsed.kind() === 'ipv4') return `${bytes.reverse().join('.')}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = bytes.length - 1; i >= 0; i--) nibbles.push((bytes[i]! & 0xf).toString(16), (bytes[i]! >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}

function stripDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

function sameAddress(a: string, b: string): boolean {
  try {
    const x = ipaddr.process(a);
    const y = ipaddr.process(b);
    return x.kind() === y.kind() && x.toNormalizedString() === y.toNormalizedString();
  } catch {
    return a === b;
  }
}

/** createDnsClient with explicit servers and timeout (tests use this with their own server). */
export function createDnsClientFromOptions(opts: DnsClientOptions): DnsClient {
  const resolver = new Resolver({ timeout: Math.max(1, opts.timeoutMs), tries: 1 });
  const servers = opts.servers.map(parseResolverAddress).filter((s): s is string => s !== null);
  if (servers.length > 0) resolver.setServers(servers);
  const limit = Math.max(1, opts.timeoutMs) + 250;

  // c-ares honours the timeout itself; the extra timer only guards against a stuck query.
  async function run<T>(query: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; status: 'notfound' | 'retry' | 'fail'; reason: string }> {
    let timer: NodeJS.Timeout | undefined;
    const guard = new Promise<{ ok: false; status: 'retry'; reason: string }>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, status: 'retry', reason: 'ETIMEOUT' }), limit);
      timer.unref();
    });
    try {
      return await Promise.race([
        query().then(
          (value) => ({ ok: true as const, value }),
          (err: unknown) => ({ ok: false as const, ...classify(err) }),
        ),
        guard,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  const client: DnsClient = {
    async a(name) {
      const r = await run(() => resolver.resolve4(name, { ttl: true }));
      if (!r.ok) return { status: r.status, reason: r.reason };
      return { status: 'ok', records: r.value.map((x) => x.address), ttl: Math.min(...r.value.map((x) => x.ttl)) };
    },
    async aaaa(name) {
      const r = await run(() => resolver.resolve6(name, { ttl: true }));
      if (!r.ok) return { status: r.status, reason: r.reason };
      return { status: 'ok', records: r.value.map((x) => x.address), ttl: Math.min(...r.value.map((x) => x.ttl)) };
    },
    async txt(name) {
      const r = await run(() => resolver.resolveTxt(name));
      if (!r.ok) return { status: r.status, reason: r.reason };
      return { status: 'ok', records: r.value.map((chunks) => chunks.join('')) };
    },
    async mx(name) {
      const r = await run(() => resolver.resolveMx(name));
      if (!r.ok) return { status: r.status, reason: r.reason };
      return { status: 'ok', records: r.value.map((x) => ({ exchange: stripDot(x.exchange), priority: x.priority })) };
    },
    async reverse(ip) {
      const name = arpaName(ip);
      if (name === null) return { status: 'fail', reason: `not an IP address: ${ip}` };
      // resolvePtr, not reverse(): reverse() reports every failure as ENOTFOUND.
      const r = await run(() => resolver.resolvePtr(name));
      if (!r.ok) return { status: r.status, reason: r.reason };
      if (r.value.length === 0) return { status: 'notfound', reason: 'ENODATA' };
      return { status: 'ok', records: r.value.map(stripDot) };
    },
    async verifiedClientName(ip) {
      return verifyClientName(client, ip);
    },
  };
  return client;
}

/**
 * Forward-confirmed reverse DNS as smtpd_peer.c does it: the first PTR name must be a
 * valid, non-numeric host name, and one of its addresses of the client's family must be
 * the client address; otherwise the name is "unknown" (temp, perm or forged).
 */
export async function verifyClientName(dns: Pick<DnsClient, 'reverse' | 'a' | 'aaaa'>, rawIp: string): Promise<ClientName> {
  const ip = normalizeClientAddress(rawIp);
  const unknown = (status: PeerStatus): ClientName => ({ name: 'unknown', reverseName: 'unknown', nameStatus: status, reverseNameStatus: status });
  const ptr = await dns.reverse(ip);
  if (ptr.status === 'retry') return unknown('temp');
  if (ptr.status !== 'ok') return unknown('perm');
  const name = ptr.records[0]!.toLowerCase();
  // A numeric or malformed PTR name must never stand in for a verified name.
  if (!isValidHostname(name) || isValidHostAddr(name)) return unknown('perm');
  const fwd = ip.includes(':') ? await dns.aaaa(name) : await dns.a(name);
  if (fwd.status === 'ok' && fwd.records.some((a) => sameAddress(a, ip))) {
    return { name, reverseName: name, nameStatus: 'ok', reverseNameStatus: 'ok' };
  }
  return { name: 'unknown', reverseName: name, nameStatus: fwd.status === 'retry' ? 'temp' : 'forged', reverseNameStatus: 'ok' };
}

/**
 * A DnsClient that asks nobody and finds nothing (`greygate trace --no-dns`, tests): every
 * lookup is "not found" with REASON, and client names are "unknown".
 */
export function offlineDnsClient(reason = 'no DNS'): DnsClient {
  const nf = async (): Promise<DnsAnswer<never>> => ({ status: 'notfound', reason });
  return {
    a: nf,
    aaaa: nf,
    txt: nf,
    mx: nf,
    reverse: nf,
    verifiedClientName: async () => ({ name: 'unknown', reverseName: 'unknown', nameStatus: 'perm', reverseNameStatus: 'perm' }),
  };
}

/** The DnsClient configured by main.cf: dns_resolvers and dns_timeout. */
export function createDnsClient(config: Config): DnsClient {
  return createDnsClientFromOptions({ servers: config.list('dns_resolvers'), timeoutMs: config.time('dns_timeout') });
}

export type RecordType = 'A' | 'AAAA' | 'MX';

/** Summary of several lookups, Postfix's dns_lookup_l() order: ok > retry > fail > nullmx > notfound. */
export type LookupSummary = 'ok' | 'retry' | 'fail' | 'nullmx' | 'notfound';

const RANK: Record<LookupSummary, number> = { ok: 4, retry: 3, fail: 2, nullmx: 1, notfound: 0 };

/**
 * Look NAME up with each of TYPES in turn until one succeeds (dns_lookup_l with
 * STOP_OK); with stopOnNullMx a null MX ends the search (a domain that says it takes no mail).
 * Otherwise the most telling failure is returned.
 */
export async function lookupTypes(dns: DnsClient, name: string, types: readonly RecordType[], stopOnNullMx: boolean): Promise<LookupSummary> {
  let best: LookupSummary = 'notfound';
  for (const t of types) {
    let s: LookupSummary;
    if (t === 'MX') {
      const r = await dns.mx(name);
      if (r.status === 'ok') s = r.records.length === 1 && r.records[0]!.exchange === '' ? 'nullmx' : 'ok';
      else s = r.status;
    } else {
      const r = t === 'A' ? await dns.a(name) : await dns.aaaa(name);
      s = r.status;
    }
    if (s === 'ok') return 'ok';
    if (s === 'nullmx' && stopOnNullMx) return 'nullmx';
    if (RANK[s] > RANK[best]) best = s;
  }
  return best;
}
