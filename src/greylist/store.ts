/**
 * @module greylist/store
 * SUMMARY: GreylistStore, the storage interface every greylist backend implements
 * (sqlite-store.ts, redis-store.ts), and the records it keeps: triplets {first, last,
 * passes} keyed by (client net, sender, recipient), and auto-whitelist entries {count, last}
 * keyed by the full client IP. Stores are dumb and atomic: load() reads, casTriplet() and
 * casAwl() write a record only if it still holds what the caller read (compare-and-set), so
 * greylist.ts's decide() keeps all of postgrey's logic in one place and several gateway
 * nodes sharing one store agree (a lost race is re-read and decided again).
 * Times are milliseconds since the epoch. `ttlMs` is how long a record may live without
 * being written again (a store with expiring keys uses it; SQLite uses cleanup()).
 * A store whose records are in this process (the write-behind cache) also offers the same
 * operations answered at once (`immediate`), so that a lookup needs no promise at all.
 * Also here: failingStore() (stands in for a store that could not be opened: every lookup
 * fails) and overlayStore() (a read-only view whose writes stay in memory, for `explain`
 * and `greygate trace`).
 * DIAGNOSTICS: every method rejects with StoreError when the backend fails; a failure is
 * never a miss.
 * SEE ALSO: greylist/greylist.ts decide(); test/greylist/store.case.ts (the conformance
 * suite every store passes).
 */
import { StoreError } from '../errors.js';
import type { TripletKey } from './triplet.js';

export type { TripletKey } from './triplet.js';

export interface TripletRecord {
  /** First attempt of the current greylisting round (postgrey "first"). */
  readonly first: number;
  /** Last attempt, greylisted or not (postgrey "last"). */
  readonly last: number;
  /** Attempts that passed because this triplet had waited the delay. 0 = never passed. */
  readonly passes: number;
}

export interface AwlRecord {
  /** Distinct triplets that passed from this IP, bumped at most once an hour. */
  readonly count: number;
  readonly last: number;
}

export interface StoreSnapshot {
  /** null: no entry (or no IP was asked for). */
  readonly awl: AwlRecord | null;
  /** One per key asked for, in order. */
  readonly triplets: ReadonlyArray<TripletRecord | null>;
}

export interface CleanupLimits {
  /** greylist_max_age: entries not seen for this long go. */
  readonly maxAgeMs: number;
  /** greylist_retry_window: never-passed triplets not seen for this long go. */
  readonly retryWindowMs: number;
}

export interface CleanupBatch {
  readonly deleted: number;
  readonly done: boolean;
}

export interface GreylistStore {
  /** "sqlite:/path/greylist.db", "redis://host:port/db": for logs and `explain`. */
  readonly description: string;
  /** Read the AWL entry of IP (when not null) and every triplet in KEYS, in one go. */
  load(ip: string | null, keys: readonly TripletKey[]): Promise<StoreSnapshot>;
  /**
   * Write NEXT for KEY if the stored record still has EXPECTED's first and last (EXPECTED
   * null: only if there is none). Resolves false when someone else wrote first.
   */
  casTriplet(key: TripletKey, expected: TripletRecord | null, next: TripletRecord, ttlMs: number): Promise<boolean>;
  /** The same for the auto-whitelist entry of IP (count and last compared). */
  casAwl(ip: string, expected: AwlRecord | null, next: AwlRecord, ttlMs: number): Promise<boolean>;
  /**
   * One batch of the cleanup sweep: examine at most LIMIT entries after where the previous
   * batch stopped and delete the expired ones (triplets not seen for maxAge, never-passed
   * triplets not seen for retryWindow, AWL entries not seen for maxAge). `done` is true when
   * the batch finished a sweep of the whole store (the next batch starts a new one). Stores
   * whose keys expire by themselves answer { deleted: 0, done: true }.
   */
  cleanup(now: number, limits: CleanupLimits, limit: number): Promise<CleanupBatch>;
  close(): Promise<void>;
  /** load/casTriplet/casAwl answered synchronously, when the store can (same contract). */
  readonly immediate?: ImmediateStoreOps;
}

/**
 * The lookup operations of a GreylistStore, answered synchronously: the result, or a thrown
 * StoreError. Same semantics as the store's own methods, on the same records.
 */
export interface ImmediateStoreOps {
  load(ip: string | null, keys: readonly TripletKey[]): StoreSnapshot;
  casTriplet(key: TripletKey, expected: TripletRecord | null, next: TripletRecord, ttlMs: number): boolean;
  casAwl(ip: string, expected: AwlRecord | null, next: AwlRecord, ttlMs: number): boolean;
}

/**
 * A store that could not be opened (bad greylist_database, unwritable file): every
 * operation fails with REASON, so greylisting answers 451 and never passes.
 */
export function failingStore(description: string, reason: string): GreylistStore {
  const fail = (): Promise<never> => Promise.reject(new StoreError(`greylist database ${description}: ${reason}`));
  return { description, load: fail, casTriplet: fail, casAwl: fail, cleanup: fail, close: () => Promise.resolve() };
}

/**
 * A read-only view of BASE for `explain` and `greygate trace`: reads go to BASE, writes are
 * kept in memory only (later reads of this view see them), BASE is never written.
 */
export function overlayStore(base: GreylistStore): GreylistStore {
  const triplets = new Map<string, TripletRecord>();
  const awl = new Map<string, AwlRecord>();
  const tk = (k: TripletKey): string => `${k.net}\0${k.sender}\0${k.recipient}`;
  return {
    description: `${base.description} (read-only)`,
    async load(ip, keys) {
      const missing = keys.filter((k) => !triplets.has(tk(k)));
      const wantIp = ip !== null && !awl.has(ip) ? ip : null;
      const snap = missing.length || wantIp !== null ? await base.load(wantIp, missing) : { awl: null, triplets: [] };
      let j = 0;
      return {
        awl: ip === null ? null : (awl.get(ip) ?? snap.awl),
        triplets: keys.map((k) => triplets.get(tk(k)) ?? snap.triplets[j++] ?? null),
      };
    },
    async casTriplet(key, expected, next) {
      const cur = triplets.get(tk(key)) ?? (await base.load(null, [key])).triplets[0] ?? null;
      if (expected === null ? cur !== null : cur === null || cur.first !== expected.first || cur.last !== expected.last) return false;
      triplets.set(tk(key), next);
      return true;
    },
    async casAwl(ip, expected, next) {
      const cur = awl.get(ip) ?? (await base.load(ip, [])).awl;
      if (expected === null ? cur !== null : cur === null || cur.count !== expected.count || cur.last !== expected.last) return false;
      awl.set(ip, next);
      return true;
    },
    cleanup: () => Promise.resolve({ deleted: 0, done: true }),
    close: () => Promise.resolve(),
  };
}
