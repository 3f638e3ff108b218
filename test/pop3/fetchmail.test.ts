/**
 * fetchmail, the classic non-interactive mail client, against the running gateway: the
 * same mailbox fetched over POP3 (STLS) and IMAP (STARTTLS), handed to an MDA, byte-exact
 * with what local delivery stored; with POP3 the messages are deleted at QUIT.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, requireTool, startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

const run = promisify(execFile);
const FETCHMAIL = '/usr/bin/fetchmail';

async function fetch(gw: TestGateway, proto: 'POP3' | 'IMAP', port: number, keep: boolean): Promise<string[]> {
  const home = join(gw.dir, `fetchmail-${proto}-${Date.now()}`);
  const out = join(home, 'out');
  mkdirSync(out, { recursive: true });
  const rc = join(home, 'fetchmailrc');
  writeFileSync(
    rc,
    [
      'set no bouncemail',
      `poll 127.0.0.1 with proto ${proto} port ${port}`,
      `  user "alice" there with password "pw" is "root" here`,
      `  sslproto "TLS1.2+" no sslcertck`,
      `  fetchall ${keep ? 'keep' : 'nokeep'}`,
      `  mda "/bin/sh -c 'cat > ${out}/msg-$$.eml'"`,
      '',
    ].join('\n'),
  );
  chmodSync(rc, 0o600);
  try {
    await run(FETCHMAIL, ['-f', rc, '--nodetach', '--nosyslog'], { env: { ...process.env, FETCHMAILHOME: home, HOME: home } });
  } catch (e) {
    const err = e as { code?: number; stderr?: string; stdout?: string };
    // 1 = no mail; anything else is a failure.
    if (err.code !== 1) throw new Error(`fetchmail ${proto} failed (${err.code}): ${err.stderr ?? ''}${err.stdout ?? ''}`);
  }
  return readdirSync(out).map((f) => readFileSync(join(out, f), 'latin1'));
}

it('fetchmail fetches over POP3 and IMAP from the gateway', async (t) => {
  const missing = requireTool(FETCHMAIL);
  if (missing) return t.skip(missing);
  const pop3 = await freePort();
  const imap = await freePort();
  const gw = await startGateway({ params: { master_service_disable: '', pop3_port: String(pop3), imap_port: String(imap) } });
  try {
    assert.equal((await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'pw\n')).code, 0);
    const bodies = ['Subject: one\r\n\r\nfirst message\r\n', 'Subject: two\r\n\r\nsecond message\r\n.\r\n'];
    for (const body of bodies) {
      const c = await SmtpClient.connect(gw.port);
      await c.cmd('EHLO client.example');
      await c.cmd('MAIL FROM:<x@example.org>');
      assert.equal((await c.cmd('RCPT TO:<alice@greygate.test>')).code, 250);
      assert.equal((await c.data(body)).code, 250);
      c.close();
    }
    for (let i = 0; i < 2; i++) await gw.waitLog((r) => r.event === 'deliver' && r.to === 'alice@greygate.test' && (gw.log().filter((x) => x.event === 'deliver').length > i), 15_000);
    const viaImap = await fetch(gw, 'IMAP', imap, true);
    assert.equal(viaImap.length, 2);
    const viaPop = await fetch(gw, 'POP3', pop3, false);
    assert.equal(viaPop.length, 2);
    for (const body of bodies) {
      // fetchmail adds its own Received line and hands the MDA LF line ends.
      const lf = body.replace(/\r\n/g, '\n');
      assert.ok(viaImap.some((m) => m.endsWith(lf)), `IMAP copy of ${JSON.stringify(body)}`);
      assert.ok(viaPop.some((m) => m.endsWith(lf)), `POP3 copy of ${JSON.stringify(body)}`);
    }
    assert.deepEqual(await fetch(gw, 'POP3', pop3, false), [], 'POP3 deleted them at QUIT');
  } finally {
    await gw.stop();
  }
});
