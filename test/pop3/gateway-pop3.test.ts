/**
 * The whole path through the running gateway: SMTP in, local delivery by the delivery
 * thread into Maildir, read back over POP3 and POP3S (Python's poplib) from the gateway's
 * own listeners, byte-exact, and deleted at QUIT.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort, requireTool, startGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

const run = promisify(execFile);

const POPLIB = `
import base64, json, poplib, ssl, sys
port, secure, user, pw, dele = int(sys.argv[1]), sys.argv[2] == 'ssl', sys.argv[3], sys.argv[4], sys.argv[5] == 'dele'
if secure:
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    p = poplib.POP3_SSL('127.0.0.1', port, context=ctx, timeout=20)
else:
    p = poplib.POP3('127.0.0.1', port, timeout=20)
p.user(user); p.pass_(pw)
count, size = p.stat()
uidl = [l.decode() for l in p.uidl()[1]]
msgs = []
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    msgs.append(base64.b64encode(b'\\r\\n'.join(lines) + b'\\r\\n').decode())
    if dele: p.dele(i)
p.quit()
print(json.dumps({'count': count, 'size': size, 'msgs': msgs, 'uidl': uidl}))
`;

async function pop(port: number, secure: boolean, dele: boolean): Promise<{ count: number; size: number; msgs: string[]; uidl: string[] }> {
  requireTool('/usr/bin/python3');
  const { stdout } = await run('python3', ['-c', POPLIB, String(port), secure ? 'ssl' : 'plain', 'alice', 'pw', dele ? 'dele' : 'keep']);
  return JSON.parse(stdout) as { count: number; size: number; msgs: string[]; uidl: string[] };
}

it('SMTP in, Maildir by the delivery thread, POP3/POP3S out of the gateway', async () => {
  const pop3 = await freePort();
  const pop3s = await freePort();
  const gw = await startGateway({ params: { master_service_disable: '', pop3_port: String(pop3), pop3s_port: String(pop3s) } });
  try {
    assert.equal((await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'pw\n')).code, 0);
    const body = 'From: x@example.org\r\nSubject: over pop\r\n\r\n.leading dot\r\nsecond line\r\n';
    const c = await SmtpClient.connect(gw.port);
    await c.cmd('EHLO client.example');
    await c.cmd('MAIL FROM:<x@example.org>');
    assert.equal((await c.cmd('RCPT TO:<alice@greygate.test>')).code, 250);
    assert.equal((await c.data(body)).code, 250);
    c.close();
    await gw.waitLog((r) => r.event === 'deliver' && r.to === 'alice@greygate.test', 15_000);
    const first = await pop(pop3, false, false);
    assert.equal(first.count, 1);
    const got = Buffer.from(first.msgs[0]!, 'base64').toString('latin1');
    // Return-Path and Delivered-To from local delivery, then our Received header, then the message.
    assert.match(got, /^Return-Path: <x@example\.org>\r\n/);
    assert.match(got, /\r\nDelivered-To: alice@greygate\.test\r\n/);
    assert.ok(got.endsWith(body), got);
    const second = await pop(pop3s, true, true);
    assert.deepEqual(second.msgs, first.msgs);
    assert.deepEqual(second.uidl, first.uidl, 'UIDL is stable across sessions');
    const third = await pop(pop3, false, false);
    assert.equal(third.count, 0, 'DELE + QUIT removed it');
    const auth = await gw.waitLog((r) => r.event === 'auth' && r.user === 'alice');
    assert.equal(auth.client_ip, '127.0.0.1');
  } finally {
    await gw.stop();
  }
});
