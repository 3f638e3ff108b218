/**
 * The write-behind cache in front of SQLite: the same conformance suite as every store,
 * plus what a cache must guarantee: writes reach the database (by time, by count, at
 * close), reads after a write see it at once, a record is only dropped from memory once
 * written, the key filter never calls a stored key absent, and the lookups also answer
 * synchronously (store.immediate), as the policy service's hot path uses them.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore } from '../../src/greylist/sqlite-store.js';
import { writeBehindStore } from '../../src/greylist/write-behind.js';
import { runStoreConformance } from './store.case.js';

const dir = mkdtempSync(join(tmpdir(), 'gg-write-behind-'));
let n = 0;
const key = (i: number) => ({ net: '192.0.2.0', sender: `s${i}@x`, recipient: 'r@y' });

runStoreConformance({
  name: 'sqlite + write-behind',
  expiresByItself: false,
  open: async () => writeBehindStore(openSqliteStore(join(dir, `conf-${++n}.db`)), { flushMs: 20 }),
});

describe('write-behind cache', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('flushes after flushMs, when maxPending is reached, and at close', async () => {
    const path = join(dir, 'flush.db');
    const direct = openSqliteStore(path);
    const cached = writeBehindStore(openSqliteStore(path), { flushMs: 50, maxPending: 3 });
    assert.equal(await cached.casTriplet(key(1), null, { first: 1, last: 1, passes: 0 }, 1000), true);
    // Read-your-writes at once; the database only after the flush.
    assert.deepEqual((await cached.load(null, [key(1)])).triplets[0], { first: 1, last: 1, passes: 0 });
    assert.equal((await direct.load(null, [key(1)])).triplets[0], null);
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual((await direct.load(null, [key(1)])).triplets[0], { first: 1, last: 1, passes: 0 });
    for (let i = 2; i <= 4; i++) await cached.casTriplet(key(i), null, { first: i, last: i, passes: 0 }, 1000);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual((await direct.load(null, [key(4)])).triplets[0], { first: 4, last: 4, passes: 0 });
    await cached.casAwl('192.0.2.9', null, { count: 1, last: 5 }, 1000);
    await cached.close();
    assert.deepEqual((await direct.load('192.0.2.9', [])).awl, { count: 1, last: 5 });
    await direct.close();
  });

  it('compare-and-set sees the cached value, not the database', async () => {
    const cached = writeBehindStore(openSqliteStore(join(dir, 'cas.db')), { flushMs: 10_000 });
    await cached.casTriplet(key(1), null, { first: 1, last: 1, passes: 0 }, 1000);
    assert.equal(await cached.casTriplet(key(1), null, { first: 2, last: 2, passes: 0 }, 1000), false);
    assert.equal(await cached.casTriplet(key(1), { first: 1, last: 1, passes: 0 }, { first: 1, last: 3, passes: 1 }, 1000), true);
    assert.equal(await cached.casTriplet(key(1), { first: 1, last: 1, passes: 0 }, { first: 1, last: 4, passes: 1 }, 1000), false);
    await cached.close();
  });

  it('immediate operations answer at once, on the same records as the promise ones', async () => {
    const cached = writeBehindStore(openSqliteStore(join(dir, 'immediate.db')), { flushMs: 10_000 });
    const now = cached.immediate!;
    const r = now.casTriplet(key(1), null, { first: 1, last: 1, passes: 0 }, 1000);
    assert.equal(r, true, 'a boolean, not a promise');
    const snap = now.load('192.0.2.9', [key(1), key(2)]);
    assert.deepEqual(snap, { awl: null, triplets: [{ first: 1, last: 1, passes: 0 }, null] });
    assert.equal(now.casAwl('192.0.2.9', null, { count: 1, last: 2 }, 1000), true);
    assert.deepEqual(await cached.load('192.0.2.9', [key(1)]), { awl: { count: 1, last: 2 }, triplets: [{ first: 1, last: 1, passes: 0 }] });
    await cached.close();
    assert.throws(() => now.load(null, [key(1)]), /closed/);
  });

  it('the key filter: stored keys are found, written keys too after they leave memory', async () => {
    const path = join(dir, 'filter.db');
    const direct = openSqliteStore(path);
    const stored = Array.from({ length: 3000 }, (_, i) => [key(i), { first: i, last: i, passes: 1 }] as const);
    direct.putManyNow(stored, [['192.0.2.1', { count: 3, last: 7 }]]);
    // Small enough that most records leave memory once written.
    const cached = writeBehindStore(openSqliteStore(path), { flushMs: 10, maxEntries: 100 });
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 3000; i += 7) assert.deepEqual((await cached.load(null, [key(i)])).triplets[0], { first: i, last: i, passes: 1 }, `stored key ${i}`);
    assert.deepEqual((await cached.load('192.0.2.1', [])).awl, { count: 3, last: 7 });
    assert.equal((await cached.load('192.0.2.2', [key(99_999)])).triplets[0], null);
    for (let i = 10_000; i < 13_000; i++) await cached.casTriplet(key(i), null, { first: i, last: i, passes: 0 }, 1000);
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 10_000; i < 13_000; i += 7) assert.deepEqual((await cached.load(null, [key(i)])).triplets[0], { first: i, last: i, passes: 0 }, `written key ${i}`);
    await cached.close();
    await direct.close();
  });

  it('a key the filter never saw is absent without a database read (this cache is the only writer)', async () => {
    const path = join(dir, 'only-writer.db');
    const direct = openSqliteStore(path);
    const filtered = writeBehindStore(openSqliteStore(path), { flushMs: 10_000 });
    const unfiltered = writeBehindStore(openSqliteStore(path), { flushMs: 10_000, keyFilter: false });
    await new Promise((r) => setTimeout(r, 50));
    // A record written behind the caches' backs, which the design rules out.
    direct.putManyNow([[key(1), { first: 1, last: 1, passes: 1 }]], []);
    assert.equal((await filtered.load(null, [key(1)])).triplets[0], null, 'the filter answered');
    assert.deepEqual((await unfiltered.load(null, [key(1)])).triplets[0], { first: 1, last: 1, passes: 1 }, 'read from the database');
    await filtered.close();
    await unfiltered.close();
    await direct.close();
  });

  it('records are dropped from memory only once written: nothing is lost when the cache overflows', async () => {
    const path = join(dir, 'overflow.db');
    // No flush by time or count: only the overflow makes room.
    const cached = writeBehindStore(openSqliteStore(path), { flushMs: 60_000, maxPending: 1_000_000, maxEntries: 50 });
    for (let i = 0; i < 4000; i++) await cached.casTriplet(key(i), null, { first: i, last: i, passes: 0 }, 1000);
    for (let i = 0; i < 4000; i += 3) assert.deepEqual((await cached.load(null, [key(i)])).triplets[0], { first: i, last: i, passes: 0 }, `key ${i}`);
    await cached.close();
    const direct = openSqliteStore(path);
    for (let i = 0; i < 4000; i += 11) assert.deepEqual((await direct.load(null, [key(i)])).triplets[0], { first: i, last: i, passes: 0 });
    await direct.close();
  });
});
