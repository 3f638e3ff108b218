/**
 * @module restrictions/policy
 * SUMMARY: the restriction engine's entry point. compilePolicy(deps) compiles every
 * smtpd_*_restrictions list (and smtpd_restriction_classes) of one configuration snapshot
 * into closures and returns a Policy whose check* methods the SMTP listener, the policy
 * service and `greygate trace` call with the session's SessionState. The stage order and
 * smtpd_delay_reject follow smtpd_check.c: with delay_reject (the default) the client, helo
 * and sender lists run at RCPT time, before the relay and recipient lists, and every RCPT
 * ends with the implicit reject_unlisted_recipient, even after an explicit permit.
 * DIAGNOSTICS: compilePolicy() returns Problems (severity error, FILE:LINE of the
 * parameter in main.cf) for unknown restrictions, missing or bad arguments, unusable
 * tables, undefined restriction classes, and the open-relay safety check; run-time trouble
 * is answered 451 4.3.x and noted in fx.notes.
 * SEE ALSO: Postfix smtpd_check.c smtpd_check_client/helo/mail/rcpt/data/eod(),
 * SMTPD_ACCESS_README, postconf(5).
 */
import type { Problem } from '../errors.js';
import { ConfigError } from '../errors.js';
import type { Config } from '../config/config.js';
import type { Table } from '../tables/table.js';
import { DnsxlCache } from '../dns/dnsbl.js';
import type { DnsClient } from '../dns/resolver.js';
import { compileNetworkList, normalizeClientAddress } from '../mail/mynetworks.js';
import type { ClientInfo, Decision, SessionState, TransactionEffects } from './state.js';
import {
  CLASS_CLIENT,
  CLASS_DATA,
  CLASS_EOD,
  CLASS_HELO,
  CLASS_RECIPIENT,
  CLASS_SENDER,
  DUNNO,
  Eval,
  REJECT,
  genericChecks,
  internalForm,
  reject,
  serverError,
  type ClientView,
  type CompiledList,
  type Deferral,
  type Frame,
  type RunFn,
  type Status,
  type Where,
} from './evaluate.js';
import { splitList } from '../config/expand.js';
import { buildRegistry, compileList, failing, type CompileCtx, type Env, type ListCompiler, type Registry } from './registry.js';
import { ACCESS_RESTRICTIONS, accessCheck } from './access.js';
import { ADDRESS_RESTRICTIONS, checkRecipientRcptMaps, checkSenderRcptMaps } from './address.js';
import { CLIENT_RESTRICTIONS } from './client.js';
import { DNSBL_RESTRICTIONS } from './dnsbl.js';
import { GENERIC_RESTRICTIONS } from './generic.js';
import { GREYLIST_RESTRICTIONS, bindGreylist } from './greylist.js';
import type { Greylist } from '../greylist/greylist.js';
import { HELO_RESTRICTIONS } from './helo.js';
import { POLICY_RESTRICTIONS } from './policy-service.js';
import { RELAY_RESTRICTIONS, buildResolver, interfaceAddresses } from './relay.js';
import { createPolicyClient, type PolicyClient } from './policy-client.js';

export interface PolicyDeps {
  readonly config: Config;
  /** Opens "type:name" relative to the config directory (tables/open.ts openTable). */
  openTable(spec: string): Table;
  readonly dns: DnsClient;
  /** Mailbox users: a local recipient whose local-part is a user exists. */
  readonly localUsers: { exists(name: string): boolean };
  readonly now?: () => number;
  /** Policy-service connections; default: TCP/UNIX sockets (restrictions/policy-client.ts). */
  policyClient?(endpoint: string): PolicyClient;
  /**
   * The greylist check_greylist uses (greylist/greylist.ts openGreylist); without it
   * check_greylist fails closed (451 4.3.5).
   */
  readonly greylist?: Greylist;
  /**
   * Include each table's own load problems in `problems` (default true). Set false when the
   * caller already reports them (a TableCache generation), so none is printed twice.
   */
  readonly reportTableProblems?: boolean;
}

export interface Policy {
  checkConnect(s: SessionState, fx: TransactionEffects): Promise<Decision>;
  checkHelo(s: SessionState, fx: TransactionEffects): Promise<Decision>;
  checkMail(s: SessionState, fx: TransactionEffects): Promise<Decision>;
  checkRcpt(s: SessionState, fx: TransactionEffects): Promise<Decision>;
  checkData(s: SessionState, fx: TransactionEffects): Promise<Decision>;
  checkEndOfData(s: SessionState, fx: TransactionEffects): Promise<Decision>;
  /** Close policy-service connections (call when a new snapshot replaces this one). */
  close(): void;
}

/** The restrictions Postfix knows but removed in 3.9: a configuration error, as there. */
const REMOVED: Record<string, string> = {
  check_relay_domains: 'reject_unauth_destination',
  reject_maps_rbl: 'reject_rbl_client domain-name',
  permit_naked_ip_address: 'permit_mynetworks or permit_sasl_authenticated',
};

const REMOVED_RESTRICTIONS = Object.entries(REMOVED).map(([name, instead]) => ({
  name,
  args: 0 as const,
  compile: (_a: string | undefined, cx: CompileCtx) => {
    const why = `support for restriction "${name}" has been removed in Postfix 3.9; instead, specify "${instead}"`;
    cx.problem(why);
    return failing(why);
  },
}));

/** Every restriction name greygate knows. */
export const REGISTRY: Registry = buildRegistry(
  GENERIC_RESTRICTIONS,
  CLIENT_RESTRICTIONS,
  HELO_RESTRICTIONS,
  ADDRESS_RESTRICTIONS,
  RELAY_RESTRICTIONS,
  ACCESS_RESTRICTIONS,
  DNSBL_RESTRICTIONS,
  POLICY_RESTRICTIONS,
  GREYLIST_RESTRICTIONS,
  REMOVED_RESTRICTIONS,
);

/** The open-relay safety net: one of these must be in the relay or recipient list. */
const RCPT_REQUIRED = ['reject_unauth_destination', 'defer_unauth_destination', 'reject', 'defer', 'defer_if_permit', 'check_relay_domains'];

export const OPEN_RELAY_MESSAGE =
  'in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: ' +
  RCPT_REQUIRED.slice(0, -1).join(', ') +
  ' or ' +
  RCPT_REQUIRED[RCPT_REQUIRED.length - 1];

const CODE_PARAMS = [
  'access_map_reject_code',
  'access_map_defer_code',
  'reject_code',
  'defer_code',
  'relay_domains_reject_code',
  'unknown_local_recipient_reject_code',
  'invalid_hostname_reject_code',
  'non_fqdn_reject_code',
  'unknown_client_reject_code',
  'unknown_hostname_reject_code',
  'unknown_address_reject_code',
  'maps_rbl_reject_code',
  'plaintext_reject_code',
  'multi_recipient_bounce_reject_code',
];

type ListName = 'client' | 'helo' | 'sender' | 'relay' | 'recipient' | 'data' | 'eod';

const LIST_PARAMS: Record<ListName, string> = {
  client: 'smtpd_client_restrictions',
  helo: 'smtpd_helo_restrictions',
  sender: 'smtpd_sender_restrictions',
  relay: 'smtpd_relay_restrictions',
  recipient: 'smtpd_recipient_restrictions',
  data: 'smtpd_data_restrictions',
  eod: 'smtpd_end_of_data_restrictions',
};

/** Per-session memory across stages: the defer_if_permit raised by each earlier stage. */
interface Memo {
  client: Deferral | null;
  helo: Deferral | null;
  sender: Deferral | null;
}

const PEER_STATUSES = new Set(['ok', 'temp', 'perm', 'forged']);

interface CachedView extends ClientView {
  readonly source: string;
  readonly nameStatusIn: ClientInfo['nameStatus'];
}

function clientView(c: ClientInfo): CachedView {
  const addr = normalizeClientAddress(c.address);
  const nameStatus = c.nameStatus && PEER_STATUSES.has(c.nameStatus) ? c.nameStatus : c.name.toLowerCase() === 'unknown' ? 'perm' : 'ok';
  const reverseNameStatus =
    c.reverseNameStatus && PEER_STATUSES.has(c.reverseNameStatus) ? c.reverseNameStatus : c.reverseName.toLowerCase() === 'unknown' ? 'perm' : 'ok';
  return { addr, name: c.name, reverseName: c.reverseName, namaddr: `${c.name}[${addr}]`, nameStatus, reverseNameStatus, source: c.address, nameStatusIn: c.nameStatus };
}

/** has_required(): a working reject is in LIST (or a class it names) before any "permit". */
function hasRequired(tokens: readonly string[], classes: ReadonlyMap<string, readonly string[]>, seen: Set<string>): boolean {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!.toLowerCase();
    if (t === 'warn_if_reject' && i + 1 < tokens.length) {
      i++;
      continue;
    }
    if (t === 'permit') return false;
    if (RCPT_REQUIRED.includes(t)) return true;
    const body = classes.get(tokens[i]!);
    if (body && !seen.has(tokens[i]!)) {
      seen.add(tokens[i]!);
      if (hasRequired(body, classes, seen)) return true;
    }
  }
  return false;
}

function intParam(config: Config, name: string, problems: Problem[], fallback: number): number {
  try {
    return config.int(name);
  } catch (err) {
    if (err instanceof ConfigError) {
      problems.push({ file: config.file, line: config.lineOf(name), severity: 'error', message: err.message.replace(/^[^:]*:\d+: /, '') });
      return fallback;
    }
    throw err;
  }
}

function boolParam(config: Config, name: string, problems: Problem[], fallback: boolean): boolean {
  try {
    return config.bool(name);
  } catch (err) {
    if (err instanceof ConfigError) {
      problems.push({ file: config.file, line: config.lineOf(name), severity: 'error', message: err.message.replace(/^[^:]*:\d+: /, '') });
      return fallback;
    }
    throw err;
  }
}

const CODE_DEFAULTS: Record<string, number> = {
  access_map_reject_code: 554,
  access_map_defer_code: 450,
  reject_code: 554,
  defer_code: 450,
  relay_domains_reject_code: 554,
  unknown_local_recipient_reject_code: 550,
  invalid_hostname_reject_code: 501,
  non_fqdn_reject_code: 504,
  unknown_client_reject_code: 450,
  unknown_hostname_reject_code: 450,
  unknown_address_reject_code: 450,
  maps_rbl_reject_code: 554,
  plaintext_reject_code: 450,
  multi_recipient_bounce_reject_code: 550,
};

/** Compile one configuration snapshot into a Policy. Never throws for a user's mistake. */
export function compilePolicy(deps: PolicyDeps): { policy: Policy; problems: Problem[] } {
  const config = deps.config;
  const problems: Problem[] = [];
  const file = config.file;
  const tables = new Map<string, Table>();
  const openTable = (spec: string): Table => {
    let t = tables.get(spec);
    if (!t) {
      t = deps.openTable(spec);
      tables.set(spec, t);
      if (deps.reportTableProblems !== false) for (const p of t.problems) problems.push(p);
    }
    return t;
  };
  const pdms = new Set(config.list('parent_domain_matches_subdomains').map((s) => s.toLowerCase()));

  const codes: Record<string, number> = {};
  for (const name of CODE_PARAMS) codes[name] = intParam(config, name, problems, CODE_DEFAULTS[name]!);
  codes.show_user_unknown_table_name = boolParam(config, 'show_user_unknown_table_name', problems, true) ? 1 : 0;

  const mynetworks = compileNetworkList(config.list('mynetworks'), {
    param: 'mynetworks',
    file,
    line: config.lineOf('mynetworks'),
    parentMatches: pdms.has('mynetworks'),
    openTable,
  });
  problems.push(...mynetworks.problems);
  const ownAddresses = interfaceAddresses(config.list('inet_interfaces'));
  const resolver = buildResolver(config, openTable, problems, ownAddresses);
  const mapsOf = (param: string): Table[] => {
    const out: Table[] = [];
    for (const spec of config.list(param)) {
      if (!spec.includes(':')) {
        problems.push({ file, line: config.lineOf(param), severity: 'error', message: `${param}: "${spec}" is not a type:table reference` });
        continue;
      }
      out.push(openTable(spec));
    }
    return out;
  };

  const clients = new Map<string, PolicyClient>();
  const makeClient = deps.policyClient ?? createPolicyClient;
  const tempfail = (name: string): boolean => config.get(name).toLowerCase() !== 'defer';
  let policyTimeoutMs = 100_000;
  try {
    policyTimeoutMs = config.time('smtpd_policy_service_timeout');
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push({ file, line: config.lineOf('smtpd_policy_service_timeout'), severity: 'error', message: err.message.replace(/^[^:]*:\d+: /, '') });
  }

  const rhsCache = new Map<string, CompiledList>();
  const env: Env = {
    config,
    dns: deps.dns,
    dnsxl: new DnsxlCache(deps.dns, deps.now ?? Date.now),
    localUsers: deps.localUsers,
    now: deps.now ?? Date.now,
    mynetworks: mynetworks.list,
    accessParentMatches: pdms.has('smtpd_access_maps'),
    recipientDelimiter: config.get('recipient_delimiter'),
    nullAccessKey: config.get('smtpd_null_access_lookup_key'),
    allowUntrustedRouting: boolParam(config, 'allow_untrusted_routing', problems, false),
    smtputf8: false,
    codes,
    tempfail: { unknownHelo: tempfail('unknown_helo_hostname_tempfail_action'), unknownAddress: tempfail('unknown_address_tempfail_action') },
    localRecipientMaps: mapsOf('local_recipient_maps'),
    rblReplyMaps: mapsOf('rbl_reply_maps'),
    defaultRblReply: config.raw('default_rbl_reply') ?? '$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}',
    ownAddresses,
    resolve: (addr) => resolver.resolve(addr),
    compileRhs: (value) => {
      let list = rhsCache.get(value);
      if (!list) {
        // Problems in a table's right-hand side surface at run time (warning + 4.3.5).
        const sink: Problem[] = [];
        list = compileList(splitList(value), lc, ctxFor(sink, 0));
        if (rhsCache.size >= 1000) rhsCache.clear();
        rhsCache.set(value, list);
      }
      return list;
    },
    policyClient: (endpoint) => {
      let c = clients.get(endpoint);
      if (!c) {
        c = makeClient(endpoint);
        clients.set(endpoint, c);
      }
      return c;
    },
    policyTimeoutMs,
    policyDefaultAction: config.get('smtpd_policy_service_default_action'),
  };

  bindGreylist(env, deps.greylist);

  // Restriction classes: name -> tokens; compiled on first use, cycles reported.
  const classTokens = new Map<string, string[]>();
  for (const name of config.list('smtpd_restriction_classes')) {
    const value = config.raw(name) === undefined ? '' : config.get(name);
    if (value.trim() === '') {
      problems.push({ file, line: config.lineOf('smtpd_restriction_classes'), severity: 'error', message: `restriction class \`${name}' needs a definition` });
      continue;
    }
    classTokens.set(name, splitList(value));
  }
  const classCompiled = new Map<string, CompiledList>();
  const classBusy = new Set<string>();

  const bareTables = new Map<string, (defAcl: string) => RunFn>();
  const lc: ListCompiler = {
    registry: REGISTRY,
    classList(name, cx) {
      const tokens = classTokens.get(name);
      if (!tokens) return undefined;
      const done = classCompiled.get(name);
      if (done) return done;
      if (classBusy.has(name)) {
        cx.problem(`restriction class \`${name}' refers to itself`);
        return [{ name, run: failing(`restriction class ${name} refers to itself`) }];
      }
      classBusy.add(name);
      const body: CompiledList = compileList(tokens, lc, ctxFor(problems, config.lineOf(name)));
      classBusy.delete(name);
      classCompiled.set(name, body);
      return body;
    },
    bareTable(spec, cx) {
      let byAcl = bareTables.get(spec);
      if (!byAcl) {
        const table = cx.table(spec);
        const runs = new Map<string, RunFn>();
        byAcl = (defAcl: string) => {
          let r = runs.get(defAcl);
          if (!r) {
            r = accessCheck(defAcl, table, env);
            runs.set(defAcl, r);
          }
          return r;
        };
        bareTables.set(spec, byAcl);
      }
      const get = byAcl;
      const listClass = currentListClass;
      if (listClass !== null && (listClass === CLASS_DATA || listClass === CLASS_EOD)) {
        cx.problem(`specify one of (check_client_access, check_reverse_client_hostname_access, check_helo_access, check_sender_access, check_recipient_access) before ${listClass} restriction "${spec}"`);
      }
      return (ev, fr) => {
        if (fr.defAcl === null) {
          return serverError(ev, `specify one of (check_client_access, check_helo_access, check_sender_access, check_recipient_access) before ${fr.replyClass} restriction "${spec}"`);
        }
        return get(fr.defAcl)(ev, fr);
      };
    },
  };

  let currentListClass: string | null = null;
  function ctxFor(sink: Problem[], line: number): CompileCtx {
    return {
      env,
      problem: (message, severity = 'error') => sink.push({ file, line, severity, message }),
      table: openTable,
    };
  }

  const listTokens = {} as Record<ListName, string[]>;
  const lists = {} as Record<ListName, CompiledList>;
  const LIST_CLASSES: Record<ListName, string> = {
    client: CLASS_CLIENT,
    helo: CLASS_HELO,
    sender: CLASS_SENDER,
    relay: CLASS_RECIPIENT,
    recipient: CLASS_RECIPIENT,
    data: CLASS_DATA,
    eod: CLASS_EOD,
  };
  for (const key of Object.keys(LIST_PARAMS) as ListName[]) {
    const param = LIST_PARAMS[key];
    const tokens = splitList(config.get(param));
    listTokens[key] = tokens;
    currentListClass = LIST_CLASSES[key];
    lists[key] = compileList(tokens, lc, ctxFor(problems, config.lineOf(param)));
    currentListClass = null;
    warnIgnored(tokens, (m) => problems.push({ file, line: config.lineOf(param), severity: 'warning', message: `${param}: ${m}` }));
  }

  // Every class is compiled now, used or not, so its mistakes surface at load time (as in
  // Postfix, which parses all smtpd_restriction_classes at startup).
  const ctxTop = ctxFor(problems, 0);
  for (const name of classTokens.keys()) lc.classList(name, ctxTop);

  const openRelaySafe = hasRequired(listTokens.recipient, classTokens, new Set()) || hasRequired(listTokens.relay, classTokens, new Set());
  if (!openRelaySafe) {
    const line = config.lineOf('smtpd_relay_restrictions') || config.lineOf('smtpd_recipient_restrictions');
    problems.push({ file, line, severity: 'error', message: OPEN_RELAY_MESSAGE });
  }

  const settings = {
    delayReject: boolParam(config, 'smtpd_delay_reject', problems, true),
    relayFirst: boolParam(config, 'smtpd_relay_before_recipient_restrictions', problems, true),
    rejectUnlistedRecipient: boolParam(config, 'smtpd_reject_unlisted_recipient', problems, true),
    rejectUnlistedSender: boolParam(config, 'smtpd_reject_unlisted_sender', problems, false),
    openRelaySafe,
  };

  const policy = makePolicy(lists, env, settings, () => {
    for (const c of clients.values()) c.close();
  });
  return { policy, problems };
}

/** Postfix warns at run time about restrictions that can never be reached. */
function warnIgnored(tokens: readonly string[], warn: (m: string) => void): void {
  for (let i = 0; i + 1 < tokens.length; i++) {
    const t = tokens[i]!.toLowerCase();
    const afterWarn = i > 0 && tokens[i - 1]!.toLowerCase() === 'warn_if_reject';
    if (t === 'permit' || ((t === 'reject' || t === 'defer') && !afterWarn)) {
      warn(`restriction \`${tokens[i + 1]}' after \`${t}' is ignored`);
      return;
    }
  }
}

interface Settings {
  readonly delayReject: boolean;
  readonly relayFirst: boolean;
  readonly rejectUnlistedRecipient: boolean;
  readonly rejectUnlistedSender: boolean;
  readonly openRelaySafe: boolean;
}

function decision(ev: Eval, status: Status, implicitRule: string | null): Decision {
  if (status === REJECT && ev.reply) {
    const r = ev.reply;
    return { kind: r.code >= 500 ? 'reject' : 'defer', reply: r, rule: ev.replyRule, disconnect: r.code === 421 || r.code === 521 };
  }
  // After DISCARD every later check is skipped: the DISCARD entry is what decided.
  return { kind: 'permit', rule: ev.permitRule ?? ev.fx.discard?.rule ?? implicitRule };
}

const PERMIT_NOTHING: Decision = { kind: 'permit', rule: null };

function makePolicy(lists: Record<ListName, CompiledList>, env: Env, st: Settings, close: () => void): Policy {
  const memos = new WeakMap<SessionState, Memo>();
  const views = new WeakMap<ClientInfo, CachedView>();
  const memoOf = (s: SessionState): Memo => {
    let m = memos.get(s);
    if (!m) {
      m = { client: null, helo: null, sender: null };
      memos.set(s, m);
    }
    return m;
  };
  const viewOf = (c: ClientInfo): ClientView => {
    let v = views.get(c);
    // Recomputed if the listener changed the object in place (XCLIENT NAME=/ADDR=).
    if (!v || v.name !== c.name || v.reverseName !== c.reverseName || v.source !== c.address || v.nameStatusIn !== c.nameStatus) {
      v = clientView(c);
      views.set(c, v);
    }
    return v;
  };
  const newEval = (s: SessionState, fx: TransactionEffects, stage: Eval['stage'], where: Where): Eval => new Eval(s, fx, viewOf(s.client), stage, where);

  /** smtpd_check_client(): true when the list rejected (ev.reply is set). */
  async function client(ev: Eval, memo: Memo): Promise<Status> {
    ev.deferIfPermit = null;
    ev.reset();
    let status: Status = DUNNO;
    if (lists.client.length) {
      status = await genericChecks(ev, lists.client, { replyName: ev.client.namaddr, replyClass: CLASS_CLIENT, defAcl: 'check_client_access' });
    }
    memo.client = ev.deferIfPermit;
    return status;
  }

  async function helo(ev: Eval, memo: Memo): Promise<Status> {
    if (ev.helo === undefined) return DUNNO;
    ev.deferIfPermit = memo.client;
    ev.reset();
    let status: Status = DUNNO;
    if (lists.helo.length) {
      status = await genericChecks(ev, lists.helo, { replyName: ev.helo, replyClass: CLASS_HELO, defAcl: 'check_helo_access' });
    }
    memo.helo = ev.deferIfPermit;
    return status;
  }

  async function mail(ev: Eval, memo: Memo): Promise<Status> {
    const sender = ev.sender;
    if (sender === undefined) return DUNNO;
    ev.deferIfPermit = memo.helo ?? memo.client;
    ev.senderRcptmapChecked = false;
    ev.reset();
    let status: Status = DUNNO;
    if (lists.sender.length) {
      status = await genericChecks(ev, lists.sender, { replyName: sender, replyClass: CLASS_SENDER, defAcl: 'check_sender_access' });
    }
    memo.sender = ev.deferIfPermit;
    if (st.rejectUnlistedSender && status !== REJECT && !ev.senderRcptmapChecked && !ev.fx.discard && sender !== '') {
      status = checkSenderRcptMaps(ev, env, sender);
    }
    return status;
  }

  /** Apply a pending defer_if_permit to a request that would be permitted. */
  function applyDeferIfPermit(ev: Eval, status: Status): Status {
    if (status !== REJECT && ev.deferIfPermit) {
      const d = ev.deferIfPermit;
      return reject(ev, d.cls, d.code, d.dsn, d.text, d.rule);
    }
    return status;
  }

  return {
    async checkConnect(s, fx) {
      if (st.delayReject) return PERMIT_NOTHING;
      const ev = newEval(s, fx, 'connect', 'CONNECT');
      // Before MAIL FROM there is no transaction: message actions (HOLD, FILTER...) are skipped.
      ev.sender = undefined;
      ev.recipient = undefined;
      const status = await client(ev, memoOf(s));
      return decision(ev, status, LIST_PARAMS.client);
    },

    async checkHelo(s, fx) {
      if (st.delayReject) return PERMIT_NOTHING;
      const ev = newEval(s, fx, 'helo', s.protocol === 'ESMTP' ? 'EHLO' : 'HELO');
      ev.sender = undefined;
      ev.recipient = undefined;
      const status = await helo(ev, memoOf(s));
      return decision(ev, status, LIST_PARAMS.helo);
    },

    async checkMail(s, fx) {
      if (st.delayReject) return PERMIT_NOTHING;
      const ev = newEval(s, fx, 'mail', 'MAIL');
      ev.recipient = undefined;
      const status = await mail(ev, memoOf(s));
      return decision(ev, status, LIST_PARAMS.sender);
    },

    async checkRcpt(s, fx) {
      const recipient = s.recipient;
      if (recipient === undefined) return PERMIT_NOTHING;
      // RFC 5321 4.5.1: "postmaster" without a domain must always be accepted.
      if (recipient.toLowerCase() === 'postmaster') return { kind: 'permit', rule: 'postmaster' };
      const ev = newEval(s, fx, 'rcpt', 'RCPT');
      if (!st.openRelaySafe) {
        serverError(ev, OPEN_RELAY_MESSAGE, LIST_PARAMS.relay);
        return decision(ev, REJECT, null);
      }
      const memo = memoOf(s);
      ev.recipientRcptmapChecked = false;
      if (st.delayReject) {
        if ((await client(ev, memo)) === REJECT) return decision(ev, REJECT, null);
        if ((await helo(ev, memo)) === REJECT) return decision(ev, REJECT, null);
        if ((await mail(ev, memo)) === REJECT) return decision(ev, REJECT, null);
      }
      ev.deferIfPermit = memo.sender;
      ev.reset();
      ev.permitRule = null;
      const fr: Frame = { replyName: recipient, replyClass: CLASS_RECIPIENT, defAcl: 'check_recipient_access' };
      const order = st.relayFirst ? [lists.relay, lists.recipient] : [lists.recipient, lists.relay];
      const names = st.relayFirst ? [LIST_PARAMS.relay, LIST_PARAMS.recipient] : [LIST_PARAMS.recipient, LIST_PARAMS.relay];
      let status: Status = DUNNO;
      for (let n = 0; n < 2; n++) {
        const list = order[n]!;
        status = list.length ? await genericChecks(ev, list, fr) : DUNNO;
        if (status === REJECT) break;
      }
      status = applyDeferIfPermit(ev, status);
      // The implicit reject_unlisted_recipient: applies after an explicit permit too.
      if (st.rejectUnlistedRecipient && status !== REJECT && !ev.recipientRcptmapChecked && !ev.fx.discard) {
        const saved = ev.rule;
        ev.rule = 'reject_unlisted_recipient';
        const r = checkRecipientRcptMaps(ev, env, recipient);
        ev.rule = saved;
        if (r === REJECT) status = REJECT;
      }
      return decision(ev, status, names[1]!);
    },

    async checkData(s, fx) {
      const ev = newEval(s, fx, 'data', 'DATA');
      // One verdict for all recipients: with several, none is named.
      ev.recipient = s.recipients.length === 1 ? internalForm(s.recipients[0]!) : undefined;
      ev.deferIfPermit = null;
      ev.reset();
      let status: Status = DUNNO;
      if (lists.data.length) status = await genericChecks(ev, lists.data, { replyName: 'DATA', replyClass: CLASS_DATA, defAcl: null });
      status = applyDeferIfPermit(ev, status);
      return decision(ev, status, LIST_PARAMS.data);
    },

    async checkEndOfData(s, fx) {
      const ev = newEval(s, fx, 'end-of-data', 'END-OF-MESSAGE');
      ev.recipient = s.recipients.length === 1 ? internalForm(s.recipients[0]!) : undefined;
      ev.deferIfPermit = null;
      ev.reset();
      let status: Status = DUNNO;
      if (lists.eod.length) status = await genericChecks(ev, lists.eod, { replyName: 'END-OF-MESSAGE', replyClass: CLASS_EOD, defAcl: null });
      status = applyDeferIfPermit(ev, status);
      return decision(ev, status, LIST_PARAMS.eod);
    },

    close,
  };
}
