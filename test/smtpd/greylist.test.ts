/**
 * Greylisting through real SMTP with short delays: first attempt 450, early retry 450,
 * retry after greylist_delay 250 with X-Greylist, /24 grouping, whitelists, AWL, the
 * retry window, state across restart, and two gateways sharing one redis-server.
 * External clients are simulated with XCLIENT from 127.0.0.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startRedis } from '../greylist/redis-server.js';

const GREY = {
  smtpd_recipient_restrictions: 'reject_unauth_destination, check_greylist',
  greylist_delay: '1s',
  greylist_retry_window: '4s',
  greylist_text: 'Greylisted, see RFC 6647',
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One SMTP transaction from IP; returns the RCPT reply and, if accepted, the DATA reply. */
async function attempt(gw: TestGateway, ip: string, from: string, to: string, name = '[UNAVAILABLE]'): Promise<{ rcpt: string; data?: string }> {
  const c = await SmtpClient.connect(gw.port);
  assert.equal((await c.cmd(`XCLIENT ADDR=${ip} NAME=${name}`)).code, 220);
  await c.cmd('EHLO sender.example');
  await c.cmd(`MAIL FROM:<${from}>`);
  const rcpt = await c.cmd(`RCPT TO:<${to}>`);
  if (rcpt.code !== 250) {
    c.close();
    return { rcpt: rcpt.raw };
  }
  const data = await c.data('Subject: greylist test\r\n\r\nhello\r\n');
  c.close();
  return { rcpt: rcpt.raw, data: data.raw };
}

function storedMessage(gw: TestGateway, id: string): string {
  const dir = join(gw.dataDir, 'queue', 'incoming');
  for (const f of readdirSync(dir, { recursive: true }) as string[]) if (f.endsWith(id)) return readFileSync(join(dir, f), 'latin1');
  throw new Error(`${id} not queued`);
}

const GREYLISTED = (rcpt: string) => `450 4.2.0 <${rcpt}>: Recipient address rejected: Greylisted, see RFC 6647`;

test('first attempt and early retry are greylisted; a retry after the delay passes with X-Greylist', async () => {
  const gw = await startGateway({ params: GREY });
  try {
    assert.equal((await attempt(gw, '198.51.100.10', 'news@sender.example', 'user@relay.test')).rcpt, GREYLISTED('user@relay.test'));
    const rec = await gw.waitLog((l) => l.event === 'greylist' && l.reason === 'new');
    assert.equal(rec.client_ip, '198.51.100.10');
    assert.equal(rec.rule, 'check_greylist');
    assert.equal((await attempt(gw, '198.51.100.10', 'news@sender.example', 'user@relay.test')).rcpt, GREYLISTED('user@relay.test'));
    await gw.waitLog((l) => l.event === 'greylist' && l.reason === 'early-retry');
    await sleep(1200);
    // Another host of the same /24 retries: the triplet is per network.
    const ok = await attempt(gw, '198.51.100.77', 'news@sender.example', 'user@relay.test');
    assert.equal(ok.rcpt, '250 2.1.5 Ok');
    const id = /queued as (\S+)/.exec(ok.data!)![1]!;
    assert.match(storedMessage(gw, id), /^X-Greylist: delayed \d+ seconds by greygate at mx\.greygate\.test; /m);
    // A different /24 is a new triplet.
    assert.equal((await attempt(gw, '198.51.101.10', 'news@sender.example', 'user@relay.test')).rcpt, GREYLISTED('user@relay.test'));
    // Sender normalisation: BATV and VERP numbers map to the same triplet.
    assert.equal((await attempt(gw, '198.51.100.10', 'prvs=1234abcd=news@sender.example', 'user@relay.test')).rcpt, '250 2.1.5 Ok');
  } finally {
    await gw.stop();
    gw.cleanup();
  }
});

test('a later hard reject still wins over greylisting (DEFER_IF_PERMIT)', async () => {
  const gw = await startGateway({
    params: { ...GREY, smtpd_recipient_restrictions: 'permit_mynetworks, reject_unauth_destination, check_greylist, check_recipient_access inline:{ blocked@relay.test=REJECT }' },
  });
  try {
    assert.match((await attempt(gw, '203.0.113.5', 'a@sender.example', 'blocked@relay.test')).rcpt, /^554 5\.7\.1 <blocked@relay\.test>: Recipient address rejected/);
    // mynetworks clients are never greylisted when permit_mynetworks comes first.
    const c = await SmtpClient.connect(gw.port);
    await c.cmd('EHLO local.example');
    await c.cmd('MAIL FROM:<a@local.example>');
    assert.equal((await c.cmd('RCPT TO:<anyone@relay.test>')).code, 250);
    c.close();
  } finally {
    await gw.stop();
    gw.cleanup();
  }
});

test('whitelists in postgrey formats, and the auto-whitelist after N passes', async () => {
  const gw = await startGateway({
    params: {
      ...GREY,
      greylist_whitelist_clients: 'whitelist_clients',
      greylist_whitelist_recipients: 'whitelist_recipients',
      greylist_auto_whitelist_clients: '1',
    },
    files: {
      whitelist_clients: '# postgrey format\n192.0.2.0/24\ngood-sender.example\n/^mail\\d+\\.bulk\\.example$/\n',
      whitelist_recipients: 'postmaster@\nabuse@relay.test\n',
    },
  });
  try {
    assert.equal((await attempt(gw, '192.0.2.55', 'x@a.example', 'user@relay.test')).rcpt, '250 2.1.5 Ok');
    const wl = await gw.waitLog((l) => l.event === 'greylist' && l.reason === 'client whitelist');
    assert.equal(wl.rule, 'whitelist_clients:2');
    assert.equal((await attempt(gw, '203.0.113.9', 'x@a.example', 'postmaster@relay.test')).rcpt, '250 2.1.5 Ok');
    assert.equal((await attempt(gw, '203.0.113.9', 'x@a.example', 'abuse@relay.test')).rcpt, '250 2.1.5 Ok');
    // Hostname entries only match a verified name: XCLIENT NAME is the verified name.
    assert.equal((await attempt(gw, '203.0.113.20', 'x@a.example', 'user@relay.test', 'mx.good-sender.example')).rcpt, '250 2.1.5 Ok');
    assert.equal((await attempt(gw, '203.0.113.21', 'x@a.example', 'user@relay.test', 'mail7.bulk.example')).rcpt, '250 2.1.5 Ok');
    // AWL (postgrey counts a triplet's first pass, at most once an hour per IP): with N = 1
    // the full IP is whitelisted after one pass; its /24 neighbours are not.
    const ip = '198.18.0.5';
    assert.equal((await attempt(gw, ip, 's@awl.example', 'r1@relay.test')).rcpt, GREYLISTED('r1@relay.test'));
    await sleep(1200);
    assert.equal((await attempt(gw, ip, 's@awl.example', 'r1@relay.test')).rcpt, '250 2.1.5 Ok');
    assert.equal((await attempt(gw, ip, 'other@awl.example', 'r3@relay.test')).rcpt, '250 2.1.5 Ok');
    assert.equal((await attempt(gw, '198.18.0.6', 'other@awl.example', 'r4@relay.test')).rcpt, GREYLISTED('r4@relay.test'));
    await gw.waitLog((l) => l.event === 'greylist' && l.reason === 'client AWL');
  } finally {
    await gw.stop();
    gw.cleanup();
  }
});

test('a retry after the retry window starts over; state survives a restart', async () => {
  const gw = await startGateway({ params: GREY });
  try {
    assert.equal((await attempt(gw, '198.51.100.200', 'late@sender.example', 'user@relay.test')).rcpt, GREYLISTED('user@relay.test'));
    await sleep(4500);
    assert.equal((await attempt(gw, '198.51.100.200', 'late@sender.example', 'user@relay.test')).rcpt, GREYLISTED('user@relay.test'));
    // A triplet started before a restart passes after it.
    assert.equal((await attempt(gw, '198.51.100.201', 'restart@sender.example', 'user@relay.test')).rcpt, GREYLISTED('user@relay.test'));
    await gw.stop();
    await gw.start();
    await sleep(1100);
    assert.equal((await attempt(gw, '198.51.100.201', 'restart@sender.example', 'user@relay.test')).rcpt, '250 2.1.5 Ok');
  } finally {
    await gw.stop();
    gw.cleanup();
  }
});

test('two gateways share triplets through one redis-server; a dead store answers 451 4.3.0', async (t) => {
  const r = await startRedis();
  if ('skip' in r) return t.skip(r.skip);
  const params = { ...GREY, greylist_database: r.server.url };
  const a = await startGateway({ params });
  const b = await startGateway({ params });
  try {
    assert.equal((await attempt(a, '198.51.100.90', 'shared@sender.example', 'user@relay.test')).rcpt, GREYLISTED('user@relay.test'));
    await sleep(1200);
    assert.equal((await attempt(b, '198.51.100.90', 'shared@sender.example', 'user@relay.test')).rcpt, '250 2.1.5 Ok');
    await r.server.stop();
    const down = await attempt(b, '198.51.100.91', 'down@sender.example', 'user@relay.test');
    assert.equal(down.rcpt, '451 4.3.0 <user@relay.test>: Recipient address rejected: Temporary lookup failure');
  } finally {
    await a.stop();
    await b.stop();
    a.cleanup();
    b.cleanup();
    await r.server.stop();
  }
});

test('greygate trace explains a greylisting decision', async () => {
  const gw = await startGateway({ params: GREY });
  try {
    await attempt(gw, '198.51.100.10', 'news@sender.example', 'user@relay.test');
    await gw.stop();
    gw.writeFile('msg.eml', 'From: news@sender.example\r\nTo: user@relay.test\r\nSubject: x\r\n\r\nhi\r\n');
    const r = await gw.cli(['trace', '--client', '198.51.100.10', join(gw.configDir, 'msg.eml')]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /check_greylist/);
    assert.match(r.stdout, /450 4\.2\.0 <user@relay\.test>: Recipient address rejected: Greylisted/);
  } finally {
    gw.cleanup();
  }
});
