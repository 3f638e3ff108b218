/**
 * The whole path through the running gateway with imapflow as the mail client: an IDLEing
 * session sees new mail that arrived over SMTP and was delivered by the delivery thread,
 * fetches it byte-exact, flags it, and a second session sees the change.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { ImapFlow } from 'imapflow';
import { freePort, startGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

function client(port: number, secure: boolean): ImapFlow {
  return new ImapFlow({
    host: '127.0.0.1',
    port,
    secure,
    tls: { rejectUnauthorized: false },
    auth: { user: 'alice', pass: 'pw' },
    logger: false,
  });
}

it('imapflow: IDLE sees an SMTP delivery; FETCH is byte-exact; flags reach another session', async () => {
  const imap = await freePort();
  const imaps = await freePort();
  const gw = await startGateway({ params: { master_service_disable: '', imap_port: String(imap), imaps_port: String(imaps) } });
  const a = client(imap, false);
  const b = client(imaps, true);
  try {
    assert.equal((await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'pw\n')).code, 0);
    await a.connect();
    const lock = await a.getMailboxLock('INBOX');
    try {
      assert.equal(a.mailbox && typeof a.mailbox === 'object' ? a.mailbox.exists : -1, 0);
      const arrived = new Promise<number>((res) => a.on('exists', (d: { count: number }) => res(d.count)));
      const idling = a.idle();
      const body = 'From: x@example.org\r\nTo: alice@greygate.test\r\nSubject: while idling\r\n\r\nhello imap\r\n';
      const c = await SmtpClient.connect(gw.port);
      await c.cmd('EHLO client.example');
      await c.cmd('MAIL FROM:<x@example.org>');
      assert.equal((await c.cmd('RCPT TO:<alice@greygate.test>')).code, 250);
      assert.equal((await c.data(body)).code, 250);
      c.close();
      let timer: NodeJS.Timeout | undefined;
      const count = await Promise.race([arrived, new Promise<number>((_, rej) => (timer = setTimeout(() => rej(new Error('no EXISTS while idling')), 20_000)))]);
      clearTimeout(timer);
      assert.equal(count, 1);
      // The next command ends IDLE (imapflow sends DONE first).
      const msg = await a.fetchOne('1', { source: true, envelope: true, uid: true, flags: true });
      await idling.catch(() => undefined);
      assert.ok(msg && msg.source);
      const got = msg.source.toString('latin1');
      assert.match(got, /^Return-Path: <x@example\.org>\r\n/);
      assert.ok(got.endsWith(body), got);
      assert.equal(msg.envelope?.subject, 'while idling');
      await b.connect();
      const status = await b.status('INBOX', { messages: true, uidNext: true, unseen: true });
      assert.equal(status.messages, 1);
      await a.messageFlagsAdd('1', ['\\Seen', '\\Flagged']);
      const lb = await b.getMailboxLock('INBOX');
      try {
        const seen = await b.fetchOne('1', { flags: true });
        assert.ok(seen && seen.flags?.has('\\Flagged') && seen.flags.has('\\Seen'));
      } finally {
        lb.release();
      }
    } finally {
      lock.release();
    }
    await gw.waitLog((r) => r.event === 'auth' && r.user === 'alice' && r.status === 'ok');
  } finally {
    await a.logout().catch(() => undefined);
    await b.logout().catch(() => undefined);
    await gw.stop();
  }
});
