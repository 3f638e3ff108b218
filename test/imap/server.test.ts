/**
 * The IMAP listener with a raw client on loopback: greeting and capabilities, LOGIN and
 * AUTHENTICATE PLAIN, disable_plaintext_auth, STARTTLS and imaps, the state machine,
 * folder commands, APPEND/COPY/MOVE/STORE/EXPUNGE with UIDPLUS codes, limits, the idle
 * timeout, logging, one user never reaching another's mail, and a command's responses
 * leaving in one write.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { Server, Socket } from 'node:net';
import { ImapFixture, sampleMessage } from './imap-fixture.js';
import { ImapClient } from './imap-client.js';

const PLAIN = (authz: string, user: string, pass: string): string => Buffer.from(`${authz}\0${user}\0${pass}`).toString('base64');

let f: ImapFixture;

before(async () => {
  f = await ImapFixture.start();
});

after(async () => {
  await f.close();
});

async function loggedIn(user = 'alice', password = user === 'alice' ? 'wonderland' : 'builder'): Promise<ImapClient> {
  const c = await ImapClient.connect(f.plainPort);
  await c.login(user, password);
  return c;
}

describe('greeting, capabilities and login', () => {
  test('greeting carries the pre-login capabilities, Dovecot style', async () => {
    const c = await ImapClient.connect(f.plainPort);
    assert.equal(c.greeting, '* OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] greygate ready.');
    const r = await c.cmd('CAPABILITY');
    assert.equal(r.untagged[0], '* CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN');
    assert.equal(r.line, 'OK Pre-login capabilities listed, post-login capabilities have more.');
    const l = await c.cmd('LOGIN alice wonderland');
    assert.match(l.line, /^OK \[CAPABILITY IMAP4rev1 .*UIDPLUS MOVE .*\] Logged in$/);
    for (const cap of ['IDLE', 'UIDPLUS', 'MOVE', 'NAMESPACE', 'LITERAL+', 'ENABLE', 'ID', 'UNSELECT']) assert.ok(l.tagged.includes(` ${cap}`), cap);
    const after = await c.cmd('CAPABILITY');
    assert.ok(!after.untagged[0]!.includes('STARTTLS'));
    assert.ok(!after.untagged[0]!.includes('AUTH='));
    assert.equal(after.line, 'OK Capability completed.');
    const bye = await c.cmd('LOGOUT');
    assert.deepEqual(bye.untagged, ['* BYE Logging out']);
    assert.equal(bye.line, 'OK Logout completed.');
    await c.waitClosed();
  });

  test('wrong password, unknown user and empty password: AUTHENTICATIONFAILED, logged', async () => {
    const c = await ImapClient.connect(f.plainPort);
    for (const cmd of ['LOGIN alice wrong', 'LOGIN nobody secret', 'LOGIN alice ""']) {
      const r = await c.cmd(cmd);
      assert.match(r.line, /^NO \[AUTHENTICATIONFAILED\] Authentication failed\.$/, cmd);
    }
    const fails = f.log.events('auth').filter((e) => e.status === 'failed');
    assert.ok(fails.some((e) => e.user === 'alice' && e.client_ip === '127.0.0.1' && e.service === 'imap'));
    assert.ok(fails.some((e) => e.user === 'nobody'));
    // Still usable after failures.
    await c.login('alice', 'wonderland');
    assert.ok(f.log.events('auth').some((e) => e.status === 'ok' && e.user === 'alice' && e.sasl_method === 'LOGIN'));
    c.close();
  });

  test('LOGIN with quoted strings and literals; user names are case-insensitive', async () => {
    const c = await ImapClient.connect(f.plainPort);
    c.send('A1 LOGIN {5}\r\n');
    assert.equal((await c.next()).text, '+ Ready for literal data');
    c.send('ALICE "wonderland"\r\n');
    const r = await c.reply('A1');
    assert.equal(r.status, 'OK', r.tagged);
    c.close();
  });

  test('AUTHENTICATE PLAIN with SASL-IR and with a continuation', async () => {
    const c = await ImapClient.connect(f.plainPort);
    const r = await c.cmd(`AUTHENTICATE PLAIN ${PLAIN('', 'alice', 'wonderland')}`);
    assert.match(r.line, /^OK \[CAPABILITY .*\] Logged in$/);
    c.close();
    const d = await ImapClient.connect(f.plainPort);
    d.send('A1 AUTHENTICATE PLAIN\r\n');
    assert.equal((await d.next()).text, '+ ');
    d.send(`${PLAIN('bob', 'bob', 'builder')}\r\n`);
    assert.equal((await d.reply('A1')).status, 'OK');
    d.close();
    const e = await ImapClient.connect(f.plainPort);
    e.send('A1 AUTHENTICATE PLAIN\r\n');
    await e.next();
    e.send('*\r\n');
    assert.equal((await e.reply('A1')).line, 'BAD Authentication aborted by client.');
    const bad = await e.cmd(`AUTHENTICATE PLAIN ${PLAIN('', 'alice', 'nope')}`);
    assert.equal(bad.line, 'NO [AUTHENTICATIONFAILED] Authentication failed.');
    const proxy = await e.cmd(`AUTHENTICATE PLAIN ${PLAIN('bob', 'alice', 'wonderland')}`);
    assert.equal(proxy.status, 'NO');
    const mech = await e.cmd('AUTHENTICATE CRAM-MD5');
    assert.equal(mech.line, 'NO Unsupported authentication mechanism.');
    const garbage = await e.cmd('AUTHENTICATE PLAIN !!!notbase64');
    assert.equal(garbage.status, 'BAD');
    e.close();
  });

  test('commands of later states are unknown before login, and LOGIN after login is refused', async () => {
    const c = await ImapClient.connect(f.plainPort);
    assert.equal((await c.cmd('SELECT INBOX')).line, 'BAD Error in IMAP command received by server.');
    assert.equal((await c.cmd('FROBNICATE')).line, 'BAD Error in IMAP command received by server.');
    await c.login('alice', 'wonderland');
    assert.equal((await c.cmd('FETCH 1 FLAGS')).line, 'BAD No mailbox selected.');
    assert.equal((await c.cmd('LOGIN alice wonderland')).status, 'BAD');
    assert.equal((await c.cmd('SELECT')).line, 'BAD Error in IMAP command SELECT: Invalid arguments.');
    const id = await c.cmd('ID ("name" "test")');
    assert.deepEqual(id.untagged, ['* ID ("name" "greygate")']);
    const en = await c.cmd('ENABLE CONDSTORE');
    assert.deepEqual(en.untagged, ['* ENABLED']);
    assert.equal(en.status, 'OK');
    c.close();
  });
});

describe('TLS and disable_plaintext_auth', () => {
  let strict: ImapFixture;
  before(async () => {
    // Loopback counts as remote here, so the plaintext rule applies.
    strict = await ImapFixture.start({ isLoopback: () => false });
  });
  after(async () => {
    await strict.close();
  });

  test('without TLS: LOGINDISABLED, LOGIN and AUTHENTICATE refused with PRIVACYREQUIRED', async () => {
    const c = await ImapClient.connect(strict.plainPort);
    assert.equal(c.greeting, '* OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED] greygate ready.');
    const r = await c.cmd('LOGIN alice wonderland');
    assert.equal(r.line, 'NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.');
    const a = await c.cmd(`AUTHENTICATE PLAIN ${PLAIN('', 'alice', 'wonderland')}`);
    assert.equal(a.line, 'NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.');
    assert.ok(strict.log.events('auth').some((e) => e.status === 'refused'));
    c.close();
  });

  test('STARTTLS, then capabilities change and LOGIN works', async () => {
    const c = await ImapClient.connect(strict.plainPort);
    const s = await c.starttls();
    assert.equal(s.line, 'OK Begin TLS negotiation now.');
    assert.ok(c.encrypted);
    const cap = await c.cmd('CAPABILITY');
    assert.equal(cap.untagged[0], '* CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ AUTH=PLAIN');
    assert.equal((await c.cmd('STARTTLS')).status, 'BAD');
    await c.login('alice', 'wonderland');
    const ok = strict.log.events('auth').find((e) => e.status === 'ok');
    assert.equal(ok?.tls, true);
    c.close();
  });

  test('STARTTLS pipelined with a command is refused (no clear-text injection)', async () => {
    const c = await ImapClient.connect(strict.plainPort);
    c.send('A1 STARTTLS\r\nA2 LOGIN alice wonderland\r\n');
    const r = await c.reply('A1');
    assert.equal(r.status, 'BAD');
    const l = await c.reply('A2');
    assert.equal(l.status, 'NO');
    c.close();
  });

  test('imaps: TLS from the first byte, no STARTTLS offered, LOGIN allowed', async () => {
    const c = await ImapClient.connect(strict.tlsPort, { tls: true });
    assert.equal(c.greeting, '* OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ AUTH=PLAIN] greygate ready.');
    await c.login('alice', 'wonderland');
    assert.equal((await c.cmd('NOOP')).line, 'OK NOOP completed.');
    c.close();
  });

  test('disable_plaintext_auth = no allows plaintext from anywhere', async () => {
    const open = await ImapFixture.start({ isLoopback: () => false, params: { disable_plaintext_auth: 'no' } });
    try {
      const c = await ImapClient.connect(open.plainPort);
      assert.ok(c.greeting.includes('AUTH=PLAIN'));
      await c.login('alice', 'wonderland');
      c.close();
    } finally {
      await open.close();
    }
  });
});

describe('folders', () => {
  test('CREATE, LIST with \\HasChildren and \\Noselect, RENAME, DELETE, STATUS', async () => {
    const c = await loggedIn('bob');
    assert.equal((await c.cmd('CREATE Projects.2024')).line, 'OK Create completed.');
    assert.equal((await c.cmd('CREATE Archive.')).line, 'OK Create completed.');
    assert.equal((await c.cmd('CREATE Archive')).line, 'NO [ALREADYEXISTS] Mailbox already exists');
    assert.equal((await c.cmd('CREATE INBOX')).status, 'NO');
    const all = await c.cmd('LIST "" "*"');
    assert.deepEqual(all.untagged, [
      '* LIST (\\HasNoChildren) "." INBOX',
      '* LIST (\\HasNoChildren) "." Archive',
      '* LIST (\\Noselect \\HasChildren) "." Projects',
      '* LIST (\\HasNoChildren) "." Projects.2024',
    ]);
    const top = await c.cmd('LIST "" %');
    assert.deepEqual(top.untagged, ['* LIST (\\HasNoChildren) "." INBOX', '* LIST (\\HasNoChildren) "." Archive', '* LIST (\\Noselect \\HasChildren) "." Projects']);
    const ref = await c.cmd('LIST Projects. %');
    assert.deepEqual(ref.untagged, ['* LIST (\\HasNoChildren) "." Projects.2024']);
    const inbox = await c.cmd('LIST "" inbox');
    assert.deepEqual(inbox.untagged, ['* LIST (\\HasNoChildren) "." INBOX']);
    const root = await c.cmd('LIST "" ""');
    assert.deepEqual(root.untagged, ['* LIST (\\Noselect) "." ""']);
    assert.equal((await c.cmd('RENAME Projects.2024 Projects.2025')).line, 'OK Rename completed.');
    assert.equal((await c.cmd('RENAME Nope Other')).line, "NO [NONEXISTENT] Mailbox doesn't exist: Nope");
    assert.equal((await c.cmd('RENAME Archive Projects.2025')).line, 'NO [ALREADYEXISTS] Target mailbox already exists');
    const st = await c.cmd('STATUS Projects.2025 (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)');
    assert.match(st.untagged[0]!, /^\* STATUS Projects\.2025 \(MESSAGES 0 RECENT 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0\)$/);
    assert.equal((await c.cmd('STATUS Nope (MESSAGES)')).line, "NO [NONEXISTENT] Mailbox doesn't exist: Nope");
    assert.equal((await c.cmd('STATUS INBOX (BOGUS)')).status, 'BAD');
    assert.equal((await c.cmd('DELETE INBOX')).status, 'NO');
    assert.equal((await c.cmd('DELETE Projects.2025')).line, 'OK Delete completed.');
    assert.equal((await c.cmd('DELETE Projects.2025')).line, "NO [NONEXISTENT] Mailbox doesn't exist: Projects.2025");
    assert.equal((await c.cmd('SELECT "../alice"')).status, 'NO');
    assert.equal((await c.cmd('CREATE "a/b"')).status, 'NO');
    const creates = f.log.records.filter((r) => r.level === 'info' && r.fields.action === 'create' && r.fields.user === 'bob');
    assert.equal(creates.length, 2);
    c.close();
  });

  test('SUBSCRIBE, LSUB, UNSUBSCRIBE; NAMESPACE', async () => {
    const c = await loggedIn('bob');
    await c.cmd('CREATE Lists.nodejs');
    assert.equal((await c.cmd('SUBSCRIBE Lists.nodejs')).line, 'OK Subscribe completed.');
    await c.cmd('SUBSCRIBE INBOX');
    const all = await c.cmd('LSUB "" "*"');
    assert.deepEqual(all.untagged.sort(), ['* LSUB () "." INBOX', '* LSUB () "." Lists.nodejs']);
    const top = await c.cmd('LSUB "" "%"');
    assert.deepEqual(top.untagged.sort(), ['* LSUB () "." INBOX', '* LSUB (\\Noselect) "." Lists']);
    assert.equal((await c.cmd('UNSUBSCRIBE Lists.nodejs')).line, 'OK Unsubscribe completed.');
    assert.deepEqual((await c.cmd('LSUB "" "*"')).untagged, ['* LSUB () "." INBOX']);
    assert.deepEqual((await c.cmd('NAMESPACE')).untagged, ['* NAMESPACE (("" ".")) NIL NIL']);
    c.close();
  });
});

describe('messages', () => {
  test('SELECT and EXAMINE responses; \\Recent goes to the first SELECT only', async () => {
    await f.users.add('carol', 'carolpw');
    const c = await ImapClient.connect(f.plainPort);
    await f.deliver('carol', sampleMessage('first'));
    await f.deliver('carol', sampleMessage('second'));
    await c.login('carol', 'carolpw');
    const ex = await c.cmd('EXAMINE INBOX');
    assert.deepEqual(ex.untagged.slice(0, 4), [
      '* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)',
      '* OK [PERMANENTFLAGS ()] Read-only mailbox.',
      '* 2 EXISTS',
      '* 2 RECENT',
    ]);
    assert.equal(ex.line, 'OK [READ-ONLY] Examine completed.');
    const sel = await c.cmd('SELECT INBOX');
    assert.equal(sel.untagged[0], '* OK [CLOSED] Previous mailbox closed.');
    assert.ok(sel.untagged.includes('* 2 EXISTS'));
    assert.ok(sel.untagged.includes('* 2 RECENT'));
    assert.ok(sel.untagged.includes('* OK [UNSEEN 1] First unseen.'));
    assert.ok(sel.untagged.some((l) => /^\* OK \[UIDVALIDITY \d+\] UIDs valid$/.test(l)));
    assert.ok(sel.untagged.includes('* OK [UIDNEXT 3] Predicted next UID'));
    assert.ok(sel.untagged.includes('* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.'));
    assert.equal(sel.line, 'OK [READ-WRITE] Select completed.');
    const d = await ImapClient.connect(f.plainPort);
    await d.login('carol', 'carolpw');
    const sel2 = await d.cmd('SELECT INBOX');
    assert.ok(sel2.untagged.includes('* 0 RECENT'), sel2.untagged.join('\n'));
    assert.equal((await c.cmd('SELECT Nope')).line, "NO [NONEXISTENT] Mailbox doesn't exist: Nope");
    // A failed SELECT leaves no mailbox selected.
    assert.equal((await c.cmd('FETCH 1 FLAGS')).line, 'BAD No mailbox selected.');
    c.close();
    d.close();
  });

  test('a command\'s responses and its tagged reply leave in one write (SELECT: eight lines, one writev)', async () => {
    await f.users.add('dave', 'davepw');
    for (let i = 1; i <= 3; i++) await f.deliver('dave', sampleMessage(`msg ${i}`));
    // Count what the server's socket hands to the kernel: each _write/_writev is one syscall.
    const server = (f.plain as unknown as { server: Server }).server;
    let writes = 0;
    const count = (sock: Socket): void => {
      for (const name of ['_write', '_writev'] as const) {
        const real = sock[name] as (...args: unknown[]) => unknown;
        sock[name] = function (this: Socket, ...args: unknown[]) {
          writes++;
          return real.apply(this, args);
        } as never;
      }
    };
    server.on('connection', count);
    const c = await ImapClient.connect(f.plainPort);
    try {
      await c.login('dave', 'davepw');
      writes = 0;
      const sel = await c.cmd('SELECT INBOX');
      assert.equal(sel.line, 'OK [READ-WRITE] Select completed.');
      assert.equal(sel.untagged.length, 7, sel.untagged.join('\n'));
      assert.equal(writes, 1);
      writes = 0;
      await c.cmd('NOOP');
      assert.equal(writes, 1);
    } finally {
      server.off('connection', count);
      c.close();
    }
  });

  test('APPEND with a synchronizing literal and with LITERAL+, APPENDUID, flags and date', async () => {
    const c = await loggedIn('bob');
    await c.cmd('CREATE Sent');
    const msg = sampleMessage('appended');
    c.send(`A2 APPEND Sent (\\Seen) "05-Mar-2021 10:11:12 +0100" {${msg.length}}\r\n`);
    assert.equal((await c.next()).text, '+ Ready for literal data');
    c.send(`${msg}\r\n`);
    const r = await c.reply('A2');
    assert.match(r.line, /^OK \[APPENDUID \d+ 1\] Append completed\.$/);
    const plus = await c.cmd(`APPEND Sent {${msg.length}+}\r\n${msg}`);
    assert.match(plus.line, /^OK \[APPENDUID \d+ 2\] Append completed\.$/);
    const missing = await c.cmd(`APPEND Nowhere {${msg.length}+}\r\n${msg}`);
    assert.equal(missing.line, "NO [TRYCREATE] Mailbox doesn't exist: Nowhere");
    await c.cmd('SELECT Sent');
    const fl = await c.cmd('FETCH 1:2 (FLAGS INTERNALDATE)');
    const m = /^\* 1 FETCH \(FLAGS \(\\Seen \\Recent\) INTERNALDATE "(\d+)-(\w+)-(\d+) (\d+):(\d+):(\d+) ([+-]\d{4})"\)$/.exec(fl.untagged[0]!);
    assert.ok(m, fl.untagged[0]);
    const when = Date.parse(`${m[2]} ${m[1]} ${m[3]} ${m[4]}:${m[5]}:${m[6]} GMT${m[7]}`);
    assert.equal(when, Date.UTC(2021, 2, 5, 9, 11, 12));
    assert.match(fl.untagged[1]!, /^\* 2 FETCH \(FLAGS \(\\Recent\) INTERNALDATE "/);
    c.close();
  });

  test('STORE variants, .SILENT, UID STORE; keywords extend FLAGS', async () => {
    const c = await loggedIn('bob');
    await c.cmd('CREATE Store');
    for (const s of ['a', 'b', 'c']) await f.deliver('bob', sampleMessage(s), 'Store');
    await c.cmd('SELECT Store');
    assert.deepEqual((await c.cmd('STORE 1 +FLAGS (\\Seen \\Flagged)')).untagged, ['* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent))']);
    assert.deepEqual((await c.cmd('STORE 1 -FLAGS (\\Flagged)')).untagged, ['* 1 FETCH (FLAGS (\\Seen \\Recent))']);
    assert.deepEqual((await c.cmd('STORE 2 +FLAGS.SILENT (\\Answered)')).untagged, []);
    assert.deepEqual((await c.cmd('UID STORE 3 FLAGS (\\Draft)')).untagged, ['* 3 FETCH (FLAGS (\\Draft \\Recent) UID 3)']);
    const kw = await c.cmd('STORE 2 +FLAGS ($Junk)');
    assert.ok(kw.untagged.includes('* 2 FETCH (FLAGS (\\Answered $Junk \\Recent))'), kw.untagged.join('\n'));
    assert.ok(kw.untagged.some((l) => l.startsWith('* FLAGS (') && l.includes('$Junk')), kw.untagged.join('\n'));
    assert.equal((await c.cmd('STORE 9 +FLAGS (\\Seen)')).line, 'BAD Error in IMAP command STORE: Invalid messageset');
    assert.equal((await c.cmd('STORE 1 +FLAGS (\\Recent)')).status, 'BAD');
    assert.equal((await c.cmd('FETCH 1:* FLAGS')).untagged.length, 3);
    c.close();
  });

  test('COPY and MOVE with COPYUID; EXPUNGE and UID EXPUNGE; CLOSE expunges silently', async () => {
    const c = await loggedIn('bob');
    await c.cmd('CREATE Work');
    await c.cmd('CREATE Dest');
    for (const s of ['m1', 'm2', 'm3', 'm4', 'm5']) await f.deliver('bob', sampleMessage(s), 'Work');
    await c.cmd('SELECT Work');
    const copy = await c.cmd('COPY 1:2 Dest');
    assert.match(copy.line, /^OK \[COPYUID \d+ 1:2 1:2\] Copy completed\.$/);
    assert.equal((await c.cmd('COPY 1 Nowhere')).line, "NO [TRYCREATE] Mailbox doesn't exist: Nowhere");
    const move = await c.cmd('UID MOVE 3 Dest');
    assert.match(move.untagged[0]!, /^\* OK \[COPYUID \d+ 3 3\] Moved UIDs\.$/);
    assert.equal(move.untagged[1], '* 3 EXPUNGE');
    assert.equal(move.line, 'OK Move completed.');
    await c.cmd('STORE 1:2 +FLAGS.SILENT (\\Deleted)');
    const uidEx = await c.cmd('UID EXPUNGE 2');
    assert.deepEqual(uidEx.untagged, ['* 2 EXPUNGE']);
    const ex = await c.cmd('EXPUNGE');
    assert.deepEqual(ex.untagged, ['* 1 EXPUNGE']);
    assert.equal(ex.line, 'OK Expunge completed.');
    const left = await c.cmd('UID FETCH 1:* FLAGS');
    assert.deepEqual(left.untagged.map((l) => l.replace(/ FLAGS.*/, '')), ['* 1 FETCH (UID 4', '* 2 FETCH (UID 5']);
    await c.cmd('STORE 1 +FLAGS.SILENT (\\Deleted)');
    const close = await c.cmd('CLOSE');
    assert.deepEqual(close.untagged, []);
    assert.equal(close.line, 'OK Close completed.');
    const st = await c.cmd('STATUS Work (MESSAGES)');
    assert.equal(st.untagged[0], '* STATUS Work (MESSAGES 1)');
    const dst = await c.cmd('STATUS Dest (MESSAGES UIDNEXT)');
    assert.equal(dst.untagged[0], '* STATUS Dest (MESSAGES 3 UIDNEXT 4)');
    assert.ok(f.log.records.some((r) => r.fields.action === 'move' && r.fields.user === 'bob'));
    assert.ok(f.log.records.some((r) => r.fields.action === 'expunge' && r.fields.folder === 'Work'));
    c.close();
  });

  test('EXAMINE is read-only: STORE, EXPUNGE and MOVE refused, BODY[] does not set \\Seen', async () => {
    const c = await loggedIn('bob');
    await c.cmd('CREATE Ro');
    await f.deliver('bob', sampleMessage('ro'), 'Ro');
    await c.cmd('EXAMINE Ro');
    assert.equal((await c.cmd('STORE 1 +FLAGS (\\Seen)')).status, 'NO');
    assert.equal((await c.cmd('EXPUNGE')).status, 'NO');
    assert.equal((await c.cmd('MOVE 1 INBOX')).status, 'NO');
    await c.cmd('FETCH 1 BODY[]');
    const fl = await c.cmd('FETCH 1 FLAGS');
    assert.ok(!fl.untagged[0]!.includes('\\Seen'), fl.untagged[0]);
    assert.equal((await c.cmd('UNSELECT')).line, 'OK Unselect completed.');
    c.close();
  });
});

describe('robustness and limits', () => {
  test('malformed commands get BAD, untagged when there is no tag; 20 BADs end the session', async () => {
    const c = await ImapClient.connect(f.plainPort);
    // Stray empty lines are ignored; a line without a usable tag gets an untagged BAD.
    c.send('\r\n* FOO\r\n');
    assert.equal((await c.next()).text, '* BAD Error in IMAP command received by server.');
    assert.equal((await c.cmd('LOGIN "unterminated')).status, 'BAD');
    assert.equal((await c.cmd('LOGIN (a b) c')).status, 'BAD');
    await c.login('alice', 'wonderland');
    for (let i = 0; i < 19; i++) await c.cmd('FETCH');
    c.send('A99 FETCH\r\n');
    const rs = await c.until((r) => r.text.startsWith('* BYE'));
    assert.equal(rs.pop()!.text, '* BYE Too many invalid IMAP commands.');
    await c.waitClosed();
  });

  test('an over-long line and an over-size literal are refused, and the server stays up', async () => {
    const small = await ImapFixture.start({ limits: { maxLineLength: 1024, maxLiteralSize: 2048, maxCommandSize: 8192 } });
    try {
      const c = await ImapClient.connect(small.plainPort);
      await c.login('alice', 'wonderland');
      c.send(`A5 NOOP ${'x'.repeat(5000)}\r\n`);
      const r = await c.until((x) => /^(A5 |\* BYE|\* BAD)/.test(x.text));
      assert.match(r.pop()!.text, /BAD|BYE/);
      c.close();
      const d = await ImapClient.connect(small.plainPort);
      await d.login('alice', 'wonderland');
      d.send('A2 APPEND INBOX {100000}\r\n');
      const t = await d.reply('A2');
      assert.match(t.line, /^(NO|BAD) \[TOOBIG\]/);
      assert.equal((await d.cmd('NOOP')).status, 'OK');
      d.close();
    } finally {
      await small.close();
    }
  });

  test('idle timeout: BYE, then the connection is closed', async () => {
    const quick = await ImapFixture.start({ idleTimeoutMs: 300 });
    try {
      const c = await ImapClient.connect(quick.plainPort);
      const bye = await c.next(5000);
      assert.equal(bye.text, '* BYE Disconnected for inactivity.');
      await c.waitClosed();
      assert.equal(quick.plain.connectionCount, 0);
    } finally {
      await quick.close();
    }
  });

  test('a login guard delays failures and refuses a client after too many', async () => {
    const guarded = await ImapFixture.start({ guard: { failureDelayMs: 200, maxFailuresPerClient: 3 } });
    try {
      const c = await ImapClient.connect(guarded.plainPort);
      const t0 = Date.now();
      assert.equal((await c.cmd('LOGIN alice bad1')).status, 'NO');
      assert.ok(Date.now() - t0 >= 180, 'failure delayed');
      await c.cmd('LOGIN alice bad2');
      await c.cmd('LOGIN alice bad3');
      const refused = await c.cmd('LOGIN alice wonderland');
      assert.equal(refused.line, 'NO [AUTHENTICATIONFAILED] Authentication failed.');
      assert.ok(guarded.log.events('auth').some((e) => e.status === 'refused'));
      c.close();
    } finally {
      await guarded.close();
    }
  });

  test('one user never sees another user\'s mail', async () => {
    await f.deliver('alice', sampleMessage('for alice only', 'secret of alice\r\n'));
    const c = await loggedIn('bob');
    const list = await c.cmd('LIST "" "*"');
    assert.ok(!list.untagged.some((l) => /alice/i.test(l)));
    for (const name of ['../alice', '"../alice/INBOX"', '"..alice"', '"/etc"', '"~alice"']) {
      const r = await c.cmd(`SELECT ${name}`);
      assert.equal(r.status, 'NO', name);
    }
    await c.cmd('SELECT INBOX');
    const s = await c.cmd('SEARCH ALL');
    const box = await c.cmd('FETCH 1:* BODY.PEEK[]').catch(() => null);
    assert.ok(!box || !box.untagged.some((l) => l.includes('secret of alice')));
    assert.ok(s.status === 'OK');
    c.close();
  });
});
