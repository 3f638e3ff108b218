/**
 * Several sessions on one mailbox: flag changes and expunges of one session reach the
 * other at the moments RFC 3501 7.4.1 allows (never during FETCH, STORE or SEARCH), IDLE
 * receives deliveries, flag changes and expunges as they happen, and UIDVALIDITY and UIDs
 * survive a restart of the server.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MaildirStore } from '../../src/mailbox/maildir.js';
import { ImapFixture, sampleMessage } from './imap-fixture.js';
import { ImapClient } from './imap-client.js';

let f: ImapFixture;
let n = 0;

before(async () => {
  f = await ImapFixture.start({ idleNotifyMs: 400, idlePollMs: 300 });
});

after(async () => {
  await f.close();
});

/** A fresh user with COUNT messages in INBOX, and two sessions that selected it. */
async function twoSessions(count: number): Promise<{ user: string; a: ImapClient; b: ImapClient }> {
  const user = `user${++n}`;
  await f.users.add(user, 'pw');
  for (let i = 1; i <= count; i++) await f.deliver(user, sampleMessage(`msg ${i}`));
  const a = await ImapClient.connect(f.plainPort);
  const b = await ImapClient.connect(f.plainPort);
  await a.login(user, 'pw');
  await b.login(user, 'pw');
  await a.cmd('SELECT INBOX');
  await b.cmd('SELECT INBOX');
  return { user, a, b };
}

test('a flag change of one session shows up in the other at its next command', async () => {
  const { a, b } = await twoSessions(3);
  await b.cmd('STORE 2 +FLAGS.SILENT (\\Flagged)');
  const r = await a.cmd('NOOP');
  // A selected first, so the messages are \Recent in its session (RFC 3501 2.3.2).
  assert.deepEqual(r.untagged, ['* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))']);
  assert.deepEqual((await a.cmd('NOOP')).untagged, []);
  await b.cmd('STORE 3 +FLAGS.SILENT ($Label1)');
  const k = await a.cmd('CHECK');
  assert.ok(k.untagged.some((l) => l.startsWith('* FLAGS (') && l.includes('$Label1')), k.untagged.join('\n'));
  assert.ok(k.untagged.includes('* 3 FETCH (UID 3 FLAGS ($Label1 \\Recent))'), k.untagged.join('\n'));
  a.close();
  b.close();
});

test('an expunge of one session: held back during FETCH, STORE and SEARCH, sent after NOOP', async () => {
  const { a, b } = await twoSessions(4);
  await b.cmd('STORE 2 +FLAGS.SILENT (\\Deleted)');
  const ex = await b.cmd('EXPUNGE');
  assert.deepEqual(ex.untagged, ['* 2 EXPUNGE']);
  // A still numbers 4 messages: FETCH answers without EXPUNGE, and with the old numbering.
  const fetch = await a.cmd('FETCH 1:* (UID)');
  assert.ok(!fetch.untagged.some((l) => l.includes('EXPUNGE')), fetch.untagged.join('\n'));
  assert.ok(fetch.untagged.includes('* 4 FETCH (UID 4)'), fetch.untagged.join('\n'));
  const store = await a.cmd('STORE 4 +FLAGS (\\Seen)');
  assert.ok(!store.untagged.some((l) => l.includes('EXPUNGE')));
  assert.ok(store.untagged.includes('* 4 FETCH (FLAGS (\\Seen \\Recent))'), store.untagged.join('\n'));
  // Reading the body of the expunged message is not possible any more.
  const gone = await a.cmd('FETCH 2 BODY.PEEK[]');
  assert.equal(gone.line, 'NO [EXPUNGEISSUED] Some of the requested messages no longer exist.');
  const noop = await a.cmd('NOOP');
  assert.deepEqual(noop.untagged.filter((l) => l.includes('EXPUNGE')), ['* 2 EXPUNGE']);
  const after = await a.cmd('FETCH 1:* (UID)');
  assert.deepEqual(after.untagged, ['* 1 FETCH (UID 1)', '* 2 FETCH (UID 3)', '* 3 FETCH (UID 4)']);
  // B sees A's \Seen.
  const bn = await b.cmd('NOOP');
  assert.deepEqual(bn.untagged, ['* 3 FETCH (UID 4 FLAGS (\\Seen))']);
  a.close();
  b.close();
});

test('an expunge is sent after UID FETCH, which may carry it (RFC 3501 7.4.1)', async () => {
  const { a, b } = await twoSessions(3);
  await b.cmd('STORE 1 +FLAGS.SILENT (\\Deleted)');
  await b.cmd('EXPUNGE');
  const r = await a.cmd('UID FETCH 1:* (FLAGS)');
  assert.ok(r.untagged.includes('* 1 EXPUNGE'), r.untagged.join('\n'));
  assert.equal(r.untagged[r.untagged.length - 1], '* 1 EXPUNGE');
  a.close();
  b.close();
});

test('APPEND and COPY by one session: the other sees EXISTS and RECENT', async () => {
  const { a, b } = await twoSessions(1);
  const msg = sampleMessage('appended by b');
  const app = await b.cmd(`APPEND INBOX {${msg.length}+}\r\n${msg}`);
  assert.match(app.line, /^OK \[APPENDUID \d+ 2\] /);
  // B itself is told at once.
  assert.ok(app.untagged.includes('* 2 EXISTS'), app.untagged.join('\n'));
  const r = await a.cmd('NOOP');
  assert.ok(r.untagged.includes('* 2 EXISTS'), r.untagged.join('\n'));
  assert.ok(r.untagged.some((l) => /^\* \d RECENT$/.test(l)));
  const f1 = await a.cmd('FETCH 2 (UID RFC822.SIZE)');
  assert.equal(f1.untagged[0], `* 2 FETCH (UID 2 RFC822.SIZE ${msg.length})`);
  a.close();
  b.close();
});

test('IDLE: a delivery shows up as EXISTS while idling; DONE ends it', async () => {
  const { user, a, b } = await twoSessions(2);
  b.close();
  a.send('A100 IDLE\r\n');
  assert.equal((await a.next()).text, '+ idling');
  await f.deliver(user, sampleMessage('delivered while idle'));
  const rs = await a.until((r) => r.text.endsWith(' EXISTS'), 5000);
  assert.equal(rs.pop()!.text, '* 3 EXISTS');
  const recent = await a.next();
  assert.equal(recent.text, '* 3 RECENT');
  a.send('DONE\r\n');
  const done = await a.reply('A100');
  assert.equal(done.line, 'OK Idle completed.');
  const fl = await a.cmd('FETCH 3 FLAGS');
  assert.deepEqual(fl.untagged, ['* 3 FETCH (FLAGS (\\Recent))']);
  // Another session selecting now does not get it as \Recent.
  const c = await ImapClient.connect(f.plainPort);
  await c.login(user, 'pw');
  assert.ok((await c.cmd('SELECT INBOX')).untagged.includes('* 0 RECENT'));
  c.close();
  a.close();
});

test('IDLE: another session\'s expunge and flag change arrive during IDLE', async () => {
  const { a, b } = await twoSessions(3);
  a.send('A100 IDLE\r\n');
  assert.equal((await a.next()).text, '+ idling');
  await b.cmd('STORE 1 +FLAGS (\\Answered)');
  const flags = await a.until((r) => r.text.includes('FETCH'), 5000);
  assert.equal(flags.pop()!.text, '* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))');
  await b.cmd('STORE 3 +FLAGS.SILENT (\\Deleted)');
  await b.cmd('EXPUNGE');
  const ex = await a.until((r) => r.text.includes('EXPUNGE'), 5000);
  assert.equal(ex.pop()!.text, '* 3 EXPUNGE');
  a.send('DONE\r\n');
  assert.equal((await a.reply('A100')).line, 'OK Idle completed.');
  a.close();
  b.close();
});

test('IDLE: keepalive, a delivery by another process (seen by polling the disk), and a bad DONE', async () => {
  const { user, a, b } = await twoSessions(1);
  b.close();
  a.send('A100 IDLE\r\n');
  await a.next();
  const still = await a.next(5000);
  assert.equal(still.text, '* OK Still here');
  // Another MaildirStore (as another process would have): no change event reaches us.
  const other = new MaildirStore(f.dataDir);
  try {
    await other.deliver(user, Buffer.from(sampleMessage('from elsewhere')));
  } finally {
    other.close();
  }
  const rs = await a.until((r) => r.text.endsWith(' EXISTS'), 5000);
  assert.equal(rs.pop()!.text, '* 2 EXISTS');
  a.send('NOTDONE\r\n');
  assert.equal((await a.reply('A100')).line, 'BAD Expected DONE.');
  assert.equal((await a.cmd('NOOP')).status, 'OK');
  a.close();
});

test('IDLE in the authenticated state waits for DONE', async () => {
  const c = await ImapClient.connect(f.plainPort);
  await c.login('alice', 'wonderland');
  c.send('A9 IDLE\r\n');
  assert.equal((await c.next()).text, '+ idling');
  c.send('done\r\n');
  assert.equal((await c.reply('A9')).line, 'OK Idle completed.');
  c.close();
});

test('the selected folder deleted by another session: BYE', async () => {
  const user = `user${++n}`;
  await f.users.add(user, 'pw');
  const a = await ImapClient.connect(f.plainPort);
  const b = await ImapClient.connect(f.plainPort);
  await a.login(user, 'pw');
  await b.login(user, 'pw');
  await a.cmd('CREATE Doomed');
  await a.cmd('SELECT Doomed');
  assert.equal((await b.cmd('DELETE Doomed')).status, 'OK');
  a.send('A9 NOOP\r\n');
  const bye = await a.until((r) => r.text.startsWith('* BYE'), 5000);
  assert.equal(bye.pop()!.text, '* BYE Selected mailbox was deleted, have to disconnect.');
  await a.waitClosed();
  b.close();
});

test('UIDVALIDITY and UIDs are the same after a restart; new mail continues the UIDs', async () => {
  const user = `user${++n}`;
  await f.users.add(user, 'pw');
  for (let i = 1; i <= 3; i++) await f.deliver(user, sampleMessage(`keep ${i}`));
  const a = await ImapClient.connect(f.plainPort);
  await a.login(user, 'pw');
  await a.cmd('SELECT INBOX');
  await a.cmd('STORE 2 +FLAGS (\\Deleted)');
  await a.cmd('EXPUNGE');
  const before = await a.cmd('EXAMINE INBOX');
  const validity = before.untagged.find((l) => l.includes('UIDVALIDITY'));
  const uids = await a.cmd('UID FETCH 1:* (UID FLAGS)');
  await f.restart();
  await a.waitClosed();
  const c = await ImapClient.connect(f.plainPort);
  await c.login(user, 'pw');
  const again = await c.cmd('EXAMINE INBOX');
  assert.equal(again.untagged.find((l) => l.includes('UIDVALIDITY')), validity);
  assert.ok(again.untagged.includes('* OK [UIDNEXT 4] Predicted next UID'), again.untagged.join('\n'));
  assert.deepEqual((await c.cmd('UID FETCH 1:* (UID FLAGS)')).untagged, uids.untagged);
  await f.deliver(user, sampleMessage('after restart'));
  const st = await c.cmd('STATUS INBOX (UIDNEXT MESSAGES)');
  assert.equal(st.untagged[0], '* STATUS INBOX (UIDNEXT 5 MESSAGES 3)');
  c.close();
});
