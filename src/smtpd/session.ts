/**
 * @module smtpd/session
 * SUMMARY: one SMTP connection's greygate state (SessionContext): the runtime snapshot it
 * started with, the SessionState the restriction engine reads, the transaction's effects,
 * and the one place where a Decision becomes an smtp-server error and a log record.
 * DIAGNOSTICS: every reject/defer/warn is logged once here with the contract fields and a
 * Postfix-style `msg` ("NOQUEUE: reject: RCPT from name[ip]: 554 5.7.1 ...; from=<> ...").
 * SEE ALSO: Postfix smtpd_check.c log_whatsup(), Haraka connection.js *_respond.
 */
import { formatReply, type Reply } from '../mail/reply.js';
import type { MailLogger } from '../log/logger.js';
import type { EventRecord, LogEvent } from '../log/events.js';
import { newEffects, type Decision, type SessionState, type Stage, type TransactionEffects } from '../restrictions/state.js';
import type { SmtpdPolicy, SmtpdRuntime } from './ports.js';

export interface SmtpError extends Error {
  responseCode: number;
  disconnect?: boolean;
}

export function smtpError(r: Reply, disconnect = false): SmtpError {
  const e = new Error(`${r.status} ${r.text}`) as SmtpError;
  e.responseCode = r.code;
  if (disconnect) e.disconnect = true;
  return e;
}

const STAGE_VERB: Record<Stage, string> = {
  connect: 'CONNECT',
  helo: 'HELO',
  mail: 'MAIL',
  rcpt: 'RCPT',
  data: 'DATA',
  'end-of-data': 'END-OF-MESSAGE',
};

export class SessionContext {
  readonly id: string;
  readonly runtime: SmtpdRuntime;
  readonly policy: SmtpdPolicy;
  readonly state: SessionState;
  readonly log: MailLogger;
  effects: TransactionEffects = newEffects();
  /** Without smtpd_delay_reject, a connect-time reject answers every later command. */
  connectDecision: Decision | null = null;
  /** Queue ID once DATA started. */
  queueId: string | undefined;
  transactionStart = 0;
  /** Accepted RCPTs of this transaction, duplicates included, for smtpd_recipient_limit. */
  rcptCount = 0;
  /** RCPTs refused by smtpd_recipient_limit (smtpd_recipient_overshoot_limit). */
  rcptOvershoot = 0;

  constructor(id: string, runtime: SmtpdRuntime, policy: SmtpdPolicy, state: SessionState, log: MailLogger) {
    this.id = id;
    this.runtime = runtime;
    this.policy = policy;
    this.state = state;
    this.log = log;
  }

  /** MAIL starts a new transaction: effects and recipients are per message. */
  resetTransaction(): void {
    this.effects = newEffects();
    this.state.recipients = [];
    this.state.recipient = undefined;
    this.state.queueId = undefined;
    this.state.size = undefined;
    this.state.instance = `${this.id}.${Date.now().toString(36)}`;
    this.queueId = undefined;
    this.transactionStart = Date.now();
    this.rcptCount = 0;
    this.rcptOvershoot = 0;
  }

  clientLabel(): string {
    return `${this.state.client.name}[${this.state.client.address}]`;
  }

  base(event: LogEvent, stage: Stage | 'disconnect' | 'auth'): EventRecord {
    const s = this.state;
    const r: EventRecord = {
      event,
      stage,
      session: this.id,
      client_ip: s.client.address,
      client_name: s.client.name,
    };
    if (this.queueId) r.queue_id = this.queueId;
    if (s.helo !== undefined) r.helo = s.helo;
    if (s.sender !== undefined) r.from = s.sender;
    return r;
  }

  /**
   * Log a reject/defer Decision once, with Postfix's log_whatsup() text, and return the
   * smtp-server error that sends its reply.
   */
  refuse(stage: Stage, d: Extract<Decision, { kind: 'reject' | 'defer' }>, to?: string): SmtpError {
    const event: LogEvent = d.kind === 'reject' ? 'reject' : 'defer';
    const rec = this.base(event, stage);
    if (to !== undefined) rec.to = to;
    rec.code = d.reply.code;
    rec.status = d.reply.status;
    rec.reply = formatReply(d.reply);
    rec.rule = d.rule;
    const s = this.state;
    const envelope = `from=<${s.sender ?? ''}> to=<${to ?? ''}> proto=${s.protocol} helo=<${s.helo ?? ''}>`;
    rec.msg = `${this.queueId ?? 'NOQUEUE'}: reject: ${STAGE_VERB[stage]} from ${this.clientLabel()}: ${rec.reply}; ${envelope}`;
    this.log.event(rec);
    return smtpError(d.reply, d.disconnect);
  }

  /** Log the WARN/INFO/reject_warning notes the engine collected, then forget them. */
  flushNotes(to?: string): void {
    const notes = this.effects.notes;
    if (!notes.length) return;
    for (const n of notes) {
      if (n.greylist) {
        // check_greylist's decision: one 'greylist' record with postgrey's log line as msg.
        const rec = this.base('greylist', n.stage);
        if (to !== undefined) rec.to = to;
        Object.assign(rec, n.greylist);
        rec.rule = n.rule;
        rec.msg = n.text;
        this.log.event(rec);
        continue;
      }
      const rec = this.base(n.event, n.stage);
      if (to !== undefined) rec.to = to;
      rec.rule = n.rule;
      rec.reply = n.text;
      rec.msg = `${this.queueId ?? 'NOQUEUE'}: ${n.event}: ${STAGE_VERB[n.stage]} from ${this.clientLabel()}: ${n.text}`;
      this.log.event(rec);
    }
    notes.length = 0;
  }
}
