/**
 * @module test/helpers/smtp-sink
 * SUMMARY: a scriptable SMTP sink for delivery tests, built on smtp-server, on loopback
 * (127.0.0.1 and port 0 unless told otherwise). SmtpSink.start(options) listens; every
 * message is recorded in `messages` (envelope with parameters, the raw bytes exactly as
 * received after dot-unstuffing, TLS or not, the EHLO name, the connection number), and
 * `connections` / `maxActive` count connections. Replies can be scripted per stage
 * (greeting, MAIL, RCPT per address, end of data; hooks may be async to delay) and EHLO
 * keywords hidden. stop() takes it down at once; start() again brings it back on the same
 * address and port, with its records, for "sink down, deferred, sink back" tests.
 * Reply texts are sent verbatim (no enhanced code is added by smtp-server).
 * SEE ALSO: smtp-server README, test/delivery/relay.test.ts.
 */
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { generateSelfSigned } from '../../src/smtpd/tls.js';

export interface SinkReply {
  readonly code: number;
  /** The text after the code, e.g. "5.1.1 <a@b>: no such user". */
  readonly text: string;
}

type MaybeReply = SinkReply | undefined | void;
type Hook<A extends unknown[]> = (...args: A) => MaybeReply | Promise<MaybeReply>;

export interface SinkAddress {
  readonly address: string;
  /** MAIL FROM / RCPT TO parameters as smtp-server parsed them (upper-case keys). */
  readonly args: Readonly<Record<string, string | true>>;
}

export interface SinkMessage {
  readonly mailFrom: SinkAddress;
  readonly rcptTo: readonly SinkAddress[];
  /** The message as received (dot-unstuffed, without the final "."). */
  readonly raw: Buffer;
  /** STARTTLS was used on the connection. */
  readonly tls: boolean;
  /** The name the client gave in EHLO/HELO. */
  readonly ehlo: string;
  /** 1 for the first connection the sink accepted, and so on. */
  readonly connection: number;
  /** The client's address (which of our addresses it came from). */
  readonly remoteAddress: string;
}

export interface SinkOptions {
  /** Listen address; 127.0.0.1 by default (127.0.0.2... work on Linux too). */
  readonly host?: string;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  /** Offer STARTTLS (self-signed certificate); 'broken': offer it, but every handshake fails. */
  readonly tls?: boolean | 'broken';
  /** Text after "220 NAME ESMTP". */
  readonly banner?: string;
  /** The host name in the greeting and EHLO reply. */
  readonly name?: string;
  /** Refuse every connection with this reply instead of the 220 greeting. */
  readonly greeting?: SinkReply;
  /** EHLO keywords to leave out (all are announced by default; STARTTLS follows `tls`). */
  readonly hide?: { readonly eightBitMime?: boolean; readonly smtputf8?: boolean; readonly dsn?: boolean; readonly pipelining?: boolean; readonly size?: boolean };
  /** Announce (and enforce) SIZE. */
  readonly size?: number;
  /** Reply to MAIL FROM; undefined = "250 Accepted". */
  readonly mail?: Hook<[SinkAddress]>;
  /** Reply to RCPT TO; undefined = "250 Accepted". */
  readonly rcpt?: Hook<[SinkAddress]>;
  /** Reply to the end of data (after the message is recorded); undefined = 250 queued. */
  readonly data?: Hook<[SinkMessage]>;
}

let certificate: Promise<{ key: string; cert: string }> | null = null;

function sinkCertificate(): Promise<{ key: string; cert: string }> {
  certificate ??= generateSelfSigned('localhost');
  return certificate;
}

function smtpError(r: SinkReply): Error & { responseCode: number } {
  return Object.assign(new Error(r.text), { responseCode: r.code });
}

function toAddress(a: SMTPServerAddress): SinkAddress {
  return { address: a.address, args: { ...(a.args || {}) } };
}

async function runHook<A extends unknown[]>(hook: Hook<A> | undefined, args: A, cb: (err?: Error | null) => void): Promise<void> {
  try {
    const r = hook ? await hook(...args) : undefined;
    if (r && r.code >= 400) cb(smtpError(r));
    else cb();
  } catch (err) {
    cb(err as Error);
  }
}

export class SmtpSink {
  readonly messages: SinkMessage[] = [];
  /** Connections accepted so far (over every start()). */
  connections = 0;
  /** Connections open now, and the most that were open at once. */
  active = 0;
  maxActive = 0;
  readonly host: string;
  port: number;
  private readonly options: SinkOptions;
  private server: SMTPServer | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly connectionNumbers = new Map<string, number>();
  private waiters: Array<() => void> = [];
  private queued = 0;

  private constructor(options: SinkOptions) {
    this.options = options;
    this.host = options.host ?? '127.0.0.1';
    this.port = options.port ?? 0;
  }

  static async start(options: SinkOptions = {}): Promise<SmtpSink> {
    const sink = new SmtpSink(options);
    await sink.start();
    return sink;
  }

  /** `[host]:port`, the next-hop form that skips MX lookups. */
  get nexthop(): string {
    return `[${this.host}]:${this.port}`;
  }

  get listening(): boolean {
    return this.server !== null;
  }

  /** start - listen (again) on the same address and port */
  async start(): Promise<void> {
    if (this.server) return;
    const o = this.options;
    const hide = o.hide ?? {};
    const tlsMaterial = o.tls ? await sinkCertificate() : null;
    const options: SMTPServerOptions = {
      name: o.name ?? 'sink.test',
      banner: o.banner,
      logger: false,
      authOptional: true,
      disableReverseLookup: true,
      hideENHANCEDSTATUSCODES: true,
      hide8BITMIME: !!hide.eightBitMime,
      hideSMTPUTF8: !!hide.smtputf8,
      hideDSN: !!hide.dsn,
      hidePIPELINING: !!hide.pipelining,
      hideSize: o.size === undefined || !!hide.size,
      size: o.size,
      disabledCommands: o.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      hideSTARTTLS: !o.tls,
      closeTimeout: 100,
      onConnect: (session, cb) => {
        this.connections++;
        this.connectionNumbers.set(session.id, this.connections);
        if (o.greeting) return cb(smtpError(o.greeting));
        cb();
      },
      onMailFrom: (addr, _session, cb) => void runHook(o.mail, [toAddress(addr)], cb),
      onRcptTo: (addr, _session, cb) => void runHook(o.rcpt, [toAddress(addr)], cb),
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => void this.onMessage(session, Buffer.concat(chunks), cb));
      },
    };
    if (tlsMaterial) {
      Object.assign(options, { key: tlsMaterial.key, cert: tlsMaterial.cert });
      // Server TLS 1.0/1.1 only: a client that insists on 1.2 (Node's default) fails the handshake.
      if (o.tls === 'broken') Object.assign(options, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1' });
    }
    const server = new SMTPServer(options);
    server.on('error', () => undefined);
    server.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      this.active++;
      this.maxActive = Math.max(this.maxActive, this.active);
      s.once('close', () => {
        this.sockets.delete(s);
        this.active--;
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(this.port, this.host, () => {
        server.server.off('error', reject);
        resolve();
      });
    });
    const a = server.server.address();
    if (typeof a === 'object' && a) this.port = a.port;
    this.server = server;
  }

  private async onMessage(session: SMTPServerSession, raw: Buffer, cb: (err?: Error | null, message?: string) => void): Promise<void> {
    const env = session.envelope;
    const message: SinkMessage = {
      mailFrom: env.mailFrom ? toAddress(env.mailFrom) : { address: '', args: {} },
      rcptTo: env.rcptTo.map(toAddress),
      raw,
      tls: session.secure,
      ehlo: session.hostNameAppearsAs,
      connection: this.connectionNumbers.get(session.id) ?? 0,
      remoteAddress: session.remoteAddress,
    };
    this.messages.push(message);
    const id = `SINK${++this.queued}`;
    let reply: MaybeReply;
    try {
      reply = this.options.data ? await this.options.data(message) : undefined;
    } catch (err) {
      cb(err as Error);
      return;
    } finally {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
    if (reply && reply.code >= 400) cb(smtpError(reply));
    else cb(null, reply ? reply.text : `2.0.0 Ok: queued as ${id}`);
  }

  /** waitForMessages - resolve once N messages were received (rejects after TIMEOUTMS) */
  async waitForMessages(n: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`sink: ${this.messages.length} of ${n} messages after ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** stop - close the listener and every connection now; records are kept */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
