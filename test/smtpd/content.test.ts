/**
 * header_checks / body_checks end to end: every action through a real SMTP session, with
 * what lands in the queue, the reply and the log record (rule FILE:LINE and matched text).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient, type SmtpReply } from '../helpers/smtp-client.js';

const HEADER_CHECKS = `# test header checks
/^Subject: .*reject me/          REJECT No thanks
/^Subject: .*later please/       REJECT 4.7.1 Try again later
/^Subject: .*warn me/            WARN suspicious subject
/^Subject: .*info me/            INFO just so you know
/^Subject: .*discard me/         DISCARD dropped
/^Subject: .*hold me/            HOLD for review
/^Subject: .*prepend me/         PREPEND X-Tagged: yes
/^Subject: .*replace me/         REPLACE Subject: replaced
/^X-Remove-Me:/                  IGNORE
/^X-Strip-Me:/                   STRIP stripped
/^Subject: .*redirect me/        REDIRECT audit@relay.test
/^Subject: .*filter me/          FILTER smtp:[127.0.0.1]:10025
/^Subject: .*bcc me/             BCC archive@relay.test
/^Subject: .*pass me/            PASS trusted
/^Subject: (.*) capture/         WARN captured $1
/^Content-Type: application\\/x-msdownload/ REJECT No executables
/^X-Nested: bad/                 REJECT nested header seen
`;
const BODY_CHECKS = `/^buy cheap pills/               REJECT Body rejected
/^body warn/                     WARN body warning
`;

let gw: TestGateway;

before(async () => {
  gw = await startGateway({
    params: { header_checks: 'regexp:header_checks', body_checks: 'regexp:body_checks' },
    files: { header_checks: HEADER_CHECKS, body_checks: BODY_CHECKS },
  });
});

after(async () => {
  await gw.stop();
  gw.cleanup();
});

async function send(message: string, rcpts = ['user@relay.test']): Promise<SmtpReply> {
  const c = await SmtpClient.connect(gw.port);
  await c.cmd('EHLO client.example');
  await c.cmd('MAIL FROM:<sender@example.org>');
  for (const r of rcpts) await c.cmd(`RCPT TO:<${r}>`);
  const r = await c.data(message);
  c.close();
  return r;
}

function queueIdOf(r: SmtpReply): string {
  const id = /queued as (\S+)/.exec(r.raw)?.[1];
  assert.ok(id, r.raw);
  return id;
}

/** The stored message and its queue (the file is header + message + envelope records). */
function stored(id: string): { queue: string; message: string } {
  for (const q of ['incoming', 'active', 'deferred', 'hold']) {
    const dir = join(gw.dataDir, 'queue', q);
    for (const f of readdirSync(dir, { recursive: true }) as string[]) {
      if (!f.endsWith(id)) continue;
      const raw = readFileSync(join(dir, f), 'latin1');
      const len = parseInt(/^GREYGATE-QUEUE\/1 ([0-9a-f]{14})\n/.exec(raw)![1]!, 16);
      return { queue: q, message: raw.slice(32, 32 + len) };
    }
  }
  throw new Error(`${id} not in the queue`);
}

async function job(id: string): Promise<Record<string, unknown>> {
  const r = await gw.cli(['postqueue', '-j']);
  const j = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((x) => x.queue_id === id);
  assert.ok(j, `${id} not listed: ${r.stdout}`);
  return j;
}

const msg = (subject: string, extra = '', body = 'hello\r\n') => `From: <sender@example.org>\r\nSubject: ${subject}\r\n${extra}\r\n${body}`;

test('REJECT: 550 5.7.1 with the rule text at end of DATA, logged once with FILE:LINE and the header', async () => {
  const r = await send(msg('please reject me'));
  assert.equal(r.raw, '550 5.7.1 No thanks');
  const recs = gw.log().filter((l) => l.event === 'reject' && l.rule === 'header_checks:2');
  await gw.waitLog((l) => l.event === 'reject' && l.rule === 'header_checks:2');
  const rec = gw.log().find((l) => l.event === 'reject' && l.rule === 'header_checks:2')!;
  assert.equal(rec.matched, 'Subject: please reject me');
  assert.equal(rec.reply, '550 5.7.1 No thanks');
  assert.equal(rec.where, 'header');
  assert.match(String(rec.msg), /: reject: header Subject: please reject me from localhost\[127\.0\.0\.1\]; from=<sender@example\.org> to=<user@relay\.test> proto=ESMTP helo=<client\.example>: 5\.7\.1 No thanks$/);
  assert.ok(recs.length <= 1);
});

test('REJECT 4.x.x defers with 451', async () => {
  const r = await send(msg('later please'));
  assert.equal(r.raw, '451 4.7.1 Try again later');
  await gw.waitLog((l) => l.event === 'defer' && l.rule === 'header_checks:3');
});

test('WARN and INFO log and accept', async () => {
  const r1 = await send(msg('warn me'));
  assert.match(r1.raw, /^250 /);
  const w = await gw.waitLog((l) => l.event === 'warn' && l.rule === 'header_checks:4');
  assert.equal(w.text, 'suspicious subject');
  const r2 = await send(msg('info me'));
  assert.match(r2.raw, /^250 /);
  await gw.waitLog((l) => l.event === 'info' && l.rule === 'header_checks:5');
});

test('DISCARD answers 250 and stores nothing', async () => {
  const r = await send(msg('discard me'));
  assert.match(r.raw, /^250 2\.0\.0 Ok: queued as /);
  const id = queueIdOf(r);
  await gw.waitLog((l) => l.event === 'discard' && l.rule === 'header_checks:6');
  assert.throws(() => stored(id), /not in the queue/);
  assert.equal(gw.log().filter((l) => l.event === 'discard' && l.queue_id === id).length, 1);
});

test('HOLD puts the message in the hold queue; postsuper -H releases it', async () => {
  const r = await send(msg('hold me'));
  const id = queueIdOf(r);
  assert.equal(stored(id).queue, 'hold');
  assert.equal((await job(id)).queue_name, 'hold');
  await gw.waitLog((l) => l.event === 'hold' && l.rule === 'header_checks:7');
  const rel = await gw.cli(['postsuper', '-H', id]);
  assert.equal(rel.code, 0, rel.stderr);
  assert.notEqual((await job(id)).queue_name, 'hold');
});

test('PREPEND, REPLACE, IGNORE and STRIP rewrite the stored headers', async () => {
  const p = stored(queueIdOf(await send(msg('prepend me')))).message;
  assert.match(p, /\r\nX-Tagged: yes\r\nSubject: prepend me\r\n/);
  const rp = stored(queueIdOf(await send(msg('replace me')))).message;
  assert.match(rp, /\r\nSubject: replaced\r\n/);
  assert.ok(!rp.includes('replace me'));
  const ig = stored(queueIdOf(await send(msg('plain', 'X-Remove-Me: 1\r\nX-Strip-Me: 2\r\nX-Keep: 3\r\n')))).message;
  assert.ok(!ig.includes('X-Remove-Me'));
  assert.ok(!ig.includes('X-Strip-Me'));
  assert.ok(ig.includes('X-Keep: 3\r\n'));
  await gw.waitLog((l) => l.event === 'strip' && l.rule === 'header_checks:11');
});

test('REDIRECT replaces all recipients; BCC adds one; FILTER is recorded', async () => {
  const red = await job(queueIdOf(await send(msg('redirect me'), ['a@relay.test', 'b@relay.test'])));
  assert.deepEqual((red.recipients as Array<{ address: string }>).map((x) => x.address), ['audit@relay.test']);
  const bcc = await job(queueIdOf(await send(msg('bcc me'))));
  assert.deepEqual((bcc.recipients as Array<{ address: string }>).map((x) => x.address).sort(), ['archive@relay.test', 'user@relay.test']);
  const fid = queueIdOf(await send(msg('filter me')));
  await gw.waitLog((l) => l.event === 'filter' && l.rule === 'header_checks:13');
  assert.ok(stored(fid));
});

test('PASS stops all further header and body checks', async () => {
  const r = await send(msg('pass me', '', 'buy cheap pills\r\n'));
  assert.match(r.raw, /^250 /);
});

test('$n substitution in the action text', async () => {
  await send(msg('important capture'));
  const w = await gw.waitLog((l) => l.event === 'warn' && l.rule === 'header_checks:16');
  assert.equal(w.text, 'captured important');
});

test('body_checks: a body line rejects; empty lines never match', async () => {
  const r = await send(msg('fine', '', '\r\nbuy cheap pills now\r\n'));
  assert.equal(r.raw, '550 5.7.1 Body rejected');
  const rec = await gw.waitLog((l) => l.event === 'reject' && l.rule === 'body_checks:1');
  assert.equal(rec.matched, 'buy cheap pills now');
  assert.equal(rec.where, 'body');
});

test('MIME part headers go through mime_header_checks, attached message headers through nested_header_checks', async () => {
  const mime = [
    'From: <sender@example.org>',
    'Subject: attachment',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    'hi',
    '--b1',
    'Content-Type: application/x-msdownload; name="x.exe"',
    '',
    'TVqQAAMAAAAEAAAA',
    '--b1--',
    '',
  ].join('\r\n');
  assert.equal((await send(mime)).raw, '550 5.7.1 No executables');
  const nested = [
    'From: <sender@example.org>',
    'Subject: forwarded',
    'MIME-Version: 1.0',
    'Content-Type: message/rfc822',
    '',
    'X-Nested: bad',
    'Subject: inner',
    '',
    'inner body',
    '',
  ].join('\r\n');
  assert.equal((await send(nested)).raw, '550 5.7.1 nested header seen');
  const rec = await gw.waitLog((l) => l.event === 'reject' && l.rule === 'header_checks:18');
  assert.equal(rec.where, 'nested header');
});

test('an edited rule file is live without restart; a broken one keeps the old rules', async () => {
  gw.writeFile('header_checks', HEADER_CHECKS + '/^Subject: .*brand new rule/ REJECT new rule\n');
  const deadline = Date.now() + 5000;
  let r: SmtpReply;
  do {
    r = await send(msg('a brand new rule'));
    if (r.code === 550) break;
    await new Promise((res) => setTimeout(res, 100));
  } while (Date.now() < deadline);
  assert.equal(r.raw, '550 5.7.1 new rule');
  gw.writeFile('header_checks', HEADER_CHECKS + '/^Subject: .*brand new rule/ REJECT new rule\n/(?<=x)y/ REJECT lookbehind\n');
  await gw.waitLog((l) => l.event === 'config' && /header_checks:20: .*lookbehind/.test(String(l.msg)));
  assert.equal((await send(msg('a brand new rule'))).raw, '550 5.7.1 new rule');
  assert.equal((await send(msg('reject me'))).raw, '550 5.7.1 No thanks');
});
