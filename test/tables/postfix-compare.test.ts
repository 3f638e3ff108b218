/**
 * @module test/tables/postfix-compare
 * SUMMARY: every golden fixture run through the real Postfix postmap(1) and through
 * greygate's postmap: same keys, same output, same exit status, and the same rule lines
 * reported as problems. hash: fixtures get their .db built by `postmap hash:FILE` in a temp
 * copy first; aliases- fixtures (alias_maps format) are built and queried with postalias(1). The differences greygate makes on purpose (RE2 refusals, leftmost-first
 * captures, per-character matching) are listed in KNOWN with the reason, as hono's
 * common.case.test.ts lists its skips. Without postmap the test fails under CI=true and is
 * skipped otherwise; pcre: needs the postfix-pcre package.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTable } from '../../src/tables/open.js';
import {
  FIXTURES,
  FIXTURE_NAMES,
  escapeText,
  postfixProblemLines,
  postmapUnavailable,
  readKeys,
  realPostalias,
  realPostmap,
  realPostmapAsync,
  runOurPostmap,
  specsOf,
} from './golden-format.js';

interface Known {
  /** Keys whose result differs, with the reason. */
  readonly keys?: Readonly<Record<string, string>>;
  /** Lines only one side reports a problem on, with the reason. */
  readonly lines?: Readonly<Record<number, string>>;
}

const RE2_REFUSES = 'greygate refuses a construct RE2 cannot run; Postfix accepts it';

const KNOWN: Readonly<Record<string, Known>> = {
  'aliases-basic': { lines: { 14: 'Postfix reports an aliases duplicate as "FILE.db: duplicate entry", without a line' } },
  'hash-basic': { lines: { 5: 'Postfix reports a hash: duplicate as "FILE.db: duplicate entry", without a line' } },
  'regexp-errors': { lines: { 21: 'flag x (POSIX basic regular expressions) is refused' } },
  'regexp-posix': { lines: { 5: 'greygate warns about escaped letters', 6: 'idem', 7: 'idem' } },
  'regexp-re2': {
    lines: { 2: RE2_REFUSES, 4: RE2_REFUSES, 5: 'flag x (POSIX basic RE) is refused', 9: RE2_REFUSES },
    keys: {
      aa: 'backreference \\1: Postfix matches, greygate skipped the rule',
      'p x': 'Postfix falls through to /x{0,2000}/, which greygate refused',
      'bre aa': 'Postfix reads flag x as BRE, greygate refused the rule',
      'alt ab': 'POSIX leftmost-longest gives $1 = "ab", RE2 leftmost-first "a"',
      'u ÉÉ': 'Postfix (C locale) folds no non-ASCII letter and matches bytes',
      'v é': 'Postfix matches per byte: "é" is two bytes, so /^v .$/ fails',
    },
  },
  'pcre-re2': {
    lines: Object.fromEntries([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15].map((n) => [n, RE2_REFUSES])),
    keys: {
      foobar: 'Postfix matches the lookahead rule',
      foobaz: 'Postfix matches the negative lookahead rule',
      ok: 'Postfix matches the possessive rule /a*+/ first',
    },
  },
};

const IN_CI = process.env.CI === 'true';

function skipReason(type: string): string | false {
  const why = postmapUnavailable(type);
  if (why === null) return false;
  // Under CI a missing tool is a failure, not a skip: the test body asserts.
  return IN_CI ? false : why;
}

describe('greygate postmap agrees with Postfix postmap on every fixture', () => {
  for (const name of FIXTURE_NAMES) {
    const type = name.split('-')[0]!;
    it(name, { skip: skipReason(type) }, async () => {
      const missing = postmapUnavailable(type);
      assert.equal(missing, null, `Postfix postmap is required under CI: ${missing}`);
      const known = KNOWN[name] ?? {};
      const keys = readKeys(join(FIXTURES, `${name}.in`));
      const dir = mkdtempSync(join(tmpdir(), `gg-compare-${name}-`));
      try {
        if (type === 'inline' || type === 'static') {
          const input = keys.join('\n') + '\n';
          const specs = specsOf(name);
          const reals = await Promise.all(specs.map((spec) => realPostmapAsync(['-q', '-', spec], { cwd: dir, input })));
          for (const [n, spec] of specs.entries()) {
            const real = reals[n]!;
            const ours = await runOurPostmap(['-q', '-', spec], dir, input);
            assert.deepEqual({ status: ours.status, stdout: ours.stdout }, { status: real.status, stdout: real.stdout }, spec);
          }
          return;
        }
        if (type === 'aliases') {
          // alias_maps tables: built and queried with postalias(1), read with { aliases: true }.
          copyFileSync(join(FIXTURES, `${name}.map`), join(dir, `${name}.map`));
          const built = realPostalias([`hash:${name}.map`], { cwd: dir });
          assert.equal(built.status, 0, built.stderr);
          const table = openTable(`hash:${name}.map`, dir, { aliases: true });
          assert.deepEqual(
            [...new Set(table.problems.map((p) => p.line))].filter((n) => !(n in (known.lines ?? {}))),
            postfixProblemLines(built.stderr),
          );
          for (const key of keys) {
            const real = realPostalias(['-q', key, `hash:${name}.map`], { cwd: dir });
            const r = table.lookup(key);
            const mine = r.kind === 'hit' ? { status: 0, stdout: `${r.value}\n` } : { status: 1, stdout: '' };
            assert.deepEqual(mine, { status: real.status, stdout: real.stdout }, `key ${escapeText(key)}`);
          }
          return;
        }
        copyFileSync(join(FIXTURES, `${name}.map`), join(dir, `${name}.map`));
        // dict_thash re-reads a file modified within the last second until it "cools down".
        const past = new Date(Date.now() - 60_000);
        utimesSync(join(dir, `${name}.map`), past, past);
        const spec = `${type}:${name}.map`;
        // Problems: the same rule lines, apart from the listed differences. A hash: source
        // is only parsed when the .db is built, so that run is the one reporting problems.
        const probe = type === 'hash' ? realPostmap([spec], { cwd: dir }) : realPostmap(['-q', 'greygate-probe-key', spec], { cwd: dir });
        if (type === 'hash') assert.equal(probe.status, 0, probe.stderr);
        const ours = openTable(spec, dir);
        const ourLines = [...new Set(ours.problems.map((p) => p.line).filter((n) => n > 0))];
        const theirs = postfixProblemLines(probe.stderr);
        const drop = (lines: number[]): number[] => lines.filter((n) => !(n in (known.lines ?? {}))).sort((a, b) => a - b);
        assert.deepEqual(drop(ourLines), drop(theirs), `problem lines\n${probe.stderr}`);
        // Lookups, one postmap -q KEY per key (keys may hold newlines).
        for (const key of keys) {
          if (known.keys?.[key]) continue;
          const real = realPostmap(['-q', key, spec], { cwd: dir });
          const mine = await runOurPostmap(['-q', key, spec], dir);
          assert.deepEqual(
            { status: mine.status, stdout: mine.stdout },
            { status: real.status, stdout: real.stdout },
            `key ${escapeText(key)}`,
          );
        }
        // And the stdin form with every single-line key at once.
        const lineKeys = keys.filter((k) => !k.includes('\n') && !known.keys?.[k]);
        if (lineKeys.length === 0) return;
        const input = lineKeys.join('\n') + '\n';
        const real = realPostmap(['-q', '-', spec], { cwd: dir, input });
        const mine = await runOurPostmap(['-q', '-', spec], dir, input);
        assert.deepEqual({ status: mine.status, stdout: mine.stdout }, { status: real.status, stdout: real.stdout }, 'postmap -q -');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
