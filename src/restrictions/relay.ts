/**
 * @module restrictions/relay
 * SUMMARY: relay control. buildResolver() compiles mydestination (exact names and tables),
 * relay_domains (names match subdomains when relay_domains is in
 * parent_domain_matches_subdomains, ".domain" otherwise) and the [address] literals of
 * inet_interfaces / proxy_interfaces into a cached address resolver (mail/address.ts
 * resolveAddress). permit_auth_destination, reject_unauth_destination and
 * defer_unauth_destination use it: the destination is authorized when the resolved
 * address is local or in relay_domains and carries no sender-specified routing.
 * DIAGNOSTICS: a table failure while resolving answers 451 4.3.0 <rcpt>: Temporary lookup
 * failure; check_relay_domains (removed in Postfix 3.9) is a configuration error.
 * SEE ALSO: postconf(5) reject_unauth_destination, relay_domains, mydestination; Postfix
 * smtpd_check.c permit_auth_destination(), trivial-rewrite resolve.c, resolve_local.c.
 */
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { Config } from '../config/config.js';
import type { Problem } from '../errors.js';
import type { Table } from '../tables/table.js';
import { compileMatchList, hostnameMatch, type MatchListOptions } from '../mail/match-list.js';
import { hostKeys, lookupKey } from '../mail/access-keys.js';
import { mailhostAddr, resolveAddress, type ResolveContext, type ResolvedAddress } from '../mail/address.js';
import { normalizeClientAddress } from '../mail/mynetworks.js';
import { DUNNO, OK, dictRetry, reject, type Eval, type Status } from './evaluate.js';
import type { Env, RestrictionDef } from './registry.js';

export interface DomainList {
  match(domain: string): boolean | 'error';
}

interface DomainListOptions extends MatchListOptions {
  /** domain_list (host names, parent domains) rather than string_list (exact strings). */
  readonly hostnames: boolean;
  readonly parentMatches: boolean;
  openTable(spec: string): Table;
}

/** Compile a Postfix string_list / domain_list: names, !names, /file/name, type:table. */
export function compileDomainList(items: readonly string[], opts: DomainListOptions, problems: Problem[]): DomainList {
  const inner = compileMatchList<string>(items, opts, problems, (item) => {
    if (item[0] !== '[' && item.includes(':')) {
      const table = opts.openTable(item);
      return (d) => {
        const keys = opts.hostnames ? hostKeys(d, opts.parentMatches) : [{ key: d, partial: false }];
        for (const k of keys) {
          const r = lookupKey(table, k);
          if (r.kind === 'hit') return true;
          if (r.kind === 'error') return 'error';
        }
        return false;
      };
    }
    const pattern = item.toLowerCase();
    if (!opts.hostnames) return (d) => d === pattern;
    return (d) => hostnameMatch(d, pattern, opts.parentMatches);
  });
  return { match: (domain: string) => inner.match(domain.toLowerCase()) };
}

/** The machine's own addresses for inet_interfaces = all / loopback-only / a list. */
export function interfaceAddresses(values: readonly string[]): Set<string> {
  const out = new Set<string>();
  const addAddr = (a: string): void => {
    const n = normalizeClientAddress(a.replace(/%.*$/, ''));
    if (ipaddr.isValid(n)) out.add(canonical(n));
  };
  for (const v of values) {
    const lower = v.toLowerCase();
    if (lower === 'all') {
      for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) addAddr(a.address);
    } else if (lower === 'loopback-only' || lower === 'localhost') {
      addAddr('127.0.0.1');
      addAddr('::1');
    } else {
      addAddr(v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v);
    }
  }
  return out;
}

function canonical(addr: string): string {
  try {
    return ipaddr.process(addr).toString();
  } catch {
    return addr;
  }
}

export interface AddressResolver {
  resolve(addr: string): ResolvedAddress;
  readonly context: ResolveContext;
}

const RESOLVE_CACHE_LIMIT = 1000;

/** The trivial-rewrite view of this configuration, with a small cache (as smtpd keeps). */
export function buildResolver(
  config: Config,
  openTable: (spec: string) => Table,
  problems: Problem[],
  ownAddresses: ReadonlySet<string>,
): AddressResolver {
  const pdms = new Set(config.list('parent_domain_matches_subdomains').map((s) => s.toLowerCase()));
  const mydest = compileDomainList(
    config.list('mydestination'),
    { param: 'mydestination', file: config.file, line: config.lineOf('mydestination'), hostnames: false, parentMatches: false, openTable },
    problems,
  );
  const relay = compileDomainList(
    config.list('relay_domains'),
    { param: 'relay_domains', file: config.file, line: config.lineOf('relay_domains'), hostnames: true, parentMatches: pdms.has('relay_domains'), openTable },
    problems,
  );
  const proxy = interfaceAddresses(config.list('proxy_interfaces'));
  const context: ResolveContext = {
    myorigin: config.get('myorigin'),
    myhostname: config.get('myhostname'),
    isLocal(domain: string) {
      let d = domain;
      if (d.endsWith('.')) d = d.slice(0, -1);
      if (d === '' || d.endsWith('.')) return false;
      const m = mydest.match(d);
      if (m !== false) return m;
      // [address] literals of our own interfaces are local too.
      if (d.startsWith('[') && d.endsWith(']')) {
        const bare = mailhostAddr(d.slice(1, -1));
        if (bare === null) return false;
        const c = canonical(normalizeClientAddress(bare));
        return ownAddresses.has(c) || proxy.has(c);
      }
      return false;
    },
    isRelay(domain: string) {
      return relay.match(domain);
    },
  };
  const cache = new Map<string, ResolvedAddress>();
  return {
    context,
    resolve(addr: string): ResolvedAddress {
      const hit = cache.get(addr);
      if (hit) return hit;
      const r = resolveAddress(addr, context);
      // Lookup failures are not cached: the next attempt may succeed.
      if (!r.fail) {
        if (cache.size >= RESOLVE_CACHE_LIMIT) cache.clear();
        cache.set(addr, r);
      }
      return r;
    },
  };
}

/**
 * permit_auth_destination(): OK for a local or relay_domains destination without
 * sender-specified routing; DUNNO otherwise; REJECT (451 4.3.0) on a lookup failure.
 */
export function permitAuthDestination(ev: Eval, env: Env, recipient: string): Status {
  const r = env.resolve(recipient);
  if (r.fail) return dictRetry(ev, recipient);
  if (!r.recipient.includes('@')) return OK;
  // Routed mail's real destination is decided by the next hop: never authorized.
  if (!env.allowUntrustedRouting && r.routed) return DUNNO;
  if (r.class === 'local' || r.class === 'relay') return OK;
  return DUNNO;
}

function unauthDestination(env: Env, code: number, dsn: string) {
  return (ev: Eval): Status => {
    const rcpt = ev.recipient;
    if (rcpt === undefined) return DUNNO;
    const st = permitAuthDestination(ev, env, rcpt);
    if (st === OK) return DUNNO;
    if (st !== DUNNO) return st;
    return reject(ev, 'policy', code, dsn, `<${rcpt}>: Relay access denied`);
  };
}

export const RELAY_RESTRICTIONS: readonly RestrictionDef[] = [
  {
    name: 'permit_auth_destination',
    args: 0,
    compile: (_a, cx) => (ev) => {
      if (ev.recipient === undefined) return DUNNO;
      const st = permitAuthDestination(ev, cx.env, ev.recipient);
      return st === OK ? ev.permit() : st;
    },
  },
  {
    name: 'reject_unauth_destination',
    args: 0,
    compile: (_a, cx) => unauthDestination(cx.env, cx.env.codes.relay_domains_reject_code!, '5.7.1'),
  },
  {
    name: 'defer_unauth_destination',
    args: 0,
    compile: (_a, cx) => unauthDestination(cx.env, cx.env.codes.relay_domains_reject_code! - 100, '4.7.1'),
  },
];
