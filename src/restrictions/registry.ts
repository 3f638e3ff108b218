/**
 * @module restrictions/registry
 * SUMMARY: the closed Map of restriction names (lowercase, as Postfix compares them without
 * case) to definitions, and compileList(), which turns a parameter's tokens into closures
 * once per configuration snapshot. A definition says how many tokens it takes as argument
 * ("check_client_access hash:x", "reject_rbl_client zen.example", "sleep 1") and compiles
 * them; a bare "type:table" stands for the list's default access check; any other name is
 * looked up among smtpd_restriction_classes.
 * DIAGNOSTICS: an unknown name, a missing or malformed argument and an unusable table
 * become Problems (severity error) at the parameter's main.cf line; the compiled entry then
 * answers 451 4.3.5 Server configuration error at run time, so an error never permits.
 * SEE ALSO: Postfix smtpd_check.c smtpd_check_parse(), generic_checks(); postconf(5).
 */
import type { Config } from '../config/config.js';
import type { Table } from '../tables/table.js';
import type { DnsClient } from '../dns/resolver.js';
import type { DnsxlCache } from '../dns/dnsbl.js';
import type { ResolvedAddress } from '../mail/address.js';
import type { NetworkList } from '../mail/mynetworks.js';
import { genericChecks, serverError, type CompiledList, type CompiledRestriction, type RunFn } from './evaluate.js';
import type { PolicyClient } from './policy-client.js';

/** What restrictions share at run time; built once per policy snapshot. */
export interface Env {
  readonly config: Config;
  readonly dns: DnsClient;
  readonly dnsxl: DnsxlCache;
  readonly localUsers: { exists(name: string): boolean };
  readonly now: () => number;
  readonly mynetworks: NetworkList;
  /** smtpd_access_maps is listed in parent_domain_matches_subdomains. */
  readonly accessParentMatches: boolean;
  readonly recipientDelimiter: string;
  readonly nullAccessKey: string;
  readonly allowUntrustedRouting: boolean;
  readonly smtputf8: boolean;
  readonly codes: Readonly<Record<string, number>>;
  /** reject_tempfail_action and friends: true = defer_if_permit, false = defer. */
  readonly tempfail: { readonly unknownHelo: boolean; readonly unknownAddress: boolean };
  readonly localRecipientMaps: readonly Table[];
  readonly rblReplyMaps: readonly Table[];
  /** The default_rbl_reply template, unexpanded. */
  readonly defaultRblReply: string;
  /** Client addresses that are "ours" (inet_interfaces; for permit_inet_interfaces). */
  readonly ownAddresses: ReadonlySet<string>;
  /** Resolve an address as trivial-rewrite would (cached). */
  resolve(addr: string): ResolvedAddress;
  /** Compile the restriction list found on an access table's right-hand side (cached). */
  compileRhs(value: string): CompiledList | { error: string };
  policyClient(endpoint: string): PolicyClient;
  readonly policyTimeoutMs: number;
  readonly policyDefaultAction: string;
}

export interface CompileCtx {
  readonly env: Env;
  /** Where problems are reported: main.cf and the line of the parameter being compiled. */
  problem(message: string, severity?: 'error' | 'warning'): void;
  /** Open a table once per snapshot; its load problems are reported once. */
  table(spec: string): Table;
}

export interface RestrictionDef {
  /** Lowercase Postfix name. */
  readonly name: string;
  /** Tokens taken as argument: 0, or 1 for "name ARG". */
  readonly args: 0 | 1;
  /** What the argument must look like; checked before compile() is called. */
  readonly argKind?: 'table' | 'domain' | 'number' | 'endpoint';
  compile(arg: string | undefined, cx: CompileCtx, name: string): RunFn;
}

export type Registry = ReadonlyMap<string, RestrictionDef>;

export function buildRegistry(...groups: ReadonlyArray<readonly RestrictionDef[]>): Registry {
  const map = new Map<string, RestrictionDef>();
  for (const g of groups) for (const d of g) map.set(d.name, d);
  return map;
}

/** A definition that only reports the configuration error at run time. */
export function failing(why: string): RunFn {
  return (ev) => serverError(ev, why);
}

export interface ListCompiler {
  readonly registry: Registry;
  /** smtpd_restriction_classes: name → compiled list (compiled lazily, cycles reported). */
  classList(name: string, cx: CompileCtx): CompiledList | undefined;
  /** Bare "type:table": run the default access check of the list it appears in. */
  bareTable(spec: string, cx: CompileCtx): RunFn;
}

function argOk(kind: RestrictionDef['argKind'], arg: string): boolean {
  switch (kind) {
    case 'table':
      return arg.includes(':') || arg.startsWith('{');
    case 'number':
      return /^\d+$/.test(arg);
    case 'endpoint':
      return arg.includes(':');
    case 'domain':
      return !arg.includes(':') && arg !== '';
    default:
      return true;
  }
}

/** Compile TOKENS (one parameter's value, already split) into closures. */
export function compileList(tokens: readonly string[], lc: ListCompiler, cx: CompileCtx): CompiledList {
  const out: CompiledRestriction[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const lower = token.toLowerCase();
    if (lower === 'warn_if_reject') {
      out.push({ name: 'warn_if_reject', run: () => 0, warnIfReject: true });
      continue;
    }
    if (token.includes(':') || token.startsWith('{')) {
      out.push({ name: token, run: lc.bareTable(token, cx) });
      continue;
    }
    const def = lc.registry.get(lower);
    if (def) {
      let arg: string | undefined;
      if (def.args === 1) {
        arg = tokens[i + 1];
        if (arg === undefined || !argOk(def.argKind, arg)) {
          const need =
            def.argKind === 'table' ? 'need maptype:mapname' : def.argKind === 'endpoint' ? 'need transport:server' : def.argKind === 'number' ? 'need a number' : 'need a domain name';
          const why = arg === undefined ? `restriction ${lower} requires an argument (${need})` : `restriction ${lower}: bad argument "${arg}": ${need}`;
          cx.problem(why);
          out.push({ name: lower, run: failing(why) });
          // A bad argument is still consumed, as Postfix does, so the rest lines up.
          if (arg !== undefined) i++;
          continue;
        }
        i++;
      }
      out.push({ name: arg === undefined ? lower : `${lower} ${arg}`, run: def.compile(arg, cx, lower) });
      continue;
    }
    const cls = lc.classList(token, cx);
    if (cls) {
      const body = cls;
      out.push({ name: token, run: (ev, fr) => runNested(ev, body, fr) });
      continue;
    }
    const why = `unknown smtpd restriction: "${token}"`;
    cx.problem(why);
    out.push({ name: token, run: failing(why) });
  }
  return out;
}

function runNested(ev: Parameters<RunFn>[0], list: CompiledList, fr: Parameters<RunFn>[1]) {
  return genericChecks(ev, list, fr);
}

