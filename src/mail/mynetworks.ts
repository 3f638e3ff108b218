/**
 * @module mail/mynetworks
 * SUMMARY: Postfix host name/address pattern lists (namadr_list), used for mynetworks:
 * "1.2.3.4", "1.2.3.0/24", "[2001:db8::]/32", "[::1]", host names and parent domains,
 * "!pattern" exceptions, "/file/name" (its patterns expanded in place) and "type:table"
 * (the client name and its parents, then the address, are looked up). The first pattern
 * that matches decides; a "!" pattern that matches means "not in the list".
 * compileNetworkList() returns the matcher and the Problems found (a bad CIDR pattern, a
 * bare IPv6 address that Postfix would take for a table name, an unreadable file).
 * normalizeClientAddress() turns an IPv4-mapped IPv6 address into plain IPv4, as Postfix does
 * before any check.
 * SEE ALSO: postconf(5) mynetworks, Postfix mynetworks.c, match_list.c, match_ops.c.
 */
import ipaddr from 'ipaddr.js';
import type { Problem } from '../errors.js';
import type { Table } from '../tables/table.js';
import { compileMatchList, hostnameMatch, type MatchListOptions } from './match-list.js';
import { hostKeys, lookupKey } from './access-keys.js';

/** "::ffff:1.2.3.4" → "1.2.3.4"; any other address in its canonical printed form. */
export function normalizeClientAddress(addr: string): string {
  if (addr.includes(':')) {
    const bare = addr.startsWith('[') && addr.endsWith(']') ? addr.slice(1, -1) : addr;
    const noZone = bare.replace(/%.*$/, '');
    if (!ipaddr.IPv6.isValid(noZone)) return addr;
    const v6 = ipaddr.IPv6.parse(noZone);
    return v6.isIPv4MappedAddress() ? v6.toIPv4Address().toString() : v6.toString();
  }
  return addr;
}

export interface NetworkList {
  /** true: listed; false: not listed; 'error': a table lookup failed (fail closed). */
  match(addr: string, name: string): boolean | 'error';
}

export interface NetworkListOptions extends MatchListOptions {
  /** The parameter is listed in parent_domain_matches_subdomains. */
  readonly parentMatches: boolean;
  openTable(spec: string): Table;
}

function parseAddr(addr: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  try {
    return ipaddr.parse(addr);
  } catch {
    return null;
  }
}

/** A "net/len" or "[net]/len" pattern; the host part must be zero, as cidr_match_parse wants. */
function parseCidr(pattern: string): { range: [ipaddr.IPv4 | ipaddr.IPv6, number] } | { error: string } {
  const m = /^(?:\[([^\]]+)\]|([^/[\]]+))(?:\/(\d+))?$/.exec(pattern);
  if (!m) return { error: `bad address pattern: "${pattern}"` };
  const text = m[1] ?? m[2]!;
  const isV6 = text.includes(':');
  if (isV6 && !ipaddr.IPv6.isValid(text)) return { error: `bad IPv6 address in "${pattern}"` };
  if (!isV6 && !ipaddr.IPv4.isValidFourPartDecimal(text)) return { error: `bad IPv4 address in "${pattern}"` };
  const addr = ipaddr.parse(text);
  const max = addr.kind() === 'ipv6' ? 128 : 32;
  const len = m[3] === undefined ? max : Number(m[3]);
  if (len > max) return { error: `bad network mask length in "${pattern}"` };
  const bytes = addr.toByteArray();
  for (let bit = len; bit < max; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) {
      const net = ipaddr.parse(addr.kind() === 'ipv6' ? ipaddr.IPv6.networkAddressFromCIDR(`${text}/${len}`).toString() : ipaddr.IPv4.networkAddressFromCIDR(`${text}/${len}`).toString());
      const hint = addr.kind() === 'ipv6' ? `[${net.toString()}]/${len}` : `${net.toString()}/${len}`;
      return { error: `non-null host address bits in "${pattern}", perhaps you should use "${hint}" instead` };
    }
  }
  return { range: [addr, len] };
}

function isTableSpec(item: string): boolean {
  return item[0] !== '[' && item.includes(':');
}

/** Compile a namadr_list such as mynetworks. Unusable patterns become Problems and never match. */
export function compileNetworkList(items: readonly string[], opts: NetworkListOptions): { list: NetworkList; problems: Problem[] } {
  const problems: Problem[] = [];
  type Query = { addr: string; parsed: ipaddr.IPv4 | ipaddr.IPv6 | null; name: string };
  const inner = compileMatchList<Query>(items, opts, problems, (item, problem) => {
    if (isTableSpec(item)) {
      if (/^[0-9a-f]*:[0-9a-f:.]*(\/\d+)?$/i.test(item)) {
        problem(`"${item}" looks like an IPv6 address: write it as [${item.replace(/\/.*$/, '')}]${item.includes('/') ? item.slice(item.indexOf('/')) : ''}`);
      }
      // The table's own load problems are the opener's to report (tables/open.ts).
      const table = opts.openTable(item);
      return (q) => tableMatch(table, q.addr, q.name, opts.parentMatches);
    }
    const lower = item.toLowerCase();
    if (lower.startsWith('[') || /^[\d.]+(\/\d+)?$/.test(lower)) {
      if (/^[\d.]+$/.test(lower) && !ipaddr.IPv4.isValidFourPartDecimal(lower)) {
        // Postfix silently never matches "1.2.3"; say so, since it is almost always a mistake.
        problem(`"${item}" is not a complete IPv4 address and never matches; use a.b.c.d/len`, 'warning');
        return null;
      }
      const parsed = parseCidr(lower);
      if ('error' in parsed) {
        problem(parsed.error);
        return () => 'error';
      }
      const [net, len] = parsed.range;
      const kind = net.kind();
      return (q) => q.parsed !== null && q.parsed.kind() === kind && (q.parsed as ipaddr.IPv4).match(net as ipaddr.IPv4, len);
    }
    return (q) => hostnameMatch(q.name.toLowerCase(), lower, opts.parentMatches);
  });
  const list: NetworkList = {
    match(addr: string, name: string): boolean | 'error' {
      const a = normalizeClientAddress(addr);
      return inner.match({ addr: a, parsed: parseAddr(a), name });
    },
  };
  return { list, problems };
}

function tableMatch(table: Table, addr: string, name: string, parentMatches: boolean): boolean | 'error' {
  // match_hostname: the name and (exact-key tables only) its parents; then match_hostaddr.
  for (const k of hostKeys(name.toLowerCase(), parentMatches)) {
    const r = lookupKey(table, k);
    if (r.kind === 'hit') return true;
    if (r.kind === 'error') return 'error';
  }
  const r = lookupKey(table, { key: addr, partial: false });
  if (r.kind === 'hit') return true;
  if (r.kind === 'error') return 'error';
  return false;
}
