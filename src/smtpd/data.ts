/**
 * @module smtpd/data
 * SUMMARY: the DATA phase: stream the message into a queue writer (prepended headers and
 * our Received: first, then the client's bytes through BareNewlineFilter and, when any are
 * configured, header/body checks), apply message_size_limit, smtpd_forbid_bare_newline,
 * smtpd_end_of_data_restrictions and the content verdict, and commit. receiveMessage() resolves with the 250 text only after the queue commit has
 * fsynced the message, so a 250 survives kill -9.
 * DIAGNOSTICS: throws SmtpError for every refusal (logged once here); a queue I/O failure
 * becomes "451 4.3.0 Error: queue file write error" and the partial file is removed.
 * With DataOptions.metrics, each transaction's time (MAIL FROM to this reply) is observed
 * with its outcome (accept, hold, discard, reject, defer).
 * SEE ALSO: Postfix smtpd.c data_cmd(), cleanup(8); RFC 5321 section 4.1.1.4.
 */
import type { Readable } from 'node:stream';
import { BareNewlineFilter } from './bare-newline.js';
import { receivedHeader } from './received.js';
import { smtpError, type SessionContext, type SmtpError } from './session.js';
import type { AcceptedEnvelope, SmtpdQueue, SmtpdQueueWriter } from './ports.js';
import { formatReply, reply, type Reply } from '../mail/reply.js';
import { ContentFilter, type ContentOutcome } from '../checks/content-filter.js';
import { formatActLog } from '../checks/actions.js';
import type { TransactionObserver } from '../log/metrics.js';

export type DataStream = Readable & { sizeExceeded?: boolean };

export interface DataOptions {
  queue: SmtpdQueue;
  tlsInfo: { version: string; cipher: string; bits?: number } | undefined;
  /** MAIL FROM BODY= and SMTPUTF8 (RFC 6152, RFC 6531), kept for onward delivery. */
  bodyType: '7BIT' | '8BITMIME';
  smtputf8: boolean;
  /** Times each transaction (the metrics endpoint); absent when metrics are off. */
  metrics?: TransactionObserver | undefined;
}

const CRLF = Buffer.from('\r\n');

export async function receiveMessage(ctx: SessionContext, stream: DataStream, opts: DataOptions): Promise<string> {
  const m = opts.metrics;
  const start = ctx.transactionStart;
  if (!m || start === 0) return receive(ctx, stream, opts);
  try {
    const text = await receive(ctx, stream, opts);
    const fx = ctx.effects;
    m.observeTransaction((Date.now() - start) / 1000, fx.discard ? 'discard' : fx.hold ? 'hold' : 'accept');
    return text;
  } catch (err) {
    // Anything that is not a refusal becomes smtpd's 451 (server.ts toSmtpError).
    const code = (err as Partial<SmtpError>).responseCode;
    m.observeTransaction((Date.now() - start) / 1000, typeof code === 'number' && code >= 500 ? 'reject' : 'defer');
    throw err;
  }
}

async function receive(ctx: SessionContext, stream: DataStream, opts: DataOptions): Promise<string> {
  const { config } = ctx.runtime;
  const s = ctx.state;
  let writer: SmtpdQueueWriter;
  try {
    writer = opts.queue.createWriter();
  } catch (err) {
    stream.resume();
    throw queueFailure(ctx, err);
  }
  ctx.queueId = s.queueId = writer.queueId;
  const mode = config.get('smtpd_forbid_bare_newline').toLowerCase();
  const excluded = ctx.runtime.bareNewlineExclusions(s.client.address, s.client.name);
  const filter = new BareNewlineFilter(mode === 'reject' && !excluded);
  // Only the client's bytes are inspected: our Received: and access-map PREPENDs are not.
  const content = ctx.runtime.checks.active ? new ContentFilter(ctx.runtime.checks) : null;
  const store = async (bufs: Buffer[]): Promise<void> => {
    for (const b of bufs) {
      size += b.length;
      const w = writer.write(b);
      if (w) await w;
    }
  };

  let size = 0;
  let bareLf = false;
  let ioError: unknown = null;
  try {
    let head = '';
    for (const p of ctx.effects.prepend) head += p.header.replace(/[\r\n]+/g, ' ') + '\r\n';
    head += receivedHeader({
      helo: s.helo,
      clientName: s.client.name,
      clientAddress: s.client.address,
      myhostname: config.get('myhostname'),
      mailName: config.get('mail_name'),
      protocol: s.protocol + (s.tls ? 'S' : '') + (s.saslUsername ? 'A' : ''),
      queueId: writer.queueId,
      recipients: s.recipients,
      tls: opts.tlsInfo,
      saslUsername: s.saslUsername,
    });
    await store([Buffer.from(head, 'latin1')]);
  } catch (err) {
    ioError = err;
  }
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    // Keep reading after a failure: smtp-server replies only once the stream has ended.
    if (ioError !== null || bareLf || stream.sizeExceeded) continue;
    const out = filter.process(chunk);
    if (out === null) {
      bareLf = true;
      continue;
    }
    try {
      await store(content ? content.write(out) : [out]);
    } catch (err) {
      ioError = err;
    }
  }
  let outcome: ContentOutcome | null = null;
  if (ioError === null && !bareLf && !stream.sizeExceeded) {
    try {
      const tail = filter.finish();
      const last = filter.endsWithCrlf ? [tail] : [tail, CRLF];
      if (content) {
        const bufs = last.flatMap((b) => (b.length ? content.write(b) : []));
        const end = content.end();
        outcome = end.outcome;
        await store([...bufs, ...end.tail]);
      } else await store(last.filter((b) => b.length > 0));
    } catch (err) {
      ioError = err;
    }
  }
  s.size = size;

  if (stream.sizeExceeded) {
    await writer.abort().catch(() => undefined);
    const r = reply(552, '5.3.4', 'Message size exceeds fixed limit');
    throw ctx.refuse('end-of-data', { kind: 'reject', reply: r, rule: 'message_size_limit', disconnect: false });
  }
  if (bareLf) {
    await writer.abort().catch(() => undefined);
    const code = Number(config.get('smtpd_forbid_bare_newline_reject_code')) || 550;
    const r = reply(code, `${String(code)[0]}.5.2`, 'Error: bare <LF> received');
    throw ctx.refuse('end-of-data', { kind: 'reject', reply: r, rule: 'smtpd_forbid_bare_newline', disconnect: true });
  }
  if (ioError !== null) {
    await writer.abort().catch(() => undefined);
    throw queueFailure(ctx, ioError);
  }

  // cleanup logs its header/body decisions as the message streams, before end-of-data.
  if (outcome) logContentDecisions(ctx, outcome, size);

  const decision = await ctx.policy.checkEndOfData(s, ctx.effects);
  ctx.flushNotes();
  if (decision.kind !== 'permit') {
    await writer.abort().catch(() => undefined);
    throw ctx.refuse('end-of-data', decision);
  }

  const fx = ctx.effects;
  const text = `2.0.0 Ok: queued as ${writer.queueId}`;
  // Decisions that came from the content were logged with their rule already.
  let loggedDiscard = false;
  let loggedHold = false;
  if (outcome) {
    // smtpd's end-of-data order: discard, then content reject, then a failed lookup.
    if (outcome.discard && !fx.discard) {
      fx.discard = { text: outcome.discard.text, rule: outcome.discard.rule };
      loggedDiscard = true;
    } else if (!outcome.discard && (outcome.reject || outcome.error)) {
      await writer.abort().catch(() => undefined);
      throw smtpError((outcome.reject ?? outcome.error)!.reply);
    }
    // Access-map HOLD/REDIRECT/FILTER reach cleanup after the content: they win.
    if (outcome.hold && !fx.hold) {
      fx.hold = { text: outcome.hold.text, rule: outcome.hold.rule };
      loggedHold = true;
    }
    if (outcome.redirect && !fx.redirect) fx.redirect = outcome.redirect;
    if (outcome.filter && !fx.filter) fx.filter = outcome.filter;
  }
  if (fx.discard) {
    await writer.abort().catch(() => undefined);
    if (!loggedDiscard) {
      const rec = ctx.base('discard', 'end-of-data');
      Object.assign(rec, { to: s.recipients, size, rule: fx.discard.rule, reply: fx.discard.text });
      rec.msg = `${writer.queueId}: discard: ${fx.discard.text}`;
      ctx.log.event(rec);
    }
    return text;
  }
  let recipients = [...s.recipients];
  if (fx.redirect) recipients = [fx.redirect.address];
  const bcc = [...(fx.bcc ? [fx.bcc] : []), ...(outcome?.bcc ?? [])];
  for (const b of bcc) if (!recipients.includes(b.address)) recipients.push(b.address);
  const envelope: AcceptedEnvelope = {
    sender: s.sender ?? '',
    recipients,
    arrivalTime: ctx.transactionStart || Date.now(),
    size,
    client: { address: s.client.address, name: s.client.name, reverseName: s.client.reverseName, port: s.client.port },
    helo: s.helo,
    protocol: s.protocol,
    saslUsername: s.saslUsername,
    service: s.service,
    bodyType: opts.bodyType,
    smtputf8: opts.smtputf8,
  };
  if (fx.hold) envelope.holdReason = fx.hold.text;
  if (fx.filter) envelope.filter = fx.filter.nexthop;
  try {
    await writer.commit(envelope, fx.hold ? 'hold' : 'incoming');
  } catch (err) {
    await writer.abort().catch(() => undefined);
    throw queueFailure(ctx, err);
  }
  if (fx.hold && !loggedHold) {
    const rec = ctx.base('hold', 'end-of-data');
    Object.assign(rec, { to: recipients, size, rule: fx.hold.rule, reply: fx.hold.text });
    rec.msg = `${writer.queueId}: hold: ${fx.hold.text}`;
    ctx.log.event(rec);
  }
  const rec = ctx.base('accept', 'end-of-data');
  Object.assign(rec, { to: recipients, size, code: 250, status: '2.0.0', reply: `250 ${text}` });
  if (fx.redirect) rec.rule = fx.redirect.rule;
  rec.msg = `${writer.queueId}: from=<${envelope.sender}>, size=${size}, nrcpt=${recipients.length} (queue ${fx.hold ? 'hold' : 'incoming'})`;
  ctx.log.event(rec);
  return text;
}

/**
 * One log record per content decision Postfix would log (cleanup_act_log), with the rule's
 * FILE:LINE and the matched header or line; a REJECT record carries the reply sent.
 */
function logContentDecisions(ctx: SessionContext, outcome: ContentOutcome, size: number): void {
  const s = ctx.state;
  const origin = ctx.clientLabel();
  for (const w of outcome.warnings) {
    const rec = ctx.base('warn', 'end-of-data');
    rec.msg = `warning: ${w.message}`;
    if (w.rule) rec.rule = w.rule;
    ctx.log.event(rec);
  }
  for (const d of outcome.decisions) {
    if (!d.logged) continue;
    const rec = ctx.base(d.event, 'end-of-data');
    rec.to = s.recipients.length === 1 ? s.recipients[0]! : [...s.recipients];
    rec.rule = d.rule;
    rec.check = d.table;
    rec.where = d.where;
    rec.matched = d.matched;
    rec.size = size;
    if (d.text) rec.text = d.text;
    let r: Reply | undefined;
    if ((d.event === 'reject' || d.event === 'defer') && outcome.reject && outcome.reject.rule === d.rule) r = outcome.reject.reply;
    if (r) {
      rec.code = r.code;
      rec.status = r.status;
      rec.reply = formatReply(r);
    }
    rec.msg = formatActLog(d, {
      queueId: ctx.queueId ?? 'NOQUEUE',
      origin,
      sender: s.sender ?? '',
      ...(s.recipients.length === 1 ? { recipient: s.recipients[0]! } : {}),
      protocol: s.protocol,
      ...(s.helo !== undefined ? { helo: s.helo } : {}),
    });
    ctx.log.event(rec);
  }
  if (outcome.error && !outcome.reject && !outcome.discard) {
    const rec = ctx.base('defer', 'end-of-data');
    rec.rule = outcome.error.table;
    rec.code = outcome.error.reply.code;
    rec.status = outcome.error.reply.status;
    rec.reply = formatReply(outcome.error.reply);
    rec.msg = `${ctx.queueId}: warning: ${outcome.error.table} map lookup problem -- message not accepted, try again later: ${outcome.error.error.message}`;
    ctx.log.event(rec);
  }
}

function queueFailure(ctx: SessionContext, err: unknown) {
  ctx.log.error(`queue file write error: ${err instanceof Error ? err.message : String(err)}`, { session: ctx.id });
  return smtpError(reply(451, '4.3.0', 'Error: queue file write error'));
}
