/**
 * SqliteStore: the shared conformance suite, plus what only a file store has: state kept
 * across reopen, the structured schema, and an unusable path failing with StoreError.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from '../../src/errors.js';
import { CLEANUP_SQL, openSqliteStore } from '../../src/greylist/sqlite-store.js';
import { runStoreConformance } from './store.case.js';

const dir = mkdtempSync(join(tmpdir(), 'gg-sqlite-store-'));
let n = 0;

runStoreConformance({
  name: 'sqlite',
  expiresByItself: false,
  open: async () => openSqliteStore(join(dir, `conf-${++n}.db`)),
});

describe('SqliteStore', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps triplets and the auto-whitelist across close and reopen (WAL file)', async () => {
    const path = join(dir, 'reopen', 'greylist.db');
    const a = openSqliteStore(path);
    await a.casTriplet({ net: '192.0.2.0', sender: 's@x', recipient: 'r@y' }, null, { first: 10, last: 20, passes: 0 }, 1000);
    await a.casAwl('192.0.2.1', null, { count: 3, last: 30 }, 1000);
    await a.close();
    const b = openSqliteStore(path);
    const snap = await b.load('192.0.2.1', [{ net: '192.0.2.0', sender: 's@x', recipient: 'r@y' }]);
    assert.deepEqual(snap, { awl: { count: 3, last: 30 }, triplets: [{ first: 10, last: 20, passes: 0 }] });
    await b.close();
    const db = new Database(path, { readonly: true });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    const cols = (db.prepare('PRAGMA table_info(triplets)').all() as Array<{ name: string }>).map((c) => c.name);
    assert.deepEqual(cols, ['client_net', 'sender', 'recipient', 'first', 'last', 'passes']);
    assert.deepEqual(db.prepare('SELECT * FROM triplets').all(), [{ client_net: '192.0.2.0', sender: 's@x', recipient: 'r@y', first: 10, last: 20, passes: 0 }]);
    assert.deepEqual(db.prepare('SELECT * FROM awl').all(), [{ ip: '192.0.2.1', count: 3, last: 30 }]);
    db.close();
  });

  it('cleanup batches read by primary-key range, never a full table scan', async () => {
    const path = join(dir, 'plan.db');
    await openSqliteStore(path).close();
    const db = new Database(path, { readonly: true });
    const plan = (sql: string): string => {
      const n = (sql.match(/\?/g) ?? []).length;
      return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...Array<number>(n).fill(1)) as Array<{ detail: string }>).map((r) => r.detail).join(' | ');
    };
    for (const sql of [CLEANUP_SQL.tripletsAfter, CLEANUP_SQL.deleteTriplet, CLEANUP_SQL.awlAfter, CLEANUP_SQL.deleteAwl]) {
      const p = plan(sql);
      assert.match(p, /^SEARCH \w+ USING PRIMARY KEY/, `${sql}: ${p}`);
    }
    // The first batch of a sweep walks the primary key from the start, LIMIT rows.
    for (const sql of [CLEANUP_SQL.tripletsFirst, CLEANUP_SQL.awlFirst]) assert.doesNotMatch(plan(sql), /TEMP B-TREE/, 'no sort: primary-key order');
    db.close();
  });

  it('a path that cannot be a database fails with StoreError', () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    assert.throws(() => openSqliteStore(join(file, 'greylist.db')), StoreError);
    const garbage = join(dir, 'garbage.db');
    writeFileSync(garbage, 'this is not an SQLite database, just text that is long enough to be read as a header'.repeat(20));
    assert.throws(() => openSqliteStore(garbage), StoreError);
  });
});
