/**
 * @module smtpd/server
 * SUMMARY: the SMTP listeners (Postfix's smtp, submission and smtps services), one
 * smtp-server instance per service and address; the only file that uses smtp-server's API.
 * Each hook turns smtp-server's callback into an async step that builds the SessionState,
 * asks the restriction engine and replies through SessionContext.refuse().
 *   smtpd       STARTTLS offered; AUTH only with smtpd_sasl_auth_enable.
 *   submission  AUTH PLAIN/LOGIN; relay only when authenticated (its own relay list).
 *   smtps       implicit TLS, otherwise as submission.
 * DIAGNOSTICS: a hook that throws answers 451 4.3.0 and logs the error: a client can never
 * crash the server. Every connect/disconnect/auth is logged, and every limit hit is one
 * 'defer' record whose rule is the parameter: anvil's (limits.ts) at connect, MAIL and RCPT,
 * smtpd_recipient_limit at RCPT, smtpd_hard_error_limit and smtpd_timeout from the patch.
 * SEE ALSO: smtpd(8), master.cf submission/smtps examples, smtp-server README.
 */
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerAuthenticationResponse } from 'smtp-server';
import type { TLSSocket } from 'node:tls';
import { applySmtpServerPatch, preGreetingOf, type SessionLimitHit } from './smtp-server-patch.js';
import { PostscreenCache, type PostscreenReject } from './postscreen.js';
import { formatProblem } from '../errors.js';
import { SessionContext, smtpError, type SmtpError } from './session.js';
import { receiveMessage, type DataStream } from './data.js';
import { ConnectionLimits, anvilSettings, errorLimits, type AnvilSettings, type ErrorLimits, type LimitRefusal } from './limits.js';
import { formatReply, reply } from '../mail/reply.js';
import type { SmtpdDeps } from './ports.js';
import type { SessionState, Stage } from '../restrictions/state.js';
import type { EventRecord } from '../log/events.js';
import { boundPort, listenOn } from '../util/listen.js';

applySmtpServerPatch();

export type ServiceName = 'smtpd' | 'submission' | 'smtps';

export interface ServiceSpec {
  readonly name: ServiceName;
  readonly host: string;
  readonly port: number;
}

type Session = SMTPServerSession & {
  unauthPipelining?: boolean;
  /** anvil key of the counted connection (the real peer: XCLIENT may change remoteAddress). */
  anvilKey?: string;
  anvil?: AnvilSettings;
  /** Read by smtp-server-patch.ts: the error tarpit of this session's snapshot. */
  errorLimits?: ErrorLimits;
  errorCountExempt?: boolean;
  /** onClose has run: a hook still awaiting must not count or register the session. */
  closed?: boolean;
  /** postscreen's "enforce": the reply to every RCPT of this connection. */
  postscreen?: PostscreenReject;
};

// The stage a session limit is logged under, by the command it hit after.
const COMMAND_STAGE: Record<string, Stage> = { HELO: 'helo', EHLO: 'helo', MAIL: 'mail', RCPT: 'rcpt', DATA: 'data' };

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

export class SmtpListener {
  readonly spec: ServiceSpec;
  private readonly deps: SmtpdDeps;
  private readonly server: SMTPServer;
  private readonly sessions = new Map<string, SessionContext>();
  private readonly limits: ConnectionLimits;
  private readonly pending = new Set<Promise<unknown>>();
  /** postscreen's connect-time tests, compiled per configuration snapshot. */
  private readonly postscreen: PostscreenCache;

  constructor(spec: ServiceSpec, deps: SmtpdDeps, limits: ConnectionLimits) {
    this.spec = spec;
    this.deps = deps;
    this.limits = limits;
    this.postscreen = new PostscreenCache((p) => deps.log.warn(formatProblem(p), { event: 'config', rule: `${p.file}:${p.line}` }));
    // Compiled now, so that a bad postscreen_dnsbl_sites entry is reported at start.
    if (spec.name === 'smtpd') this.postscreen.get(deps.runtime().config);
    this.server = new SMTPServer(this.options());
    this.server.on('error', (err) => deps.log.error(`${spec.name}: ${err.message}`, { service: spec.name }));
  }

  private options(): SMTPServerOptions & Record<string, unknown> {
    const deps = this.deps;
    const rt = deps.runtime();
    const cfg = rt.config;
    const auth = this.spec.name !== 'smtpd' || cfg.bool('smtpd_sasl_auth_enable');
    const sizeLimit = Number(cfg.get('message_size_limit')) || 0;
    const disabled: string[] = [];
    if (!auth) disabled.push('AUTH');
    if (this.spec.name === 'smtpd' && cfg.get('smtpd_tls_security_level') === 'none') disabled.push('STARTTLS');
    return {
      secure: this.spec.name === 'smtps',
      key: this.deps.tls.key,
      cert: this.deps.tls.cert,
      minVersion: 'TLSv1.2',
      name: cfg.get('myhostname'),
      greetingText: cfg.get('smtpd_banner'),
      heloResponse: '%s',
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true,
      // The policy engine decides what an unauthenticated client may do; AUTH is checked in onAuth.
      allowInsecureAuth: true,
      disabledCommands: disabled,
      maxAllowedUnauthenticatedCommands: false,
      size: sizeLimit || undefined,
      rejectOversized: true,
      // smtpd_recipient_limit is onRcptTo's, after the recipient rate limit as in Postfix.
      // smtpd_timeout is read when a connection arms its timer, so a reload applies.
      get socketTimeout(): number {
        return deps.runtime().config.time('smtpd_timeout');
      },
      onSessionLimit: (session: unknown, hit: SessionLimitHit) => this.onSessionLimit(session as Session, hit),
      disableReverseLookup: true,
      useXClient: true,
      xclientAllowed: (ip: string) => this.deps.runtime().xclientHosts(ip),
      hideDSN: true,
      hideENHANCEDSTATUSCODES: false,
      hideREQUIRETLS: true,
      logger: false,
      onConnect: (session, cb) => this.hook(cb, () => this.onConnect(session as Session)),
      onAuth: (auth2, session, cb) => {
        this.onAuth(auth2, session as Session).then(
          (res) => cb(null, res),
          (err) => cb(err as Error),
        );
      },
      onMailFrom: (addr, session, cb) => this.hook(cb, () => this.onMailFrom(addr, session as Session)),
      onRcptTo: (addr, session, cb) => this.hook(cb, () => this.onRcptTo(addr, session as Session)),
      onData: (stream, session, cb) => {
        this.onData(stream as DataStream, session as Session).then(
          (text) => cb(null, text),
          (err) => {
            const e = toSmtpError(err, this.deps);
            if (e.disconnect) (session as Session & { closeAfterReply?: boolean }).closeAfterReply = true;
            cb(e);
          },
        );
      },
      onClose: (session) => this.onClose(session as Session),
      onHeloCommand: (session: unknown, helo: string, esmtp: boolean) => this.onHelo(session as Session, helo, esmtp),
      onDataCommand: (session: unknown) => this.onDataCommand(session as Session),
    };
  }

  listen(): Promise<void> {
    return listenOn(this.server.server, this.spec.port, this.spec.host);
  }

  /** The bound port (useful with port 0 in tests). */
  port(): number {
    return boundPort(this.server.server, this.spec.port);
  }

  /** Stop accepting; wait for transactions in progress, then close what is left. */
  async close(graceMs = 10_000): Promise<void> {
    await new Promise<void>((resolve) => {
      const srv = this.server.server;
      if (!srv.listening) return resolve();
      srv.close(() => resolve());
      const deadline = Date.now() + graceMs;
      const tick = () => {
        if (this.pending.size === 0 || Date.now() > deadline) {
          this.server.close(() => undefined);
          return;
        }
        setTimeout(tick, 50).unref();
      };
      tick();
    });
  }

  private hook(cb: (err?: Error | null) => void, fn: () => Promise<void>): void {
    const p = fn().then(
      () => cb(),
      (err) => cb(toSmtpError(err, this.deps)),
    );
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private ctx(session: Session): SessionContext {
    const c = this.sessions.get(session.id);
    if (!c) throw smtpError(reply(421, '4.3.0', 'Error: session state lost'));
    c.state.tls = !!session.secure;
    return c;
  }

  private async onConnect(session: Session): Promise<void> {
    const rt = this.deps.runtime();
    const cfg = rt.config;
    const ip = session.remoteAddress;
    // Postfix knows the client's name before anvil is asked: exceptions may be .domain names.
    const names = await this.deps.dns.verifiedClientName(ip);
    // A client gone during the lookup was already through onClose: nothing to count or keep.
    if (session.closed) throw smtpError(reply(421, '4.4.2', `${cfg.get('myhostname')} Error: lost connection`), true);
    session.errorLimits = errorLimits(cfg);
    session.anvil = anvilSettings(cfg);
    if (!rt.limitExceptions(ip, names.name)) {
      // Counted even when refused: the slot is held until onClose, as anvil does.
      const { key, refusal } = this.limits.connect(this.spec.name, ip, session.anvil);
      session.anvilKey = key;
      if (refusal) {
        const d = refusal.decision;
        this.deps.log.event({
          event: 'defer',
          stage: 'connect',
          session: session.id,
          client_ip: ip,
          client_name: names.name,
          service: this.spec.name,
          code: d.reply.code,
          status: d.reply.status,
          reply: formatReply(d.reply),
          rule: d.rule,
          msg: `warning: ${refusal.warning} from ${names.name}[${ip}] for service ${this.spec.name}`,
        });
        throw smtpError(d.reply, true);
      }
    }
    // postscreen's tests before the greeting: on the port-25 service only, as it is deployed.
    const pre = preGreetingOf(session);
    const screened = this.spec.name === 'smtpd' ? await this.postscreen.get(cfg).screen({ address: ip, port: session.remotePort }, pre, rt.mynetworks(ip)) : null;
    const state: SessionState = {
      client: {
        address: ip,
        port: session.remotePort,
        name: names.name,
        reverseName: names.reverseName,
        ...(names.nameStatus ? { nameStatus: names.nameStatus } : {}),
        ...(names.reverseNameStatus ? { reverseNameStatus: names.reverseNameStatus } : {}),
      },
      protocol: 'SMTP',
      recipients: [],
      tls: !!session.secure,
      instance: session.id,
      unauthPipelining: false,
      localPort: session.localPort,
      service: this.spec.name,
    };
    const policy = rt.policies.get(this.spec.name) ?? rt.policies.get('smtpd')!;
    const ctx = new SessionContext(session.id, rt, policy, state, this.deps.log);
    if (screened?.kind === 'hangup' || pre?.closed()) {
      // onClose has already run for this connection: a session kept now would never be freed.
      for (const n of screened?.notes ?? []) this.deps.log.event({ ...ctx.base(n.event, 'connect'), ...n.fields });
      return;
    }
    this.sessions.set(session.id, ctx);
    const rec = ctx.base('connect', 'connect');
    rec.service = this.spec.name;
    rec.msg = `connect from ${ctx.clientLabel()}`;
    this.deps.log.event(rec);
    if (screened) {
      for (const n of screened.notes) this.deps.log.event({ ...ctx.base(n.event, 'connect'), ...n.fields });
      if (screened.kind === 'drop') throw smtpError(screened.decision.reply, true);
      if (screened.kind === 'enforce') session.postscreen = screened.decision;
    }
    const d = await policy.checkConnect(state, ctx.effects);
    ctx.flushNotes();
    if (d.kind !== 'permit') {
      // Postfix without smtpd_delay_reject: greet, then refuse every command with it.
      ctx.refuse('connect', d);
      ctx.connectDecision = d;
      if (d.disconnect) throw smtpError(d.reply, true);
    }
  }

  /** Apply XCLIENT overrides (smtp-server has already checked the ACL). */
  private syncXclient(session: Session, ctx: SessionContext): void {
    const x = session.xClient;
    if (!x || x.size === 0) return;
    const addr = x.get('ADDR');
    const name = x.get('NAME');
    const c = ctx.state.client;
    const address = typeof addr === 'string' && addr ? addr.replace(/^IPV6:/i, '') : c.address;
    const nm = typeof name === 'string' && name && !/^\[(UN|TEMP)AVAIL/.test(name) ? name.toLowerCase() : addr ? 'unknown' : c.name;
    if (address !== c.address || nm !== c.name) {
      ctx.state.client = { address, port: c.port, name: nm, reverseName: nm };
      const rec = ctx.base('xclient', 'connect');
      rec.msg = `xclient: client=${ctx.clientLabel()} via ${session.remoteAddress}`;
      this.deps.log.event(rec);
    }
  }

  private async onHelo(session: Session, helo: string, esmtp: boolean): Promise<SmtpError | null> {
    const ctx = this.sessions.get(session.id);
    if (!ctx) return null;
    this.syncXclient(session, ctx);
    ctx.state.helo = helo;
    ctx.state.protocol = esmtp ? 'ESMTP' : 'SMTP';
    ctx.state.tls = !!session.secure;
    if (ctx.connectDecision && ctx.connectDecision.kind !== 'permit') return smtpError(ctx.connectDecision.reply);
    try {
      const d = await ctx.policy.checkHelo(ctx.state, ctx.effects);
      ctx.flushNotes();
      return d.kind === 'permit' ? null : ctx.refuse('helo', d);
    } catch (err) {
      return toSmtpError(err, this.deps);
    }
  }

  private async onAuth(auth: SMTPServerAuthentication, session: Session): Promise<SMTPServerAuthenticationResponse> {
    const ctx = this.ctx(session);
    const rt = ctx.runtime;
    if (!session.secure && rt.config.bool('disable_plaintext_auth') && !LOOPBACK.test(ctx.state.client.address)) {
      throw smtpError(reply(538, '5.7.11', 'Encryption required for requested authentication mechanism'));
    }
    const user = (auth.username ?? '').toLowerCase();
    const ok = user !== '' && (await this.deps.users.verify(user, auth.password ?? ''));
    const rec = ctx.base('auth', 'auth');
    rec.sasl_method = auth.method;
    rec.sasl_username = user;
    if (!ok) {
      rec.code = 535;
      rec.status = '5.7.8';
      rec.reply = '535 5.7.8 Error: authentication failed: authentication failure';
      rec.msg = `warning: ${ctx.clientLabel()}: SASL ${auth.method} authentication failed`;
      this.deps.log.event(rec);
      throw smtpError(reply(535, '5.7.8', 'Error: authentication failed: authentication failure'));
    }
    ctx.state.saslUsername = user;
    ctx.state.saslMethod = auth.method;
    rec.code = 235;
    rec.msg = `client=${ctx.clientLabel()}, sasl_method=${auth.method}, sasl_username=${user}`;
    this.deps.log.event(rec);
    return { user };
  }

  private async onMailFrom(addr: SMTPServerAddress, session: Session): Promise<void> {
    const ctx = this.ctx(session);
    this.syncXclient(session, ctx);
    if (ctx.connectDecision && ctx.connectDecision.kind !== 'permit') throw smtpError(ctx.connectDecision.reply);
    ctx.resetTransaction();
    const s = ctx.state;
    s.helo = session.hostNameAppearsAs || s.helo;
    s.protocol = session.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP';
    s.sender = addr.address;
    const args = addr.args as unknown as Record<string, string> | false | undefined;
    const declared = Number((args && args.SIZE) ?? NaN);
    if (Number.isFinite(declared)) s.size = declared;
    s.unauthPipelining = !!session.unauthPipelining;
    const limited = this.anvilEvent(ctx, session, 'mail');
    if (limited) {
      const err = ctx.refuse('mail', limited.decision);
      s.sender = undefined;
      throw err;
    }
    const d = await ctx.policy.checkMail(s, ctx.effects);
    ctx.flushNotes();
    if (d.kind !== 'permit') {
      const err = ctx.refuse('mail', d);
      s.sender = undefined;
      throw err;
    }
  }

  private async onRcptTo(addr: SMTPServerAddress, session: Session): Promise<void> {
    const ctx = this.ctx(session);
    const s = ctx.state;
    s.recipient = addr.address;
    s.unauthPipelining = !!session.unauthPipelining;
    // postscreen "enforce" comes first: in Postfix that client never reaches smtpd at all.
    if (session.postscreen) throw ctx.refuse('rcpt', session.postscreen, addr.address);
    // rcpt_cmd()'s order: the client's recipient rate, then the per-message limit, then policy.
    const limited = this.anvilEvent(ctx, session, 'rcpt');
    if (limited) throw ctx.refuse('rcpt', limited.decision, addr.address);
    const max = ctx.runtime.config.int('smtpd_recipient_limit');
    if (max > 0 && ctx.rcptCount >= max) {
      // The first smtpd_recipient_overshoot_limit excess recipients are not client errors.
      if (ctx.rcptOvershoot++ < ctx.runtime.config.int('smtpd_recipient_overshoot_limit')) session.errorCountExempt = true;
      throw ctx.refuse('rcpt', { kind: 'defer', reply: reply(452, '4.5.3', 'Error: too many recipients'), rule: 'smtpd_recipient_limit', disconnect: false }, addr.address);
    }
    const d = await ctx.policy.checkRcpt(s, ctx.effects);
    ctx.flushNotes(addr.address);
    if (d.kind !== 'permit') throw ctx.refuse('rcpt', d, addr.address);
    ctx.rcptCount++;
    if (!s.recipients.some((r) => r.toLowerCase() === addr.address.toLowerCase())) s.recipients.push(addr.address);
  }

  /**
   * One MAIL or RCPT for anvil, keyed by the client the restrictions see: after XCLIENT that
   * is the client behind the proxy (Postfix instead exempts XCLIENT sessions altogether).
   */
  private anvilEvent(ctx: SessionContext, session: Session, event: 'mail' | 'rcpt'): LimitRefusal | null {
    const s = session.anvil;
    if (!s || (event === 'mail' ? s.messageRateLimit : s.recipientRateLimit) <= 0) return null;
    const c = ctx.state.client;
    if (ctx.runtime.limitExceptions(c.address, c.name)) return null;
    return event === 'mail' ? this.limits.mail(this.spec.name, c.address, s) : this.limits.rcpt(this.spec.name, c.address, s);
  }

  /** smtpd_hard_error_limit or smtpd_timeout ended the session: one record, as Postfix logs it. */
  private onSessionLimit(session: Session, hit: SessionLimitHit): void {
    const ctx = this.sessions.get(session.id);
    const stage: Stage = COMMAND_STAGE[hit.command] ?? 'connect';
    const rec: EventRecord = ctx ? ctx.base('defer', stage) : { event: 'defer', stage, session: session.id, client_ip: session.remoteAddress };
    const label = ctx ? ctx.clientLabel() : `unknown[${session.remoteAddress}]`;
    rec.code = hit.code;
    rec.status = hit.status;
    rec.reply = `${hit.code} ${hit.status} ${hit.text}`;
    rec.rule = hit.rule;
    rec.command = hit.command;
    rec.msg = `${hit.rule === 'smtpd_timeout' ? 'timeout' : 'too many errors'} after ${hit.command} from ${label}`;
    this.deps.log.event(rec);
  }

  private async onDataCommand(session: Session): Promise<SmtpError | null> {
    const ctx = this.sessions.get(session.id);
    if (!ctx) return null;
    try {
      ctx.state.unauthPipelining = !!session.unauthPipelining;
      ctx.state.recipient = undefined;
      const d = await ctx.policy.checkData(ctx.state, ctx.effects);
      ctx.flushNotes();
      return d.kind === 'permit' ? null : ctx.refuse('data', d);
    } catch (err) {
      return toSmtpError(err, this.deps);
    }
  }

  private async onData(stream: DataStream, session: Session): Promise<string> {
    const ctx = this.ctx(session);
    const sock = (session as unknown as { tlsOptions?: { name?: string; version?: string } | false }).tlsOptions;
    const tlsInfo = session.secure && sock ? { version: sock.version ?? 'TLS', cipher: sock.name ?? 'unknown' } : undefined;
    const env = session.envelope as { bodyType?: string; smtpUtf8?: boolean };
    const p = receiveMessage(ctx, stream, {
      queue: this.deps.queue,
      tlsInfo,
      bodyType: String(env.bodyType ?? '').toLowerCase() === '8bitmime' ? '8BITMIME' : '7BIT',
      smtputf8: !!env.smtpUtf8,
      metrics: this.deps.metrics,
    });
    this.pending.add(p);
    try {
      return await p;
    } finally {
      this.pending.delete(p);
    }
  }

  private onClose(session: Session): void {
    const ctx = this.sessions.get(session.id);
    session.closed = true;
    if (session.anvilKey) {
      this.limits.disconnect(session.anvilKey);
      delete session.anvilKey;
    }
    if (!ctx) return;
    this.sessions.delete(session.id);
    const rec = ctx.base('disconnect', 'disconnect');
    rec.msg = `disconnect from ${ctx.clientLabel()}`;
    this.deps.log.event(rec);
  }
}

/** Anything a hook throws becomes an SMTP reply; unexpected errors are 451 and logged. */
function toSmtpError(err: unknown, deps: SmtpdDeps): SmtpError {
  if (err instanceof Error && typeof (err as SmtpError).responseCode === 'number') return err as SmtpError;
  deps.log.error(`smtpd: ${err instanceof Error ? err.message : String(err)}`, { stack: err instanceof Error ? err.stack : undefined });
  return smtpError(reply(451, '4.3.0', 'Error: internal error'));
}

export type { TLSSocket };
