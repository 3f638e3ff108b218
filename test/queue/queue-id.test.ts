/**
 * @module test/queue/queue-id
 * SUMMARY: Postfix's short (%05X usec + %X inode) and long (base52 time, z, base51 inode)
 * queue ID forms, and isQueueId() as mail_queue_id_ok().
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isQueueId, makeQueueId } from '../../src/queue/queue-id.js';

describe('makeQueueId', () => {
  it('short form: five hex digits of microseconds, then the inode in hex', () => {
    assert.equal(makeQueueId(0x61c0e2fn, 'short', { sec: 1700000000, usec: 0x8a3b }), '08A3B61C0E2F');
    assert.equal(makeQueueId(0x1n, 'short', { sec: 1, usec: 999999 }), 'F423F1');
  });
  it('long form: 6 base-52 digits of seconds, 4 of microseconds, z, base-51 inode', () => {
    const id = makeQueueId(123456n, 'long', { sec: 1700000000, usec: 5 });
    assert.match(id, /^[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+$/);
    assert.equal(id.slice(6, 10), '0005');
  });
  it('long IDs sort by time', () => {
    const a = makeQueueId(99999n, 'long', { sec: 1700000000, usec: 999999 });
    const b = makeQueueId(1n, 'long', { sec: 1700000001, usec: 0 });
    assert.ok(a < b);
  });
  it('different inodes at the same instant give different IDs', () => {
    const now = { sec: 1700000000, usec: 42 };
    assert.notEqual(makeQueueId(10n, 'short', now), makeQueueId(11n, 'short', now));
    assert.notEqual(makeQueueId(10n, 'long', now), makeQueueId(11n, 'long', now));
  });
});

describe('isQueueId', () => {
  const cases: Array<[string, boolean]> = [
    ['8A3B61C0E2F', true],
    ['4VgG2x0GQqz9rxK', true],
    ['', false],
    ['ALL', true],
    ['../etc/passwd', false],
    ['.tmp-1-2', false],
    ['8A3B61C0E2F*', false],
    ['8A3B61C0E2F!', false],
    ['a b', false],
    ['x'.repeat(65), false],
  ];
  for (const [s, want] of cases) it(`${JSON.stringify(s)} -> ${want}`, () => assert.equal(isQueueId(s), want));
});
