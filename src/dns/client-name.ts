/**
 * @module dns/client-name
 * SUMMARY: the client name lookup done for every connection (Postfix smtpd_peer.c):
 * forward-confirmed reverse DNS, with a short cache. Without dns_resolvers the system's own
 * resolver library is used (getnameinfo/getaddrinfo, so /etc/hosts answers first, as it does
 * for Postfix); with dns_resolvers the configured servers are asked through DnsClient.
 * DIAGNOSTICS: never throws; a failed lookup gives name "unknown" (temp failures are not
 * cached, so the next connection tries again).
 * SEE ALSO: smtpd(8) "client name", dns/resolver.ts verifyClientName().
 */
import { lookup, lookupService } from 'node:dns/promises';
import { isIP } from 'node:net';
import { verifyClientName, type ClientName, type DnsClient, type DnsAnswer } from './resolver.js';

const CACHE_MS = 60_000;
const CACHE_MAX = 10_000;

export interface ClientNameResolver {
  verifiedClientName(ip: string): Promise<ClientName>;
}

function withTimeout<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** DnsClient-shaped reverse/forward lookups through the C library (nsswitch, /etc/hosts). */
function systemLookups(timeoutMs: number): Pick<DnsClient, 'reverse' | 'a' | 'aaaa'> {
  const retry = { status: 'retry', reason: 'ETIMEOUT' } as const;
  const fail = (err: unknown): DnsAnswer<string> => {
    const code = (err as NodeJS.ErrnoException).code ?? 'lookup error';
    return code === 'ENOTFOUND' || code === 'ENODATA' || code === 'EAI_NONAME' ? { status: 'notfound', reason: code } : { status: 'retry', reason: code };
  };
  const forward = (family: 4 | 6) => async (name: string): Promise<DnsAnswer<string>> =>
    withTimeout(
      lookup(name, { all: true, family }).then(
        (addrs): DnsAnswer<string> => (addrs.length ? { status: 'ok', records: addrs.map((a) => a.address) } : { status: 'notfound', reason: 'ENODATA' }),
        fail,
      ),
      timeoutMs,
      retry,
    );
  return {
    reverse: (ip) =>
      withTimeout(
        lookupService(ip, 0).then(
          // getnameinfo answers with the numeric address when there is no name.
          ({ hostname }): DnsAnswer<string> => (isIP(hostname) || !hostname ? { status: 'notfound', reason: 'ENOTFOUND' } : { status: 'ok', records: [hostname.replace(/\.$/, '')] }),
          fail,
        ),
        timeoutMs,
        retry,
      ),
    a: forward(4),
    aaaa: forward(6),
  };
}

export function createClientNameResolver(dns: DnsClient, opts: { system: boolean; timeoutMs: number }): ClientNameResolver {
  const source = opts.system ? systemLookups(opts.timeoutMs) : dns;
  const cache = new Map<string, { at: number; value: ClientName }>();
  return {
    async verifiedClientName(ip) {
      const now = Date.now();
      const hit = cache.get(ip);
      if (hit && now - hit.at < CACHE_MS) return hit.value;
      const value = await verifyClientName(source, ip);
      if (value.nameStatus !== 'temp' && value.reverseNameStatus !== 'temp') {
        if (cache.size >= CACHE_MAX) cache.clear();
        cache.set(ip, { at: now, value });
      }
      return value;
    },
  };
}
