/**
 * @module test/tables/posix-differential
 * SUMMARY: the POSIX ERE -> RE2 translation (regexp: tables) checked against glibc through the
 * real postmap: each rule of test/fixtures/tables/posix-corpus.rules goes in a table of its
 * own, every subject of posix-corpus.subjects is looked up in it (`postmap -q -`) and the
 * results — match or not, and the captured $1..$3 — must be Postfix's, as must the verdict
 * on whether the rule loads. Known, documented differences would be listed in KNOWN.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { translatePosixEre } from '../../src/tables/posix-ere.js';
import { translatePcre } from '../../src/tables/pcre-syntax.js';
import { FIXTURES, postmapUnavailable, readKeys, realPostmapAsync, runOurPostmap } from './golden-format.js';

const subjects = readKeys(join(FIXTURES, 'posix-corpus.subjects'));

/**
 * Rule -> subjects whose result differs on purpose, with the reason. The subjects are ASCII:
 * on non-ASCII text glibc (C locale) matches bytes and RE2 characters, a documented
 * difference shown in regexp-re2.map (and Postfix with SMTPUTF8 aborts the query when a
 * capture splits a character).
 */
const KNOWN: Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, string>>>>>> = {
  regexp: {
    '/(a|ab)/': Object.fromEntries(
      ['ab', 'abab', 'abc', 'abcd', 'aab', 'ABC', 'Abc', 'abcabc', 'ABC123', 'abc-'].map((s) => [
        s,
        'POSIX leftmost-longest gives $1 = "ab", RE2 leftmost-first "a"',
      ]),
    ),
  },
  pcre: {},
};

function groupsOf(dialect: 'regexp' | 'pcre', rule: string): number {
  const m = /^\/(.*)\/([A-Za-z]*)$/.exec(rule);
  if (!m) return 0;
  const f = m[2]!;
  const t =
    dialect === 'regexp'
      ? translatePosixEre(m[1]!, { icase: !f.includes('i'), newline: f.includes('m') })
      : translatePcre(m[1]!, {
          caseless: !f.includes('i'),
          dotall: !f.includes('s'),
          multiline: f.includes('m'),
          extended: f.includes('x'),
          anchored: f.includes('A'),
          dollarEndOnly: f.includes('E'),
          ungreedy: f.includes('U'),
        });
  return 'groups' in t ? Math.min(t.groups, 3) : 0;
}

const IN_CI = process.env.CI === 'true';

describe('regexp: and pcre: translations agree with glibc and PCRE2 (via postmap)', () => {
  for (const dialect of ['regexp', 'pcre'] as const) {
  const rules = readFileSync(join(FIXTURES, `${dialect === 'regexp' ? 'posix' : 'pcre'}-corpus.rules`), 'utf8').split('\n').filter((l) => l !== '');
  const unavailable = postmapUnavailable(dialect);
  it(`${dialect}: ${rules.length} rules x ${subjects.length} subjects`, { skip: !IN_CI && unavailable ? unavailable : false }, async () => {
    assert.equal(unavailable, null, `Postfix postmap is required under CI: ${unavailable}`);
    const dir = mkdtempSync(join(tmpdir(), 'gg-posix-diff-'));
    try {
      const input = subjects.join('\n') + '\n';
      const past = new Date(Date.now() - 60_000);
      const files = rules.map((rule, n) => {
        const g = groupsOf(dialect, rule);
        const value = 'M' + [1, 2, 3].filter((k) => k <= g).map((k) => ` [$${k}]`).join('');
        const file = `r${n}`;
        writeFileSync(join(dir, file), `${rule}\t${value}\n`);
        utimesSync(join(dir, file), past, past);
        return file;
      });
      const failures: string[] = [];
      for (let start = 0; start < files.length; start += 16) {
        const batch = files.slice(start, start + 16);
        const reals = await Promise.all(batch.map((f) => realPostmapAsync(['-q', '-', `${dialect}:${f}`], { cwd: dir, input })));
        for (const [k, file] of batch.entries()) {
          const rule = rules[start + k]!;
          const real = reals[k]!;
          const ours = await runOurPostmap(['-q', '-', `${dialect}:${file}`], dir, input);
          const theirErrors = real.stderr.split('\n').filter((l) => / line \d+: /.test(l) && !/no replacement text/.test(l));
          const ourErrors = ours.stderr.split('\n').filter((l) => /^r\d+:\d+: (?!warning:)/.test(l));
          if ((theirErrors.length > 0) !== (ourErrors.length > 0)) {
            failures.push(`${rule}: Postfix ${theirErrors.length ? `refuses (${theirErrors[0]})` : 'accepts'}, greygate ${ourErrors.length ? `refuses (${ourErrors[0]})` : 'accepts'}`);
            continue;
          }
          const known = KNOWN[dialect]?.[rule] ?? {};
          const results = (out: string): Map<string, string> =>
            new Map(out.split('\n').filter((l) => l !== '').map((l) => [l.slice(0, l.lastIndexOf('\tM')), l.slice(l.lastIndexOf('\tM') + 1)]));
          const theirs = results(real.stdout);
          const mine = results(ours.stdout);
          for (const s of subjects) {
            if (known[s]) continue;
            if (theirs.get(s) !== mine.get(s)) {
              failures.push(`${rule} on ${JSON.stringify(s)}: Postfix ${theirs.get(s) ?? 'no match'}, greygate ${mine.get(s) ?? 'no match'}`);
            }
          }
        }
      }
      assert.deepEqual(failures, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  }
});
