/**
 * @module test/checks/byte-exact
 * SUMMARY: what no action changed comes out byte for byte: every corpus message (LF, CRLF,
 * without its final newline) through rules that look up every header and line (DUNNO, WARN)
 * in writes of every size; then seeded random MIME-ish messages (odd boundaries, CR, NUL,
 * 8-bit, long lines, garbage) that must never throw, must come out unchanged under DUNNO,
 * and must give the same output and decisions whatever the write sizes under editing rules.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { checksOf, runFilter } from './helpers.js';
import { mulberry32 as rng } from '../helpers/prng.js';

const CORPUS = new URL('../fixtures/checks/corpus/', import.meta.url).pathname;
const MESSAGES = readdirSync(CORPUS).filter((f) => f.endsWith('.eml')).sort();

const DUNNO_ALL = checksOf({ header: '/^/ DUNNO\n', body: '/^/ DUNNO\n', extra: 'body_checks_size_limit = 0\n' });
const WARN_ALL = checksOf({ header: '/^(.{0,20})/ WARN $1\n', body: '/^(.{0,20})/ WARN $1\n' });

function variants(raw: Buffer): Array<[string, Buffer]> {
  const text = raw.toString('latin1');
  const crlf = text.replace(/\r?\n/g, '\r\n');
  return [
    ['as stored', raw],
    ['CRLF', Buffer.from(crlf, 'latin1')],
    ['CRLF, no final newline', Buffer.from(crlf.replace(/\r\n$/, ''), 'latin1')],
  ];
}

describe('the corpus comes out unchanged when no rule edits', () => {
  for (const name of MESSAGES) {
    it(name, () => {
      for (const [variant, msg] of variants(readFileSync(join(CORPUS, name)))) {
        for (const chunk of [1, 2, 3, 7, 64, 2049, 4096, msg.length || 1]) {
          for (const [rules, checks] of [
            ['DUNNO', DUNNO_ALL],
            ['WARN', WARN_ALL],
          ] as const) {
            const { output, outcome } = runFilter(checks, msg, chunk);
            assert.ok(output.equals(msg), `${variant}, ${rules}, ${chunk}-byte writes`);
            assert.deepEqual(outcome.warnings, []);
          }
        }
      }
    });
  }
});

const FRAGMENTS = [
  'Subject: hello',
  'X-Spam: yes',
  'Content-Type: multipart/mixed; boundary=b1',
  'Content-Type: multipart/alternative; boundary="b2"',
  'Content-Type: multipart/digest; boundary=b3',
  'Content-Type: message/rfc822',
  'Content-Type: text/plain',
  'Content-Type: multipart/mixed; boundary=""',
  'Content-Type: multipart/mixed; boundary="unterminated',
  'Content-Type: (only a comment',
  'Content-Transfer-Encoding: base64',
  ' folded continuation',
  '\tfolded with tab',
  '',
  '',
  '--b1',
  '--b1--',
  '--b2',
  '--b2--trailing',
  '--b3',
  '--',
  '----',
  'plain body text',
  'not: a header? maybe',
  'Name : obsolete form',
  ': no name',
  'caf\u00e9 8-bit',
  'a\rstray CR',
  'nul\u0000byte',
  'x'.repeat(3000),
  'y'.repeat(2047) + '\r',
  'z'.repeat(2048),
];

function randomMessage(r: () => number): Buffer {
  const lines: string[] = [];
  const n = 1 + Math.floor(r() * 60);
  for (let i = 0; i < n; i++) lines.push(FRAGMENTS[Math.floor(r() * FRAGMENTS.length)]!);
  const eol = r() < 0.8 ? '\r\n' : '\n';
  let text = lines.join(eol);
  if (r() < 0.8) text += eol;
  return Buffer.from(text, r() < 0.5 ? 'utf8' : 'latin1');
}

describe('random MIME-ish messages', () => {
  const EDIT = checksOf({
    header: '/^X-Spam/ IGNORE\n/^Subject: (.*)/ REPLACE Subject: [x] $1\n/^Content-Type: text/ PREPEND X-P: 1\n/^Name/ WARN obsolete\n',
    body: '/^plain/ REPLACE PLAIN\n/^not:/ STRIP\n/^z+$/ PREPEND before z\n/8-bit/ WARN eight\n/^--b2$/ IGNORE\n',
  });
  it('never throw; DUNNO leaves them unchanged; write sizes never change the result', () => {
    const r = rng(20240601);
    for (let iteration = 0; iteration < 400; iteration++) {
      const msg = randomMessage(r);
      const chunk = 1 + Math.floor(r() * 97);
      const plain = runFilter(DUNNO_ALL, msg, chunk);
      assert.ok(plain.output.equals(msg), `iteration ${iteration}: DUNNO changed the message`);
      const whole = runFilter(EDIT, msg);
      const pieces = runFilter(EDIT, msg, chunk);
      assert.ok(pieces.output.equals(whole.output), `iteration ${iteration}: output depends on ${chunk}-byte writes`);
      assert.deepEqual(pieces.outcome, whole.outcome, `iteration ${iteration}: outcome depends on write sizes`);
    }
  });
});
