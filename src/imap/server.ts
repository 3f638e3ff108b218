/**
 * @module imap/server
 * SUMMARY: the IMAP4rev1 listener (Dovecot's imap-login + imap): ImapListener listens on
 * one address, either plain with STARTTLS (imap_port) or implicit TLS (imaps_port), and
 * hands each client to an imap/connection ImapConnection. listen/port/close mirror
 * smtpd's SmtpListener and policyd's PolicyServiceListener. Storage (MailStore), users and
 * the login guard are injected.
 * DIAGNOSTICS: socket and TLS errors of one client end that client only; a listener error
 * is logged (error). disable_plaintext_auth (Dovecot's meaning) refuses LOGIN and
 * AUTHENTICATE PLAIN without TLS except from loopback; `isLoopback` can be injected.
 * SEE ALSO: RFC 3501, RFC 2595 (STARTTLS), RFC 8314 (implicit TLS); Dovecot
 * disable_plaintext_auth, imap_idle_notify_interval.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import type { Config } from '../config/config.js';
import type { MailLogger } from '../log/logger.js';
import type { MailStore } from '../mailbox/mail-store.js';
import { DEFAULT_READER_LIMITS, type ReaderLimits } from './parser.js';
import { ImapConnection } from './connection.js';
import type { ImapContext, ImapLoginGuard, ImapUsers } from './command-table.js';
import { EnvelopeCache } from './envelope-cache.js';
import { boundPort, listenOn } from '../util/listen.js';

export interface ImapListenerSpec {
  readonly host: string;
  readonly port: number;
  /** imaps: TLS from the first byte; otherwise STARTTLS is offered. */
  readonly implicitTls: boolean;
}

export interface ImapListenerDeps {
  /** Used to check passwords when there is no login guard. */
  readonly users: ImapUsers;
  readonly mailboxes: MailStore;
  /** mailbox/login-guard LoginGuard: failure delay and per-client/per-user rate limits. */
  readonly loginGuard?: ImapLoginGuard;
  readonly log: MailLogger;
  /** Key and certificate (smtpd/tls loadTlsMaterial); null: no STARTTLS (and no imaps). */
  readonly tls: { readonly key: Buffer; readonly cert: Buffer } | null;
  /** disable_plaintext_auth and message_size_limit are read from it. */
  readonly config: Config;
  /** Close a client silent this long (RFC 3501 5.4: at least 30 min, the default). */
  readonly idleTimeoutMs?: number;
  /** Whether a client counts as local for disable_plaintext_auth; default 127/8 and ::1. */
  readonly isLoopback?: (ip: string) => boolean;
  readonly limits?: Partial<ReaderLimits>;
  /** IDLE keepalive "* OK Still here" (default 2 min, as Dovecot). */
  readonly idleNotifyMs?: number;
  /** IDLE's look at the disk for changes other processes made (default 30 s). */
  readonly idlePollMs?: number;
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;
const THIRTY_MINUTES = 30 * 60 * 1000;
/** Room for the APPEND command line and a header or two around a message of the size limit. */
const LITERAL_SLACK = 64 * 1024;

export class ImapListener {
  readonly spec: ImapListenerSpec;
  private readonly deps: ImapListenerDeps;
  private readonly server: Server;
  private readonly ctx: ImapContext;
  private readonly secureContext: SecureContext | null;
  private readonly connections = new Set<ImapConnection>();
  /** Every client socket until it is closed: a connection that said BYE may still be flushing. */
  private readonly sockets = new Set<Socket>();
  private nextId = 0;
  private closing = false;

  constructor(spec: ImapListenerSpec, deps: ImapListenerDeps) {
    this.spec = spec;
    this.deps = deps;
    this.secureContext = deps.tls ? createSecureContext({ key: deps.tls.key, cert: deps.tls.cert, minVersion: 'TLSv1.2' }) : null;
    if (spec.implicitTls && !this.secureContext) throw new Error('imaps: implicit TLS needs a key and certificate');
    const service = spec.implicitTls ? 'imaps' : 'imap';
    const isLoopback = deps.isLoopback ?? ((ip: string) => LOOPBACK.test(ip));
    const disablePlaintext = deps.config.bool('disable_plaintext_auth');
    const guard = deps.loginGuard;
    this.ctx = {
      mailboxes: deps.mailboxes,
      checkLogin: guard
        ? (user, password, ip) => guard.login(user, password, ip)
        : async (user, password) => ((await deps.users.verify(user, password)) ? { kind: 'ok', user: user.toLowerCase() } : { kind: 'failed' }),
      log: deps.log,
      config: deps.config,
      service,
      plaintextAllowed: (ip, secure) => secure || !disablePlaintext || isLoopback(ip),
      envelopes: new EnvelopeCache(),
    };
    if (spec.implicitTls) {
      this.server = createTlsServer({ key: deps.tls!.key, cert: deps.tls!.cert, minVersion: 'TLSv1.2' }, (socket: TLSSocket) => this.accept(socket));
      // A failed handshake is the client's problem, not the listener's.
      this.server.on('tlsClientError', () => undefined);
    } else {
      this.server = createServer((socket) => this.accept(socket));
    }
    this.server.on('error', (err) => deps.log.error(`${service}: ${err.message}`, { service }));
  }

  listen(): Promise<void> {
    return listenOn(this.server, this.spec.port, this.spec.host);
  }

  /** The bound port (useful with port 0 in tests). */
  port(): number {
    return boundPort(this.server, this.spec.port);
  }

  /** Number of open client connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stop accepting; send every client `* BYE`, then close what is left after GRACE_MS. */
  async close(graceMs = 2000): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    for (const c of this.connections) c.shutdown();
    const deadline = Date.now() + graceMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const c of this.connections) c.destroy();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const sizeLimit = Number(this.deps.config.get('message_size_limit')) || 0;
    const literal = sizeLimit > 0 ? sizeLimit + LITERAL_SLACK : DEFAULT_READER_LIMITS.maxLiteralSize;
    const c = new ImapConnection(this.ctx, socket, {
      id: `${this.ctx.service}-${(this.nextId++).toString(36)}`,
      implicitTls: this.spec.implicitTls,
      secureContext: this.spec.implicitTls ? null : this.secureContext,
      idleTimeoutMs: this.deps.idleTimeoutMs ?? THIRTY_MINUTES,
      readerLimits: { maxLiteralSize: literal, maxCommandSize: literal + LITERAL_SLACK, ...this.deps.limits },
      idleNotifyMs: this.deps.idleNotifyMs ?? 120_000,
      idlePollMs: this.deps.idlePollMs ?? 30_000,
      onClose: (conn) => this.connections.delete(conn),
    });
    this.connections.add(c);
    c.start();
  }
}
