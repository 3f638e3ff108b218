/**
 * @module queue/envelope
 * SUMMARY: the queue file format and its envelope, as pure functions. A file is a 32-byte
 * header (format version, message length), the message bytes, then envelope records
 * (`ENV <len> <digest>\n<json>\n`): the first is the commit record, later ones are in-place
 * updates, and the last intact one wins, so a torn append falls back to the previous state.
 * Exports Envelope/NewEnvelope, buildEnvelope(), serialiseEnvelope()/parseEnvelope()
 * (versioned JSON, snake_case on disk), encodeHeader()/decodeHeader(), encodeRecord()/scanRecords().
 * DIAGNOSTICS: parsers return { ok: false, reason } for damaged input; nothing throws.
 * SEE ALSO: Postfix rec_type.h, record.c, cleanup_envelope.c; RFC 3461 (NOTIFY, ORCPT, ENVID).
 */
import { createHash } from 'node:crypto';

export const ENVELOPE_VERSION = 1;

export type RecipientStatus = 'pending' | 'delivered' | 'deferred' | 'bounced';
export type DsnNotify = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

/** The outcome of the last delivery attempt for one recipient (RFC 3464 fields). */
export interface DsnResult {
  /** Enhanced status code, e.g. `4.4.1`. */
  status: string;
  /** Diagnostic-Code text: the remote reply or our own reason. */
  diagnostic?: string;
  remoteMta?: string;
}

export interface Recipient {
  address: string;
  /** The address as the client gave it, before rewriting (Postfix orig_rcpt). */
  originalAddress: string;
  status: RecipientStatus;
  /** Why delivery was deferred: the text postqueue shows in parentheses. */
  delayReason?: string;
  /** Why the recipient bounced (pending the non-delivery notice). */
  bounceReason?: string;
  dsn?: DsnResult;
  notify?: DsnNotify[];
  orcpt?: string;
}

/** Who sent the message: the contract's log fields client_ip, client_name, helo, sasl_username. */
export interface ClientInfo {
  /** client_ip; `127.0.0.1` for local submission. */
  address: string;
  /** client_name: the verified name, or `unknown`. */
  name: string;
  reverseName?: string;
  port?: number;
  /** '' when the client sent no HELO/EHLO. */
  helo: string;
  /** SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, or `sendmail` for local submission. */
  protocol: string;
  saslUsername?: string;
}

export interface Envelope {
  version: number;
  queueId: string;
  /** Envelope sender; `''` is the null sender `<>`. */
  sender: string;
  recipients: Recipient[];
  /** Milliseconds since the epoch. */
  arrivalTime: number;
  /** Bytes of header and body as delivered, prepended headers included (Postfix message_size). */
  messageSize: number;
  client: ClientInfo;
  /** The listener that received it (smtpd, submission, smtps, sendmail). */
  service?: string;
  attempts: number;
  /** When the scheduler wants to try again; the file's mtime carries the same value. */
  nextAttemptAt: number;
  lastAttemptAt?: number;
  /** When a delay warning (delay_warning_time) went to the sender; at most one per message. */
  delayWarningSentAt?: number;
  /** HOLD action text ('' when none was given); set whenever the message went to hold by policy. */
  hold?: string;
  /** DISCARD action text: accepted, and to be dropped by the scheduler for all recipients. */
  discard?: string;
  /** REDIRECT target: replaces all recipients at delivery (last one wins, Postfix cleanup). */
  redirect?: string;
  /** BCC recipients added by header/body checks or access(5), with NOTIFY=NONE. */
  bcc?: string[];
  /** FILTER transport:destination (last one wins). */
  filter?: string;
  /** Header lines (without CRLF) that readers emit before the stored message bytes. */
  prependHeaders?: string[];
  envid?: string;
  ret?: 'FULL' | 'HDRS';
  bodyType?: '7BIT' | '8BITMIME' | 'BINARYMIME';
  smtputf8?: boolean;
}

export interface NewRecipient {
  address: string;
  originalAddress?: string;
  notify?: DsnNotify[];
  orcpt?: string;
}

/**
 * What the SMTP DATA path (or sendmail) knows when it commits a message; shaped so that
 * smtpd's AcceptedEnvelope is one. A plain string recipient is its own original address.
 */
export interface NewEnvelope {
  sender: string;
  recipients: ReadonlyArray<string | NewRecipient>;
  /** Defaults to the time the writer was created. */
  arrivalTime?: number;
  /** Ignored: the writer counts the bytes it stored. */
  size?: number;
  client: { address: string; name: string; reverseName?: string; port?: number };
  helo?: string;
  protocol: string;
  saslUsername?: string;
  service?: string;
  holdReason?: string;
  discardReason?: string;
  redirect?: string;
  bcc?: readonly string[];
  filter?: string;
  prependHeaders?: readonly string[];
  envid?: string;
  ret?: 'FULL' | 'HDRS';
  bodyType?: '7BIT' | '8BITMIME' | 'BINARYMIME';
  smtputf8?: boolean;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Bytes a reader adds in front of the stored message for prepended headers. */
export function prependSize(headers: readonly string[] | undefined): number {
  let n = 0;
  for (const h of headers ?? []) n += Buffer.byteLength(h) + 2;
  return n;
}

/** buildEnvelope - the committed envelope for a new message of bodyLength stored bytes */
export function buildEnvelope(queueId: string, input: NewEnvelope, bodyLength: number, createdAt: number): Envelope {
  const arrivalTime = input.arrivalTime ?? createdAt;
  const client: ClientInfo = {
    address: input.client.address,
    name: input.client.name,
    helo: input.helo ?? '',
    protocol: input.protocol,
  };
  if (input.client.reverseName !== undefined) client.reverseName = input.client.reverseName;
  if (input.client.port !== undefined) client.port = input.client.port;
  if (input.saslUsername !== undefined) client.saslUsername = input.saslUsername;
  const env: Envelope = {
    version: ENVELOPE_VERSION,
    queueId,
    sender: input.sender,
    recipients: input.recipients.map((r) => {
      if (typeof r === 'string') return { address: r, originalAddress: r, status: 'pending' };
      const rcpt: Recipient = { address: r.address, originalAddress: r.originalAddress ?? r.address, status: 'pending' };
      if (r.notify) rcpt.notify = [...r.notify];
      if (r.orcpt !== undefined) rcpt.orcpt = r.orcpt;
      return rcpt;
    }),
    arrivalTime,
    messageSize: bodyLength + prependSize(input.prependHeaders),
    client,
    attempts: 0,
    nextAttemptAt: arrivalTime,
  };
  if (input.service !== undefined) env.service = input.service;
  if (input.holdReason !== undefined) env.hold = input.holdReason;
  if (input.discardReason !== undefined) env.discard = input.discardReason;
  if (input.redirect !== undefined) env.redirect = input.redirect;
  if (input.bcc?.length) env.bcc = [...input.bcc];
  if (input.filter !== undefined) env.filter = input.filter;
  if (input.prependHeaders?.length) env.prependHeaders = [...input.prependHeaders];
  if (input.envid !== undefined) env.envid = input.envid;
  if (input.ret !== undefined) env.ret = input.ret;
  if (input.bodyType !== undefined) env.bodyType = input.bodyType;
  if (input.smtputf8 !== undefined) env.smtputf8 = input.smtputf8;
  return env;
}

/* ---- JSON: snake_case on disk, like the log and `postqueue -j`, so `jq` users feel at home */

type Json = Record<string, unknown>;

function put(o: Json, key: string, v: unknown): void {
  if (v !== undefined) o[key] = v;
}

/** serialiseEnvelope - the envelope as one line of JSON */
export function serialiseEnvelope(env: Envelope): string {
  const o: Json = {
    version: ENVELOPE_VERSION,
    queue_id: env.queueId,
    sender: env.sender,
    arrival_time: env.arrivalTime,
    message_size: env.messageSize,
    client: clientToJson(env.client),
    attempts: env.attempts,
    next_attempt: env.nextAttemptAt,
  };
  put(o, 'service', env.service);
  put(o, 'last_attempt', env.lastAttemptAt);
  put(o, 'delay_warning_sent', env.delayWarningSentAt);
  put(o, 'hold_reason', env.hold);
  put(o, 'discard_reason', env.discard);
  put(o, 'redirect', env.redirect);
  put(o, 'bcc', env.bcc);
  put(o, 'filter', env.filter);
  put(o, 'prepend', env.prependHeaders);
  put(o, 'envid', env.envid);
  put(o, 'ret', env.ret);
  put(o, 'body_type', env.bodyType);
  put(o, 'smtputf8', env.smtputf8);
  o.recipients = env.recipients.map(recipientToJson);
  return JSON.stringify(o);
}

function clientToJson(c: ClientInfo): Json {
  const o: Json = { client_ip: c.address, client_name: c.name, helo: c.helo, protocol: c.protocol };
  put(o, 'reverse_client_name', c.reverseName);
  put(o, 'client_port', c.port);
  put(o, 'sasl_username', c.saslUsername);
  return o;
}

function recipientToJson(r: Recipient): Json {
  const o: Json = { address: r.address, orig_address: r.originalAddress, status: r.status };
  put(o, 'delay_reason', r.delayReason);
  put(o, 'bounce_reason', r.bounceReason);
  if (r.dsn) {
    const d: Json = { status: r.dsn.status };
    put(d, 'diagnostic', r.dsn.diagnostic);
    put(d, 'remote_mta', r.dsn.remoteMta);
    o.dsn = d;
  }
  put(o, 'notify', r.notify);
  put(o, 'orcpt', r.orcpt);
  return o;
}

class Bad extends Error {}

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function str(o: Json, k: string): string {
  const v = o[k];
  if (typeof v !== 'string') throw new Bad(`${k}: expected a string`);
  return v;
}
function optStr(o: Json, k: string): string | undefined {
  return o[k] === undefined ? undefined : str(o, k);
}
function num(o: Json, k: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Bad(`${k}: expected a non-negative number`);
  return v;
}
function optNum(o: Json, k: string): number | undefined {
  return o[k] === undefined || o[k] === null ? undefined : num(o, k);
}
function strList(o: Json, k: string): string[] | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Bad(`${k}: expected a list of strings`);
  return v as string[];
}
function oneOf<T extends string>(o: Json, k: string, values: readonly T[]): T | undefined {
  const v = optStr(o, k);
  if (v === undefined) return undefined;
  if (!(values as readonly string[]).includes(v)) throw new Bad(`${k}: unknown value "${v}"`);
  return v as T;
}

const STATUSES: readonly RecipientStatus[] = ['pending', 'delivered', 'deferred', 'bounced'];
const NOTIFY: readonly DsnNotify[] = ['NEVER', 'SUCCESS', 'FAILURE', 'DELAY'];

function assign<T extends object, K extends keyof T>(target: T, key: K, v: T[K] | undefined): void {
  if (v !== undefined) target[key] = v;
}

/** parseEnvelope - validate one JSON envelope text; a newer version is refused, not guessed at */
export function parseEnvelope(text: string): ParseResult<Envelope> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: `envelope is not JSON: ${(e as Error).message}` };
  }
  try {
    if (!isObj(raw)) throw new Bad('envelope: expected an object');
    const version = num(raw, 'version');
    if (version !== ENVELOPE_VERSION) throw new Bad(`unsupported envelope version ${version}`);
    const client = raw.client;
    if (!isObj(client)) throw new Bad('client: expected an object');
    const rcpts = raw.recipients;
    if (!Array.isArray(rcpts)) throw new Bad('recipients: expected a list');
    const env: Envelope = {
      version,
      queueId: str(raw, 'queue_id'),
      sender: str(raw, 'sender'),
      recipients: rcpts.map(parseRecipient),
      arrivalTime: num(raw, 'arrival_time'),
      messageSize: num(raw, 'message_size'),
      client: {
        address: str(client, 'client_ip'),
        name: str(client, 'client_name'),
        helo: str(client, 'helo'),
        protocol: str(client, 'protocol'),
      },
      attempts: num(raw, 'attempts'),
      nextAttemptAt: num(raw, 'next_attempt'),
    };
    assign(env.client, 'reverseName', optStr(client, 'reverse_client_name'));
    assign(env.client, 'port', optNum(client, 'client_port'));
    assign(env.client, 'saslUsername', optStr(client, 'sasl_username'));
    assign(env, 'service', optStr(raw, 'service'));
    assign(env, 'lastAttemptAt', optNum(raw, 'last_attempt'));
    assign(env, 'delayWarningSentAt', optNum(raw, 'delay_warning_sent'));
    assign(env, 'hold', optStr(raw, 'hold_reason'));
    assign(env, 'discard', optStr(raw, 'discard_reason'));
    assign(env, 'redirect', optStr(raw, 'redirect'));
    assign(env, 'bcc', strList(raw, 'bcc'));
    assign(env, 'filter', optStr(raw, 'filter'));
    assign(env, 'prependHeaders', strList(raw, 'prepend'));
    assign(env, 'envid', optStr(raw, 'envid'));
    assign(env, 'ret', oneOf(raw, 'ret', ['FULL', 'HDRS'] as const));
    assign(env, 'bodyType', oneOf(raw, 'body_type', ['7BIT', '8BITMIME', 'BINARYMIME'] as const));
    if (raw.smtputf8 !== undefined) {
      if (typeof raw.smtputf8 !== 'boolean') throw new Bad('smtputf8: expected true or false');
      env.smtputf8 = raw.smtputf8;
    }
    return { ok: true, value: env };
  } catch (e) {
    if (e instanceof Bad) return { ok: false, reason: e.message };
    throw e;
  }
}

function parseRecipient(v: unknown, i: number): Recipient {
  if (!isObj(v)) throw new Bad(`recipients[${i}]: expected an object`);
  const status = oneOf(v, 'status', STATUSES);
  if (!status) throw new Bad(`recipients[${i}].status: missing`);
  const r: Recipient = { address: str(v, 'address'), originalAddress: str(v, 'orig_address'), status };
  assign(r, 'delayReason', optStr(v, 'delay_reason'));
  assign(r, 'bounceReason', optStr(v, 'bounce_reason'));
  const dsn = v.dsn;
  if (dsn !== undefined) {
    if (!isObj(dsn)) throw new Bad(`recipients[${i}].dsn: expected an object`);
    const d: DsnResult = { status: str(dsn, 'status') };
    assign(d, 'diagnostic', optStr(dsn, 'diagnostic'));
    assign(d, 'remoteMta', optStr(dsn, 'remote_mta'));
    r.dsn = d;
  }
  const notify = strList(v, 'notify');
  if (notify) {
    if (!notify.every((n) => (NOTIFY as readonly string[]).includes(n))) throw new Bad(`recipients[${i}].notify: unknown value`);
    r.notify = notify as DsnNotify[];
  }
  assign(r, 'orcpt', optStr(v, 'orcpt'));
  return r;
}

/* ---- file framing */

const MAGIC = 'GREYGATE-QUEUE/1 ';
/** Size of the fixed header: MAGIC, 14 hex digits of message length, newline. */
export const HEADER_SIZE = 32;
const RECORD_TAG = 'ENV ';
/** `ENV ` + 8 hex length + space + 16 hex digest + newline. */
const RECORD_HEAD_SIZE = 30;

/** encodeHeader - the 32-byte file header for a message of bodyLength bytes */
export function encodeHeader(bodyLength: number): Buffer {
  const b = Buffer.from(`${MAGIC}${bodyLength.toString(16).padStart(14, '0')}\n`, 'latin1');
  if (b.length !== HEADER_SIZE) throw new RangeError(`message too large for the queue file header: ${bodyLength}`);
  return b;
}

/** decodeHeader - the message length from a file header */
export function decodeHeader(buf: Buffer): ParseResult<number> {
  if (buf.length < HEADER_SIZE) return { ok: false, reason: 'file shorter than its header' };
  const text = buf.subarray(0, HEADER_SIZE).toString('latin1');
  if (!text.startsWith(MAGIC) || text[HEADER_SIZE - 1] !== '\n') return { ok: false, reason: 'not a greygate queue file (bad header)' };
  const hex = text.slice(MAGIC.length, HEADER_SIZE - 1);
  if (!/^[0-9a-f]{14}$/.test(hex)) return { ok: false, reason: 'bad message length in header' };
  return { ok: true, value: parseInt(hex, 16) };
}

function digest(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 16);
}

/** encodeRecord - one framed envelope record */
export function encodeRecord(env: Envelope): Buffer {
  const json = Buffer.from(serialiseEnvelope(env), 'utf8');
  const head = Buffer.from(`${RECORD_TAG}${json.length.toString(16).padStart(8, '0')} ${digest(json)}\n`, 'latin1');
  return Buffer.concat([head, json, Buffer.from('\n')]);
}

export interface RecordScan {
  /** JSON text of the last intact record, or null when there is none. */
  last: string | null;
  /** Number of intact records. */
  count: number;
  /** Offset just past the last intact record: where the next update is appended. */
  end: number;
}

/** scanRecords - walk the records after the message; stop at the first damaged one */
export function scanRecords(area: Buffer): RecordScan {
  let off = 0;
  let last: string | null = null;
  let count = 0;
  while (off + RECORD_HEAD_SIZE <= area.length) {
    const head = area.subarray(off, off + RECORD_HEAD_SIZE).toString('latin1');
    const m = /^ENV ([0-9a-f]{8}) ([0-9a-f]{16})\n$/.exec(head);
    if (!m) break;
    const len = parseInt(m[1]!, 16);
    const start = off + RECORD_HEAD_SIZE;
    if (start + len + 1 > area.length || area[start + len] !== 0x0a) break;
    const json = area.subarray(start, start + len);
    if (digest(json) !== m[2]) break;
    last = json.toString('utf8');
    count++;
    off = start + len + 1;
  }
  return { last, count, end: off };
}
