/**
 * @module restrictions/evaluate
 * SUMMARY: the restriction-list walker (Postfix generic_checks) and the per-check state it
 * mutates (Eval): DUNNO continues, OK or REJECT ends the list; warn_if_reject turns the next
 * restriction's reject into a reject_warning note; DEFER_IF_PERMIT / DEFER_IF_REJECT are
 * remembered and applied by the stage driver; DISCARD stops every later check. reject()
 * is the single reply formatter (smtpd_check_reject): code and DSN are validated, the DSN
 * class follows the code, a 5xx becomes the pending defer_if_reject deferral.
 * DIAGNOSTICS: configuration trouble found while running (a bad reply code, a table error)
 * is pushed to fx.notes as a 'warning' and answered 451 4.3.5 or 451 4.3.0: errors never
 * permit.
 * SEE ALSO: Postfix smtpd_check.c generic_checks(), smtpd_check_reject(), defer_if().
 */
import { splitStatus, type Reply } from '../mail/reply.js';
import { toInternal } from '../mail/address.js';
import type { SessionState, Stage, TransactionEffects } from './state.js';

/** Restriction results (SMTPD_CHECK_*). */
export const DUNNO = 0;
export const OK = 1;
export const REJECT = 2;
export type Status = typeof DUNNO | typeof OK | typeof REJECT;

/**
 * Why a reply was made (MAIL_ERROR_*): software and data errors (4.3.5 / 4.3.0) are never
 * softened into warnings by warn_if_reject.
 */
export type ErrorClass = 'policy' | 'protocol' | 'bounce' | 'data' | 'software';

/** Reply classes as Postfix prints them after "<name>: ". */
export const CLASS_CLIENT = 'Client host';
export const CLASS_REV_CLIENT = 'Unverified Client host';
export const CLASS_HELO = 'Helo command';
export const CLASS_SENDER = 'Sender address';
export const CLASS_RECIPIENT = 'Recipient address';
export const CLASS_DATA = 'Data command';
export const CLASS_EOD = 'End-of-data';

/** A remembered DEFER_IF_PERMIT / DEFER_IF_REJECT: the first reason wins. */
export interface Deferral {
  readonly cls: ErrorClass;
  readonly code: number;
  readonly dsn: string;
  readonly text: string;
  readonly rule: string;
}

/** The list being walked: what "<name>: Class rejected:" says and what a bare table means. */
export interface Frame {
  readonly replyName: string;
  readonly replyClass: string;
  /** check_client_access etc.: what a bare "type:table" in this list stands for; null in DATA lists. */
  readonly defAcl: string | null;
}

export type RunResult = Status | Promise<Status>;
export type RunFn = (ev: Eval, fr: Frame) => RunResult;

export interface CompiledRestriction {
  /** The restriction name as written (its provenance in Decision.rule). */
  readonly name: string;
  readonly run: RunFn;
  /** warn_if_reject is a pseudo restriction handled by the walker itself. */
  readonly warnIfReject?: boolean;
}

export type CompiledList = readonly CompiledRestriction[];

/** Postfix's "where": the SMTP command being answered (policy protocol_state). */
export type Where = 'CONNECT' | 'HELO' | 'EHLO' | 'MAIL' | 'RCPT' | 'DATA' | 'END-OF-MESSAGE' | 'VRFY' | 'ETRN';

export interface ClientView {
  /** The client address, IPv4-mapped IPv6 turned into IPv4. */
  readonly addr: string;
  readonly name: string;
  readonly reverseName: string;
  /** "name[addr]". */
  readonly namaddr: string;
  readonly nameStatus: 'ok' | 'temp' | 'perm' | 'forged';
  readonly reverseNameStatus: 'ok' | 'temp' | 'perm' | 'forged';
}

/** The mutable state of one stage check (SMTPD_STATE's restriction fields). */
export class Eval {
  readonly s: SessionState;
  readonly fx: TransactionEffects;
  readonly client: ClientView;
  readonly stage: Stage;
  where: Where;
  helo: string | undefined;
  sender: string | undefined;
  recipient: string | undefined;
  recursion = 0;
  warnIfReject = 0;
  deferIfReject: Deferral | null = null;
  deferIfPermit: Deferral | null = null;
  /** The reply of the last REJECT status, and the rule that made it. */
  reply: Reply | null = null;
  replyRule = '';
  /** Provenance of what is being evaluated now: a restriction name or a table's FILE:LINE. */
  rule = '';
  /** While a table entry's right-hand side runs, its FILE:LINE stays the provenance. */
  ruleLocked = false;
  /** The rule of the last explicit permit. */
  permitRule: string | null = null;
  recipientRcptmapChecked = false;
  senderRcptmapChecked = false;

  constructor(s: SessionState, fx: TransactionEffects, client: ClientView, stage: Stage, where: Where) {
    this.s = s;
    this.fx = fx;
    this.client = client;
    this.stage = stage;
    this.where = where;
    this.helo = s.helo;
    this.sender = s.sender === undefined ? undefined : internalForm(s.sender);
    this.recipient = s.recipient === undefined ? undefined : internalForm(s.recipient);
  }

  /** SMTPD_CHECK_RESET: a new list set begins. */
  reset(): void {
    this.recursion = 0;
    this.warnIfReject = 0;
    this.deferIfReject = null;
  }

  /** A note for the log; 'warning' is the engine's own complaint (msg_warn), logged as warn. */
  note(event: 'warn' | 'info' | 'reject_warning' | 'warning', text: string, rule = this.rule): void {
    if (event === 'warning') this.fx.notes.push({ event: 'warn', text: `warning: ${text}`, rule, stage: this.stage });
    else this.fx.notes.push({ event, text, rule, stage: this.stage });
  }

  /** Record an explicit permit (smtpd_acl_permit). */
  permit(rule = this.rule): Status {
    this.permitRule = rule;
    return OK;
  }
}

/**
 * Addresses are checked in internal (unquoted) form, as smtpd does after parsing: a
 * quoted local-part such as "user@evil"@here becomes user@evil@here. Plain addresses are
 * passed through untouched.
 */
export function internalForm(addr: string): string {
  return /["\\(<]/.test(addr) ? toInternal(addr) : addr;
}

const REPLY_LIMIT = 510;

function dsnValid(dsn: string): boolean {
  return /^[245]\.\d{1,3}\.\d{1,3}$/.test(dsn);
}

function printable(text: string): string {
  // Replies are one line of printable text: CR, LF and other controls become spaces.
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, ' ');
}

/**
 * smtpd_check_reject(): format CODE DSN TEXT, enforce code/DSN sanity, apply warn_if_reject
 * and a pending defer_if_reject, and record the reply. Returns REJECT, or DUNNO when only a
 * warning was logged.
 */
export function reject(ev: Eval, cls: ErrorClass, code: number, dsn: string, text: string, rule = ev.rule): Status {
  const warnOnly = ev.warnIfReject !== 0 && cls !== 'software' && cls !== 'data';
  let c = code;
  let d = dsn;
  let t = text;
  if (!Number.isInteger(c) || c < 400 || c > 599) {
    ev.note('warning', `SMTP reply code configuration error: ${c} ${d} ${t}`, rule);
    c = 450;
    d = '4.7.1';
    t = 'Service unavailable';
  }
  if (!dsnValid(d)) {
    ev.note('warning', `DSN detail code configuration error: ${c} ${d} ${t}`, rule);
    c = 450;
    d = '4.7.1';
    t = 'Service unavailable';
  }
  let full = printable(`${c} ${d} ${t}`);
  if (full.length > REPLY_LIMIT) full = full.slice(0, REPLY_LIMIT);
  // An earlier temporary problem might have let this mail through: defer, do not reject.
  if (!warnOnly && ev.deferIfReject && c >= 500) {
    const dr = ev.deferIfReject;
    ev.warnIfReject = 0;
    ev.deferIfReject = null;
    return reject(ev, dr.cls, dr.code, dr.dsn, dr.text, dr.rule);
  }
  const cls0 = String(c)[0]!;
  const status = cls0 + d.slice(1);
  const textPart = full.slice(full.indexOf(' ', 4) + 1);
  if (warnOnly) {
    ev.note('reject_warning', `${c} ${status} ${textPart}`, rule);
    return DUNNO;
  }
  ev.reply = { code: c, status, text: textPart };
  ev.replyRule = rule;
  return REJECT;
}

/** defer_if(): remember the first reason for a conditional deferral; the list goes on. */
export function deferIf(ev: Eval, which: 'permit' | 'reject', cls: ErrorClass, code: number, dsn: string, text: string): Status {
  const d: Deferral = { cls, code, dsn, text, rule: ev.rule };
  if (which === 'permit') {
    if (!ev.deferIfPermit) ev.deferIfPermit = d;
  } else if (!ev.deferIfReject) ev.deferIfReject = d;
  return DUNNO;
}

/**
 * DEFER_IF_PERMIT2(): a temporary failure of a reject-style restriction defers only if the
 * request would otherwise be permitted, unless warn_if_reject is on or the configured
 * tempfail action is plain "defer".
 */
export function deferIfPermitOrReject(ev: Eval, conditional: boolean, cls: ErrorClass, code: number, dsn: string, text: string): Status {
  if (ev.warnIfReject === 0 && conditional) return deferIf(ev, 'permit', cls, code, dsn, text);
  return reject(ev, cls, code, dsn, text);
}

/** reject_server_error(): 451 4.3.5 Server configuration error. */
export function serverError(ev: Eval, why?: string, rule = ev.rule): Status {
  if (why) ev.note('warning', why, rule);
  return reject(ev, 'software', 451, '4.3.5', 'Server configuration error', rule);
}

/** reject_dict_retry(): 451 4.3.0 <name>: Temporary lookup failure. */
export function dictRetry(ev: Eval, replyName: string, why?: string, rule = ev.rule): Status {
  if (why) ev.note('warning', why, rule);
  return reject(ev, 'data', 451, '4.3.0', `<${replyName}>: Temporary lookup failure`, rule);
}

/** dsn_split(): the text's own leading X.Y.Z, or DEF; and the rest of the text. */
export function dsnSplit(def: string, text: string): { dsn: string; text: string } {
  const { status, rest } = splitStatus(text);
  return status ? { dsn: status, text: rest } : { dsn: def, text };
}

const DSN_MAP: Record<string, readonly [string, string]> = {
  '1': ['4.1.7', '4.1.1'],
  '2': ['4.1.8', '4.1.2'],
  '3': ['4.1.7', '4.1.3'],
  '4': ['4.1.7', '4.1.4'],
  '5': ['4.1.0', '4.1.5'],
  '6': ['4.1.7', '4.1.6'],
  '7': ['4.1.7', '4.1.3'],
  '8': ['4.1.8', '4.1.2'],
};

/**
 * smtpd_dsn_fix(): an address-status DSN (X.1.Y) is mapped to the sender or recipient
 * variant of what is being rejected, and to X.0.0 for non-address rejects; other DSNs
 * stay. The class digit is fixed later from the reply code.
 */
export function dsnFix(status: string, replyClass: string): string {
  if (!/^\d\.1\./.test(status)) return status;
  if (replyClass === CLASS_SENDER || replyClass === CLASS_RECIPIENT) {
    const m = DSN_MAP[status.slice(4)] ?? (['4.1.0', '4.1.0'] as const);
    return replyClass === CLASS_SENDER ? m[0] : m[1];
  }
  return '4.0.0';
}

function traceStep(ev: Eval, onStep: NonNullable<SessionState['onStep']>, name: string, status: Status): void {
  if (status === REJECT) {
    onStep({ type: 'restriction', stage: ev.stage, depth: ev.recursion, name, result: 'reject', rule: ev.replyRule, ...(ev.reply ? { reply: ev.reply } : {}) });
  } else if (status === OK) {
    onStep({ type: 'restriction', stage: ev.stage, depth: ev.recursion, name, result: 'ok', rule: ev.permitRule ?? ev.rule });
  } else {
    onStep({ type: 'restriction', stage: ev.stage, depth: ev.recursion, name, result: 'dunno', rule: ev.rule });
  }
}

function isThenable(x: RunResult): x is Promise<Status> {
  return typeof x === 'object' && x !== null;
}

/**
 * generic_checks(): walk LIST left to right. Stops at the first non-DUNNO result, when
 * DISCARD was seen, or when both conditional deferrals are armed.
 */
export async function genericChecks(ev: Eval, list: CompiledList, fr: Frame): Promise<Status> {
  const savedRecursion = ev.recursion++;
  // Tracing only (greygate trace); the daemon never sets it.
  const onStep = ev.s.onStep;
  if (onStep) onStep({ type: 'list', stage: ev.stage, depth: ev.recursion, replyClass: fr.replyClass, replyName: fr.replyName, names: list.map((x) => x.name) });
  let status: Status = DUNNO;
  for (let i = 0; i < list.length; i++) {
    if (ev.fx.discard) break;
    const item = list[i]!;
    if (item.warnIfReject) {
      if (ev.warnIfReject === 0) ev.warnIfReject = ev.recursion;
      continue;
    }
    if (!ev.ruleLocked) ev.rule = item.name;
    const r = item.run(ev, fr);
    status = isThenable(r) ? await r : r;
    if (onStep) traceStep(ev, onStep, item.name, status);
    if (ev.warnIfReject >= ev.recursion) ev.warnIfReject = 0;
    if (status !== DUNNO) break;
    if (ev.deferIfPermit && ev.deferIfReject) break;
  }
  ev.recursion = savedRecursion;
  if (ev.warnIfReject >= ev.recursion) ev.warnIfReject = 0;
  return status;
}
