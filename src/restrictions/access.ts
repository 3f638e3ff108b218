/**
 * @module restrictions/access
 * SUMMARY: access(5) tables in restriction lists: checkTableResult() is the single parser of
 * a right-hand side (OK, all-numeric, REJECT, DEFER, 4NN/5NN text, DUNNO, DEFER_IF_PERMIT,
 * DEFER_IF_REJECT, HOLD, DISCARD, FILTER, REDIRECT, BCC, PREPEND, WARN, INFO, or a restriction
 * list), and the check_*_access restrictions search their table in access(5) key order
 * (mail/access-keys.ts): the first key found decides, whatever its value.
 * DIAGNOSTICS: a table lookup failure answers "451 4.3.5 <name>: Class rejected: Server
 * configuration error" (Postfix 3.x feeds that text through the same parser); an entry that
 * names a lookup table, or recurses more than 100 deep, is a 451 4.3.5 with a warning note.
 * SEE ALSO: access(5); Postfix smtpd_check.c check_table_result(), check_access(),
 * check_domain_access(), check_addr_access(), check_namadr_access(), check_mail_access().
 */
import type { LookupResult, Table } from '../tables/table.js';
import { addressKeys, hostKeys, lookupKey, mailKeys, type AccessKey } from '../mail/access-keys.js';
import {
  CLASS_CLIENT,
  CLASS_HELO,
  CLASS_RECIPIENT,
  CLASS_REV_CLIENT,
  CLASS_SENDER,
  DUNNO,
  OK,
  deferIf,
  deferIfPermitOrReject,
  dictRetry,
  dsnFix,
  dsnSplit,
  genericChecks,
  reject,
  serverError,
  type Eval,
  type Frame,
  type RunFn,
  type RunResult,
  type Status,
} from './evaluate.js';
import type { CompileCtx, Env, RestrictionDef } from './registry.js';

const RECURSION_LIMIT = 100;

/** is_header(): "Name: value" with a printable ASCII name. */
function isHeader(text: string): boolean {
  return /^[\x21-\x39\x3b-\x7e]+[ \t]*:/.test(text);
}

/** not_in_client_helo(): message actions need a mail transaction (MAIL FROM seen). */
function canDelegate(ev: Eval, table: string, action: string): boolean {
  if (ev.sender === undefined) {
    ev.note(
      'warning',
      `access table ${table}: with smtpd_delay_reject=no, action ${action} is always skipped in client or helo restrictions`,
    );
    return false;
  }
  return true;
}

/**
 * check_table_result(): translate one access(5) value into a result. TABLE names the table
 * (for warnings), DATUM is the key that matched, SOURCE is the entry's FILE:LINE.
 */
export function checkTableResult(ev: Eval, env: Env, table: string, value: string, datum: string, source: string, fr: Frame): RunResult {
  const rule = ev.ruleLocked ? ev.rule : source;
  const sp = value.search(/[ \t]/);
  const cmd = sp < 0 ? value : value.slice(0, sp);
  const text = sp < 0 ? '' : value.slice(sp).replace(/^\s+/, '');
  const name = fr.replyName;
  const cls = fr.replyClass;
  const codes = env.codes;
  switch (cmd.toUpperCase()) {
    case 'DUNNO':
      return DUNNO;
    case 'REJECT': {
      const d = dsnSplit('5.7.1', text);
      return reject(ev, 'policy', codes.access_map_reject_code!, dsnFix(d.dsn, cls), `<${name}>: ${cls} rejected: ${d.text || 'Access denied'}`, rule);
    }
    case 'DEFER': {
      const d = dsnSplit('4.7.1', text);
      return reject(ev, 'policy', codes.access_map_defer_code!, dsnFix(d.dsn, cls), `<${name}>: ${cls} rejected: ${d.text || 'Access denied'}`, rule);
    }
    case 'INFO':
      ev.note('info', text, rule);
      return DUNNO;
    case 'WARN':
      ev.note('warn', text, rule);
      return DUNNO;
    case 'FILTER':
      if (!canDelegate(ev, table, 'FILTER')) return DUNNO;
      if (text === '') ev.note('warning', `access table ${table} entry "${datum}" has FILTER entry without value`, rule);
      else if (!text.includes(':')) ev.note('warning', `access table ${table} entry "${datum}" requires transport:destination`, rule);
      else ev.fx.filter = { nexthop: text, rule };
      return DUNNO;
    case 'HOLD':
      if (!canDelegate(ev, table, 'HOLD') || ev.fx.hold) return DUNNO;
      ev.fx.hold = { text: `<${name}>: ${cls} ${text || 'triggers HOLD action'}`, rule };
      return DUNNO;
    case 'DISCARD':
      if (!canDelegate(ev, table, 'DISCARD')) return DUNNO;
      ev.fx.discard = { text: `<${name}>: ${cls} ${text || 'triggers DISCARD action'}`, rule };
      return ev.permit(rule);
    case 'REDIRECT':
      if (!canDelegate(ev, table, 'REDIRECT')) return DUNNO;
      if (!text.includes('@')) ev.note('warning', `access table ${table} entry "${datum}" requires user@domain target`, rule);
      else ev.fx.redirect = { address: text, rule };
      return DUNNO;
    case 'BCC':
      if (!canDelegate(ev, table, 'BCC')) return DUNNO;
      if (!text.includes('@')) ev.note('warning', `access table ${table} entry "${datum}" requires user@domain target`, rule);
      else ev.fx.bcc = { address: text, rule };
      return DUNNO;
    case 'DEFER_IF_PERMIT': {
      const d = dsnSplit('4.7.1', text);
      const saved = ev.rule;
      ev.rule = rule;
      const r = deferIfPermitOrReject(ev, true, 'policy', codes.access_map_defer_code!, dsnFix(d.dsn, cls), `<${name}>: ${cls} rejected: ${d.text || 'Service unavailable'}`);
      ev.rule = saved;
      return r;
    }
    case 'DEFER_IF_REJECT': {
      const d = dsnSplit('4.7.1', text);
      const saved = ev.rule;
      ev.rule = rule;
      deferIf(ev, 'reject', 'policy', codes.access_map_defer_code!, dsnFix(d.dsn, cls), `<${name}>: ${cls} rejected: ${d.text || 'Service unavailable'}`);
      ev.rule = saved;
      return DUNNO;
    }
    case 'PREPEND':
      if (!canDelegate(ev, table, 'PREPEND')) return DUNNO;
      if (ev.where === 'END-OF-MESSAGE') {
        ev.note('warning', `access table ${table}: action PREPEND must be used before smtpd_end_of_data_restrictions`, rule);
        return DUNNO;
      }
      if (!isHeader(text)) {
        ev.note('warning', `access table ${table} entry "${datum}" requires header: text`, rule);
        return DUNNO;
      }
      ev.fx.prepend.push({ header: text, rule });
      return DUNNO;
    default:
      break;
  }
  // An all-numeric value is OK: pop-before-smtp style tables store time stamps.
  if (/^\d+$/.test(value)) return ev.permit(rule);
  if (cmd.length === 3 && text !== '' && /^[45]\d\d$/.test(cmd)) {
    const d = dsnSplit(`${cmd[0]}.7.1`, text);
    return reject(ev, 'policy', Number(cmd), dsnFix(d.dsn, cls), `<${name}>: ${cls} rejected: ${d.text || 'Access denied'}`, rule);
  }
  const upper = cmd.toUpperCase();
  if (upper === 'OK' || upper === 'RELAY') return ev.permit(rule);
  if (value.includes(':')) {
    return serverError(ev, `access table ${table} has entry with lookup table: ${value}; define a restriction class and specify its name instead`, rule);
  }
  if (ev.recursion > RECURSION_LIMIT) {
    return serverError(ev, `access table ${table} entry ${value} causes unreasonable recursion`, rule);
  }
  const list = env.compileRhs(value);
  if ('error' in list) {
    return serverError(ev, `access table ${table} entry "${datum}": ${list.error}`, rule);
  }
  if (list.length === 0) {
    ev.note('warning', `access table ${table} entry ${datum} has empty value`, rule);
    return ev.permit(rule);
  }
  return runRhs(ev, list, fr, rule);
}

async function runRhs(ev: Eval, list: Parameters<typeof genericChecks>[1], fr: Frame, rule: string): Promise<Status> {
  const wasLocked = ev.ruleLocked;
  const savedRule = ev.rule;
  ev.ruleLocked = true;
  ev.rule = rule;
  try {
    return await genericChecks(ev, list, fr);
  } finally {
    ev.ruleLocked = wasLocked;
    ev.rule = savedRule;
  }
}

/** Result of one table search: `found` says a key matched (which stops further searching). */
export interface Search {
  readonly found: boolean;
  readonly status: RunResult;
}

const NOT_FOUND: Search = { found: false, status: DUNNO };

/** Search KEYS; a hit goes through checkTableResult(), a lookup error is a 4.3.5 reply. */
export function searchAccess(ev: Eval, env: Env, table: Table, keys: readonly AccessKey[], datum: string, fr: Frame): Search {
  const onStep = ev.s.onStep;
  for (let i = 0; i < keys.length; i++) {
    const r = lookupKey(table, keys[i]!);
    if (onStep) traceLookup(ev, onStep, table.spec, keys[i]!.key, r);
    if (r.kind === 'miss') continue;
    if (r.kind === 'hit') return { found: true, status: checkTableResult(ev, env, table.spec, r.value, datum, r.source, fr) };
    ev.note('warning', `${table.spec}: table lookup problem: ${r.error.message}`);
    return { found: true, status: checkTableResult(ev, env, table.spec, '451 4.3.5 Server configuration error', datum, ev.rule, fr) };
  }
  return NOT_FOUND;
}

function traceLookup(ev: Eval, onStep: NonNullable<Eval['s']['onStep']>, table: string, key: string, r: LookupResult): void {
  const base = { type: 'lookup', stage: ev.stage, depth: ev.recursion, table, key } as const;
  if (r.kind === 'hit') onStep({ ...base, result: 'hit', value: r.value, source: r.source });
  else if (r.kind === 'miss') onStep({ ...base, result: 'miss' });
  else onStep({ ...base, result: 'error', error: r.error.message });
}

/** check_namadr_access(): the host name (and parents), then the address (and truncations). */
export function checkNamadrAccess(ev: Eval, env: Env, table: Table, name: string, addr: string, fr: Frame): RunResult {
  const byName = searchAccess(ev, env, table, hostKeys(name, env.accessParentMatches), name, fr);
  if (byName.found) return byName.status;
  return searchAccess(ev, env, table, addressKeys(addr), addr, fr).status;
}

/**
 * check_mail_access(): search the resolved address. A recipient that carries sender-specified
 * routing never gets an OK from an access table (it could open a relay).
 */
export function checkMailAccess(ev: Eval, env: Env, table: Table, addr: string, fr: Frame): RunResult {
  const resolved = env.resolve(addr);
  if (resolved.fail) return dictRetry(ev, addr);
  if (!resolved.recipient.includes('@')) return DUNNO;
  const keys = mailKeys(resolved.recipient, env.recipientDelimiter, env.accessParentMatches);
  const res = searchAccess(ev, env, table, keys, resolved.recipient, fr);
  if (!res.found) return DUNNO;
  const suspicious = !env.allowUntrustedRouting && resolved.routed && fr.replyClass === CLASS_RECIPIENT;
  if (!suspicious) return res.status;
  const demote = (s: Status): Status => (s === OK ? DUNNO : s);
  const st = res.status;
  return typeof st === 'number' ? demote(st) : st.then(demote);
}

function tableArg(spec: string | undefined, cx: CompileCtx): Table {
  return cx.table(spec!);
}

/** Frame for an access check whose reply name differs from the list's (client checks). */
function frameFor(fr: Frame, replyName: string, replyClass: string): Frame {
  return fr.replyName === replyName && fr.replyClass === replyClass ? fr : { replyName, replyClass, defAcl: fr.defAcl };
}

/** The check_*_access restrictions, keyed by name, each compiled with its table. */
export function accessCheck(name: string, table: Table, env: Env): RunFn {
  switch (name) {
    case 'check_client_access':
      return (ev, fr) => checkNamadrAccess(ev, env, table, ev.client.name, ev.client.addr, frameFor(fr, ev.client.namaddr, CLASS_CLIENT));
    case 'check_reverse_client_hostname_access':
      return (ev, fr) => {
        const st = checkNamadrAccess(ev, env, table, ev.client.reverseName, ev.client.addr, frameFor(fr, ev.client.reverseName, CLASS_REV_CLIENT));
        return typeof st === 'number' ? forbidAllowlist(ev, name, st, ev.client.reverseName) : st.then((s) => forbidAllowlist(ev, name, s, ev.client.reverseName));
      };
    case 'check_helo_access':
      return (ev, fr) => {
        if (ev.helo === undefined) return DUNNO;
        return searchAccess(ev, env, table, hostKeys(ev.helo, env.accessParentMatches), ev.helo, frameFor(fr, ev.helo, CLASS_HELO)).status;
      };
    case 'check_sender_access':
      return (ev, fr) => {
        const sender = ev.sender;
        if (sender === undefined) return DUNNO;
        const f = frameFor(fr, sender, CLASS_SENDER);
        // The null sender is looked up as smtpd_null_access_lookup_key ("<>"), nothing else.
        if (sender === '') return searchAccess(ev, env, table, [{ key: env.nullAccessKey, partial: false }], env.nullAccessKey, f).status;
        return checkMailAccess(ev, env, table, sender, f);
      };
    case 'check_recipient_access':
      return (ev, fr) => {
        if (ev.recipient === undefined) return DUNNO;
        return checkMailAccess(ev, env, table, ev.recipient, frameFor(fr, ev.recipient, CLASS_RECIPIENT));
      };
    default:
      return (ev) => serverError(ev, `unexpected access restriction ${name}`);
  }
}

/** forbid_allowlist(): an unverified name must never grant OK. */
function forbidAllowlist(ev: Eval, name: string, status: Status, target: string): Status {
  if (!ev.fx.discard && status === OK) {
    ev.note('warning', `restriction ${name} returns OK for ${target}; this is not allowed for security reasons; use DUNNO instead of OK if you want to make an exception`);
    return serverError(ev);
  }
  return status;
}

const ACCESS_NAMES = ['check_client_access', 'check_reverse_client_hostname_access', 'check_helo_access', 'check_sender_access', 'check_recipient_access'];

export const ACCESS_RESTRICTIONS: readonly RestrictionDef[] = ACCESS_NAMES.map((n) => ({
  name: n,
  args: 1,
  argKind: 'table',
  compile: (arg, cx) => accessCheck(n, tableArg(arg, cx), cx.env),
}));
