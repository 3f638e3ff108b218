/**
 * @module delivery/relay
 * SUMMARY: the `smtp`/`relay` delivery agent (Postfix smtp(8)). SmtpAgent.deliver(job) resolves
 * the next hop, tries its hosts in order over cached or new connections (at most N deliveries
 * per next hop at once) and returns one RecipientOutcome per recipient, by smtp_trouble.c's
 * policy: 4xx or connection trouble keeps a recipient for the next host and defers it after
 * the last; 5xx bounces at once; 2xx to the end of data delivers. smtpAgentOptions(config)
 * reads the smtp_* parameters. Reasons are Postfix's texts.
 * DIAGNOSTICS: deliver() never rejects: an unexpected error is logged and defers every
 * recipient (4.3.0 "unknown mail transport error"). Skipped hosts are logged as info.
 * SEE ALSO: smtp(8), smtp_proto.c, smtp_trouble.c; RFC 3461, RFC 6531, RFC 1652, RFC 1870.
 */
import { allRecipients, type DeliveryAgent, type DeliveryJob, type RecipientOutcome } from './agent.js';
import { parseNexthop, resolveNexthop, type SmtpHost } from './nexthop.js';
import {
  DestinationLimiter,
  SessionCache,
  SmtpSession,
  normalizeCrlf,
  type OpenResult,
  type SessionFailure,
  type SessionOptions,
  type Stage,
  type TlsLevel,
  type TransactionResult,
} from './smtp-connection-pool.js';
import type { Config } from '../config/config.js';
import { createDnsClient, type DnsClient } from '../dns/resolver.js';
import type { MailLogger } from '../log/logger.js';
import { quoteLocal } from '../mail/address.js';
import type { DsnResult } from '../queue/envelope.js';

export interface SmtpAgentOptions {
  /** smtp_helo_name */
  readonly heloName: string;
  /** smtp_tls_security_level */
  readonly tlsSecurityLevel: TlsLevel;
  /** smtp_connect_timeout, ms */
  readonly connectTimeoutMs: number;
  /** smtp_helo_timeout, ms */
  readonly heloTimeoutMs: number;
  /** smtp_data_done_timeout, ms */
  readonly dataDoneTimeoutMs: number;
  /** smtp_connection_cache_time_limit, ms (0 = no connection cache) */
  readonly connectionCacheTimeLimitMs: number;
  /** smtp_connection_reuse_count_limit (0 = no limit) */
  readonly connectionReuseCountLimit: number;
  /** default_destination_concurrency_limit (0 = no limit) */
  readonly destinationConcurrencyLimit: number;
  readonly dns: DnsClient;
  /** True when IP:PORT is one of greygate's own listeners (mail loop detection). */
  readonly isSelf: (ip: string, port: number) => boolean;
  /** Postfix smtp_mx_address_limit (default 5; 0 = no limit). */
  readonly mxAddressLimit?: number;
  /** Postfix smtp_mx_session_limit: SMTP sessions per delivery (default 2). */
  readonly mxSessionLimit?: number;
  /** Shuffle equal-preference MX hosts (default true). */
  readonly randomizeMx?: boolean;
  /** Port for destinations that name none (default 25). */
  readonly defaultPort?: number;
  readonly log?: MailLogger;
}

/** smtpAgentOptions - the agent's options from main.cf; EXTRA overrides (isSelf, dns, log) */
export function smtpAgentOptions(config: Config, extra: Partial<SmtpAgentOptions> = {}): SmtpAgentOptions {
  return {
    heloName: config.get('smtp_helo_name'),
    tlsSecurityLevel: config.get('smtp_tls_security_level').toLowerCase() as TlsLevel,
    connectTimeoutMs: config.time('smtp_connect_timeout'),
    heloTimeoutMs: config.time('smtp_helo_timeout'),
    dataDoneTimeoutMs: config.time('smtp_data_done_timeout'),
    connectionCacheTimeLimitMs: config.time('smtp_connection_cache_time_limit'),
    connectionReuseCountLimit: config.int('smtp_connection_reuse_count_limit'),
    destinationConcurrencyLimit: config.int('default_destination_concurrency_limit'),
    mxAddressLimit: config.int('smtp_mx_address_limit'),
    mxSessionLimit: config.int('smtp_mx_session_limit'),
    ...extra,
    dns: extra.dns ?? createDnsClient(config),
    isSelf: extra.isSelf ?? (() => false),
  };
}

/* ---- outcomes ---- */

/** A failure for some recipients, before it is known whether it defers or bounces. */
interface Trouble {
  readonly status: string;
  readonly reason: string;
  readonly relay: string;
  /** The remote reply, for the DSN's Diagnostic-Code. */
  readonly reply?: string;
  /** The remote host name, for the DSN's Remote-MTA. */
  readonly remoteHost?: string;
}

function dsnOf(status: string, diagnostic: string, remoteHost?: string): DsnResult {
  const dsn: DsnResult = { status, diagnostic };
  if (remoteHost !== undefined) dsn.remoteMta = `dns; ${remoteHost}`;
  return dsn;
}

function outcomeOf(t: Trouble): RecipientOutcome {
  const dsn = dsnOf(t.status, t.reply ?? t.reason, t.remoteHost);
  return t.status.startsWith('5') ? { kind: 'bounced', relay: t.relay, dsn, reason: t.reason } : { kind: 'deferred', relay: t.relay, dsn, reason: t.reason };
}

/** A multi-line reply on one line, as Postfix's translit(resp->str, "\n", " "). */
function oneLine(reply: string): string {
  return reply.replace(/\r?\n/g, ' ').trim();
}

/** The reply's code and its enhanced status, or X.0.0 when it has none of its own class. */
function replyStatus(reply: string): string {
  const m = /^([2-5])\d\d[ -](?:([2-5])\.(\d{1,3})\.(\d{1,3})(?=\s|$))?/.exec(reply);
  if (!m) return '4.0.0';
  const cls = m[1]!;
  return m[2] === cls ? `${cls}.${m[3]}.${m[4]}` : `${cls}.0.0`;
}

function namaddr(h: SmtpHost): string {
  return `${h.hostname}[${h.address}]`;
}

function namaddrport(h: SmtpHost): string {
  return `${namaddr(h)}:${h.port}`;
}

function remoteReply(h: SmtpHost, reply: string, reason: string, status = replyStatus(reply)): Trouble {
  return { status, reason, relay: namaddrport(h), reply: oneLine(reply), remoteHost: h.hostname };
}

const IN_REPLY_TO: Readonly<Record<Stage, string>> = {
  mail: 'MAIL FROM command',
  rcpt: 'RCPT TO command',
  data: 'DATA command',
  body: 'end of DATA command',
  dot: 'end of DATA command',
};

const WHILE: Readonly<Record<Stage, string>> = {
  mail: 'sending MAIL FROM',
  rcpt: 'sending RCPT TO',
  data: 'sending DATA command',
  body: 'sending message body',
  dot: 'sending end of data -- message may be sent more than once',
};

function said(h: SmtpHost, reply: string, stage: Stage): Trouble {
  return remoteReply(h, reply, `host ${namaddr(h)} said: ${oneLine(reply)} (in reply to ${IN_REPLY_TO[stage]})`);
}

function lost(h: SmtpHost, kind: 'lost' | 'timeout', where: string): Trouble {
  const reason = kind === 'lost' ? `lost connection with ${namaddr(h)} while ${where}` : `conversation with ${namaddr(h)} timed out while ${where}`;
  return { status: '4.4.2', reason, relay: namaddrport(h) };
}

/** sessionTrouble - a failed session set-up as Postfix words it */
function sessionTrouble(f: SessionFailure, h: SmtpHost): Trouble {
  switch (f.kind) {
    case 'connect':
      return { status: '4.4.1', reason: `connect to ${namaddrport(h)}: ${f.error}`, relay: 'none' };
    case 'refused': {
      // smtp_skip_5xx_greeting (default yes): a 5xx greeting means "try another host".
      const status = replyStatus(f.reply);
      return remoteReply(h, f.reply, `host ${namaddr(h)} refused to talk to me: ${oneLine(f.reply)}`, f.stage === 'greeting' && status.startsWith('5') ? `4${status.slice(1)}` : status);
    }
    case 'starttls-refused':
      return remoteReply(h, f.reply, `TLS is required, but host ${namaddr(h)} refused to start TLS: ${oneLine(f.reply)}`);
    case 'tls-handshake':
      return { status: '4.7.5', reason: 'Cannot start TLS: handshake failure', relay: namaddrport(h) };
    case 'tls-not-offered':
      return { status: '4.7.4', reason: `TLS is required, but was not offered by host ${namaddr(h)}`, relay: namaddrport(h) };
    case 'lost':
    case 'timeout':
      return lost(h, f.kind, f.where);
  }
}

/* ---- per-delivery state ---- */

/**
 * Each recipient is final (delivered, bounced, or a soft failure on the last host) or
 * still open, possibly with the soft failure that will defer it if no later host does better.
 */
class DeliveryState {
  private readonly final: Array<RecipientOutcome | undefined>;
  private readonly kept: Array<Trouble | undefined>;

  constructor(private readonly job: DeliveryJob) {
    this.final = job.recipients.map(() => undefined);
    this.kept = job.recipients.map(() => undefined);
  }

  /** Positions (in job.recipients) still open. */
  open(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.final.length; i++) if (this.final[i] === undefined) out.push(i);
    return out;
  }

  delivered(i: number, o: RecipientOutcome): void {
    this.final[i] = o;
  }

  /** apply - T to the open positions in WHICH: a 5xx is final unless KEEP, a 4xx is kept */
  apply(which: readonly number[], t: Trouble, keep = !t.status.startsWith('5')): void {
    for (const i of which) {
      if (this.final[i] !== undefined) continue;
      if (keep) this.kept[i] = t;
      else this.final[i] = outcomeOf(t);
    }
  }

  /** outcomes - one per recipient; what is still open ends with its last soft failure */
  outcomes(fallback: Trouble): RecipientOutcome[] {
    return this.job.recipients.map((_, i) => this.final[i] ?? outcomeOf(this.kept[i] ?? fallback));
  }
}

/* ---- commands ---- */

const DEFAULT_MX_ADDRESS_LIMIT = 5;
const DEFAULT_MX_SESSION_LIMIT = 2;

/** RFC 3461 xtext: "+" and "=" and anything outside "!".."~" as +HH. */
function xtext(s: string): string {
  let out = '';
  for (const ch of Buffer.from(s, 'utf8')) {
    out += ch < 0x21 || ch > 0x7e || ch === 0x2b || ch === 0x3d ? `+${ch.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(ch);
  }
  return out;
}

const CONTROL = /[\x00-\x1f\x7f]/;

function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

function isAscii(s: string): boolean {
  return !/[^\x00-\x7f]/.test(s);
}

/** The address as it goes between < and >: the null sender, or the local-part quoted as needed. */
function wireAddress(addr: string): string {
  if (addr === '') return '';
  // Already in external (quoted) form: quoting again would change it.
  if (addr.startsWith('"')) return addr;
  return quoteLocal(addr);
}

/** The header section has 8-bit bytes (RFC 6532 headers need SMTPUTF8). */
function headersNonAscii(message: Buffer): boolean {
  let end = message.indexOf('\r\n\r\n');
  if (end < 0) end = message.indexOf('\n\n');
  if (end < 0) end = message.length;
  for (let i = 0; i < end; i++) if (message[i]! >= 0x80) return true;
  return false;
}

/**
 * Postfix's "delivery requires SMTPUTF8": the sender asked for it and the envelope or the
 * headers actually use UTF-8. A message that merely asked can go to any server.
 */
function requiresSmtputf8(job: DeliveryJob): boolean {
  if (!job.envelope.smtputf8) return false;
  if (!isAscii(job.envelope.sender) || job.recipients.some((r) => !isAscii(r.address))) return true;
  return headersNonAscii(job.message);
}

function mailFromCommand(job: DeliveryJob, s: SmtpSession, size: number): string {
  const env = job.envelope;
  let cmd = `MAIL FROM:<${wireAddress(env.sender)}>`;
  if (s.extensions.has('SIZE')) cmd += ` SIZE=${size}`;
  // A server with SMTPUTF8 but not 8BITMIME gets 8-bit mail anyway (Postfix 20140706).
  const eightBit = s.extensions.has('8BITMIME') || s.extensions.has('SMTPUTF8');
  if (eightBit && (env.bodyType === '8BITMIME' || env.bodyType === 'BINARYMIME')) cmd += ' BODY=8BITMIME';
  if (s.extensions.has('DSN')) {
    if (env.envid) cmd += ` ENVID=${xtext(env.envid)}`;
    if (env.ret) cmd += ` RET=${env.ret}`;
  }
  if (env.smtputf8 && s.extensions.has('SMTPUTF8')) cmd += ' SMTPUTF8';
  return cmd;
}

function rcptToCommand(job: DeliveryJob, pos: number, s: SmtpSession): string {
  const r = job.recipients[pos]!;
  let cmd = `RCPT TO:<${wireAddress(r.address)}>`;
  if (s.extensions.has('DSN')) {
    const stored = job.envelope.recipients[r.index];
    // As Postfix: the client's ORCPT, else the original address (when it is plain ASCII).
    let orcpt = stored?.orcpt ?? '';
    if (orcpt === '' && r.originalAddress !== '' && isAscii(r.originalAddress)) orcpt = `rfc822;${wireAddress(r.originalAddress)}`;
    else if (orcpt !== '' && !orcpt.includes(';')) orcpt = `rfc822;${orcpt}`;
    if (orcpt !== '' && isAscii(orcpt)) cmd += ` ORCPT=${xtext(orcpt)}`;
    if (stored?.notify?.length) cmd += ` NOTIFY=${stored.notify.join(',')}`;
  }
  return cmd;
}

/* ---- the agent ---- */

interface SessionEnd {
  /** The session may go back to the cache. */
  readonly reusable: boolean;
  /** A reused connection broke before anything was decided: try again on a fresh one. */
  readonly stale: boolean;
}

export class SmtpAgent implements DeliveryAgent {
  private readonly opts: SmtpAgentOptions;
  private readonly cache: SessionCache;
  private readonly limiter: DestinationLimiter;
  private closed = false;

  constructor(opts: SmtpAgentOptions) {
    this.opts = opts;
    this.cache = new SessionCache(opts.connectionCacheTimeLimitMs, opts.connectionReuseCountLimit);
    this.limiter = new DestinationLimiter(opts.destinationConcurrencyLimit);
  }

  async deliver(job: DeliveryJob): Promise<RecipientOutcome[]> {
    if (job.recipients.length === 0) return [];
    try {
      return await this.deliverNow(job);
    } catch (err) {
      this.opts.log?.error(`${job.queueId}: smtp delivery to ${job.nexthop} failed: ${(err as Error).message}`, { queue_id: job.queueId });
      return allRecipients(job, outcomeOf({ status: '4.3.0', reason: 'unknown mail transport error', relay: 'none' }));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.cache.close();
  }

  private async deliverNow(job: DeliveryJob): Promise<RecipientOutcome[]> {
    const parsed = parseNexthop(job.nexthop, this.opts.defaultPort ?? 25);
    if (!parsed.ok) return allRecipients(job, outcomeOf({ status: '4.3.5', reason: parsed.reason, relay: 'none' }));
    const key = job.nexthop.toLowerCase();
    const release = await this.limiter.acquire(key);
    try {
      const state = new DeliveryState(job);
      const message = normalizeCrlf(job.message);
      const sessionLimit = this.opts.mxSessionLimit ?? DEFAULT_MX_SESSION_LIMIT;
      let sessions = 0;
      let last: Trouble = { status: '4.4.3', reason: `no mail host for ${job.nexthop} could be tried`, relay: 'none' };

      // A cached connection first, as Postfix does before any DNS lookup.
      for (;;) {
        const cached = await this.cache.checkout(key);
        if (!cached) break;
        const end = await this.transact(cached, job, message, state, true);
        this.finish(key, cached, end);
        if (!end.stale) {
          sessions++;
          break;
        }
      }

      if (state.open().length > 0 && sessions < sessionLimit) {
        const hosts = await resolveNexthop(parsed.destinations, {
          dns: this.opts.dns,
          isSelf: this.opts.isSelf,
          addressLimit: this.opts.mxAddressLimit ?? DEFAULT_MX_ADDRESS_LIMIT,
          randomize: this.opts.randomizeMx ?? true,
        });
        if (hosts.kind === 'fail') {
          last = { status: hosts.status, reason: hosts.reason, relay: 'none' };
          state.apply(state.open(), last);
        } else {
          for (const host of hosts.hosts) {
            if (state.open().length === 0 || sessions >= sessionLimit) break;
            const opened = await this.open(host);
            if (!opened.ok) {
              last = sessionTrouble(opened.failure, host);
              if (opened.failure.kind !== 'connect') sessions++;
              this.opts.log?.info(`${job.queueId}: ${last.reason}`, { queue_id: job.queueId });
              state.apply(state.open(), last);
              continue;
            }
            sessions++;
            const end = await this.transact(opened.session, job, message, state, false);
            this.finish(key, opened.session, end);
          }
        }
      }
      return state.outcomes(last);
    } finally {
      release();
    }
  }

  private sessionOptions(tls: TlsLevel): SessionOptions {
    return {
      heloName: this.opts.heloName,
      tls,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      heloTimeoutMs: this.opts.heloTimeoutMs,
      dataDoneTimeoutMs: this.opts.dataDoneTimeoutMs,
    };
  }

  /** open - a session to HOST; with `may`, a failed STARTTLS is retried once in plaintext */
  private async open(host: SmtpHost): Promise<OpenResult> {
    const level = this.opts.tlsSecurityLevel;
    const first = await SmtpSession.open(host, this.sessionOptions(level));
    if (first.ok || level !== 'may') return first;
    if (first.failure.kind !== 'tls-handshake' && first.failure.kind !== 'starttls-refused') return first;
    return SmtpSession.open(host, this.sessionOptions('none'));
  }

  private finish(key: string, session: SmtpSession, end: SessionEnd): void {
    if (end.reusable && session.alive && !this.closed) this.cache.put(key, session);
    else if (session.alive) this.cache.retire(session);
    else session.destroy();
  }

  /** transact - one transaction for the open recipients; records what the server said */
  private async transact(session: SmtpSession, job: DeliveryJob, message: Buffer, state: DeliveryState, reused: boolean): Promise<SessionEnd> {
    const host = session.host;
    const open = state.open();
    if (requiresSmtputf8(job) && !session.extensions.has('SMTPUTF8')) {
      // Another host may offer it; after the last one the 5.6.7 bounces.
      state.apply(open, { status: '5.6.7', reason: `SMTPUTF8 is required, but was not offered by host ${namaddr(host)}`, relay: namaddrport(host) }, true);
      return { reusable: true, stale: false };
    }
    if (session.sizeLimit > 0 && message.length > session.sizeLimit) {
      state.apply(open, { status: '5.3.4', reason: `message size ${message.length} exceeds size limit ${session.sizeLimit} of server ${namaddr(host)}`, relay: namaddrport(host) });
      return { reusable: true, stale: false };
    }
    // A control character in an address would end our command early (command injection).
    if (CONTROL.test(job.envelope.sender)) {
      state.apply(open, { status: '5.1.7', reason: `bad sender address syntax: <${printable(job.envelope.sender)}>`, relay: 'none' });
      return { reusable: true, stale: false };
    }
    const bad = open.filter((pos) => CONTROL.test(job.recipients[pos]!.address));
    for (const pos of bad) state.apply([pos], { status: '5.1.3', reason: `bad recipient address syntax: <${printable(job.recipients[pos]!.address)}>`, relay: 'none' });
    const good = open.filter((pos) => !bad.includes(pos));
    if (good.length === 0) return { reusable: true, stale: false };
    const result = await session.send({
      mailFrom: mailFromCommand(job, session, message.length),
      rcptTo: good.map((pos) => rcptToCommand(job, pos, session)),
      message,
    });
    const nothingSaid = result.mail === undefined && result.rcpt.every((r) => r === undefined) && result.data === undefined && result.dot === undefined;
    if (reused && nothingSaid && result.trouble && result.trouble.kind !== 'reply' && (result.trouble.stage === 'mail' || result.trouble.stage === 'rcpt' || result.trouble.stage === 'data')) {
      return { reusable: false, stale: true };
    }
    this.record(result, good, host, state);
    return { reusable: result.trouble === undefined, stale: false };
  }

  /** record - TransactionResult to recipient outcomes (smtp_proto.c's receive loop) */
  private record(result: TransactionResult, open: readonly number[], host: SmtpHost, state: DeliveryState): void {
    if (result.mail !== undefined) {
      state.apply(open, said(host, result.mail, 'mail'));
      return;
    }
    const accepted: number[] = [];
    const unanswered: number[] = [];
    open.forEach((pos, k) => {
      const r = result.rcpt[k];
      if (r === undefined) unanswered.push(pos);
      else if (r.accepted) accepted.push(pos);
      else state.apply([pos], said(host, r.reply, 'rcpt'));
    });
    if (result.data !== undefined) state.apply(accepted, said(host, result.data, 'data'));
    else if (result.dot !== undefined) {
      if (result.dot.accepted) {
        const reply = oneLine(result.dot.reply);
        const status = replyStatus(reply);
        for (const pos of accepted) {
          state.delivered(pos, { kind: 'delivered', relay: namaddrport(host), dsn: dsnOf(status.startsWith('2') ? status : '2.0.0', reply, host.hostname), reply });
        }
      } else state.apply(accepted, said(host, result.dot.reply, 'dot'));
    }
    if (result.trouble) {
      const t = result.trouble;
      const which = [...unanswered, ...(result.data === undefined && result.dot === undefined ? accepted : [])];
      state.apply(which, t.kind === 'reply' ? said(host, t.reply, t.stage) : lost(host, t.kind, WHILE[t.stage]));
    }
  }
}
