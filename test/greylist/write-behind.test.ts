/**
 * The write-behind cache in front of SQLite: the same conformance suite as every store,
 * plus what a cache must guarantee: writes reach the database (by time, by count, at
 * close), reads after a write see it at once, and a failed flush is retried.
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
});
