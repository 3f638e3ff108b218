/**
 * @module test/pop3/server
 * SUMMARY: the POP3 server on 127.0.0.1 port 0 with real clients: Python's poplib (plain,
 * STLS, POP3_SSL) and curl (pop3://, pop3s://, pop3:// with --ssl-reqd), plus a raw line
 * client for the exact texts: RETR byte-exact with what local delivery stored (with the
 * prepended headers) and dot-stuffed, TOP, UIDL stable across sessions and restarts,
 * DELE+QUIT vs DELE+disconnect vs RSET, \Seen at QUIT, the [IN-USE] lock, Dovecot's
 * disable_plaintext_auth refusal (exemption injected off), AUTH PLAIN with an initial
 * response and with a continuation, failure delay and rate limit, pipelining, line-length
 * and idle limits, and the auth/info log records.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { harness, loginRaw, python, RawClient, runProgram, type Harness } from './harness.js';

const MESSAGES = [
  'From: Carol <carol@example.net>\r\nTo: alice@example.com\r\nSubject: first\r\n\r\nHello Alice.\r\n.\r\n..two dots\r\n.leading dot\r\nlast line\r\n',
  'From: dave@example.net\r\nSubject: second\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe, bare\rCR stays\r\n',
  `Subject: third, big\r\n\r\n${'0123456789abcdef'.repeat(6).concat('\r\n').repeat(4000)}`,
];
const PREPEND = (i: number): string[] => ['Return-Path: <sender@example.net>', `Delivered-To: alice@example.com`, `X-Seq: ${i}`];

/** What a client must get back for message I: the prepended lines, then the message, CRLF throughout. */
function expected(i: number): Buffer {
  return Buffer.concat([Buffer.from(PREPEND(i).map((l) => `${l}\r\n`).join('')), Buffer.from(MESSAGES[i]!, 'latin1')]);
}

async function deliverAll(h: Harness, user = 'alice'): Promise<void> {
  for (let i = 0; i < MESSAGES.length; i++) await h.store.deliver(user, Buffer.from(MESSAGES[i]!, 'latin1'), { prepend: PREPEND(i) });
}

function unstuff(body: Buffer): Buffer {
  const text = body.toString('latin1');
  return Buffer.from(text.replace(/^\./gm, ''), 'latin1');
}

const POPLIB = `
import base64, json, poplib, ssl, sys
mode, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode == 'ssl':
    p = poplib.POP3_SSL('127.0.0.1', port, context=ctx, timeout=20)
else:
    p = poplib.POP3('127.0.0.1', port, timeout=20)
out = {'welcome': p.getwelcome().decode()}
if mode == 'stls':
    out['capa_before'] = sorted(p.capa().keys())
    out['stls'] = p.stls(context=ctx).decode()
out['capa'] = sorted(p.capa().keys())
if sys.argv[3] == 'apop-none':
    pass
p.user(sys.argv[3])
out['pass'] = p.pass_(sys.argv[4]).decode()
out['stat'] = list(p.stat())
out['list'] = [x.decode() for x in p.list()[1]]
out['uidl'] = [x.decode() for x in p.uidl()[1]]
out['retr'] = []
for i in range(1, out['stat'][0] + 1):
    resp, lines, octets = p.retr(i)
    out['retr'].append(base64.b64encode(b'\\r\\n'.join(lines) + b'\\r\\n').decode())
resp, lines, octets = p.top(1, 1)
out['top'] = base64.b64encode(b'\\r\\n'.join(lines) + b'\\r\\n').decode()
out['quit'] = p.quit().decode()
print(json.dumps(out))
`;

describe('POP3 with real clients', () => {
  let h: Harness;
  let plain: number;
  let implicit: number;
  before(async () => {
    h = await harness();
    await deliverAll(h);
    plain = (await h.listen()).port();
    implicit = (await h.listen({ implicitTls: true })).port();
  });
  after(async () => {
    await h.close();
  });

  for (const mode of ['plain', 'stls', 'ssl'] as const) {
    it(`poplib ${mode}: STAT, LIST, UIDL, RETR byte-exact with the delivery, TOP, QUIT`, async () => {
      const r = await python(POPLIB, [mode, String(mode === 'ssl' ? implicit : plain), 'alice', 'secret']);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as Record<string, unknown> & { retr: string[]; stat: number[]; list: string[]; uidl: string[]; top: string; capa: string[] };
      assert.equal(out.welcome, '+OK greygate ready.');
      assert.equal(out.pass, '+OK Logged in.');
      const sizes = MESSAGES.map((_, i) => expected(i).length);
      assert.deepEqual(out.stat, [3, sizes.reduce((a, b) => a + b)]);
      assert.deepEqual(out.list, sizes.map((s, i) => `${i + 1} ${s}`));
      assert.equal(out.uidl.length, 3);
      for (let i = 0; i < 3; i++) assert.ok(Buffer.from(out.retr[i]!, 'base64').equals(expected(i)), `message ${i + 1} byte-exact`);
      const top = Buffer.from(out.top, 'base64').toString('latin1');
      assert.equal(top, `${PREPEND(0).join('\r\n')}\r\nFrom: Carol <carol@example.net>\r\nTo: alice@example.com\r\nSubject: first\r\n\r\nHello Alice.\r\n`);
      assert.equal(out.quit, '+OK Logging out.');
      if (mode === 'stls') {
        assert.ok((out.capa_before as string[]).includes('STLS'));
        assert.ok(!out.capa.includes('STLS'), 'no STLS once TLS is on');
      }
      if (mode === 'ssl') assert.ok(!out.capa.includes('STLS'));
      assert.ok(out.capa.includes('USER') && out.capa.includes('SASL') && out.capa.includes('UIDL') && out.capa.includes('TOP'));
    });
  }

  it('curl pop3:// lists and retrieves; pop3s:// and STLS (--ssl-reqd) too', async () => {
    const list = await runProgram('curl', ['-sS', '--max-time', '20', '-u', 'alice:secret', `pop3://127.0.0.1:${plain}/`]);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(list.stdout, MESSAGES.map((_, i) => `${i + 1} ${expected(i).length}\r\n`).join(''));
    for (const [url, extra] of [
      [`pop3://127.0.0.1:${plain}/2`, []],
      [`pop3s://127.0.0.1:${implicit}/2`, ['-k']],
      [`pop3://127.0.0.1:${plain}/2`, ['-k', '--ssl-reqd']],
    ] as const) {
      const r = await runProgram('curl', ['-sS', '--max-time', '20', ...extra, '-u', 'alice:secret', url]);
      assert.equal(r.code, 0, `${url} ${extra.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, expected(1).toString('latin1'), `${url} ${extra.join(' ')}`);
    }
    const bad = await runProgram('curl', ['-sS', '--max-time', '20', '-u', 'alice:wrong', `pop3://127.0.0.1:${plain}/1`]);
    assert.notEqual(bad.code, 0);
  });

  it('curl pop3:// retrieves a dot-stuffed message unchanged', async () => {
    const r = await runProgram('curl', ['-sS', '--max-time', '20', '-u', 'alice:secret', `pop3://127.0.0.1:${plain}/1`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, expected(0).toString('latin1'));
  });
});

describe('POP3 protocol', () => {
  let h: Harness;
  let port: number;
  before(async () => {
    h = await harness();
    port = (await h.listen()).port();
  });
  after(async () => {
    await h.close();
  });

  it('dot-stuffs RETR, counts octets before stuffing, and TOP 0 stops after the header', async () => {
    await deliverAll(h, 'bob');
    const c = await RawClient.connect(port);
    try {
      assert.equal(await loginRaw(c, 'bob', 'hunter2'), '+OK Logged in.');
      assert.equal(await c.command('RETR 1'), `+OK ${expected(0).length} octets`);
      const body = await c.multiline();
      assert.match(body.toString('latin1'), /\r\n\.\.\r\n\.\.\.two dots\r\n\.\.leading dot\r\n/);
      assert.ok(unstuff(body).equals(expected(0)));
      assert.equal(await c.command('TOP 1 0'), '+OK');
      assert.equal((await c.multiline()).toString('latin1'), `${PREPEND(0).join('\r\n')}\r\nFrom: Carol <carol@example.net>\r\nTo: alice@example.com\r\nSubject: first\r\n\r\n`);
      assert.equal(await c.command('TOP 1 99999'), '+OK');
      assert.ok(unstuff(await c.multiline()).equals(expected(0)));
      assert.equal(await c.command('RETR 4'), "-ERR There's no message 4.");
      assert.equal(await c.command('RETR 0'), "-ERR There's no message 0.");
      assert.equal(await c.command('RETR x'), '-ERR Invalid message number: x');
      assert.equal(await c.command('TOP 1'), '-ERR Invalid arguments.');
      assert.equal(await c.command('LIST 2'), `+OK 2 ${expected(1).length}`);
      assert.equal(await c.command('QUIT'), '+OK Logging out.');
    } finally {
      c.destroy();
    }
  });

  it('keeps UIDLs across sessions and across a restart of the store and listener', async () => {
    const uidls = async (p: number): Promise<string> => {
      const c = await RawClient.connect(p);
      try {
        assert.equal(await loginRaw(c, 'bob', 'hunter2'), '+OK Logged in.');
        assert.match(await c.command('UIDL'), /^\+OK/);
        const body = (await c.multiline()).toString();
        assert.equal(await c.command('UIDL 1'), `+OK 1 ${body.split('\r\n')[0]!.split(' ')[1]}`);
        await c.command('QUIT');
        return body;
      } finally {
        c.destroy();
      }
    };
    const first = await uidls(port);
    assert.match(first, /^1 [0-9A-F]{16}\r\n2 [0-9A-F]{16}\r\n3 [0-9A-F]{16}\r\n$/);
    assert.equal(await uidls(port), first);
    // Another process's view: a new store and listener over the same data directory.
    const again = await harness({ dir: h.dir });
    try {
      const p2 = (await again.listen()).port();
      assert.equal(await uidls(p2), first);
    } finally {
      await again.close();
    }
  });

  it('deletes at QUIT only; a dropped connection and RSET delete nothing; RETR marks \\Seen', async () => {
    const user = 'alice';
    const fresh = await harness();
    try {
      await deliverAll(fresh, user);
      const p = (await fresh.listen()).port();
      // DELE then the connection drops: nothing is deleted.
      let c = await RawClient.connect(p);
      assert.equal(await loginRaw(c), '+OK Logged in.');
      assert.equal(await c.command('DELE 1'), '+OK Marked to be deleted.');
      assert.equal(await c.command('DELE 1'), '-ERR Message is deleted.');
      assert.equal(await c.command('RETR 1'), '-ERR Message is deleted.');
      assert.equal(await c.command('STAT'), `+OK 2 ${expected(1).length + expected(2).length}`);
      c.destroy();
      await waitUntil(async () => (await loginWorks(p)) === '+OK Logged in.');
      // DELE, RSET, QUIT: nothing deleted.
      c = await RawClient.connect(p);
      assert.equal(await loginRaw(c), '+OK Logged in.');
      assert.equal(await c.command('STAT'), `+OK 3 ${[0, 1, 2].map((i) => expected(i).length).reduce((a, b) => a + b)}`);
      await c.command('DELE 2');
      assert.equal(await c.command('RSET'), '+OK');
      assert.equal(await c.command('STAT'), `+OK 3 ${[0, 1, 2].map((i) => expected(i).length).reduce((a, b) => a + b)}`);
      assert.equal(await c.command('QUIT'), '+OK Logging out.');
      c.destroy();
      // RETR 3, DELE 1, QUIT: message 1 gone, message 3 \Seen (:2,S in cur/).
      c = await RawClient.connect(p);
      assert.equal(await loginRaw(c), '+OK Logged in.');
      await c.command('RETR 3');
      await c.multiline();
      assert.equal(await c.command('DELE 1'), '+OK Marked to be deleted.');
      assert.equal(await c.command('QUIT'), '+OK Logging out, messages deleted.');
      await c.closedByServer();
      const root = join(fresh.dir, 'mail', user);
      const files = [...(await readdir(join(root, 'new'))), ...(await readdir(join(root, 'cur')))];
      assert.equal(files.length, 2);
      assert.equal(files.filter((f) => f.endsWith(':2,S')).length, 1);
      const deletions = fresh.log.of('info').filter((r) => r.uid !== undefined);
      assert.deepEqual(
        deletions.map((r) => [r.user, r.uid, r.client_ip, r.size]),
        [['alice', 1, '127.0.0.1', expected(0).length]],
      );
      // The next session numbers what is left from 1, with the same UIDLs as before.
      c = await RawClient.connect(p);
      assert.equal(await loginRaw(c), '+OK Logged in.');
      assert.equal(await c.command('LIST'), '+OK 2 messages:');
      assert.equal((await c.multiline()).toString(), `1 ${expected(1).length}\r\n2 ${expected(2).length}\r\n`);
      await c.command('QUIT');
      c.destroy();
    } finally {
      await fresh.close();
    }
  });

  it('locks the maildrop: a second session gets [IN-USE] until the first one ends', async () => {
    const a = await RawClient.connect(port);
    const b = await RawClient.connect(port);
    try {
      assert.equal(await loginRaw(a), '+OK Logged in.');
      assert.equal(await loginRaw(b), '-ERR [IN-USE] Mailbox is locked by another POP3 session.');
      assert.ok(h.log.of('auth').some((r) => r.status === 'in-use' && r.user === 'alice'));
      // Still in AUTHORIZATION: it may try again.
      a.destroy();
      await waitUntil(async () => (await b.command('PASS secret')) === '-ERR No username given.' && (await b.command('USER alice')) === '+OK' && (await b.command('PASS secret')) === '+OK Logged in.');
      await b.command('QUIT');
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  it('answers AUTH PLAIN with an initial response and with a continuation; refuses another authorization identity', async () => {
    const plain = (authz: string, user: string, pass: string): string => Buffer.from(`${authz}\0${user}\0${pass}`).toString('base64');
    let c = await RawClient.connect(port);
    try {
      await c.line();
      assert.equal(await c.command('AUTH'), '+OK');
      assert.equal((await c.multiline()).toString(), 'PLAIN\r\n');
      assert.equal(await c.command(`AUTH PLAIN ${plain('', 'alice', 'secret')}`), '+OK Logged in.');
      await c.command('QUIT');
    } finally {
      c.destroy();
    }
    c = await RawClient.connect(port);
    try {
      await c.line();
      assert.equal(await c.command('AUTH PLAIN'), '+ ');
      assert.equal(await c.command('*'), '-ERR Authentication aborted by client.');
      assert.equal(await c.command('AUTH PLAIN'), '+ ');
      assert.equal(await c.command('%%%'), '-ERR Invalid base64 data in continued response.');
      assert.equal(await c.command(`AUTH PLAIN ${plain('bob', 'alice', 'secret')}`), '-ERR [AUTH] Authentication failed.');
      assert.equal(await c.command('AUTH CRAM-MD5'), '-ERR Unsupported authentication mechanism.');
      assert.equal(await c.command('AUTH PLAIN'), '+ ');
      assert.equal(await c.command(plain('alice', 'ALICE', 'secret')), '+OK Logged in.');
      assert.equal(await c.command('STAT'), '+OK 0 0');
      await c.command('QUIT');
    } finally {
      c.destroy();
    }
    const auths = h.log.of('auth').filter((r) => r.method === 'PLAIN');
    assert.ok(auths.some((r) => r.status === 'ok' && r.user === 'alice'));
    assert.ok(auths.some((r) => r.status === 'failed'));
  });

  it('answers commands in the wrong state, unknown ones, and pipelined ones in order', async () => {
    const c = await RawClient.connect(port);
    try {
      await c.line();
      assert.equal(await c.command('STAT'), '-ERR Command not allowed in this state: STAT');
      assert.equal(await c.command('XYZZY 1 2'), '-ERR Unknown command: XYZZY');
      assert.equal(await c.command(''), '-ERR Unknown command.');
      assert.equal(await c.command('PASS x'), '-ERR No username given.');
      c.write('USER alice\r\nPASS secret\r\nSTAT\r\nNOOP\r\nUIDL 9\r\nQUIT\r\n');
      assert.deepEqual([await c.line(), await c.line(), await c.line(), await c.line(), await c.line(), await c.line()], [
        '+OK',
        '+OK Logged in.',
        '+OK 0 0',
        '+OK',
        "-ERR There's no message 9.",
        '+OK Logging out.',
      ]);
      await c.closedByServer();
    } finally {
      c.destroy();
    }
  });

  it('delays failed logins, logs them, and refuses a client after too many', async () => {
    const strict = await harness({ guard: { failureDelayMs: 150, maxFailuresPerClient: 3 } });
    try {
      const p = (await strict.listen()).port();
      const c = await RawClient.connect(p);
      await c.line();
      for (let i = 0; i < 3; i++) {
        await c.command('USER alice');
        const t0 = Date.now();
        assert.equal(await c.command('PASS wrong'), '-ERR [AUTH] Authentication failed.');
        assert.ok(Date.now() - t0 >= 140, `delayed ${Date.now() - t0} ms`);
      }
      await c.command('USER alice');
      assert.equal(await c.command('PASS secret'), '-ERR [SYS/TEMP] Too many authentication failures, try again later.');
      const statuses = strict.log.of('auth').map((r) => [r.status, r.user, r.client_ip]);
      assert.deepEqual(statuses, [
        ['failed', 'alice', '127.0.0.1'],
        ['failed', 'alice', '127.0.0.1'],
        ['failed', 'alice', '127.0.0.1'],
        ['refused', 'alice', '127.0.0.1'],
      ]);
      c.destroy();
    } finally {
      await strict.close();
    }
  });

  it('refuses a line longer than the limit and goes on', async () => {
    const small = await h.listen({ deps: { maxLineLength: 100 } });
    const c = await RawClient.connect(small.port());
    try {
      await c.line();
      c.write(`USER ${'a'.repeat(5000)}`);
      assert.equal(await c.line(), '-ERR Input line too long.');
      c.write(`${'b'.repeat(5000)}\r\nNOOP\r\n`);
      assert.equal(await c.line(), '-ERR Command not allowed in this state: NOOP');
      assert.equal(await c.command('CAPA'), '+OK');
    } finally {
      c.destroy();
    }
  });

  it('ends an idle session with Dovecot\'s text and releases its lock', async () => {
    const quick = await h.listen({ deps: { idleTimeoutMs: 300 } });
    const c = await RawClient.connect(quick.port());
    try {
      assert.equal(await loginRaw(c, 'bob', 'hunter2'), '+OK Logged in.');
      assert.equal(await c.line(5000), '-ERR Disconnected for inactivity.');
      await c.closedByServer();
      assert.equal(await loginWorks(port, 'bob', 'hunter2'), '+OK Logged in.');
    } finally {
      c.destroy();
    }
  });

  it('answers RETR of a message another session expunged, and QUIT still succeeds', async () => {
    const fresh = await harness();
    try {
      await deliverAll(fresh, 'alice');
      const p = (await fresh.listen()).port();
      const c = await RawClient.connect(p);
      assert.equal(await loginRaw(c), '+OK Logged in.');
      const imap = fresh.store.mailbox('alice');
      await imap.setFlags('INBOX', [2], ['\\Deleted'], 'add');
      assert.deepEqual(await imap.expunge('INBOX'), [2]);
      assert.equal(await c.command('RETR 2'), '-ERR Message was expunged by another session.');
      assert.equal(await c.command('DELE 2'), '+OK Marked to be deleted.');
      assert.equal(await c.command('QUIT'), '+OK Logging out, messages deleted.');
      const st = await imap.status('INBOX');
      assert.equal(st.kind === 'ok' ? st.messages : -1, 2);
    } finally {
      await fresh.close();
    }
  });

  it('on shutdown tells the client, applies no deletions and releases the lock', async () => {
    const fresh = await harness();
    try {
      await deliverAll(fresh, 'alice');
      const l = await fresh.listen();
      const c = await RawClient.connect(l.port());
      assert.equal(await loginRaw(c), '+OK Logged in.');
      assert.equal(await c.command('DELE 1'), '+OK Marked to be deleted.');
      const closing = l.close(5000);
      assert.equal(await c.line(), '-ERR Server shutting down.');
      await c.closedByServer();
      await closing;
      const st = await fresh.store.mailbox('alice').status('INBOX');
      assert.equal(st.kind === 'ok' ? st.messages : -1, 3);
      assert.ok(fresh.store.lockPop3('alice'), 'the lock was released');
    } finally {
      await fresh.close();
    }
  });

  it('ends the session after too many bad commands', async () => {
    const c = await RawClient.connect(port);
    try {
      await c.line();
      for (let i = 0; i < 19; i++) assert.match(await c.command(`BOGUS${i}`), /^-ERR Unknown command/);
      assert.equal(await c.command('BOGUS'), '-ERR Too many bad commands.');
      await c.closedByServer();
    } finally {
      c.destroy();
    }
  });
});

describe('POP3 disable_plaintext_auth', () => {
  let h: Harness;
  before(async () => {
    h = await harness();
  });
  after(async () => {
    await h.close();
  });

  const REFUSED = '-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.';

  it('refuses USER and AUTH PLAIN outside TLS when loopback is not exempt, and hides them from CAPA', async () => {
    const l = await h.listen({ deps: { plaintextExempt: () => false } });
    const c = await RawClient.connect(l.port());
    try {
      await c.line();
      assert.equal(await c.command('CAPA'), '+OK');
      const capa = (await c.multiline()).toString().split('\r\n');
      assert.ok(capa.includes('STLS'));
      assert.ok(!capa.includes('USER') && !capa.some((x) => x.startsWith('SASL')), capa.join(','));
      assert.equal(await c.command('USER alice'), REFUSED);
      assert.equal(await c.command(`AUTH PLAIN ${Buffer.from('\0alice\0secret').toString('base64')}`), REFUSED);
      assert.ok(h.log.of('auth').some((r) => r.status === 'disallowed'));
      // After STLS the same commands work.
      assert.equal(await c.command('STLS'), '+OK Begin TLS negotiation now.');
      await c.upgrade();
      assert.equal(await c.command('CAPA'), '+OK');
      const after = (await c.multiline()).toString().split('\r\n');
      assert.ok(after.includes('USER') && after.includes('SASL PLAIN') && !after.includes('STLS'));
      assert.equal(await c.command('STLS'), '-ERR TLS is already active.');
      assert.equal(await c.command('USER alice'), '+OK');
      assert.equal(await c.command('PASS secret'), '+OK Logged in.');
      const ok = h.log.of('auth').find((r) => r.status === 'ok');
      assert.equal(ok?.tls, true);
      await c.command('QUIT');
    } finally {
      c.destroy();
    }
  });

  it('allows plaintext from loopback by default, and everywhere with disable_plaintext_auth = no', async () => {
    for (const o of [{}, { deps: { plaintextExempt: () => false }, mainCf: 'disable_plaintext_auth = no\n' }]) {
      const l = await h.listen(o);
      const c = await RawClient.connect(l.port());
      try {
        assert.equal(await loginRaw(c), '+OK Logged in.');
        await c.command('QUIT');
      } finally {
        c.destroy();
      }
    }
  });

  it('poplib refuses to log in without STLS, and succeeds with it', async () => {
    const l = await h.listen({ deps: { plaintextExempt: () => false } });
    const script = `
import poplib, ssl, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
try:
    p.user('alice')
    print('unexpected')
except poplib.error_proto as e:
    print(e.args[0].decode())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p.stls(context=ctx)
p.user('alice')
print(p.pass_('secret').decode())
p.quit()
`;
    const r = await python(script, [String(l.port())]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${REFUSED.slice(0)}\n+OK Logged in.\n`);
  });
});

async function loginWorks(port: number, user = 'alice', pass = 'secret'): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    const r = await loginRaw(c, user, pass);
    if (r.startsWith('+OK')) await c.command('QUIT');
    return r;
  } finally {
    c.destroy();
  }
}

async function waitUntil(test: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 25));
  }
}

