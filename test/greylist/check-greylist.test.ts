/**
 * check_greylist through the restriction engine (compilePolicy, no socket), as smtpd and
 * the policy service use it: replies, DEFER_IF_PERMIT semantics, the X-Greylist PREPEND,
 * notes for the log, whitelists, fail-closed answers. The policy's clock (PolicyDeps.now)
 * is set per step: that is the engine's input, the store and the algorithm are real.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { formatProblem } from '../../src/errors.js';
import { openTable } from '../../src/tables/open.js';
import { createDnsClientFromOptions } from '../../src/dns/resolver.js';
import { compilePolicy, type Policy } from '../../src/restrictions/policy.js';
import { newEffects, type Decision, type SessionState, type TransactionEffects } from '../../src/restrictions/state.js';
import { Greylist, openGreylist } from '../../src/greylist/greylist.js';
import { failingStore } from '../../src/greylist/store.js';

const dir = mkdtempSync(join(tmpdir(), 'gg-check-greylist-'));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'wl_clients'), '# clients\n\nfriend.example\n');
writeFileSync(join(dir, 'wl_recipients'), 'postmaster@\n');

const dns = createDnsClientFromOptions({ servers: ['127.0.0.1:9'], timeoutMs: 200 });
const T0 = Date.UTC(2025, 0, 6, 12, 0, 0);
let clock = T0;

const BASE: Record<string, string> = {
  myhostname: 'mx.example.org',
  mydomain: 'example.org',
  mynetworks: '127.0.0.0/8',
  inet_interfaces: '127.0.0.1',
  relay_domains: 'example.org',
  data_directory: join(dir, 'data'),
  greylist_delay: '300s',
  greylist_whitelist_clients: 'wl_clients',
  greylist_whitelist_recipients: 'wl_recipients',
  smtpd_relay_restrictions: 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
  smtpd_recipient_restrictions: 'check_greylist',
};

let dbn = 0;

async function setup(params: Record<string, string> = {}, opts: { greylist?: Greylist | null } = {}): Promise<{ policy: Policy; greylist: Greylist | null }> {
  const all = { ...BASE, greylist_database: `sqlite:g${++dbn}.db`, ...params };
  const text = Object.entries(all).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n';
  const config = configFromText(dir, join(dir, 'main.cf'), text);
  assert.deepEqual(config.problems.map(formatProblem), []);
  let greylist: Greylist | null = null;
  if (opts.greylist === undefined) {
    const r = await openGreylist(config, { cleanupIntervalMs: 0 });
    assert.deepEqual(r.problems.map(formatProblem), []);
    greylist = r.greylist;
  } else greylist = opts.greylist;
  const { policy, problems } = compilePolicy({
    config,
    openTable: (spec) => openTable(spec, dir),
    dns,
    localUsers: { exists: () => false },
    now: () => clock,
    ...(greylist ? { greylist } : {}),
  });
  assert.deepEqual(problems.map(formatProblem), []);
  return { policy, greylist };
}

function session(addr = '192.0.2.10', name = 'unknown', instance = 'inst1'): SessionState {
  return {
    client: { address: addr, port: 40000, name, reverseName: name },
    helo: 'client.example',
    protocol: 'ESMTP',
    sender: 'alice@sender.example',
    recipients: [],
    tls: false,
    instance,
    unauthPipelining: false,
    localPort: 25,
    service: 'smtpd',
  };
}

function show(d: Decision): string {
  if (d.kind === 'permit') return `OK${d.rule ? ` [${d.rule}]` : ''}`;
  return `${d.reply.code} ${d.reply.status} ${d.reply.text} [${d.rule}]`;
}

async function rcpt(policy: Policy, s: SessionState, fx: TransactionEffects, to: string, at: number): Promise<string> {
  clock = at;
  s.recipient = to;
  const d = await policy.checkRcpt(s, fx);
  if (d.kind === 'permit') s.recipients.push(to);
  return show(d);
}

describe('check_greylist', () => {
  it('greylists with 450 4.2.0 (DEFER_IF_PERMIT), passes after the delay with one X-Greylist header', async () => {
    const { policy, greylist } = await setup();
    const s = session();
    const fx = newEffects();
    assert.equal(await rcpt(policy, s, fx, 'bob@example.org', T0), '450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see RFC 6647 [check_greylist]');
    assert.deepEqual(fx.notes, [
      {
        event: 'info',
        text: 'action=greylist, reason=new, client_name=unknown, client_address=192.0.2.10, sender=alice@sender.example, recipient=bob@example.org',
        rule: 'check_greylist',
        stage: 'rcpt',
        greylist: { action: 'greylist', reason: 'new', key: '192.0.2.0/alice@sender.example/bob@example.org', remaining: 300 },
      },
    ]);
    assert.equal(await rcpt(policy, s, fx, 'bob@example.org', T0 + 120_000), '450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see RFC 6647 [check_greylist]');
    assert.equal(fx.notes[1]?.text.split(',')[1], ' reason=early-retry (180s missing)');
    // Two recipients of one message pass for the first time: one header for the message.
    await rcpt(policy, s, newEffects(), 'carol@example.org', T0);
    const fx2 = newEffects();
    assert.equal(await rcpt(policy, s, fx2, 'bob@example.org', T0 + 301_000), 'OK [smtpd_recipient_restrictions]');
    assert.equal(await rcpt(policy, s, fx2, 'carol@example.org', T0 + 301_000), 'OK [smtpd_recipient_restrictions]');
    assert.equal(fx2.prepend.length, 1);
    assert.match(fx2.prepend[0]!.header, /^X-Greylist: delayed 301 seconds by greygate at mx\.example\.org; Mon, 06 Jan 2025 /);
    assert.equal(fx2.prepend[0]!.rule, 'check_greylist');
    assert.deepEqual(fx2.notes.map((n) => n.greylist), [
      { action: 'pass', reason: 'triplet found', key: '192.0.2.0/alice@sender.example/bob@example.org', delay: 301, awl_count: 1 },
      { action: 'pass', reason: 'triplet found', key: '192.0.2.0/alice@sender.example/carol@example.org', awl_count: 1 },
    ]);
    assert.equal(fx2.notes[0]!.text, 'action=pass, reason=triplet found, delay=301, client_name=unknown, client_address=192.0.2.10, sender=alice@sender.example, recipient=bob@example.org');
    await greylist!.close();
  });

  it('DEFER_IF_PERMIT: a later hard reject wins, a later explicit permit still gets the 450', async () => {
    const a = await setup({ smtpd_recipient_restrictions: 'check_greylist, reject' });
    assert.equal(await rcpt(a.policy, session(), newEffects(), 'bob@example.org', T0), '554 5.7.1 <bob@example.org>: Recipient address rejected: Access denied [reject]');
    await a.greylist!.close();
    const b = await setup({ smtpd_recipient_restrictions: 'check_greylist, permit' });
    assert.equal(await rcpt(b.policy, session(), newEffects(), 'bob@example.org', T0), '450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted, see RFC 6647 [check_greylist]');
    await b.greylist!.close();
  });

  it('never reached for mynetworks and SASL clients when the restriction order says so', async () => {
    const { policy, greylist } = await setup({ smtpd_recipient_restrictions: 'permit_mynetworks, permit_sasl_authenticated, check_greylist' });
    assert.equal(await rcpt(policy, session('127.0.0.1'), newEffects(), 'bob@example.org', T0), 'OK [permit_mynetworks]');
    const s = session();
    s.saslUsername = 'alice';
    assert.equal(await rcpt(policy, s, newEffects(), 'bob@example.org', T0), 'OK [permit_sasl_authenticated]');
    const fx = newEffects();
    assert.match(await rcpt(policy, session(), fx, 'bob@example.org', T0), /^450 4\.2\.0 /);
    await greylist!.close();
  });

  it('whitelisted: DUNNO, noted with the entry\'s FILE:LINE; a name entry needs a verified name', async () => {
    const { policy, greylist } = await setup();
    const fx = newEffects();
    assert.equal(await rcpt(policy, session('198.51.100.1', 'mx.friend.example'), fx, 'bob@example.org', T0), 'OK [smtpd_recipient_restrictions]');
    assert.equal(fx.notes[0]!.rule, 'wl_clients:3');
    assert.deepEqual(fx.notes[0]!.greylist, { action: 'pass', reason: 'client whitelist', rule: 'wl_clients:3' });
    const s = session('198.51.100.1', 'mx.friend.example');
    s.client = { ...s.client, nameStatus: 'forged', name: 'mx.friend.example' };
    assert.match(await rcpt(policy, s, newEffects(), 'bob@example.org', T0), /^450 /, 'a name that is not forward-confirmed does not match');
    const fx2 = newEffects();
    assert.equal(await rcpt(policy, session(), fx2, 'postmaster@example.org', T0), 'OK [smtpd_recipient_restrictions]');
    assert.equal(fx2.notes[0]!.greylist?.reason, 'recipient whitelist');
    assert.equal(fx.prepend.length + fx2.prepend.length, 0);
    await greylist!.close();
  });

  it('an organisation retry is noted with its grouping', async () => {
    const { policy, greylist } = await setup();
    const name = (n: string): string => `${n}.outbound.protection.outlook.com`;
    assert.match(await rcpt(policy, session('40.107.22.72', name('mail-a')), newEffects(), 'bob@example.org', T0), /^450 /);
    const fx = newEffects();
    assert.equal(await rcpt(policy, session('52.100.1.1', name('mail-b'), 'm2'), fx, 'bob@example.org', T0 + 301_000), 'OK [smtpd_recipient_restrictions]');
    assert.equal(fx.notes[0]!.greylist?.grouping, 'rdns:outlook.com');
    assert.match(fx.notes[0]!.text, /^action=pass, reason=organisation retry, grouping=rdns:outlook\.com, delay=301, /);
    assert.equal(fx.prepend.length, 1);
    await greylist!.close();
  });

  it('greylist_text with %s and a DSN of its own', async () => {
    const { policy, greylist } = await setup({ greylist_text: '4.7.1 Greylisted for %s seconds, see https://help.example/%r' });
    assert.equal(await rcpt(policy, session(), newEffects(), 'bob@example.org', T0), '450 4.7.1 <bob@example.org>: Recipient address rejected: Greylisted for 300 seconds, see https://help.example/example.org [check_greylist]');
    await greylist!.close();
  });

  it('a store failure answers 451 4.3.0 Temporary lookup failure, never a pass', async () => {
    const base = (await openGreylist(configFromText(dir, join(dir, 'main.cf'), 'greylist_database = sqlite::memory:\n'), { cleanupIntervalMs: 0 })).greylist;
    const g = new Greylist(failingStore('sqlite:/nowhere', 'disk I/O error'), base.settings, base.whitelists, { cleanupIntervalMs: 0 });
    await base.close();
    const { policy } = await setup({ smtpd_recipient_restrictions: 'check_greylist, permit' }, { greylist: g });
    const fx = newEffects();
    assert.equal(await rcpt(policy, session(), fx, 'bob@example.org', T0), '451 4.3.0 <bob@example.org>: Recipient address rejected: Temporary lookup failure [check_greylist]');
    assert.equal(fx.notes[0]!.event, 'warn');
    assert.match(fx.notes[0]!.text, /disk I\/O error/);
    // warn_if_reject does not soften it into a pass either.
    const w = await setup({ smtpd_recipient_restrictions: 'warn_if_reject check_greylist, permit' }, { greylist: g });
    assert.match(await rcpt(w.policy, session(), newEffects(), 'bob@example.org', T0), /^451 4\.3\.0 /);
  });

  it('without a greylist it fails closed: 451 4.3.5', async () => {
    const { policy } = await setup({}, { greylist: null });
    const fx = newEffects();
    assert.equal(await rcpt(policy, session(), fx, 'bob@example.org', T0), '451 4.3.5 Server configuration error [check_greylist]');
    assert.match(fx.notes[0]!.text, /no greylist database is open/);
  });

  it('at the DATA stage with several recipients there is no recipient: DUNNO with a warning', async () => {
    const { policy, greylist } = await setup({ smtpd_recipient_restrictions: 'permit', smtpd_data_restrictions: 'check_greylist' });
    const s = session();
    s.recipients = ['a@example.org', 'b@example.org'];
    const fx = newEffects();
    clock = T0;
    assert.equal(show(await policy.checkData(s, fx)), 'OK [smtpd_data_restrictions]');
    assert.match(fx.notes[0]!.text, /check_greylist: no recipient at the data stage/);
    await greylist!.close();
  });

  it('under greygate trace (onStep) the explanation is noted, and a read-only greylist writes nothing', async () => {
    const { greylist } = await setup();
    const ro = greylist!.readOnly();
    const { policy } = await setup({}, { greylist: ro });
    const s = session();
    s.onStep = () => undefined;
    const fx = newEffects();
    await rcpt(policy, s, fx, 'bob@example.org', T0);
    const lines = fx.notes.map((n) => n.text);
    assert.ok(lines.includes('greylist: whitelists: no entry matches'), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('greylist: triplet 192.0.2.0/alice@sender.example/bob@example.org: new')));
    assert.ok(lines.includes('greylist: verdict: greylist (new), 300s left'));
    const e = await greylist!.explain({ clientAddress: '192.0.2.10', clientName: 'unknown', sender: 'alice@sender.example', recipient: 'bob@example.org', now: T0 });
    assert.equal(e.triplet.record, null, 'the real store was not written');
    await greylist!.close();
  });
});
