/**
 * @module delivery/scheduler
 * SUMMARY: the queue manager (Postfix qmgr). It takes messages from incoming/ as soon as they
 * are committed (notify(), or the pickup trigger of another process), and from deferred/ when
 * they are due (every queue_run_delay, or at once on postqueue -f). A message being worked on
 * lives in active/: that rename is the lease, and a gateway that dies with files in active/
 * puts them back into incoming/ at the next start, so every accepted message is delivered at
 * least once and never lost. Per message: one record per recipient; recipients are routed
 * (delivery/router.ts), grouped by transport:nexthop into jobs of at most
 * default_destination_recipient_limit, handed to the agents, and the outcomes written back.
 * Then: everything final → notices for bounced recipients are queued and the file removed;
 * anything deferred → the next attempt is set with backoff and the file moves to deferred/,
 * or, past maximal_queue_lifetime (bounce_queue_lifetime for null-sender mail), the message
 * expires and is returned to the sender.
 * Exports Scheduler, SchedulerDeps, DeliverySettings, deliverySettings().
 * DIAGNOSTICS: every delivery, deferral, bounce and expiry is one log record (event deliver,
 * defer, bounce, expire; relay, delay, dsn, status); an unreadable queue file moves to
 * corrupt/ with an error record; queue I/O failures are logged and the message retried.
 * SEE ALSO: qmgr(8), qmgr_active.c, qmgr_message.c, postconf(5) minimal_backoff_time,
 * maximal_queue_lifetime, queue_run_delay.
 */
import type { Config } from '../config/config.js';
import type { MailLogger } from '../log/logger.js';
import type { EventRecord } from '../log/events.js';
import type { DsnResult, Envelope, Recipient } from '../queue/envelope.js';
import type { QueueStore } from '../queue/store.js';
import type { DeliveryAgent, DeliveryJob, JobRecipient, RecipientOutcome } from './agent.js';
import type { Router } from './router.js';
import type { Maps } from '../tables/maps.js';

export interface DeliverySettings {
  readonly minimalBackoffMs: number;
  readonly maximalBackoffMs: number;
  readonly queueRunDelayMs: number;
  readonly maximalQueueLifetimeMs: number;
  readonly bounceQueueLifetimeMs: number;
  readonly activeLimit: number;
  readonly recipientLimit: number;
  /** `double-bounce@myorigin`: mail from it that fails is dropped, never bounced again. */
  readonly doubleBounceAddress: string;
  /** delay_warning_time; 0 = no delay warnings. */
  readonly delayWarningMs: number;
}

/** deliverySettings - the scheduler's parameters from main.cf */
export function deliverySettings(config: Config): DeliverySettings {
  const dbs = config.get('double_bounce_sender');
  return {
    minimalBackoffMs: config.time('minimal_backoff_time'),
    maximalBackoffMs: config.time('maximal_backoff_time'),
    queueRunDelayMs: Math.max(1000, config.time('queue_run_delay')),
    maximalQueueLifetimeMs: config.time('maximal_queue_lifetime'),
    bounceQueueLifetimeMs: config.time('bounce_queue_lifetime'),
    activeLimit: Math.max(1, config.int('qmgr_message_active_limit')),
    recipientLimit: Math.max(1, config.int('default_destination_recipient_limit')),
    doubleBounceAddress: (dbs.includes('@') ? dbs : `${dbs}@${config.get('myorigin')}`).toLowerCase(),
    delayWarningMs: config.time('delay_warning_time'),
  };
}

/** What a reload replaces: the routing tables and the scheduler's parameters. */
export interface DeliveryRuntime {
  readonly router: Router;
  readonly settings: DeliverySettings;
  /** alias_maps for the local agent (aliases(5) format). */
  readonly aliases: Maps;
}

/** One recipient a notice is about. */
export interface NoticeRecipient {
  readonly recipient: Recipient;
  readonly relay: string;
  readonly reason: string;
  readonly dsn: DsnResult;
  readonly lastAttempt: number;
}

/** A message the scheduler wants queued (a bounce or double bounce). */
export interface OutgoingNotice {
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly message: Buffer;
}

export interface SchedulerDeps {
  readonly store: QueueStore;
  readonly log: MailLogger;
  runtime(): DeliveryRuntime;
  /** Agents by transport name; `smtp` and `relay` usually share one. */
  readonly agents: ReadonlyMap<string, DeliveryAgent>;
  /** Build the non-delivery (failure) or delay notice for these recipients, or null when none is due. */
  notice(kind: 'failure' | 'delay', env: Envelope, recipients: readonly NoticeRecipient[], message: Buffer, now: number): OutgoingNotice | null;
  /** Commit a new message (a notice) to incoming/; resolves to its queue ID. */
  submit(notice: OutgoingNotice): Promise<string>;
  /**
   * Where finished messages' files go for reuse as new queue files (QueueStore.retire and
   * adopt); without it they are unlinked.
   */
  recycle?(path: string): void;
}

type Source = 'incoming' | 'deferred';

/** What smtpd just committed, so the queue manager need not read the file back. */
export interface Committed {
  readonly envelope: Envelope;
  /** The message as delivered (prepended headers and stored bytes). */
  readonly body: Buffer;
}

const STOP_WAIT_MS = 10_000;

/** Built-in transports that need no agent (error(8), discard(8)); `retry` is error's twin. */
const BUILTIN = new Set(['error', 'retry', 'discard']);

export class Scheduler {
  private readonly deps: SchedulerDeps;
  private readonly waiting: Array<{ id: string; from: Source }> = [];
  private readonly known = new Set<string>();
  private readonly handed = new Map<string, Committed>();
  private readonly active = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private unwatch: (() => void) | null = null;
  private stopping = false;
  private scanning: Promise<void> | null = null;
  private rescan = false;

  constructor(deps: SchedulerDeps) {
    this.deps = deps;
  }

  /** start - scan both queues now, then deferred/ every queue_run_delay; listen for triggers */
  start(): void {
    this.unwatch = this.deps.store.watchFlush(
      () => this.scan(true),
      () => this.scan(false),
    );
    this.scan(true);
    this.arm();
  }

  /**
   * notify - a message was just committed to incoming/ (smtpd, or a notice we queued);
   * with COMMITTED, its envelope and bytes as written, which spares reading the file back
   */
  notify(id: string, committed?: Committed): void {
    if (committed && !this.stopping && !this.known.has(id)) this.handed.set(id, committed);
    this.enqueue(id, 'incoming');
  }

  /** How many messages are being delivered now (tests and metrics). */
  get activeCount(): number {
    return this.active.size;
  }

  /**
   * stop - take no more messages and wait (up to 10 s) for deliveries in progress; what is
   * still in active/ then goes back to incoming/ at the next start
   */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.unwatch?.();
    const all = Promise.allSettled([...this.active.values()]);
    let t: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((res) => (t = setTimeout(res, STOP_WAIT_MS)))]);
    if (t) clearTimeout(t);
  }

  private arm(): void {
    if (this.stopping) return;
    const delay = this.deps.runtime().settings.queueRunDelayMs;
    this.timer = setTimeout(() => {
      this.scan(true);
      this.arm();
    }, delay);
    this.timer.unref();
  }

  /** Scan incoming/ (always) and deferred/ (withDeferred) for messages that are due. */
  private scan(withDeferred: boolean): void {
    if (this.stopping) return;
    if (this.scanning) {
      // One scan at a time; a trigger that arrives meanwhile scans again afterwards.
      this.rescan = true;
      return;
    }
    this.scanning = (async () => {
      try {
        for (const f of await this.deps.store.list('incoming')) this.enqueue(f.id, 'incoming');
        if (withDeferred) {
          const now = Date.now();
          for (const f of await this.deps.store.list('deferred')) if (f.mtimeMs <= now || f.forcedExpire) this.enqueue(f.id, 'deferred');
        }
      } catch (e) {
        this.deps.log.error(`queue scan failed: ${errText(e)}`);
      } finally {
        this.scanning = null;
        if (this.rescan) {
          this.rescan = false;
          this.scan(true);
        }
      }
    })();
  }

  private enqueue(id: string, from: Source): void {
    if (this.stopping || this.known.has(id)) return;
    this.known.add(id);
    this.waiting.push({ id, from });
    this.pump();
  }

  private pump(): void {
    const limit = this.deps.runtime().settings.activeLimit;
    while (!this.stopping && this.active.size < limit && this.waiting.length > 0) {
      const { id, from } = this.waiting.shift()!;
      const p = this.process(id, from)
        .catch((e: unknown) => this.deps.log.error(`${id}: delivery failed: ${errText(e)}`, { queue_id: id }))
        .finally(() => {
          this.active.delete(id);
          this.known.delete(id);
          this.pump();
        });
      this.active.set(id, p);
    }
  }

  /* ---- one message */

  private async process(id: string, from: Source): Promise<void> {
    const { store, log } = this.deps;
    const handed = this.handed.get(id);
    this.handed.delete(id);
    // The rename into active/ is the lease: if it fails, someone else (postsuper) moved it.
    if (!(await store.move(id, from, 'active', { sync: false }))) return;
    let msg: { readonly id: string; readonly forcedExpire: boolean; readonly envelope: Envelope };
    let body: Buffer;
    if (handed && from === 'incoming') {
      msg = { id, forcedExpire: false, envelope: handed.envelope };
      body = handed.body;
    } else {
      const read = await store.read('active', id, { withBody: true });
      if (read.kind === 'missing') return;
      if (read.kind === 'corrupt') {
        const name = await store.quarantine('active', id);
        log.error(`${id}: corrupt queue file moved to corrupt/${name ?? id}: ${read.reason}`, { queue_id: id });
        return;
      }
      msg = read.message;
      body = read.body ?? (await store.readBody(read.message));
    }
    const env = structuredClone(msg.envelope);
    const now = Date.now();
    if (env.discard !== undefined) {
      log.event({ event: 'discard', stage: 'qmgr', queue_id: id, from: env.sender, to: openRecipients(env).map((r) => r.address), reply: env.discard, msg: `${id}: discarded${env.discard ? `: ${env.discard}` : ''}` });
      await this.finished(id);
      return;
    }
    if (applyRedirectAndBcc(env)) await store.updateEnvelope('active', id, env);
    const open = openRecipients(env);
    const noticeFor: NoticeRecipient[] = [];
    const attemptAt = Date.now();
    if (msg.forcedExpire) {
      this.expire(env, open, noticeFor, 'message is administratively expired');
    } else if (open.length > 0) {
      const outcomes = await this.attempt(msg, env, open, body);
      for (const [rcpt, outcome] of outcomes) this.record(env, rcpt, outcome, noticeFor, attemptAt);
    }
    const stillOpen = openRecipients(env);
    const settings = this.deps.runtime().settings;
    if (stillOpen.length > 0 && !msg.forcedExpire) {
      const lifetime = env.sender === '' ? settings.bounceQueueLifetimeMs : settings.maximalQueueLifetimeMs;
      if (Date.now() - env.arrivalTime >= lifetime) this.expire(env, stillOpen, noticeFor, null);
    }
    env.attempts += 1;
    env.lastAttemptAt = attemptAt;
    if (noticeFor.length > 0) await this.sendNotice('failure', env, noticeFor, body, now);
    const remaining = openRecipients(env);
    if (remaining.length === 0) {
      await this.finished(id);
      log.event({ event: 'info', stage: 'qmgr', queue_id: id, msg: `${id}: removed` });
      return;
    }
    // One delay warning per message once it has waited delay_warning_time (Postfix's
    // "Delayed Mail (still being retried)"); never for null-sender mail (notify_classes).
    if (settings.delayWarningMs > 0 && env.delayWarningSentAt === undefined && env.sender !== '' && Date.now() - env.arrivalTime >= settings.delayWarningMs) {
      const delayed = remaining.map((r): NoticeRecipient => {
        const rcpt = env.recipients[r.index]!;
        const reason = rcpt.delayReason ?? 'delivery temporarily suspended';
        return { recipient: { ...rcpt }, relay: 'none', reason, dsn: rcpt.dsn ?? { status: '4.0.0', diagnostic: reason }, lastAttempt: attemptAt };
      });
      await this.sendNotice('delay', env, delayed, body, now);
      env.delayWarningSentAt = Date.now();
    }
    // qmgr's backoff: the time since arrival, clamped to [minimal, maximal]_backoff_time,
    // so the interval roughly doubles with each attempt until it reaches the maximum.
    const age = Date.now() - env.arrivalTime;
    const backoff = Math.min(settings.maximalBackoffMs, Math.max(settings.minimalBackoffMs, age));
    env.nextAttemptAt = Date.now() + backoff;
    if (!(await store.updateEnvelope('active', id, env))) return;
    await store.move(id, 'active', 'deferred', { sync: false });
  }

  /** Route, group into jobs, deliver; outcomes in recipient order. */

  /** finished - the message has left the queue: its file is recycled or removed */
  private async finished(id: string): Promise<void> {
    const { store, recycle } = this.deps;
    if (!recycle) {
      await store.remove('active', id);
      return;
    }
    const path = await store.retire('active', id);
    if (path !== null) recycle(path);
  }
  private async attempt(msg: { readonly id: string }, env: Envelope, open: readonly OpenRecipient[], body: Buffer): Promise<Array<[OpenRecipient, RecipientOutcome]>> {
    const { router, settings } = this.deps.runtime();
    const results: Array<[OpenRecipient, RecipientOutcome]> = [];
    const groups = new Map<string, { transport: string; nexthop: string; rcpts: OpenRecipient[] }>();
    for (const r of open) {
      const routed = router.route(r.address);
      if (routed.kind === 'fail') {
        results.push([r, { kind: 'deferred', relay: 'none', dsn: { status: '4.3.0', diagnostic: routed.reason }, reason: routed.reason }]);
        continue;
      }
      if (r.address.toLowerCase() === settings.doubleBounceAddress) {
        // qmgr(8): mail for the double-bounce address is logged and discarded (stops loops).
        results.push([r, { kind: 'delivered', relay: 'none', dsn: { status: '2.0.0' }, reply: 'discarded' }]);
        continue;
      }
      const { transport, nexthop } = routed.route;
      const key = `${transport}\0${nexthop}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { transport, nexthop, rcpts: [] }));
      g.rcpts.push(r);
    }
    const jobs: Array<Promise<void>> = [];
    for (const g of groups.values()) {
      for (let i = 0; i < g.rcpts.length; i += settings.recipientLimit) {
        const chunk = g.rcpts.slice(i, i + settings.recipientLimit);
        const job: DeliveryJob = {
          queueId: msg.id,
          envelope: env,
          recipients: chunk.map((r): JobRecipient => ({ index: r.index, address: r.address, originalAddress: r.originalAddress })),
          transport: g.transport,
          nexthop: g.nexthop,
          message: body,
        };
        jobs.push(
          this.runJob(job).then((outs) => {
            chunk.forEach((r, n) => results.push([r, outs[n] ?? internalDefer('delivery agent returned no result')]));
          }),
        );
      }
    }
    await Promise.all(jobs);
    return results;
  }

  private async runJob(job: DeliveryJob): Promise<RecipientOutcome[]> {
    if (BUILTIN.has(job.transport)) return job.recipients.map(() => builtinOutcome(job.transport, job.nexthop));
    const agent = this.deps.agents.get(job.transport);
    if (!agent) {
      const reason = `mail transport unavailable: no transport "${job.transport}"`;
      return job.recipients.map(() => internalDefer(reason, '4.3.0'));
    }
    try {
      return await agent.deliver(job);
    } catch (e) {
      return job.recipients.map(() => internalDefer(`delivery agent failure: ${errText(e)}`));
    }
  }

  /** Write one recipient's outcome into the envelope and the log. */
  private record(env: Envelope, r: OpenRecipient, o: RecipientOutcome, noticeFor: NoticeRecipient[], attemptAt: number): void {
    const rcpt = env.recipients[r.index]!;
    rcpt.dsn = o.dsn;
    const base = this.logBase(env, rcpt, o.relay, o.dsn.status);
    if (o.kind === 'delivered') {
      rcpt.status = 'delivered';
      delete rcpt.delayReason;
      this.deps.log.event({ ...base, event: 'deliver', status: 'sent', reply: o.reply, ...codeOf(o.reply), msg: `${postfixLine(env, rcpt, base)}, status=sent (${o.reply})` });
    } else if (o.kind === 'deferred') {
      rcpt.status = 'deferred';
      rcpt.delayReason = o.reason;
      this.deps.log.event({ ...base, event: 'defer', status: 'deferred', reply: o.reason, ...codeOf(o.reason), msg: `${postfixLine(env, rcpt, base)}, status=deferred (${o.reason})` });
    } else {
      rcpt.status = 'bounced';
      rcpt.bounceReason = o.reason;
      delete rcpt.delayReason;
      this.deps.log.event({ ...base, event: 'bounce', status: 'bounced', reply: o.reason, ...codeOf(o.reason), msg: `${postfixLine(env, rcpt, base)}, status=bounced (${o.reason})` });
      noticeFor.push({ recipient: { ...rcpt }, relay: o.relay, reason: o.reason, dsn: o.dsn, lastAttempt: attemptAt });
    }
  }

  /** Recipients still open past the lifetime (or forced) are returned with their last reason. */
  private expire(env: Envelope, open: readonly OpenRecipient[], noticeFor: NoticeRecipient[], forced: string | null): void {
    for (const r of open) {
      const rcpt = env.recipients[r.index]!;
      const reason = rcpt.delayReason ?? forced ?? 'message expired';
      const dsn: DsnResult = rcpt.dsn ?? { status: '4.4.7', diagnostic: reason };
      rcpt.status = 'bounced';
      rcpt.bounceReason = reason;
      const base = this.logBase(env, rcpt, 'none', dsn.status);
      this.deps.log.event({ ...base, event: 'expire', status: 'expired', reply: reason, msg: `${env.queueId}: from=<${env.sender}>, status=expired, returned to sender (${reason})` });
      noticeFor.push({ recipient: { ...rcpt }, relay: 'none', reason, dsn, lastAttempt: env.lastAttemptAt ?? Date.now() });
    }
  }

  private async sendNotice(kind: 'failure' | 'delay', env: Envelope, noticeFor: readonly NoticeRecipient[], body: Buffer, now: number): Promise<void> {
    if (env.sender.toLowerCase() === this.deps.runtime().settings.doubleBounceAddress) {
      this.deps.log.event({ event: 'info', stage: 'bounce', queue_id: env.queueId, msg: `${env.queueId}: undeliverable double-bounce discarded` });
      return;
    }
    const notice = this.deps.notice(kind, env, noticeFor, body, now);
    if (!notice) return;
    const id = await this.deps.submit(notice);
    const what = kind === 'delay' ? 'sender delay notification' : env.sender === '' ? 'postmaster non-delivery notification' : 'sender non-delivery notification';
    this.deps.log.event({ event: 'info', stage: 'bounce', queue_id: env.queueId, notice_id: id, msg: `${env.queueId}: ${what}: ${id}` });
    this.notify(id);
  }

  private logBase(env: Envelope, rcpt: Recipient, relay: string, dsn: string): EventRecord {
    const delay = Math.round((Date.now() - env.arrivalTime) / 10) / 100;
    const rec: EventRecord = { event: 'deliver', stage: 'qmgr', queue_id: env.queueId, from: env.sender, to: rcpt.address, relay, delay, dsn };
    if (rcpt.originalAddress && rcpt.originalAddress.toLowerCase() !== rcpt.address.toLowerCase()) rec.orig_to = rcpt.originalAddress;
    return rec;
  }
}

/* ---- helpers */

interface OpenRecipient {
  readonly index: number;
  readonly address: string;
  readonly originalAddress: string;
}

function openRecipients(env: Envelope): OpenRecipient[] {
  const out: OpenRecipient[] = [];
  env.recipients.forEach((r, index) => {
    if (r.status === 'pending' || r.status === 'deferred') out.push({ index, address: r.address, originalAddress: r.originalAddress });
  });
  return out;
}

/**
 * REDIRECT replaces every recipient, BCC adds recipients (NOTIFY=NEVER), as cleanup(8) does
 * before the queue manager sees the message; done once, on the first activation.
 */
function applyRedirectAndBcc(env: Envelope): boolean {
  let changed = false;
  if (env.redirect !== undefined) {
    const target = env.redirect;
    const orig = env.recipients.map((r) => r.originalAddress);
    env.recipients = [{ address: target, originalAddress: orig[0] ?? target, status: 'pending' }];
    delete env.redirect;
    changed = true;
  }
  if (env.bcc?.length) {
    const have = new Set(env.recipients.map((r) => r.address.toLowerCase()));
    for (const b of env.bcc) {
      if (have.has(b.toLowerCase())) continue;
      have.add(b.toLowerCase());
      env.recipients.push({ address: b, originalAddress: b, status: 'pending', notify: ['NEVER'] });
    }
    delete env.bcc;
    changed = true;
  }
  return changed;
}

/** error(8), retry and discard(8): the nexthop is the text, with an optional X.Y.Z in front. */
function builtinOutcome(transport: string, text: string): RecipientOutcome {
  const m = /^([245]\.\d{1,3}\.\d{1,3})\s*(.*)$/s.exec(text);
  if (transport === 'discard') return { kind: 'delivered', relay: 'none', dsn: { status: '2.0.0' }, reply: text || 'discarded' };
  const defer = transport === 'retry';
  const fallback = defer ? '4.0.0' : '5.0.0';
  let status = m ? m[1]! : fallback;
  // error: never defers and retry: never bounces, whatever code the text carries.
  if (defer !== status.startsWith('4')) status = fallback;
  const reason = (m ? m[2]! : text) || (defer ? 'delivery temporarily suspended' : 'mail delivery disabled');
  return defer
    ? { kind: 'deferred', relay: 'none', dsn: { status, diagnostic: reason }, reason }
    : { kind: 'bounced', relay: 'none', dsn: { status, diagnostic: reason }, reason };
}

function internalDefer(reason: string, status = '4.3.0'): RecipientOutcome {
  return { kind: 'deferred', relay: 'none', dsn: { status, diagnostic: reason }, reason };
}

function codeOf(reply: string): { code?: number } {
  const m = /^(?:host \S+ said: )?([245]\d\d)[ -]/.exec(reply);
  return m ? { code: Number(m[1]) } : {};
}

function postfixLine(env: Envelope, rcpt: Recipient, base: EventRecord): string {
  const orig = base.orig_to ? `, orig_to=<${String(base.orig_to)}>` : '';
  return `${env.queueId}: to=<${rcpt.address}>${orig}, relay=${String(base.relay)}, delay=${String(base.delay)}, dsn=${String(base.dsn)}`;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
