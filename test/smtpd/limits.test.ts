/**
 * Postfix's anvil limits and smtpd's session limits, end to end through the real gateway:
 * concurrent raw-socket clients from different 127.0.0.x source addresses (the per-IP
 * connection limits), XCLIENT from 127.0.0.1 to be a client outside mynetworks (the message
 * and recipient rates), each limit's exact Postfix reply, its one log record, the
 * exemptions, the anvil_rate_time_unit window restarting, the error tarpit and the idle
 * timeout. Client names come from the loopback test DNS server, never the system resolver.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { TestDnsServer } from '../fixtures/dns-server.js';

/** The shared test client from a chosen 127.0.0.x source address, with replies as their raw text. */
class Peer {
  private constructor(
    private readonly c: SmtpClient,
    readonly greeting: string,
  ) {}

  static async open(port: number, from: string): Promise<Peer> {
    const c = await SmtpClient.connect(port, { localAddress: from });
    return new Peer(c, c.greeting.raw);
  }

  get closed(): boolean {
    return this.c.closed;
  }

  async read(timeoutMs = 10_000): Promise<string> {
    return (await this.c.read(timeoutMs)).raw;
  }

  async cmd(line: string): Promise<string> {
    return (await this.c.cmd(line)).raw;
  }

  write(raw: string): void {
    this.c.write(raw);
  }

  waitClosed(timeoutMs = 3000): Promise<boolean> {
    return this.c.waitClosed(timeoutMs);
  }

  async quit(): Promise<void> {
    if (!this.c.closed) this.c.write('QUIT\r\n');
    await this.c.waitClosed();
    this.c.close();
  }

  close(): void {
    this.c.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const HOST = 'mx.greygate.test';
let dns: TestDnsServer;
let gw: TestGateway;
const peers: Peer[] = [];
const clients: SmtpClient[] = [];

async function peer(from: string): Promise<Peer> {
  const p = await Peer.open(gw.port, from);
  peers.push(p);
  return p;
}

/** A client outside mynetworks, as a front proxy presents it (XCLIENT from 127.0.0.1). */
async function external(ip: string, port = gw.port): Promise<SmtpClient> {
  const c = await SmtpClient.connect(port);
  clients.push(c);
  const x = await c.cmd(`XCLIENT ADDR=${ip}`);
  assert.equal(x.code, 220, x.raw);
  const e = await c.cmd('EHLO client.example');
  assert.equal(e.code, 250, e.raw);
  return c;
}

before(async () => {
  dns = await TestDnsServer.start({
    // 127.0.0.9 has forward-confirmed reverse DNS: trusted.example.
    '9.0.0.127.in-addr.arpa': { PTR: ['trusted.example'] },
    'trusted.example': { A: ['127.0.0.9'] },
  });
  gw = await startGateway({
    params: {
      dns_resolvers: dns.address,
      // mynetworks stays 127.0.0.0/8: an explicit exception list replaces $mynetworks.
      smtpd_client_event_limit_exceptions: '127.0.0.1, trusted.example',
      smtpd_client_connection_count_limit: '2',
      smtpd_client_connection_rate_limit: '4',
      smtpd_client_message_rate_limit: '2',
      smtpd_client_recipient_rate_limit: '5',
      anvil_rate_time_unit: '2s',
      smtpd_recipient_limit: '3',
      smtpd_recipient_overshoot_limit: '2',
      smtpd_hard_error_limit: '6',
      smtpd_soft_error_limit: '3',
      smtpd_error_sleep_time: '400ms',
    },
  });
});

after(async () => {
  for (const p of peers) p.close();
  for (const c of clients) c.close();
  await gw?.stop();
  gw?.cleanup();
  await dns?.close();
});

test('smtpd_client_connection_count_limit: 421 4.7.0 instead of the greeting, then hang up; a close frees the slot', async () => {
  const a = await peer('127.0.0.2');
  const b = await peer('127.0.0.2');
  assert.match(a.greeting, /^220 /);
  assert.match(b.greeting, /^220 /);
  const c = await peer('127.0.0.2');
  assert.equal(c.greeting, `421 4.7.0 ${HOST} Error: too many connections from 127.0.0.2`);
  assert.ok(await c.waitClosed(), 'the refused client is disconnected');
  const rec = await gw.waitLog((r) => r.rule === 'smtpd_client_connection_count_limit' && r.client_ip === '127.0.0.2');
  assert.equal(rec.event, 'defer');
  assert.equal(rec.stage, 'connect');
  assert.equal(rec.code, 421);
  assert.equal(rec.status, '4.7.0');
  assert.equal(rec.reply, `421 4.7.0 ${HOST} Error: too many connections from 127.0.0.2`);
  assert.match(String(rec.msg), /Connection concurrency limit exceeded: 3 from unknown\[127\.0\.0\.2\] for service smtpd/);
  assert.equal(gw.log().filter((r) => r.rule === 'smtpd_client_connection_count_limit' && r.client_ip === '127.0.0.2').length, 1, 'one record per refusal');
  // The other client's session still works.
  assert.match(await a.cmd('EHLO a.example'), /^250/);
  await b.quit();
  // The server notices the close (onClose) right after the FIN; then there is a slot again.
  let again = '';
  for (let i = 0; i < 50 && !again.startsWith('220'); i++) {
    const d = await peer('127.0.0.2');
    again = d.greeting;
    if (!again.startsWith('220')) await sleep(50);
  }
  assert.match(again, /^220 /);
});

test('connection count with concurrent clients: exactly the limit is let in', async () => {
  const all = await Promise.all([1, 2, 3, 4].map(() => peer('127.0.0.6')));
  const greetings = all.map((p) => p.greeting.slice(0, 3)).sort();
  assert.deepEqual(greetings, ['220', '220', '421', '421']);
});

test('smtpd_client_connection_rate_limit: the 5th connection in the window is refused, the next window lets it in', async () => {
  const start = Date.now();
  for (let i = 0; i < 4; i++) {
    const p = await peer('127.0.0.3');
    assert.match(p.greeting, /^220 /, `connection ${i + 1}`);
    await p.quit();
  }
  const over = await peer('127.0.0.3');
  assert.equal(over.greeting, `421 4.7.0 ${HOST} Error: too many connections from 127.0.0.3`);
  assert.ok(await over.waitClosed());
  const rec = await gw.waitLog((r) => r.rule === 'smtpd_client_connection_rate_limit' && r.client_ip === '127.0.0.3');
  assert.equal(rec.event, 'defer');
  assert.equal(rec.stage, 'connect');
  assert.equal(rec.code, 421);
  assert.match(String(rec.msg), /Connection rate limit exceeded: 5 from /);
  // anvil restarts the window once anvil_rate_time_unit (2s) has passed since its start.
  await sleep(Math.max(0, start + 2300 - Date.now()));
  const fresh = await peer('127.0.0.3');
  assert.match(fresh.greeting, /^220 /);
  await fresh.quit();
});

test('smtpd_client_event_limit_exceptions: listed addresses and verified names are exempt', async () => {
  // 127.0.0.1 is listed: more than the count limit at once, more than the rate in the window.
  const local = await Promise.all([1, 2, 3, 4, 5, 6].map(() => peer('127.0.0.1')));
  for (const p of local) assert.match(p.greeting, /^220 /);
  // 127.0.0.9 is trusted.example by forward-confirmed reverse DNS.
  const named = await Promise.all([1, 2, 3, 4, 5, 6].map(() => peer('127.0.0.9')));
  for (const p of named) assert.match(p.greeting, /^220 /);
  for (const p of [...local, ...named]) await p.quit();
  // 127.0.0.2 is in mynetworks but not in the explicit list: it was limited above.
});

test('smtpd_client_message_rate_limit: MAIL FROM over the limit is 450 4.7.1, across connections, until the window ends', async () => {
  const ip = '192.0.2.10';
  const c = await external(ip);
  const start = Date.now();
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<x@relay.test>')).code, 250);
  assert.equal((await c.data('Subject: one\r\n\r\nbody\r\n')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  assert.equal((await c.cmd('RSET')).code, 250);
  const r = await c.cmd('MAIL FROM:<b@example.org>');
  assert.equal(r.raw, `450 4.7.1 Error: too much mail from ${ip}`);
  const rec = await gw.waitLog((x) => x.rule === 'smtpd_client_message_rate_limit' && x.client_ip === ip);
  assert.equal(rec.event, 'defer');
  assert.equal(rec.stage, 'mail');
  assert.equal(rec.code, 450);
  assert.equal(rec.status, '4.7.1');
  assert.equal(rec.from, 'b@example.org');
  assert.equal(rec.reply, `450 4.7.1 Error: too much mail from ${ip}`);
  // The count belongs to the client, not the connection.
  const c2 = await external(ip);
  assert.equal((await c2.cmd('MAIL FROM:<c@example.org>')).raw, `450 4.7.1 Error: too much mail from ${ip}`);
  // Another client, and an exempt one, are unaffected.
  const other = await external('192.0.2.11');
  assert.equal((await other.cmd('MAIL FROM:<a@example.org>')).code, 250);
  const exempt = await external('127.0.0.1');
  for (let i = 0; i < 4; i++) {
    assert.equal((await exempt.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await exempt.cmd('RSET')).code, 250);
  }
  await sleep(Math.max(0, start + 2300 - Date.now()));
  assert.equal((await c2.cmd('MAIL FROM:<d@example.org>')).code, 250, 'a new window');
});

test('message rate with concurrent sessions of one client: exactly the limit gets 250', async () => {
  const ip = '192.0.2.12';
  const sessions = await Promise.all([1, 2, 3, 4].map(() => external(ip)));
  const codes = (await Promise.all(sessions.map((s) => s.cmd('MAIL FROM:<a@example.org>')))).map((r) => r.code).sort();
  assert.deepEqual(codes, [250, 250, 450, 450]);
  await gw.waitLog((x) => x.rule === 'smtpd_client_message_rate_limit' && x.client_ip === ip);
  assert.equal(gw.log().filter((x) => x.rule === 'smtpd_client_message_rate_limit' && x.client_ip === ip).length, 2);
});

test('smtpd_client_recipient_rate_limit: every RCPT counts, across transactions; 450 4.7.1 over it', async () => {
  const ip = '192.0.2.20';
  const c = await external(ip);
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  for (const u of ['r1', 'r2', 'r3']) assert.equal((await c.cmd(`RCPT TO:<${u}@relay.test>`)).code, 250, u);
  assert.equal((await c.cmd('RSET')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  for (const u of ['r4', 'r5']) assert.equal((await c.cmd(`RCPT TO:<${u}@relay.test>`)).code, 250, u);
  const r = await c.cmd('RCPT TO:<r6@relay.test>');
  assert.equal(r.raw, `450 4.7.1 Error: too many recipients from ${ip}`);
  const rec = await gw.waitLog((x) => x.rule === 'smtpd_client_recipient_rate_limit' && x.client_ip === ip);
  assert.equal(rec.event, 'defer');
  assert.equal(rec.stage, 'rcpt');
  assert.equal(rec.to, 'r6@relay.test');
  assert.equal(rec.code, 450);
  assert.equal(rec.status, '4.7.1');
});

test('smtpd_recipient_limit: 452 4.5.3 past the limit, the message keeps the first ones, the next message starts over', async () => {
  const c = await external('127.0.0.1');
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  for (const u of ['u1', 'u2', 'u3']) assert.equal((await c.cmd(`RCPT TO:<${u}@relay.test>`)).code, 250, u);
  const r = await c.cmd('RCPT TO:<u4@relay.test>');
  assert.equal(r.raw, '452 4.5.3 Error: too many recipients');
  const rec = await gw.waitLog((x) => x.rule === 'smtpd_recipient_limit' && x.to === 'u4@relay.test');
  assert.equal(rec.event, 'defer');
  assert.equal(rec.stage, 'rcpt');
  assert.equal(rec.code, 452);
  assert.equal(rec.status, '4.5.3');
  const d = await c.data('Subject: limited\r\n\r\nbody\r\n');
  assert.equal(d.code, 250, d.raw);
  const acc = await gw.waitLog((x) => x.event === 'accept' && Array.isArray(x.to) && (x.to as string[]).includes('u1@relay.test'));
  assert.deepEqual(acc.to, ['u1@relay.test', 'u2@relay.test', 'u3@relay.test']);
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  for (const u of ['v1', 'v2', 'v3']) assert.equal((await c.cmd(`RCPT TO:<${u}@relay.test>`)).code, 250, u);
});

test('smtpd_hard_error_limit: unknown commands, syntax errors, bad sequence and rejects all count; 421 4.7.0 at the limit', async () => {
  const ip = '192.0.2.30';
  const c = await external(ip);
  const t: number[] = [];
  const timed = async (line: string): Promise<string> => {
    const t0 = Date.now();
    const r = await c.cmd(line);
    t.push(Date.now() - t0);
    return r.raw;
  };
  assert.equal(await timed('FOO'), '500 5.5.2 Error: command not recognized');
  assert.match(await timed('MAIL FROM:<broken'), /^501 /);
  assert.match(await timed('RCPT TO:<x@relay.test>'), /^503 /);
  // Three errors: from here on smtpd_error_sleep_time (400ms) delays every reply, good ones too.
  assert.equal(await timed('MAIL FROM:<a@example.org>'), '250 2.1.0 Ok');
  // The default smtpd_relay_restrictions end in defer_unauth_destination: a 4xx reject counts too.
  assert.match(await timed('RCPT TO:<x@elsewhere.example>'), /^454 4\.7\.1 <x@elsewhere\.example>: Relay access denied/);
  for (const ms of t.slice(3)) assert.ok(ms >= 350, `delayed reply took ${ms}ms`);
  assert.equal(await timed('BAR'), '500 5.5.2 Error: command not recognized');
  // The sixth error: its reply, then the 421 at once, then the server hangs up.
  c.write('BAZ\r\n');
  assert.equal((await c.read()).raw, '500 5.5.2 Error: command not recognized');
  assert.equal((await c.read()).raw, `421 4.7.0 ${HOST} Error: too many errors`);
  assert.ok(await c.waitClosed());
  const rec = await gw.waitLog((x) => x.rule === 'smtpd_hard_error_limit' && x.client_ip === ip);
  assert.equal(rec.event, 'defer');
  assert.equal(rec.code, 421);
  assert.equal(rec.status, '4.7.0');
  assert.equal(rec.reply, `421 4.7.0 ${HOST} Error: too many errors`);
  assert.equal(rec.command, 'BAZ');
  assert.match(String(rec.msg), /^too many errors after BAZ from unknown\[192\.0\.2\.30\]$/);
  // Postfix has no separate cap of 10 unknown commands (smtp-server's): the hard limit rules.
});

test('a delivered message forgives the errors made before it', async () => {
  const c = await external('127.0.0.1');
  for (let i = 0; i < 5; i++) assert.equal((await c.cmd(`JUNK${i}`)).code, 500);
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<x@relay.test>')).code, 250);
  assert.equal((await c.data('Subject: ok\r\n\r\nbody\r\n')).code, 250);
  // Five more would have been the limit without the reset; the sixth is.
  for (let i = 0; i < 5; i++) assert.equal((await c.cmd(`JUNK${i}`)).code, 500);
  assert.equal(c.closed, false);
  c.write('JUNK5\r\n');
  assert.equal((await c.read()).code, 500);
  assert.equal((await c.read()).raw, `421 4.7.0 ${HOST} Error: too many errors`);
});

test('smtpd_recipient_overshoot_limit: the first excess recipients are not errors, the later ones are', async () => {
  const c = await external('127.0.0.1');
  assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
  for (const u of ['o1', 'o2', 'o3']) assert.equal((await c.cmd(`RCPT TO:<${u}@relay.test>`)).code, 250);
  const replies: string[] = [];
  // 2 forgiven + 6 counted (hard limit 6) = 8 replies of 452, then the 421.
  for (let i = 0; i < 8; i++) replies.push((await c.cmd(`RCPT TO:<x${i}@relay.test>`)).raw);
  assert.deepEqual(replies, Array(8).fill('452 4.5.3 Error: too many recipients'));
  assert.equal((await c.read()).raw, `421 4.7.0 ${HOST} Error: too many errors`);
  assert.ok(await c.waitClosed());
});

test('smtpd_junk_command_limit defaults leave NOOP/RSET alone', async () => {
  const c = await external('127.0.0.1');
  for (let i = 0; i < 30; i++) assert.equal((await c.cmd(i % 2 ? 'NOOP' : 'RSET')).raw, '250 2.0.0 Ok');
  assert.equal(c.closed, false);
});

test('defaults: smtpd_client_event_limit_exceptions = $mynetworks; smtpd_timeout: 421 4.4.2 and hang up', async () => {
  const gw2 = await startGateway({
    params: {
      dns_resolvers: dns.address,
      mynetworks: '127.0.0.0/30',
      smtpd_client_connection_count_limit: '1',
      smtpd_client_message_rate_limit: '1',
      smtpd_timeout: '2s',
    },
  });
  const local: Peer[] = [];
  try {
    // 127.0.0.2 is in mynetworks, so exempt by default; 127.0.0.5 is not.
    for (let i = 0; i < 3; i++) local.push(await Peer.open(gw2.port, '127.0.0.2'));
    for (const p of local) assert.match(p.greeting, /^220 /);
    local.push(await Peer.open(gw2.port, '127.0.0.5'));
    assert.match(local[3]!.greeting, /^220 /);
    const over = await Peer.open(gw2.port, '127.0.0.5');
    local.push(over);
    assert.equal(over.greeting, `421 4.7.0 ${HOST} Error: too many connections from 127.0.0.5`);
    // Message rate by the client behind XCLIENT: 127.0.0.3 (mynetworks) is exempt.
    const inside = await external('127.0.0.3', gw2.port);
    for (let i = 0; i < 3; i++) {
      assert.equal((await inside.cmd('MAIL FROM:<a@example.org>')).code, 250);
      assert.equal((await inside.cmd('RSET')).code, 250);
    }
    const outside = await external('192.0.2.50', gw2.port);
    assert.equal((await outside.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await outside.cmd('RSET')).code, 250);
    assert.equal((await outside.cmd('MAIL FROM:<a@example.org>')).raw, '450 4.7.1 Error: too much mail from 192.0.2.50');

    // Idle after EHLO: Postfix's timeout reply, then the server closes.
    const idle = await Peer.open(gw2.port, '127.0.0.1');
    local.push(idle);
    assert.match(await idle.cmd('EHLO idle.example'), /^250/);
    const t0 = Date.now();
    assert.equal(await idle.read(8000), `421 4.4.2 ${HOST} Error: timeout exceeded`);
    const waited = Date.now() - t0;
    assert.ok(waited >= 1800 && waited < 6000, `timed out after ${waited}ms`);
    assert.ok(await idle.waitClosed());
    const rec = await gw2.waitLog((x) => x.rule === 'smtpd_timeout' && x.stage === 'helo');
    assert.equal(rec.event, 'defer');
    assert.equal(rec.code, 421);
    assert.equal(rec.status, '4.4.2');
    assert.equal(rec.reply, `421 4.4.2 ${HOST} Error: timeout exceeded`);
    assert.match(String(rec.msg), /^timeout after EHLO from /);

    // Stalling in the middle of DATA: the same, and no message is queued.
    const stall = await Peer.open(gw2.port, '127.0.0.1');
    local.push(stall);
    assert.match(await stall.cmd('EHLO stall.example'), /^250/);
    assert.match(await stall.cmd('MAIL FROM:<a@example.org>'), /^250/);
    assert.match(await stall.cmd('RCPT TO:<x@relay.test>'), /^250/);
    assert.match(await stall.cmd('DATA'), /^354/);
    stall.write('Subject: half\r\n\r\nsome of the body\r\n');
    assert.equal(await stall.read(8000), `421 4.4.2 ${HOST} Error: timeout exceeded`);
    assert.ok(await stall.waitClosed());
    await gw2.waitLog((x) => x.rule === 'smtpd_timeout' && x.command === 'DATA');
    const q = await gw2.cli(['postqueue', '-j']);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(q.stdout.trim(), '', 'nothing queued');
  } finally {
    for (const p of local) p.close();
    await gw2.stop();
    gw2.cleanup();
  }
});
