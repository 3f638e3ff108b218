/**
 * @module runtime
 * SUMMARY: compile one configuration snapshot into what the listeners use: the policy of
 * each SMTP service, the client lists (mynetworks, exclusions, XCLIENT hosts) and every
 * table the configuration names. Shared by `start` (gateway.ts) and `check`, so that
 * `greygate check` reports exactly what a start or reload would refuse.
 * DIAGNOSTICS: returns every Problem (tables, restriction lists, client lists); nothing is
 * thrown for a user's mistake.
 * SEE ALSO: postfix(1) check.
 */
import type { Problem } from './errors.js';
import type { Config } from './config/config.js';
import { PARAMS } from './config/params.js';
import type { TableCache } from './tables/open.js';
import { compilePolicy } from './restrictions/policy.js';
import { compileNetworkList, type NetworkList } from './mail/mynetworks.js';
import type { DnsClient } from './dns/resolver.js';
import type { PolicyClient } from './restrictions/policy-client.js';
import type { Greylist } from './greylist/greylist.js';
import { compileChecks } from './checks/compile.js';
import { compilePolicyServicePolicy } from './policyd/policy.js';
import { POLICYD_POLICY } from './policyd/server.js';
import type { IpMatcher, SmtpdPolicy, SmtpdRuntime } from './smtpd/ports.js';
import type { DeliveryRuntime } from './delivery/scheduler.js';
import { compileDelivery } from './delivery/service.js';
import { postscreenProblems } from './smtpd/postscreen.js';

// master.cf's submission/smtps examples: only authenticated clients may send.
const SUBMISSION_OVERRIDES = { smtpd_relay_restrictions: 'permit_sasl_authenticated, reject' };

export interface CompiledRuntime {
  runtime: SmtpdRuntime;
  /** Routing and queue-manager settings of the same snapshot. */
  delivery: DeliveryRuntime;
  problems: Problem[];
  /** Every file the snapshot was built from, for the reload watcher. */
  files: Set<string>;
}

export interface LocalUsers {
  exists(name: string): boolean;
}

/** What an offline caller (`greygate trace`) substitutes for the daemon's own I/O. */
export interface RuntimeOptions {
  /** check_policy_service connections; default: real TCP/UNIX sockets. */
  policyClient?(endpoint: string): PolicyClient;
  /** The greylist check_greylist consults; without one it fails closed (451 4.3.5). */
  greylist?: Greylist;
}

export function compileRuntime(config: Config, tables: TableCache, dns: DnsClient, users: LocalUsers, options: RuntimeOptions = {}): CompiledRuntime {
  const problems: Problem[] = [];
  tables.beginGeneration();
  // alias_maps are in aliases(5) format (postalias), also where local_recipient_maps names them.
  const aliasSpecs = new Set(config.list('alias_maps'));
  const openTable = (spec: string) => tables.open(spec, { aliases: aliasSpecs.has(spec) });
  const policies = new Map<string, SmtpdPolicy>();
  const extra = {
    ...(options.policyClient ? { policyClient: options.policyClient } : {}),
    ...(options.greylist ? { greylist: options.greylist } : {}),
  };
  const main = compilePolicy({ config, openTable, dns, localUsers: users, reportTableProblems: false, ...extra });
  problems.push(...main.problems);
  policies.set('smtpd', main.policy);
  const subConfig = config.withOverrides(SUBMISSION_OVERRIDES);
  const sub = compilePolicy({ config: subConfig, openTable, dns, localUsers: users, reportTableProblems: false, ...extra });
  policies.set('submission', sub.policy);
  policies.set('smtps', sub.policy);
  // The policy service's own list (policy_service_restrictions), for a Postfix in front.
  const pd = compilePolicyServicePolicy({ config, openTable, dns, localUsers: users, reportTableProblems: false, ...extra });
  problems.push(...pd.problems);
  policies.set(POLICYD_POLICY, pd.policy);
  const list = (param: string): IpMatcher => {
    const { list: l, problems: p } = compileNetworkList(config.list(param), {
      param,
      file: config.file,
      line: config.lineOf(param),
      parentMatches: config.list('parent_domain_matches_subdomains').includes(param),
      openTable,
    });
    problems.push(...p);
    return matcher(l);
  };
  // Table problems of the check lists are reported by the TableCache generation below.
  const checks = compileChecks(config, openTable);
  // A bad postscreen_dnsbl_sites entry is fatal in Postfix: `check` and reload refuse it too.
  problems.push(...postscreenProblems(config, openTable));
  const runtime: SmtpdRuntime = {
    config,
    policies,
    checks,
    mynetworks: list('mynetworks'),
    bareNewlineExclusions: list('smtpd_forbid_bare_newline_exclusions'),
    xclientHosts: list('smtpd_authorized_xclient_hosts'),
    limitExceptions: list('smtpd_client_event_limit_exceptions'),
  };
  const delivery: DeliveryRuntime = compileDelivery(config, openTable, problems);
  // Tables named by other parameters (alias_maps, transport_maps, header_checks ...) are
  // opened now too, so that their errors stop a start/reload like any other.
  for (const def of PARAMS.values()) {
    if (def.kind.type !== 'maps') continue;
    for (const spec of config.list(def.name)) openTable(spec);
  }
  problems.push(...tables.endGeneration());
  const files = new Set<string>([config.file, ...tables.files()]);
  return { runtime, delivery, problems, files };
}

function matcher(l: NetworkList): IpMatcher {
  return (ip, name = 'unknown') => l.match(ip, name) === true;
}
