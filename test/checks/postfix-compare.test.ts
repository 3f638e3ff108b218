/**
 * @module test/checks/postfix-compare
 * SUMMARY: the corpus in test/fixtures/checks/corpus against the real Postfix postmap(1):
 * (1) the walker yields exactly the keys `postmap -m -h -q -` and `postmap -m -b -q -` look up
 * (every header of every class, every body line, in order, as bytes), found with a rule that
 * matches everything; (2) the compare/ rule files give the same result for every key,
 * through greygate's tables, as through Postfix's. postmap reads whole lines (no
 * line_length_limit records), so the walk here uses no record limit. Without postmap the
 * test fails under CI=true and is skipped otherwise.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_WALK_LIMITS, MessageWalker } from '../../src/checks/message-walk.js';
import { openTable } from '../../src/tables/open.js';
import { Maps } from '../../src/tables/maps.js';

const POSTMAP = '/usr/sbin/postmap';
const FIXTURES = new URL('../fixtures/checks/', import.meta.url).pathname;
const CORPUS = join(FIXTURES, 'corpus');
const MESSAGES = readdirSync(CORPUS).filter((f) => f.endsWith('.eml')).sort();
const IN_CI = process.env.CI === 'true';
const MARK = 'QQKEYEND';

function unavailable(): string | null {
  return existsSync(POSTMAP) ? null : `${POSTMAP} is not installed (Debian package postfix)`;
}
const SKIP: string | false = IN_CI ? false : (unavailable() ?? false);

let confDir: string | null = null;
/** A private Postfix config dir (a main.cf dated in the past, so postmap does not wait). */
function postfixConf(): string {
  if (confDir) return confDir;
  confDir = mkdtempSync(join(tmpdir(), 'gg-checks-postfix-'));
  const made = confDir;
  process.once('exit', () => rmSync(made, { recursive: true, force: true }));
  writeFileSync(join(confDir, 'main.cf'), 'compatibility_level = 3.6\n');
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(confDir, 'main.cf'), past, past);
  writeFileSync(join(confDir, 'all'), `/^/ ${MARK}\n`);
  return confDir;
}

function postmap(args: readonly string[], input: Buffer): Buffer {
  const r = spawnSync(POSTMAP, ['-c', postfixConf(), ...args], { input });
  assert.ok(r.status === 0 || r.status === 1, `postmap ${args.join(' ')}: ${r.stderr?.toString()}`);
  return r.stdout;
}

/** postmap reads lines with vstring_get_nonl(): give it LF endings (a CR would stay). */
function lfOnly(b: Buffer): Buffer {
  return Buffer.from(b.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
}

function crlfOnly(b: Buffer): Buffer {
  return Buffer.from(b.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}

/** Every key postmap looked up: the all-matching table prints "key<TAB>MARK" for each. */
function postfixKeys(flag: '-h' | '-b', message: Buffer): string[] {
  const out = postmap(['-m', flag, '-q', '-', `regexp:${join(postfixConf(), 'all')}`], lfOnly(message)).toString('latin1');
  const keys = out.split(`\t${MARK}\n`);
  assert.equal(keys.pop(), '');
  return keys;
}

/** A C string ends at its first NUL: postmap prints (and looks up) the key up to there. */
function cString(key: string): string {
  const nul = key.indexOf('\0');
  return nul === -1 ? key : key.slice(0, nul);
}

/** The walker's keys as bytes (latin1), with no record limit, like postmap. */
function ourKeys(message: Buffer): { headers: string[]; body: string[] } {
  const headers: string[] = [];
  const body: string[] = [];
  const w = new MessageWalker(
    {
      header: (h) => headers.push(h.key.toString('latin1', 0, h.keyLength)),
      headerTail() {},
      body: (_t, buf, s, e) => body.push(buf.toString('latin1', s, e)),
    },
    { ...DEFAULT_WALK_LIMITS, lineLengthLimit: 1 << 30 },
  );
  w.write(crlfOnly(message));
  w.end();
  return { headers, body };
}

describe('the walker looks up the keys Postfix looks up (postmap -m -h / -m -b)', () => {
  for (const name of MESSAGES) {
    it(name, { skip: SKIP }, () => {
      assert.equal(unavailable(), null, 'Postfix postmap is required under CI');
      const message = readFileSync(join(CORPUS, name));
      const ours = ourKeys(message);
      assert.deepEqual(ours.headers.map(cString), postfixKeys('-h', message), 'header keys');
      assert.deepEqual(ours.body.map(cString), postfixKeys('-b', message), 'body keys');
    });
  }
  it('a generated message nested past mime_nesting_limit', { skip: SKIP }, () => {
    let text = '';
    for (let i = 0; i < 110; i++) text += `Content-Type: multipart/mixed; boundary=n${i}\n\n--n${i}\nX-Level: ${i}\n`;
    const message = Buffer.from(`${text}\nbody\n--n3\nX-Back: 3\n\nb\n`);
    const ours = ourKeys(message);
    assert.deepEqual(ours.headers, postfixKeys('-h', message));
    assert.deepEqual(ours.body, postfixKeys('-b', message));
  });
});

describe('rule results agree with Postfix for every key (compare/header_checks, compare/body_checks)', () => {
  for (const type of ['regexp', 'pcre'] as const) {
    for (const [flag, file] of [
      ['-h', 'header_checks'],
      ['-b', 'body_checks'],
    ] as const) {
      it(`${type}:${file} over the whole corpus`, { skip: SKIP }, () => {
        assert.equal(unavailable(), null, 'Postfix postmap is required under CI');
        const path = join(FIXTURES, 'compare', file);
        const table = openTable(`${type}:${path}`, FIXTURES);
        assert.deepEqual(
          table.problems.filter((p) => p.severity === 'error'),
          [],
          'the compare rules load without errors',
        );
        const maps = new Maps(file, [table]);
        let hits = 0;
        for (const name of MESSAGES) {
          const message = readFileSync(join(CORPUS, name));
          const theirs = postmap(['-m', flag, '-q', '-', `${type}:${path}`], lfOnly(message)).toString('utf8');
          const ours = ourKeys(message);
          let expected = '';
          for (const latin1 of flag === '-h' ? ours.headers : ours.body) {
            // The tables see UTF-8 text; a NUL ends the key as it ends Postfix's C string.
            const key = cString(Buffer.from(latin1, 'latin1').toString('utf8'));
            if (key === '') continue;
            const r = maps.lookup(key);
            assert.notEqual(r.kind, 'error');
            if (r.kind === 'hit') {
              expected += `${key}\t${r.value}\n`;
              hits++;
            }
          }
          assert.equal(expected, theirs, `${name}: greygate vs Postfix results`);
        }
        assert.ok(hits >= 8, `the rules match something (${hits} hits)`);
      });
    }
  }
  const GOLDEN = join(FIXTURES, 'golden');
  for (const set of readdirSync(GOLDEN).sort()) {
    const mainCf = readFileSync(join(GOLDEN, set, 'main.cf'), 'utf8');
    for (const m of mainCf.matchAll(/^(\w+_checks)\s*=\s*(regexp|pcre):(\S+)/gm)) {
      const [, param, type, file] = m as unknown as [string, string, string, string];
      it(`golden/${set}: ${type}:${file} (${param})`, { skip: SKIP }, () => {
        assert.equal(unavailable(), null, 'Postfix postmap is required under CI');
        const path = join(GOLDEN, set, file);
        const flag = param === 'body_checks' ? '-b' : '-h';
        const message = readFileSync(join(GOLDEN, set, 'message.eml'));
        const maps = new Maps(param, [openTable(`${type}:${path}`, FIXTURES)]);
        let expected = '';
        const ours = ourKeys(message);
        for (const latin1 of flag === '-h' ? ours.headers : ours.body) {
          const key = cString(Buffer.from(latin1, 'latin1').toString('utf8'));
          if (key === '') continue;
          const r = maps.lookup(key);
          if (r.kind === 'hit') expected += `${key}\t${r.value}\n`;
        }
        assert.equal(expected, postmap(['-m', flag, '-q', '-', `${type}:${path}`], lfOnly(message)).toString('utf8'));
      });
    }
  }
  for (const rules of ['header_checks_1000', 'body_checks_100']) {
    it(`bench-fixtures/${rules}: no key matches, on either side`, { skip: SKIP }, () => {
      const path = `/work/shared/bench-fixtures/${rules}`;
      if (!existsSync(path)) return;
      const flag = rules.startsWith('header') ? '-h' : '-b';
      const maps = new Maps(rules, [openTable(`regexp:${path}`, FIXTURES)]);
      for (const name of MESSAGES) {
        const message = readFileSync(join(CORPUS, name));
        assert.equal(postmap(['-m', flag, '-q', '-', `regexp:${path}`], lfOnly(message)).toString('utf8'), '', name);
        const ours = ourKeys(message);
        for (const k of flag === '-h' ? ours.headers : ours.body) assert.equal(maps.lookup(Buffer.from(k, 'latin1').toString('utf8')).kind, 'miss');
      }
    });
  }
});
