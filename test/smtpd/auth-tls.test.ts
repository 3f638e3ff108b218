/**
 * STARTTLS, implicit TLS and AUTH on the submission/smtps services, with real clients
 * (raw sockets, Python's smtplib, swaks).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startGateway, requireTool, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

let gw: TestGateway;
const PLAIN = (u: string, p: string) => Buffer.from(`\0${u}\0${p}`).toString('base64');

before(async () => {
  gw = await startGateway();
  const r = await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'wonderland\n');
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await gw.stop();
  gw.cleanup();
});

test('STARTTLS on the smtpd port; the Received header records TLS', async () => {
  const c = await SmtpClient.connect(gw.port);
  await c.cmd('EHLO client.example');
  assert.equal((await c.starttls()).code, 220);
  const e = await c.cmd('EHLO client.example');
  assert.ok(!e.raw.includes('STARTTLS'));
  await c.cmd('MAIL FROM:<a@example.org>');
  await c.cmd('RCPT TO:<b@relay.test>');
  const r = await c.data('Subject: tls\r\n\r\nsecret\r\n');
  assert.match(r.raw, /^250 /);
  c.close();
  const rec = await gw.waitLog((l) => l.event === 'accept' && l.reply === r.raw);
  assert.ok(rec);
});

test('submission: no relay without AUTH; AUTH PLAIN from loopback without TLS is allowed', async () => {
  const c = await SmtpClient.connect(gw.ports.submission);
  const e = await c.cmd('EHLO client.example');
  assert.ok(e.lines.some((l) => /AUTH PLAIN LOGIN/.test(l)), e.raw);
  await c.cmd('MAIL FROM:<alice@greygate.test>');
  const denied = await c.cmd('RCPT TO:<friend@elsewhere.example>');
  assert.equal(denied.code, 554, denied.raw);
  await c.cmd('RSET');
  assert.equal((await c.cmd(`AUTH PLAIN ${PLAIN('alice', 'wrong')}`)).raw, '535 5.7.8 Error: authentication failed: authentication failure');
  assert.equal((await c.cmd(`AUTH PLAIN ${PLAIN('alice', 'wonderland')}`)).code, 235);
  await c.cmd('MAIL FROM:<alice@greygate.test>');
  assert.equal((await c.cmd('RCPT TO:<friend@elsewhere.example>')).code, 250);
  const r = await c.data('Subject: authed\r\n\r\nhi\r\n');
  assert.match(r.raw, /^250 /);
  c.close();
  const auth = await gw.waitLog((l) => l.event === 'auth' && l.sasl_username === 'alice' && l.code === 235);
  assert.equal(auth.sasl_method, 'PLAIN');
});

test('disable_plaintext_auth: a non-loopback client must STARTTLS before AUTH', async () => {
  const c = await SmtpClient.connect(gw.ports.submission);
  assert.equal((await c.cmd('XCLIENT ADDR=203.0.113.50 NAME=client.example.net')).code, 220);
  await c.cmd('EHLO client.example.net');
  const r = await c.cmd(`AUTH PLAIN ${PLAIN('alice', 'wonderland')}`);
  assert.equal(r.raw, '538 5.7.11 Encryption required for requested authentication mechanism');
  await c.starttls();
  await c.cmd('EHLO client.example.net');
  assert.equal((await c.cmd(`AUTH PLAIN ${PLAIN('alice', 'wonderland')}`)).code, 235);
  c.close();
});

test('smtps: implicit TLS with Python smtplib, AUTH LOGIN and relay', async () => {
  const py = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL('127.0.0.1', ${gw.ports.smtps}, context=ctx, timeout=10)
s.ehlo('py.example')
s.login('alice', 'wonderland')
refused = s.sendmail('alice@greygate.test', ['friend@elsewhere.example'], 'Subject: smtps\\r\\n\\r\\nvia python\\r\\n')
print('refused', refused)
print(s.sock.version())
s.quit()
`;
  const r = spawnSync('python3', ['-c', py], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /refused \{\}/);
  assert.match(r.stdout, /TLSv1\.[23]/);
});

test('swaks: STARTTLS + AUTH LOGIN on submission', async (t) => {
  const skip = requireTool('/usr/bin/swaks');
  if (skip) return t.skip(skip);
  const r = spawnSync('swaks', ['--server', '127.0.0.1', '--port', String(gw.ports.submission), '--tls', '--auth', 'LOGIN', '--auth-user', 'alice', '--auth-password', 'wonderland', '--from', 'alice@greygate.test', '--to', 'x@elsewhere.example', '--body', 'hi'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /<~  235 /);
  assert.match(r.stdout, /<~  250 2\.0\.0 Ok: queued as /);
});
