/**
 * @module delivery/router
 * SUMMARY: where a recipient goes, as trivial-rewrite(8) decides it: the address class
 * (mydestination → local, relay_domains → relay, anything else → default), that class's
 * transport (local_transport, relay_transport, default_transport) and nexthop (relayhost or
 * the recipient domain), then transport_maps overriding either or both (transport(5)).
 * Exports Router { route(address) } → RouteResult, and parseTransport().
 * DIAGNOSTICS: a failing transport_maps or domain-list lookup is { kind: 'fail' } (the
 * scheduler defers with 4.3.0, never guesses a route); a malformed address routes to
 * `error:5.1.3 bad address syntax`.
 * SEE ALSO: transport(5), trivial-rewrite(8) resolve.c and transport.c, postconf(5) relayhost.
 */
import type { Config } from '../config/config.js';
import type { Problem } from '../errors.js';
import type { Table } from '../tables/table.js';
import { Maps } from '../tables/maps.js';
import { splitExtension } from '../mail/address.js';
import { buildResolver, interfaceAddresses, type AddressResolver } from '../restrictions/relay.js';

export interface Route {
  /** `smtp`, `relay`, `local`, `error`, `retry`, `discard`, or whatever transport_maps names. */
  readonly transport: string;
  /** Transport-dependent: `[host]:port`, `host`, the local hostname, or the error text. */
  readonly nexthop: string;
  /** What decided: `transport_maps FILE:LINE`, `relayhost`, `default_transport` ... */
  readonly rule: string;
}

export type RouteResult =
  | { readonly kind: 'route'; readonly route: Route; /** the resolved recipient (lowercase, internal form) */ readonly recipient: string }
  | { readonly kind: 'fail'; readonly reason: string };

/** parseTransport - split `transport:nexthop`; a value without a colon is all transport (transport.c) */
export function parseTransport(value: string): { transport: string; nexthop: string } {
  const v = value.trim();
  const colon = v.indexOf(':');
  if (colon < 0) return { transport: v, nexthop: '' };
  return { transport: v.slice(0, colon).trim(), nexthop: v.slice(colon + 1).trim() };
}

export class Router {
  private readonly resolver: AddressResolver;
  private readonly transportMaps: Maps | null;
  private readonly delimiters: string;
  private readonly parentStyle: boolean;
  private readonly relayhost: string;
  private readonly defaults: Record<'local' | 'relay' | 'default', { transport: string; nexthop: string; param: string }>;

  constructor(config: Config, openTable: (spec: string) => Table, problems: Problem[]) {
    this.resolver = buildResolver(config, openTable, problems, interfaceAddresses(config.list('inet_interfaces')));
    const specs = config.list('transport_maps');
    this.transportMaps = specs.length ? new Maps('transport_maps', specs.map(openTable)) : null;
    this.delimiters = config.get('recipient_delimiter');
    this.parentStyle = config.list('parent_domain_matches_subdomains').includes('transport_maps');
    // relayhost may be a list since Postfix 3.5; one next hop is what greygate routes to.
    this.relayhost = config.list('relayhost')[0] ?? '';
    const cls = (param: string) => ({ ...parseTransport(config.get(param)), param });
    this.defaults = { local: cls('local_transport'), relay: cls('relay_transport'), default: cls('default_transport') };
    if (this.defaults.local.nexthop === '') this.defaults.local.nexthop = config.get('myhostname');
  }

  /** isLocalDomain - is DOMAIN a final destination here (mydestination, our [address])? */
  isLocalDomain(domain: string): boolean | 'error' {
    return this.resolver.context.isLocal(domain);
  }

  /** route - transport and nexthop for ADDRESS (a recipient in internal form) */
  route(address: string): RouteResult {
    const r = this.resolver.resolve(address === '' ? 'MAILER-DAEMON' : address);
    if (r.fail) return { kind: 'fail', reason: `address resolver failure for ${address}` };
    if (r.error) return { kind: 'route', recipient: r.recipient, route: { transport: 'error', nexthop: '5.1.3 bad address syntax', rule: 'trivial-rewrite' } };
    const def = this.defaults[r.class];
    let transport = def.transport;
    let nexthop = def.nexthop;
    let rule = def.param;
    if (nexthop === '' && r.class !== 'local') {
      nexthop = this.relayhost || r.domain;
      if (this.relayhost) rule = 'relayhost';
    }
    if (this.transportMaps) {
      const hit = this.lookup(r.recipient, r.domain);
      if (hit.kind === 'fail') return hit;
      if (hit.kind === 'hit') {
        const t = parseTransport(hit.value);
        // transport(5) RESULT FORMAT: empty transport keeps the class transport; a new
        // transport with an empty nexthop resets the nexthop to the recipient domain.
        if (t.transport !== '' || t.nexthop !== '') rule = `transport_maps ${hit.source}`;
        if (t.transport !== '') {
          transport = t.transport;
          nexthop = t.nexthop !== '' ? t.nexthop : r.domain;
        } else if (t.nexthop !== '') {
          nexthop = t.nexthop;
        }
      }
    }
    return { kind: 'route', recipient: r.recipient, route: { transport, nexthop, rule } };
  }

  /* find_transport(): full address (every table), address without extension, the domain
   * and its parents (exact-key tables only), then the "*" wildcard. */
  private lookup(recipient: string, domain: string): { kind: 'hit'; value: string; source: string } | { kind: 'miss' } | { kind: 'fail'; reason: string } {
    const maps = this.transportMaps!;
    const keys: Array<[string, boolean]> = [[recipient, false]];
    const at = recipient.lastIndexOf('@');
    if (this.delimiters && at > 0) {
      const { base, ext } = splitExtension(recipient.slice(0, at), this.delimiters);
      if (ext !== null) keys.push([`${base}@${domain}`, true]);
    }
    for (let name = domain; name !== ''; ) {
      keys.push([name, true]);
      const dot = name.indexOf('.', 1);
      if (dot < 0) break;
      name = this.parentStyle ? name.slice(dot + 1) : name.slice(dot);
    }
    keys.push(['*', true]);
    for (const [key, fixedOnly] of keys) {
      const res = maps.lookup(key, { fixedOnly });
      if (res.kind === 'hit') return { kind: 'hit', value: res.value, source: res.source };
      if (res.kind === 'error') return { kind: 'fail', reason: `transport_maps lookup of ${key}: ${res.error.message}` };
    }
    return { kind: 'miss' };
  }
}
