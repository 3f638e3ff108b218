import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMainCf } from '../../src/config/parse.js';
import { expand, splitList } from '../../src/config/expand.js';
import { configFromText } from '../../src/config/config.js';
import { parseDuration, formatDuration } from '../../src/util/duration.js';
import { logicalLines } from '../../src/util/line-reader.js';

test('logical lines: comments, blank lines, continuations keep the first line number', () => {
  const text = '# c\nfoo = a,\n   b\n\n  # indented comment\nbar = x\n\tcontinued\n';
  assert.deepEqual(logicalLines(text), [
    { line: 2, text: 'foo = a,   b' },
    { line: 6, text: 'bar = x\tcontinued' },
  ]);
});

test('main.cf parse: entries, missing "=", bad names, overrides warned', () => {
  const p = parseMainCf('main.cf', 'a = 1\nnot a param\nb-c = 2\na = 3\n');
  assert.equal(p.entries.get('a')?.value, '3');
  assert.equal(p.entries.get('a')?.line, 4);
  assert.deepEqual(
    p.problems.map((x) => `${x.line}:${x.severity}:${x.message}`),
    [
      `2:error:missing '=' after parameter name: "not a param"`,
      '3:error:bad parameter name: "b-c"',
      '4:warning:overriding earlier entry at line 1: a=1',
    ],
  );
});

const vars: Record<string, string> = { a: 'A', b: '$a-b', empty: '', loop: '$loop' };
const look = (n: string) => vars[n];

for (const [input, want] of [
  ['$a', 'A'],
  ['${a}', 'A'],
  ['$(a)', 'A'],
  ['x$b', 'xA-b'],
  ['${a?yes}', 'yes'],
  ['${empty?yes}', ''],
  ['${empty:no}', 'no'],
  ['${a:no}', ''],
  ['${a?{with space}}', 'with space'],
  ['$undefined.', '.'],
  ['$$a', '$a'],
] as const) {
  test(`expand ${input}`, () => assert.equal(expand(input, look), want));
}

test('expand detects recursion', () => {
  assert.throws(() => expand('$loop', look), /too deep/);
});

test('splitList: commas and whitespace, braces kept whole', () => {
  assert.deepEqual(splitList('a, b  c,,d'), ['a', 'b', 'c', 'd']);
  assert.deepEqual(splitList('check_client_access inline:{ 1.2.3.4=REJECT, 5.6.7.8=OK }, permit'), [
    'check_client_access',
    'inline:{ 1.2.3.4=REJECT, 5.6.7.8=OK }',
    'permit',
  ]);
});

for (const [text, unit, ms] of [
  ['300s', 's', 300_000],
  ['5m', 's', 300_000],
  ['2h', 's', 7_200_000],
  ['35d', 's', 35 * 86_400_000],
  ['1w', 's', 604_800_000],
  ['5', 'd', 5 * 86_400_000],
  ['10', 's', 10_000],
  ['x', 's', null],
  ['5y', 's', null],
] as const) {
  test(`duration ${text} (${unit})`, () => assert.equal(parseDuration(text, unit), ms));
}

test('formatDuration picks the largest exact unit', () => {
  assert.equal(formatDuration(300_000), '5m');
  assert.equal(formatDuration(90_000), '90s');
  assert.equal(formatDuration(86_400_000 * 7), '1w');
});

test('Config: defaults, expansion, typed accessors and problems', () => {
  const c = configFromText('/etc/gg', '/etc/gg/main.cf', [
    'myhostname = mx.example.com',
    'smtpd_delay_reject = maybe',
    'greylist_delay = 5 minutes',
    'no_such_param = 1',
    'smtpd_port = 70000',
    'mynetworks_style = bogus',
  ].join('\n'));
  assert.equal(c.get('mydomain'), 'example.com');
  assert.equal(c.get('myorigin'), 'mx.example.com');
  assert.deepEqual(c.list('mydestination'), ['mx.example.com', 'localhost.example.com', 'localhost']);
  assert.equal(c.time('maximal_queue_lifetime'), 5 * 86_400_000);
  assert.equal(c.int('message_size_limit'), 10240000);
  assert.equal(c.bool('smtpd_helo_required'), false);
  assert.equal(c.resolvePath('client_access'), '/etc/gg/client_access');
  assert.deepEqual(
    c.problems.map((p) => `${p.line}:${p.severity}:${p.message}`),
    [
      '2:error:bad value for smtpd_delay_reject: "maybe": expected yes or no',
      '3:error:bad value for greylist_delay: "5 minutes": expected a time value such as 300s, 5m, 2h, 35d or 1w',
      '4:warning:unknown parameter: no_such_param (ignored)',
      '5:error:bad value for smtpd_port: "70000": not a TCP port',
      '6:error:bad value for mynetworks_style: "bogus": expected one of host, subnet, class',
    ],
  );
  assert.throws(() => c.bool('smtpd_delay_reject'), /main\.cf:2: bad value for smtpd_delay_reject/);
});

test('Config: mydomain of a two-label hostname is localdomain, as Postfix', () => {
  const c = configFromText('/x', '/x/main.cf', 'myhostname = example.com\n');
  assert.equal(c.get('mydomain'), 'localdomain');
});

test('Config: restriction classes are not unknown parameters', () => {
  const c = configFromText('/x', '/x/main.cf', 'smtpd_restriction_classes = strict\nstrict = reject\n');
  assert.deepEqual(c.problems, []);
});

test('Config: mynetworks default follows mynetworks_style=host', () => {
  const c = configFromText('/x', '/x/main.cf', '');
  assert.match(c.get('mynetworks'), /^127\.0\.0\.0\/8 \[::ffff:127\.0\.0\.0\]\/104 \[::1\]\/128/);
});
