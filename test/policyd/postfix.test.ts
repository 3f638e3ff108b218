/**
 * A real Postfix (a private instance, as bench/lib/postfix-peer.ts builds it) pointed at
 * greygate's policy service with `check_policy_service inet:127.0.0.1:PORT`, driven by a
 * raw SMTP client through XCLIENT (so each case has its own client address): the SMTP
 * replies Postfix gives for greygate's actions must be the replies greygate's own smtpd
 * gives, the PREPENDed header must reach the relayed message, and a policy service that
 * fails must leave Postfix with its smtpd_policy_service_default_action.
 * Needs root (Postfix's daemons switch to the postfix user) and Debian's postfix package:
 * under CI=true their absence fails the test, otherwise it is skipped with the reason.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { openTable } from '../../src/tables/open.js';
import { NULL_LOGGER } from '../../src/log/logger.js';
import { openGreylist, type Greylist } from '../../src/greylist/greylist.js';
import { offlineDnsClient, type DnsClient } from '../../src/dns/resolver.js';
import { compilePolicyServicePolicy } from '../../src/policyd/policy.js';
import { POLICYD_POLICY, PolicyServiceListener } from '../../src/policyd/server.js';
import { PostfixPeer } from '../../bench/lib/postfix-peer.js';
import { freeLoopbackPorts } from '../../bench/lib/net.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { CaptureSink } from './capture-sink.js';

const IN_CI = process.env.CI === 'true';

function unavailable(): string | null {
  if (!existsSync('/usr/sbin/postfix')) return 'Postfix is not installed (Debian package postfix)';
  if (process.getuid?.() !== 0) return 'a private Postfix instance needs root (its daemons switch to the postfix user)';
  return null;
}
const SKIP: string | false = IN_CI ? false : (unavailable() ?? false);

const noDns = offlineDnsClient('test');

const GREYGATE_CF = [
  'myhostname = policy.greygate.test',
  'mydestination =',
  'mynetworks = 127.0.0.0/8',
  'policy_service_restrictions = check_sender_access texthash:sender_access',
].join('\n');

const SENDER_ACCESS = ['spam@bad.example REJECT go away', 'temp@bad.example 450 4.7.1 try later', 'tag@good.example PREPEND X-Tag: tagged by greygate'].join('\n') + '\n';

let root: string;
let postfix: PostfixPeer | null = null;
let sink: CaptureSink | null = null;
let policyd: PolicyServiceListener | null = null;
let broken: PolicyServiceListener | null = null;
let greyd: PolicyServiceListener | null = null;
let greylist: Greylist | null = null;
let smtpPort = 0;

before(async () => {
  if (SKIP) return;
  const why = unavailable();
  if (why) throw new Error(`CI=true: ${why}`);
  root = mkdtempSync(join(tmpdir(), 'gg-policyd-postfix-'));
  writeFileSync(join(root, 'main.cf'), GREYGATE_CF);
  writeFileSync(join(root, 'sender_access'), SENDER_ACCESS);
  const config = configFromText(root, join(root, 'main.cf'), GREYGATE_CF);
  const { policy, problems } = compilePolicyServicePolicy({ config, openTable: (s) => openTable(s, root), dns: noDns, localUsers: { exists: () => false } });
  assert.deepEqual(problems, []);
  policyd = new PolicyServiceListener({ host: '127.0.0.1', port: 0 }, { runtime: () => ({ config, policies: new Map([[POLICYD_POLICY, policy]]) }), log: NULL_LOGGER });
  await policyd.listen();
  // A policy service with no policy: every request fails (no answer, disconnect).
  broken = new PolicyServiceListener({ host: '127.0.0.1', port: 0 }, { runtime: () => ({ config, policies: new Map() }), log: NULL_LOGGER });
  await broken.listen();
  // The default service: policy_service_restrictions = check_greylist, greylist_delay = 1s.
  const greyText = [...GREYGATE_CF.split('\n').filter((l) => !l.startsWith('policy_service_restrictions')), `data_directory = ${join(root, 'gg-data')}`, 'greylist_delay = 1s'].join('\n');
  const greyConfig = configFromText(root, join(root, 'main.cf'), greyText);
  const opened = await openGreylist(greyConfig);
  assert.deepEqual(opened.problems, []);
  greylist = opened.greylist;
  const grey = compilePolicyServicePolicy({ config: greyConfig, openTable: (s) => openTable(s, root), dns: noDns, localUsers: { exists: () => false }, greylist });
  assert.deepEqual(grey.problems, []);
  greyd = new PolicyServiceListener({ host: '127.0.0.1', port: 0 }, { runtime: () => ({ config: greyConfig, policies: new Map([[POLICYD_POLICY, grey.policy]]) }), log: NULL_LOGGER });
  await greyd.listen();
  sink = await CaptureSink.start();
  [smtpPort] = await freeLoopbackPorts(1);
  postfix = await PostfixPeer.start({
    root,
    port: smtpPort!,
    relayPort: sink.port,
    relayDomain: 'example.com',
    extraMainCf: [
      'smtpd_authorized_xclient_hosts = 127.0.0.0/8',
      'smtpd_restriction_classes = broken_policy, greylist_policy',
      `broken_policy = check_policy_service inet:127.0.0.1:${broken.port()}`,
      `greylist_policy = check_policy_service inet:127.0.0.1:${greyd.port()}`,
      'smtpd_recipient_restrictions = reject_unauth_destination,',
      `  check_policy_service inet:127.0.0.1:${policyd.port()},`,
      '  check_recipient_access inline:{ broken@example.com=broken_policy },',
      // These recipients go through greylisting (a class keeps the recipient as reply name);
      // a later hard reject must still win over its DEFER_IF_PERMIT.
      '  check_recipient_access inline:{ g1@example.com=greylist_policy, blocked@example.com=greylist_policy },',
      '  check_recipient_access inline:{ {blocked@example.com=REJECT blocked by Postfix} }',
    ].join('\n'),
  });
});

after(async () => {
  await postfix?.stop();
  await sink?.close();
  await policyd?.close(1000);
  await broken?.close(1000);
  await greyd?.close(1000);
  await greylist?.close();
  if (root && !process.env.GG_KEEP) rmSync(root, { recursive: true, force: true });
});

let clientSeq = 0;

/** A session through XCLIENT from a client address of its own; returns the client after EHLO. */
async function session(name = 'mail.example.net', ip = `198.51.100.${++clientSeq}`): Promise<SmtpClient> {
  const c = await SmtpClient.connect(smtpPort);
  assert.equal(c.greeting.code, 220);
  const x = await c.cmd(`XCLIENT ADDR=${ip} NAME=${name}`);
  assert.equal(x.code, 220, x.raw);
  assert.equal((await c.cmd('EHLO client.example')).code, 250);
  return c;
}

async function rcptReply(sender: string, rcpt: string, ip?: string): Promise<string> {
  const c = await session('mail.example.net', ip);
  try {
    assert.equal((await c.cmd(`MAIL FROM:<${sender}>`)).code, 250);
    const r = await c.cmd(`RCPT TO:<${rcpt}>`);
    return `${r.code} ${r.text}`;
  } finally {
    await c.cmd('QUIT').catch(() => undefined);
  }
}

describe('a real Postfix with check_policy_service pointed at greygate', { skip: SKIP }, () => {
  it('REJECT from an access map: Postfix replies as greygate\'s smtpd does for a recipient restriction', async () => {
    assert.equal(await rcptReply('spam@bad.example', 'u1@example.com'), '554 5.7.1 <u1@example.com>: Recipient address rejected: go away');
  });

  it('a 4xx action: the code and enhanced status pass through', async () => {
    assert.equal(await rcptReply('temp@bad.example', 'u2@example.com'), '450 4.7.1 <u2@example.com>: Recipient address rejected: try later');
  });

  it('DUNNO: accepted', async () => {
    assert.equal(await rcptReply('ok@good.example', 'u3@example.com'), '250 2.1.5 Ok');
  });

  it('PREPEND: the header is in the message Postfix relays', async () => {
    const c = await session();
    assert.equal((await c.cmd('MAIL FROM:<tag@good.example>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<tagged@example.com>')).code, 250);
    const r = await c.data('Subject: prepend test\r\nFrom: tag@good.example\r\n\r\nbody\r\n');
    assert.equal(r.code, 250, r.raw);
    await c.cmd('QUIT');
    const m = await sink!.messageTo('tagged@example.com');
    assert.match(m.data, /^X-Tag: tagged by greygate\r\n/m);
  });

  it('a failing policy service: no answer, and Postfix applies smtpd_policy_service_default_action', async () => {
    assert.equal(await rcptReply('ok@good.example', 'broken@example.com'), '451 4.3.5 <broken@example.com>: Recipient address rejected: Server configuration problem');
  });

  it('greylisting: 450 as greygate\'s smtpd gives it, a later Postfix reject still wins, 250 and the X-Greylist header after the delay', async () => {
    // greygate's own smtpd: "450 4.2.0 <rcpt>: Recipient address rejected: <greylist_text>" (design.md).
    const greylisted = '450 4.2.0 <g1@example.com>: Recipient address rejected: Greylisted, see RFC 6647';
    assert.equal(await rcptReply('news@grey.example', 'g1@example.com', '203.0.113.10'), greylisted, 'first attempt');
    assert.equal(await rcptReply('news@grey.example', 'g1@example.com', '203.0.113.10'), greylisted, 'early retry');
    assert.equal(await rcptReply('news@grey.example', 'blocked@example.com', '203.0.113.10'), '554 5.7.1 <blocked@example.com>: Recipient address rejected: blocked by Postfix', 'DEFER_IF_PERMIT loses to a later REJECT');
    await new Promise((r) => setTimeout(r, 1200));
    // The retry comes from another host of the same /24.
    const c = await session('mail.example.net', '203.0.113.99');
    assert.equal((await c.cmd('MAIL FROM:<news@grey.example>')).code, 250);
    const rcpt = await c.cmd('RCPT TO:<g1@example.com>');
    assert.equal(`${rcpt.code} ${rcpt.text}`, '250 2.1.5 Ok');
    const r = await c.data('Subject: greylisted once\r\nFrom: news@grey.example\r\n\r\nbody\r\n');
    assert.equal(r.code, 250, r.raw);
    await c.cmd('QUIT');
    const m = await sink!.messageTo('g1@example.com');
    assert.match(m.data, /^X-Greylist: delayed [12] seconds by greygate at policy\.greygate\.test; /m);
    assert.equal(await rcptReply('news@grey.example', 'g1@example.com', '203.0.113.10'), '250 2.1.5 Ok', 'known triplet');
  });
});
