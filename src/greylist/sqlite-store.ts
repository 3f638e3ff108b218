/**
 * @module greylist/sqlite-store
 * SUMMARY: the default greylist store: one SQLite file (better-sqlite3, WAL, synchronous =
 * NORMAL) with structured columns, so reports and ad-hoc SQL read it directly:
 *   triplets(client_net, sender, recipient, first, last, passes)  PRIMARY KEY (net, sender, rcpt)
 *   awl(ip, count, last)                                            PRIMARY KEY (ip)
 * Times are milliseconds since the epoch. cleanup() sweeps each table in primary-key order in
 * small batches (LIMIT rows after a cursor), deleting the expired rows of each batch, so
 * lookups interleave between batches and no statement ever scans a table; there is no index
 * on `last`, which every lookup rewrites. openSqliteStore(path) creates the file (and its
 * directory); ":memory:" gives a private in-memory database. better-sqlite3 is synchronous:
 * the *Now methods (used by the write-behind cache) return the result or throw StoreError;
 * the GreylistStore methods wrap them in promises. tripletKeys()/awlKeys() page through the
 * keys in primary-key order (the write-behind cache's key filter is built from them).
 * DIAGNOSTICS: any SQLite failure (busy past the busy timeout, I/O error, corrupt file)
 * rejects with StoreError naming the file.
 * SEE ALSO: greylist/store.ts; sqlite.org/wal.html; postgrey(8) maintenance.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../errors.js';
import type { AwlRecord, CleanupBatch, CleanupLimits, GreylistStore, StoreSnapshot, TripletKey, TripletRecord } from './store.js';

const SCHEMA_VERSION = '1';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS triplets (
  client_net TEXT NOT NULL,
  sender TEXT NOT NULL,
  recipient TEXT NOT NULL,
  first INTEGER NOT NULL,
  last INTEGER NOT NULL,
  passes INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (client_net, sender, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS awl (
  ip TEXT PRIMARY KEY,
  count INTEGER NOT NULL,
  last INTEGER NOT NULL
) WITHOUT ROWID;
`;

/**
 * The cleanup statements: each batch reads the next LIMIT rows in primary-key order after a
 * cursor (an index range, never a table scan) and deletes the expired ones among them; a
 * sweep is a series of such batches over the whole table. There is deliberately no index on
 * `last`: every lookup rewrites `last`, and such an index would cost each write several times
 * over (test/greylist/sqlite-store.test.ts checks the plans).
 */
export const CLEANUP_SQL = {
  tripletsFirst: 'SELECT client_net, sender, recipient, first, last, passes FROM triplets ORDER BY client_net, sender, recipient LIMIT ?',
  tripletsAfter:
    'SELECT client_net, sender, recipient, first, last, passes FROM triplets WHERE (client_net, sender, recipient) > (?, ?, ?) ORDER BY client_net, sender, recipient LIMIT ?',
  deleteTriplet: 'DELETE FROM triplets WHERE client_net = ? AND sender = ? AND recipient = ? AND last = ?',
  awlFirst: 'SELECT ip, count, last FROM awl ORDER BY ip LIMIT ?',
  awlAfter: 'SELECT ip, count, last FROM awl WHERE ip > ? ORDER BY ip LIMIT ?',
  deleteAwl: 'DELETE FROM awl WHERE ip = ? AND last = ?',
} as const;

interface TripletRow {
  client_net: string;
  sender: string;
  recipient: string;
  first: number;
  last: number;
  passes: number;
}

interface Row {
  first: number;
  last: number;
  passes: number;
}

export interface SqliteStoreOptions {
  /** How long a write waits for another process's lock before failing (default 5000 ms). */
  readonly busyTimeoutMs?: number;
}

export class SqliteStore implements GreylistStore {
  readonly description: string;
  private readonly db: Database.Database;
  private readonly getTriplet: Database.Statement<[string, string, string], Row>;
  private readonly getAwl: Database.Statement<[string], { count: number; last: number }>;
  private readonly insTriplet: Database.Statement<[string, string, string, number, number, number]>;
  private readonly updTriplet: Database.Statement<[number, number, number, string, string, string, number, number]>;
  private readonly insAwl: Database.Statement<[string, number, number]>;
  private readonly updAwl: Database.Statement<[number, number, string, number, number]>;
  private readonly sel: { tf: Database.Statement<[number], TripletRow>; ta: Database.Statement<[string, string, string, number], TripletRow>; af: Database.Statement<[number], { ip: string; last: number }>; aa: Database.Statement<[string, number], { ip: string; last: number }> };
  private readonly delete: (triplets: readonly TripletRow[], awl: ReadonlyArray<{ ip: string; last: number }>) => void;
  private readonly keysT: { first: Database.Statement<[number], TripletKey>; after: Database.Statement<[string, string, string, number], TripletKey> };
  private readonly keysA: { first: Database.Statement<[number], { ip: string }>; after: Database.Statement<[string, number], { ip: string }> };
  private readonly upsert: (triplets: ReadonlyArray<readonly [TripletKey, TripletRecord]>, awl: ReadonlyArray<readonly [string, AwlRecord]>) => void;
  /** Where the cleanup sweep stands: the table, and the last key examined. */
  private sweep: { table: 'triplets'; after: TripletRow | null } | { table: 'awl'; after: string | null } = { table: 'triplets', after: null };
  private closed = false;

  constructor(readonly path: string, opts: SqliteStoreOptions = {}) {
    this.description = `sqlite:${path}`;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      this.db = new Database(path, { timeout: opts.busyTimeoutMs ?? 5000 });
      this.db.pragma('journal_mode = WAL');
      // Greylist state may lose the last writes on a power failure: no fsync per lookup.
      this.db.pragma('synchronous = NORMAL');
      this.db.exec(SCHEMA);
      this.db.prepare('INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)').run('schema_version', SCHEMA_VERSION);
      this.getTriplet = this.db.prepare('SELECT first, last, passes FROM triplets WHERE client_net = ? AND sender = ? AND recipient = ?');
      this.getAwl = this.db.prepare('SELECT count, last FROM awl WHERE ip = ?');
      this.insTriplet = this.db.prepare('INSERT INTO triplets (client_net, sender, recipient, first, last, passes) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
      this.updTriplet = this.db.prepare(
        'UPDATE triplets SET first = ?, last = ?, passes = ? WHERE client_net = ? AND sender = ? AND recipient = ? AND first = ? AND last = ?',
      );
      this.insAwl = this.db.prepare('INSERT INTO awl (ip, count, last) VALUES (?, ?, ?) ON CONFLICT DO NOTHING');
      this.updAwl = this.db.prepare('UPDATE awl SET count = ?, last = ? WHERE ip = ? AND count = ? AND last = ?');
      this.sel = {
        tf: this.db.prepare(CLEANUP_SQL.tripletsFirst),
        ta: this.db.prepare(CLEANUP_SQL.tripletsAfter),
        af: this.db.prepare(CLEANUP_SQL.awlFirst),
        aa: this.db.prepare(CLEANUP_SQL.awlAfter),
      };
      this.keysT = {
        first: this.db.prepare('SELECT client_net AS net, sender, recipient FROM triplets ORDER BY client_net, sender, recipient LIMIT ?'),
        after: this.db.prepare(
          'SELECT client_net AS net, sender, recipient FROM triplets WHERE (client_net, sender, recipient) > (?, ?, ?) ORDER BY client_net, sender, recipient LIMIT ?',
        ),
      };
      this.keysA = { first: this.db.prepare('SELECT ip FROM awl ORDER BY ip LIMIT ?'), after: this.db.prepare('SELECT ip FROM awl WHERE ip > ? ORDER BY ip LIMIT ?') };
      const delT = this.db.prepare<[string, string, string, number]>(CLEANUP_SQL.deleteTriplet);
      const delA = this.db.prepare<[string, number]>(CLEANUP_SQL.deleteAwl);
      // `last` is compared too: a row written since it was read is not deleted.
      this.delete = this.db.transaction((triplets: readonly TripletRow[], awl: ReadonlyArray<{ ip: string; last: number }>) => {
        for (const r of triplets) delT.run(r.client_net, r.sender, r.recipient, r.last);
        for (const r of awl) delA.run(r.ip, r.last);
      });
      const putT = this.db.prepare<[string, string, string, number, number, number]>(
        'INSERT INTO triplets (client_net, sender, recipient, first, last, passes) VALUES (?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (client_net, sender, recipient) DO UPDATE SET first = excluded.first, last = excluded.last, passes = excluded.passes',
      );
      const putA = this.db.prepare<[string, number, number]>(
        'INSERT INTO awl (ip, count, last) VALUES (?, ?, ?) ON CONFLICT (ip) DO UPDATE SET count = excluded.count, last = excluded.last',
      );
      this.upsert = this.db.transaction((triplets: ReadonlyArray<readonly [TripletKey, TripletRecord]>, awl: ReadonlyArray<readonly [string, AwlRecord]>) => {
        for (const [k, r] of triplets) putT.run(k.net, k.sender, k.recipient, r.first, r.last, r.passes);
        for (const [ip, r] of awl) putA.run(ip, r.count, r.last);
      });
    } catch (err) {
      throw this.fail('cannot open', err);
    }
  }

  /**
   * Write these records as they are, in one transaction (the write-behind cache's flush; it
   * is the only writer of this database, so no compare is needed).
   */
  putMany(triplets: ReadonlyArray<readonly [TripletKey, TripletRecord]>, awl: ReadonlyArray<readonly [string, AwlRecord]>): Promise<void> {
    return this.guard('write', () => this.upsert(triplets, awl));
  }

  /** putMany(), done before returning; throws StoreError. */
  putManyNow(triplets: ReadonlyArray<readonly [TripletKey, TripletRecord]>, awl: ReadonlyArray<readonly [string, AwlRecord]>): void {
    this.attempt('write', () => this.upsert(triplets, awl));
  }

  /** Up to LIMIT triplet keys after AFTER (null: from the start), in primary-key order; throws StoreError. */
  tripletKeys(after: TripletKey | null, limit: number): TripletKey[] {
    return this.attempt('read', () => (after ? this.keysT.after.all(after.net, after.sender, after.recipient, limit) : this.keysT.first.all(limit)));
  }

  /** Up to LIMIT auto-whitelist IPs after AFTER (null: from the start), in order; throws StoreError. */
  awlKeys(after: string | null, limit: number): string[] {
    return this.attempt('read', () => (after !== null ? this.keysA.after.all(after, limit) : this.keysA.first.all(limit)).map((r) => r.ip));
  }

  private fail(what: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    return new StoreError(`greylist database ${this.path}: ${what}: ${(err as Error).message}`, { cause: err });
  }

  private guard<T>(what: string, fn: () => T): Promise<T> {
    try {
      return Promise.resolve(this.attempt(what, fn));
    } catch (err) {
      return Promise.reject(err as StoreError);
    }
  }

  private attempt<T>(what: string, fn: () => T): T {
    if (this.closed) throw new StoreError(`greylist database ${this.path}: closed`);
    try {
      return fn();
    } catch (err) {
      throw this.fail(what, err);
    }
  }

  load(ip: string | null, keys: readonly TripletKey[]): Promise<StoreSnapshot> {
    return this.guard('read', () => this.loadNow(ip, keys));
  }

  /** load(), answered at once; throws StoreError. */
  loadNow(ip: string | null, keys: readonly TripletKey[]): StoreSnapshot {
    return this.attempt('read', () => {
      const a = ip === null ? undefined : this.getAwl.get(ip);
      const triplets = keys.map((k) => {
        const r = this.getTriplet.get(k.net, k.sender, k.recipient);
        return r ? { first: r.first, last: r.last, passes: r.passes } : null;
      });
      return { awl: a ? { count: a.count, last: a.last } : null, triplets };
    });
  }

  casTriplet(key: TripletKey, expected: TripletRecord | null, next: TripletRecord): Promise<boolean> {
    return this.guard('write', () => {
      const r =
        expected === null
          ? this.insTriplet.run(key.net, key.sender, key.recipient, next.first, next.last, next.passes)
          : this.updTriplet.run(next.first, next.last, next.passes, key.net, key.sender, key.recipient, expected.first, expected.last);
      return r.changes === 1;
    });
  }

  casAwl(ip: string, expected: AwlRecord | null, next: AwlRecord): Promise<boolean> {
    return this.guard('write', () => {
      const r = expected === null ? this.insAwl.run(ip, next.count, next.last) : this.updAwl.run(next.count, next.last, ip, expected.count, expected.last);
      return r.changes === 1;
    });
  }

  cleanup(now: number, limits: CleanupLimits, limit: number): Promise<CleanupBatch> {
    return this.guard('cleanup', () => {
      const oldCut = now - limits.maxAgeMs;
      const unpassedCut = now - limits.retryWindowMs;
      let budget = Math.max(1, limit);
      let deleted = 0;
      if (this.sweep.table === 'triplets') {
        const after = this.sweep.after;
        const rows = after ? this.sel.ta.all(after.client_net, after.sender, after.recipient, budget) : this.sel.tf.all(budget);
        const dead = rows.filter((r) => r.last < oldCut || (r.passes === 0 && r.last < unpassedCut));
        if (dead.length) this.delete(dead, []);
        deleted += dead.length;
        if (rows.length === budget) {
          this.sweep = { table: 'triplets', after: rows[rows.length - 1]! };
          return { deleted, done: false };
        }
        budget -= rows.length;
        this.sweep = { table: 'awl', after: null };
        if (budget === 0) return { deleted, done: false };
      }
      const after = this.sweep.after as string | null;
      const rows = after !== null ? this.sel.aa.all(after, budget) : this.sel.af.all(budget);
      const dead = rows.filter((r) => r.last < oldCut);
      if (dead.length) this.delete([], dead);
      deleted += dead.length;
      if (rows.length === budget) {
        this.sweep = { table: 'awl', after: rows[rows.length - 1]!.ip };
        return { deleted, done: false };
      }
      this.sweep = { table: 'triplets', after: null };
      return { deleted, done: true };
    });
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      try {
        this.db.close();
      } catch (err) {
        return Promise.reject(this.fail('close', err));
      }
    }
    return Promise.resolve();
  }
}

/** Open (creating) the SQLite store at PATH; throws StoreError. */
export function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): SqliteStore {
  return new SqliteStore(path, opts);
}
