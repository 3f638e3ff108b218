/**
 * @module test/imap/mailbox-view
 * SUMMARY: imap/connection's MailboxView over a shared snapshot: two sessions' views start on
 * the store's own MessageInfo array and never change it (flag changes, expunges and new
 * messages stay in the view that saw them), \Recent and the first unseen message as SELECT
 * reports them, and merge() of the same or a changed snapshot.
 * SEE ALSO: RFC 3501 7.4.1; src/mailbox/maildir.ts open().
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FolderSnapshot, MessageInfo } from '../../src/mailbox/mail-store.js';
import { MailboxView } from '../../src/imap/connection.js';

const info = (uid: number, flags: string[] = [], recent = false): MessageInfo => Object.freeze({ uid, flags: Object.freeze(flags), size: 10, internalDate: 0, recent });

function snapshot(messages: MessageInfo[], firstUnseen?: number): FolderSnapshot {
  const base = { folder: 'INBOX', uidValidity: 7, uidNext: 100, messages: Object.freeze(messages), keywords: [] };
  return firstUnseen === undefined ? base : { ...base, firstUnseen };
}

describe('MailboxView over a shared snapshot', () => {
  it('leaves the shared messages alone: flags, expunges and appends stay in one view', () => {
    const snap = snapshot([info(1, ['\\Seen']), info(2), info(3, [], true), info(4, [], true)], 2);
    const a = new MailboxView(snap, false);
    const b = new MailboxView(snap, true);
    assert.equal(a.recentCount, 2);
    assert.equal(a.firstUnseen(), 2);
    a.applyOwnFlags([{ uid: 2, flags: ['\\Seen'] }]);
    assert.deepEqual(a.flagsOf(a.at(2)!), ['\\Seen']);
    assert.equal(a.firstUnseen(), 3);
    assert.deepEqual(b.flagsOf(b.at(2)!), []);
    assert.equal(b.firstUnseen(), 2);
    assert.deepEqual(a.flagsOf(a.at(4)!), ['\\Recent']);
    assert.equal(a.expungeNow([1, 3]).map((x) => x.toString()).join(''), '* 1 EXPUNGE\r\n* 2 EXPUNGE\r\n');
    assert.deepEqual(a.uids(), [2, 4]);
    assert.equal(a.recentCount, 1);
    assert.deepEqual(b.uids(), [1, 2, 3, 4]);
    assert.deepEqual(snap.messages.map((m) => [m.uid, m.flags]), [[1, ['\\Seen']], [2, []], [3, []], [4, []]]);
    assert.equal(a.merge(snapshot([info(2, ['\\Seen']), info(4), info(5, [], true)])), 'ok');
    assert.deepEqual(a.uids(), [2, 4, 5]);
    assert.deepEqual(b.uids(), [1, 2, 3, 4]);
    assert.equal(snap.messages.length, 4);
  });

  it('merges the same snapshot as no change, and a changed one as FETCH/EXISTS updates', () => {
    const snap = snapshot([info(1), info(2)]);
    const v = new MailboxView(snap, false);
    assert.equal(v.merge(snap), 'ok');
    assert.deepEqual(v.updates(true), []);
    assert.equal(v.merge(snapshot([info(1, ['\\Flagged']), info(3)])), 'ok');
    assert.deepEqual(v.updates(true).map((x) => x.toString()), ['* 2 EXPUNGE\r\n', '* 2 EXISTS\r\n', '* 0 RECENT\r\n', '* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n']);
    assert.deepEqual(snap.messages.map((m) => m.flags), [[], []]);
    assert.equal(v.merge({ ...snap, uidValidity: 8 }), 'uidvalidity');
  });
});
