/**
 * @module pop3/server
 * SUMMARY: the POP3 listener (Dovecot's pop3 service): Pop3Listener listens on one address
 * (listen/port/close, like smtpd's SmtpListener and policyd's PolicyServiceListener), plain
 * with STLS (pop3_port) or with implicit TLS (pop3s_port), and hands each connection to a
 * Pop3Session (pop3/session.ts), which runs the verbs of pop3/commands.ts.
 * DIAGNOSTICS: listener errors are logged (error); a session that throws is logged and
 * closed, never the server. Logins and deletions are logged by the sessions.
 * SEE ALSO: RFC 1939, RFC 2449, RFC 2595, RFC 5034; Dovecot pop3(7) settings.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { Config } from '../config/config.js';
import type { MailLogger } from '../log/logger.js';
import type { LoginGuard } from '../mailbox/login-guard.js';
import type { MailStore } from '../mailbox/mail-store.js';
import { Pop3Session } from './session.js';
import { boundPort, listenOn } from '../util/listen.js';

export interface Pop3ListenerSpec {
  readonly host: string;
  readonly port: number;
  /** pop3s: TLS from the first byte (no STLS). */
  readonly implicitTls: boolean;
}

/** PEM key and certificate chain (smtpd/tls.ts TlsMaterial has these fields). */
export interface Pop3TlsMaterial {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
}

export interface Pop3Deps {
  /** Password checks with failure delay and rate limits; one guard shared with IMAP. */
  readonly guard: LoginGuard;
  readonly mailboxes: MailStore;
  readonly log: MailLogger;
  /** The key and certificate in force (read per connection: a reload may swap them); null = no TLS. */
  tls(): Pop3TlsMaterial | null;
  /** The configuration in force (disable_plaintext_auth). */
  config(): Config;
  /**
   * Whether plaintext authentication is allowed without TLS from IP although
   * disable_plaintext_auth is set: Dovecot exempts loopback (the default here). Tests
   * inject `() => false` to see the refusal on loopback.
   */
  readonly plaintextExempt?: (ip: string) => boolean;
  /** Close a session idle this long (default 10 min, RFC 1939 section 3). */
  readonly idleTimeoutMs?: number;
  /** Longest command line in bytes without CRLF (default 8192: AUTH responses exceed RFC 2449's 255). */
  readonly maxLineLength?: number;
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

/** Dovecot's default: loopback connections count as secure. */
export function isLoopback(ip: string): boolean {
  return LOOPBACK.test(ip);
}

export class Pop3Listener {
  readonly spec: Pop3ListenerSpec;
  private readonly deps: Pop3Deps;
  private readonly server: Server;
  private readonly sessions = new Set<Pop3Session>();
  private nextId = 0;
  private closing = false;
  private context: { material: Pop3TlsMaterial; context: SecureContext } | null = null;

  constructor(spec: Pop3ListenerSpec, deps: Pop3Deps) {
    this.spec = spec;
    this.deps = deps;
    // Implicit TLS wraps each accepted socket with the context in force at that moment, so
    // a reload that swaps the certificate needs no new server (and STLS uses the same path).
    this.server = createServer((socket) => this.accept(socket));
    this.server.on('error', (err) => deps.log.error(`pop3: ${err.message}`, { service: 'pop3' }));
  }

  listen(): Promise<void> {
    if (this.spec.implicitTls && this.secureContext() === null) {
      return Promise.reject(new Error('pop3s: no TLS key and certificate'));
    }
    return listenOn(this.server, this.spec.port, this.spec.host);
  }

  /** The bound port (useful with port 0 in tests). */
  port(): number {
    return boundPort(this.server, this.spec.port);
  }

  /**
   * Stop accepting; sessions finish the command they are running (a QUIT applying its
   * deletions), then are told "-ERR Server shutting down." and closed. Deletions of sessions
   * that did not QUIT are not applied (RFC 1939: only the UPDATE state deletes).
   */
  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    for (const s of this.sessions) s.shutdown();
    const deadline = Date.now() + graceMs;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sessions) s.destroy();
    await closed;
  }

  /** The SecureContext for the material in force, rebuilt only when it was swapped. */
  secureContext(): SecureContext | null {
    const material = this.deps.tls();
    if (material === null) return null;
    if (this.context?.material !== material) {
      this.context = { material, context: createSecureContext({ key: material.key, cert: material.cert, minVersion: 'TLSv1.2' }) };
    }
    return this.context.context;
  }

  private accept(raw: Socket): void {
    if (this.closing) {
      raw.destroy();
      return;
    }
    let socket: Socket = raw;
    const tls = this.spec.implicitTls;
    if (tls) {
      const context = this.secureContext();
      if (context === null) {
        raw.destroy();
        return;
      }
      // Replies written before the handshake completes are held by the TLS socket.
      socket = new TLSSocket(raw, { isServer: true, secureContext: context });
    }
    const session = new Pop3Session(socket, {
      id: `pop3-${(this.nextId++).toString(36)}`,
      tls,
      deps: this.deps,
      service: this.spec.implicitTls ? 'pop3s' : 'pop3',
      peer: raw.remoteAddress ?? '',
      secureContext: () => this.secureContext(),
      plaintextExempt: this.deps.plaintextExempt ?? isLoopback,
      onClose: () => this.sessions.delete(session),
    });
    this.sessions.add(session);
    session.start();
  }
}
