/**
 * @module log/report
 * SUMMARY: the numbers of `greygate report` (pflogsumm's Grand Totals, per-hour/per-day
 * traffic, reject detail by stage x rule, top rejected clients/senders/recipients, greylist
 * outcomes, deliveries per relay), gathered from decision-log records. Pure: no I/O.
 * Exports ReportBuilder (add(record, timeMs) per record, result() -> Report) and the Report
 * types. add() is a switch and a few Map counters, so it keeps up with the log reader.
 * DIAGNOSTICS: none; a record with missing or odd fields is counted as far as it can be.
 * SEE ALSO: pflogsumm (semantics.md 4.3), log/events.ts, log/report-text.ts, log/report-html.ts.
 */

/** What the builder reads of a record: the shape log/read.ts hands out (LogRecord). */
export interface ReportRecord {
  readonly [field: string]: unknown;
  readonly event: string;
}

export interface ReportOptions {
  /** Length of the top client/sender/recipient lists (default 10). */
  readonly top?: number;
  /** Stage x rule groups kept in the reject detail, most frequent first (default 25; pflogsumm's --reject-detail). */
  readonly rejectDetail?: number;
  /** Label hours and days in UTC instead of the local time zone. */
  readonly utc?: boolean;
  /** The period asked for (epoch ms), shown in the heading; records are not filtered here. */
  readonly since?: number;
  readonly until?: number;
}

export interface Totals {
  /** SMTP connections (smtpd 'connect'). */
  readonly connections: number;
  /** Messages accepted into the queue (250 after DATA, or submitted by sendmail). */
  readonly received: number;
  /** Refusals with a 5xx reply (one per RCPT, or per message at end of data). */
  readonly rejected: number;
  /** Refusals with a 4xx reply other than greylisting (smtpd 'defer', or 'reject' with 4xx). */
  readonly deferred: number;
  /** 450 greylist replies sent. */
  readonly greylisted: number;
  /** Distinct triplets greylisted. */
  readonly greylistedTriplets: number;
  readonly discarded: number;
  /** Held messages (also counted in received: they are queued, on hold). */
  readonly held: number;
  /** warn_if_reject: what would have been rejected. */
  readonly rejectWarnings: number;
  /** header/body_checks WARN and other warnings. */
  readonly warnings: number;
  /** Recipients delivered. */
  readonly delivered: number;
  /** Delivery attempts deferred by the queue manager. */
  readonly deliveryDeferrals: number;
  /** Recipients bounced. */
  readonly bounced: number;
  /** Recipients returned after maximal_queue_lifetime. */
  readonly expired: number;
  readonly bytesReceived: number;
  /** Size of the message counted once per delivered recipient, when its accept is in the log. */
  readonly bytesDelivered: number;
  /** Distinct envelope senders, sending hosts and recipients of received mail. */
  readonly senders: number;
  readonly sendingHosts: number;
  readonly recipients: number;
}

export type Verdict = 'received' | 'rejected' | 'deferred' | 'greylisted' | 'discarded' | 'held' | 'bounced' | 'delivered' | 'expired' | 'reject_warning';

export interface VerdictShare {
  readonly verdict: Verdict;
  readonly count: number;
  /**
   * Percent of SMTP decisions (received + discarded + rejected + deferred + greylisted) for
   * the smtpd verdicts; percent of delivered + bounced + expired for the delivery ones.
   */
  readonly percent: number;
}

export interface RejectGroup {
  readonly stage: string;
  /** FILE:LINE, restriction name ("reject_rbl_client zen.spamhaus.org") or limit parameter. */
  readonly rule: string;
  readonly count: number;
  /** How many of them were 4xx (the rest are 5xx). */
  readonly deferred: number;
  /** Distinct client addresses refused by this rule. */
  readonly clients: number;
  /** The most recent example. */
  readonly code: number | null;
  readonly reply: string;
  readonly last: string;
  readonly percent: number;
}

export interface TopEntry {
  readonly name: string;
  readonly count: number;
}

export interface VolumeRow {
  /** "2026-11-25 14:00" (hour), "2026-11-25" (day) or "14:00" (hour of day, several days summed). */
  readonly label: string;
  /** Start of the bucket, ISO (absent for hour-of-day rows). */
  readonly start?: string;
  readonly received: number;
  readonly rejected: number;
  readonly greylisted: number;
  readonly deferred: number;
  readonly delivered: number;
  readonly bounced: number;
}

export interface DelayBucket {
  readonly label: string;
  /** Seconds, inclusive. */
  readonly from: number;
  /** Seconds, exclusive; null = no upper bound. */
  readonly to: number | null;
  readonly count: number;
}

export interface GreylistSummary {
  /** 450 greylist replies sent. */
  readonly replies: number;
  /** Distinct triplets greylisted in the period. */
  readonly triplets: number;
  /** First passes of a triplet after its delay (each with the seconds it waited). */
  readonly passed: number;
  /** Of the triplets greylisted in the period, those that passed later in it. */
  readonly passedTriplets: number;
  /** Triplets greylisted in the period with no later pass (the sqlgrey "spam" figure). */
  readonly neverRetried: number;
  /** passedTriplets / triplets, percent. */
  readonly passRate: number;
  /** Seconds waited before the first pass; null when nothing passed. */
  readonly delay: { readonly min: number; readonly median: number; readonly p90: number; readonly max: number; readonly mean: number } | null;
  readonly delayBuckets: readonly DelayBucket[];
  /** Passes by the client auto-whitelist. */
  readonly awlHits: number;
  /** Passes by a client or recipient whitelist entry. */
  readonly whitelistHits: number;
  /** Every pass, by postgrey's reason. */
  readonly passReasons: readonly TopEntry[];
}

export interface RelayRow {
  /** The relay as logged ("mx.example[192.0.2.1]:25", "local"). */
  readonly relay: string;
  readonly delivered: number;
  readonly deferred: number;
  readonly bounced: number;
  readonly bytes: number;
  /** Seconds from arrival to delivery, of the delivered ones. */
  readonly avgDelay: number;
  readonly maxDelay: number;
}

export interface Report {
  readonly period: {
    /** First and last record (ISO), null when the log had none. */
    readonly first: string | null;
    readonly last: string | null;
    readonly since: string | null;
    readonly until: string | null;
    readonly timeZone: 'local' | 'utc';
  };
  /** Records summarised. */
  readonly records: number;
  readonly totals: Totals;
  readonly verdicts: readonly VerdictShare[];
  /** Refusals (4xx and 5xx, greylisting apart) by stage x rule, most frequent first. */
  readonly rejects: readonly RejectGroup[];
  readonly topRejected: { readonly clients: readonly TopEntry[]; readonly senders: readonly TopEntry[]; readonly recipients: readonly TopEntry[] };
  readonly topReceived: { readonly clients: readonly TopEntry[]; readonly senders: readonly TopEntry[]; readonly recipients: readonly TopEntry[] };
  readonly greylist: GreylistSummary;
  /** 'hour': one row per clock hour (period up to 48 h); 'hour-of-day': 24 rows summed over the days. */
  readonly perHour: { readonly unit: 'hour' | 'hour-of-day'; readonly rows: readonly VolumeRow[] };
  readonly perDay: readonly VolumeRow[];
  readonly deliveries: readonly RelayRow[];
}

const HOUR_MS = 3_600_000;
/** Up to this many hours the per-hour table lists each hour; beyond, hours of the day. */
const MAX_HOUR_ROWS = 48;
/** The per-day table lists quiet days too within this many days. */
const MAX_FILLED_DAYS = 400;

const DELAY_BUCKETS: ReadonlyArray<readonly [string, number, number | null]> = [
  ['< 1m', 0, 60],
  ['1-5m', 60, 300],
  ['5-10m', 300, 600],
  ['10-30m', 600, 1800],
  ['30-60m', 1800, 3600],
  ['1-4h', 3600, 14_400],
  ['4-24h', 14_400, 86_400],
  ['> 1d', 86_400, null],
];

interface Counts {
  received: number;
  rejected: number;
  greylisted: number;
  deferred: number;
  delivered: number;
  bounced: number;
}

function newCounts(): Counts {
  return { received: 0, rejected: 0, greylisted: 0, deferred: 0, delivered: 0, bounced: 0 };
}

interface Group {
  count: number;
  deferred: number;
  clients: Set<string>;
  code: number | null;
  reply: string;
  last: number;
}

interface Relay {
  delivered: number;
  deferred: number;
  bounced: number;
  bytes: number;
  delaySum: number;
  delayMax: number;
}

/** Triplet states in the greylist map. */
const GREYLISTED = 1;
const PASSED = 2;

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Counts by name; a boxed count makes a repeat one hash lookup and no Map write. */
type Counter = Map<string, { n: number }>;

function bump(m: Counter, k: string): void {
  const c = m.get(k);
  if (c !== undefined) c.n++;
  else m.set(k, { n: 1 });
}

function pct(n: number, of: number): number {
  return of > 0 ? Math.round((n * 10000) / of) / 100 : 0;
}

/** The N largest entries (count desc, then name), without sorting a map of millions. */
function topOf(m: Counter, n: number): TopEntry[] {
  const out: TopEntry[] = [];
  if (n <= 0) return out;
  const before = (a: TopEntry, b: TopEntry): boolean => a.count > b.count || (a.count === b.count && a.name < b.name);
  for (const [name, c] of m) {
    if (out.length === n) {
      const worst = out[n - 1]!;
      if (c.n < worst.count || (c.n === worst.count && name >= worst.name)) continue;
    }
    const e = { name, count: c.n };
    let i = out.length === n ? n - 1 : out.length;
    if (out.length < n) out.push(e);
    while (i > 0 && before(e, out[i - 1]!)) {
      out[i] = out[i - 1]!;
      i--;
    }
    out[i] = e;
  }
  return out;
}

/** Sorted copy's quantile by the nearest-rank method (what an admin would compute by hand). */
function quantile(sorted: Float64Array, q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** ReportBuilder.state(): what a builder gathered, in a form a worker thread can post. */
export interface BuilderState {
  readonly records: number;
  readonly first: number;
  readonly last: number;
  /** The scalar totals, in the order state() writes them. */
  readonly totals: readonly number[];
  /** The address/client/reason counters, in the order state() writes them. */
  readonly counters: ReadonlyArray<Map<string, { n: number }>>;
  readonly groups: Map<string, Map<string, Group>>;
  readonly triplets: Map<string, number>;
  readonly orphanPasses: Set<string>;
  readonly delays: number[];
  readonly sizes: Map<string, number>;
  readonly unsized: Array<[string, string]>;
  readonly relays: Map<string, Relay>;
  readonly hours: Map<number, Counts>;
}

export class ReportBuilder {
  private readonly top: number;
  private readonly rejectDetail: number;
  private readonly utc: boolean;
  private readonly since: number | undefined;
  private readonly until: number | undefined;

  private records = 0;
  private first = Infinity;
  private last = -Infinity;

  private connections = 0;
  private received = 0;
  private rejected = 0;
  private deferred = 0;
  private greylistReplies = 0;
  private discarded = 0;
  private held = 0;
  private rejectWarnings = 0;
  private warnings = 0;
  private delivered = 0;
  private deliveryDeferrals = 0;
  private bounced = 0;
  private expired = 0;
  private bytesReceived = 0;
  private bytesDelivered = 0;

  private readonly recvSenders: Counter = new Map();
  private readonly recvClients: Counter = new Map();
  private readonly recvRecipients: Counter = new Map();
  private readonly rejClients: Counter = new Map();
  private readonly rejSenders: Counter = new Map();
  private readonly rejRecipients: Counter = new Map();
  /** stage -> rule -> group: no key string built per reject. */
  private readonly groups = new Map<string, Map<string, Group>>();

  /** Greylisted triplet key -> GREYLISTED | PASSED. */
  private readonly triplets = new Map<string, number>();
  private delays: number[] = [];
  private readonly passReasons: Counter = new Map();
  private awlHits = 0;
  private whitelistHits = 0;
  /** The smtpd session whose greylist record awaits its 450 (logged right after it). */
  private pendingGreylist: string | undefined;

  /** Passes of keys this builder never saw greylisted: a merge pairs them with earlier parts. */
  private readonly orphanPasses = new Set<string>();

  /** Queue ID -> message size, for bytes delivered. */
  private readonly sizes = new Map<string, number>();
  /** Deliveries whose accept this builder did not see: [queue ID, relay], for a merge. */
  private readonly unsized: Array<[string, string]> = [];
  private readonly relays = new Map<string, Relay>();

  private readonly hours = new Map<number, Counts>();
  private lastHour = NaN;
  private lastCounts: Counts = newCounts();

  constructor(opts: ReportOptions = {}) {
    this.top = opts.top ?? 10;
    this.rejectDetail = opts.rejectDetail ?? 25;
    this.utc = opts.utc ?? false;
    this.since = opts.since;
    this.until = opts.until;
  }

  private hour(timeMs: number): Counts {
    const h = Math.floor(timeMs / HOUR_MS);
    if (h === this.lastHour) return this.lastCounts;
    let c = this.hours.get(h);
    if (!c) {
      c = newCounts();
      this.hours.set(h, c);
    }
    this.lastHour = h;
    this.lastCounts = c;
    return c;
  }

  /**
   * Events whose records add() only counts: the reader may hand them over as (event, time)
   * from the raw line through tally(), without parsing it (log/read.ts ReadOptions.tally).
   */
  static readonly TALLIED: ReadonlySet<string> = new Set(['connect', 'disconnect', 'info', 'start', 'stop', 'reload', 'config', 'auth', 'starttls', 'xclient']);

  /** tally - the effect of add() for a record of one of TALLIED's events */
  tally(event: string, timeMs: number): void {
    this.records++;
    if (timeMs < this.first) this.first = timeMs;
    if (timeMs > this.last) this.last = timeMs;
    if (event === 'connect') this.connections++;
  }

  add(rec: ReportRecord, timeMs: number): void {
    this.records++;
    if (timeMs < this.first) this.first = timeMs;
    if (timeMs > this.last) this.last = timeMs;
    switch (rec.event) {
      case 'connect':
        this.connections++;
        return;
      case 'accept':
        this.accept(rec, timeMs);
        return;
      case 'reject':
      case 'defer':
        if (rec.stage === 'qmgr') {
          if (rec.event === 'defer') this.delivery(rec, timeMs, 'deferred');
          return;
        }
        this.refusal(rec, timeMs);
        return;
      case 'greylist':
        this.greylist(rec, timeMs);
        return;
      case 'reject_warning':
        this.rejectWarnings++;
        return;
      case 'warn':
        this.warnings++;
        return;
      case 'discard':
        this.discarded++;
        return;
      case 'hold':
        this.held++;
        return;
      case 'deliver':
        this.delivery(rec, timeMs, 'delivered');
        return;
      case 'bounce':
        this.delivery(rec, timeMs, 'bounced');
        return;
      case 'expire':
        this.expired++;
        return;
      default:
        return;
    }
  }

  private accept(rec: ReportRecord, timeMs: number): void {
    this.received++;
    this.hour(timeMs).received++;
    const size = rec.size;
    if (typeof size === 'number') {
      this.bytesReceived += size;
      const qid = str(rec.queue_id);
      if (qid !== undefined) this.sizes.set(qid, size);
    }
    const from = str(rec.from);
    if (from !== undefined) bump(this.recvSenders, from === '' ? '<>' : from);
    const ip = str(rec.client_ip);
    if (ip !== undefined) bump(this.recvClients, ip);
    const to = rec.to;
    if (typeof to === 'string') bump(this.recvRecipients, to);
    else if (Array.isArray(to)) for (const r of to) if (typeof r === 'string') bump(this.recvRecipients, r);
  }

  private refusal(rec: ReportRecord, timeMs: number): void {
    const rule = str(rec.rule) ?? '(none)';
    const code = typeof rec.code === 'number' ? rec.code : null;
    const soft = code === null ? rec.event === 'defer' : code >= 400 && code < 500;
    const session = str(rec.session);
    // check_greylist's 450 follows its 'greylist' record: counted as a greylist reply.
    if (soft && rule === 'check_greylist' && session !== undefined && session === this.pendingGreylist) {
      this.pendingGreylist = undefined;
      this.greylistReplies++;
      this.hour(timeMs).greylisted++;
      return;
    }
    const hour = this.hour(timeMs);
    if (soft) {
      this.deferred++;
      hour.deferred++;
    } else {
      this.rejected++;
      hour.rejected++;
    }
    const stage = str(rec.stage) ?? '(none)';
    let byRule = this.groups.get(stage);
    if (!byRule) {
      byRule = new Map();
      this.groups.set(stage, byRule);
    }
    let g = byRule.get(rule);
    if (!g) {
      g = { count: 0, deferred: 0, clients: new Set(), code: null, reply: '', last: -Infinity };
      byRule.set(rule, g);
    }
    g.count++;
    if (soft) g.deferred++;
    if (timeMs >= g.last) {
      g.last = timeMs;
      g.code = code;
      g.reply = str(rec.reply) ?? '';
    }
    const ip = str(rec.client_ip);
    if (ip !== undefined) {
      g.clients.add(ip);
      bump(this.rejClients, ip);
    }
    const from = str(rec.from);
    if (from !== undefined) bump(this.rejSenders, from === '' ? '<>' : from);
    const to = rec.to;
    if (typeof to === 'string') {
      if (to !== '') bump(this.rejRecipients, to);
    } else if (Array.isArray(to)) for (const r of to) if (typeof r === 'string') bump(this.rejRecipients, r);
  }

  private greylist(rec: ReportRecord, timeMs: number): void {
    const key = str(rec.key);
    if (rec.action === 'greylist') {
      if (key !== undefined && !this.triplets.has(key)) this.triplets.set(key, GREYLISTED);
      // The policy service's record carries the reply it sent; smtpd logs the 450 next.
      if (typeof rec.code === 'number') {
        this.greylistReplies++;
        this.hour(timeMs).greylisted++;
      } else this.pendingGreylist = str(rec.session);
      return;
    }
    if (rec.action !== 'pass') return;
    const reason = str(rec.reason) ?? '(none)';
    bump(this.passReasons, reason);
    if (reason === 'client AWL') this.awlHits++;
    else if (reason === 'client whitelist' || reason === 'recipient whitelist') this.whitelistHits++;
    if (typeof rec.delay === 'number') this.delays.push(rec.delay);
    if (key !== undefined) {
      const state = this.triplets.get(key);
      if (state === GREYLISTED) this.triplets.set(key, PASSED);
      else if (state === undefined) this.orphanPasses.add(key);
    }
  }

  private delivery(rec: ReportRecord, timeMs: number, what: 'delivered' | 'deferred' | 'bounced'): void {
    const name = str(rec.relay) ?? 'none';
    let r = this.relays.get(name);
    if (!r) {
      r = { delivered: 0, deferred: 0, bounced: 0, bytes: 0, delaySum: 0, delayMax: 0 };
      this.relays.set(name, r);
    }
    if (what === 'deferred') {
      this.deliveryDeferrals++;
      r.deferred++;
      return;
    }
    if (what === 'bounced') {
      this.bounced++;
      r.bounced++;
      this.hour(timeMs).bounced++;
      return;
    }
    this.delivered++;
    r.delivered++;
    this.hour(timeMs).delivered++;
    const delay = rec.delay;
    if (typeof delay === 'number') {
      r.delaySum += delay;
      if (delay > r.delayMax) r.delayMax = delay;
    }
    const qid = str(rec.queue_id);
    const size = qid === undefined ? undefined : this.sizes.get(qid);
    if (size !== undefined) {
      this.bytesDelivered += size;
      r.bytes += size;
    } else if (qid !== undefined) this.unsized.push([qid, name]);
  }

  /**
   * state - everything add() has gathered, as plain data (Maps, Sets, arrays: it can be
   * posted from a worker thread) for merge() into the builder of the part before it.
   */
  state(): BuilderState {
    return {
      records: this.records,
      first: this.first,
      last: this.last,
      totals: [this.connections, this.received, this.rejected, this.deferred, this.greylistReplies, this.discarded, this.held, this.rejectWarnings, this.warnings, this.delivered, this.deliveryDeferrals, this.bounced, this.expired, this.bytesReceived, this.bytesDelivered, this.awlHits, this.whitelistHits],
      counters: [this.recvSenders, this.recvClients, this.recvRecipients, this.rejClients, this.rejSenders, this.rejRecipients, this.passReasons],
      groups: this.groups,
      triplets: this.triplets,
      orphanPasses: this.orphanPasses,
      delays: this.delays,
      sizes: this.sizes,
      unsized: this.unsized,
      relays: this.relays,
      hours: this.hours,
    };
  }

  /**
   * merge - add LATER, the state of the builder that read the part of the log right after
   * this one's, as if this builder had read that part too. The parts must be split where no
   * greylist record is waiting for its 450 (cli/report.ts splits before a 'connect' line).
   */
  merge(later: BuilderState): void {
    this.records += later.records;
    this.first = Math.min(this.first, later.first);
    this.last = Math.max(this.last, later.last);
    const t = later.totals;
    this.connections += t[0]!;
    this.received += t[1]!;
    this.rejected += t[2]!;
    this.deferred += t[3]!;
    this.greylistReplies += t[4]!;
    this.discarded += t[5]!;
    this.held += t[6]!;
    this.rejectWarnings += t[7]!;
    this.warnings += t[8]!;
    this.delivered += t[9]!;
    this.deliveryDeferrals += t[10]!;
    this.bounced += t[11]!;
    this.expired += t[12]!;
    this.bytesReceived += t[13]!;
    this.bytesDelivered += t[14]!;
    this.awlHits += t[15]!;
    this.whitelistHits += t[16]!;
    const mine = [this.recvSenders, this.recvClients, this.recvRecipients, this.rejClients, this.rejSenders, this.rejRecipients, this.passReasons];
    later.counters.forEach((m, i) => {
      const into = mine[i]!;
      for (const [k, c] of m) {
        const have = into.get(k);
        if (have) have.n += c.n;
        else into.set(k, { n: c.n });
      }
    });
    for (const [stage, rules] of later.groups) {
      let byRule = this.groups.get(stage);
      if (!byRule) {
        byRule = new Map();
        this.groups.set(stage, byRule);
      }
      for (const [rule, g] of rules) {
        const have = byRule.get(rule);
        if (!have) {
          byRule.set(rule, g);
          continue;
        }
        have.count += g.count;
        have.deferred += g.deferred;
        for (const c of g.clients) have.clients.add(c);
        if (g.last >= have.last) {
          have.last = g.last;
          have.code = g.code;
          have.reply = g.reply;
        }
      }
    }
    // What the later part passed without having seen it greylisted was greylisted here.
    for (const key of later.orphanPasses) {
      const state = this.triplets.get(key);
      if (state === GREYLISTED) this.triplets.set(key, PASSED);
      else if (state === undefined) this.orphanPasses.add(key);
    }
    for (const [key, state] of later.triplets) {
      const have = this.triplets.get(key);
      if (have === undefined) {
        this.triplets.set(key, state);
        this.orphanPasses.delete(key);
      } else if (have === GREYLISTED && state === PASSED) this.triplets.set(key, PASSED);
    }
    for (const d of later.delays) this.delays.push(d);
    for (const [qid, size] of later.sizes) this.sizes.set(qid, size);
    for (const [name, r] of later.relays) {
      const have = this.relays.get(name);
      if (!have) {
        this.relays.set(name, r);
        continue;
      }
      have.delivered += r.delivered;
      have.deferred += r.deferred;
      have.bounced += r.bounced;
      have.bytes += r.bytes;
      have.delaySum += r.delaySum;
      if (r.delayMax > have.delayMax) have.delayMax = r.delayMax;
    }
    // Deliveries there of messages accepted here (merge order: earlier parts first).
    for (const [qid, relay] of later.unsized) {
      const size = this.sizes.get(qid);
      if (size === undefined) {
        this.unsized.push([qid, relay]);
        continue;
      }
      this.bytesDelivered += size;
      const r = this.relays.get(relay);
      if (r) r.bytes += size;
    }
    for (const [h, c] of later.hours) {
      const have = this.hours.get(h);
      if (!have) {
        this.hours.set(h, c);
        continue;
      }
      have.received += c.received;
      have.rejected += c.rejected;
      have.greylisted += c.greylisted;
      have.deferred += c.deferred;
      have.delivered += c.delivered;
      have.bounced += c.bounced;
    }
    this.lastHour = NaN;
  }

  private labelHour(h: number): string {
    const d = new Date(h * HOUR_MS);
    return this.utc
      ? `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`
      : `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  }

  result(): Report {
    let neverRetried = 0;
    for (const s of this.triplets.values()) if (s === GREYLISTED) neverRetried++;
    const triplets = this.triplets.size;
    const passedTriplets = triplets - neverRetried;

    const delays = Float64Array.from(this.delays).sort();
    let sum = 0;
    for (const d of delays) sum += d;
    const delayBuckets = DELAY_BUCKETS.map(([label, from, to]) => {
      let count = 0;
      for (const d of delays) if (d >= from && (to === null || d < to)) count++;
      return { label, from, to, count };
    });

    const smtpdBase = this.received + this.discarded + this.rejected + this.deferred + this.greylistReplies;
    const deliveryBase = this.delivered + this.bounced + this.expired;
    const share = (verdict: Verdict, count: number, base: number): VerdictShare => ({ verdict, count, percent: pct(count, base) });
    const refusals = this.rejected + this.deferred;

    const rejects: RejectGroup[] = [];
    for (const [stage, byRule] of this.groups) {
      for (const [rule, g] of byRule) {
        rejects.push({ stage, rule, count: g.count, deferred: g.deferred, clients: g.clients.size, code: g.code, reply: g.reply, last: new Date(g.last).toISOString(), percent: pct(g.count, refusals) });
      }
    }
    rejects.sort((a, b) => b.count - a.count || a.stage.localeCompare(b.stage) || a.rule.localeCompare(b.rule));

    const relays: RelayRow[] = [...this.relays].map(([relay, r]) => ({
      relay,
      delivered: r.delivered,
      deferred: r.deferred,
      bounced: r.bounced,
      bytes: r.bytes,
      avgDelay: r.delivered > 0 ? Math.round((r.delaySum / r.delivered) * 100) / 100 : 0,
      maxDelay: r.delayMax,
    }));
    relays.sort((a, b) => b.delivered - a.delivered || b.deferred + b.bounced - (a.deferred + a.bounced) || a.relay.localeCompare(b.relay));

    return {
      period: {
        first: this.records > 0 ? new Date(this.first).toISOString() : null,
        last: this.records > 0 ? new Date(this.last).toISOString() : null,
        since: this.since !== undefined ? new Date(this.since).toISOString() : null,
        until: this.until !== undefined ? new Date(this.until).toISOString() : null,
        timeZone: this.utc ? 'utc' : 'local',
      },
      records: this.records,
      totals: {
        connections: this.connections,
        received: this.received,
        rejected: this.rejected,
        deferred: this.deferred,
        greylisted: this.greylistReplies,
        greylistedTriplets: triplets,
        discarded: this.discarded,
        held: this.held,
        rejectWarnings: this.rejectWarnings,
        warnings: this.warnings,
        delivered: this.delivered,
        deliveryDeferrals: this.deliveryDeferrals,
        bounced: this.bounced,
        expired: this.expired,
        bytesReceived: this.bytesReceived,
        bytesDelivered: this.bytesDelivered,
        senders: this.recvSenders.size,
        sendingHosts: this.recvClients.size,
        recipients: this.recvRecipients.size,
      },
      verdicts: [
        share('received', this.received, smtpdBase),
        share('rejected', this.rejected, smtpdBase),
        share('deferred', this.deferred, smtpdBase),
        share('greylisted', this.greylistReplies, smtpdBase),
        share('discarded', this.discarded, smtpdBase),
        share('held', this.held, smtpdBase),
        share('reject_warning', this.rejectWarnings, smtpdBase),
        share('delivered', this.delivered, deliveryBase),
        share('bounced', this.bounced, deliveryBase),
        share('expired', this.expired, deliveryBase),
      ],
      rejects: rejects.slice(0, Math.max(this.rejectDetail, 0)),
      topRejected: { clients: topOf(this.rejClients, this.top), senders: topOf(this.rejSenders, this.top), recipients: topOf(this.rejRecipients, this.top) },
      topReceived: { clients: topOf(this.recvClients, this.top), senders: topOf(this.recvSenders, this.top), recipients: topOf(this.recvRecipients, this.top) },
      greylist: {
        replies: this.greylistReplies,
        triplets,
        passed: delays.length,
        passedTriplets,
        neverRetried,
        passRate: pct(passedTriplets, triplets),
        delay:
          delays.length > 0
            ? { min: delays[0]!, median: quantile(delays, 0.5), p90: quantile(delays, 0.9), max: delays[delays.length - 1]!, mean: Math.round((sum / delays.length) * 100) / 100 }
            : null,
        delayBuckets,
        awlHits: this.awlHits,
        whitelistHits: this.whitelistHits,
        passReasons: topOf(this.passReasons, this.passReasons.size),
      },
      perHour: this.perHour(),
      perDay: this.perDay(),
      deliveries: relays,
    };
  }

  private hourRange(): [number, number] | null {
    if (this.records === 0) return null;
    return [Math.floor(this.first / HOUR_MS), Math.floor(this.last / HOUR_MS)];
  }

  private perHour(): Report['perHour'] {
    const range = this.hourRange();
    if (!range) return { unit: 'hour', rows: [] };
    const [h0, h1] = range;
    if (h1 - h0 + 1 <= MAX_HOUR_ROWS) {
      const rows: VolumeRow[] = [];
      for (let h = h0; h <= h1; h++) rows.push({ label: this.labelHour(h), start: new Date(h * HOUR_MS).toISOString(), ...(this.hours.get(h) ?? newCounts()) });
      return { unit: 'hour', rows };
    }
    // pflogsumm's per-hour table over several days: the hours of the day, summed.
    const sums = Array.from({ length: 24 }, newCounts);
    for (const [h, c] of this.hours) {
      const d = new Date(h * HOUR_MS);
      const s = sums[this.utc ? d.getUTCHours() : d.getHours()]!;
      addCounts(s, c);
    }
    return { unit: 'hour-of-day', rows: sums.map((c, i) => ({ label: `${pad2(i)}:00`, ...c })) };
  }

  private perDay(): VolumeRow[] {
    const range = this.hourRange();
    if (!range) return [];
    const days = new Map<string, { start: number; c: Counts }>();
    const add = (h: number): void => {
      const label = this.labelHour(h).slice(0, 10);
      let d = days.get(label);
      if (!d) {
        const t = new Date(h * HOUR_MS);
        const start = this.utc ? Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()) : new Date(t.getFullYear(), t.getMonth(), t.getDate()).getTime();
        d = { start, c: newCounts() };
        days.set(label, d);
      }
      const c = this.hours.get(h);
      if (c) addCounts(d.c, c);
    };
    // Quiet days are rows too, unless a stray timestamp stretches the period absurdly.
    if (range[1] - range[0] <= MAX_FILLED_DAYS * 24) for (let h = range[0]; h <= range[1]; h++) add(h);
    else for (const h of this.hours.keys()) add(h);
    return [...days]
      .sort((a, b) => a[1].start - b[1].start)
      .map(([label, d]) => ({ label, start: new Date(d.start).toISOString(), ...d.c }));
  }
}

function addCounts(into: Counts, c: Counts): void {
  into.received += c.received;
  into.rejected += c.rejected;
  into.greylisted += c.greylisted;
  into.deferred += c.deferred;
  into.delivered += c.delivered;
  into.bounced += c.bounced;
}
