/**
 * @module greylist/greylist
 * SUMMARY: greylisting with postgrey 1.37's decision algorithm (smtpd_access_policy()),
 * plus organisation grouping for big senders. decide(query, context) is the algorithm: pure
 * apart from the injected store and instance memory (the time is the query's `now`);
 * decideNow() is the same, answered without a promise when the store answers at once (the
 * write-behind cache's `immediate` operations), so the policy service's hot path never
 * waits for a microtask. Greylist wraps it with the settings, whitelists and store of one
 * configuration (check() / checkNow()); openGreylist(config) builds one from main.cf
 * (greylist_* parameters).
 *
 * The algorithm, in postgrey's order (shared semantics.md 1.2):
 *  1. client whitelist (name entries against the verified client name, then IP entries),
 *  2. recipient whitelist                                          -> pass (DUNNO)
 *  3. auto-whitelist (per full client IP): count >= greylist_auto_whitelist_clients -> pass,
 *     refreshing {count+1, now} at most once an hour (or when `last` is in the future)
 *  4. triplet (client net, sender', recipient): a stored triplet whose last - first >= delay
 *     "was successful"; otherwise a retry later than first + retry_window starts over
 *     (first = now); a first in the future becomes now; a new triplet gets first = now;
 *     {first, last: now} is ALWAYS written back, greylisted or not
 *  5. now - first >= delay passes; the first pass of a triplet bumps the IP's AWL count
 *     (at most once an hour per IP) and, for a message instance not seen among the last
 *     10, gets the X-Greylist header; otherwise -> greylist, reason "new" (first == now)
 *     or "early-retry".
 *
 * Organisation grouping (greylist_organization_grouping = yes), for senders such as Gmail,
 * Outlook or Amazon SES that retry from another network. Every attempt from a client whose
 * name is forward-confirmed, with organisational domain D (registrable domain = public
 * suffix + one label, see org-domain.ts for the names that give none), is ALSO recorded
 * under the organisation triplet ("org:D", sender', recipient), with exactly the rules of
 * step 4 (except that, once both have passed, it is rewritten at most once an hour). An
 * attempt that its own network triplet would greylist passes when that
 * organisation triplet has waited the delay (now - first(org:D, sender', recipient) >=
 * greylist_delay): an earlier attempt of the same normalised sender and recipient came from
 * a verified host of the same organisation at least greylist_delay ago, within the retry
 * window (or that organisation triplet has passed before). The pass has reason
 * "organisation retry" and grouping "rdns:D" (to be logged); the organisation triplet's
 * first pass counts for the AWL and the X-Greylist header like a triplet's first pass.
 *
 * DIAGNOSTICS: a store failure rejects with StoreError, never a pass; so does a triplet that
 * keeps changing under us (more than 8 lost compare-and-set races). openGreylist() never
 * throws for a user's mistake: bad parameters and whitelist lines are Problems (FILE:LINE),
 * an unusable greylist_database gives a store that fails every lookup (451).
 * SEE ALSO: postgrey(8); RFC 6647; greylist/triplet.ts, whitelist.ts, store.ts.
 */
import { isAbsolute, join } from 'node:path';
import { ConfigError, StoreError, type Problem } from '../errors.js';
import type { Config } from '../config/config.js';
import { clientIp, formatTripletKey, tripletKey, type TripletKey } from './triplet.js';
import { orgDomain, type OrgDomain } from './org-domain.js';
import { failingStore, overlayStore, type AwlRecord, type GreylistStore, type StoreSnapshot, type TripletRecord } from './store.js';
import { loadWhitelists, type WhitelistHit, type Whitelists } from './whitelist.js';
import { openSqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
import { writeBehindStore, type WriteBehindOptions } from './write-behind.js';
import { openRedisStore, redact, type RedisStoreOptions } from './redis-store.js';

export interface GreylistQuery {
  readonly clientAddress: string;
  /** Forward-confirmed client name, or "unknown" (Postfix's client_name). */
  readonly clientName: string;
  /** Envelope sender without <>; "" for the null sender. */
  readonly sender: string;
  readonly recipient: string;
  /** Constant for all recipients of one message (Postfix's policy "instance"). */
  readonly instance?: string;
  /** The time of the attempt, ms since the epoch. */
  readonly now: number;
}

export type PassReason = 'client whitelist' | 'recipient whitelist' | 'client AWL' | 'triplet found' | 'organisation retry';

export type GreylistResult =
  | {
      readonly kind: 'pass';
      readonly reason: PassReason;
      /** The whitelist entry's FILE:LINE (whitelist passes). */
      readonly rule?: string;
      /** The whitelist entry as written. */
      readonly entry?: string;
      /** "X-Greylist: delayed N seconds by greygate at HOST; DATE": on a triplet's first pass, once per instance. */
      readonly header?: string;
      /** Seconds the triplet waited (on its first pass). */
      readonly delaySeconds?: number;
      /** The grouping that made an "organisation retry" pass: "rdns:DOMAIN". */
      readonly grouping?: string;
      /** The triplet that passed ("net/sender/recipient"). */
      readonly key?: string;
      /** The client's AWL count after this attempt (AWL passes and counted passes). */
      readonly awlCount?: number;
      /** This pass brought the client IP to the AWL threshold (postgrey logs "whitelisted"). */
      readonly awlWhitelisted?: boolean;
    }
  | { readonly kind: 'greylist'; readonly reason: 'new' | 'early-retry'; readonly remainingSeconds: number; readonly key: string };

export interface GreylistSettings {
  readonly delayMs: number;
  readonly maxAgeMs: number;
  readonly retryWindowMs: number;
  /** AWL threshold; 0 disables the auto-whitelist. */
  readonly awlClients: number;
  readonly ipv4Prefix: number;
  readonly ipv6Prefix: number;
  readonly orgGrouping: boolean;
  /** "at HOST" in the X-Greylist header (myhostname). */
  readonly hostname: string;
}

export interface DecideContext {
  readonly settings: GreylistSettings;
  readonly whitelists: Whitelists;
  readonly store: GreylistStore;
  /** postgrey is_new_instance(): true the first time INSTANCE is seen (undefined: always). */
  newInstance(instance: string | undefined): boolean;
  /** orgDomain() (org-domain.ts), or a memo of it. */
  orgDomain?(clientName: string, clientAddress: string): OrgDomain;
}

const HOUR_MS = 3_600_000;
const MAX_RACES = 8;

/** The outcome of postgrey's step 7-8 for one triplet. */
export interface TripletStep {
  /** "first" after the retry-window reset and the future-date correction. */
  readonly first: number;
  /** The stored triplet had already passed (last - first >= delay). */
  readonly lastWasSuccessful: boolean;
  /** now - first >= delay. */
  readonly passed: boolean;
  /** What is written back. */
  readonly record: TripletRecord;
}

/** postgrey steps 7 and 8 for one triplet (pure). */
export function nextTriplet(prev: TripletRecord | null, now: number, delayMs: number, retryWindowMs: number): TripletStep {
  let first = now;
  let lastWasSuccessful = false;
  if (prev) {
    first = prev.first;
    if (prev.last - prev.first >= delayMs) lastWasSuccessful = true;
    // The first retry after the retry window starts over.
    else if (now - first > retryWindowMs) first = now;
    if (first > now) first = now;
  }
  const passed = now - first >= delayMs;
  const passes = (first === prev?.first ? prev.passes : 0) + (passed ? 1 : 0);
  return { first, lastWasSuccessful, passed, record: { first, last: now, passes } };
}

/** How long a record may live unwritten: max_age, or retry_window while never passed. */
function tripletTtl(r: TripletRecord, s: GreylistSettings): number {
  return r.last - r.first >= s.delayMs ? s.maxAgeMs : Math.min(s.maxAgeMs, s.retryWindowMs);
}

/** A store result, or a Promise of one (stores whose data is in this process answer at once). */
type Maybe<T> = T | Promise<T>;

/** The store operations decide() runs: the store's `immediate` ones when it has them. */
interface StoreOps {
  load(ip: string | null, keys: readonly TripletKey[]): Maybe<StoreSnapshot>;
  casTriplet(key: TripletKey, expected: TripletRecord | null, next: TripletRecord, ttlMs: number): Maybe<boolean>;
  casAwl(ip: string, expected: AwlRecord | null, next: AwlRecord, ttlMs: number): Maybe<boolean>;
}

/**
 * The algorithm is written once, as a generator that yields each store operation's result
 * (a value or a Promise) and gets it back resolved: run() drives it without any promise
 * when every operation answered at once, and asynchronously from the first one that did not.
 */
type Steps<T> = Generator<unknown, T, unknown>;

function isPromise(v: unknown): v is Promise<unknown> {
  return v instanceof Promise;
}

async function runAsync<T>(g: Steps<T>, pending: Promise<unknown>): Promise<T> {
  let r: IteratorResult<unknown, T>;
  try {
    r = g.next(await pending);
  } catch (err) {
    r = g.throw(err);
  }
  while (!r.done) {
    let v: unknown;
    try {
      v = await r.value;
    } catch (err) {
      r = g.throw(err);
      continue;
    }
    r = g.next(v);
  }
  return r.value;
}

/** Drive G: its result at once, or a Promise of it; a synchronous failure is thrown. */
function run<T>(g: Steps<T>): Maybe<T> {
  let r = g.next();
  while (!r.done) {
    if (isPromise(r.value)) return runAsync(g, r.value);
    r = g.next(r.value);
  }
  return r.value;
}

/** Steps 7-8 with compare-and-set: a lost race re-reads and decides again. */
function* updateTriplet(cx: DecideContext, ops: StoreOps, key: TripletKey, prev: TripletRecord | null, now: number): Steps<TripletStep> {
  const s = cx.settings;
  let cur = prev;
  for (let i = 0; ; i++) {
    const step = nextTriplet(cur, now, s.delayMs, s.retryWindowMs);
    if ((yield ops.casTriplet(key, cur, step.record, tripletTtl(step.record, s))) as boolean) return step;
    if (i >= MAX_RACES) throw new StoreError(`greylist database ${cx.store.description}: triplet ${formatTripletKey(key)} keeps changing; giving up`);
    cur = ((yield ops.load(null, [key])) as StoreSnapshot).triplets[0] ?? null;
  }
}

/** Step 9: count a triplet's first pass for the client IP, at most once an hour. */
function* bumpAwl(cx: DecideContext, ops: StoreOps, ip: string, prev: AwlRecord | null, now: number): Steps<{ count: number; bumped: boolean }> {
  const s = cx.settings;
  let cur = prev;
  for (let i = 0; ; i++) {
    if (cur && now < cur.last + HOUR_MS) return { count: cur.count, bumped: false };
    const next = { count: (cur?.count ?? 0) + 1, last: now };
    if ((yield ops.casAwl(ip, cur, next, s.maxAgeMs)) as boolean) return { count: next.count, bumped: true };
    if (i >= MAX_RACES) throw new StoreError(`greylist database ${cx.store.description}: auto-whitelist entry ${ip} keeps changing; giving up`);
    cur = ((yield ops.load(ip, [])) as StoreSnapshot).awl;
  }
}

const pad = (n: number): string => String(n).padStart(2, '0');
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const ZONE = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' });

/** strftime("%a, %d %b %Y %T %Z", localtime), as postgrey dates its header. */
export function headerDate(ms: number): string {
  const d = new Date(ms);
  const zone = ZONE.formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? 'UTC';
  return `${DAYS[d.getDay()]}, ${pad(d.getDate())} ${MONTHS[d.getMonth()]} ${d.getFullYear()} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zone}`;
}

export function greylistHeader(delaySeconds: number, hostname: string, now: number): string {
  return `X-Greylist: delayed ${delaySeconds} seconds by greygate at ${hostname}; ${headerDate(now)}`;
}

/** The organisation triplet of an attempt, or why there is none. */
function orgTriplet(q: GreylistQuery, net: TripletKey, s: GreylistSettings, org: (name: string, address: string) => OrgDomain = orgDomain): { key: TripletKey; domain: string } | { skip: string } {
  if (!s.orgGrouping) return { skip: 'organisation grouping is off (greylist_organization_grouping = no)' };
  const o = org(q.clientName, q.clientAddress);
  if ('skip' in o) return o;
  return { key: { net: `org:${o.domain}`, sender: net.sender, recipient: net.recipient }, domain: o.domain };
}

/** postgrey's smtpd_access_policy(), plus organisation grouping (see the module header). */
export function decide(q: GreylistQuery, cx: DecideContext): Promise<GreylistResult> {
  try {
    return Promise.resolve(decideNow(q, cx));
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/** decide(), answered at once when the store answers at once; a store failure is then thrown. */
export function decideNow(q: GreylistQuery, cx: DecideContext): GreylistResult | Promise<GreylistResult> {
  return run(decideSteps(q, cx));
}

function* decideSteps(q: GreylistQuery, cx: DecideContext): Steps<GreylistResult> {
  const s = cx.settings;
  const ops: StoreOps = cx.store.immediate ?? cx.store;
  const now = q.now;
  const wc = cx.whitelists.matchClient(q.clientName, q.clientAddress);
  if (wc) return { kind: 'pass', reason: 'client whitelist', rule: wc.rule, entry: wc.entry };
  const wr = cx.whitelists.matchRecipient(q.recipient);
  if (wr) return { kind: 'pass', reason: 'recipient whitelist', rule: wr.rule, entry: wr.entry };

  const awlOn = s.awlClients > 0;
  const ip = clientIp(q.clientAddress);
  const net = tripletKey(q.clientAddress, q.sender, q.recipient, s);
  const org = orgTriplet(q, net, s, cx.orgDomain);
  const orgKey = 'key' in org ? org.key : null;
  const snap = (yield ops.load(awlOn ? ip : null, orgKey ? [net, orgKey] : [net])) as StoreSnapshot;

  const awl = snap.awl;
  if (awlOn && awl && awl.count >= s.awlClients) {
    let count = awl.count;
    if (now >= awl.last + HOUR_MS || awl.last > now) {
      // For statistics only: a lost race means another node refreshed it just now.
      if ((yield ops.casAwl(ip, awl, { count: awl.count + 1, last: now }, s.maxAgeMs)) as boolean) count++;
    }
    return { kind: 'pass', reason: 'client AWL', awlCount: count };
  }

  const n = yield* updateTriplet(cx, ops, net, snap.triplets[0] ?? null, now);
  let o: TripletStep | null = null;
  if (orgKey) {
    const prev = snap.triplets[1] ?? null;
    // A triplet that passed before decides alone; its organisation triplet, passed too, is
    // then refreshed at most once an hour (one write per lookup, not two).
    const fresh = prev !== null && prev.last - prev.first >= s.delayMs && prev.last <= now && now - prev.last < HOUR_MS;
    if (!(n.lastWasSuccessful && fresh)) o = yield* updateTriplet(cx, ops, orgKey, prev, now);
  }

  let winner: TripletStep | null = null;
  let winnerKey = net;
  if (n.passed) winner = n;
  else if (o && o.passed && orgKey) {
    winner = o;
    winnerKey = orgKey;
  }
  if (!winner) {
    const left = Math.min(s.delayMs - (now - n.first), o ? s.delayMs - (now - o.first) : Infinity);
    return { kind: 'greylist', reason: n.first === now ? 'new' : 'early-retry', remainingSeconds: Math.max(1, Math.ceil(left / 1000)), key: formatTripletKey(net) };
  }

  const firstPass = !winner.lastWasSuccessful;
  let awlCount: number | undefined;
  let awlWhitelisted = false;
  if (awlOn && firstPass) {
    const b = yield* bumpAwl(cx, ops, ip, awl, now);
    awlCount = b.count;
    awlWhitelisted = b.bumped && b.count === s.awlClients;
  }
  const delaySeconds = Math.round((now - winner.first) / 1000);
  const header = firstPass && cx.newInstance(q.instance) ? greylistHeader(delaySeconds, s.hostname, now) : undefined;
  return {
    kind: 'pass',
    reason: winner === n ? 'triplet found' : 'organisation retry',
    key: formatTripletKey(winnerKey),
    ...(winner !== n && 'domain' in org ? { grouping: `rdns:${org.domain}` } : {}),
    ...(firstPass ? { delaySeconds } : {}),
    ...(header ? { header } : {}),
    ...(awlCount !== undefined ? { awlCount } : {}),
    ...(awlWhitelisted ? { awlWhitelisted } : {}),
  };
}

/**
 * greylist_text with postgrey's substitutions: %s = seconds still to wait, %r = the
 * recipient's domain (first occurrence of each, as postgrey's s///).
 */
export function formatGreylistText(template: string, remainingSeconds: number, recipient: string): string {
  const at = recipient.lastIndexOf('@');
  return template.replace('%s', String(remainingSeconds)).replace('%r', at >= 0 ? recipient.slice(at + 1) : recipient);
}

/**
 * postgrey's log line (mylog_action): "[queue_id: ]action=..., reason=...[, delay=N],
 * client_name=..., client_address=..., sender=..., recipient=..."; empty values are left
 * out, as postgrey does. An organisation pass adds "grouping=rdns:DOMAIN".
 */
export function formatGreylistLog(q: GreylistQuery, r: GreylistResult, queueId?: string): string {
  let line = queueId ? `${queueId}: ` : '';
  if (r.kind === 'greylist') {
    line += r.reason === 'new' ? 'action=greylist, reason=new' : `action=greylist, reason=early-retry (${r.remainingSeconds}s missing)`;
  } else {
    line += `action=pass, reason=${r.reason}`;
    if (r.grouping) line += `, grouping=${r.grouping}`;
    if (r.header && r.delaySeconds !== undefined) line += `, delay=${r.delaySeconds}`;
  }
  if (q.clientName) line += `, client_name=${q.clientName}`;
  if (q.clientAddress) line += `, client_address=${q.clientAddress}`;
  if (q.sender) line += `, sender=${q.sender}`;
  if (q.recipient) line += `, recipient=${q.recipient}`;
  return line;
}

/** One triplet as `explain` shows it. */
export interface TripletView {
  readonly key: string;
  readonly record: TripletRecord | null;
  /** Seconds since first / last attempt; null for a new triplet. */
  readonly ageSeconds: number | null;
  readonly lastSeenSeconds: number | null;
  /** It has passed before (last - first >= delay). */
  readonly passed: boolean;
  /** It never passed and the retry window is over: this attempt starts over. */
  readonly startsOver: boolean;
  /** Seconds until an attempt would pass; 0 = it passes now. */
  readonly remainingSeconds: number;
}

export interface GreylistExplanation {
  /** What check() would answer now (computed without writing anything). */
  readonly result: GreylistResult;
  readonly store: string;
  readonly whitelist: WhitelistHit | null;
  /** null when the auto-whitelist is off. */
  readonly awl: { readonly ip: string; readonly count: number; readonly threshold: number; readonly lastSeenSeconds: number | null; readonly whitelisted: boolean } | null;
  readonly triplet: TripletView;
  readonly organisation: (TripletView & { readonly domain: string }) | { readonly skip: string };
  /** The same, as text lines for `greygate trace`. */
  readonly lines: readonly string[];
}

function viewOf(key: TripletKey, rec: TripletRecord | null, now: number, s: GreylistSettings): TripletView {
  const step = nextTriplet(rec, now, s.delayMs, s.retryWindowMs);
  return {
    key: formatTripletKey(key),
    record: rec,
    ageSeconds: rec ? Math.round((now - rec.first) / 1000) : null,
    lastSeenSeconds: rec ? Math.round((now - rec.last) / 1000) : null,
    passed: step.lastWasSuccessful,
    startsOver: rec !== null && !step.lastWasSuccessful && step.first !== rec.first,
    remainingSeconds: Math.max(0, Math.ceil((s.delayMs - (now - step.first)) / 1000)),
  };
}

function describeTriplet(label: string, v: TripletView): string {
  if (!v.record) return `${label} ${v.key}: new (never seen); would pass after ${v.remainingSeconds}s`;
  const seen = `first seen ${v.ageSeconds}s ago, last ${v.lastSeenSeconds}s ago, ${v.record.passes} pass(es)`;
  if (v.passed) return `${label} ${v.key}: ${seen}; passed before: passes`;
  if (v.startsOver) return `${label} ${v.key}: ${seen}; retry window over: starts over, ${v.remainingSeconds}s to wait`;
  return `${label} ${v.key}: ${seen}; ${v.remainingSeconds === 0 ? 'delay waited: passes now' : `${v.remainingSeconds}s left`}`;
}

export interface GreylistOptions {
  /** How often a cleanup sweep runs (default 1 h, as postgrey's maintenance; 0 = never). */
  readonly cleanupIntervalMs?: number;
  /** Rows examined per cleanup batch; lookups run between batches (default 500). */
  readonly cleanupBatch?: number;
  /** Told about a failed cleanup (the daemon logs it). */
  onCleanupError?(err: StoreError): void;
}

/** Client names whose organisation is remembered (a busy sender's MX pool is a few names). */
const ORG_MEMO_SIZE = 10_000;

/** The greylist of one gateway: settings, whitelists and store. */
export class Greylist {
  private instances: string[] = [];
  /** The decision context of the current settings and whitelists (rebuilt on reload). */
  private recording: DecideContext | null = null;
  /** orgDomain() by "name\0address": a public-suffix parse per lookup costs more than the rest of it. */
  private readonly orgMemo = new Map<string, OrgDomain>();
  private timer: NodeJS.Timeout | null = null;
  private cleaning: Promise<number> | null = null;
  private closed = false;

  constructor(
    private readonly store: GreylistStore,
    private settingsNow: GreylistSettings,
    private whitelistsNow: Whitelists,
    private readonly opts: GreylistOptions & { readonly readOnly?: boolean } = {},
  ) {
    const every = opts.cleanupIntervalMs ?? HOUR_MS;
    if (!opts.readOnly && every > 0) {
      this.timer = setInterval(() => void this.cleanup().catch(() => undefined), every);
      this.timer.unref();
    }
  }

  get settings(): GreylistSettings {
    return this.settingsNow;
  }

  get whitelists(): Whitelists {
    return this.whitelistsNow;
  }

  /** "sqlite:/path" or "redis://host:port/db". */
  get storeDescription(): string {
    return this.store.description;
  }

  /** The whitelist files in use (for the reload watcher). */
  files(): string[] {
    return [...this.whitelistsNow.files.clients, ...this.whitelistsNow.files.recipients];
  }

  private readonly memoOrgDomain = (name: string, address: string): OrgDomain => {
    if (name === 'unknown') return orgDomain(name, address);
    const k = `${name}\0${address}`;
    let o = this.orgMemo.get(k);
    if (o === undefined) {
      o = orgDomain(name, address);
      // A copy: the domain is a slice of the request, which the memo would keep alive.
      if ('domain' in o) o = { domain: ` ${o.domain}`.slice(1) };
      if (this.orgMemo.size >= ORG_MEMO_SIZE) this.orgMemo.clear();
      this.orgMemo.set(k, o);
    }
    return o;
  };

  private context(store: GreylistStore, record: boolean): DecideContext {
    return {
      settings: this.settingsNow,
      whitelists: this.whitelistsNow,
      store,
      orgDomain: this.memoOrgDomain,
      newInstance: (inst) => {
        if (inst === undefined || inst === '') return true;
        if (this.instances.includes(inst)) return false;
        // postgrey remembers the last 10 instances, so one message gets one header.
        if (record) {
          this.instances.unshift(inst);
          if (this.instances.length > 10) this.instances.pop();
        }
        return true;
      },
    };
  }

  /** Decide on one attempt and record it. Rejects with StoreError; never passes on failure. */
  check(q: GreylistQuery): Promise<GreylistResult> {
    try {
      return Promise.resolve(this.checkNow(q));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * check(), answered at once when the store answers at once (the SQLite write-behind
   * cache): then a failure is thrown (StoreError) rather than rejected.
   */
  checkNow(q: GreylistQuery): GreylistResult | Promise<GreylistResult> {
    if (this.closed) throw new StoreError('greylist closed');
    this.recording ??= this.context(this.store, !this.opts.readOnly);
    return decideNow(q, this.recording);
  }

  /** Why Q would pass or be greylisted now: whitelist line, AWL count, triplet age, time left. Writes nothing. */
  async explain(q: GreylistQuery): Promise<GreylistExplanation> {
    const s = this.settingsNow;
    const now = q.now;
    const whitelist = this.whitelistsNow.matchClient(q.clientName, q.clientAddress) ?? this.whitelistsNow.matchRecipient(q.recipient);
    const ip = clientIp(q.clientAddress);
    const net = tripletKey(q.clientAddress, q.sender, q.recipient, s);
    const org = orgTriplet(q, net, s, this.memoOrgDomain);
    const snap = await this.store.load(s.awlClients > 0 ? ip : null, 'key' in org ? [net, org.key] : [net]);
    const result = await decide(q, this.context(overlayStore(this.store), false));
    const a = snap.awl;
    const awl =
      s.awlClients > 0
        ? { ip, count: a?.count ?? 0, threshold: s.awlClients, lastSeenSeconds: a ? Math.round((now - a.last) / 1000) : null, whitelisted: (a?.count ?? 0) >= s.awlClients }
        : null;
    const triplet = viewOf(net, snap.triplets[0] ?? null, now, s);
    const organisation = 'key' in org ? { ...viewOf(org.key, snap.triplets[1] ?? null, now, s), domain: org.domain } : { skip: org.skip };
    const lines: string[] = [`store: ${this.store.description}; delay ${s.delayMs / 1000}s, retry window ${s.retryWindowMs / 1000}s, max age ${s.maxAgeMs / 1000}s`];
    lines.push(whitelist ? `${whitelist.list} whitelist: ${whitelist.rule}: ${whitelist.entry}` : 'whitelists: no entry matches');
    if (awl) lines.push(`auto-whitelist ${ip}: ${awl.count} of ${awl.threshold} counted passes${awl.lastSeenSeconds !== null ? `, last counted ${awl.lastSeenSeconds}s ago` : ''}${awl.whitelisted ? ': whitelisted' : ''}`);
    else lines.push('auto-whitelist: off');
    lines.push(describeTriplet('triplet', triplet));
    lines.push('domain' in organisation ? describeTriplet(`organisation ${organisation.domain}:`, organisation) : `organisation grouping: none (${organisation.skip})`);
    if (result.kind === 'greylist') lines.push(`verdict: greylist (${result.reason}), ${result.remainingSeconds}s left`);
    else lines.push(`verdict: pass (${result.reason}${result.rule ? ` ${result.rule}` : ''}${result.grouping ? `, grouping ${result.grouping}` : ''})`);
    return { result, store: this.store.description, whitelist, awl, triplet, organisation, lines };
  }

  /**
   * A view that decides as this greylist does but never writes to the store: what it would
   * write is kept in memory for the view's later checks (`greygate trace`).
   */
  readOnly(): Greylist {
    return new Greylist(overlayStore(this.store), this.settingsNow, this.whitelistsNow, { readOnly: true });
  }

  /**
   * Re-read the greylist parameters and whitelist files of CONFIG (SIGHUP). A whitelist file
   * that cannot be read keeps its previous entries. greylist_database is not reopened.
   */
  reload(config: Config): Problem[] {
    const problems: Problem[] = [];
    const settings = readSettings(config, problems);
    const { whitelists, problems: wp } = loadWhitelists(whitelistFiles(config), { resolvePath: (p) => config.resolvePath(p), previous: this.whitelistsNow });
    problems.push(...wp);
    const spec = parseDatabase(config.get('greylist_database'), config.dataDir());
    const wanted = spec.kind === 'sqlite' ? `sqlite:${spec.path}` : spec.kind === 'redis' ? redact(spec.url) : null;
    if (!this.opts.readOnly && wanted !== this.store.description) {
      problems.push({
        file: config.file,
        line: config.lineOf('greylist_database'),
        severity: 'warning',
        message: `greylist_database changed: still using ${this.store.description} until the next restart`,
      });
    }
    this.settingsNow = settings;
    this.whitelistsNow = whitelists;
    this.recording = null;
    return problems;
  }

  /**
   * One sweep of the store: expired entries are deleted batch by batch (cleanupBatch rows
   * examined per batch), yielding to lookups between batches; resolves the number deleted.
   * Runs by itself every cleanupIntervalMs.
   */
  cleanup(now?: number): Promise<number> {
    if (this.cleaning) return this.cleaning;
    const s = this.settingsNow;
    const batch = this.opts.cleanupBatch ?? 500;
    const run = async (): Promise<number> => {
      let total = 0;
      for (;;) {
        if (this.closed) return total;
        const r = await this.store.cleanup(now ?? Date.now(), { maxAgeMs: s.maxAgeMs, retryWindowMs: s.retryWindowMs }, batch);
        total += r.deleted;
        if (r.done) return total;
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    this.cleaning = run()
      .catch((err: unknown) => {
        const e = err instanceof StoreError ? err : new StoreError(`greylist cleanup: ${(err as Error).message}`, { cause: err });
        this.opts.onCleanupError?.(e);
        throw e;
      })
      .finally(() => {
        this.cleaning = null;
      });
    return this.cleaning;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.opts.readOnly) return;
    await this.cleaning?.catch(() => undefined);
    await this.store.close();
  }
}

/**
 * Every problem openGreylist() would report for CONFIG, without opening the store
 * (`greygate check`): settings, whitelist files and the greylist_database spelling.
 */
export function checkGreylistConfig(config: Config): Problem[] {
  const problems: Problem[] = [];
  readSettings(config, problems);
  problems.push(...loadWhitelists(whitelistFiles(config), { resolvePath: (p) => config.resolvePath(p) }).problems);
  const spec = parseDatabase(config.get('greylist_database'), config.dataDir());
  if (spec.kind === 'error') problems.push({ file: config.file, line: config.lineOf('greylist_database'), severity: 'error', message: spec.error });
  return problems;
}

function whitelistFiles(config: Config): { clients: string[]; recipients: string[] } {
  return { clients: config.list('greylist_whitelist_clients'), recipients: config.list('greylist_whitelist_recipients') };
}

const DEFAULTS: Omit<GreylistSettings, 'hostname'> = {
  delayMs: 300_000,
  maxAgeMs: 35 * 86_400_000,
  retryWindowMs: 2 * 86_400_000,
  awlClients: 5,
  ipv4Prefix: 24,
  ipv6Prefix: 64,
  orgGrouping: true,
};

/** The greylist_* parameters of CONFIG; a bad value is a Problem and its default is used. */
export function readSettings(config: Config, problems: Problem[]): GreylistSettings {
  const file = config.file;
  const get = <T>(name: string, read: () => T, fallback: T, check?: (v: T) => string | null): T => {
    try {
      const v = read();
      const why = check?.(v);
      if (why) {
        problems.push({ file, line: config.lineOf(name), severity: 'error', message: `bad value for ${name}: "${config.get(name)}": ${why}` });
        return fallback;
      }
      return v;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push({ file, line: config.lineOf(name), severity: 'error', message: err.detail });
      return fallback;
    }
  };
  const positive = (v: number): string | null => (v > 0 ? null : 'must be greater than zero');
  const range = (max: number) => (v: number): string | null => (v >= 0 && v <= max ? null : `must be between 0 and ${max}`);
  return {
    delayMs: get('greylist_delay', () => config.time('greylist_delay'), DEFAULTS.delayMs, positive),
    maxAgeMs: get('greylist_max_age', () => config.time('greylist_max_age'), DEFAULTS.maxAgeMs, positive),
    retryWindowMs: get('greylist_retry_window', () => config.time('greylist_retry_window'), DEFAULTS.retryWindowMs, positive),
    awlClients: get('greylist_auto_whitelist_clients', () => config.int('greylist_auto_whitelist_clients'), DEFAULTS.awlClients, range(1_000_000_000)),
    ipv4Prefix: get('greylist_ipv4_prefix', () => config.int('greylist_ipv4_prefix'), DEFAULTS.ipv4Prefix, range(32)),
    ipv6Prefix: get('greylist_ipv6_prefix', () => config.int('greylist_ipv6_prefix'), DEFAULTS.ipv6Prefix, range(128)),
    orgGrouping: config.has('greylist_organization_grouping') ? get('greylist_organization_grouping', () => config.bool('greylist_organization_grouping'), DEFAULTS.orgGrouping) : DEFAULTS.orgGrouping,
    hostname: config.get('myhostname'),
  };
}

export type DatabaseSpec = { readonly kind: 'sqlite'; readonly path: string } | { readonly kind: 'redis'; readonly url: string } | { readonly kind: 'error'; readonly error: string };

/** greylist_database: "sqlite:" (DATA_DIRECTORY/greylist.db), "sqlite:PATH" (relative to data_directory), "redis://...". */
export function parseDatabase(value: string, dataDir: string): DatabaseSpec {
  const v = value.trim();
  if (v === '' || v.toLowerCase() === 'sqlite:') return { kind: 'sqlite', path: join(dataDir, 'greylist.db') };
  if (/^sqlite:/i.test(v)) {
    const p = v.slice('sqlite:'.length);
    return { kind: 'sqlite', path: p === ':memory:' || isAbsolute(p) ? p : join(dataDir, p) };
  }
  if (/^rediss?:\/\//i.test(v)) return { kind: 'redis', url: v };
  return { kind: 'error', error: `unsupported greylist_database "${v}": expected sqlite:, sqlite:PATH or redis://HOST:PORT/DB` };
}

export interface OpenOptions extends GreylistOptions {
  /** Use this store instead of greylist_database (tests, tools). */
  readonly store?: GreylistStore;
  readonly sqlite?: SqliteStoreOptions;
  /** SQLite only: the in-memory write-behind cache (default on); false writes every lookup through. */
  readonly writeBehind?: WriteBehindOptions | false;
  readonly redis?: RedisStoreOptions;
}

/**
 * Build the Greylist of CONFIG: settings, whitelists, and the store named by
 * greylist_database. Never throws for a user's mistake: every problem is returned; a store
 * that cannot be opened is replaced by one that fails every lookup (451, never a pass); a
 * Redis that cannot be reached yet is a warning (the store keeps reconnecting).
 */
export async function openGreylist(config: Config, opts: OpenOptions = {}): Promise<{ greylist: Greylist; problems: Problem[] }> {
  const problems: Problem[] = [];
  const settings = readSettings(config, problems);
  const { whitelists, problems: wp } = loadWhitelists(whitelistFiles(config), { resolvePath: (p) => config.resolvePath(p) });
  problems.push(...wp);
  let store = opts.store;
  if (!store) {
    const param = 'greylist_database';
    const where = { file: config.file, line: config.lineOf(param) };
    const spec = parseDatabase(config.get(param), config.dataDir());
    if (spec.kind === 'error') {
      problems.push({ ...where, severity: 'error', message: spec.error });
      store = failingStore(config.get(param), spec.error);
    } else if (spec.kind === 'sqlite') {
      try {
        const sqlite = openSqliteStore(spec.path, opts.sqlite);
        store = opts.writeBehind === false ? sqlite : writeBehindStore(sqlite, opts.writeBehind ?? {});
      } catch (err) {
        const msg = (err as Error).message;
        problems.push({ ...where, severity: 'error', message: msg });
        store = failingStore(`sqlite:${spec.path}`, msg);
      }
    } else {
      const r = await openRedisStore(spec.url, opts.redis);
      if (r.error) problems.push({ ...where, severity: 'warning', message: `${r.error}; greylisting answers 451 until it is reachable` });
      store = r.store;
    }
  }
  return { greylist: new Greylist(store, settings, whitelists, opts), problems };
}
