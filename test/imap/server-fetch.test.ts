/**
 * FETCH and SEARCH through the listener: BODY[] byte-exact with what was delivered
 * (prepended Return-Path/Delivered-To included), sections and partials, RFC822.*, the
 * implicit \Seen of a non-PEEK body fetch (with FLAGS in the same response), ENVELOPE and
 * BODYSTRUCTURE, macros, a large message, header-only reads and the ENVELOPE cache agreeing
 * with full reads across sessions, and SEARCH / UID SEARCH over flags, sizes, dates,
 * headers and text.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ImapFixture, sampleMessage } from './imap-fixture.js';
import { ImapClient, type Response } from './imap-client.js';

let f: ImapFixture;
let c: ImapClient;

const MIME =
  'From: "Ann Example" <ann@example.org>\r\nTo: alice@greygate.test, Bob <bob@example.net>\r\nCc: carol@example.com\r\n' +
  'Subject: mime sample\r\nDate: Tue, 1 Mar 2022 08:00:00 +0100\r\nMessage-ID: <mime@example.org>\r\nMIME-Version: 1.0\r\n' +
  'Content-Type: multipart/mixed; boundary="XX"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n' +
  'plain part with needle\r\n--XX\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n' +
  '<p>html</p>\r\n--XX--\r\n';
const PREPEND = ['Return-Path: <ann@example.org>', 'Delivered-To: alice@greygate.test'];
const BIG = Buffer.concat([Buffer.from('Subject: big\r\n\r\n'), Buffer.from(`${'0123456789abcdef'.repeat(64)}\r\n`.repeat(5000))]);

/** The literal bytes of a response `* N FETCH (NAME {n}\r\nBYTES ...)` for item NAME. */
function literalOf(r: Response, name: string): Buffer {
  const head = Buffer.from(`${name} {`);
  const at = r.raw.indexOf(head);
  assert.ok(at >= 0, `${name} in ${r.text.slice(0, 200)}`);
  const close = r.raw.indexOf('}\r\n', at);
  const n = Number(r.raw.subarray(at + head.length, close).toString());
  return r.raw.subarray(close + 3, close + 3 + n);
}

before(async () => {
  f = await ImapFixture.start();
  await f.store.deliver('alice', Buffer.from(MIME), { prepend: PREPEND });
  await f.deliver('alice', sampleMessage('plain one', 'first body\r\n'));
  await f.deliver('alice', BIG);
  c = await ImapClient.connect(f.plainPort);
  await c.login('alice', 'wonderland');
  await c.cmd('SELECT INBOX');
});

after(async () => {
  c.close();
  await f.close();
});

test('BODY.PEEK[] is byte-exact with the delivered message, prepended headers included; RFC822.SIZE agrees', async () => {
  const r = await c.cmd('FETCH 1 (RFC822.SIZE BODY.PEEK[])');
  const expected = Buffer.from(PREPEND.map((h) => `${h}\r\n`).join('') + MIME);
  const body = literalOf(r.responses[0]!, 'BODY[]');
  assert.ok(body.equals(expected));
  assert.match(r.untagged[0]!, new RegExp(`RFC822\\.SIZE ${expected.length} `));
  const flags = await c.cmd('FETCH 1 FLAGS');
  assert.ok(!flags.untagged[0]!.includes('\\Seen'));
});

test('sections: HEADER, TEXT, part numbers, MIME, HEADER.FIELDS(.NOT), partials', async () => {
  const r = await c.cmd(
    'FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject To)] BODY.PEEK[HEADER.FIELDS.NOT (Received Return-Path Delivered-To From To Cc Date Message-ID MIME-Version Content-Type)] ' +
      'BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[2] BODY.PEEK[]<0.11> BODY.PEEK[TEXT]<2.6> BODY.PEEK[3])',
  );
  const resp = r.responses[0]!;
  // Field names come back upper-cased, as Dovecot answers.
  assert.equal(literalOf(resp, 'BODY[HEADER.FIELDS (SUBJECT TO)]').toString(), 'To: alice@greygate.test, Bob <bob@example.net>\r\nSubject: mime sample\r\n\r\n');
  assert.equal(literalOf(resp, 'BODY[HEADER.FIELDS.NOT (RECEIVED RETURN-PATH DELIVERED-TO FROM TO CC DATE MESSAGE-ID MIME-VERSION CONTENT-TYPE)]').toString(), 'Subject: mime sample\r\n\r\n');
  assert.equal(literalOf(resp, 'BODY[1]').toString(), 'plain part with needle');
  assert.equal(literalOf(resp, 'BODY[2.MIME]').toString(), 'Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n');
  assert.equal(literalOf(resp, 'BODY[2]').toString(), '<p>html</p>');
  assert.equal(literalOf(resp, 'BODY[]<0>').toString(), 'Return-Path');
  assert.equal(literalOf(resp, 'BODY[TEXT]<2>').toString(), 'eamble');
  assert.equal(literalOf(resp, 'BODY[3]').length, 0);
  const hdr = await c.cmd('FETCH 2 (RFC822.HEADER RFC822.TEXT)');
  const h = hdr.responses[0]!;
  assert.ok(literalOf(h, 'RFC822.HEADER').toString().endsWith('Message-ID: <plainone@example.org>\r\n\r\n'));
  assert.equal(literalOf(h, 'RFC822.TEXT').toString(), 'first body\r\n');
  // RFC822.TEXT is not a PEEK: it set \Seen, and the response says so.
  assert.match(hdr.untagged[0]!, /FLAGS \(\\Seen \\Recent\)\)$/);
});

test('BODY[] without PEEK sets \\Seen and returns FLAGS; a second fetch does not repeat FLAGS', async () => {
  await c.cmd('STORE 1 -FLAGS.SILENT (\\Seen)');
  const r = await c.cmd('FETCH 1 BODY[HEADER.FIELDS (SUBJECT)]');
  assert.match(r.untagged[0]!, /^\* 1 FETCH \(BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{24\}\r\nSubject: mime sample\r\n\r\n FLAGS \(\\Seen \\Recent\)\)$/);
  const again = await c.cmd('FETCH 1 BODY[HEADER.FIELDS (SUBJECT)]');
  assert.ok(!again.untagged[0]!.includes('FLAGS'));
  const seen = f.store.mailbox('alice');
  const st = await seen.status('INBOX');
  assert.ok(st.kind === 'ok' && st.unseen === 1, JSON.stringify(st));
  await c.cmd('STORE 1:* -FLAGS.SILENT (\\Seen)');
});

test('ENVELOPE, BODYSTRUCTURE, BODY and the ALL/FAST/FULL macros', async () => {
  const r = await c.cmd('FETCH 1 (ENVELOPE BODYSTRUCTURE BODY)');
  const line = r.untagged[0]!;
  assert.ok(line.includes('ENVELOPE ("Tue, 1 Mar 2022 08:00:00 +0100" "mime sample" (("Ann Example" NIL "ann" "example.org"))'), line);
  assert.ok(/\(NIL NIL "alice" "greygate\.test"\) ?\("Bob" NIL "bob" "example\.net"\)/.test(line), line);
  assert.ok(line.includes('"<mime@example.org>"'), line);
  assert.match(line, /BODYSTRUCTURE \(\("text" "plain" \("charset" "us-ascii"\) NIL NIL "7bit" 22 \d+ /i);
  assert.match(line, /"mixed" \("boundary" "XX"\)/i);
  assert.match(line, / BODY \(\("text" "plain"/i);
  const all = await c.cmd('FETCH 2 ALL');
  assert.match(all.untagged[0]!, /^\* 2 FETCH \(FLAGS \(.*\) INTERNALDATE ".*" RFC822\.SIZE \d+ ENVELOPE \(.*\)\)$/);
  const fast = await c.cmd('FETCH 2 FAST');
  assert.match(fast.untagged[0]!, /^\* 2 FETCH \(FLAGS \(.*\) INTERNALDATE ".*" RFC822\.SIZE \d+\)$/);
  const full = await c.cmd('FETCH 2 FULL');
  assert.match(full.untagged[0]!, / BODY \(/);
});

test('a large message comes back whole; UID FETCH of missing UIDs is empty; bad sets are BAD', async () => {
  const r = await c.cmd('UID FETCH 3 BODY.PEEK[]', 30_000);
  assert.ok(literalOf(r.responses[0]!, 'BODY[]').equals(BIG));
  const none = await c.cmd('UID FETCH 100:200 FLAGS');
  assert.deepEqual(none.untagged, []);
  assert.equal(none.status, 'OK');
  assert.equal((await c.cmd('FETCH 9 FLAGS')).line, 'BAD Error in IMAP command FETCH: Invalid messageset');
  assert.equal((await c.cmd('FETCH 0 FLAGS')).status, 'BAD');
  assert.equal((await c.cmd('FETCH 1 (FLAGS BOGUS)')).status, 'BAD');
  const many = await c.cmd('FETCH 1:* (UID RFC822.SIZE)');
  assert.equal(many.untagged.length, 3);
});

test('header-only reads and the ENVELOPE cache answer exactly what a full read does, in every session', async () => {
  // With BODYSTRUCTURE the whole file is read and parsed; alone, ENVELOPE and HEADER.FIELDS
  // come from the header (first session) or from the cache (later ones).
  const itemOf = (line: string, name: string): string => {
    const at = line.indexOf(`${name} (`);
    assert.ok(at >= 0, line);
    let depth = 0;
    let i = at + name.length + 1;
    for (; i < line.length; i++) {
      if (line[i] === '"') for (i++; line[i] !== '"'; i++) if (line[i] === '\\') i++;
      if (line[i] === '(') depth++;
      if (line[i] === ')' && --depth === 0) break;
    }
    return line.slice(at, i + 1);
  };
  const full = (await c.cmd('FETCH 1:* (BODYSTRUCTURE ENVELOPE)')).untagged.map((l) => itemOf(l, 'ENVELOPE'));
  const fields = (await c.cmd('FETCH 1:* (BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])')).responses.map((r) => literalOf(r, 'BODY[HEADER.FIELDS (SUBJECT FROM)]'));
  for (let session = 0; session < 2; session++) {
    const other = await ImapClient.connect(f.plainPort);
    try {
      await other.login('alice', 'wonderland');
      await other.cmd('EXAMINE INBOX');
      const env = await other.cmd('FETCH 1:* (FLAGS ENVELOPE)');
      assert.equal(env.tagged.split(' ')[1], 'OK');
      assert.deepEqual(env.untagged.map((l) => itemOf(l, 'ENVELOPE')), full);
      const hdr = await other.cmd('FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]');
      assert.deepEqual(hdr.responses.map((r) => literalOf(r, 'BODY[HEADER.FIELDS (SUBJECT FROM)]')), fields);
    } finally {
      other.close();
    }
  }
});

test('SEARCH and UID SEARCH: flags, sizes, dates, headers, text, sets, OR/NOT', async () => {
  await c.cmd('STORE 2 +FLAGS.SILENT (\\Flagged)');
  const cases: Array<[string, string]> = [
    ['SEARCH ALL', '* SEARCH 1 2 3'],
    ['SEARCH FLAGGED', '* SEARCH 2'],
    ['SEARCH UNFLAGGED', '* SEARCH 1 3'],
    ['SEARCH NOT FLAGGED', '* SEARCH 1 3'],
    ['SEARCH RECENT', '* SEARCH 1 2 3'],
    ['SEARCH LARGER 10000', '* SEARCH 3'],
    ['SEARCH SMALLER 10000', '* SEARCH 1 2'],
    ['SEARCH SUBJECT "mime"', '* SEARCH 1'],
    ['SEARCH FROM ann', '* SEARCH 1'],
    ['SEARCH TO bob@example.net', '* SEARCH 1'],
    ['SEARCH BODY needle', '* SEARCH 1'],
    ['SEARCH TEXT NEEDLE', '* SEARCH 1'],
    ['SEARCH HEADER Message-ID plainone', '* SEARCH 2'],
    ['SEARCH OR FLAGGED SUBJECT big', '* SEARCH 2 3'],
    ['SEARCH 2:*', '* SEARCH 2 3'],
    ['SEARCH UID 1,3', '* SEARCH 1 3'],
    // Message 3 has no Date: header; what SENT* make of that is search.ts's business.
    ['SEARCH SENTBEFORE 1-Jan-2000 NOT SUBJECT big', '* SEARCH 2'],
    ['SEARCH SENTSINCE 1-Jan-2022', '* SEARCH 1'],
    ['SEARCH SINCE 1-Jan-2000', '* SEARCH 1 2 3'],
    ['SEARCH BEFORE 1-Jan-2000', '* SEARCH'],
    ['UID SEARCH FLAGGED', '* SEARCH 2'],
    ['SEARCH CHARSET UTF-8 SUBJECT plain', '* SEARCH 2'],
  ];
  for (const [cmd, expected] of cases) {
    const r = await c.cmd(cmd);
    assert.equal(r.status, 'OK', `${cmd}: ${r.tagged}`);
    assert.deepEqual(r.untagged, [expected], cmd);
  }
  const bad = await c.cmd('SEARCH CHARSET KOI8-R SUBJECT x');
  assert.equal(bad.line.split(']')[0], 'NO [BADCHARSET (US-ASCII UTF-8)');
  assert.equal((await c.cmd('SEARCH FOOBAR')).status, 'BAD');
});

test('an empty mailbox: "1:*" names nothing and is not an error; "1" is', async () => {
  const d = await ImapClient.connect(f.plainPort);
  await d.login('alice', 'wonderland');
  await d.cmd('CREATE Empty');
  await d.cmd('SELECT Empty');
  const r = await d.cmd('FETCH 1:* (FLAGS)');
  assert.deepEqual(r.untagged, []);
  assert.equal(r.line, 'OK Fetch completed.');
  assert.equal((await d.cmd('UID FETCH 1:* (FLAGS)')).status, 'OK');
  assert.equal((await d.cmd('FETCH 1 (FLAGS)')).status, 'BAD');
  assert.deepEqual((await d.cmd('SEARCH ALL')).untagged, ['* SEARCH']);
  d.close();
});
