/**
 * Relay control and recipient validation over real SMTP on loopback. External clients are
 * simulated with XCLIENT from 127.0.0.1 (smtpd_authorized_xclient_hosts), exactly as a
 * front proxy would, so every restriction sees the external address.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

let gw: TestGateway;

before(async () => {
  gw = await startGateway({
    params: {
      smtpd_relay_restrictions: 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
      alias_maps: 'hash:aliases',
      recipient_delimiter: '+',
    },
    files: { aliases: 'postmaster: alice\nabuse: alice\n' },
  });
  const r = await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'secret\n');
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await gw.stop();
  gw.cleanup();
});

async function external(ip = '203.0.113.9', name = 'mail.example.net'): Promise<SmtpClient> {
  const c = await SmtpClient.connect(gw.port);
  const x = await c.cmd(`XCLIENT ADDR=${ip} NAME=${name}`);
  assert.equal(x.code, 220, x.raw);
  const e = await c.cmd('EHLO mail.example.net');
  assert.equal(e.code, 250, e.raw);
  return c;
}

test('greeting is 220 + smtpd_banner, EHLO advertises Postfix-like extensions', async () => {
  const c = await SmtpClient.connect(gw.port);
  assert.equal(c.greeting.raw, '220 mx.greygate.test ESMTP greygate');
  const e = await c.cmd('EHLO client.example');
  assert.equal(e.lines[0], '250-mx.greygate.test');
  for (const ext of ['PIPELINING', 'SIZE 10240000', 'STARTTLS', 'ENHANCEDSTATUSCODES', '8BITMIME']) {
    assert.ok(e.lines.some((l) => l.slice(4) === ext), `${ext} in ${e.raw}`);
  }
  assert.ok(!e.lines.some((l) => l.includes('AUTH')), 'no AUTH on the smtpd port');
  assert.ok(e.lines.some((l) => l.includes('XCLIENT')), 'XCLIENT offered to an authorized host');
  assert.equal((await c.cmd('QUIT')).raw, '221 2.0.0 Bye');
  c.close();
});

test('mynetworks may relay anywhere; replies are Postfix texts', async () => {
  const c = await SmtpClient.connect(gw.port);
  await c.cmd('EHLO client.example');
  assert.equal((await c.cmd('MAIL FROM:<me@client.example>')).raw, '250 2.1.0 Ok');
  assert.equal((await c.cmd('RCPT TO:<someone@elsewhere.example>')).raw, '250 2.1.5 Ok');
  const r = await c.data('Subject: hi\r\n\r\nbody\r\n');
  assert.match(r.raw, /^250 2\.0\.0 Ok: queued as [0-9A-Za-z]+$/);
  c.close();
});

test('external client: relay denied with 554 5.7.1 and a logged decision', async () => {
  const c = await external();
  assert.equal((await c.cmd('MAIL FROM:<spammer@example.net>')).code, 250);
  const r = await c.cmd('RCPT TO:<victim@elsewhere.example>');
  assert.equal(r.raw, '554 5.7.1 <victim@elsewhere.example>: Relay access denied');
  const rec = await gw.waitLog((l) => l.event === 'reject' && l.to === 'victim@elsewhere.example');
  assert.equal(rec.stage, 'rcpt');
  assert.equal(rec.client_ip, '203.0.113.9');
  assert.equal(rec.client_name, 'mail.example.net');
  assert.equal(rec.helo, 'mail.example.net');
  assert.equal(rec.from, 'spammer@example.net');
  assert.equal(rec.code, 554);
  assert.equal(rec.status, '5.7.1');
  assert.equal(rec.reply, '554 5.7.1 <victim@elsewhere.example>: Relay access denied');
  assert.equal(rec.rule, 'reject_unauth_destination');
  assert.equal(typeof rec.session, 'string');
  assert.equal(typeof rec.time, 'string');
  assert.match(String(rec.msg), /^NOQUEUE: reject: RCPT from mail\.example\.net\[203\.0\.113\.9\]: 554 5\.7\.1 <victim@elsewhere\.example>: Relay access denied; from=<spammer@example\.net> to=<victim@elsewhere\.example> proto=ESMTP helo=<mail\.example\.net>$/);
  c.close();
});

// Sender-specified routing and other address tricks: none of these may be relayed.
const OPEN_RELAY_TRICKS = [
  'victim@elsewhere.example',
  'victim%elsewhere.example@greygate.test',
  'victim%elsewhere.example@relay.test',
  'elsewhere.example!victim@greygate.test',
  'elsewhere.example!victim@relay.test',
  '@greygate.test:victim@elsewhere.example',
  '@relay.test:victim@elsewhere.example',
  '"victim@elsewhere.example"@greygate.test',
  '"victim@elsewhere.example"@relay.test',
  '"victim%elsewhere.example"@greygate.test',
  'victim@elsewhere.example@greygate.test',
  'victim@elsewhere.example.',
  'victim@[192.0.2.1]',
  'victim@[127.0.0.2]',
  'victim@relay.test.elsewhere.example',
  'victim@elsewhere.example.relay.test.invalid',
  'victim@notrelay.test',
  'victim@RELAY.TEST.elsewhere.example',
  '"victim%elsewhere.example"@relay.test',
  'victim@elsewhere.example%greygate.test',
];

for (const addr of OPEN_RELAY_TRICKS) {
  test(`open relay battery: <${addr}> is refused`, async () => {
    const c = await external();
    await c.cmd('MAIL FROM:<spammer@example.net>');
    const r = await c.cmd(`RCPT TO:<${addr}>`);
    assert.ok(r.code >= 500 && r.code < 600, `expected 5xx for <${addr}>, got ${r.raw}`);
    c.close();
  });
}

test('relay_domains and subdomains are accepted from anyone (and case does not matter)', async () => {
  const c = await external();
  await c.cmd('MAIL FROM:<friend@example.net>');
  assert.equal((await c.cmd('RCPT TO:<user@relay.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<User@Relay.TEST>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<user@sub.relay.test>')).code, 250);
  c.close();
});

test('local recipients: users, aliases and address extensions pass; others get 550 5.1.1', async () => {
  const c = await external();
  await c.cmd('MAIL FROM:<friend@example.net>');
  assert.equal((await c.cmd('RCPT TO:<alice@greygate.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice+lists@greygate.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<postmaster@greygate.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<ALICE@mx.greygate.test>')).code, 250);
  assert.equal(
    (await c.cmd('RCPT TO:<nobody@greygate.test>')).raw,
    '550 5.1.1 <nobody@greygate.test>: Recipient address rejected: User unknown in local recipient table',
  );
  c.close();
});

test('a user added while the gateway runs is known at once', async () => {
  const c = await external();
  await c.cmd('MAIL FROM:<friend@example.net>');
  assert.equal((await c.cmd('RCPT TO:<bob@greygate.test>')).code, 550);
  const r = await gw.cli(['user', 'add', 'bob', '--password-stdin'], 'pw\n');
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await c.cmd('RCPT TO:<bob@greygate.test>')).code, 250);
  c.close();
});

test('XCLIENT is refused to hosts outside smtpd_authorized_xclient_hosts', async () => {
  const other = await startGateway({ params: { smtpd_authorized_xclient_hosts: '' } });
  try {
    const c = await SmtpClient.connect(other.port);
    const e = await c.cmd('EHLO client.example');
    assert.ok(!e.raw.includes('XCLIENT'));
    const x = await c.cmd('XCLIENT ADDR=203.0.113.9');
    assert.equal(x.code, 550);
    assert.match(x.raw, /^550 5\.7\.0 /);
    c.close();
  } finally {
    await other.stop();
    other.cleanup();
  }
});

test('reject_unauth_pipelining refuses a client that does not wait for replies', async () => {
  const other = await startGateway({ params: { smtpd_data_restrictions: 'reject_unauth_pipelining' } });
  try {
    const c = await SmtpClient.connect(other.port);
    c.write('HELO client.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@relay.test>\r\nDATA\r\n');
    assert.equal((await c.read()).code, 250);
    assert.equal((await c.read()).code, 250);
    assert.equal((await c.read()).code, 250);
    const d = await c.read();
    assert.equal(d.raw, '503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining');
    c.close();
    // A well-behaved client is not affected.
    const ok = await SmtpClient.connect(other.port);
    await ok.cmd('EHLO client.example');
    await ok.cmd('MAIL FROM:<a@example.net>');
    await ok.cmd('RCPT TO:<b@relay.test>');
    assert.equal((await ok.cmd('DATA')).code, 354);
    ok.close();
  } finally {
    await other.stop();
    other.cleanup();
  }
});

test('connection count limit: 421 4.7.0 for the connection over the limit', async () => {
  const other = await startGateway({ params: { smtpd_client_connection_count_limit: '2', smtpd_client_event_limit_exceptions: '' } });
  try {
    const a = await SmtpClient.connect(other.port);
    const b = await SmtpClient.connect(other.port);
    const c = await SmtpClient.connect(other.port);
    assert.match(c.greeting.raw, /^421 4\.7\.0 mx\.greygate\.test Error: too many connections from 127\.0\.0\.1$/);
    a.close();
    b.close();
    c.close();
  } finally {
    await other.stop();
    other.cleanup();
  }
});

test('postscreen_greet_wait: mynetworks clients are not screened, and an early command is answered after the greeting', async () => {
  // The pregreet test itself (teaser banner, PREGREET log line, 521/550) is in postscreen.test.ts.
  const other = await startGateway({ params: { postscreen_greet_wait: '1s' } });
  try {
    const c = await SmtpClient.connect(other.port, { waitGreeting: false });
    c.write('EHLO early.example\r\n');
    assert.equal((await c.read()).raw, '220 mx.greygate.test ESMTP greygate');
    assert.equal((await c.read()).code, 250);
    c.close();
  } finally {
    await other.stop();
    other.cleanup();
  }
});
