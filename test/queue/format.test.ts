/**
 * @module test/queue/format
 * SUMMARY: golden output of `postqueue -p` and `-j` from ListedMessage values: Postfix's
 * short and long column layouts (expected texts produced independently with C printf
 * formats from showq_compat.c), status marks, reason lines, MAILER-DAEMON, local-part
 * quoting, the Kbytes trailer, and JSON quoting as quote_for_json() does it.
 */
process.env.TZ = 'UTC';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ListedMessage } from '../../src/queue/admin.js';
import { asctime, formatJsonLine, formatShowq, quote822Local, quoteForJson } from '../../src/queue/format.js';

const REFUSED = 'connect to mx.example.com[192.0.2.1]:25: Connection refused';
const GREY = 'host mx.example.net[198.51.100.7] said: 450 4.2.0 <c@example.net>: Recipient address rejected: Greylisted, see RFC 6647 (in reply to RCPT TO command)';

const MESSAGES: ListedMessage[] = [
  { queue: 'active', id: '8A3B61C0E2F', arrivalTime: 1_700_000_000_000, messageSize: 2048, forcedExpire: false, sender: 'alice@example.org', recipients: [{ address: 'bob@example.com', origAddress: 'bob@example.com' }] },
  { queue: 'incoming', id: '1F2E3D4C5B', arrivalTime: 1_700_003_600_000, messageSize: 100, forcedExpire: false, sender: '', recipients: [{ address: 'postmaster@example.com', origAddress: 'postmaster@example.com' }] },
  {
    queue: 'deferred',
    id: '0ABCDE12345',
    arrivalTime: 1_700_086_400_000,
    messageSize: 5000,
    forcedExpire: true,
    sender: 'john doe@example.org',
    recipients: [
      { address: 'a@example.com', origAddress: 'a@example.com', delayReason: REFUSED },
      { address: 'b@example.com', origAddress: 'b@example.com', delayReason: REFUSED },
      { address: 'c@example.net', origAddress: 'c@example.net', delayReason: GREY },
      { address: 'd@example.net', origAddress: 'd@example.net' },
    ],
  },
  { queue: 'hold', id: 'FFFFF1', arrivalTime: 1_700_000_000_000, messageSize: 1, forcedExpire: false, sender: 'x@example.org', recipients: [] },
];

const SHORT_GOLDEN =
  '-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n' +
  '8A3B61C0E2F*    2048 Tue Nov 14 22:13:20  alice@example.org\n' +
  '                                         bob@example.com\n' +
  '\n' +
  '1F2E3D4C5B      100 Tue Nov 14 23:13:20  MAILER-DAEMON\n' +
  '                                         postmaster@example.com\n' +
  '\n' +
  '0ABCDE12345#    5000 Wed Nov 15 22:13:20  "john doe"@example.org\n' +
  '                 (connect to mx.example.com[192.0.2.1]:25: Connection refused)\n' +
  '                                         a@example.com\n' +
  '                                         b@example.com\n' +
  '(host mx.example.net[198.51.100.7] said: 450 4.2.0 <c@example.net>: Recipient address rejected: Greylisted, see RFC 6647 (in reply to RCPT TO command))\n' +
  '                                         c@example.net\n' +
  '                                                          (reason unavailable)\n' +
  '                                         d@example.net\n' +
  '\n' +
  'FFFFF1!           1 Tue Nov 14 22:13:20  x@example.org\n' +
  '\n' +
  '-- 6 Kbytes in 4 Requests.\n';

const LONG_GOLDEN =
  '----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n' +
  '8A3B61C0E2F*          2048 Tue Nov 14 22:13:20 alice@example.org\n' +
  '                                               bob@example.com\n' +
  '\n' +
  '1F2E3D4C5B             100 Tue Nov 14 23:13:20 MAILER-DAEMON\n' +
  '                                               postmaster@example.com\n' +
  '\n' +
  '0ABCDE12345#          5000 Wed Nov 15 22:13:20 "john doe"@example.org\n' +
  '                 (connect to mx.example.com[192.0.2.1]:25: Connection refused)\n' +
  '                                               a@example.com\n' +
  '                                               b@example.com\n' +
  '(host mx.example.net[198.51.100.7] said: 450 4.2.0 <c@example.net>: Recipient address rejected: Greylisted, see RFC 6647 (in reply to RCPT TO command))\n' +
  '                                               c@example.net\n' +
  '                                                          (reason unavailable)\n' +
  '                                               d@example.net\n' +
  '\n' +
  'FFFFF1!                  1 Tue Nov 14 22:13:20 x@example.org\n' +
  '\n' +
  '-- 6 Kbytes in 4 Requests.\n';

describe('formatShowq (postqueue -p)', () => {
  const cases: Array<[string, ListedMessage[], boolean, string]> = [
    ['empty queue', [], false, 'Mail queue is empty\n'],
    [
      'one message: singular Request',
      MESSAGES.slice(0, 1),
      false,
      '-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n8A3B61C0E2F*    2048 Tue Nov 14 22:13:20  alice@example.org\n                                         bob@example.com\n\n-- 2 Kbytes in 1 Request.\n',
    ],
    ['every status, reasons and quoting: short IDs', MESSAGES, false, SHORT_GOLDEN],
    ['the same with enable_long_queue_ids', MESSAGES, true, LONG_GOLDEN],
  ];
  for (const [name, msgs, long, want] of cases) it(name, () => assert.equal(formatShowq(msgs, { longQueueIds: long }), want));

  it('control characters are shown as ?', () => {
    const m: ListedMessage = { ...MESSAGES[1]!, sender: 'evil\r\nX@example.org', recipients: [{ address: 'a@b', origAddress: 'a@b', delayReason: 'bad\tthing' }] };
    const out = formatShowq([m]);
    // quote_822_local backslash-escapes the CR before printable() hides both controls.
    assert.ok(out.includes('"evil\\??X"@example.org\n'), out);
    assert.ok(out.includes('(bad?thing)\n'));
  });
});

describe('formatJsonLine (postqueue -j)', () => {
  it('matches Postfix member order and spacing', () => {
    assert.deepEqual(MESSAGES.map(formatJsonLine), [
      '{"queue_name": "active", "queue_id": "8A3B61C0E2F", "arrival_time": 1700000000, "message_size": 2048, "forced_expire": false, "sender": "alice@example.org", "recipients": [{"address": "bob@example.com"}]}\n',
      '{"queue_name": "incoming", "queue_id": "1F2E3D4C5B", "arrival_time": 1700003600, "message_size": 100, "forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"address": "postmaster@example.com"}]}\n',
      `{"queue_name": "deferred", "queue_id": "0ABCDE12345", "arrival_time": 1700086400, "message_size": 5000, "forced_expire": true, "sender": "\\"john doe\\"@example.org", "recipients": [{"address": "a@example.com", "delay_reason": "${REFUSED}"}, {"address": "b@example.com", "delay_reason": "${REFUSED}"}, {"address": "c@example.net", "delay_reason": "${GREY}"}, {"address": "d@example.net"}]}\n`,
      '{"queue_name": "hold", "queue_id": "FFFFF1", "arrival_time": 1700000000, "message_size": 1, "forced_expire": false, "sender": "x@example.org", "recipients": []}\n',
    ]);
  });
  it('every line is valid JSON', () => {
    for (const m of MESSAGES) {
      const o = JSON.parse(formatJsonLine(m));
      assert.equal(o.queue_id, m.id);
    }
  });
});

describe('helpers', () => {
  it('asctime pads the day with a space', () => assert.equal(asctime(Date.UTC(2024, 0, 5, 3, 4, 5)), 'Fri Jan  5 03:04:05 2024'));
  const quoting: Array<[string, string]> = [
    ['user@example.com', 'user@example.com'],
    ['first.last@example.com', 'first.last@example.com'],
    ['john doe@example.com', '"john doe"@example.com'],
    ['a..b@example.com', '"a..b"@example.com'],
    ['.a@example.com', '".a"@example.com'],
    ['we"ird@example.com', '"we\\"ird"@example.com'],
    ['postmaster', 'postmaster'],
    ['@relay.example:user@example.com', '@relay.example:user@example.com'],
    ['üser@example.com', 'üser@example.com'],
  ];
  for (const [input, want] of quoting) it(`quote822Local ${input}`, () => assert.equal(quote822Local(input), want));
  it('quoteForJson', () => assert.equal(quoteForJson('a"b\\c\n\t\x01\x7f'), 'a\\"b\\\\c\\n\\t\\u0001\\u007F'));
});
