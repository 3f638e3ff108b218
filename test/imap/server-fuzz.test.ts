/**
 * Fuzzing the IMAP listener: thousands of random and mutated commands (from a corpus of
 * valid ones, literals included) in every state, pipelined in batches. The server must
 * answer each batch or close the connection cleanly, never throw from a handler (a
 * handler bug would be logged as an error and answered SERVERBUG), and still serve a
 * normal session afterwards.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { ImapFixture, sampleMessage } from './imap-fixture.js';
import { ImapClient } from './imap-client.js';
import { mulberry32 as prng } from '../helpers/prng.js';

let f: ImapFixture;

before(async () => {
  f = await ImapFixture.start({ limits: { maxLineLength: 8192, maxLiteralSize: 65536, maxCommandSize: 131072 } });
  for (let i = 0; i < 5; i++) await f.deliver('alice', sampleMessage(`fuzz ${i}`, `body ${i}\r\n`));
  await f.store.mailbox('alice').createFolder('Other');
});

after(async () => {
  await f.close();
});

const CORPUS = [
  'CAPABILITY',
  'NOOP',
  'ID ("name" "fuzz" "version" "1")',
  'ID NIL',
  'ENABLE CONDSTORE UTF8=ACCEPT',
  'NAMESPACE',
  'LIST "" "*"',
  'LIST "" %',
  'LIST Other. %',
  'LSUB "" "*"',
  'STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)',
  'SELECT INBOX',
  'EXAMINE INBOX',
  'SELECT Other',
  'CREATE "Fuzz.a.b"',
  'RENAME "Fuzz.a.b" "Fuzz.c"',
  'DELETE "Fuzz.c"',
  'SUBSCRIBE Other',
  'UNSUBSCRIBE Other',
  'FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)',
  'FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[TEXT]<0.10>)',
  'FETCH 2:3 (ENVELOPE BODYSTRUCTURE BODY)',
  'FETCH 1 BODY[1.2.MIME]',
  'FETCH * RFC822.HEADER',
  'UID FETCH 1:* (FLAGS)',
  'UID FETCH 4294967295 FLAGS',
  'STORE 1 +FLAGS (\\Seen $Fuzz)',
  'STORE 1:* -FLAGS.SILENT (\\Flagged)',
  'UID STORE 2 FLAGS (\\Draft)',
  'SEARCH ALL',
  'SEARCH OR SEEN (NOT FLAGGED) SUBJECT fuzz',
  'SEARCH CHARSET UTF-8 TEXT "body"',
  'SEARCH CHARSET KOI8-R TEXT x',
  'SEARCH SINCE 1-Jan-2000 LARGER 10 UID 1:*',
  'UID SEARCH BEFORE 1-Jan-2100 HEADER Subject fuzz',
  'COPY 1 Other',
  'UID COPY 1:* Other',
  'MOVE 5 Other',
  'UID MOVE 9999 Other',
  'EXPUNGE',
  'UID EXPUNGE 1:2',
  'CHECK',
  'CLOSE',
  'UNSELECT',
  'APPEND Other (\\Seen) "01-Jan-2020 10:00:00 +0000" {30+}\r\nSubject: fuzz\r\n\r\nappended!!\r\n',
  'APPEND Other {12+}\r\nHello world!',
  'LOGIN alice wonderland',
  'AUTHENTICATE PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=',
  'STARTTLS',
];

const JUNK = ['(', ')', '{', '}', '[', ']', '"', '\\', '*', '%', '<', '>', '.', ':', ',', ' ', '\0', '\x7f', '\xff', '0', '4294967296', '-1', 'NIL', '{5}', '{5+}', '{0}', '{99999999}', 'BODY[', 'UID', '\t'];

function mutate(cmd: string, rnd: () => number): string {
  let s = cmd;
  const ops = 1 + Math.floor(rnd() * 3);
  for (let i = 0; i < ops; i++) {
    const pos = Math.floor(rnd() * (s.length + 1));
    switch (Math.floor(rnd() * 7)) {
      case 0:
        s = s.slice(0, pos);
        break;
      case 1:
        s = s.slice(0, pos) + JUNK[Math.floor(rnd() * JUNK.length)]! + s.slice(pos);
        break;
      case 2:
        s = s.slice(0, pos) + s.slice(pos + 1 + Math.floor(rnd() * 5));
        break;
      case 3:
        s = s.slice(0, pos) + String.fromCharCode(Math.floor(rnd() * 256)) + s.slice(pos + 1);
        break;
      case 4:
        s = s.replace(/\d+/, () => String(Math.floor(rnd() * 2 ** (rnd() * 40))));
        break;
      case 5:
        s = s + ' ' + CORPUS[Math.floor(rnd() * CORPUS.length)]!;
        break;
      default:
        s = s.slice(0, pos) + s.slice(pos).replace(/ /, '');
    }
  }
  return s;
}

function randomLine(rnd: () => number): string {
  const n = Math.floor(rnd() * 80);
  let s = '';
  for (let i = 0; i < n; i++) s += rnd() < 0.7 ? String.fromCharCode(32 + Math.floor(rnd() * 95)) : JUNK[Math.floor(rnd() * JUNK.length)]!;
  return s;
}

/** Send a batch, then a sentinel NOOP; resolve true when the sentinel is answered, false on close or silence. */
function runBatch(port: number, prelude: string[], batch: Buffer[], waitMs: number): Promise<'answered' | 'closed' | 'silent'> {
  return new Promise((resolve) => {
    const sock: Socket = connect({ host: '127.0.0.1', port });
    let seen = '';
    let done = false;
    const finish = (how: 'answered' | 'closed' | 'silent'): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(how);
    };
    const timer = setTimeout(() => finish('silent'), waitMs);
    sock.on('error', () => finish('closed'));
    sock.on('close', () => finish('closed'));
    sock.on('data', (c: Buffer) => {
      seen = (seen + c.toString('latin1')).slice(-4096);
      if (/(^|\n)ZZZ (OK|NO|BAD)/.test(seen)) finish('answered');
    });
    sock.once('connect', () => {
      for (const p of prelude) sock.write(`${p}\r\n`);
      for (const b of batch) sock.write(b);
      sock.write('\r\nZZZ NOOP\r\n');
    });
  });
}

test('thousands of random and mutated commands; the server keeps answering', { timeout: 300_000 }, async (t) => {
  const rnd = prng(0x1ec7a9e);
  const preludes = [[], ['P1 LOGIN alice wonderland'], ['P1 LOGIN alice wonderland', 'P2 SELECT INBOX'], ['P1 LOGIN alice wonderland', 'P2 EXAMINE Other']];
  let cases = 0;
  const outcomes = { answered: 0, closed: 0, silent: 0 };
  const BATCHES = 120;
  for (let b = 0; b < BATCHES; b++) {
    const batch: Buffer[] = [];
    for (let i = 0; i < 25; i++) {
      const tag = rnd() < 0.05 ? '' : `F${b}x${i} `;
      const base = CORPUS[Math.floor(rnd() * CORPUS.length)]!;
      const line = rnd() < 0.2 ? randomLine(rnd) : rnd() < 0.8 ? mutate(base, rnd) : base;
      batch.push(Buffer.from(`${tag}${line}\r\n`, 'latin1'));
      cases++;
    }
    // A silent server is legitimate when a mutated literal is still waiting for its bytes.
    const how = await runBatch(f.plainPort, preludes[b % preludes.length]!, batch, 3000);
    outcomes[how]++;
  }
  t.diagnostic(`${cases} cases: ${JSON.stringify(outcomes)}`);
  assert.ok(cases >= 3000, `${cases} cases`);
  // Most batches must have been answered to the end: the server did not get stuck.
  assert.ok(outcomes.answered > BATCHES / 3, JSON.stringify(outcomes));
  const bugs = f.log.records.filter((r) => r.level === 'error');
  assert.deepEqual(bugs.map((r) => `${r.msg} ${String(r.fields.stack ?? '')}`), []);
  // And a normal session still works, with the mailbox intact.
  const c = await ImapClient.connect(f.plainPort);
  await c.login('alice', 'wonderland');
  const sel = await c.cmd('SELECT INBOX');
  assert.equal(sel.status, 'OK');
  const fetch = await c.cmd('FETCH 1:* (UID FLAGS)');
  assert.equal(fetch.status, 'OK');
  assert.equal((await c.cmd('LOGOUT')).status, 'OK');
  // Every fuzz connection is gone.
  for (let i = 0; i < 100 && f.plain.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(f.plain.connectionCount, 0);
});

test('random bytes (binary garbage) on fresh connections', { timeout: 120_000 }, async () => {
  const rnd = prng(42);
  for (let b = 0; b < 40; b++) {
    const n = 1 + Math.floor(rnd() * 4000);
    const bytes = Buffer.alloc(n);
    for (let i = 0; i < n; i++) bytes[i] = Math.floor(rnd() * 256);
    await runBatch(f.plainPort, b % 2 ? ['P1 LOGIN alice wonderland', 'P2 SELECT INBOX'] : [], [bytes], 1500);
  }
  const c = await ImapClient.connect(f.plainPort);
  await c.login('alice', 'wonderland');
  assert.equal((await c.cmd('NOOP')).status, 'OK');
  c.close();
  assert.deepEqual(f.log.records.filter((r) => r.level === 'error').map((r) => r.msg), []);
});
