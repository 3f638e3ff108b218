/**
 * The conformance suite every GreylistStore passes (hono's common.case.test.ts style):
 * sqlite-store.test.ts and redis-store.test.ts call runStoreConformance() with a factory
 * of fresh, empty stores. Expiry is checked with short real intervals (no fake clock):
 * stores whose keys expire by themselves (Redis TTL) and stores that need cleanup() (SQLite)
 * must end up in the same state.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { StoreError } from '../../src/errors.js';
import type { GreylistStore, TripletKey } from '../../src/greylist/store.js';

export interface StoreFactory {
  readonly name: string;
  /** A fresh, empty store. */
  open(): Promise<GreylistStore>;
  /** Records expire by their TTL (cleanup() has nothing to do). */
  readonly expiresByItself: boolean;
  /** Why the suite is skipped (a reason, never silent). */
  readonly skip?: string;
}

const K = (net: string, sender = 's@example.org', recipient = 'r@example.net'): TripletKey => ({ net, sender, recipient });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function runStoreConformance(f: StoreFactory): void {
  describe(`GreylistStore conformance: ${f.name}`, { skip: f.skip ?? false }, () => {
    const opened: GreylistStore[] = [];
    const fresh = async (): Promise<GreylistStore> => {
      const s = await f.open();
      opened.push(s);
      return s;
    };
    after(async () => {
      for (const s of opened) await s.close().catch(() => undefined);
    });

    it('an empty store has no AWL entry and no triplets', async () => {
      const s = await fresh();
      const snap = await s.load('192.0.2.1', [K('192.0.2.0')]);
      assert.equal(snap.awl, null);
      assert.deepEqual(snap.triplets, [null]);
      assert.deepEqual((await s.load(null, [])).triplets, []);
    });

    it('insert-if-absent: the first wins, a second insert is refused', async () => {
      const s = await fresh();
      assert.equal(await s.casTriplet(K('192.0.2.0'), null, { first: 1000, last: 1000, passes: 0 }, 60_000), true);
      assert.equal(await s.casTriplet(K('192.0.2.0'), null, { first: 2000, last: 2000, passes: 0 }, 60_000), false);
      assert.deepEqual((await s.load(null, [K('192.0.2.0')])).triplets, [{ first: 1000, last: 1000, passes: 0 }]);
    });

    it('compare-and-set updates only from the record read', async () => {
      const s = await fresh();
      const k = K('192.0.2.0');
      await s.casTriplet(k, null, { first: 1000, last: 1000, passes: 0 }, 60_000);
      assert.equal(await s.casTriplet(k, { first: 1000, last: 1000, passes: 0 }, { first: 1000, last: 400_000, passes: 1 }, 60_000), true);
      // Stale: last has moved on.
      assert.equal(await s.casTriplet(k, { first: 1000, last: 1000, passes: 0 }, { first: 1000, last: 500_000, passes: 2 }, 60_000), false);
      assert.deepEqual((await s.load(null, [k])).triplets[0], { first: 1000, last: 400_000, passes: 1 });
      // Absent record and a non-null expectation: refused.
      assert.equal(await s.casTriplet(K('198.51.100.0'), { first: 1, last: 1, passes: 0 }, { first: 2, last: 2, passes: 0 }, 60_000), false);
    });

    it('keys are structured: net, sender and recipient each matter; odd characters are kept', async () => {
      const s = await fresh();
      const keys = [
        K('192.0.2.0'),
        K('192.0.2.0', 'other@example.org'),
        K('192.0.2.0', 's@example.org', 'other@example.net'),
        K('2001:db8:1:2::'),
        K('org:example.com'),
        K('192.0.2.0', ''),
        K('198.51.100.0', 'a/b:c@x', 'ü@example.net'),
      ];
      for (let i = 0; i < keys.length; i++) assert.equal(await s.casTriplet(keys[i]!, null, { first: i, last: i + 1, passes: i }, 60_000), true);
      const snap = await s.load(null, [...keys, K('203.0.113.0')]);
      assert.deepEqual(
        snap.triplets,
        [...keys.map((_, i) => ({ first: i, last: i + 1, passes: i })), null],
      );
    });

    it('the auto-whitelist is keyed by IP, with compare-and-set on count and last', async () => {
      const s = await fresh();
      assert.equal(await s.casAwl('192.0.2.1', null, { count: 1, last: 1000 }, 60_000), true);
      assert.equal(await s.casAwl('192.0.2.1', null, { count: 1, last: 2000 }, 60_000), false);
      assert.equal(await s.casAwl('192.0.2.1', { count: 1, last: 1000 }, { count: 2, last: 3_700_000 }, 60_000), true);
      assert.equal(await s.casAwl('192.0.2.1', { count: 1, last: 1000 }, { count: 3, last: 9_000_000 }, 60_000), false);
      assert.deepEqual((await s.load('192.0.2.1', [])).awl, { count: 2, last: 3_700_000 });
      assert.equal((await s.load('192.0.2.2', [])).awl, null);
      assert.equal(await s.casAwl('2001:db8::1', null, { count: 5, last: 7 }, 60_000), true);
      const snap = await s.load('2001:db8::1', [K('192.0.2.0')]);
      assert.deepEqual(snap, { awl: { count: 5, last: 7 }, triplets: [null] });
    });

    it('of concurrent writers from the same record, exactly one wins', async () => {
      const s = await fresh();
      const k = K('192.0.2.0');
      await s.casTriplet(k, null, { first: 1000, last: 1000, passes: 0 }, 60_000);
      const base = { first: 1000, last: 1000, passes: 0 };
      const wins = await Promise.all(Array.from({ length: 20 }, (_, i) => s.casTriplet(k, base, { first: 1000, last: 2000 + i, passes: 1 }, 60_000)));
      assert.equal(wins.filter(Boolean).length, 1);
      const inserts = await Promise.all(Array.from({ length: 20 }, (_, i) => s.casAwl('192.0.2.9', null, { count: 1, last: i }, 60_000)));
      assert.equal(inserts.filter(Boolean).length, 1);
    });

    it('expiry: never-passed triplets after the retry window, others and AWL after max age', async () => {
      const s = await fresh();
      const limits = { maxAgeMs: 1500, retryWindowMs: 300 };
      const t = Date.now();
      // Callers give the TTL decide() would: max age once passed, the retry window before.
      await s.casTriplet(K('192.0.2.0'), null, { first: t - 10_000, last: t, passes: 1 }, limits.maxAgeMs);
      await s.casTriplet(K('198.51.100.0'), null, { first: t, last: t, passes: 0 }, limits.retryWindowMs);
      await s.casAwl('192.0.2.1', null, { count: 1, last: t }, limits.maxAgeMs);
      const sweep = async (): Promise<void> => {
        while (!(await s.cleanup(Date.now(), limits, 100)).done);
      };
      await sleep(700);
      await sweep();
      let snap = await s.load('192.0.2.1', [K('192.0.2.0'), K('198.51.100.0')]);
      assert.notEqual(snap.triplets[0], null, 'a passed triplet lives for max age');
      assert.equal(snap.triplets[1], null, 'a never-passed triplet goes after the retry window');
      assert.notEqual(snap.awl, null);
      await sleep(1200);
      await sweep();
      snap = await s.load('192.0.2.1', [K('192.0.2.0')]);
      assert.deepEqual(snap, { awl: null, triplets: [null] });
    });

    it('cleanup sweeps in bounded batches', { skip: f.expiresByItself ? 'keys expire by their TTL; cleanup() has nothing to do' : false }, async () => {
      const s = await fresh();
      for (let i = 0; i < 1200; i++) await s.casTriplet(K(`10.0.${i >> 8}.${i & 255}`), null, { first: 1, last: 2, passes: 1 }, 1);
      await s.casTriplet(K('192.0.2.0'), null, { first: 1, last: 1_000_000, passes: 1 }, 1);
      await s.casAwl('192.0.2.1', null, { count: 1, last: 2 }, 1);
      await s.casAwl('192.0.2.2', null, { count: 1, last: 1_000_000 }, 1);
      const limits = { maxAgeMs: 500_000, retryWindowMs: 100_000 };
      const batches: Array<[number, boolean]> = [];
      for (;;) {
        const r = await s.cleanup(1_000_000, limits, 500);
        batches.push([r.deleted, r.done]);
        if (r.done) break;
      }
      // 1201 triplets examined 500 at a time, then the 2 AWL entries with the rest of the budget.
      assert.deepEqual(batches, [
        [500, false],
        [500, false],
        [201, true],
      ]);
      const snap = await s.load('192.0.2.2', [K('192.0.2.0'), K('10.0.0.1')]);
      assert.deepEqual(snap, { awl: { count: 1, last: 1_000_000 }, triplets: [{ first: 1, last: 1_000_000, passes: 1 }, null] });
      assert.equal((await s.load('192.0.2.1', [])).awl, null);
      // The next call starts a new sweep.
      assert.deepEqual(await s.cleanup(1_000_000, limits, 500), { deleted: 0, done: true });
    });

    it('a closed store rejects with StoreError', async () => {
      const s = await f.open();
      await s.close();
      await assert.rejects(s.load('192.0.2.1', [K('192.0.2.0')]), StoreError);
      await assert.rejects(s.casTriplet(K('192.0.2.0'), null, { first: 1, last: 1, passes: 0 }, 1000), StoreError);
      await assert.rejects(s.casAwl('192.0.2.1', null, { count: 1, last: 1 }, 1000), StoreError);
    });
  });
}
