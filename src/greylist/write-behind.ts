/**
 * @module greylist/write-behind
 * SUMMARY: an in-memory write-behind cache in front of the SQLite store. postgrey writes
 * every lookup back (every attempt refreshes "last"), and one SQLite commit per lookup is
 * what limits the policy service; here reads are served from memory after the first, and
 * writes are collected and flushed in one transaction every `flushMs` (or soon after many
 * are pending). The compare-and-set contract holds because this process is the database's
 * only writer (a SQLite greylist is never shared between nodes; Redis is for that), which
 * also lets it keep a Bloom filter of the keys the database holds (key-filter.ts, built
 * from a scan in small batches after opening, then fed by every flush): a key the filter
 * has never seen (a new triplet, a new client IP) is absent without a database read.
 * Everything is synchronous (better-sqlite3 is): the store's `immediate` operations answer
 * at once, its promise methods wrap them.
 * What a crash can lose: the last `flushMs` of updates. A lost first sighting means one
 * more greylisting round for that triplet; nothing is ever passed that should not be.
 * DIAGNOSTICS: a failed flush keeps the records pending, is reported to `onError`, and is
 * retried after `flushMs`; close() flushes and rejects with StoreError if that last flush
 * fails. A failed key scan is reported the same way; lookups then read the database until
 * a later scan succeeds.
 * SEE ALSO: greylist/store.ts (the interface), sqlite-store.ts putManyNow().
 */
import { StoreError } from '../errors.js';
import { KeyFilter } from './key-filter.js';
import type { AwlRecord, GreylistStore, ImmediateStoreOps, StoreSnapshot, TripletKey, TripletRecord } from './store.js';
import type { SqliteStore } from './sqlite-store.js';

export interface WriteBehindOptions {
  /** Longest time a write waits in memory (default 250 ms). */
  readonly flushMs?: number;
  /** Flush as soon as possible when this many records are pending (default 2000). */
  readonly maxPending?: number;
  /** Cached records kept before the least recently used clean ones are dropped (default 200,000). */
  readonly maxEntries?: number;
  /** Keep the Bloom filter of the database's keys (default true); false reads every miss. */
  readonly keyFilter?: boolean;
  onError?(err: StoreError): void;
}

/**
 * One cached triplet; the object stays the same for as long as the key is cached. Only the
 * key's text is kept (the key object's strings are slices of the whole request, which they
 * would keep alive): the key is rebuilt from it for a flush.
 */
interface TripletEntry {
  /** "net\0sender\0recipient". */
  readonly id: string;
  /** null: known to be absent. */
  rec: TripletRecord | null;
  /** Read since the eviction hand last passed (second chance). */
  used: boolean;
}

interface AwlEntry {
  readonly id: string;
  rec: AwlRecord | null;
  used: boolean;
}

/** Keys read per step of a key scan: a few milliseconds, between which lookups run. */
const SCAN_BATCH = 2000;
/**
 * Smallest filter built (keys; 1.25 MB): a filter that fills up is rebuilt from a full key
 * scan, four times as large, so a growing database is read again only a few times.
 */
const MIN_FILTER_KEYS = 1_000_000;
/** A scan that failed is tried again after this long. */
const SCAN_RETRY_MS = 60_000;

const tk = (k: TripletKey): string => `${k.net}\0${k.sender}\0${k.recipient}`;

function keyOf(id: string): TripletKey {
  const a = id.indexOf('\0');
  const b = id.indexOf('\0', a + 1);
  return { net: id.slice(0, a), sender: id.slice(a + 1, b), recipient: id.slice(b + 1) };
}

/**
 * A copy of S that does not keep a larger string alive: attribute values are slices of the
 * request they came in, and a cached key would otherwise hold the whole request.
 */
function own(s: string): string {
  return ` ${s}`.slice(1);
}

/** Drop clean entries, oldest first, down to 90% of MAX; an entry read since the last pass gets a second chance. */
function evict<E extends { readonly id: string; used: boolean }>(m: Map<string, E>, dirty: ReadonlySet<E>, max: number): void {
  if (m.size <= max) return;
  const target = Math.floor(max * 0.9);
  let budget = 2 * m.size;
  for (const e of m.values()) {
    if (m.size <= target || budget-- <= 0) break;
    if (dirty.has(e)) continue;
    m.delete(e.id);
    if (e.used) {
      e.used = false;
      m.set(e.id, e);
    }
  }
}

/** The filters being built by a key scan, and where the scan stands. */
interface KeyScan {
  readonly t: KeyFilter;
  readonly a: KeyFilter;
  tAfter: TripletKey | null;
  aAfter: string | null;
  phase: 'triplets' | 'awl';
}

export function writeBehindStore(base: SqliteStore, opts: WriteBehindOptions = {}): GreylistStore {
  const flushMs = opts.flushMs ?? 250;
  const maxPending = opts.maxPending ?? 2000;
  const maxEntries = opts.maxEntries ?? 200_000;
  const slack = Math.max(1000, Math.floor(maxEntries / 10));
  let roomAt = maxEntries + slack;
  // Map order is insertion order; evict() keeps recently read entries by re-inserting them.
  const triplets = new Map<string, TripletEntry>();
  const awl = new Map<string, AwlEntry>();
  const dirtyT = new Set<TripletEntry>();
  const dirtyA = new Set<AwlEntry>();
  let timer: NodeJS.Timeout | null = null;
  let soon: NodeJS.Immediate | null = null;
  let failing = false;
  let closed = false;
  // Key filters: null until the first scan completes (every miss is read until then).
  let tFilter: KeyFilter | null = null;
  let aFilter: KeyFilter | null = null;
  let scan: KeyScan | null = null;
  let scanTimer: NodeJS.Timeout | null = null;
  let deletedSinceScan = 0;
  let sweepStarted = true;

  const report = (err: unknown): StoreError => {
    const e = err instanceof StoreError ? err : new StoreError(String(err), { cause: err });
    opts.onError?.(e);
    return e;
  };
  const closedError = (): StoreError => new StoreError(`greylist database ${base.description}: closed`);

  // -- key filters -----------------------------------------------------------------------
  const startScan = (): void => {
    if (opts.keyFilter === false || scan || closed) return;
    const cap = (f: KeyFilter | null): number => Math.max(MIN_FILTER_KEYS, 4 * (f?.count ?? 0));
    scan = { t: new KeyFilter(cap(tFilter)), a: new KeyFilter(cap(aFilter)), tAfter: null, aAfter: null, phase: 'triplets' };
    setImmediate(scanStep);
  };

  const scanStep = (): void => {
    const s = scan;
    if (!s || closed) return;
    try {
      if (s.phase === 'triplets') {
        const keys = base.tripletKeys(s.tAfter, SCAN_BATCH);
        for (const k of keys) s.t.add(tk(k));
        if (keys.length === SCAN_BATCH) s.tAfter = keys[keys.length - 1]!;
        else s.phase = 'awl';
      } else {
        const ips = base.awlKeys(s.aAfter, SCAN_BATCH);
        for (const ip of ips) s.a.add(ip);
        if (ips.length === SCAN_BATCH) s.aAfter = ips[ips.length - 1]!;
        else {
          tFilter = s.t;
          aFilter = s.a;
          scan = null;
          deletedSinceScan = 0;
          // The database outgrew the filter while it was read: read it again, larger.
          if (tFilter.count > tFilter.capacity || aFilter.count > aFilter.capacity) startScan();
          return;
        }
      }
    } catch (err) {
      scan = null;
      const why = err instanceof Error ? err.message : String(err);
      report(new StoreError(`${why} (reading the keys; lookups read the database until this succeeds)`, { cause: err }));
      scanTimer = setTimeout(() => {
        scanTimer = null;
        startScan();
      }, SCAN_RETRY_MS);
      scanTimer.unref();
      return;
    }
    setImmediate(scanStep);
  };

  /** Record that ID is in the database now (in the filter in use and the one being built). */
  const noteKey = (f: KeyFilter | null, building: KeyFilter | undefined, id: string): void => {
    if (f && !f.has(id)) f.add(id);
    if (building && !building.has(id)) building.add(id);
  };

  // -- the cache -------------------------------------------------------------------------
  // decide() reads a key and then writes it back with the same object: its text is built once.
  let lastKey: TripletKey | null = null;
  let lastId = '';
  let prevKey: TripletKey | null = null;
  let prevId = '';
  const idOf = (k: TripletKey): string => {
    if (k === lastKey) return lastId;
    if (k === prevKey) return prevId;
    prevKey = lastKey;
    prevId = lastId;
    lastKey = k;
    lastId = tk(k);
    return lastId;
  };

  const tripletEntry = (key: TripletKey): TripletEntry => {
    const id = idOf(key);
    let e = triplets.get(id);
    if (e) {
      e.used = true;
      return e;
    }
    const maybe = tFilter === null || tFilter.has(id);
    e = { id, rec: maybe ? (base.loadNow(null, [key]).triplets[0] ?? null) : null, used: false };
    triplets.set(id, e);
    if (triplets.size > roomAt) makeRoom();
    return e;
  };

  const awlEntry = (ip: string): AwlEntry => {
    let e = awl.get(ip);
    if (e) {
      e.used = true;
      return e;
    }
    const maybe = aFilter === null || aFilter.has(ip);
    e = { id: own(ip), rec: maybe ? base.loadNow(ip, []).awl : null, used: false };
    awl.set(e.id, e);
    if (awl.size > roomAt) makeRoom();
    return e;
  };

  /**
   * The cache is over its size: dirty entries cannot go, so when they are what fills it
   * (writes faster than the flushes, or an event loop that never turned) they are written now.
   */
  const makeRoom = (): void => {
    if (dirtyT.size + dirtyA.size > slack && !failing) flush();
    evict(triplets, dirtyT, maxEntries);
    evict(awl, dirtyA, maxEntries);
    // While the database cannot be written, dirty entries pile up: look again only after
    // another `slack` of them, not at every new key.
    roomAt = Math.max(maxEntries, triplets.size, awl.size) + slack;
  };

  /** Write every pending record in one transaction; the error (reported) when that failed. */
  const flush = (): StoreError | null => {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (soon) {
      clearImmediate(soon);
      soon = null;
    }
    if (dirtyT.size === 0 && dirtyA.size === 0) return null;
    const t: Array<readonly [TripletKey, TripletRecord]> = [];
    for (const e of dirtyT) if (e.rec) t.push([keyOf(e.id), e.rec]);
    const a: Array<readonly [string, AwlRecord]> = [];
    for (const e of dirtyA) if (e.rec) a.push([e.id, e.rec]);
    try {
      base.putManyNow(t, a);
    } catch (err) {
      failing = true;
      const e = report(err);
      schedule();
      return e;
    }
    failing = false;
    // These keys are in the database now: the filters must say so before the entries can go.
    for (const e of dirtyT) noteKey(tFilter, scan?.t, e.id);
    for (const e of dirtyA) noteKey(aFilter, scan?.a, e.id);
    dirtyT.clear();
    dirtyA.clear();
    evict(triplets, dirtyT, maxEntries);
    evict(awl, dirtyA, maxEntries);
    roomAt = maxEntries + slack;
    if ((tFilter && tFilter.count > tFilter.capacity) || (aFilter && aFilter.count > aFilter.capacity)) startScan();
    return null;
  };

  const schedule = (): void => {
    if (closed) return;
    // Many pending: flush right after this lookup is answered, not in the middle of it.
    if (!failing && dirtyT.size + dirtyA.size >= maxPending) {
      soon ??= setImmediate(() => {
        soon = null;
        flush();
      });
      return;
    }
    if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        flush();
      }, flushMs);
      timer.unref();
    }
  };

  const immediate: ImmediateStoreOps = {
    load(ip, keys): StoreSnapshot {
      if (closed) throw closedError();
      const a = ip === null ? null : awlEntry(ip).rec;
      const t = keys.length === 1 ? [tripletEntry(keys[0]!).rec] : keys.map((k) => tripletEntry(k).rec);
      return { awl: a, triplets: t };
    },
    casTriplet(key, expected, next): boolean {
      if (closed) throw closedError();
      const e = tripletEntry(key);
      const cur = e.rec;
      if (expected === null ? cur !== null : cur === null || cur.first !== expected.first || cur.last !== expected.last) return false;
      e.rec = next;
      dirtyT.add(e);
      schedule();
      return true;
    },
    casAwl(ip, expected, next): boolean {
      if (closed) throw closedError();
      const e = awlEntry(ip);
      const cur = e.rec;
      if (expected === null ? cur !== null : cur === null || cur.count !== expected.count || cur.last !== expected.last) return false;
      e.rec = next;
      dirtyA.add(e);
      schedule();
      return true;
    },
  };

  /** FN's result as a promise: a thrown StoreError becomes a rejection. */
  const settle = <T>(fn: () => T): Promise<T> => {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(err as Error);
    }
  };

  /** Forget cached records the sweep deletes (or has deleted), so the cache never outlives the database. */
  const forgetExpired = (now: number, maxAgeMs: number, retryWindowMs: number): void => {
    for (const e of triplets.values()) {
      if (!e.rec || dirtyT.has(e)) continue;
      const age = now - e.rec.last;
      if (age > maxAgeMs || (e.rec.passes === 0 && age > retryWindowMs)) triplets.delete(e.id);
    }
    for (const e of awl.values()) if (e.rec && !dirtyA.has(e) && now - e.rec.last > maxAgeMs) awl.delete(e.id);
  };

  startScan();

  return {
    description: base.description,
    immediate,
    load: (ip, keys) => settle(() => immediate.load(ip, keys)),
    casTriplet: (key, expected, next, ttlMs) => settle(() => immediate.casTriplet(key, expected, next, ttlMs)),
    casAwl: (ip, expected, next, ttlMs) => settle(() => immediate.casAwl(ip, expected, next, ttlMs)),
    async cleanup(now, limits, limit) {
      const failed = flush();
      if (failed) throw failed;
      // A sweep deletes by the same rule at each batch's time, never earlier: forgetting
      // at its start and at its end keeps the cache from serving a deleted record for
      // longer than the database itself would have kept it.
      if (sweepStarted) forgetExpired(now, limits.maxAgeMs, limits.retryWindowMs);
      const batch = await base.cleanup(now, limits, limit);
      sweepStarted = batch.done;
      deletedSinceScan += batch.deleted;
      if (batch.done) {
        forgetExpired(now, limits.maxAgeMs, limits.retryWindowMs);
        // Deleted keys stay in the filter (a database read each): rebuild it when many went.
        if (tFilter && deletedSinceScan > tFilter.count / 4) startScan();
      }
      return batch;
    },
    async close() {
      if (closed) return;
      if (scanTimer) clearTimeout(scanTimer);
      scan = null;
      try {
        const failed = flush();
        if (failed) throw failed;
      } finally {
        closed = true;
        if (timer) clearTimeout(timer);
        if (soon) clearImmediate(soon);
        await base.close();
      }
    },
  };
}
