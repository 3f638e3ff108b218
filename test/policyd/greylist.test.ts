/**
 * The policy service with its default list (check_greylist), over the protocol on
 * 127.0.0.1 port 0, greylist_delay = 1 s: postgrey's answers (DEFER_IF_PERMIT 4.2.0 text,
 * PREPEND X-Greylist once per message, DUNNO), the retry after the delay from another host
 * of the same /24, whitelists, a store failure (451 4.3.0, never a pass), a later hard
 * reject winning over greylisting, and one 'greylist' log record per answer.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromText, type Config } from '../../src/config/config.js';
import { openTable } from '../../src/tables/open.js';
import { offlineDnsClient, type DnsClient } from '../../src/dns/resolver.js';
import type { MailLogger } from '../../src/log/logger.js';
import type { EventRecord } from '../../src/log/events.js';
import { openGreylist, type Greylist } from '../../src/greylist/greylist.js';
import { failingStore } from '../../src/greylist/store.js';
import { compilePolicyServicePolicy } from '../../src/policyd/policy.js';
import { POLICYD_POLICY, PolicyServiceListener } from '../../src/policyd/server.js';
import { RawPolicyClient, postfixRcptRequest } from './policy-client.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'greylist');

const noDns = offlineDnsClient('test');

const events: EventRecord[] = [];
const log: MailLogger = {
  event: (r) => events.push(r),
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  flush: async () => undefined,
};

interface Service {
  listener: PolicyServiceListener;
  greylist: Greylist;
  port: number;
}

const dirs: string[] = [];
const services: Service[] = [];

async function startService(extra: string, opts: { failing?: boolean } = {}): Promise<Service> {
  const dir = mkdtempSync(join(tmpdir(), 'gg-policyd-grey-'));
  dirs.push(dir);
  copyFileSync(join(FIXTURES, 'whitelist_clients'), join(dir, 'whitelist_clients'));
  copyFileSync(join(FIXTURES, 'whitelist_recipients'), join(dir, 'whitelist_recipients'));
  writeFileSync(join(dir, 'recipient_access'), 'blocked@example.com REJECT no such mailbox\n');
  const text = [
    `data_directory = ${join(dir, 'data')}`,
    'myhostname = policy.greygate.test',
    'greylist_delay = 1s',
    'greylist_whitelist_clients = whitelist_clients',
    'greylist_whitelist_recipients = whitelist_recipients',
    extra,
  ].join('\n');
  writeFileSync(join(dir, 'main.cf'), text);
  const config: Config = configFromText(dir, join(dir, 'main.cf'), text);
  const { greylist, problems: gp } = await openGreylist(config, opts.failing ? { store: failingStore('test:', 'disk on fire') } : {});
  assert.deepEqual(gp, []);
  const { policy, problems } = compilePolicyServicePolicy({ config, openTable: (s) => openTable(s, dir), dns: noDns, localUsers: { exists: () => false }, greylist });
  assert.deepEqual(problems, []);
  const listener = new PolicyServiceListener({ host: '127.0.0.1', port: 0 }, { runtime: () => ({ config, policies: new Map([[POLICYD_POLICY, policy]]) }), log });
  await listener.listen();
  const s = { listener, greylist, port: listener.port() };
  services.push(s);
  return s;
}

after(async () => {
  for (const s of services) {
    await s.listener.close(1000);
    await s.greylist.close();
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const GREYLISTED = 'DEFER_IF_PERMIT 4.2.0 Greylisted, see RFC 6647';
const HEADER = /^PREPEND X-Greylist: delayed [12] seconds by greygate at policy\.greygate\.test; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \S+$/;

describe('policy service with check_greylist (greylist_delay = 1s)', () => {
  let svc: Service;
  before(async () => {
    svc = await startService('');
  });

  it('greylists, then passes after the delay with one X-Greylist header per message', async () => {
    const c = await RawPolicyClient.connect(svc.port);
    const req = (client: string, rcpt: string, instance: string, sender = 'alice@example.org') => postfixRcptRequest({ client, sender, recipient: rcpt, instance });
    const before = events.length;
    assert.equal(await c.ask(req('192.0.2.10', 'bob@example.com', 'm1')), GREYLISTED, 'first attempt');
    assert.equal(await c.ask(req('192.0.2.10', 'carol@example.com', 'm1')), GREYLISTED, 'second recipient, first attempt');
    assert.equal(await c.ask(req('192.0.2.10', 'bob@example.com', 'm2')), GREYLISTED, 'early retry');
    await sleep(1200);
    // The retry comes from another host of the same /24, with the sender's +extension.
    assert.match(await c.ask(req('192.0.2.77', 'bob@example.com', 'm3', 'alice+news@example.org')), HEADER, 'first pass');
    assert.equal(await c.ask(req('192.0.2.77', 'carol@example.com', 'm3')), 'DUNNO', 'first pass, same message: no second header');
    assert.equal(await c.ask(req('192.0.2.10', 'bob@example.com', 'm4')), 'DUNNO', 'known triplet');
    assert.equal(await c.ask(req('198.51.100.1', 'bob@example.com', 'm5')), GREYLISTED, 'another network');

    const logged = events.slice(before);
    assert.equal(logged.length, 7, 'one record per answer');
    assert.ok(logged.every((e) => e.event === 'greylist' && e.service === 'policyd'));
    const first = logged[0]!;
    assert.equal(first.code, 450);
    assert.equal(first.status, '4.2.0');
    assert.equal(first.reply, '450 4.2.0 <bob@example.com>: Recipient address rejected: Greylisted, see RFC 6647');
    assert.equal(first.policy_action, GREYLISTED);
    assert.equal(first.rule, 'check_greylist');
    assert.equal(first.action, 'greylist');
    assert.equal(first.reason, 'new');
    assert.equal(first.key, '192.0.2.0/alice@example.org/bob@example.com');
    assert.equal(first.remaining, 1);
    assert.match(String(first.msg), /^action=greylist, reason=new, client_name=unknown, client_address=192\.0\.2\.10, sender=alice@example\.org, recipient=bob@example\.com/);
    assert.equal(logged[2]!.reason, 'early-retry');
    assert.match(String(logged[3]!.policy_action), HEADER);
    assert.equal(logged[3]!.reason, 'triplet found');
    assert.equal(logged[3]!.action, 'pass');
    c.close();
  });

  it('passes whitelisted clients (forward-confirmed name) and recipients: DUNNO', async () => {
    const c = await RawPolicyClient.connect(svc.port);
    assert.equal(await c.ask(postfixRcptRequest({ client: '192.0.2.200', name: 'bendel.debian.org', sender: 'lists@debian.org', recipient: 'dev@example.com' })), 'DUNNO');
    assert.equal(await c.ask(postfixRcptRequest({ client: '192.0.2.201', sender: 'x@spam.example', recipient: 'postmaster@example.com' })), 'DUNNO');
    assert.equal(await c.ask(postfixRcptRequest({ client: '192.0.2.202', sender: 'x@spam.example', recipient: 'someone@example.com' })), GREYLISTED);
    c.close();
  });
});

describe('policy service with check_greylist: failures and restriction order', () => {
  it('a store failure answers 451 4.3.0 (Postfix then says "<rcpt>: Recipient address rejected: Temporary lookup failure"), never a pass', async () => {
    const svc = await startService('', { failing: true });
    const c = await RawPolicyClient.connect(svc.port);
    const before = events.length;
    assert.equal(await c.ask(postfixRcptRequest({ client: '192.0.2.10', sender: 'a@example.org', recipient: 'b@example.com' })), '451 4.3.0 Temporary lookup failure');
    const rec = events.slice(before).find((e) => e.event === 'defer');
    assert.ok(rec, JSON.stringify(events.slice(before)));
    assert.equal(rec.reply, '451 4.3.0 <b@example.com>: Recipient address rejected: Temporary lookup failure');
    c.close();
  });

  it('a later hard reject in policy_service_restrictions wins over greylisting (DEFER_IF_PERMIT)', async () => {
    const svc = await startService('policy_service_restrictions = check_greylist, check_recipient_access texthash:recipient_access');
    const c = await RawPolicyClient.connect(svc.port);
    assert.equal(await c.ask(postfixRcptRequest({ client: '192.0.2.10', sender: 'a@example.org', recipient: 'blocked@example.com' })), '554 5.7.1 no such mailbox');
    assert.equal(await c.ask(postfixRcptRequest({ client: '192.0.2.10', sender: 'a@example.org', recipient: 'open@example.com' })), GREYLISTED);
    c.close();
  });

  it('permit_mynetworks before check_greylist: mynetworks clients are never greylisted', async () => {
    const svc = await startService('mynetworks = 10.0.0.0/8\npolicy_service_restrictions = permit_mynetworks, check_greylist');
    const c = await RawPolicyClient.connect(svc.port);
    assert.equal(await c.ask(postfixRcptRequest({ client: '10.1.2.3', sender: 'a@example.org', recipient: 'b@example.com' })), 'DUNNO');
    assert.equal(await c.ask(postfixRcptRequest({ client: '192.0.2.10', sender: 'a@example.org', recipient: 'b@example.com' })), GREYLISTED);
    c.close();
  });
});
