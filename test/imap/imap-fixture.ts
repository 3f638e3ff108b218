/**
 * @module test/imap/imap-fixture
 * An in-process IMAP server for tests: a temporary data directory with a real UserStore,
 * MaildirStore and a self-signed certificate, an ImapListener on 127.0.0.1 port 0 with
 * STARTTLS and another with implicit TLS, and a logger that keeps every record.
 * restart() closes and reopens everything over the same directory (UIDVALIDITY tests).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import type { EventRecord } from '../../src/log/events.js';
import type { MailLogger } from '../../src/log/logger.js';
import { UserStore } from '../../src/mailbox/users.js';
import { MaildirStore } from '../../src/mailbox/maildir.js';
import { LoginGuard, type LoginGuardOptions } from '../../src/mailbox/login-guard.js';
import { generateSelfSigned } from '../../src/smtpd/tls.js';
import { ImapListener, type ImapListenerDeps } from '../../src/imap/server.js';

export interface LogRecord {
  readonly level: 'event' | 'info' | 'warn' | 'error';
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

/** A MailLogger that keeps everything in memory. */
export class CaptureLogger implements MailLogger {
  readonly records: LogRecord[] = [];
  event(r: EventRecord): void {
    this.records.push({ level: 'event', msg: String(r.msg ?? ''), fields: { ...r } });
  }
  info(msg: string, fields: Record<string, unknown> = {}): void {
    this.records.push({ level: 'info', msg, fields });
  }
  warn(msg: string, fields: Record<string, unknown> = {}): void {
    this.records.push({ level: 'warn', msg, fields });
  }
  error(msg: string, fields: Record<string, unknown> = {}): void {
    this.records.push({ level: 'error', msg, fields });
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  events(name: string): Record<string, unknown>[] {
    return this.records.filter((r) => r.level === 'event' && r.fields.event === name).map((r) => r.fields);
  }
}

export interface FixtureOptions {
  readonly params?: Record<string, string>;
  /** Passed to ImapListenerDeps. */
  readonly isLoopback?: (ip: string) => boolean;
  readonly idleTimeoutMs?: number;
  readonly idleNotifyMs?: number;
  readonly idlePollMs?: number;
  readonly limits?: ImapListenerDeps['limits'];
  /** A LoginGuard with these options (default: none, so wrong passwords answer at once). */
  readonly guard?: LoginGuardOptions;
  /** Users to create: name -> password. */
  readonly users?: Record<string, string>;
}

let tlsPair: Promise<{ key: string; cert: string }> | undefined;

/** One self-signed pair per test process: RSA key generation is slow on a shared machine. */
function testTls(): Promise<{ key: string; cert: string }> {
  tlsPair ??= generateSelfSigned('localhost');
  return tlsPair;
}

export class ImapFixture {
  readonly dir: string;
  readonly dataDir: string;
  readonly log = new CaptureLogger();
  users!: UserStore;
  store!: MaildirStore;
  plain!: ImapListener;
  tls!: ImapListener;
  guard: LoginGuard | undefined;
  private readonly opts: FixtureOptions;
  private key!: Buffer;
  private cert!: Buffer;

  private constructor(opts: FixtureOptions) {
    this.opts = opts;
    this.dir = mkdtempSync(join(tmpdir(), 'greygate-imap-'));
    this.dataDir = join(this.dir, 'data');
  }

  static async start(opts: FixtureOptions = {}): Promise<ImapFixture> {
    const f = new ImapFixture(opts);
    const pair = await testTls();
    f.key = Buffer.from(pair.key);
    f.cert = Buffer.from(pair.cert);
    f.users = UserStore.open(f.dataDir);
    for (const [name, password] of Object.entries(opts.users ?? { alice: 'wonderland', bob: 'builder' })) await f.users.add(name, password);
    await f.open();
    return f;
  }

  get plainPort(): number {
    return this.plain.port();
  }

  get tlsPort(): number {
    return this.tls.port();
  }

  get certPem(): string {
    return this.cert.toString();
  }

  /** The certificate as a file, for clients that want a CA file. */
  certFile(): string {
    const file = join(this.dir, 'cert.pem');
    writeFileSync(file, this.cert);
    return file;
  }

  private async open(): Promise<void> {
    const config = configFromText(this.dir, join(this.dir, 'main.cf'), '', {
      overrides: { data_directory: this.dataDir, myhostname: 'mail.greygate.test', ...this.opts.params },
    });
    this.store = new MaildirStore(this.dataDir);
    this.guard = this.opts.guard ? new LoginGuard(this.users, this.opts.guard) : undefined;
    const deps: ImapListenerDeps = {
      users: this.users,
      mailboxes: this.store,
      log: this.log,
      tls: { key: this.key, cert: this.cert },
      config,
      ...(this.guard ? { loginGuard: this.guard } : {}),
      ...(this.opts.isLoopback ? { isLoopback: this.opts.isLoopback } : {}),
      ...(this.opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: this.opts.idleTimeoutMs } : {}),
      ...(this.opts.idleNotifyMs !== undefined ? { idleNotifyMs: this.opts.idleNotifyMs } : {}),
      ...(this.opts.idlePollMs !== undefined ? { idlePollMs: this.opts.idlePollMs } : {}),
      ...(this.opts.limits ? { limits: this.opts.limits } : {}),
    };
    this.plain = new ImapListener({ host: '127.0.0.1', port: 0, implicitTls: false }, deps);
    this.tls = new ImapListener({ host: '127.0.0.1', port: 0, implicitTls: true }, deps);
    await this.plain.listen();
    await this.tls.listen();
  }

  /** Deliver MESSAGE (CRLF text) to USER's folder through the store, as local delivery does. */
  deliver(user: string, message: string | Buffer, folder?: string): Promise<{ uid: number | null }> {
    return this.store.deliver(user, Buffer.from(message), folder ? { folder } : {});
  }

  /** Close the listeners and the store, then open new ones over the same directory. */
  async restart(): Promise<void> {
    await this.closeServers();
    await this.open();
  }

  private async closeServers(): Promise<void> {
    await Promise.all([this.plain.close(500), this.tls.close(500)]);
    this.store.close();
  }

  async close(): Promise<void> {
    await this.closeServers();
    this.users.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A small RFC 5322 message with CRLF line ends. */
export function sampleMessage(subject: string, body = 'Hello.\r\n', extra = ''): string {
  return (
    `From: Sender <sender@example.org>\r\nTo: alice@greygate.test\r\nSubject: ${subject}\r\n` +
    `Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n${extra}\r\n${body}`
  );
}
