/**
 * @module test/tables/regexp-set
 * SUMMARY: the RE2.Set prefilter of regexp:/pcre: tables gives exactly the answers of the
 * plain rule-by-rule walk (Postfix's dict_regexp_lookup) — on every fixture, on 1,000 rules
 * shaped like the header_checks benchmark file, and on rule files mixing negated rules, IF
 * blocks and captures — and keeps a miss cheap on 1,000 rules.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import RE2 from 're2';
import { loadRuleSource, type RuleProgram, type RuleHit } from '../../src/tables/regexp-rules.js';
import { FIXTURES, FIXTURE_NAMES, readKeys } from './golden-format.js';

/** The exact walk, bypassing the Set (the fallback path of RuleProgram.lookup). */
function walk(program: RuleProgram, key: string): RuleHit | null {
  return (program as unknown as { walk(k: string, c: null): RuleHit | null }).walk(key, null);
}

function load(dialect: 'regexp' | 'pcre', source: string): RuleProgram {
  return loadRuleSource(dialect, source, 'test', []);
}

describe('RE2.Set prefilter', () => {
  it('re2 has RE2.Set (re2 >= 1.24)', () => {
    assert.equal(typeof RE2.Set, 'function');
  });

  for (const name of FIXTURE_NAMES.filter((n) => n.startsWith('regexp') || n.startsWith('pcre'))) {
    it(`same answers as the rule-by-rule walk: ${name}`, () => {
      const dialect = name.startsWith('pcre') ? 'pcre' : 'regexp';
      const program = load(dialect, readFileSync(join(FIXTURES, `${name}.map`), 'utf8'));
      for (const key of readKeys(join(FIXTURES, `${name}.in`))) assert.deepEqual(program.lookup(key), walk(program, key), key);
    });
  }

  it('same answers with negations, IF blocks, captures and many rules', () => {
    const rules: string[] = [];
    for (let i = 0; i < 300; i++) {
      if (i % 50 === 0) rules.push(`if !/^skip${i}/`);
      rules.push(i % 7 === 0 ? `!/^k${i}x/ neg${i}` : `/^k${i}(y*)z/ hit${i} [$1]`);
      if (i % 50 === 49) rules.push('endif');
    }
    const program = load('regexp', rules.join('\n'));
    assert.equal(program.stats.sets, 1);
    const keys = ['k3yz', 'k14yyz', 'k0x', 'k7x', 'skip0', 'skip50 k51z', 'k299z', 'nothing', 'k49yz', 'skip0k3z', ''];
    for (const key of keys) assert.deepEqual(program.lookup(key), walk(program, key), key);
  });

  it('1,000 rules: same answers, and a miss costs about one Set scan', () => {
    // Shaped like /work/shared/bench-fixtures/header_checks_1000: a unique token per rule.
    const lines: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const shapes = [
        `/^Subject:[[:space:]]*(re:[[:space:]]*|fwd?:[[:space:]]*)*token${i}[[:space:]]*[!?.]*$/ REJECT spam (rule ${i})`,
        `/^Subject:.*(free|cheap|discount|best)[[:space:]]+token${i}/ REJECT Message content rejected (policy ${i})`,
        `/^From:.*@([a-z0-9-]+\\.)*token${i}\\.example$/ REJECT sender ${i} $1`,
        `/^X-Mailer:.*token${i}/i WARN mailer ${i}`,
      ];
      lines.push(shapes[i % shapes.length]!);
    }
    const program = load('regexp', lines.join('\n'));
    // One bucket (and Set) per anchored header name: Subject, From, X-Mailer.
    assert.deepEqual(program.stats, { rules: 1000, sets: 3, alwaysEvaluated: 0, buckets: 3 });
    const keys = [
      'Subject: Your November engineering digest: release notes, on-call rota and reading list',
      'From: "Example Org Engineering Updates" <updates@newsletters.example.org>',
      'To: Jane User <user@example.com>',
      'Received: from mail-out7.newsletters.example.org (mail-out7.newsletters.example.org [192.0.2.47])\n\tby mx1.partner.example.net (Postfix) with ESMTPS id 4Wq8Zk3Lbxz9vBn',
      'X-Mailer: ExampleMailer 4.2.1',
      'Subject: re: token500 !',
      'Subject: get a cheap   token501 now',
      'From: joe@mx.token502.example',
      'X-MAILER: TOKEN503',
    ];
    for (const key of keys) assert.deepEqual(program.lookup(key), walk(program, key), key);
    assert.deepEqual(program.lookup('Subject: re: token500 !'), { value: 'REJECT spam (rule 500)', line: 501 });
    assert.deepEqual(program.lookup('From: joe@mx.token502.example'), { value: 'REJECT sender 502 mx.', line: 503 });
    const misses = keys.slice(0, 5);
    const start = performance.now();
    let n = 0;
    while (n < 20_000) for (const key of misses) (program.lookup(key), n++);
    const perSecond = n / ((performance.now() - start) / 1000);
    // Rule by rule this is well under a thousand lookups/s; the Set makes it ~10^5.
    assert.ok(perSecond > 20_000, `${Math.round(perSecond)} lookups/s`);
  });
});

describe('header-name buckets keep Postfix semantics', () => {
  const program = load(
    'regexp',
    [
      '/^Subject: bucketed/ WARN subject',
      '/^Foo:/m WARN multiline foo',
      '/^subject: lower/i WARN case-sensitive lower',
      '/bar/ WARN unanchored',
      '/^Subject-Extra: x/ WARN longer name',
    ].join('\n'),
  );
  const cases: Array<[string, string | null]> = [
    ['SUBJECT: bucketed', 'WARN subject'],
    ['Subject: x\nFoo: y', 'WARN multiline foo'],
    ['subject: lower', 'WARN case-sensitive lower'],
    ['Subject: lower', null],
    ['Subject-Extra: x', 'WARN longer name'],
    ['Subject : bucketed', null],
    ['X-Other: bar', 'WARN unanchored'],
    ['no colon here', null],
  ];
  for (const [key, want] of cases) {
    it(JSON.stringify(key), () => {
      assert.equal(program.lookup(key)?.value ?? null, want);
      assert.deepEqual(program.lookup(key), walk(program, key));
    });
  }
});

