/**
 * @module queue/bounce
 * SUMMARY: non-delivery and delay notices (RFC 3464 DSNs) as Postfix's bounce(8) writes them.
 * buildNotice(input) returns the notice to queue, { kind, sender, recipients, message }, or
 * null when none is due (NOTIFY, a null sender's delay, a failed double bounce).
 * noticeSettings(config) reads the parameters, noticeRecipient() maps an envelope recipient,
 * DIAGNOSTICS: none; pure apart from the default uniqueId (random bytes). Nothing throws.
 * SEE ALSO: bounce(8), bounce(5), Postfix bounce_notify_service.c, bounce_warn_service.c,
 * bounce_notify_util.c, bounce_templates.c; RFC 3461, RFC 3464, RFC 3834, RFC 6533.
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/config.js';
import type { DsnNotify, DsnResult, Envelope, Recipient } from './envelope.js';
import { quote822Local } from './format.js';
import { mailDate } from '../mail/mail-date.js';

export type NoticeKind = 'failure' | 'delay';

/** One recipient the notice reports on. */
export interface NoticeRecipient {
  address: string;
  /** The address as the client gave it; shown as "(expanded from <...>)" when it differs. */
  originalAddress?: string;
  /** RFC 3461 ORCPT, `rfc822;addr` (a bare address is taken as rfc822). */
  orcpt?: string;
  /** RFC 3461 NOTIFY; absent means "not given" (Postfix's compatibility: notify). */
  notify?: readonly DsnNotify[];
  dsn: DsnResult;
  /** The human-readable reason, as Postfix prints it after `<addr>: `. */
  reason: string;
  /** Diagnostic-Code type; default `smtp` with a remote MTA, `x-unix` without. */
  diagnosticType?: string;
  /** `host[ip]:port`, `local`...: kept for the caller's log; not part of the DSN. */
  relay?: string;
  lastAttemptAt?: number;
}

export interface NoticeSettings {
  myhostname: string;
  myorigin: string;
  mailName: string;
  /** bounce_size_limit: a larger original is returned as headers only; 0 = no limit. */
  bounceSizeLimit: number;
  /** 2bounce_notice_recipient; @myorigin is appended when it has no domain. */
  doubleBounceRecipient: string;
  /** double_bounce_sender; @myorigin is appended when it has no domain. */
  doubleBounceSender: string;
  /** delay_warning_time (ms), for the delay text. */
  delayWarningTime?: number;
  /** maximal_queue_lifetime (ms): the delay text and Will-Retry-Until. */
  maximalQueueLifetime?: number;
  /** A token unique to this notice, for the MIME boundary and Message-ID; seed it in tests. */
  uniqueId?: () => string;
}

export interface NoticeInput {
  kind: NoticeKind;
  envelope: Envelope;
  /** The recipients that failed (or are delayed); the NOTIFY filter is applied here. */
  recipients: readonly NoticeRecipient[];
  /** The original message as delivered (CRLF lines). */
  message: Buffer;
  now: number;
  settings: NoticeSettings;
}

export interface Notice {
  kind: 'bounce' | 'double-bounce' | 'delay';
  /** Envelope sender: `''` for a bounce or delay notice, double_bounce_sender@myorigin for a double bounce. */
  sender: string;
  recipients: string[];
  /** The whole notice, CRLF lines, headers included. */
  message: Buffer;
}

/** What a reason or diagnostic of this length or more is wrapped at (bounce_print_wrap). */
const WRAP_LENGTH = 79;
const WRAP_INDENT = 4;
/* The DSN vendor prefix for X- fields, as Postfix's X-Postfix-Queue-ID. */
const VENDOR = 'Greygate';

const CRLF = '\r\n';

/** noticeSettings - the bounce parameters of a config snapshot */
export function noticeSettings(config: Config): NoticeSettings {
  const str = (name: string, def: string): string => (config.has(name) ? config.get(name) : def);
  return {
    myhostname: config.get('myhostname'),
    myorigin: config.get('myorigin'),
    mailName: config.get('mail_name'),
    bounceSizeLimit: config.has('bounce_size_limit') ? config.int('bounce_size_limit') : 50000,
    doubleBounceRecipient: str('2bounce_notice_recipient', 'postmaster'),
    doubleBounceSender: str('double_bounce_sender', 'double-bounce'),
    delayWarningTime: config.has('delay_warning_time') ? config.time('delay_warning_time') : 0,
    maximalQueueLifetime: config.time('maximal_queue_lifetime'),
  };
}

/**
 * noticeRecipient - an envelope recipient as the notice reports it: the bounce (or delay)
 * reason, the DSN result (a status is made up from the kind when the agent left none)
 */
export function noticeRecipient(r: Recipient, kind: NoticeKind, extra: { relay?: string; lastAttemptAt?: number } = {}): NoticeRecipient {
  const reason = (kind === 'failure' ? r.bounceReason : r.delayReason) ?? r.dsn?.diagnostic ?? (kind === 'failure' ? 'delivery failed' : 'delivery temporarily suspended');
  const out: NoticeRecipient = {
    address: r.address,
    originalAddress: r.originalAddress,
    dsn: r.dsn ?? { status: kind === 'failure' ? '5.0.0' : '4.0.0' },
    reason,
  };
  if (r.orcpt !== undefined) out.orcpt = r.orcpt;
  if (r.notify !== undefined) out.notify = r.notify;
  if (extra.relay !== undefined) out.relay = extra.relay;
  if (extra.lastAttemptAt !== undefined) out.lastAttemptAt = extra.lastAttemptAt;
  return out;
}

/** qualify - user -> user@domain, as trivial-rewrite appends $myorigin */
function qualify(addr: string, domain: string): string {
  return addr.includes('@') || domain === '' ? addr : `${addr}@${domain}`;
}

/**
 * wanted - Postfix's notify filter: a recipient without NOTIFY is reported (compatibility),
 * one with NOTIFY only when it names this kind of notice (NEVER names none)
 */
function wanted(r: NoticeRecipient, kind: NoticeKind): boolean {
  if (!r.notify || r.notify.length === 0) return true;
  return r.notify.includes(kind === 'failure' ? 'FAILURE' : 'DELAY');
}

/**
 * buildNotice - the notice bounce(8) would send for these recipients, or null
 * A failure goes to the sender, or to 2bounce_notice_recipient (all recipients, NOTIFY
 * overridden, as DSN_NOTIFY_OVERRIDE) when the sender is null; a notice about mail from the
 * double-bounce address itself is discarded, so notices can never loop. A delay notice goes
 * to a non-null sender only (Postfix sends none to postmaster unless notify_classes says so).
 */
export function buildNotice(input: NoticeInput): Notice | null {
  const { envelope: env, settings: s } = input;
  const doubleBounce = qualify(s.doubleBounceSender, s.myorigin);
  if (env.sender !== '' && env.sender.toLowerCase() === doubleBounce.toLowerCase()) return null;
  let kind: Notice['kind'];
  let to: string;
  let rcpts: NoticeRecipient[];
  if (env.sender === '') {
    if (input.kind === 'delay') return null;
    kind = 'double-bounce';
    to = qualify(s.doubleBounceRecipient, s.myorigin);
    rcpts = [...input.recipients];
  } else {
    kind = input.kind === 'failure' ? 'bounce' : 'delay';
    to = env.sender;
    rcpts = input.recipients.filter((r) => wanted(r, input.kind));
  }
  if (rcpts.length === 0) return null;
  const message = composeNotice(input, kind, to, rcpts);
  return { kind, sender: kind === 'double-bounce' ? doubleBounce : '', recipients: [to], message };
}

/* ---- composition */

function composeNotice(input: NoticeInput, kind: Notice['kind'], to: string, rcpts: readonly NoticeRecipient[]): Buffer {
  const { envelope: env, settings: s, now } = input;
  const utf8 = env.smtputf8 === true;
  const original = crlfOnly(input.message);
  const eightBit = utf8 || env.bodyType === '8BITMIME' || env.bodyType === 'BINARYMIME' || hasEightBit(original);
  const token = (s.uniqueId ?? defaultUniqueId)();
  const boundary = `${env.queueId}.${Math.floor(now / 1000)}.${token}/${s.myhostname}`;
  const postmasterCopy = kind === 'double-bounce';
  const delay = input.kind === 'delay';
  const show = (t: string): string => printable(t, utf8);

  let subject: string;
  if (delay) subject = 'Delayed Mail (still being retried)';
  else subject = postmasterCopy ? 'Postmaster Copy: Undelivered Mail' : 'Undelivered Mail Returned to Sender';

  const head: string[] = [
    `Date: ${mailDate(now)}`,
    `From: MAILER-DAEMON@${s.myhostname} (Mail Delivery System)`,
    `Subject: ${subject}`,
    `To: ${show(quote822Local(to))}`,
    // RFC 3834: a reply to the sender's message; a postmaster copy is no reply to anyone.
    `Auto-Submitted: ${postmasterCopy ? 'auto-generated' : 'auto-replied'}`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    `\tboundary="${boundary}"`,
    `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
    `Message-ID: <${gmtStamp(now)}.${token}@${s.myhostname}>`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Description: Notification',
    // Addresses and replies may be 8-bit when the original was (bounce_header's Fix 20140709).
    `Content-Type: text/plain; charset=${eightBit ? 'utf-8' : 'us-ascii'}`,
  ];
  if (eightBit) head.push('Content-Transfer-Encoding: 8bit');
  head.push('');

  // Postfix sends the postmaster no boiler-plate, only the reasons.
  if (!postmasterCopy) head.push(...(delay ? delayText(s) : failureText(s)));
  for (const r of rcpts) {
    head.push('');
    const orig = r.originalAddress;
    const who = orig && orig !== r.address ? `<${r.address}> (expanded from <${orig}>)` : `<${r.address}>`;
    head.push(...lineWrap(show(`${who}: ${r.reason}`)));
  }

  // Part 2: the machine-readable report (RFC 3464 section 2).
  head.push('', `--${boundary}`, 'Content-Description: Delivery report');
  head.push(`Content-Type: message/${utf8 ? 'global-' : ''}delivery-status`);
  if (eightBit && utf8) head.push('Content-Transfer-Encoding: 8bit');
  head.push('', `Reporting-MTA: dns; ${s.myhostname}`);
  if (env.envid) head.push(`Original-Envelope-Id: ${show(env.envid)}`);
  head.push(`X-${VENDOR}-Queue-ID: ${env.queueId}`);
  if (env.sender !== '') head.push(`X-${VENDOR}-Sender: ${addrType(env.sender, utf8)}; ${show(env.sender)}`);
  head.push(`Arrival-Date: ${mailDate(env.arrivalTime)}`);
  for (const r of rcpts) head.push('', ...recipientFields(r, input, utf8));

  // Part 3: the original, or its headers: a delay warning carries headers only (as
  // bounce_warn_service.c), the sender's RET=HDRS (the postmaster gets all), and a message
  // over bounce_size_limit, so truncation never damages its MIME structure.
  const limit = s.bounceSizeLimit;
  const headersOnly = delay || (!postmasterCopy && env.ret === 'HDRS') || (limit > 0 && original.length > limit);
  head.push('', `--${boundary}`);
  head.push(`Content-Description: Undelivered Message${headersOnly ? ' Headers' : ''}`);
  if (utf8) head.push(`Content-Type: message/${headersOnly ? 'global-headers' : 'global'}`);
  else head.push(`Content-Type: ${headersOnly ? 'text/rfc822-headers' : 'message/rfc822'}`);
  if (eightBit) head.push('Content-Transfer-Encoding: 8bit');
  head.push('');
  // cleanup removed any Return-Path; bounce(8) puts the envelope sender back (bounce_original).
  head.push(`Return-Path: <${show(env.sender)}>`);

  const body = headersOnly ? original.subarray(0, headerEnd(original)) : original;
  const parts: Buffer[] = [Buffer.from(head.join(CRLF) + CRLF, 'utf8'), body];
  if (body.length > 0 && body[body.length - 1] !== 0x0a) parts.push(Buffer.from(CRLF));
  parts.push(Buffer.from(`${CRLF}--${boundary}--${CRLF}`, 'latin1'));
  return Buffer.concat(parts);
}

function recipientFields(r: NoticeRecipient, input: NoticeInput, utf8: boolean): string[] {
  const show = (t: string): string => printable(t, utf8);
  const out = [`Final-Recipient: ${addrType(r.address, utf8)}; ${show(r.address)}`];
  // Postfix always reports an Original-Recipient: the ORCPT, else the address as received.
  if (r.orcpt) out.push(`Original-Recipient: ${show(r.orcpt.includes(';') ? r.orcpt : `rfc822;${r.orcpt}`)}`);
  else if (r.originalAddress) out.push(`Original-Recipient: ${addrType(r.originalAddress, utf8)}; ${show(r.originalAddress)}`);
  out.push(`Action: ${input.kind === 'failure' ? 'failed' : 'delayed'}`);
  out.push(`Status: ${show(r.dsn.status)}`);
  const mta = r.dsn.remoteMta;
  if (mta) out.push(...lineWrap(show(`Remote-MTA: ${mta.includes(';') ? mta : `dns; ${mta}`}`)));
  if (r.dsn.diagnostic) {
    const type = r.diagnosticType ?? (mta ? 'smtp' : 'x-unix');
    out.push(...lineWrap(show(`Diagnostic-Code: ${type}; ${r.dsn.diagnostic}`)));
  } else out.push(...lineWrap(show(`Diagnostic-Code: X-${VENDOR}; ${r.reason}`)));
  const last = r.lastAttemptAt ?? input.envelope.lastAttemptAt;
  if (last !== undefined) out.push(`Last-Attempt-Date: ${mailDate(last)}`);
  const life = input.settings.maximalQueueLifetime;
  if (input.kind === 'delay' && life) out.push(`Will-Retry-Until: ${mailDate(input.envelope.arrivalTime + life)}`);
  return out;
}

/* bounce_templates.c: the built-in failure and delay templates. */
function failureText(s: NoticeSettings): string[] {
  return [
    `This is the mail system at host ${s.myhostname}.`,
    '',
    "I'm sorry to have to inform you that your message could not",
    "be delivered to one or more recipients. It's attached below.",
    '',
    'For further assistance, please send mail to <postmaster>',
    '',
    'If you do so, please include this problem report. You can',
    'delete your own text from the attached returned message.',
    '',
    '                   The mail system',
  ];
}

function delayText(s: NoticeSettings): string[] {
  // $delay_warning_time_hours and $maximal_queue_lifetime_days: integer division.
  const hours = Math.floor((s.delayWarningTime ?? 0) / 3_600_000);
  const days = Math.floor((s.maximalQueueLifetime ?? 0) / 86_400_000);
  return [
    `This is the mail system at host ${s.myhostname}.`,
    '',
    '####################################################################',
    '# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #',
    '####################################################################',
    '',
    `Your message could not be delivered for more than ${hours} hour(s).`,
    `It will be retried until it is ${days} day(s) old.`,
    '',
    'For further assistance, please send mail to <postmaster>',
    '',
    'If you do so, please include this problem report. You can',
    'delete your own text from the attached returned message.',
    '',
    '                   The mail system',
  ];
}

/* ---- helpers */

function defaultUniqueId(): string {
  return randomBytes(6).toString('hex').toUpperCase();
}

// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

/* "utf-8" only for an address that needs it, and only in reply to SMTPUTF8 mail (RFC 6533). */
function addrType(addr: string, utf8: boolean): string {
  return utf8 && NON_ASCII.test(addr) ? 'utf-8' : 'rfc822';
}

/**
 * printable - what bounce_log_read() does to logged text: control characters become '?',
 * and non-ASCII too unless the original was SMTPUTF8, so a remote reply cannot add header
 * lines or MIME structure to the notice
 */
function printable(s: string, utf8: boolean): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(utf8 ? /[\x00-\x1f\x7f]/g : /[\x00-\x1f\x7f-\uffff]/g, '?');
}

/**
 * lineWrap - Postfix line_wrap(text, 79, 4): break at blanks before a word that would pass
 * column 79; continuation lines are indented by four blanks, which also folds a DSN field
 */
export function lineWrap(text: string, length = WRAP_LENGTH, indent = WRAP_INDENT): string[] {
  const out: string[] = [];
  let currIndent = 0;
  let currLen = length;
  let start = 0;
  let word = 0;
  const blank = (c: string | undefined): boolean => c === ' ' || c === '\t';
  for (;;) {
    let nextSpace = word;
    while (nextSpace < text.length && !blank(text[nextSpace])) nextSpace++;
    if (word > start && nextSpace - start > currLen) {
      out.push(' '.repeat(currIndent) + text.slice(start, word).replace(/[ \t]+$/, ''));
      while (word < text.length && blank(text[word])) word++;
      if (start === 0) {
        currIndent += indent;
        currLen -= indent;
      }
      start = word;
    }
    if (nextSpace >= text.length) break;
    word = nextSpace + 1;
  }
  out.push(' '.repeat(currIndent) + text.slice(start).replace(/[ \t]+$/, ''));
  return out;
}

function hasEightBit(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! > 0x7f) return true;
  return false;
}

/** crlfOnly - every line ending CRLF: a stray bare LF or CR in the original must not end up in the notice */
function crlfOnly(b: Buffer): Buffer {
  let clean = true;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x0d ? b[i + 1] !== 0x0a : c === 0x0a && (i === 0 || b[i - 1] !== 0x0d)) {
      clean = false;
      break;
    }
  }
  if (clean) return b;
  return Buffer.from(b.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'), 'latin1');
}

/**
 * headerEnd - the length of the original's header section: header lines and their
 * continuations up to the first line that is neither (is_header() as bounce_original uses it)
 */
export function headerEnd(b: Buffer): number {
  let pos = 0;
  let first = true;
  while (pos < b.length) {
    let eol = b.indexOf(0x0a, pos);
    eol = eol < 0 ? b.length : eol + 1;
    const c = b[pos]!;
    const continuation = !first && (c === 0x20 || c === 0x09);
    if (!continuation && !isHeaderLine(b, pos, eol)) break;
    first = false;
    pos = eol;
  }
  return pos;
}

/* is_header(): a field name of printable ASCII other than ':' and blank, then optional blanks and ':'. */
function isHeaderLine(b: Buffer, start: number, end: number): boolean {
  let i = start;
  while (i < end && b[i]! > 0x20 && b[i]! < 0x7f && b[i] !== 0x3a) i++;
  if (i === start) return false;
  while (i < end && (b[i] === 0x20 || b[i] === 0x09)) i++;
  return b[i] === 0x3a;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** gmtStamp - YYYYMMDDHHMMSS in GMT, the first half of a Postfix Message-Id */
export function gmtStamp(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
}
