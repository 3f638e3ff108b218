/**
 * @module pop3/session
 * SUMMARY: one POP3 connection: line framing (CRLF or bare LF, a length limit), commands
 * run one at a time in arrival order (RFC 2449 PIPELINING), the RFC 1939 states, the STLS
 * upgrade, the idle timeout, replies with backpressure, and the maildrop view of a logged-in
 * session (message numbers, deletion marks). Exports Pop3Session; the verbs themselves are
 * in pop3/commands.ts.
 * DIAGNOSTICS: a command that throws gets "-ERR [SYS/TEMP] Internal error occurred..." and
 * is logged (error) with the session's fields; the session goes on. Too many bad commands,
 * or the idle timeout, end the session with Dovecot's texts.
 * SEE ALSO: RFC 1939 (3: states, timeout), RFC 2449 (PIPELINING, line lengths), RFC 2595 (STLS).
 */
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { UserMailbox } from '../mailbox/mail-store.js';
import { COMMANDS, type Pop3State } from './commands.js';
import type { Pop3Deps } from './server.js';

export interface SessionOptions {
  readonly id: string;
  /** TLS from the start (pop3s). */
  readonly tls: boolean;
  readonly deps: Pop3Deps;
  /** 'pop3' or 'pop3s', the service field of the log records. */
  readonly service: string;
  /** The client's address (the raw socket's: a TLS socket wrapping it may not know it). */
  readonly peer?: string;
  secureContext(): SecureContext | null;
  plaintextExempt(ip: string): boolean;
  /** Called once when the connection is gone. */
  onClose?(): void;
}

/** A message of the maildrop as the session numbered it at login. */
export interface Pop3Message {
  readonly uid: number;
  /** Octets with CRLF line ends, before dot-stuffing (RFC 1939 LIST). */
  readonly size: number;
}

/** After this many unknown, misplaced or malformed commands the session is ended (as Dovecot). */
const MAX_BAD_COMMANDS = 20;
/** Pipelined lines waiting beyond this stop the socket from reading until they are served. */
const MAX_QUEUED_LINES = 64;
const DEFAULT_MAX_LINE = 8192;
const DEFAULT_IDLE_MS = 10 * 60 * 1000;
/** How long a closing connection may wait for the client to take the last reply. */
const LINGER_MS = 5000;

export const INTERNAL_ERROR = '-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.';

export class Pop3Session {
  readonly id: string;
  readonly peer: string;
  readonly deps: Pop3Deps;
  readonly service: string;
  state: Pop3State = 'AUTHORIZATION';
  tls: boolean;
  /** The name USER gave, waiting for PASS. */
  pendingUser: string | null = null;
  /** The logged-in user (canonical name) and their mailbox. */
  user: string | null = null;
  mailbox: UserMailbox | null = null;
  uidValidity = 0;
  /** Message N is messages[N - 1]; fixed for the whole session (RFC 1939). */
  messages: Pop3Message[] = [];
  /** Message numbers marked by DELE. */
  readonly deleted = new Set<number>();
  /** Message numbers sent by RETR (marked \Seen at QUIT, as Dovecot does). */
  readonly retrieved = new Set<number>();
  /** Set while AUTH waits for the client's response line. */
  continuation: ((line: string) => Promise<void>) | null = null;
  private releaseLock: (() => void) | null = null;
  private readonly options: SessionOptions;
  private socket: Socket;
  private readonly maxLine: number;
  private pending: Buffer = Buffer.alloc(0);
  /** Inside a line that is too long: drop bytes until its LF. */
  private skipping = false;
  private readonly lines: Array<string | null> = [];
  private busy = false;
  private closed = false;
  private stopping = false;
  private badCommands = 0;
  private gone = false;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);

  constructor(socket: Socket, options: SessionOptions) {
    this.socket = socket;
    this.options = options;
    this.id = options.id;
    this.deps = options.deps;
    this.service = options.service;
    this.tls = options.tls;
    this.peer = normalizeIp(options.peer ?? socket.remoteAddress ?? '');
    this.maxLine = options.deps.maxLineLength ?? DEFAULT_MAX_LINE;
  }

  start(): void {
    const s = this.socket;
    s.setNoDelay(true);
    s.on('error', () => undefined);
    s.on('close', () => this.onClose());
    this.watch(s);
    this.write('+OK greygate ready.');
  }

  /** Whether plaintext credentials may be sent now (Dovecot's disable_plaintext_auth rule). */
  plaintextAllowed(): boolean {
    if (this.tls) return true;
    if (!this.deps.config().bool('disable_plaintext_auth')) return true;
    return this.options.plaintextExempt(this.peer);
  }

  /** Whether STLS can be offered now. */
  canStartTls(): boolean {
    return !this.tls && this.state === 'AUTHORIZATION' && this.options.secureContext() !== null;
  }

  /** Enter TRANSACTION for USER with the maildrop locked by RELEASE. */
  enterTransaction(user: string, mailbox: UserMailbox, uidValidity: number, messages: Pop3Message[], release: () => void): void {
    this.user = user;
    this.mailbox = mailbox;
    this.uidValidity = uidValidity;
    this.messages = messages;
    this.releaseLock = release;
    this.state = 'TRANSACTION';
    this.pendingUser = null;
  }

  /** One reply line (CRLF added). */
  write(line: string): Promise<void> {
    return this.send(Buffer.from(`${line}\r\n`, 'utf8'));
  }

  /** Raw bytes; resolves once the socket can take more (backpressure for large RETRs). */
  send(data: Buffer): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.socket.write(data)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Send LINE and close the connection. */
  async end(line: string): Promise<void> {
    if (this.closed) return;
    const socket = this.socket;
    const done = this.write(line);
    this.closed = true;
    socket.end();
    // A client that neither reads nor closes must not hold the session (and its lock).
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
    await done;
  }

  /** Count an unknown or malformed command; ends the session at MAX_BAD_COMMANDS. */
  async bad(reply: string): Promise<void> {
    if (++this.badCommands >= MAX_BAD_COMMANDS) {
      await this.end('-ERR Too many bad commands.');
      return;
    }
    await this.write(reply);
  }

  /**
   * STLS after its "+OK": wrap the socket in TLS. Anything the client sent after STLS and
   * before the handshake is thrown away (a man in the middle could have injected it:
   * CVE-2011-0411 and RFC 2595 section 4).
   */
  async startTls(): Promise<void> {
    const context = this.options.secureContext();
    if (context === null) throw new Error('STLS without TLS material');
    const raw = this.socket;
    raw.off('data', this.onData);
    raw.setTimeout(0);
    this.pending = Buffer.alloc(0);
    this.skipping = false;
    this.lines.length = 0;
    const secure = new TLSSocket(raw, { isServer: true, secureContext: context });
    this.socket = secure;
    secure.on('error', () => undefined);
    // The wrapped socket reports the end of the connection from now on.
    secure.on('close', () => this.onClose());
    await new Promise<void>((resolve) => {
      secure.once('secure', () => resolve());
      secure.once('close', () => resolve());
      secure.once('error', () => {
        secure.destroy();
        resolve();
      });
    });
    if (secure.destroyed) {
      this.closed = true;
      return;
    }
    this.tls = true;
    this.watch(secure);
  }

  /** Server shutdown: finish the running command, then say so and close. */
  shutdown(): void {
    this.stopping = true;
    if (!this.busy) void this.end('-ERR Server shutting down.');
  }

  destroy(): void {
    this.socket.destroy();
  }

  private watch(s: Socket): void {
    s.on('data', this.onData);
    s.setTimeout(this.deps.idleTimeoutMs ?? DEFAULT_IDLE_MS);
    s.on('timeout', () => {
      if (this.closed || s !== this.socket) return;
      // Idle with a reply still unsent: the client stopped reading, nothing will get through.
      if (s.writableLength > 0) s.destroy();
      else void this.end('-ERR Disconnected for inactivity.');
    });
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    let data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    for (;;) {
      const lf = data.indexOf(0x0a);
      if (lf < 0) break;
      if (this.skipping) {
        this.skipping = false;
      } else {
        const end = lf > 0 && data[lf - 1] === 0x0d ? lf - 1 : lf;
        this.lines.push(end > this.maxLine ? null : data.toString('utf8', 0, end));
      }
      data = data.subarray(lf + 1);
    }
    if (data.length > this.maxLine) {
      // A line that will be too long: answer it now and skip the rest of it as it comes.
      if (!this.skipping) this.lines.push(null);
      this.skipping = true;
      data = Buffer.alloc(0);
    }
    this.pending = data.length === 0 ? Buffer.alloc(0) : Buffer.from(data);
    if (this.lines.length > MAX_QUEUED_LINES) this.socket.pause();
    if (!this.busy) void this.pump();
  }

  private async pump(): Promise<void> {
    this.busy = true;
    try {
      while (this.lines.length > 0 && !this.closed) {
        const line = this.lines.shift()!;
        await this.run(line);
        if (this.lines.length <= MAX_QUEUED_LINES && this.socket.isPaused()) this.socket.resume();
      }
    } finally {
      this.busy = false;
    }
    if (this.stopping && !this.closed) await this.end('-ERR Server shutting down.');
  }

  private async run(line: string | null): Promise<void> {
    try {
      if (line === null) {
        this.continuation = null;
        await this.bad('-ERR Input line too long.');
        return;
      }
      if (this.continuation) {
        const next = this.continuation;
        this.continuation = null;
        await next(line);
        return;
      }
      const space = line.indexOf(' ');
      const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
      const args = space < 0 ? '' : line.slice(space + 1);
      const command = COMMANDS.get(verb);
      if (command === undefined) {
        await this.bad(verb === '' ? '-ERR Unknown command.' : `-ERR Unknown command: ${printable(verb)}`);
        return;
      }
      if (!command.states.includes(this.state)) {
        await this.bad(`-ERR Command not allowed in this state: ${verb}`);
        return;
      }
      await command.handler(this, args);
    } catch (err) {
      this.deps.log.error(`${this.service}: command failed: ${(err as Error).message}`, {
        service: this.service,
        session: this.id,
        client_ip: this.peer,
        user: this.user ?? undefined,
        stack: (err as Error).stack,
      });
      await this.write(INTERNAL_ERROR);
    }
  }

  private onClose(): void {
    if (this.gone) return;
    this.gone = true;
    this.closed = true;
    this.lines.length = 0;
    // Without QUIT nothing is deleted (RFC 1939 section 6): the marks die with the session.
    this.deleted.clear();
    this.releaseLock?.();
    this.releaseLock = null;
    this.options.onClose?.();
  }

  /** Release the maildrop lock (QUIT, after the UPDATE state). */
  unlock(): void {
    this.releaseLock?.();
    this.releaseLock = null;
  }
}

/** "::ffff:127.0.0.1" -> "127.0.0.1": one spelling per client in the log and the rate limits. */
function normalizeIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip;
}

/** A client's word as it may be echoed: printable ASCII, at most 40 characters. */
export function printable(s: string): string {
  const clean = s.replace(/[^\x21-\x7e]/g, '?');
  return clean.length > 40 ? `${clean.slice(0, 40)}...` : clean;
}
