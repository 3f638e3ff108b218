/**
 * @module checks/actions
 * SUMMARY: what a header_checks/body_checks result does (Postfix cleanup_act()): the message
 * state a match changes (reject reason, discard, hold, redirect, filter, bcc, whether checks
 * go on) and what happens to the matched header or line (keep, drop, replace, prepend).
 * Exports ActionState (act() returns an ActResult), CheckDecision, dsnPrepend(),
 * formatActLog(). DIAGNOSTICS: Postfix's msg_warn() texts become CheckWarning records
 * (`bad REDIRECT target "x" in header_checks map -- need user@domain`, `unknown command in
 * body_checks map: FOO`, ...); nothing is thrown. SEE ALSO: header_checks(5),
 * cleanup_message.c cleanup_act(), cleanup_act_log(), dsn_util.c, cleanup_strerror.c.
 */
import type { TableError } from '../errors.js';
import type { Reply } from '../mail/reply.js';
import { isHeaderText } from './message-walk.js';

/** Where the matched text was: the header class of the table used, or the body. */
export type CheckWhere = 'header' | 'mime header' | 'nested header' | 'body';

/** The parameter whose tables matched. */
export type CheckTable = 'header_checks' | 'mime_header_checks' | 'nested_header_checks' | 'body_checks';

/**
 * greygate log event names. A REJECT whose reason starts with 4 is a 'defer'; WARN is
 * 'warn' (Postfix logs "warning"); 'ignore' and 'dunno' appear only in trace mode.
 */
export type CheckEvent =
  | 'reject'
  | 'defer'
  | 'warn'
  | 'info'
  | 'discard'
  | 'hold'
  | 'redirect'
  | 'filter'
  | 'bcc'
  | 'prepend'
  | 'replace'
  | 'strip'
  | 'pass'
  | 'ignore'
  | 'dunno';

export interface CheckDecision {
  readonly event: CheckEvent;
  /** The word Postfix logs after the queue ID: reject, warning, info, discard, ... */
  readonly action: string;
  /** Postfix logs this match (false for IGNORE, DUNNO and OK, which trace mode adds). */
  readonly logged: boolean;
  /** FILE:LINE of the rule, or the limit's name for a MIME structure error. */
  readonly rule: string;
  readonly table: CheckTable | 'mime_nesting_limit';
  readonly where: CheckWhere | 'mime';
  /** Postfix's log context: "header" for every header class, "body", or "mime-error". */
  readonly context: 'header' | 'body' | 'mime-error';
  /** The header or line that matched, truncated to 200 characters as Postfix logs it. */
  readonly matched: string;
  /** The action's text, '' when none; for REJECT the reason with its status ("5.7.1 ..."). */
  readonly text: string;
}

export interface CheckWarning {
  readonly message: string;
  /** FILE:LINE of the rule that caused it, when one did. */
  readonly rule?: string;
}

/** What becomes of the matched header or line. */
export type ActResult =
  | { readonly kind: 'keep' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'replace'; readonly text: string }
  | { readonly kind: 'prepend'; readonly text: string };

export const KEEP: ActResult = Object.freeze({ kind: 'keep' });
const DROP: ActResult = Object.freeze({ kind: 'drop' });

/** cleanup_stat_detail(): the replies smtpd gives for cleanup's results. */
export const CONTENT_REJECTED = Object.freeze({ code: 550, status: '5.7.1', text: 'message content rejected' });
export const DEFER_CODE = 451;
export const WRITE_ERROR_REPLY: Reply = Object.freeze({ code: 451, status: '4.3.0', text: 'Error: queue file write error' });

/** cleanup_act_log() keeps the first 200 characters of the matched text. */
export const LOG_CONTENT_LIMIT = 200;

/**
 * dsn_valid(): the length of a leading RFC 3463 code in TEXT ("5.7.1", 2/4/5 then 1-3 and
 * 1-3 digits, followed by white space or the end), or 0.
 */
export function dsnLength(text: string, from = 0): number {
  const c = text.charCodeAt(from);
  if ((c !== 0x32 && c !== 0x34 && c !== 0x35) || text.charCodeAt(from + 1) !== 0x2e) return 0;
  let i = from + 2;
  let n = 0;
  while (n < 4 && isDigit(text.charCodeAt(i + n))) n++;
  if (n < 1 || n > 3 || text.charCodeAt(i + n) !== 0x2e) return 0;
  i += n + 1;
  n = 0;
  while (n < 4 && isDigit(text.charCodeAt(i + n))) n++;
  if (n < 1 || n > 3) return 0;
  const after = text.charCodeAt(i + n);
  if (!Number.isNaN(after) && !isSpace(after)) return 0;
  return i + n - from;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** C isspace() in the C locale. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** dsn_prepend(): "X.Y.Z text", with TEXT's own leading status code if it has one. */
export function dsnPrepend(defaultStatus: string, text: string): { status: string; text: string } {
  const at = skipSpace(text, 0);
  const n = dsnLength(text, at);
  if (n > 0) return { status: text.slice(at, at + n), text: text.slice(skipSpace(text, at + n)) };
  return { status: defaultStatus, text: text.slice(at) };
}

/** The reply smtpd gives for a REJECT reason: 550 for 5.x.x, 451 for 4.x.x (smtpd.c). */
export function rejectReply(status: string, text: string): Reply {
  return { code: status[0] === '4' ? DEFER_CODE : CONTENT_REJECTED.code, status, text };
}

export interface RejectState {
  readonly reply: Reply;
  readonly rule: string;
  readonly matched: string;
  readonly where: CheckWhere | 'mime';
  /** The reason as Postfix stores and logs it: "5.7.1 text". */
  readonly text: string;
}

export interface MarkState {
  readonly text: string;
  readonly rule: string;
  readonly matched: string;
  readonly where: CheckWhere;
}

/** The match being acted on. */
export interface MatchContext {
  readonly where: CheckWhere;
  readonly table: CheckTable;
  /** FILE:LINE of the rule. */
  readonly rule: string;
  /** The whole header (with its "\n"s) or line that was looked up. */
  readonly content: string;
}

/**
 * The per-message state cleanup_act() changes (CLEANUP_STATE's flags, reason, filter,
 * redirect, hbc_rcpt), and the decisions and warnings to log.
 */
export class ActionState {
  /** CLEANUP_FLAG_FILTER: header and body checks still apply. */
  filtering = true;
  reject: RejectState | null = null;
  discard: MarkState | null = null;
  hold: MarkState | null = null;
  redirect: { address: string; rule: string } | null = null;
  filter: { nexthop: string; rule: string } | null = null;
  readonly bcc: Array<{ address: string; rule: string }> = [];
  readonly decisions: CheckDecision[] = [];
  readonly warnings: CheckWarning[] = [];
  /** The first failed lookup (CLEANUP_STAT_WRITE): no more body checks, 451 unless overridden. */
  error: { table: CheckTable; error: TableError } | null = null;
  private readonly trace: boolean;

  constructor(options: { trace?: boolean } = {}) {
    this.trace = options.trace === true;
  }

  private log(event: CheckEvent, action: string, m: MatchContext, text: string, logged = true): void {
    const matched = m.content.length > LOG_CONTENT_LIMIT ? m.content.slice(0, LOG_CONTENT_LIMIT) : m.content;
    this.decisions.push({
      event,
      action,
      logged,
      rule: m.rule,
      table: m.table,
      where: m.where,
      context: m.where === 'body' ? 'body' : 'header',
      matched,
      text,
    });
  }

  private warn(message: string, rule?: string): void {
    this.warnings.push(rule === undefined ? { message } : { message, rule });
  }

  /** A table failed (not missed): Postfix warns and tempfails the message. */
  lookupFailed(table: CheckTable, error: TableError): void {
    this.warn(`${table} map lookup problem -- message not accepted, try again later`);
    if (this.error === null) this.error = { table, error };
  }

  /** cleanup_act(): act on VALUE, the table's result for the matched content. */
  act(m: MatchContext, value: string): ActResult {
    let cmdEnd = 0;
    while (cmdEnd < value.length && value[cmdEnd] !== ' ' && value[cmdEnd] !== '\t') cmdEnd++;
    const command = asciiUpper(value.slice(0, cmdEnd));
    const text = value.slice(skipSpace(value, cmdEnd));
    const header = m.where !== 'body';
    switch (command) {
      case 'REJECT': {
        let { status, text: detail } = text === '' ? CONTENT_REJECTED : dsnPrepend('5.7.1', text);
        if (status[0] !== '4' && status[0] !== '5') {
          this.warn(`bad DSN action in ${text} -- need 4.x.x or 5.x.x`, m.rule);
          status = `4${status.slice(1)}`;
        }
        const reason = `${status} ${detail}`;
        this.reject = { reply: rejectReply(status, detail), rule: m.rule, matched: truncate(m.content), where: m.where, text: reason };
        this.filtering = false;
        this.log(status[0] === '4' ? 'defer' : 'reject', 'reject', m, reason);
        return KEEP;
      }
      case 'WARN':
        this.log('warn', 'warning', m, text);
        return KEEP;
      case 'INFO':
        this.log('info', 'info', m, text);
        return KEEP;
      case 'FILTER':
        if (text === '') this.warn(`missing FILTER command argument in ${m.table} map`, m.rule);
        else if (!text.includes(':')) this.warn(`bad FILTER command ${text} in ${m.table} -- need transport:destination`, m.rule);
        else {
          this.filter = { nexthop: text, rule: m.rule };
          this.log('filter', 'filter', m, text);
        }
        return KEEP;
      case 'PASS':
        this.log('pass', 'pass', m, text);
        this.filtering = false;
        return KEEP;
      case 'DISCARD':
        this.log('discard', 'discard', m, text);
        this.discard = { text, rule: m.rule, matched: truncate(m.content), where: m.where };
        this.filtering = false;
        return KEEP;
      case 'HOLD':
        // Only the first HOLD counts (and is logged), and none after a DISCARD.
        if (this.hold === null && this.discard === null) {
          this.log('hold', 'hold', m, text);
          this.hold = { text, rule: m.rule, matched: truncate(m.content), where: m.where };
        }
        return KEEP;
      case 'PREPEND':
        if (text === '') {
          this.warn(`PREPEND action without text in ${m.table} map`, m.rule);
          return KEEP;
        }
        if (header && !isHeaderText(text)) {
          this.warn(`bad PREPEND header text "${text}" in ${m.table} map -- need "headername: headervalue"`, m.rule);
          return KEEP;
        }
        this.log('prepend', 'prepend', m, text);
        return { kind: 'prepend', text };
      case 'REPLACE':
        if (text === '') {
          this.warn(`REPLACE action without text in ${m.table} map`, m.rule);
          return KEEP;
        }
        if (header && !isHeaderText(text)) {
          this.warn(`bad REPLACE header text "${text}" in ${m.table} map -- need "headername: headervalue"`, m.rule);
          return KEEP;
        }
        this.log('replace', 'replace', m, text);
        return { kind: 'replace', text };
      case 'REDIRECT':
        if (!text.includes('@')) {
          this.warn(`bad REDIRECT target "${text}" in ${m.table} map -- need user@domain`, m.rule);
          return KEEP;
        }
        this.redirect = { address: text, rule: m.rule };
        this.log('redirect', 'redirect', m, text);
        // A REDIRECT ends the checks too: cleanup clears CLEANUP_FLAG_FILTER_ALL.
        this.filtering = false;
        return KEEP;
      case 'BCC':
        if (!text.includes('@')) {
          this.warn(`bad BCC address "${text}" in ${m.table} map -- need user@domain`, m.rule);
          return KEEP;
        }
        if (!this.bcc.some((b) => b.address === text)) this.bcc.push({ address: text, rule: m.rule });
        this.log('bcc', 'bcc', m, text);
        return KEEP;
      case 'STRIP':
        this.log('strip', 'strip', m, text);
        return DROP;
      case 'IGNORE':
        // Not logged, for compatibility with older cleanup(8).
        if (this.trace) this.log('ignore', 'ignore', m, text, false);
        return DROP;
      case 'DUNNO':
      case 'OK':
        if (this.trace) this.log('dunno', command.toLowerCase(), m, text, false);
        return KEEP;
      default:
        this.warn(`unknown command in ${m.table} map: ${value}`, m.rule);
        return KEEP;
    }
  }
}

/** strncasecmp() folds ASCII letters only. */
function asciiUpper(word: string): string {
  return word.replace(/[a-z]+/g, (w) => w.toUpperCase());
}

function truncate(content: string): string {
  return content.length > LOG_CONTENT_LIMIT ? content.slice(0, LOG_CONTENT_LIMIT) : content;
}

/** What cleanup_act_log() adds about the transaction. */
export interface ActLogContext {
  readonly queueId: string;
  /** "host[addr]" of the client (MAIL_ATTR_LOG_ORIGIN); "unknown" when not known. */
  readonly origin?: string;
  readonly sender?: string;
  readonly recipient?: string;
  readonly protocol?: string;
  readonly helo?: string;
}

/**
 * The line Postfix logs for a decision: `QID: reject: header Subject: x from
 * host[1.2.3.4]; from=<s> to=<r> proto=ESMTP helo=<h>: 5.7.1 text`.
 */
export function formatActLog(d: CheckDecision, c: ActLogContext): string {
  let line = `${c.queueId}: ${d.action}: ${d.context} ${d.matched} from ${c.origin ?? 'unknown'};`;
  if (c.sender !== undefined) line += ` from=<${c.sender}>`;
  if (c.recipient !== undefined) line += ` to=<${c.recipient}>`;
  if (c.protocol !== undefined) line += ` proto=${c.protocol}`;
  if (c.helo !== undefined) line += ` helo=<${c.helo}>`;
  if (d.text !== '') line += `: ${d.text}`;
  return line;
}
