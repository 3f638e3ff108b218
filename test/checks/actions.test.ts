/**
 * @module test/checks/actions
 * SUMMARY: cleanup_act() semantics, one table-driven case per action and argument problem:
 * what the message state becomes, what happens to the matched text, what is logged (with
 * Postfix's action word) and which msg_warn() text a bad argument gives.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ActionState, dsnPrepend, formatActLog, type ActResult, type CheckWhere, type MatchContext } from '../../src/checks/actions.js';

function match(where: CheckWhere = 'header', content = 'Subject: test'): MatchContext {
  const table = where === 'body' ? 'body_checks' : where === 'mime header' ? 'mime_header_checks' : where === 'nested header' ? 'nested_header_checks' : 'header_checks';
  return { where, table, rule: `${table}:7`, content };
}

interface Case {
  readonly name: string;
  readonly value: string;
  readonly where?: CheckWhere;
  readonly result: ActResult;
  /** Logged decisions: [event, action word, text]. */
  readonly logged: ReadonlyArray<readonly [string, string, string]>;
  readonly warnings?: readonly string[];
  /** Checks go on after it. */
  readonly filtering: boolean;
  readonly check?: (s: ActionState) => void;
}

const KEEP = { kind: 'keep' } as const;
const DROP = { kind: 'drop' } as const;

const CASES: readonly Case[] = [
  {
    name: 'REJECT without text: 550 5.7.1 message content rejected',
    value: 'REJECT',
    result: KEEP,
    logged: [['reject', 'reject', '5.7.1 message content rejected']],
    filtering: false,
    check: (s) => assert.deepEqual(s.reject?.reply, { code: 550, status: '5.7.1', text: 'message content rejected' }),
  },
  {
    name: 'REJECT text: 5.7.1 is prepended',
    value: 'REJECT Spam not welcome',
    result: KEEP,
    logged: [['reject', 'reject', '5.7.1 Spam not welcome']],
    filtering: false,
    check: (s) => assert.deepEqual(s.reject?.reply, { code: 550, status: '5.7.1', text: 'Spam not welcome' }),
  },
  {
    name: 'REJECT with its own 5.x.x status',
    value: 'reject 5.7.0 Policy violation',
    result: KEEP,
    logged: [['reject', 'reject', '5.7.0 Policy violation']],
    filtering: false,
    check: (s) => assert.deepEqual(s.reject?.reply, { code: 550, status: '5.7.0', text: 'Policy violation' }),
  },
  {
    name: 'REJECT 4.x.x text defers: 451 4.x.x text',
    value: 'REJECT 4.7.1 Try again later',
    result: KEEP,
    logged: [['defer', 'reject', '4.7.1 Try again later']],
    filtering: false,
    check: (s) => assert.deepEqual(s.reject?.reply, { code: 451, status: '4.7.1', text: 'Try again later' }),
  },
  {
    name: 'REJECT 2.x.x is coerced to 4.x.x with a warning',
    value: 'REJECT 2.0.0 odd',
    result: KEEP,
    logged: [['defer', 'reject', '4.0.0 odd']],
    warnings: ['bad DSN action in 2.0.0 odd -- need 4.x.x or 5.x.x'],
    filtering: false,
    check: (s) => assert.equal(s.reject?.reply.code, 451),
  },
  {
    name: 'REJECT "550 text" is not a status: the code stays part of the text',
    value: 'REJECT 550 go away',
    result: KEEP,
    logged: [['reject', 'reject', '5.7.1 550 go away']],
    filtering: false,
  },
  { name: 'WARN logs "warning"', value: 'WARN look at this', result: KEEP, logged: [['warn', 'warning', 'look at this']], filtering: true },
  { name: 'WARN without text', value: 'warn', result: KEEP, logged: [['warn', 'warning', '']], filtering: true },
  { name: 'INFO', value: 'INFO fyi', result: KEEP, logged: [['info', 'info', 'fyi']], filtering: true },
  {
    name: 'DISCARD stops the checks',
    value: 'DISCARD bulk',
    result: KEEP,
    logged: [['discard', 'discard', 'bulk']],
    filtering: false,
    check: (s) => assert.equal(s.discard?.text, 'bulk'),
  },
  {
    name: 'HOLD does not stop the checks',
    value: 'HOLD review',
    result: KEEP,
    logged: [['hold', 'hold', 'review']],
    filtering: true,
    check: (s) => assert.equal(s.hold?.rule, 'header_checks:7'),
  },
  {
    name: 'PREPEND a valid header',
    value: 'PREPEND X-Flag: yes',
    result: { kind: 'prepend', text: 'X-Flag: yes' },
    logged: [['prepend', 'prepend', 'X-Flag: yes']],
    filtering: true,
  },
  {
    name: 'PREPEND text that is not a header: warning, no-op',
    value: 'PREPEND not a header',
    result: KEEP,
    logged: [],
    warnings: ['bad PREPEND header text "not a header" in header_checks map -- need "headername: headervalue"'],
    filtering: true,
  },
  {
    name: 'PREPEND in the body: any line',
    value: 'PREPEND just a line',
    where: 'body',
    result: { kind: 'prepend', text: 'just a line' },
    logged: [['prepend', 'prepend', 'just a line']],
    filtering: true,
  },
  { name: 'PREPEND without text', value: 'PREPEND', result: KEEP, logged: [], warnings: ['PREPEND action without text in header_checks map'], filtering: true },
  {
    name: 'REPLACE a header',
    value: 'REPLACE Subject: [SPAM] test',
    result: { kind: 'replace', text: 'Subject: [SPAM] test' },
    logged: [['replace', 'replace', 'Subject: [SPAM] test']],
    filtering: true,
  },
  {
    name: 'REPLACE a header with a non-header: warning, no-op',
    value: 'REPLACE oops',
    where: 'mime header',
    result: KEEP,
    logged: [],
    warnings: ['bad REPLACE header text "oops" in mime_header_checks map -- need "headername: headervalue"'],
    filtering: true,
  },
  { name: 'REPLACE a body line', value: 'REPLACE [removed]', where: 'body', result: { kind: 'replace', text: '[removed]' }, logged: [['replace', 'replace', '[removed]']], filtering: true },
  { name: 'REPLACE without text', value: 'REPLACE', where: 'body', result: KEEP, logged: [], warnings: ['REPLACE action without text in body_checks map'], filtering: true },
  { name: 'IGNORE drops, unlogged', value: 'IGNORE', result: DROP, logged: [], filtering: true },
  { name: 'IGNORE with text', value: 'ignore whatever', result: DROP, logged: [], filtering: true },
  { name: 'STRIP drops, logged', value: 'STRIP removing tracker', result: DROP, logged: [['strip', 'strip', 'removing tracker']], filtering: true },
  {
    name: 'REDIRECT stops the checks',
    value: 'REDIRECT abuse@example.com',
    result: KEEP,
    logged: [['redirect', 'redirect', 'abuse@example.com']],
    filtering: false,
    check: (s) => assert.deepEqual(s.redirect, { address: 'abuse@example.com', rule: 'header_checks:7' }),
  },
  {
    name: 'REDIRECT without @: warning, ignored',
    value: 'REDIRECT nobody',
    result: KEEP,
    logged: [],
    warnings: ['bad REDIRECT target "nobody" in header_checks map -- need user@domain'],
    filtering: true,
    check: (s) => assert.equal(s.redirect, null),
  },
  {
    name: 'FILTER transport:destination',
    value: 'FILTER smtp:[127.0.0.1]:10025',
    result: KEEP,
    logged: [['filter', 'filter', 'smtp:[127.0.0.1]:10025']],
    filtering: true,
    check: (s) => assert.deepEqual(s.filter, { nexthop: 'smtp:[127.0.0.1]:10025', rule: 'header_checks:7' }),
  },
  { name: 'FILTER without a colon', value: 'FILTER amavis', result: KEEP, logged: [], warnings: ['bad FILTER command amavis in header_checks -- need transport:destination'], filtering: true },
  { name: 'FILTER without argument', value: 'FILTER', result: KEEP, logged: [], warnings: ['missing FILTER command argument in header_checks map'], filtering: true },
  {
    name: 'BCC',
    value: 'BCC archive@example.com',
    result: KEEP,
    logged: [['bcc', 'bcc', 'archive@example.com']],
    filtering: true,
    check: (s) => assert.deepEqual(s.bcc, [{ address: 'archive@example.com', rule: 'header_checks:7' }]),
  },
  { name: 'BCC without @', value: 'BCC archive', result: KEEP, logged: [], warnings: ['bad BCC address "archive" in header_checks map -- need user@domain'], filtering: true },
  { name: 'PASS stops the checks', value: 'PASS trusted', result: KEEP, logged: [['pass', 'pass', 'trusted']], filtering: false },
  { name: 'DUNNO', value: 'DUNNO', result: KEEP, logged: [], filtering: true },
  { name: 'OK is DUNNO', value: 'OK', result: KEEP, logged: [], filtering: true },
  { name: 'an unknown word: warning, ignored', value: 'FROB nicate', result: KEEP, logged: [], warnings: ['unknown command in header_checks map: FROB nicate'], filtering: true },
  { name: 'DELAY is compiled out of Postfix: unknown', value: 'DELAY 1h', result: KEEP, logged: [], warnings: ['unknown command in header_checks map: DELAY 1h'], filtering: true },
  { name: 'the action word ends at a space or tab only', value: 'REJECT,now', result: KEEP, logged: [], warnings: ['unknown command in header_checks map: REJECT,now'], filtering: true },
  { name: 'tab between word and text', value: 'WaRn\tmixed case', result: KEEP, logged: [['warn', 'warning', 'mixed case']], filtering: true },
];

describe('cleanup_act(): every action', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const s = new ActionState();
      const result = s.act(match(c.where), c.value);
      assert.deepEqual(result, c.result);
      assert.deepEqual(
        s.decisions.map((d) => [d.event, d.action, d.text]),
        c.logged.map((l) => [...l]),
      );
      assert.ok(s.decisions.every((d) => d.logged && d.rule.endsWith(':7')));
      assert.deepEqual(
        s.warnings.map((w) => w.message),
        [...(c.warnings ?? [])],
      );
      assert.equal(s.filtering, c.filtering);
      c.check?.(s);
    });
  }
});

describe('repeated actions', () => {
  it('only the first HOLD counts and is logged', () => {
    const s = new ActionState();
    s.act(match(), 'HOLD first');
    s.act(match(), 'HOLD second');
    assert.equal(s.hold?.text, 'first');
    assert.equal(s.decisions.length, 1);
  });
  it('the last FILTER and REDIRECT win; BCCs accumulate without duplicates', () => {
    const s = new ActionState();
    s.act(match(), 'FILTER a:b');
    s.act(match(), 'FILTER c:d');
    s.act(match(), 'BCC x@y');
    s.act(match(), 'BCC x@y');
    s.act(match(), 'BCC z@y');
    s.act(match(), 'REDIRECT one@x');
    s.act(match(), 'REDIRECT two@x');
    assert.equal(s.filter?.nexthop, 'c:d');
    assert.equal(s.redirect?.address, 'two@x');
    assert.deepEqual(
      s.bcc.map((b) => b.address),
      ['x@y', 'z@y'],
    );
  });
  it('trace mode records DUNNO, OK and IGNORE as unlogged decisions', () => {
    const s = new ActionState({ trace: true });
    s.act(match(), 'DUNNO');
    s.act(match(), 'OK');
    s.act(match(), 'IGNORE');
    assert.deepEqual(
      s.decisions.map((d) => [d.event, d.action, d.logged]),
      [
        ['dunno', 'dunno', false],
        ['dunno', 'ok', false],
        ['ignore', 'ignore', false],
      ],
    );
  });
  it('the matched text is logged truncated to 200 characters', () => {
    const s = new ActionState();
    s.act(match('body', 'x'.repeat(500)), 'WARN long');
    assert.equal(s.decisions[0]!.matched.length, 200);
  });
});

describe('dsn_prepend()', () => {
  const cases: Array<[string, string, string]> = [
    ['text', '5.7.1', 'text'],
    ['4.2.0 later', '4.2.0', 'later'],
    ['  5.1.10   spaced', '5.1.10', 'spaced'],
    ['5.1234.1 too many digits', '5.7.1', '5.1234.1 too many digits'],
    ['5.7.1x glued', '5.7.1', '5.7.1x glued'],
    ['3.0.0 bad class', '5.7.1', '3.0.0 bad class'],
    ['5.7.1', '5.7.1', ''],
  ];
  for (const [input, status, text] of cases) {
    it(JSON.stringify(input), () => assert.deepEqual(dsnPrepend('5.7.1', input), { status, text }));
  }
});

describe('formatActLog(): the cleanup log line', () => {
  it('formats like cleanup_act_log()', () => {
    const s = new ActionState();
    s.act(match('header', 'Subject: buy now'), 'REJECT no thanks');
    assert.equal(
      formatActLog(s.decisions[0]!, {
        queueId: '4Abc123',
        origin: 'mail.example[192.0.2.1]',
        sender: 's@example.org',
        recipient: 'r@example.com',
        protocol: 'ESMTP',
        helo: 'mail.example',
      }),
      '4Abc123: reject: header Subject: buy now from mail.example[192.0.2.1]; from=<s@example.org> to=<r@example.com> proto=ESMTP helo=<mail.example>: 5.7.1 no thanks',
    );
  });
  it('leaves out what it does not know, and an empty text', () => {
    const s = new ActionState();
    s.act(match('body', 'line'), 'WARN');
    assert.equal(formatActLog(s.decisions[0]!, { queueId: 'Q' }), 'Q: warning: body line from unknown;');
  });
});
