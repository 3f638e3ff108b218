/**
 * DATA over real SMTP: durable acceptance, the Received header, message_size_limit,
 * bare LF / SMTP smuggling, and the queue listing tools.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

let gw: TestGateway;

before(async () => {
  gw = await startGateway({ params: { message_size_limit: '20000' } });
});

after(async () => {
  await gw.stop();
  gw.cleanup();
});

function queued(): Array<Record<string, unknown>> {
  return gw.log().filter((r) => r.event === 'accept');
}

/** The message as stored: the queue file is a 32-byte header (with the message length), the message, then envelope records. */
async function queueFile(id: string): Promise<string> {
  for (const q of ['incoming', 'active', 'deferred', 'hold']) {
    const dir = join(gw.dataDir, 'queue', q);
    for (const f of readdirSync(dir, { recursive: true }) as string[]) {
      if (!f.endsWith(id)) continue;
      const raw = readFileSync(join(dir, f), 'latin1');
      const m = /^GREYGATE-QUEUE\/1 ([0-9a-f]{14})\n/.exec(raw);
      assert.ok(m, 'queue file header');
      return raw.slice(32, 32 + parseInt(m[1]!, 16));
    }
  }
  throw new Error(`queue file ${id} not found`);
}

async function postqueueJson(): Promise<Array<Record<string, unknown>>> {
  const r = await gw.cli(['postqueue', '-j']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('accepted mail is in the queue with our Received header; postqueue lists it', async () => {
  const c = await SmtpClient.connect(gw.port);
  await c.cmd('EHLO client.example');
  await c.cmd('MAIL FROM:<sender@example.org>');
  await c.cmd('RCPT TO:<rcpt@relay.test>');
  const r = await c.data('From: <sender@example.org>\r\nSubject: durable\r\n\r\nHello.\r\n');
  c.close();
  const id = /queued as (\S+)/.exec(r.raw)?.[1];
  assert.ok(id, r.raw);
  const file = await queueFile(id);
  assert.match(file, /Received: from client\.example \(localhost \[127\.0\.0\.1\]\)\r\n\tby mx\.greygate\.test \(greygate\) with ESMTP id [0-9A-Za-z]+\r\n\tfor <rcpt@relay\.test>; /);
  assert.ok(file.includes('Subject: durable\r\n\r\nHello.\r\n'));
  const jobs = await postqueueJson();
  const job = jobs.find((j) => j.queue_id === id);
  assert.ok(job, JSON.stringify(jobs));
  assert.equal(job.queue_name, 'incoming');
  assert.equal(job.sender, 'sender@example.org');
  assert.deepEqual((job.recipients as Array<{ address: string }>).map((x) => x.address), ['rcpt@relay.test']);
  const p = await gw.cli(['postqueue', '-p']);
  assert.match(p.stdout, new RegExp(`^${id}\\s+\\d+ .* sender@example\\.org\\n\\s+rcpt@relay\\.test`, 'm'));
  const rec = await gw.waitLog((l) => l.event === 'accept' && l.queue_id === id);
  assert.equal(rec.code, 250);
  assert.equal(rec.from, 'sender@example.org');
  assert.deepEqual(rec.to, ['rcpt@relay.test']);
  assert.equal(typeof rec.size, 'number');
});

test('nodemailer: 20 concurrent messages are all accepted and queued', async () => {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: gw.port, secure: false, ignoreTLS: true, pool: false });
  const before = queued().length;
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      transport.sendMail({ from: 'a@example.org', to: `n${i}@relay.test`, subject: `m${i}`, text: `message ${i}` }),
    ),
  );
  for (const r of results) assert.match(r.response, /^250 2\.0\.0 Ok: queued as /);
  await gw.waitLog(() => queued().length >= before + 20);
});

test('message_size_limit: SIZE= too large is 552 at MAIL; an oversized DATA is 552 5.3.4 and not queued', async () => {
  const c = await SmtpClient.connect(gw.port);
  await c.cmd('EHLO client.example');
  const m = await c.cmd('MAIL FROM:<a@example.org> SIZE=50000');
  assert.equal(m.code, 552);
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  await c.cmd('RCPT TO:<b@relay.test>');
  const before = queued().length;
  const r = await c.data('Subject: big\r\n\r\n' + 'x'.repeat(76).concat('\r\n').repeat(400));
  assert.equal(r.raw, '552 5.3.4 Message size exceeds fixed limit');
  // The session goes on.
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  c.close();
  await new Promise((r2) => setTimeout(r2, 200));
  assert.equal(queued().length, before);
});

test('smuggling: <LF>.<LF> does not end DATA; bare LF is stored as CRLF', async () => {
  const c = await SmtpClient.connect(gw.port);
  await c.cmd('EHLO client.example');
  await c.cmd('MAIL FROM:<a@example.org>');
  await c.cmd('RCPT TO:<b@relay.test>');
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write('Subject: smuggle\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.org>\nRCPT TO:<x@elsewhere.example>\nDATA\nsmuggled\r\n.\r\n');
  const r = await c.read();
  assert.match(r.raw, /^250 2\.0\.0 Ok: queued as /);
  // Exactly one reply: nothing after the bare-LF dot was taken as a command.
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 Ok');
  c.close();
  const id = /queued as (\S+)/.exec(r.raw)![1]!;
  const file = await queueFile(id);
  assert.ok(file.includes('first\r\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\nsmuggled\r\n'), JSON.stringify(file));
  assert.ok(!/[^\r]\n/.test(file), 'no bare LF in the queue file');
});

test('stray CR never reaches the queue raw', async () => {
  const c = await SmtpClient.connect(gw.port);
  await c.cmd('EHLO client.example');
  await c.cmd('MAIL FROM:<a@example.org>');
  await c.cmd('RCPT TO:<b@relay.test>');
  await c.cmd('DATA');
  c.write('Subject: cr\r\n\r\nline\rwith stray CR\r\n.\r\n');
  const r = await c.read();
  c.close();
  const file = await queueFile(/queued as (\S+)/.exec(r.raw)![1]!);
  assert.ok(file.includes('line with stray CR\r\n'));
});

test('smtpd_forbid_bare_newline = reject: 550 5.5.2 and disconnect; mynetworks exempt', async () => {
  const other = await startGateway({ params: { smtpd_forbid_bare_newline: 'reject' } });
  try {
    const send = async (xclient: boolean) => {
      const c = await SmtpClient.connect(other.port);
      if (xclient) assert.equal((await c.cmd('XCLIENT ADDR=198.51.100.20 NAME=[UNAVAILABLE]')).code, 220);
      await c.cmd('EHLO client.example');
      await c.cmd('MAIL FROM:<a@example.org>');
      await c.cmd('RCPT TO:<b@relay.test>');
      await c.cmd('DATA');
      c.write('Subject: x\r\n\r\nbare\nlf\r\n.\r\n');
      const r = await c.read();
      return { r, closed: await c.waitClosed(2000), c };
    };
    const ext = await send(true);
    assert.equal(ext.r.raw, '550 5.5.2 Error: bare <LF> received');
    assert.ok(ext.closed, 'disconnected');
    const local = await send(false);
    assert.match(local.r.raw, /^250 /);
    local.c.close();
    const rec = await other.waitLog((l) => l.event === 'reject' && l.rule === 'smtpd_forbid_bare_newline');
    assert.equal(rec.client_ip, '198.51.100.20');
  } finally {
    await other.stop();
    other.cleanup();
  }
});

test('swaks delivers through the gateway', async (t) => {
  const { requireTool } = await import('../helpers/gateway.js');
  const skip = requireTool('/usr/bin/swaks');
  if (skip) return t.skip(skip);
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync('swaks', ['--server', '127.0.0.1', '--port', String(gw.port), '--from', 's@example.org', '--to', 'r@relay.test', '--header', 'Subject: swaks', '--body', 'hi'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /<-  250 2\.0\.0 Ok: queued as /);
});
