/**
 * Hot reload: changed tables and main.cf take effect without a restart (file watch and
 * SIGHUP); a file with errors leaves the running version in force and logs FILE:LINE.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

let gw: TestGateway;

before(async () => {
  gw = await startGateway({
    params: { smtpd_sender_restrictions: 'check_sender_access hash:sender_access' },
    files: { sender_access: '# empty\n' },
  });
});

after(async () => {
  await gw.stop();
  gw.cleanup();
});

/** The MAIL reply if it refused (smtpd_delay_reject = no), else the RCPT reply. */
async function rcptReply(sender: string): Promise<string> {
  const c = await SmtpClient.connect(gw.port);
  await c.cmd('EHLO client.example');
  const m = await c.cmd(`MAIL FROM:<${sender}>`);
  const r = m.code === 250 ? await c.cmd('RCPT TO:<user@relay.test>') : m;
  c.close();
  return r.raw;
}

async function eventually(fn: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('an edited table is picked up without a signal', async () => {
  assert.match(await rcptReply('spam@bad.example'), /^250 /);
  gw.writeFile('sender_access', 'bad.example REJECT go away\n');
  await eventually(async () => (await rcptReply('spam@bad.example')).startsWith('554 5.7.1 <spam@bad.example>: Sender address rejected: go away'));
  await gw.waitLog((l) => l.event === 'reload' && l.status === 'ok');
});

test('SIGHUP reloads main.cf', async () => {
  gw.writeMainCf({ smtpd_sender_restrictions: 'check_sender_access hash:sender_access', smtpd_helo_restrictions: 'reject_invalid_helo_hostname', smtpd_delay_reject: 'no' });
  gw.signal('SIGHUP');
  await eventually(async () => {
    const c = await SmtpClient.connect(gw.port);
    const r = await c.cmd('HELO bad..name');
    c.close();
    return r.code === 501;
  });
});

test('a broken main.cf or table keeps the running configuration and logs FILE:LINE', async () => {
  gw.writeMainCf({ smtpd_sender_restrictions: 'check_sender_access hash:sender_access', smtpd_delay_reject: 'perhaps' });
  gw.signal('SIGHUP');
  const rec = await gw.waitLog((l) => l.event === 'config' && String(l.msg).includes('smtpd_delay_reject'));
  assert.match(String(rec.msg), /main\.cf:\d+: bad value for smtpd_delay_reject/);
  await gw.waitLog((l) => l.event === 'reload' && l.status === 'failed');
  // Still the previous rules: the sender table rejects, and the server answers.
  assert.match(await rcptReply('spam@bad.example'), /^554 /);
});
