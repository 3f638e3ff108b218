/**
 * @module test/checks/content-filter
 * SUMMARY: ContentFilter end to end on messages: every action in every header class and in
 * the body (outcome, decisions and the exact output bytes), which list a header goes to,
 * which actions stop the checks, how REJECT/DISCARD/lookup errors combine (cleanup_flush()
 * and smtpd's end-of-data reply), body_checks_size_limit, empty lines, NUL, header_size_limit,
 * MIME nesting, and that chunking never changes anything.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TableError } from '../../src/errors.js';
import type { Table } from '../../src/tables/table.js';
import { ContentFilter } from '../../src/checks/content-filter.js';
import { checksOf, compileRules, crlf, runFilter } from './helpers.js';

/** One message with a target header in each class and a target body line in each segment. */
const MESSAGE = crlf(`From: sender@example.org
Subject: target primary
Content-Type: multipart/mixed; boundary=b

prolog
--b
Content-Type: text/plain
X-Target: target part

target body line
--b
Content-Type: message/rfc822

X-Target: target nested
Subject: inner

inner body
--b--
`);

interface ClassCase {
  readonly where: 'header' | 'mime header' | 'nested header' | 'body';
  /** main.cf list that holds the rule. */
  readonly param: 'header_checks' | 'mime_header_checks' | 'nested_header_checks' | 'body_checks';
  readonly pattern: string;
  readonly original: string;
}

const CLASSES: readonly ClassCase[] = [
  { where: 'header', param: 'header_checks', pattern: '/^Subject: target primary$/', original: 'Subject: target primary\r\n' },
  { where: 'mime header', param: 'mime_header_checks', pattern: '/^X-Target: target part$/', original: 'X-Target: target part\r\n' },
  { where: 'nested header', param: 'nested_header_checks', pattern: '/^X-Target: target nested$/', original: 'X-Target: target nested\r\n' },
  { where: 'body', param: 'body_checks', pattern: '/^target body line$/', original: 'target body line\r\n' },
];

interface ActionCase {
  readonly action: string;
  /** Expected replacement of the original line in the output (undefined: unchanged). */
  readonly output?: (original: string, where: string) => string;
  readonly event: string | null;
  readonly outcome: (o: ReturnType<typeof runFilter>['outcome']) => void;
}

const ACTIONS: readonly ActionCase[] = [
  { action: 'REJECT go away', event: 'reject', outcome: (o) => assert.deepEqual(o.reject?.reply, { code: 550, status: '5.7.1', text: 'go away' }) },
  { action: 'REJECT 4.7.0 later', event: 'defer', outcome: (o) => assert.deepEqual(o.reject?.reply, { code: 451, status: '4.7.0', text: 'later' }) },
  { action: 'WARN w', event: 'warn', outcome: (o) => assert.equal(o.reject, undefined) },
  { action: 'INFO i', event: 'info', outcome: (o) => assert.equal(o.reject, undefined) },
  { action: 'DISCARD d', event: 'discard', outcome: (o) => assert.equal(o.discard?.text, 'd') },
  { action: 'HOLD h', event: 'hold', outcome: (o) => assert.equal(o.hold?.text, 'h') },
  {
    action: 'PREPEND X-Added: yes',
    event: 'prepend',
    output: (orig) => `X-Added: yes\r\n${orig}`,
    outcome: (o) => assert.equal(o.decisions[0]?.text, 'X-Added: yes'),
  },
  { action: 'REPLACE X-Replaced: yes', event: 'replace', output: () => 'X-Replaced: yes\r\n', outcome: () => {} },
  { action: 'IGNORE', event: null, output: () => '', outcome: (o) => assert.equal(o.decisions.length, 0) },
  { action: 'STRIP s', event: 'strip', output: () => '', outcome: () => {} },
  { action: 'REDIRECT r@example.com', event: 'redirect', outcome: (o) => assert.equal(o.redirect?.address, 'r@example.com') },
  { action: 'FILTER smtp:[127.0.0.1]:10026', event: 'filter', outcome: (o) => assert.equal(o.filter?.nexthop, 'smtp:[127.0.0.1]:10026') },
  { action: 'BCC b@example.com', event: 'bcc', outcome: (o) => assert.deepEqual(o.bcc.map((b) => b.address), ['b@example.com']) },
  { action: 'PASS p', event: 'pass', outcome: (o) => assert.equal(o.reject, undefined) },
  { action: 'DUNNO', event: null, outcome: (o) => assert.equal(o.decisions.length, 0) },
  { action: 'OK', event: null, outcome: (o) => assert.equal(o.decisions.length, 0) },
];

describe('every action in every class', () => {
  for (const cls of CLASSES) {
    for (const a of ACTIONS) {
      it(`${a.action.split(' ')[0]} in ${cls.where}`, () => {
        // The other lists name an empty table, so only this class can match.
        const checks = compileRules({
          files: { rules: `${cls.pattern} ${a.action}\n`, none: '' },
          mainCf: `${['header_checks', 'mime_header_checks', 'nested_header_checks', 'body_checks']
            .map((p) => `${p} = ${p === cls.param ? 'regexp:rules' : p === 'body_checks' ? '' : 'regexp:none'}`)
            .join('\n')}\n`,
        });
        for (const chunk of [MESSAGE.length, 1, 13]) {
          const { output, outcome } = runFilter(checks, MESSAGE, chunk);
          const text = MESSAGE.toString('utf8');
          const expected = a.output ? text.replace(cls.original, a.output(cls.original, cls.where)) : text;
          assert.equal(output.toString('utf8'), expected, `output, ${chunk}-byte writes`);
          const logged = outcome.decisions.filter((d) => d.logged);
          if (a.event === null) assert.equal(logged.length, 0);
          else {
            assert.equal(logged.length, 1);
            assert.equal(logged[0]!.event, a.event);
            assert.equal(logged[0]!.where, cls.where);
            assert.equal(logged[0]!.table, cls.param);
            assert.equal(logged[0]!.rule, 'rules:1');
            assert.equal(logged[0]!.matched, cls.original.trimEnd());
          }
          a.outcome(outcome);
          assert.deepEqual(outcome.warnings, []);
        }
      });
    }
  }
});

describe('which list a header goes to', () => {
  const msg = crlf('Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n--b\nX-Part: p\nContent-Type: message/rfc822\n\nX-Nested: n\nContent-Type: text/plain\n\nx\n--b--\n');
  const all = '/^(.*)$/ WARN $1\n';
  function where(mainCf: string): string[] {
    const checks = compileRules({ files: { all, other: '/^(.*)$/ INFO $1\n' }, mainCf });
    return runFilter(checks, msg).outcome.decisions.map((d) => `${d.table}/${d.event}: ${d.text.split(':')[0]}`);
  }
  it('by default header_checks tables apply to all three lists, each header once', () => {
    assert.deepEqual(where('header_checks = regexp:all\n'), [
      'header_checks/warn: Subject',
      'mime_header_checks/warn: Content-Type',
      'mime_header_checks/warn: X-Part',
      'mime_header_checks/warn: Content-Type',
      'nested_header_checks/warn: X-Nested',
      'mime_header_checks/warn: Content-Type',
    ]);
  });
  it('an empty mime_header_checks leaves MIME headers and part headers unchecked', () => {
    assert.deepEqual(where('header_checks = regexp:all\nmime_header_checks =\n'), ['header_checks/warn: Subject', 'nested_header_checks/warn: X-Nested']);
  });
  it('nested_header_checks may name other tables', () => {
    assert.deepEqual(where('header_checks = regexp:all\nmime_header_checks =\nnested_header_checks = regexp:other\n'), [
      'header_checks/warn: Subject',
      'nested_header_checks/info: X-Nested',
    ]);
  });
  it('no header list: nothing but the body is looked up', () => {
    assert.deepEqual(where('body_checks = regexp:all\n').filter((d) => !d.startsWith('body_checks')), []);
  });
});

describe('which actions stop further checks', () => {
  const msg = crlf('Subject: first\nX-Second: second\n\nbody line\n');
  const cases: Array<[string, boolean]> = [
    ['REJECT', true],
    ['REJECT 4.1.1 soft', true],
    ['DISCARD', true],
    ['REDIRECT a@b', true],
    ['PASS', true],
    ['HOLD', false],
    ['WARN', false],
    ['INFO', false],
    ['FILTER a:b', false],
    ['BCC a@b', false],
    ['PREPEND X-A: b', false],
    ['REPLACE Subject: x', false],
    ['IGNORE', false],
    ['STRIP', false],
    ['DUNNO', false],
    ['REDIRECT invalid', false],
  ];
  for (const [action, stops] of cases) {
    it(`${action} ${stops ? 'stops' : 'does not stop'} header and body checks`, () => {
      const checks = checksOf({ header: `/^Subject: first/ ${action}\n/^X-Second:/ WARN h2\n`, body: '/^body line/ WARN b\n' });
      const { outcome } = runFilter(checks, msg);
      const later = outcome.decisions.filter((d) => d.text === 'h2' || d.text === 'b');
      assert.equal(later.length, stops ? 0 : 2);
    });
  }
});

describe('the outcome: cleanup_flush() and the end-of-data reply', () => {
  function failing(t: Table, badKey: RegExp): Table {
    return {
      ...t,
      lookup: (key: string) => (badKey.test(key) ? { kind: 'error', error: new TableError('retry', t.spec, 'lookup failed') } : t.lookup(key)),
    };
  }
  const msg = crlf('Subject: s\nX-Fail: f\nX-After: a\n\nbody\n');
  function run(rules: string, body = '/^body/ WARN body checked\n') {
    const checks = compileRules({ files: { hc: rules, bc: body }, mainCf: 'header_checks = regexp:hc\nbody_checks = regexp:bc\n' }, (t) => failing(t, /^X-Fail/));
    return runFilter(checks, msg).outcome;
  }
  it('a failed lookup tempfails: 451 4.3.0 Error: queue file write error, and body checks stop', () => {
    const o = run('/^X-After/ WARN after\n');
    assert.deepEqual(o.error?.reply, { code: 451, status: '4.3.0', text: 'Error: queue file write error' });
    assert.equal(o.error?.table, 'header_checks');
    assert.deepEqual(o.warnings, [{ message: 'header_checks map lookup problem -- message not accepted, try again later' }]);
    // Header checks go on (cleanup_header_callback has no CLEANUP_OUT_OK test), body checks do not.
    assert.deepEqual(
      o.decisions.map((d) => d.text),
      ['after'],
    );
  });
  it('a later REJECT takes precedence over the failed lookup', () => {
    const o = run('/^X-After/ REJECT no\n');
    assert.equal(o.error, undefined);
    assert.equal(o.reject?.reply.code, 550);
  });
  it('a later DISCARD clears every error', () => {
    const o = run('/^X-After/ DISCARD\n');
    assert.equal(o.error, undefined);
    assert.equal(o.reject, undefined);
    assert.equal(o.discard?.rule, 'hc:1');
  });
  it('an empty-string result is a lookup failure too', () => {
    const checks = compileRules({ files: { hc: '/^Subject(x?)/ $1\n' }, mainCf: 'header_checks = regexp:hc\n' });
    const o = runFilter(checks, crlf('Subject: s\n\n')).outcome;
    assert.equal(o.error?.reply.code, 451);
  });
  it('HOLD, FILTER, REDIRECT and BCC are all reported together', () => {
    const checks = checksOf({
      header: '/^Subject/ HOLD first\n/^X-1/ HOLD second\n/^X-2/ FILTER a:b\n/^X-3/ FILTER c:d\n/^X-4/ BCC x@y\n/^X-5/ BCC x@y\n/^X-6/ REDIRECT r@y\n',
    });
    const o = runFilter(checks, crlf('Subject: s\nX-1: 1\nX-2: 2\nX-3: 3\nX-4: 4\nX-5: 5\nX-6: 6\n\n')).outcome;
    assert.equal(o.hold?.text, 'first');
    assert.equal(o.filter?.nexthop, 'c:d');
    assert.equal(o.redirect?.address, 'r@y');
    assert.deepEqual(
      o.bcc.map((b) => [b.address, b.rule]),
      [['x@y', 'header_checks:5']],
    );
    assert.deepEqual(
      o.decisions.map((d) => d.event),
      ['hold', 'filter', 'filter', 'bcc', 'bcc', 'redirect'],
    );
  });
});

describe('body_checks_size_limit and records', () => {
  const line = 'x'.repeat(99); // 100 bytes with its line end
  function bodyOf(n: number): string {
    return Array.from({ length: n }, (_, i) => `${line.slice(3)}${String(i).padStart(3, '0')}`).join('\n');
  }
  it('only records starting in the first N bytes of a body segment are looked up', () => {
    const checks = checksOf({ body: '/^x+([0-9]+)$/ WARN $1\n', extra: 'body_checks_size_limit = 250\n' });
    const { outcome } = runFilter(checks, crlf(`Subject: s\n\n${bodyOf(5)}\n`));
    // Offsets: "" at 0, then lines at 1, 101, 201, 301...: three start before 250.
    assert.deepEqual(
      outcome.decisions.map((d) => d.text),
      ['000', '001', '002'],
    );
  });
  it('the limit restarts in each MIME part', () => {
    const checks = checksOf({ body: '/^x+([0-9]+)$/ WARN $1\n', extra: 'body_checks_size_limit = 150\n' });
    const msg = crlf(`Content-Type: multipart/mixed; boundary=b\n\n--b\n\n${bodyOf(3)}\n--b\n\n${bodyOf(3)}\n--b--\n`);
    assert.deepEqual(
      runFilter(checks, msg).outcome.decisions.map((d) => d.text),
      ['000', '001', '000', '001'],
    );
  });
  it('0 means no limit', () => {
    const checks = checksOf({ body: '/^x+([0-9]+)$/ WARN $1\n', extra: 'body_checks_size_limit = 0\n' });
    assert.equal(runFilter(checks, crlf(`S: s\n\n${bodyOf(700)}\n`)).outcome.decisions.length, 700);
  });
  it('the default is 51200 bytes', () => {
    const checks = checksOf({ body: '/^x+([0-9]+)$/ WARN $1\n' });
    assert.equal(runFilter(checks, crlf(`S: s\n\n${bodyOf(700)}\n`)).outcome.decisions.length, 512);
  });
  it('a long line is looked up in 2048-byte records; a replaced chunk keeps no line end', () => {
    const checks = checksOf({ body: '/^a+$/ REPLACE A\n/^b+$/ WARN bb\n' });
    const long = 'a'.repeat(2048) + 'b'.repeat(100);
    const { output, outcome } = runFilter(checks, crlf(`S: s\n\n${long}\n`), 1000);
    assert.equal(output.toString(), 'S: s\r\n\r\nA' + 'b'.repeat(100) + '\r\n');
    assert.deepEqual(
      outcome.decisions.map((d) => d.event),
      ['replace', 'warn'],
    );
  });
  it('empty lines are never looked up, even by a rule matching anything', () => {
    const checks = checksOf({ header: '/^/ WARN any header\n', body: '/^/ WARN any line\n/^$/ REJECT empty\n' });
    const { outcome } = runFilter(checks, crlf('S: s\n\n\n\nx\n\n'));
    assert.equal(outcome.reject, undefined);
    assert.deepEqual(
      outcome.decisions.map((d) => d.matched),
      ['S: s', 'x'],
    );
  });
  it('a NUL ends the key, as in Postfix', () => {
    const checks = checksOf({ body: '/after/ REJECT seen\n/^before$/ WARN cut\n' });
    const msg = Buffer.concat([crlf('S: s\n\nbefore'), Buffer.from([0]), crlf('after\n')]);
    const { outcome } = runFilter(checks, msg);
    assert.equal(outcome.reject, undefined);
    assert.deepEqual(
      outcome.decisions.map((d) => d.text),
      ['cut'],
    );
  });
  it('nothing is decoded: RFC 2047, base64 and quoted-printable stay raw', () => {
    const checks = checksOf({ header: '/=\\?UTF-8\\?B\\?/ WARN raw header\n/Grüße/ REJECT decoded\n', body: '/^SGVsbG8=$/ WARN raw base64\n/^Hello$/ REJECT decoded\n' });
    const msg = crlf('Subject: =?UTF-8?B?R3LDvMOfZQ==?=\nContent-Transfer-Encoding: base64\n\nSGVsbG8=\n');
    const { outcome } = runFilter(checks, msg);
    assert.equal(outcome.reject, undefined);
    assert.deepEqual(
      outcome.decisions.map((d) => d.text),
      ['raw header', 'raw base64'],
    );
  });
  it('8-bit text is matched as UTF-8 characters', () => {
    const checks = checksOf({ header: '/^Subject: Grüße$/ WARN utf8\n' });
    assert.equal(runFilter(checks, crlf('Subject: Grüße\n\n')).outcome.decisions.length, 1);
  });
});

describe('output edits', () => {
  it('a multi-line header replaced through $1 keeps its folding', () => {
    const checks = checksOf({ header: '/^Subject: (.*)/ REPLACE Subject: [tagged] $1\n' });
    const { output } = runFilter(checks, crlf('Subject: one\n two\nX: y\n\nb\n'));
    assert.equal(output.toString(), 'Subject: [tagged] one\r\n two\r\nX: y\r\n\r\nb\r\n');
  });
  it('a PREPEND on a part header lands inside the part, before that header', () => {
    const checks = checksOf({ header: '/^Content-Type: text\\/plain/ PREPEND X-Scanned: yes\n' });
    const msg = crlf('Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n--b--\n');
    assert.equal(runFilter(checks, msg).output.toString(), msg.toString().replace('--b\r\nContent-Type: text/plain', '--b\r\nX-Scanned: yes\r\nContent-Type: text/plain'));
  });
  it('a body PREPEND inserts a line; the inserted text is not inspected', () => {
    const checks = checksOf({ body: '/^target$/ PREPEND target\n' });
    const { output, outcome } = runFilter(checks, crlf('S: s\n\ntarget\n'));
    assert.equal(output.toString(), 'S: s\r\n\r\ntarget\r\ntarget\r\n');
    assert.equal(outcome.decisions.length, 1);
  });
  it('bare LF input gets bare LF inserted lines', () => {
    const checks = checksOf({ header: '/^S:/ PREPEND X-A: 1\n', body: '/^b$/ REPLACE c\n' });
    assert.equal(runFilter(checks, Buffer.from('S: s\n\nb\n')).output.toString(), 'X-A: 1\nS: s\n\nc\n');
  });
  it('IGNORE of the last header of a message without a final newline', () => {
    const checks = checksOf({ header: '/^X-Last/ IGNORE\n' });
    assert.equal(runFilter(checks, Buffer.from('S: s\r\nX-Last: 1')).output.toString(), 'S: s\r\n');
  });
});

describe('header_size_limit: a huge header is decided early and not held', () => {
  const huge = `X-Huge: start\r\n${' continuation line of text\r\n'.repeat(20000)}`; // ~540 KB
  const msg = Buffer.from(`Subject: s\r\n${huge}X-After: a\r\n\r\nbody\r\n`);
  for (const [action, kept] of [
    ['WARN big', true],
    ['IGNORE', false],
    ['REPLACE X-Huge: cut', false],
  ] as const) {
    it(`${action}: the tail is ${kept ? 'passed' : 'dropped'} as it streams`, () => {
      const checks = checksOf({ header: `/^X-Huge: start/ ${action}\n/^X-After/ WARN after\n` });
      const f = new ContentFilter(checks);
      const pieces: Buffer[] = [];
      let out = 0;
      let held = 0;
      for (let i = 0; i < msg.length; i += 4096) {
        const chunk = msg.subarray(i, i + 4096);
        const got = f.write(chunk);
        pieces.push(...got);
        out += got.reduce((n, b) => n + b.length, 0);
        if (kept) held = Math.max(held, i + chunk.length - out);
      }
      const { tail, outcome } = f.end();
      pieces.push(...tail);
      const text = Buffer.concat(pieces).toString();
      if (kept) assert.equal(text, msg.toString());
      else assert.equal(text, msg.toString().replace(huge, action === 'IGNORE' ? '' : 'X-Huge: cut\r\n'));
      // IGNORE is not logged; the others are, with the header's first 200 characters.
      assert.equal(outcome.decisions.length, action === 'IGNORE' ? 1 : 2);
      if (action !== 'IGNORE') assert.ok(outcome.decisions[0]!.matched.startsWith('X-Huge: start\n continuation'));
      if (kept) assert.ok(held < 102400 + 8192, `held back at most one header's worth: ${held}`);
      // Dropped or kept, the tail is dealt with as it arrives: little is left for end().
      assert.ok(tail.reduce((n, b) => n + b.length, 0) < 100);
    });
  }
});

describe('MIME nesting beyond mime_nesting_limit', () => {
  let deep = '';
  for (let i = 0; i < 105; i++) deep += `Content-Type: multipart/mixed; boundary=n${i}\n\n--n${i}\n`;
  const msg = crlf(`${deep}\nbody\n`);
  it('with header checks: 550 5.6.0 MIME nesting exceeds safety limit', () => {
    const o = runFilter(checksOf({ header: '/^X-Never/ WARN\n' }), msg).outcome;
    assert.deepEqual(o.reject?.reply, { code: 550, status: '5.6.0', text: 'MIME nesting exceeds safety limit' });
    assert.equal(o.decisions[0]?.context, 'mime-error');
  });
  it('even after PASS', () => {
    const o = runFilter(checksOf({ header: '/^Content-Type/ PASS\n' }), msg).outcome;
    assert.equal(o.reject?.reply.status, '5.6.0');
  });
  it('a REJECT reason comes first', () => {
    const o = runFilter(checksOf({ header: '/^Content-Type/ REJECT first\n' }), msg).outcome;
    assert.equal(o.reject?.reply.text, 'first');
  });
  it('not with body checks only (cleanup reports nesting only for header checks)', () => {
    assert.equal(runFilter(checksOf({ body: '/^x/ WARN\n' }), msg).outcome.reject, undefined);
  });
});

describe('streaming', () => {
  it('body bytes are released by write(), not held to the end', () => {
    const checks = checksOf({ header: '/^X-Never/ WARN\n', body: '/^never$/ WARN\n' });
    const msg = crlf(`S: s\n\n${'line of body text\n'.repeat(1000)}`);
    const { early, output } = runFilter(checks, msg, 4096);
    assert.ok(early > msg.length - 4096, `${early} of ${msg.length} bytes released early`);
    assert.ok(output.equals(msg));
  });
  it('without any list the filter is inactive and passes chunks through untouched', () => {
    const checks = compileRules({ mainCf: 'header_checks =\nbody_checks =\n' });
    assert.equal(checks.active, false);
    const f = new ContentFilter(checks);
    const chunk = Buffer.from('anything');
    assert.equal(f.write(chunk)[0], chunk);
    assert.deepEqual(f.end().tail, []);
  });
  it('after PASS the rest passes through without being held', () => {
    const checks = checksOf({ body: '/^pass$/ PASS\n' });
    const f = new ContentFilter(checks);
    f.write(crlf('S: s\n\npass\n'));
    const chunk = Buffer.from('X: partial line with no end');
    assert.deepEqual(f.write(chunk), [chunk]);
  });
  it('write() after end() is a bug', () => {
    const f = new ContentFilter(checksOf({ body: '/x/ WARN\n' }));
    f.end();
    assert.throws(() => f.write(Buffer.from('x')));
  });
});
