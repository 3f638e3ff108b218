/**
 * @module log/metrics
 * SUMMARY: the Prometheus metrics of a running gateway, on a prom-client Registry of its own.
 * Metrics is fed by the decision logger (observeEvent, the logger's onEvent hook: every
 * record counted once, where it is written) and by smtpd (observeTransaction); render()
 * gives the text exposition format, contentType its Content-Type. Queue sizes and active
 * sessions are computed at scrape time. Labels are bounded: event, stage and rule (FILE:LINE,
 * restriction names, DNSBL sites: all from config), never a client, an address or a queue ID;
 * past MAX_SERIES label sets a new rule is counted as "_other".
 * DIAGNOSTICS: throws nothing; a queue directory that cannot be read counts as 0 messages.
 * SEE ALSO: log/logger.ts (the hook), log/metrics-http.ts, Prometheus exposition formats.
 */
import { readdir } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EventRecord } from './events.js';

/**
 * Distinct {event, stage, rule} sets kept. Rules come from config, so a real site stays far
 * below this; the cap only protects the scraper (and our memory) from a rule name that is
 * not one, as a Prometheus server drops a target whose series explode.
 */
export const MAX_SERIES = 5000;
export const OTHER_RULE = '_other';

/** How an SMTP transaction (MAIL FROM to the reply after DATA) ended. */
export type TransactionOutcome = 'accept' | 'hold' | 'discard' | 'reject' | 'defer';

/** What smtpd needs to time its transactions. */
export interface TransactionObserver {
  observeTransaction(seconds: number, outcome: TransactionOutcome): void;
}

export interface MetricsOptions {
  /** Queue name -> its directory; the entry count is the queue-size gauge. */
  readonly queueDirs?: Readonly<Record<string, string>>;
  /** Process metrics (CPU, memory, event loop lag, GC); on by default. */
  readonly defaultMetrics?: boolean;
}

/** Stages at which greygate's SMTP listeners answer (a record with a code there is a reply we sent). */
const SMTP_STAGES = new Set(['connect', 'helo', 'mail', 'rcpt', 'data', 'end-of-data']);
const SMTP_SERVICES = new Set(['smtpd', 'submission', 'smtps']);
const DELIVERY_STATUS: Readonly<Record<string, string>> = { deliver: 'sent', bounce: 'bounced', expire: 'expired' };

/**
 * Mail transactions: a few ms for a small message from a client on the LAN, seconds for a
 * large one or a slow sender, up to smtpd_timeout-scale stalls.
 */
const TRANSACTION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Delivery delay (arrival to final status): instant relays to retries over days (maximal_queue_lifetime 5d). */
const DELIVERY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 5 * 86400];

interface Cell {
  n: number;
  /** What the prom-client counter has been given so far. */
  reported: number;
  readonly labels: { event: string; stage: string; rule: string };
}

/**
 * metrics - the gateway's metrics. Counting is a nested-Map lookup and an increment (tens of
 * ns): prom-client's inc() hashes the label object on every call (about 0.4 µs, and its
 * labels() children are slower still), so the counts are kept here and handed to
 * prom-client once per scrape, in the counter's collect().
 */
export class Metrics {
  readonly registry: Registry;
  /** event -> stage -> rule -> cell. */
  private readonly cells = new Map<string, Map<string, Map<string, Cell>>>();
  private series = 0;
  private readonly codeClasses = [0, 0, 0, 0, 0, 0];
  private readonly codeReported = [0, 0, 0, 0, 0, 0];
  private acceptedBytes = 0;
  private acceptedBytesReported = 0;
  private acceptedRcpts = 0;
  private acceptedRcptsReported = 0;
  /** smtpd session ID -> service, from connect to disconnect. */
  private readonly sessions = new Map<string, string>();
  private readonly perService = new Map<string, number>();
  private readonly delivery: Histogram<'status'>;
  private readonly transaction: Histogram<'outcome'>;
  private readonly logMessages: Counter<'level'>;

  constructor(opts: MetricsOptions = {}) {
    const registry = new Registry();
    this.registry = registry;
    const registers = [registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
    const cells = this.cells;
    new Counter({
      name: 'greygate_events_total',
      help: 'Decision log records written, by event, stage and rule (FILE:LINE or restriction name)',
      labelNames: ['event', 'stage', 'rule'] as const,
      registers,
      collect() {
        for (const stages of cells.values())
          for (const rules of stages.values())
            for (const c of rules.values()) {
              if (c.n === c.reported) continue;
              this.inc(c.labels, c.n - c.reported);
              c.reported = c.n;
            }
      },
    });
    const codes = this.codeClasses;
    const codesReported = this.codeReported;
    const replies = new Counter({
      name: 'greygate_smtp_replies_total',
      help: 'Logged SMTP replies of the SMTP listeners (the reply after DATA and every refusal), by class',
      labelNames: ['code_class'] as const,
      registers,
      collect() {
        for (let i = 2; i < codes.length; i++) {
          const d = codes[i]! - codesReported[i]!;
          if (d > 0) this.inc({ code_class: `${i}xx` }, d);
          codesReported[i] = codes[i]!;
        }
      },
    });
    for (const k of ['2xx', '4xx', '5xx']) replies.inc({ code_class: k }, 0);
    const self = this;
    new Counter({
      name: 'greygate_accepted_bytes_total',
      help: 'Size of the messages accepted into the queue (the accept records)',
      registers,
      collect() {
        this.inc(self.acceptedBytes - self.acceptedBytesReported);
        self.acceptedBytesReported = self.acceptedBytes;
      },
    });
    new Counter({
      name: 'greygate_accepted_recipients_total',
      help: 'Recipients of the messages accepted into the queue',
      registers,
      collect() {
        this.inc(self.acceptedRcpts - self.acceptedRcptsReported);
        self.acceptedRcptsReported = self.acceptedRcpts;
      },
    });
    this.logMessages = new Counter({
      name: 'greygate_log_messages_total',
      help: 'Operational log messages (not decisions), by level',
      labelNames: ['level'] as const,
      registers,
    });
    for (const l of ['info', 'warn', 'error']) this.logMessages.inc({ level: l }, 0);
    this.transaction = new Histogram({
      name: 'greygate_smtp_transaction_seconds',
      help: 'SMTP transaction time, MAIL FROM to the reply after DATA, by outcome',
      labelNames: ['outcome'] as const,
      buckets: TRANSACTION_BUCKETS,
      registers,
    });
    for (const o of ['accept', 'reject', 'defer']) this.transaction.zero({ outcome: o });
    this.delivery = new Histogram({
      name: 'greygate_delivery_seconds',
      help: 'Delivery delay, arrival to final status (the delay of deliver, bounce and expire records)',
      labelNames: ['status'] as const,
      buckets: DELIVERY_BUCKETS,
      registers,
    });
    for (const s of Object.values(DELIVERY_STATUS)) this.delivery.zero({ status: s });
    const perService = this.perService;
    new Gauge({
      name: 'greygate_smtp_sessions',
      help: 'SMTP sessions open now, by service',
      labelNames: ['service'] as const,
      registers,
      collect() {
        this.set({ service: 'smtpd' }, 0);
        for (const [service, n] of perService) this.set({ service }, n);
      },
    });
    const queueDirs = Object.entries(opts.queueDirs ?? {});
    if (queueDirs.length) {
      new Gauge({
        name: 'greygate_queue_messages',
        help: 'Messages in each queue directory (incoming, active, deferred, hold, corrupt)',
        labelNames: ['queue'] as const,
        registers,
        async collect() {
          const counts = await Promise.all(queueDirs.map(([, dir]) => countEntries(dir)));
          queueDirs.forEach(([queue], i) => this.set({ queue }, counts[i]!));
        },
      });
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition format of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** observeEvent - count one decision record (the logger's onEvent hook; an arrow, so it can be passed as is). */
  readonly observeEvent = (r: EventRecord): void => {
    const event = r.event;
    const stage = typeof r.stage === 'string' ? r.stage : '';
    const rule = typeof r.rule === 'string' ? r.rule : '';
    let stages = this.cells.get(event);
    if (stages === undefined) this.cells.set(event, (stages = new Map()));
    let rules = stages.get(stage);
    if (rules === undefined) stages.set(stage, (rules = new Map()));
    const cell = rules.get(rule);
    if (cell !== undefined) cell.n++;
    else this.newCell(rules, event, stage, rule);

    const code = r.code;
    if (typeof code === 'number' && SMTP_STAGES.has(stage) && r.service !== 'policyd') {
      const cls = (code / 100) | 0;
      if (cls >= 2 && cls <= 5) this.codeClasses[cls]!++;
    }
    switch (event) {
      case 'accept':
        if (typeof r.size === 'number' && r.size >= 0 && r.size < Infinity) this.acceptedBytes += r.size;
        this.acceptedRcpts += Array.isArray(r.to) ? r.to.length : r.to ? 1 : 0;
        break;
      case 'deliver':
      case 'bounce':
      case 'expire':
        if (typeof r.delay === 'number' && r.delay >= 0 && r.delay < Infinity) this.delivery.observe({ status: DELIVERY_STATUS[event]! }, r.delay);
        break;
      case 'connect':
        if (typeof r.session === 'string' && typeof r.service === 'string' && SMTP_SERVICES.has(r.service) && !this.sessions.has(r.session)) {
          this.sessions.set(r.session, r.service);
          this.perService.set(r.service, (this.perService.get(r.service) ?? 0) + 1);
        }
        break;
      case 'disconnect':
        if (typeof r.session === 'string') {
          const service = this.sessions.get(r.session);
          if (service !== undefined) {
            this.sessions.delete(r.session);
            this.perService.set(service, (this.perService.get(service) ?? 1) - 1);
          }
        }
        break;
      default:
        break;
    }
  };

  /** observeLog - count an operational (info/warn/error) message. */
  readonly observeLog = (level: 'info' | 'warn' | 'error'): void => {
    this.logMessages.inc({ level });
  };

  /** observeTransaction - one SMTP transaction's time, MAIL FROM to the final reply after DATA. */
  observeTransaction(seconds: number, outcome: TransactionOutcome): void {
    if (seconds >= 0 && seconds < Infinity) this.transaction.observe({ outcome }, seconds);
  }

  private newCell(rules: Map<string, Cell>, event: string, stage: string, rule: string): void {
    if (this.series >= MAX_SERIES && rule !== OTHER_RULE) {
      const other = rules.get(OTHER_RULE);
      if (other !== undefined) {
        other.n++;
        return;
      }
      rule = OTHER_RULE;
    }
    this.series++;
    rules.set(rule, { n: 1, reported: 0, labels: { event, stage, rule } });
  }
}

/** Entries of DIR that are messages: dot files are writers' temporary files. */
async function countEntries(dir: string): Promise<number> {
  try {
    let n = 0;
    for (const name of await readdir(dir)) if (name.charCodeAt(0) !== 46) n++;
    return n;
  } catch {
    return 0;
  }
}
