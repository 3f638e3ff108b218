/**
 * Real IMAP clients against the listener on loopback: Python's imaplib (plain, STARTTLS,
 * IMAP4_SSL) and curl (imap:// with and without --ssl-reqd, imaps://). Message bodies are
 * compared byte for byte with what was delivered.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { ImapFixture, sampleMessage } from './imap-fixture.js';

let f: ImapFixture;

/** 8-bit text, a long line, a dot line, "From " and a MIME attachment: the bytes must come back as they are. */
const TRICKY = Buffer.concat([
  Buffer.from(
    'Return-Path: <sender@example.org>\r\nFrom: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\nTo: alice@greygate.test\r\n' +
      'Subject: byte-exact\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n' +
      '--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
  ),
  Buffer.from('Grüße aus Köln, ½ € 😀\r\n', 'utf8'),
  Buffer.from([0xe9, 0x74, 0xe9, 0x0d, 0x0a]),
  Buffer.from(`.\r\n..leading dots\r\nFrom the start of a line\r\n${'x'.repeat(990)}\r\n\r\n`),
  Buffer.from('--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n'),
  Buffer.from(`${Buffer.from(Array.from({ length: 600 }, (_, i) => i % 256)).toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n--b1--\r\n`),
]);

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function run(cmd: string, args: string[], input?: string): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', reject);
    const t = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err });
    });
    p.stdin.end(input ?? '');
  });
}

before(async () => {
  f = await ImapFixture.start();
  await f.deliver('alice', sampleMessage('first', 'one\r\n'));
  await f.deliver('alice', TRICKY);
  await f.deliver('alice', sampleMessage('third', 'three\r\n'));
});

after(async () => {
  await f.close();
});

const PYTHON = String.raw`
import imaplib, json, ssl, sys, hashlib, os
mode, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode == 'ssl':
    M = imaplib.IMAP4_SSL('127.0.0.1', port, ssl_context=ctx)
else:
    M = imaplib.IMAP4('127.0.0.1', port)
    if mode == 'starttls':
        M.starttls(ssl_context=ctx)
out = {'caps': sorted(M.capabilities)}
out['login'] = M.login('alice', 'wonderland')[0]
out['list'] = [x.decode() for x in M.list()[1]]
typ, data = M.select('INBOX')
out['exists'] = int(data[0])
typ, data = M.search(None, 'ALL')
out['search'] = data[0].decode()
typ, data = M.search(None, '(SUBJECT "byte-exact")')
out['subject_search'] = data[0].decode()
typ, data = M.fetch('2', '(RFC822)')
out['rfc822_sha'] = hashlib.sha256(data[0][1]).hexdigest()
typ, data = M.uid('FETCH', '2', '(BODY.PEEK[] RFC822.SIZE)')
out['uid_fetch_head'] = data[0][0].decode()
out['peek_sha'] = hashlib.sha256(data[0][1]).hexdigest()
typ, data = M.fetch('1:3', '(FLAGS)')
out['flags'] = [x.decode() for x in data]
M.create('Archive-' + mode)
typ, data = M.copy('1', 'Archive-' + mode)
out['copy'] = typ
typ, data = M.append('Archive-' + mode, '(\\Seen)', None, b'Subject: appended\r\n\r\nbody\r\n')
out['append'] = [typ, data[0].decode()]
typ, data = M.status('Archive-' + mode, '(MESSAGES UNSEEN)')
out['status'] = data[0].decode()
typ, data = M.store('3', '+FLAGS', '(\\Deleted)')
out['store'] = data[0].decode()
typ, data = M.expunge()
out['expunge'] = [x.decode() for x in data if x]
M.close()
out['logout'] = M.logout()[0]
print(json.dumps(out))
`;

for (const mode of ['plain', 'starttls', 'ssl'] as const) {
  test(`Python imaplib (${mode})`, async () => {
    const port = mode === 'ssl' ? f.tlsPort : f.plainPort;
    // Each mode expunges one message: put it back so that every mode sees the same mailbox.
    await f.deliver('alice', sampleMessage(`refill ${mode}`));
    const r = await run('python3', ['-c', PYTHON, mode, String(port)]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
    assert.equal(out.login, 'OK');
    assert.ok((out.caps as string[]).includes('IDLE'));
    if (mode === 'plain') assert.ok((out.caps as string[]).includes('STARTTLS'));
    assert.ok((out.list as string[]).some((l) => l === '(\\HasNoChildren) "." INBOX'), String(out.list));
    assert.ok((out.exists as number) >= 3);
    assert.match(out.search as string, /^1 2 3( \d+)*$/);
    assert.equal(out.subject_search, '2');
    assert.equal(out.rfc822_sha, sha256(TRICKY));
    assert.equal(out.peek_sha, sha256(TRICKY));
    assert.match(out.uid_fetch_head as string, new RegExp(`^2 \\(UID 2 BODY\\[\\] \\{${TRICKY.length}\\}$|RFC822.SIZE ${TRICKY.length}`));
    assert.equal(out.copy, 'OK');
    assert.deepEqual((out.append as string[])[0], 'OK');
    assert.match((out.append as string[])[1]!, /^\[APPENDUID \d+ 2\] Append completed\.$/);
    assert.match(out.status as string, new RegExp(`^"?Archive-${mode}"? \\(MESSAGES 2 UNSEEN 1\\)$`));
    assert.match(out.store as string, /^3 \(FLAGS \(.*\\Deleted.*\)\)$/);
    assert.deepEqual(out.expunge, ['3']);
    assert.equal(out.logout, 'BYE');
  });
}

test('curl imap:// (SASL-IR AUTHENTICATE PLAIN): list, fetch a message byte-exact', async () => {
  const base = `imap://127.0.0.1:${f.plainPort}`;
  const list = await run('curl', ['-sS', '--max-time', '30', '-u', 'alice:wonderland', `${base}/`]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout.toString(), /^\* LIST \(\\HasNoChildren\) "\." INBOX\r$/m);
  const uids = await run('curl', ['-sS', '--max-time', '30', '-u', 'alice:wonderland', '-X', 'UID SEARCH SUBJECT byte-exact', `${base}/INBOX`]);
  assert.equal(uids.code, 0, uids.stderr);
  assert.match(uids.stdout.toString(), /^\* SEARCH 2\r?$/m);
  const body = await run('curl', ['-sS', '--max-time', '30', '-u', 'alice:wonderland', `${base}/INBOX;UID=2`]);
  assert.equal(body.code, 0, body.stderr);
  assert.equal(sha256(body.stdout), sha256(TRICKY));
  assert.ok(f.log.events('auth').some((e) => e.status === 'ok' && e.sasl_method === 'PLAIN'));
});

test('curl imap:// with --ssl-reqd (STARTTLS) and imaps://', async () => {
  const starttls = await run('curl', ['-sS', '--max-time', '30', '--ssl-reqd', '-k', '-u', 'alice:wonderland', `imap://127.0.0.1:${f.plainPort}/INBOX;UID=2`]);
  assert.equal(starttls.code, 0, starttls.stderr);
  assert.equal(sha256(starttls.stdout), sha256(TRICKY));
  const imaps = await run('curl', ['-sS', '--max-time', '30', '-k', '-u', 'alice:wonderland', `imaps://127.0.0.1:${f.tlsPort}/INBOX;UID=2`]);
  assert.equal(imaps.code, 0, imaps.stderr);
  assert.equal(sha256(imaps.stdout), sha256(TRICKY));
  const partial = await run('curl', ['-sS', '--max-time', '30', '-k', '-u', 'alice:wonderland', `imaps://127.0.0.1:${f.tlsPort}/INBOX;UID=2;SECTION=HEADER.FIELDS%20(SUBJECT)`]);
  assert.equal(partial.code, 0, partial.stderr);
  assert.equal(partial.stdout.toString(), 'Subject: byte-exact\r\n\r\n');
});

test('curl: a wrong password is refused', async () => {
  const r = await run('curl', ['-sS', '--max-time', '30', '-u', 'alice:wrong', `imap://127.0.0.1:${f.plainPort}/`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /denied|login|authentication/i);
});
