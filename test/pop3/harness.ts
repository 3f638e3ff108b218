/**
 * @module test/pop3/harness
 * SUMMARY: what the POP3 tests share: a temporary data directory with users (UserStore),
 * a MaildirStore with delivered messages, a self-signed certificate, a recording
 * MailLogger, Pop3Listener instances on 127.0.0.1 port 0 (plain+STLS and implicit TLS), a
 * line-level raw client (plain or TLS, with STLS upgrade), and Python/curl runners.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { configFromText } from '../../src/config/config.js';
import type { EventRecord } from '../../src/log/events.js';
import type { MailLogger } from '../../src/log/logger.js';
import { LoginGuard, type LoginGuardOptions } from '../../src/mailbox/login-guard.js';
import { MaildirStore } from '../../src/mailbox/maildir.js';
import { UserStore } from '../../src/mailbox/users.js';
import { Pop3Listener, type Pop3Deps } from '../../src/pop3/server.js';
import { generateSelfSigned } from '../../src/smtpd/tls.js';

/** A MailLogger that keeps every record (the tests read what was logged). */
export class RecordingLogger implements MailLogger {
  readonly records: Array<Record<string, unknown>> = [];
  event(record: EventRecord): void {
    this.records.push({ ...record });
  }
  info(msg: string, fields: Record<string, unknown> = {}): void {
    this.records.push({ event: 'info', msg, ...fields });
  }
  warn(msg: string, fields: Record<string, unknown> = {}): void {
    this.records.push({ event: 'warn', msg, ...fields });
  }
  error(msg: string, fields: Record<string, unknown> = {}): void {
    this.records.push({ event: 'error', msg, ...fields });
  }
  async flush(): Promise<void> {}
  of(event: string): Array<Record<string, unknown>> {
    return this.records.filter((r) => r.event === event);
  }
}

export interface Harness {
  readonly dir: string;
  readonly users: UserStore;
  readonly store: MaildirStore;
  readonly log: RecordingLogger;
  readonly guard: LoginGuard;
  readonly tls: { key: string; cert: string };
  /** A listener with these overrides; closed by close(). */
  listen(options?: { implicitTls?: boolean; deps?: Partial<Pop3Deps>; mainCf?: string }): Promise<Pop3Listener>;
  close(): Promise<void>;
}

let certificate: Promise<{ key: string; cert: string }> | undefined;

export async function harness(options: { guard?: LoginGuardOptions; dir?: string } = {}): Promise<Harness> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'gg-pop3-')));
  const users = UserStore.open(dir);
  for (const [name, pw] of [
    ['alice', 'secret'],
    ['bob', 'hunter2'],
  ] as const) {
    if (!users.exists(name)) await users.add(name, pw);
  }
  const store = new MaildirStore(dir, { hostname: 'mx.example.org' });
  const log = new RecordingLogger();
  const guard = new LoginGuard(users, { failureDelayMs: 20, ...options.guard });
  certificate ??= generateSelfSigned('localhost');
  const tls = await certificate;
  const listeners: Pop3Listener[] = [];
  return {
    dir,
    users,
    store,
    log,
    guard,
    tls,
    async listen(o = {}) {
      const config = configFromText(dir, join(dir, 'main.cf'), o.mainCf ?? '');
      const l = new Pop3Listener(
        { host: '127.0.0.1', port: 0, implicitTls: o.implicitTls ?? false },
        { guard, mailboxes: store, log, tls: () => tls, config: () => config, ...o.deps },
      );
      await l.listen();
      listeners.push(l);
      return l;
    },
    async close() {
      for (const l of listeners) await l.close(2000);
      store.close();
      users.close();
      if (options.dir === undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A POP3 client at the line level: send a command, read a reply (single or multi-line). */
export class RawClient {
  private socket: Socket | TLSSocket;
  private buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(socket: Socket | TLSSocket) {
    this.socket = socket;
    this.attach(socket);
  }

  static async connect(port: number, tls = false): Promise<RawClient> {
    const socket = tls ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once(tls ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }

  private attach(s: Socket | TLSSocket): void {
    s.on('data', (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      this.wake();
    });
    s.on('close', () => {
      this.closed = true;
      this.wake();
    });
    s.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async waitFor(test: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!test()) {
      if (this.closed) throw new Error(`connection closed; buffer: ${JSON.stringify(this.buffer.toString('latin1').slice(0, 200))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout; buffer: ${JSON.stringify(this.buffer.toString('latin1').slice(0, 200))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next line (without CRLF). */
  async line(timeoutMs = 10_000): Promise<string> {
    await this.waitFor(() => this.buffer.includes('\r\n'), timeoutMs);
    const i = this.buffer.indexOf('\r\n');
    const line = this.buffer.subarray(0, i).toString('utf8');
    this.buffer = this.buffer.subarray(i + 2);
    return line;
  }

  /** The body of a multi-line response up to and including "\r\n.\r\n", raw (still dot-stuffed). */
  async multiline(timeoutMs = 10_000): Promise<Buffer> {
    const end = Buffer.from('\r\n.\r\n');
    await this.waitFor(() => this.buffer.subarray(0, 3).equals(Buffer.from('.\r\n')) || this.buffer.includes(end), timeoutMs);
    if (this.buffer.subarray(0, 3).equals(Buffer.from('.\r\n'))) {
      this.buffer = this.buffer.subarray(3);
      return Buffer.alloc(0);
    }
    const i = this.buffer.indexOf(end);
    const body = this.buffer.subarray(0, i + 2);
    this.buffer = this.buffer.subarray(i + end.length);
    return Buffer.from(body);
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.line();
  }

  /** STLS already answered +OK: start TLS on the same connection. */
  async upgrade(): Promise<void> {
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    const secure = tlsConnect({ socket: raw as Socket, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure);
  }

  /** Resolves once the server closed the connection. */
  async closedByServer(timeoutMs = 10_000): Promise<void> {
    await this.waitFor(() => this.closed, timeoutMs).catch((err: Error) => {
      if (!this.closed) throw err;
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Log in with USER/PASS; returns the reply to PASS. */
export async function loginRaw(c: RawClient, user = 'alice', pass = 'secret'): Promise<string> {
  const greeting = await c.line();
  if (!greeting.startsWith('+OK')) throw new Error(greeting);
  const u = await c.command(`USER ${user}`);
  if (!u.startsWith('+OK')) return u;
  return c.command(`PASS ${pass}`);
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/** Run a program; never rejects (the exit code is in the result). */
export function runProgram(file: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'latin1' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ stdout, stderr, code });
    });
  });
}

/** Run a Python script with ARGS (sys.argv[1:]). */
export function python(script: string, args: string[]): Promise<RunResult> {
  return runProgram('python3', ['-c', script, ...args]);
}
