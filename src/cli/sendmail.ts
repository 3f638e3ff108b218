/**
 * @module cli/sendmail
 * SUMMARY: `greygate sendmail [-f SENDER] [-F NAME] [-t] [-i] [-N DSN] [-R RET] [-V ENVID] [RCPT...]`,
 * the Sendmail-compatible submission interface that mail(1) and mailx call: the message on
 * stdin gets what Postfix's cleanup adds to local mail (Received, From, Date, Message-ID),
 * passes header_checks/body_checks as SMTP mail does, is committed to the queue (incoming/,
 * or hold/) and the running gateway is woken. Exports run(args, io) and parseSendmailArgs().
 * DIAGNOSTICS: bad options, addresses or no recipient: UsageError (one line, exit 2); a
 * content REJECT or an oversized message: one line on stderr, exit 65 (EX_DATAERR), nothing
 * queued; a failed table lookup: exit 75 (EX_TEMPFAIL). Each outcome is logged once to
 * maillog_file with stage `sendmail`, as the SMTP path logs end-of-data.
 * SEE ALSO: sendmail(1), Postfix sendmail.c, pickup(8), cleanup(8) (cleanup_message.c
 * header_done), header_checks(5).
 */
import { userInfo } from 'node:os';
import { UsageError, UserError } from '../errors.js';
import { loadConfig, type Config } from '../config/config.js';
import { createMailLogger, type MailLogger } from '../log/logger.js';
import type { EventRecord } from '../log/events.js';
import { openTable } from '../tables/open.js';
import { formatReply, type Reply } from '../mail/reply.js';
import { compileChecks } from '../checks/compile.js';
import { ContentFilter, type ContentOutcome } from '../checks/content-filter.js';
import { formatActLog } from '../checks/actions.js';
import { QueueStore, queueStoreOptions, type QueueWriter } from '../queue/store.js';
import type { DsnNotify, NewEnvelope, NewRecipient } from '../queue/envelope.js';
import { gmtStamp, headerEnd } from '../queue/bounce.js';
import { mailDate } from '../mail/mail-date.js';
import { quote822Local } from '../queue/format.js';
import { addressList } from './trace-message.js';
import type { CliIO } from './io.js';

/* sysexits.h, as Postfix's sendmail reports them. */
const EX_DATAERR = 65;
const EX_TEMPFAIL = 75;

const USAGE = 'usage: sendmail [-f sender] [-F full_name] [-t] [-i] [-N dsn] [-R ret] [-V envid] [recipient ...]';

/* The client a local submission is logged and stored as. */
const LOCAL_CLIENT = { address: '127.0.0.1', name: 'localhost' };
/* cleanup_act_log()'s origin for mail that did not come over the network. */
const LOCAL_ORIGIN = 'local';

export interface SendmailOptions {
  /** -f / -r: the envelope sender as given; undefined: the login name. */
  sender?: string;
  /** -F: the full name for a generated From: header. */
  fullName?: string;
  /** -t: recipients from To/Cc/Bcc (or Resent-*), Bcc removed. */
  extract: boolean;
  /** -i / -oi: a line with a single "." is data, not the end of input. */
  ignoreDots: boolean;
  /** -N: DSN NOTIFY for every recipient. */
  notify?: DsnNotify[];
  /** -R: DSN RET. */
  ret?: 'FULL' | 'HDRS';
  /** -V: DSN ENVID. */
  envid?: string;
  /** -B: body type. */
  bodyType?: '7BIT' | '8BITMIME';
  /** -C: another configuration directory. */
  configDir?: string;
  recipients: string[];
}

/* getopt("B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx") as Postfix's sendmail.c; -c is
 * taken by cli/main.ts. Options whose argument only tunes Sendmail itself are accepted. */
const WITH_ARG = new Set(['B', 'C', 'F', 'L', 'N', 'O', 'R', 'V', 'X', 'b', 'e', 'f', 'h', 'o', 'p', 'r']);
const FLAGS = new Set(['G', 'U', 'i', 'm', 'n', 't', 'v', 'x']);

/** parseSendmailArgs - the command line as Postfix's sendmail reads it */
export function parseSendmailArgs(args: readonly string[]): SendmailOptions {
  const o: SendmailOptions = { extract: false, ignoreDots: false, recipients: [] };
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      if (FLAGS.has(c)) {
        if (c === 't') o.extract = true;
        else if (c === 'i') o.ignoreDots = true;
        continue;
      }
      if (c === 'q') throw new UsageError('sendmail: -q is not supported: the running gateway schedules the queue (greygate postqueue -f flushes it)');
      if (c === 'I') throw new UsageError('sendmail: -I (newaliases) is not supported: aliases are read directly, no rebuild is needed');
      if (!WITH_ARG.has(c)) throw new UsageError(`sendmail: invalid option -- '${c}'; ${USAGE}`);
      const v = j + 1 < a.length ? a.slice(j + 1) : args[++i];
      if (v === undefined) throw new UsageError(`sendmail: option -${c} requires an argument; ${USAGE}`);
      option(o, c, v);
      break;
    }
  }
  o.recipients.push(...args.slice(i));
  return o;
}

function option(o: SendmailOptions, c: string, v: string): void {
  switch (c) {
    case 'f':
    case 'r':
      o.sender = v;
      break;
    case 'F':
      o.fullName = v;
      break;
    case 'C':
      o.configDir = v;
      break;
    case 'o':
      // -oi is -i; -odi, -odb, -oem, -om and the rest tune Sendmail and mean nothing here.
      if (v === 'i') o.ignoreDots = true;
      break;
    case 'b':
      // Only "deliver mail" (-bm); the other modes are other programs here.
      if (v !== 'm') throw new UsageError(`sendmail: -b${v} is not supported (use greygate postqueue, postsuper or the SMTP listener); only -bm`);
      break;
    case 'N':
      o.notify = parseNotify(v);
      break;
    case 'R': {
      const r = v.toUpperCase();
      if (r !== 'FULL' && r !== 'HDRS') throw new UsageError(`sendmail: bad -R option value: "${v}" (expected full or hdrs)`);
      o.ret = r;
      break;
    }
    case 'V':
      // RFC 3461 ENVID: printable ASCII, at most 100 characters.
      if (!/^[\x21-\x7e]{1,100}$/.test(v)) throw new UsageError(`sendmail: bad -V option value: "${v}"`);
      o.envid = v;
      break;
    case 'B': {
      const b = v.toUpperCase();
      if (b !== '7BIT' && b !== '8BITMIME') throw new UsageError(`sendmail: bad -B option value: "${v}" (expected 7bit or 8bitmime)`);
      o.bodyType = b;
      break;
    }
    default:
      // -e, -h, -L, -O, -p, -X: Sendmail tuning, accepted and ignored as Postfix does.
      break;
  }
}

/** -N never | success,failure,delay (Postfix sendmail -N) */
function parseNotify(v: string): DsnNotify[] {
  const words = v
    .split(/[\s,]+/)
    .filter((w) => w !== '')
    .map((w) => w.toUpperCase());
  const ok = words.length > 0 && words.every((w) => w === 'NEVER' || w === 'SUCCESS' || w === 'FAILURE' || w === 'DELAY');
  if (!ok || (words.includes('NEVER') && words.length > 1)) throw new UsageError(`sendmail: bad -N option value: "${v}" (expected never, or a list of success, failure, delay)`);
  return [...new Set(words)] as DsnNotify[];
}

/**
 * envelopeAddress - an address from the command line or a header, without <>, qualified
 * with @myorigin when it has no domain (trivial-rewrite's append_at_myorigin); null for
 * text no SMTP server would take
 */
function envelopeAddress(input: string, myorigin: string): string | null {
  let a = input.trim();
  if (a.startsWith('<') && a.endsWith('>')) a = a.slice(1, -1).trim();
  if (a === '') return '';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f<>]/.test(a) || (/\s/.test(a) && !a.startsWith('"'))) return null;
  const at = a.lastIndexOf('@');
  if (at === 0 || at === a.length - 1) return null;
  return at < 0 ? `${a}@${myorigin}` : a;
}

/** The lines of stdin as the queue stores them: CRLF, a leading mbox "From " line dropped. */
export function canonicalise(raw: Buffer, ignoreDots: boolean): Buffer {
  const text = raw.toString('latin1');
  const lines = text.split('\n');
  if (text.endsWith('\n')) lines.pop();
  const out: string[] = [];
  for (let n = 0; n < lines.length; n++) {
    let line = lines[n]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    // An mbox separator is not part of the message (Postfix sendmail skips it).
    if (n === 0 && line.startsWith('From ')) continue;
    if (!ignoreDots && line === '.') break;
    out.push(line);
  }
  return Buffer.from(out.length ? out.join('\r\n') + '\r\n' : '', 'latin1');
}

interface HeaderField {
  /** Lowercased field name. */
  name: string;
  value: string;
  start: number;
  end: number;
}

/** The header section's fields, with their byte ranges (continuations included). */
function headerFields(msg: Buffer): HeaderField[] {
  const end = headerEnd(msg);
  const text = msg.subarray(0, end).toString('latin1');
  const fields: HeaderField[] = [];
  let pos = 0;
  while (pos < text.length) {
    let next = text.indexOf('\n', pos);
    next = next < 0 ? text.length : next + 1;
    const line = text.slice(pos, next).replace(/\r?\n$/, '');
    const last = fields[fields.length - 1];
    if ((line[0] === ' ' || line[0] === '\t') && last) {
      last.value += ' ' + line.trim();
      last.end = next;
    } else {
      const colon = line.indexOf(':');
      fields.push({ name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim(), start: pos, end: next });
    }
    pos = next;
  }
  return fields;
}

/** A phrase for "Name <addr>": quoted unless it is all atoms (RFC 5322 section 3.2.5). */
function phrase(name: string): string {
  const clean = name.replace(/[\r\n]+/g, ' ').trim();
  if (/^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ \x80-\uffff]+$/.test(clean)) return clean;
  return `"${clean.replace(/["\\]/g, (c) => '\\' + c)}"`;
}

function loginName(): { name: string; uid: number } {
  const uid = process.getuid?.() ?? 0;
  let name = '';
  try {
    name = userInfo().username;
  } catch {
    name = process.env.LOGNAME ?? process.env.USER ?? '';
  }
  if (!name) throw new UserError(`sendmail: no login name found for user ID ${uid}`);
  return { name, uid };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer | string>) chunks.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
  return Buffer.concat(chunks);
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const opts = parseSendmailArgs(args);
  const config = loadConfig(opts.configDir ?? io.configDir);
  const myorigin = config.get('myorigin');
  const user = loginName();

  let sender: string;
  if (opts.sender === undefined) sender = `${user.name}@${myorigin}`;
  else {
    const s = envelopeAddress(opts.sender, myorigin);
    if (s === null) throw new UsageError(`sendmail: bad sender address syntax: ${opts.sender}`);
    sender = s;
  }

  const input = canonicalise(await readAll(io.stdin), opts.ignoreDots);
  const fields = headerFields(input);
  const recipients: string[] = [];
  const seen = new Set<string>();
  const add = (given: string, where: string): void => {
    const a = envelopeAddress(given, myorigin);
    if (a === null || a === '') throw new UsageError(`sendmail: bad recipient address syntax in ${where}: ${given}`);
    if (seen.has(a.toLowerCase())) return;
    seen.add(a.toLowerCase());
    recipients.push(a);
  };
  for (const r of opts.recipients) add(r, 'the command line');
  let body = input;
  if (opts.extract) {
    // With Resent- headers the message is being forwarded: its Resent-To/Cc/Bcc count.
    const resent = fields.some((f) => f.name === 'resent-to' || f.name === 'resent-cc' || f.name === 'resent-bcc');
    const wanted = resent ? ['resent-to', 'resent-cc', 'resent-bcc'] : ['to', 'cc', 'bcc'];
    for (const f of fields) {
      if (!wanted.includes(f.name)) continue;
      for (const a of addressList(Buffer.from(f.value, 'latin1').toString('utf8'))) add(a, `the ${f.name} header`);
    }
    // Blind copies stay blind: the Bcc lines never reach the queue.
    const drop = fields.filter((f) => f.name === 'bcc' || f.name === 'resent-bcc');
    if (drop.length) {
      const keep: Buffer[] = [];
      let at = 0;
      for (const f of drop) {
        keep.push(input.subarray(at, f.start));
        at = f.end;
      }
      keep.push(input.subarray(at));
      body = Buffer.concat(keep);
    }
  }
  if (recipients.length === 0) {
    throw new UsageError(opts.extract ? 'sendmail: no recipient addresses found in message header' : 'sendmail: recipient addresses must be specified on the command line or via the -t option');
  }

  const log = createMailLogger({ file: config.get('maillog_file'), stdout: false });
  const store = await QueueStore.open(config.dataDir(), queueStoreOptions(config));
  let writer: QueueWriter | null = null;
  try {
    writer = store.createWriter();
    const sub = new Submission(config, log, writer.queueId, sender, recipients, opts);
    return await sub.submit(store, writer, body, headerFields(body), user, io);
  } finally {
    await writer?.abort().catch(() => undefined);
    await store.close();
    await log.flush();
  }
}

/** One message on its way into the queue: the decisions and the log records about it. */
class Submission {
  constructor(
    private readonly config: Config,
    private readonly log: MailLogger,
    private readonly queueId: string,
    private readonly sender: string,
    private recipients: string[],
    private readonly opts: SendmailOptions,
  ) {}

  private record(event: EventRecord['event'], extra: Partial<EventRecord> = {}): EventRecord {
    return {
      event,
      stage: 'sendmail',
      queue_id: this.queueId,
      client_ip: LOCAL_CLIENT.address,
      client_name: LOCAL_CLIENT.name,
      from: this.sender,
      to: this.recipients.length === 1 ? this.recipients[0]! : [...this.recipients],
      ...extra,
    };
  }

  async submit(store: QueueStore, writer: QueueWriter, msg: Buffer, fields: HeaderField[], user: { name: string; uid: number }, io: CliIO): Promise<number> {
    const config = this.config;
    const myhostname = config.get('myhostname');
    const now = Date.now();
    const qid = this.queueId;
    // Our own Received: is not inspected, as smtpd's is not (header_checks(5)).
    const received = `Received: by ${myhostname} (${config.get('mail_name')}, from userid ${user.uid})\r\n\tid ${qid}; ${mailDate(now)}\r\n`;

    const checks = compileChecks(config, (spec) => openTable(spec, config.configDir));
    let outcome: ContentOutcome | null = null;
    let content = msg;
    if (checks.active) {
      const filter = new ContentFilter(checks);
      const out = filter.write(msg);
      const end = filter.end();
      outcome = end.outcome;
      content = Buffer.concat([...out, ...end.tail]);
    }
    content = this.addMissingHeaders(content, fields, now);
    const size = Buffer.byteLength(received) + content.length;
    if (outcome) this.logDecisions(outcome, size);

    if (outcome?.discard) {
      // Accepted and dropped: the DISCARD record above is its only trace (cleanup_flush()).
      return 0;
    }
    const refused = outcome?.reject ?? outcome?.error;
    if (refused) {
      io.err(`greygate: sendmail: ${formatReply(refused.reply)}\n`);
      // A REJECT with a 4.x.x text and a failed lookup are temporary: the user may retry.
      return refused.reply.code >= 500 ? EX_DATAERR : EX_TEMPFAIL;
    }
    const limit = config.int('message_size_limit');
    if (limit > 0 && size > limit) {
      const r: Reply = { code: 552, status: '5.3.4', text: 'Message size exceeds fixed limit' };
      this.log.event(this.record('reject', { size, code: r.code, status: r.status, reply: formatReply(r), rule: 'message_size_limit', msg: `${qid}: reject: message file too big (${size} > ${limit} bytes) from ${LOCAL_ORIGIN}; from=<${this.sender}>` }));
      io.err(`greygate: sendmail: message file too big: ${formatReply(r)}\n`);
      return EX_DATAERR;
    }

    if (outcome?.redirect) this.recipients = [outcome.redirect.address];
    const rcpts: NewRecipient[] = this.recipients.map((address) => (this.opts.notify ? { address, notify: [...this.opts.notify] } : { address }));
    // A policy copy never tells the sender about itself (Postfix adds BCCs with NOTIFY=NONE).
    for (const b of outcome?.bcc ?? []) {
      if (this.recipients.some((r) => r.toLowerCase() === b.address.toLowerCase())) continue;
      this.recipients.push(b.address);
      rcpts.push({ address: b.address, notify: ['NEVER'] });
    }
    const envelope: NewEnvelope = {
      sender: this.sender,
      recipients: rcpts,
      arrivalTime: now,
      client: LOCAL_CLIENT,
      protocol: 'sendmail',
      service: 'sendmail',
    };
    const hold = outcome?.hold;
    if (hold) envelope.holdReason = hold.text;
    if (outcome?.filter) envelope.filter = outcome.filter.nexthop;
    if (this.opts.envid !== undefined) envelope.envid = this.opts.envid;
    if (this.opts.ret !== undefined) envelope.ret = this.opts.ret;
    const bodyType = this.opts.bodyType ?? (eightBit(content) ? '8BITMIME' : undefined);
    if (bodyType !== undefined) envelope.bodyType = bodyType;

    await writer.write(Buffer.from(received, 'latin1'));
    await writer.write(content);
    const target = hold ? 'hold' : 'incoming';
    await writer.commit(envelope, target);
    // A running gateway takes it at once; without one it waits in the queue for the next start.
    await store.requestPickup();
    const rec = this.record('accept', { size, uid: user.uid, username: user.name });
    rec.msg = `${qid}: from=<${this.sender}>, size=${size}, nrcpt=${this.recipients.length} (queue ${target})`;
    this.log.event(rec);
    return 0;
  }

  /**
   * addMissingHeaders - cleanup's header_done: Message-ID, Date and From after the headers
   * the user wrote (Resent- ones for a forwarded message), never inspected by header_checks
   */
  private addMissingHeaders(content: Buffer, fields: readonly HeaderField[], now: number): Buffer {
    const has = new Set(fields.map((f) => f.name));
    const resent = fields.some((f) => f.name.startsWith('resent-'));
    const prefix = resent ? 'Resent-' : '';
    const lc = prefix.toLowerCase();
    const add: string[] = [];
    if (!has.has(`${lc}message-id`)) add.push(`${prefix}Message-ID: <${gmtStamp(now)}.${this.queueId}@${this.config.get('myhostname')}>`);
    if (!has.has(`${lc}date`)) add.push(`${prefix}Date: ${mailDate(now)}`);
    if (!has.has(`${lc}from`)) {
      const addr = this.sender === '' ? 'MAILER-DAEMON' : quote822Local(this.sender);
      const name = this.opts.fullName ?? process.env.NAME;
      add.push(`${prefix}From: ${this.sender !== '' && name ? `${phrase(name)} <${addr}>` : addr}`);
    }
    if (add.length === 0) return content;
    const at = headerEnd(content);
    // A message that starts with its body gets the blank line that separates it.
    const separator = at < content.length && !(content[at] === 0x0d && content[at + 1] === 0x0a) ? '\r\n' : '';
    const text = Buffer.from(add.map((h) => h + '\r\n').join('') + separator, 'utf8');
    return Buffer.concat([content.subarray(0, at), text, content.subarray(at)]);
  }

  /** One record per decision Postfix's cleanup would log (cleanup_act_log), as smtpd does. */
  private logDecisions(outcome: ContentOutcome, size: number): void {
    const qid = this.queueId;
    for (const w of outcome.warnings) {
      const rec = this.record('warn', { msg: `warning: ${w.message}` });
      if (w.rule) rec.rule = w.rule;
      this.log.event(rec);
    }
    for (const d of outcome.decisions) {
      if (!d.logged) continue;
      const rec = this.record(d.event, { rule: d.rule, check: d.table, where: d.where, matched: d.matched, size });
      if (d.text) rec.text = d.text;
      const r = (d.event === 'reject' || d.event === 'defer') && outcome.reject && outcome.reject.rule === d.rule ? outcome.reject.reply : undefined;
      if (r) Object.assign(rec, { code: r.code, status: r.status, reply: formatReply(r) });
      rec.msg = formatActLog(d, {
        queueId: qid,
        origin: LOCAL_ORIGIN,
        sender: this.sender,
        ...(this.recipients.length === 1 ? { recipient: this.recipients[0]! } : {}),
      });
      this.log.event(rec);
    }
    if (outcome.error && !outcome.reject && !outcome.discard) {
      const r = outcome.error.reply;
      this.log.event(
        this.record('defer', {
          rule: outcome.error.table,
          code: r.code,
          status: r.status,
          reply: formatReply(r),
          msg: `${qid}: warning: ${outcome.error.table} map lookup problem -- message not accepted, try again later: ${outcome.error.error.message}`,
        }),
      );
    }
  }
}

function eightBit(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! > 0x7f) return true;
  return false;
}
