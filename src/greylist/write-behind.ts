/**
 * @module greylist/write-behind
 * SUMMARY: an in-memory write-behind cache in front of the SQLite store. postgrey writes
 * every lookup back (every attempt refreshes "last"), and one SQLite commit per lookup is
 * what limits the policy service; here reads are served from memory after the first, and
 * writes are collected and flushed in one transaction every `flushMs` (or sooner when many
 * are pending). The compare-and-set contract holds because this process is the database's
 * only writer (a SQLite greylist is never shared between nodes; Redis is for that).
 * What a crash can lose: the last `flushMs` of updates. A lost first sighting means one
 * more greylisting round for that triplet; nothing is ever passed that should not be.
 * DIAGNOSTICS: a failed flush keeps the records pending, is reported to `onError`, and is
 * retried; close() flushes and rejects with StoreError if that last flush fails.
 * SEE ALSO: greylist/store.ts (the interface), sqlite-store.ts putMany().
 */
import { StoreError } from '../errors.js';
import type { AwlRecord, GreylistStore, StoreSnapshot, TripletKey, TripletRecord } from './store.js';
import type { SqliteStore } from './sqlite-store.js';

export interface WriteBehindOptions {
  /** Longest time a write waits in memory (default 250 ms). */
  readonly flushMs?: number;
  /** Flush at once when this many records are pending (default 2000). */
  readonly maxPending?: number;
  /** Cached records kept before the oldest clean ones are dropped (default 200,000). */
  readonly maxEntries?: number;
  onError?(err: StoreError): void;
}

const tk = (k: TripletKey): string => `${k.net}\0${k.sender}\0${k.recipient}`;

export function writeBehindStore(base: SqliteStore, opts: WriteBehindOptions = {}): GreylistStore {
  const flushMs = opts.flushMs ?? 250;
  const maxPending = opts.maxPending ?? 2000;
  const maxEntries = opts.maxEntries ?? 200_000;
  // null = known to be absent. Map order is recency: a hit is re-inserted at the end.
  const triplets = new Map<string, { key: TripletKey; rec: TripletRecord | null }>();
  const awl = new Map<string, AwlRecord | null>();
  const dirtyT = new Set<string>();
  const dirtyA = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> | null = null;
  let closed = false;

  const touch = <V>(m: Map<string, V>, k: string, v: V): void => {
    m.delete(k);
    m.set(k, v);
  };

  const evict = (): void => {
    for (const [m, dirty] of [[triplets, dirtyT], [awl, dirtyA]] as const) {
      if (m.size <= maxEntries) continue;
      for (const k of m.keys()) {
        if (m.size <= maxEntries * 0.9) break;
        if (!dirty.has(k)) m.delete(k);
      }
    }
  };

  const flush = (): Promise<void> => {
    if (flushing) return flushing;
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (dirtyT.size === 0 && dirtyA.size === 0) return Promise.resolve();
    const t: Array<readonly [TripletKey, TripletRecord]> = [];
    for (const k of dirtyT) {
      const e = triplets.get(k);
      if (e?.rec) t.push([e.key, e.rec]);
    }
    const a: Array<readonly [string, AwlRecord]> = [];
    for (const ip of dirtyA) {
      const r = awl.get(ip);
      if (r) a.push([ip, r]);
    }
    // Records written again while this flush runs stay dirty for the next one.
    const sentT = new Map(t.map(([k, r]) => [tk(k), r]));
    const sentA = new Map(a);
    flushing = base
      .putMany(t, a)
      .then(
        () => {
          for (const [k, r] of sentT) if (triplets.get(k)?.rec === r) dirtyT.delete(k);
          for (const [ip, r] of sentA) if (awl.get(ip) === r) dirtyA.delete(ip);
          evict();
        },
        (err: unknown) => {
          const e = err instanceof StoreError ? err : new StoreError(String(err), { cause: err });
          opts.onError?.(e);
          schedule();
          throw e;
        },
      )
      .finally(() => {
        flushing = null;
      });
    return flushing;
  };

  const schedule = (): void => {
    if (closed) return;
    if (dirtyT.size + dirtyA.size >= maxPending) {
      void flush().catch(() => undefined);
      return;
    }
    if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        void flush().catch(() => undefined);
      }, flushMs);
      timer.unref();
    }
  };

  const loadMissing = async (ip: string | null, keys: readonly TripletKey[]): Promise<void> => {
    const missing = keys.filter((k) => !triplets.has(tk(k)));
    const wantIp = ip !== null && !awl.has(ip) ? ip : null;
    if (missing.length === 0 && wantIp === null) return;
    const snap = await base.load(wantIp, missing);
    missing.forEach((k, i) => {
      const key = tk(k);
      // A write that landed while we were reading wins over what we read.
      if (!triplets.has(key)) triplets.set(key, { key: k, rec: snap.triplets[i] ?? null });
    });
    if (wantIp !== null && !awl.has(wantIp)) awl.set(wantIp, snap.awl);
  };

  const store: GreylistStore = {
    description: base.description,
    async load(ip, keys): Promise<StoreSnapshot> {
      if (closed) throw new StoreError(`greylist database ${base.description}: closed`);
      await loadMissing(ip, keys);
      const out: StoreSnapshot = {
        awl: ip === null ? null : (awl.get(ip) ?? null),
        triplets: keys.map((k) => {
          const key = tk(k);
          const e = triplets.get(key)!;
          touch(triplets, key, e);
          return e.rec;
        }),
      };
      return out;
    },
    async casTriplet(key, expected, next) {
      if (closed) throw new StoreError(`greylist database ${base.description}: closed`);
      await loadMissing(null, [key]);
      const k = tk(key);
      const cur = triplets.get(k)!.rec;
      if (expected === null ? cur !== null : cur === null || cur.first !== expected.first || cur.last !== expected.last) return false;
      touch(triplets, k, { key, rec: next });
      dirtyT.add(k);
      schedule();
      return true;
    },
    async casAwl(ip, expected, next) {
      if (closed) throw new StoreError(`greylist database ${base.description}: closed`);
      await loadMissing(ip, []);
      const cur = awl.get(ip) ?? null;
      if (expected === null ? cur !== null : cur === null || cur.count !== expected.count || cur.last !== expected.last) return false;
      touch(awl, ip, next);
      dirtyA.add(ip);
      schedule();
      return true;
    },
    async cleanup(now, limits, limit) {
      await flush();
      const batch = await base.cleanup(now, limits, limit);
      // Forget what the sweep may have deleted, so the cache never outlives the database.
      for (const [k, e] of triplets) {
        if (dirtyT.has(k) || !e.rec) continue;
        const age = now - e.rec.last;
        if (age > limits.maxAgeMs || (e.rec.passes === 0 && age > limits.retryWindowMs)) triplets.delete(k);
      }
      for (const [ip, r] of awl) if (r && !dirtyA.has(ip) && now - r.last > limits.maxAgeMs) awl.delete(ip);
      return batch;
    },
    async close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      try {
        await (flushing ?? Promise.resolve()).catch(() => undefined);
        await flush();
      } finally {
        await base.close();
      }
    },
  };
  return store;
}
