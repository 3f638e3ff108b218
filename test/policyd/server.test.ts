/**
 * The policy service on 127.0.0.1 port 0 with a protocol client: actions for reject,
 * defer, DEFER_IF_PERMIT, PREPEND and DUNNO from access maps and relay control, many
 * requests per connection, pipelined requests in one write, CRLF, truncated values,
 * garbage lines, unknown request types, missing attributes, engine failures, and one log
 * record per decision.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { openTable } from '../../src/tables/open.js';
import { offlineDnsClient, type DnsClient } from '../../src/dns/resolver.js';
import type { MailLogger } from '../../src/log/logger.js';
import type { EventRecord } from '../../src/log/events.js';
import type { Policy } from '../../src/restrictions/policy.js';
import { compilePolicyServicePolicy } from '../../src/policyd/policy.js';
import { POLICYD_POLICY, PolicyServiceListener } from '../../src/policyd/server.js';
import { RawPolicyClient, encodeRequest, postfixRcptRequest } from './policy-client.js';

const noDns = offlineDnsClient('test');

interface Logged {
  events: EventRecord[];
  warnings: string[];
  errors: string[];
}

function memoryLogger(): MailLogger & Logged {
  const events: EventRecord[] = [];
  const warnings: string[] = [];
  const errors: string[] = [];
  return {
    events,
    warnings,
    errors,
    event: (r) => events.push(r),
    info: () => undefined,
    warn: (m) => warnings.push(m),
    error: (m) => errors.push(m),
    flush: async () => undefined,
  };
}

const SENDER_ACCESS = [
  'spam@bad.example REJECT go away',
  'temp@bad.example 450 4.7.1 try later',
  'maybe@bad.example DEFER_IF_PERMIT 4.7.1 not yet',
  'tag@good.example PREPEND X-Tag: tagged by policy',
  'held@good.example HOLD quarantine',
  `s@${'d'.repeat(510)} PREPEND X-Truncated: yes`,
].join('\n');

const MAIN_CF = [
  'myhostname = policy.greygate.test',
  'mydestination = mx.example.org',
  'relay_domains = relay.example.org',
  'mynetworks = 127.0.0.0/8',
  'policy_service_restrictions = check_sender_access texthash:sender_access, reject_unauth_destination',
].join('\n');

let dir: string;
let listener: PolicyServiceListener;
let port: number;
let log: MailLogger & Logged;
let policyOverride: Policy | null = null;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gg-policyd-'));
  writeFileSync(join(dir, 'main.cf'), MAIN_CF);
  writeFileSync(join(dir, 'sender_access'), SENDER_ACCESS + '\n');
  const config = configFromText(dir, join(dir, 'main.cf'), MAIN_CF);
  const { policy, problems } = compilePolicyServicePolicy({ config, openTable: (s) => openTable(s, dir), dns: noDns, localUsers: { exists: () => false } });
  assert.deepEqual(problems, []);
  log = memoryLogger();
  listener = new PolicyServiceListener(
    { host: '127.0.0.1', port: 0 },
    { runtime: () => ({ config, policies: new Map([[POLICYD_POLICY, policyOverride ?? policy]]) }), log, requestTimeoutMs: 1000 },
  );
  await listener.listen();
  port = listener.port();
});

after(async () => {
  await listener.close(1000);
  rmSync(dir, { recursive: true, force: true });
});

const req = (sender: string, recipient: string, client = '192.0.2.10') => postfixRcptRequest({ client, sender, recipient, name: 'mail.example.net', queueId: 'ABC123' });

const actions: Array<{ name: string; sender: string; recipient: string; action: string; event?: string }> = [
  { name: 'nothing matches: DUNNO', sender: 'ok@good.example', recipient: 'u@mx.example.org', action: 'DUNNO' },
  { name: 'access REJECT: 554 text, without the engine\'s class prefix', sender: 'spam@bad.example', recipient: 'u@mx.example.org', action: '554 5.7.1 go away', event: 'reject' },
  { name: 'access 450: numeric defer', sender: 'temp@bad.example', recipient: 'u@mx.example.org', action: '450 4.7.1 try later', event: 'defer' },
  { name: 'access DEFER_IF_PERMIT (not greylisting): numeric 450', sender: 'maybe@bad.example', recipient: 'u@mx.example.org', action: '450 4.7.1 not yet', event: 'defer' },
  { name: 'access PREPEND', sender: 'tag@good.example', recipient: 'u@mx.example.org', action: 'PREPEND X-Tag: tagged by policy', event: 'prepend' },
  { name: 'access HOLD', sender: 'held@good.example', recipient: 'u@mx.example.org', action: 'HOLD quarantine', event: 'hold' },
  { name: 'relay denied: "<rcpt>: " prefix removed', sender: 'ok@good.example', recipient: 'u@elsewhere.example', action: '554 5.7.1 Relay access denied', event: 'reject' },
  { name: 'relay domain: DUNNO', sender: 'ok@good.example', recipient: 'u@relay.example.org', action: 'DUNNO' },
  { name: 'values are cut at 512 bytes before the lookup', sender: `s@${'d'.repeat(600)}`, recipient: 'u@mx.example.org', action: 'PREPEND X-Truncated: yes', event: 'prepend' },
];

describe('policy service: actions', () => {
  for (const c of actions) {
    it(c.name, async () => {
      const client = await RawPolicyClient.connect(port);
      const before = log.events.length;
      assert.equal(await client.ask(req(c.sender, c.recipient)), c.action);
      const logged = log.events.slice(before);
      if (c.event) {
        assert.equal(logged.length, 1, JSON.stringify(logged));
        assert.equal(logged[0]!.event, c.event);
        assert.equal(logged[0]!.service, 'policyd');
        assert.equal(logged[0]!.client_ip, '192.0.2.10');
        assert.equal(logged[0]!.from, c.sender.slice(0, 512));
        assert.equal(logged[0]!.to, c.recipient);
        assert.equal(logged[0]!.queue_id, 'ABC123');
        assert.ok(logged[0]!.rule, 'rule');
      } else assert.equal(logged.length, 0, JSON.stringify(logged));
      client.close();
    });
  }

  it('the logged reply is the one greygate\'s smtpd would give', async () => {
    const client = await RawPolicyClient.connect(port);
    const before = log.events.length;
    await client.ask(req('spam@bad.example', 'u@mx.example.org'));
    const rec = log.events[before]!;
    assert.equal(rec.reply, '554 5.7.1 <spam@bad.example>: Sender address rejected: go away');
    assert.equal(rec.policy_action, '554 5.7.1 go away');
    assert.match(String(rec.rule), /sender_access:1$/);
    client.close();
  });
});

describe('policy service: protocol', () => {
  it('answers many requests on one connection, in order', async () => {
    const client = await RawPolicyClient.connect(port);
    for (let i = 0; i < 50; i++) {
      const spam = i % 3 === 0;
      assert.equal(await client.ask(req(spam ? 'spam@bad.example' : `ok${i}@good.example`, 'u@mx.example.org')), spam ? '554 5.7.1 go away' : 'DUNNO');
    }
    client.close();
  });

  it('answers pipelined requests sent in one write, in order', async () => {
    const client = await RawPolicyClient.connect(port);
    const senders = ['spam@bad.example', 'ok@good.example', 'temp@bad.example', 'tag@good.example', 'ok2@good.example'];
    client.write(senders.map((s) => encodeRequest(req(s, 'u@mx.example.org'))).join(''));
    const got: string[] = [];
    for (let i = 0; i < senders.length; i++) got.push(await client.action());
    assert.deepEqual(got, ['554 5.7.1 go away', 'DUNNO', '450 4.7.1 try later', 'PREPEND X-Tag: tagged by policy', 'DUNNO']);
    client.close();
  });

  it('accepts CRLF line endings and requests split at every byte', async () => {
    const client = await RawPolicyClient.connect(port);
    const raw = Buffer.from(encodeRequest(req('spam@bad.example', 'u@mx.example.org'), '\r\n'));
    for (let i = 0; i < raw.length; i++) client.write(raw.subarray(i, i + 1));
    assert.equal(await client.action(), '554 5.7.1 go away');
    client.close();
  });

  it('logs and ignores garbage lines', async () => {
    const client = await RawPolicyClient.connect(port);
    const w = log.warnings.length;
    client.write('this is not an attribute\n' + encodeRequest(req('spam@bad.example', 'u@mx.example.org')));
    assert.equal(await client.action(), '554 5.7.1 go away');
    assert.deepEqual(log.warnings.slice(w), ['policyd: ignoring garbage: <this is not an attribute>']);
    client.close();
  });

  it('ignores an empty line between requests', async () => {
    const client = await RawPolicyClient.connect(port);
    client.write('\n\n' + encodeRequest(req('spam@bad.example', 'u@mx.example.org')));
    assert.equal(await client.action(), '554 5.7.1 go away');
    client.close();
  });

  it('answers DUNNO when an attribute postgrey needs is missing, or the address is bad', async () => {
    const client = await RawPolicyClient.connect(port);
    for (const missing of ['client_address', 'client_name', 'sender', 'recipient']) {
      const r: Record<string, string> = req('spam@bad.example', 'u@mx.example.org');
      delete r[missing];
      const w = log.warnings.length;
      assert.equal(await client.ask(r), 'DUNNO', missing);
      assert.deepEqual(log.warnings.slice(w), [`policyd: attribute missing: ${missing}`]);
    }
    assert.equal(await client.ask(req('spam@bad.example', 'u@mx.example.org', 'not-an-ip')), 'DUNNO');
    client.close();
  });

  it('does not answer a request of another type: logs it and disconnects (answering what came before)', async () => {
    const client = await RawPolicyClient.connect(port);
    const w = log.warnings.length;
    client.write(encodeRequest(req('spam@bad.example', 'u@mx.example.org')) + encodeRequest({ request: 'junk_policy', sender: 'x' }) + encodeRequest(req('spam@bad.example', 'u@mx.example.org')));
    assert.equal(await client.action(), '554 5.7.1 go away');
    assert.equal(await client.closedWithoutReply(), true);
    assert.deepEqual(log.warnings.slice(w), ["policyd: unrecognized request type: 'junk_policy'"]);
  });

  it('a request that fails is not answered: the connection closes (Postfix applies its default action)', async () => {
    policyOverride = {
      checkConnect: async () => ({ kind: 'permit', rule: null }),
      checkHelo: async () => ({ kind: 'permit', rule: null }),
      checkMail: async () => ({ kind: 'permit', rule: null }),
      checkRcpt: async () => {
        throw new Error('store exploded');
      },
      checkData: async () => ({ kind: 'permit', rule: null }),
      checkEndOfData: async () => ({ kind: 'permit', rule: null }),
      close: () => undefined,
    };
    try {
      const client = await RawPolicyClient.connect(port);
      const e = log.errors.length;
      client.write(encodeRequest(req('ok@good.example', 'u@mx.example.org')));
      assert.equal(await client.closedWithoutReply(), true);
      assert.match(log.errors[e]!, /request failed, closing the connection without an answer: store exploded/);
      // A decision that never comes: the same, after requestTimeoutMs (1 s here).
      policyOverride = { ...policyOverride, checkRcpt: () => new Promise(() => undefined) };
      const slow = await RawPolicyClient.connect(port);
      slow.write(encodeRequest(req('ok@good.example', 'u@mx.example.org')));
      assert.equal(await slow.closedWithoutReply(3000), true);
    } finally {
      policyOverride = null;
    }
  });

  it('closes a connection left idle longer than the idle timeout', async () => {
    const cfg = configFromText(dir, join(dir, 'main.cf'), MAIN_CF);
    const short = new PolicyServiceListener({ host: '127.0.0.1', port: 0 }, { runtime: () => ({ config: cfg, policies: new Map() }), log, idleTimeoutMs: 300 });
    await short.listen();
    try {
      const c = await RawPolicyClient.connect(short.port());
      const t0 = Date.now();
      assert.equal(await c.closedWithoutReply(3000), true);
      assert.ok(Date.now() - t0 >= 250, 'not before the timeout');
    } finally {
      await short.close(500);
    }
  });

  it('close() answers what is in progress and closes idle connections', async () => {
    const extra = new PolicyServiceListener({ host: '127.0.0.1', port: 0 }, { runtime: () => ({ config: configFromText(dir, join(dir, 'main.cf'), MAIN_CF), policies: new Map() }), log });
    await extra.listen();
    const idle = await RawPolicyClient.connect(extra.port());
    const t0 = Date.now();
    await extra.close(2000);
    assert.ok(Date.now() - t0 < 1000, 'idle connections do not hold close() up');
    assert.equal(await idle.closedWithoutReply(1000), true);
  });
});
