/**
 * @module delivery/smtp-connection-pool
 * SUMMARY: the SMTP client's wire side, the only file that uses nodemailer. SmtpSession.open()
 * (own TCP connect, then nodemailer's smtp-connection for greeting, EHLO/HELO, STARTTLS) and
 * send() (one transaction with the exact MAIL FROM/RCPT TO lines given) return OpenResult and
 * TransactionResult values; SessionCache keeps idle sessions per next hop (RSET probe on
 * reuse); DestinationLimiter is a FIFO semaphore per next hop; CrlfNormalizer/normalizeCrlf()
 * make every bare CR or LF a CRLF, across chunk borders.
 * DIAGNOSTICS: nothing logged or thrown for network trouble; failures carry their stage.
 * Two nodemailer 10.6.1 internals are used, in GatewayConnection only: _sendCommand and _envelope.
 * SEE ALSO: Postfix smtp_connect.c, smtp_proto.c, smtp_reuse.c; RFC 5321, RFC 3207.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import SMTPConnection, { type SMTPConnectionOptions } from 'nodemailer/lib/smtp-connection/index.js';
import type { SmtpHost } from './nexthop.js';

export type TlsLevel = 'none' | 'may' | 'encrypt';

export interface SessionOptions {
  /** EHLO/HELO name (smtp_helo_name). */
  readonly heloName: string;
  readonly tls: TlsLevel;
  /** TCP connect (smtp_connect_timeout). */
  readonly connectTimeoutMs: number;
  /** Greeting, EHLO, STARTTLS and the second EHLO, together (smtp_helo_timeout). */
  readonly heloTimeoutMs: number;
  /** Longest silence during a transaction, the end-of-data reply included (smtp_data_done_timeout). */
  readonly dataDoneTimeoutMs: number;
}

/** Why a session could not be set up; `where` is Postfix's "while ..." phrase. */
export type SessionFailure =
  | { readonly kind: 'connect'; readonly error: string }
  | { readonly kind: 'refused'; readonly stage: 'greeting' | 'ehlo' | 'helo'; readonly reply: string }
  | { readonly kind: 'starttls-refused'; readonly reply: string }
  | { readonly kind: 'tls-handshake'; readonly detail: string }
  | { readonly kind: 'tls-not-offered' }
  | { readonly kind: 'lost' | 'timeout'; readonly where: string };

export type OpenResult = { readonly ok: true; readonly session: SmtpSession } | { readonly ok: false; readonly failure: SessionFailure };

export interface Transaction {
  /** The whole MAIL FROM command line, without CRLF. */
  readonly mailFrom: string;
  /** One whole RCPT TO command line per recipient, without CRLF. */
  readonly rcptTo: readonly string[];
  /** The message, already CRLF-normalised (dot-stuffing is done on the way out). */
  readonly message: Buffer;
}

/** Transaction stages, for "(in reply to ...)" and "while ..." texts. */
export type Stage = 'mail' | 'rcpt' | 'data' | 'body' | 'dot';

export type RcptResult = { readonly accepted: true } | { readonly accepted: false; readonly reply: string };

export interface TransactionResult {
  /** The reply to MAIL FROM when it was refused. */
  readonly mail?: string;
  /** By recipient index; undefined when no reply was seen (the session broke first). */
  readonly rcpt: ReadonlyArray<RcptResult | undefined>;
  /** The reply to DATA when it was refused. */
  readonly data?: string;
  /** The reply to the end of data. */
  readonly dot?: { readonly accepted: boolean; readonly reply: string };
  /** The session broke (lost, timed out, or the server said 421) at STAGE. */
  readonly trouble?: { readonly kind: 'lost' | 'timeout'; readonly stage: Stage } | { readonly kind: 'reply'; readonly stage: Stage; readonly reply: string };
}

/* ---- line endings ---- */

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');

/**
 * The state of CRLF normalisation over a stream: a CR at the end of one chunk is held back
 * until the next chunk shows whether an LF follows.
 */
export class CrlfState {
  private heldCr = false;

  /** push - CHUNK with bare CR and bare LF as CRLF (the same buffer when it has none) */
  push(chunk: Buffer): Buffer {
    if (chunk.length === 0) return chunk;
    const parts: Buffer[] = [];
    let start = 0;
    let i = 0;
    if (this.heldCr) {
      this.heldCr = false;
      parts.push(CRLF);
      if (chunk[0] === LF) i = start = 1;
    }
    for (; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === CR) {
        if (i + 1 === chunk.length) {
          if (i > start) parts.push(chunk.subarray(start, i));
          start = i + 1;
          this.heldCr = true;
        } else if (chunk[i + 1] === LF) {
          i++;
        } else {
          parts.push(chunk.subarray(start, i), CRLF);
          start = i + 1;
        }
      } else if (b === LF) {
        parts.push(chunk.subarray(start, i), CRLF);
        start = i + 1;
      }
    }
    if (start === 0 && parts.length === 0) return chunk;
    if (start < chunk.length) parts.push(chunk.subarray(start));
    return Buffer.concat(parts);
  }

  /** end - what is still held back: CRLF for a final bare CR, else nothing */
  end(): Buffer {
    if (!this.heldCr) return Buffer.alloc(0);
    this.heldCr = false;
    return CRLF;
  }
}

/**
 * A Transform that normalises line endings to CRLF, so that no bare CR or LF ever reaches
 * a server that might read it as a line end (SMTP smuggling).
 */
export class CrlfNormalizer extends Transform {
  private readonly state = new CrlfState();

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out = this.state.push(chunk);
    if (out.length > 0) this.push(out);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    const out = this.state.end();
    if (out.length > 0) this.push(out);
    cb();
  }
}

/** normalizeCrlf - a whole message with CRLF line endings (the same buffer when clean) */
export function normalizeCrlf(message: Buffer): Buffer {
  const s = new CrlfState();
  const body = s.push(message);
  const tail = s.end();
  return tail.length === 0 ? body : Buffer.concat([body, tail]);
}

/* ---- nodemailer adapter ---- */

interface NodemailerError extends Error {
  code?: string;
  command?: string;
  response?: string;
  recipient?: string;
  rejectedErrors?: NodemailerError[];
}

interface EnvelopeInternals {
  accepted?: string[];
  rejectedErrors?: NodemailerError[];
}

interface ConnectionInternals {
  _sendCommand(str: string, logStr?: string): void;
  _envelope: EnvelopeInternals | false;
}

const BASE = SMTPConnection.prototype as unknown as ConnectionInternals;
const NOOP = (): void => undefined;
const SENDER_PLACEHOLDER = 's';
const RCPT_PLACEHOLDER = /^RCPT TO:<r(\d+)>/;

/**
 * nodemailer's SMTPConnection with our own MAIL FROM and RCPT TO lines: nodemailer is handed
 * placeholder addresses (s, r0, r1, ...) and each command it writes for them is replaced by
 * the line we built, because its envelope API has one NOTIFY/ORCPT for all recipients and
 * sends SMTPUTF8 only for non-ASCII addresses. The last command verb names the stage of a
 * failure. Checked against nodemailer 10.6.1 (pinned); test/delivery/relay.test.ts checks
 * the exact lines on the wire.
 */
class GatewayConnection extends SMTPConnection {
  plan: { mail: string; rcpt: readonly string[] } | null = null;
  lastVerb = '';

  constructor(options: SMTPConnectionOptions) {
    super(options);
    // An 'error' without a listener would throw; every error also reaches a callback.
    this.on('error', NOOP);
  }

  _sendCommand(str: string, logStr?: string): void {
    let line = str;
    if (this.plan) {
      if (str.startsWith(`MAIL FROM:<${SENDER_PLACEHOLDER}>`)) line = this.plan.mail;
      else {
        const m = RCPT_PLACEHOLDER.exec(str);
        if (m) line = this.plan.rcpt[Number(m[1])] ?? str;
      }
    }
    this.lastVerb = (line.split(' ', 1)[0] ?? '').toUpperCase();
    BASE._sendCommand.call(this, line, logStr);
  }

  /** The RCPT replies so far: when DATA or the end of data fails, nodemailer's error has none. */
  envelopeState(): EnvelopeInternals {
    const env = (this as unknown as ConnectionInternals)._envelope;
    return env === false || env === undefined ? {} : env;
  }
}

const ERRNO_TEXT: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'Connection refused',
  ETIMEDOUT: 'Connection timed out',
  EHOSTUNREACH: 'No route to host',
  ENETUNREACH: 'Network is unreachable',
  ECONNRESET: 'Connection reset by peer',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  EACCES: 'Permission denied',
};

/** tcpConnect - a connected socket, or strerror()-style text as in "connect to ...: %m" */
function tcpConnect(host: SmtpHost, timeoutMs: number): Promise<{ ok: true; socket: Socket } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: host.address, port: host.port });
    // Kept for the socket's life: nodemailer adds its own, and an unheard 'error' would throw.
    socket.on('error', NOOP);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, error: 'Connection timed out' });
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve({ ok: true, socket });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: false, error: ERRNO_TEXT[err.code ?? ''] ?? err.message });
    });
  });
}

function handshakeWhere(verb: string): string {
  switch (verb) {
    case 'EHLO':
      return 'performing the EHLO handshake';
    case 'HELO':
      return 'performing the HELO handshake';
    case 'STARTTLS':
      return 'performing the STARTTLS handshake';
    default:
      return 'receiving the initial server greeting';
  }
}

function openFailure(err: NodemailerError, verb: string): SessionFailure {
  const reply = typeof err.response === 'string' && /^\d{3}/.test(err.response) ? err.response : null;
  if (err.code === 'ETLS' && reply) return { kind: 'starttls-refused', reply };
  // Whatever breaks between our STARTTLS and the next EHLO is the handshake failing
  // (nodemailer reports it as a TLS or as a plain socket error).
  if (err.code === 'ETLS' || (verb === 'STARTTLS' && !reply)) return { kind: 'tls-handshake', detail: err.message };
  if (reply) {
    const stage = err.command === 'HELO' ? 'helo' : err.command === 'EHLO' ? 'ehlo' : 'greeting';
    return { kind: 'refused', stage, reply };
  }
  return { kind: err.code === 'ETIMEDOUT' ? 'timeout' : 'lost', where: handshakeWhere(verb) };
}

/** The EHLO keywords (upper case) and the SIZE limit from the EHLO reply as received. */
function parseEhlo(reply: string | false): { extensions: Set<string>; sizeLimit: number } {
  const extensions = new Set<string>();
  let sizeLimit = 0;
  if (!reply || !reply.startsWith('250')) return { extensions, sizeLimit };
  for (const line of reply.split('\n').slice(1)) {
    const words = line.replace(/^\d{3}[ -]/, '').trim().split(/[ \t=]+/);
    const keyword = (words[0] ?? '').toUpperCase();
    if (keyword === '') continue;
    extensions.add(keyword);
    if (keyword === 'SIZE' && words[1] && /^\d+$/.test(words[1])) sizeLimit = Number(words[1]);
  }
  return { extensions, sizeLimit };
}

/** How many bytes a source of the message hands nodemailer at a time. */
const SLICE = 64 * 1024;

/** One SMTP connection to one host, after a successful EHLO (and STARTTLS when used). */
export class SmtpSession {
  readonly host: SmtpHost;
  /** EHLO keywords, upper case; empty after HELO. */
  readonly extensions: ReadonlySet<string>;
  /** The server's SIZE limit; 0 when none was announced. */
  readonly sizeLimit: number;
  /** True when STARTTLS succeeded. */
  readonly secure: boolean;
  /** Transactions started on this connection. */
  messages = 0;
  private readonly conn: GatewayConnection;
  private ended = false;

  private constructor(host: SmtpHost, conn: GatewayConnection) {
    this.host = host;
    this.conn = conn;
    const ehlo = parseEhlo(conn.lastServerResponse);
    this.extensions = ehlo.extensions;
    this.sizeLimit = ehlo.sizeLimit;
    this.secure = conn.secure;
    conn.once('end', () => {
      this.ended = true;
    });
  }

  /** open - connect, read the greeting, EHLO (HELO), STARTTLS as OPTS.tls says */
  static async open(host: SmtpHost, opts: SessionOptions): Promise<OpenResult> {
    const tcp = await tcpConnect(host, opts.connectTimeoutMs);
    if (!tcp.ok) return { ok: false, failure: { kind: 'connect', error: tcp.error } };
    const conn = new GatewayConnection({
      connection: tcp.socket,
      host: host.address,
      port: host.port,
      servername: isIP(host.hostname) ? undefined : host.hostname,
      name: opts.heloName,
      ignoreTLS: opts.tls === 'none',
      // Opportunistic TLS does not check the certificate (Postfix `may` and `encrypt`).
      tls: { rejectUnauthorized: false },
      connectionTimeout: opts.heloTimeoutMs,
      greetingTimeout: opts.heloTimeoutMs,
      socketTimeout: opts.dataDoneTimeoutMs,
      socketCloseTimeout: 1000,
      logger: false,
    });
    const result = await new Promise<OpenResult | true>((resolve) => {
      let done = false;
      const finish = (r: OpenResult | true): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        conn.off('error', onError);
        conn.off('end', onEnd);
        resolve(r);
      };
      const onError = (err: NodemailerError): void => finish({ ok: false, failure: openFailure(err, conn.lastVerb) });
      const onEnd = (): void =>
        finish({ ok: false, failure: conn.lastVerb === 'STARTTLS' ? { kind: 'tls-handshake', detail: 'connection closed' } : { kind: 'lost', where: handshakeWhere(conn.lastVerb) } });
      const timer = setTimeout(() => {
        // Settled before close(), whose 'end' would otherwise report a lost connection.
        finish({ ok: false, failure: { kind: 'timeout', where: handshakeWhere(conn.lastVerb) } });
        conn.close();
      }, opts.heloTimeoutMs);
      conn.on('error', onError);
      conn.once('end', onEnd);
      conn.connect((err) => (err ? onError(err as NodemailerError) : finish(true)));
    });
    if (result !== true) {
      conn.close();
      return result;
    }
    const session = new SmtpSession(host, conn);
    if (opts.tls === 'encrypt' && !session.secure) {
      session.destroy();
      return { ok: false, failure: { kind: 'tls-not-offered' } };
    }
    return { ok: true, session };
  }

  /** True while the connection is open and usable. */
  get alive(): boolean {
    return !this.ended && !this.conn.destroyed;
  }

  /** reset - RSET; false when the connection turned out to be broken */
  reset(timeoutMs: number): Promise<boolean> {
    if (!this.alive) return Promise.resolve(false);
    return new Promise((resolve) => {
      let done = false;
      const finish = (ok: boolean): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.conn.off('error', onFail);
        this.conn.off('end', onFail);
        if (!ok) this.destroy();
        resolve(ok);
      };
      const onFail = (): void => finish(false);
      const timer = setTimeout(onFail, timeoutMs);
      this.conn.on('error', onFail);
      this.conn.once('end', onFail);
      this.conn.reset((err) => finish(!err));
    });
  }

  /** send - one transaction: MAIL FROM, RCPT TO..., DATA, message, end of data */
  send(tx: Transaction): Promise<TransactionResult> {
    this.messages++;
    const conn = this.conn;
    conn.plan = { mail: tx.mailFrom, rcpt: tx.rcptTo };
    const placeholders = tx.rcptTo.map((_, i) => `r${i}`);
    let bodyStarted = false;
    let bodyEnded = false;
    const message = Readable.from(
      (function* slices() {
        bodyStarted = true;
        for (let off = 0; off < tx.message.length; off += SLICE) yield tx.message.subarray(off, off + SLICE);
      })(),
      { objectMode: false },
    );
    message.once('end', () => {
      bodyEnded = true;
    });

    const rcptResults = (): Array<RcptResult | undefined> => {
      const env = conn.envelopeState();
      const out: Array<RcptResult | undefined> = tx.rcptTo.map(() => undefined);
      for (const p of env.accepted ?? []) {
        const i = Number(p.slice(1));
        if (i < out.length) out[i] = { accepted: true };
      }
      for (const e of env.rejectedErrors ?? []) {
        const i = Number((e.recipient ?? '').slice(1));
        if (i < out.length && typeof e.response === 'string') out[i] = { accepted: false, reply: e.response };
      }
      return out;
    };
    const stage = (rcpt: ReadonlyArray<RcptResult | undefined>): Stage => {
      if (bodyEnded) return 'dot';
      if (bodyStarted) return 'body';
      const answered = rcpt.filter((r) => r !== undefined).length;
      if (answered === 0) return 'mail';
      return answered < rcpt.length ? 'rcpt' : 'data';
    };

    return new Promise((resolve) => {
      let done = false;
      const finish = (r: TransactionResult): void => {
        if (done) return;
        done = true;
        conn.plan = null;
        conn.off('end', onEnd);
        resolve(r);
      };
      // nodemailer fails the send in flight when the socket closes; this is only a backstop.
      const onEnd = (): void => {
        setImmediate(() => {
          const rcpt = rcptResults();
          finish({ rcpt, trouble: { kind: 'lost', stage: stage(rcpt) } });
        });
      };
      conn.once('end', onEnd);
      conn.send({ from: SENDER_PLACEHOLDER, to: placeholders }, message, (err, info) => {
        const rcpt = rcptResults();
        if (!err) {
          finish({ rcpt, dot: { accepted: true, reply: info?.response ?? '' } });
          return;
        }
        const e = err as NodemailerError;
        const reply = typeof e.response === 'string' && /^\d{3}/.test(e.response) ? e.response : null;
        if (e.code === 'EENVELOPE' && e.command === 'MAIL FROM' && reply) finish({ rcpt, mail: reply });
        else if (e.code === 'EENVELOPE' && e.command === 'RCPT TO') {
          for (const r of e.rejectedErrors ?? []) {
            const i = Number((r.recipient ?? '').slice(1));
            if (i < rcpt.length && typeof r.response === 'string') (rcpt as Array<RcptResult | undefined>)[i] = { accepted: false, reply: r.response };
          }
          finish({ rcpt });
        } else if (e.code === 'EENVELOPE' && e.command === 'DATA' && reply) finish({ rcpt, data: reply });
        else if (e.code === 'EMESSAGE' && e.command === 'DATA' && reply) finish({ rcpt, dot: { accepted: false, reply } });
        else if (reply) finish({ rcpt, trouble: { kind: 'reply', stage: stage(rcpt), reply } });
        else finish({ rcpt, trouble: { kind: e.code === 'ETIMEDOUT' ? 'timeout' : 'lost', stage: stage(rcpt) } });
      });
    });
  }

  /** quit - QUIT, then close; resolves when closed (at most about a second) */
  quit(): Promise<void> {
    if (!this.alive) {
      this.destroy();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.destroy();
        resolve();
      }, 1000);
      timer.unref();
      this.conn.once('end', () => {
        clearTimeout(timer);
        resolve();
      });
      this.conn.quit();
    });
  }

  /** destroy - close the connection without QUIT */
  destroy(): void {
    this.ended = true;
    this.conn.close();
  }
}

/* ---- connection cache (smtp_connection_cache_*) ---- */

/** Postfix smtp_rset_timeout: how long a cached connection may take to answer the RSET probe. */
const RSET_PROBE_TIMEOUT_MS = 20_000;

interface Idle {
  readonly session: SmtpSession;
  readonly timer: NodeJS.Timeout;
}

/** Idle sessions per next hop, each closed after the cache time limit. */
export class SessionCache {
  private readonly idle = new Map<string, Idle[]>();
  private readonly closing = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly timeLimitMs: number,
    /** Transactions per connection; 0 = no limit. */
    private readonly reuseLimit: number,
  ) {}

  /** put - keep SESSION for KEY, or QUIT it when it may not be reused */
  put(key: string, session: SmtpSession): void {
    if (this.closed || this.timeLimitMs <= 0 || !session.alive || (this.reuseLimit > 0 && session.messages >= this.reuseLimit)) {
      this.retire(session);
      return;
    }
    const timer = setTimeout(() => {
      const list = this.idle.get(key) ?? [];
      const i = list.findIndex((x) => x.session === session);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.idle.delete(key);
      this.retire(session);
    }, this.timeLimitMs);
    const list = this.idle.get(key) ?? [];
    list.push({ session, timer });
    this.idle.set(key, list);
  }

  /**
   * checkout - a cached session for KEY that answered an RSET probe, or null. The most
   * recently used comes first; broken ones are dropped on the way.
   */
  async checkout(key: string): Promise<SmtpSession | null> {
    for (;;) {
      const list = this.idle.get(key);
      const entry = list?.pop();
      if (!entry) return null;
      if (list!.length === 0) this.idle.delete(key);
      clearTimeout(entry.timer);
      if (await entry.session.reset(RSET_PROBE_TIMEOUT_MS)) return entry.session;
    }
  }

  /** retire - QUIT SESSION in the background (close() waits for it) */
  retire(session: SmtpSession): void {
    const p = session.quit().finally(() => this.closing.delete(p));
    this.closing.add(p);
  }

  /** close - QUIT every idle session and refuse new ones */
  async close(): Promise<void> {
    this.closed = true;
    for (const list of this.idle.values()) {
      for (const { session, timer } of list) {
        clearTimeout(timer);
        this.retire(session);
      }
    }
    this.idle.clear();
    await Promise.all([...this.closing]);
  }
}

/* ---- per-destination concurrency (default_destination_concurrency_limit) ---- */

/** A FIFO semaphore per next hop: at most `limit` deliveries at once (0 = no limit). */
export class DestinationLimiter {
  private readonly slots = new Map<string, { active: number; waiting: Array<() => void> }>();

  constructor(private readonly limit: number) {}

  /** acquire - wait for a slot for KEY; returns the function that gives it back */
  async acquire(key: string): Promise<() => void> {
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { active: 0, waiting: [] };
      this.slots.set(key, slot);
    }
    const s = slot;
    if (this.limit > 0 && s.active >= this.limit) {
      await new Promise<void>((resolve) => s.waiting.push(resolve));
    } else {
      s.active++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = s.waiting.shift();
      // The slot passes straight to the next waiter, so a newcomer cannot jump the queue.
      if (next) next();
      else if (--s.active === 0) this.slots.delete(key);
    };
  }
}
