/**
 * @module test/tables/open
 * SUMMARY: openTable() spec handling (registry, malformed specs, relative paths against the
 * config directory) and TableCache: one table per spec, change detection by fingerprint,
 * reload with keep-the-old-version-on-error, generations and watched files.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatProblem } from '../../src/errors.js';
import { openTable, parseTableSpec, TableCache, TABLE_TYPES, hasErrors, fingerprintOf, sameFingerprint } from '../../src/tables/open.js';
import { isSurrogate } from '../../src/tables/surrogate.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-tables-open-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Rewrite FILE and move its mtime so that even a same-size rewrite is seen. */
function rewrite(file: string, text: string, secondsAhead = 5): void {
  writeFileSync(file, text);
  const t = new Date(Date.now() + secondsAhead * 1000);
  utimesSync(file, t, t);
}

describe('openTable', () => {
  const surrogates: Array<{ spec: string; reason: string }> = [
    { spec: 'lmdb:/etc/postfix/access', reason: 'unsupported dictionary type: lmdb' },
    { spec: 'noColon', reason: 'open dictionary: expecting "type:name" form instead of "noColon"' },
    { spec: 'regexp:', reason: 'open dictionary: expecting "type:name" form instead of "regexp:"' },
    { spec: ':x', reason: 'open dictionary: expecting "type:name" form instead of ":x"' },
    { spec: 'regexp:missing_checks', reason: 'open missing_checks: No such file or directory' },
    { spec: 'cidr:.', reason: 'open .: Is a directory' },
  ];
  for (const c of surrogates) {
    it(`surrogate for ${c.spec}`, () => {
      const t = openTable(c.spec, dir);
      assert.ok(isSurrogate(t));
      assert.equal(t.problems[0]!.message, c.reason);
      assert.ok(hasErrors(t));
      const r = t.lookup('anything');
      assert.equal(r.kind, 'error');
      assert.equal(r.kind === 'error' && r.error.message, `${c.spec}: ${c.reason}`);
    });
  }

  it('formats a missing file as FILE: reason', () => {
    const t = openTable('hash:client_access', dir);
    assert.equal(formatProblem(t.problems[0]!), 'client_access: open client_access: No such file or directory');
    assert.equal(t.path, join(dir, 'client_access'));
  });

  it('resolves a relative name against the config directory, an absolute one as is', () => {
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'access'), 'example.com OK\n');
    const rel = openTable('hash:sub/access', dir);
    assert.equal(rel.path, join(dir, 'sub', 'access'));
    assert.deepEqual(rel.lookup('example.com'), { kind: 'hit', value: 'OK', source: 'sub/access:1' });
    const abs = openTable(`hash:${join(dir, 'sub', 'access')}`, '/nonexistent');
    assert.equal(abs.lookup('example.com').kind, 'hit');
  });

  it('splits TYPE:NAME at the first colon', () => {
    assert.deepEqual(parseTableSpec('inline:{ a=b:c }'), { type: 'inline', name: '{ a=b:c }' });
    assert.equal(parseTableSpec('x'), null);
  });

  it('registers every Postfix type greygate has', () => {
    assert.deepEqual([...TABLE_TYPES.keys()].sort(), ['cidr', 'hash', 'inline', 'pcre', 'regexp', 'static', 'texthash']);
  });
});

describe('TableCache', () => {
  it('shares one table per spec (and per resolved file)', () => {
    writeFileSync(join(dir, 'access'), 'example.com OK\n');
    const cache = new TableCache(dir);
    const a = cache.open('hash:access');
    assert.equal(cache.open('hash:access'), a);
    assert.equal(cache.open(`hash:${join(dir, 'access')}`), a);
    assert.notEqual(cache.open('texthash:access'), a);
    assert.equal(cache.open('inline:{a=b}'), cache.open('inline:{a=b}'));
  });

  it('sees a rewrite, a replace-by-rename and a deletion', () => {
    const file = join(dir, 'checks');
    writeFileSync(file, '/a/ one\n');
    const cache = new TableCache(dir);
    const first = cache.open('regexp:checks');
    assert.deepEqual(cache.changed(), []);
    rewrite(file, '/a/ two\n');
    assert.deepEqual(cache.changed(), ['regexp:checks']);
    const second = cache.open('regexp:checks');
    assert.notEqual(second, first);
    assert.deepEqual(second.lookup('a'), { kind: 'hit', value: 'two', source: 'checks:1' });
    assert.deepEqual(cache.changed(), []);
    writeFileSync(join(dir, 'checks.new'), '/a/ three\n');
    renameSync(join(dir, 'checks.new'), file);
    assert.deepEqual(cache.changed(), ['regexp:checks']);
    rmSync(file);
    const gone = cache.open('regexp:checks');
    assert.ok(isSurrogate(gone));
  });

  it('refresh() keeps the previous table when the new version has errors', () => {
    const file = join(dir, 'checks');
    writeFileSync(file, '/a/ good\n');
    const cache = new TableCache(dir);
    const good = cache.open('regexp:checks');
    rewrite(file, '/a/ good\n/(unclosed/ broken\n');
    const [reload] = cache.refresh();
    assert.equal(reload!.installed, false);
    assert.equal(reload!.previous, good);
    assert.ok(hasErrors(reload!.fresh));
    assert.equal(cache.open('regexp:checks'), good, 'the old version stays in force');
    rewrite(file, '/a/ fixed\n', 10);
    const [again] = cache.refresh();
    assert.equal(again!.installed, true);
    const now = cache.open('regexp:checks');
    assert.deepEqual(now.lookup('a'), { kind: 'hit', value: 'fixed', source: 'checks:1' });
  });

  it('refresh() installs anything over a surrogate', () => {
    const cache = new TableCache(dir);
    assert.ok(isSurrogate(cache.open('regexp:later')));
    writeFileSync(join(dir, 'later'), '/(x/ broken\n/a/ ok\n');
    const [r] = cache.refresh();
    assert.equal(r!.installed, true);
    assert.equal(cache.open('regexp:later').lookup('a').kind, 'hit');
  });

  it('generations: problems of the tables used, unused ones dropped, files to watch', () => {
    writeFileSync(join(dir, 'one'), 'a b\nbad\n');
    writeFileSync(join(dir, 'two'), '10.0.0.0/8 ok\n');
    const cache = new TableCache(dir);
    cache.beginGeneration();
    cache.open('hash:one');
    cache.open('cidr:two');
    cache.open('static:OK');
    const problems = cache.endGeneration();
    assert.deepEqual(
      problems.map((p) => `${p.file}:${p.line}`),
      ['one:2'],
    );
    assert.deepEqual(cache.files().sort(), [join(dir, 'one'), join(dir, 'two')]);
    cache.beginGeneration();
    cache.open('cidr:two');
    assert.deepEqual(cache.endGeneration(), []);
    assert.deepEqual(cache.files(), [join(dir, 'two')]);
  });

  it('fingerprints: same file same print, any rewrite a new one', () => {
    const file = join(dir, 'f');
    writeFileSync(file, 'x');
    const a = fingerprintOf(file);
    assert.ok(sameFingerprint(a, fingerprintOf(file)));
    rewrite(file, 'y');
    assert.ok(!sameFingerprint(a, fingerprintOf(file)));
    assert.equal(fingerprintOf(join(dir, 'none')), null);
    assert.ok(sameFingerprint(null, null));
  });
});
