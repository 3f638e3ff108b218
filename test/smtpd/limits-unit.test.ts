/**
 * The anvil counters of src/smtpd/limits.ts without sockets: what is counted, when a window
 * restarts, which reply each limit gives, and that the state is pruned. Time is passed in
 * explicitly (the `now` argument), so no clock is faked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionLimits, anvilRange, anvilSettings, errorLimits, type AnvilSettings } from '../../src/smtpd/limits.js';
import { configFromText } from '../../src/config/config.js';
import { formatReply } from '../../src/mail/reply.js';

const BASE: AnvilSettings = {
  hostname: 'mx.test',
  connectionCountLimit: 0,
  connectionRateLimit: 0,
  messageRateLimit: 0,
  recipientRateLimit: 0,
  rateUnitMs: 60_000,
  ipv4PrefixLength: 32,
  ipv6PrefixLength: 84,
};

const T0 = 1_000_000;

test('connection count: over the limit is refused, a close frees the slot', () => {
  const a = new ConnectionLimits();
  const s = { ...BASE, connectionCountLimit: 2 };
  const c1 = a.connect('smtpd', '192.0.2.1', s, T0);
  const c2 = a.connect('smtpd', '192.0.2.1', s, T0);
  assert.equal(c1.refusal, null);
  assert.equal(c2.refusal, null);
  const c3 = a.connect('smtpd', '192.0.2.1', s, T0);
  assert.ok(c3.refusal);
  assert.equal(formatReply(c3.refusal.decision.reply), '421 4.7.0 mx.test Error: too many connections from 192.0.2.1');
  assert.equal(c3.refusal.decision.rule, 'smtpd_client_connection_count_limit');
  assert.equal(c3.refusal.decision.kind, 'defer');
  assert.equal(c3.refusal.warning, 'Connection concurrency limit exceeded: 3');
  // Another client is not affected.
  assert.equal(a.connect('smtpd', '192.0.2.2', s, T0).refusal, null);
  // The refused connection holds its slot until it is closed, as in anvil.
  a.disconnect(c3.key, T0);
  a.disconnect(c1.key, T0);
  assert.equal(a.connect('smtpd', '192.0.2.1', s, T0).refusal, null);
});

test('connection rate: attempts per anvil_rate_time_unit, refused ones included; the window restarts', () => {
  const a = new ConnectionLimits();
  const s = { ...BASE, connectionRateLimit: 3, rateUnitMs: 2000 };
  const got: Array<string | null> = [];
  for (let i = 0; i < 5; i++) {
    const c = a.connect('smtpd', '192.0.2.1', s, T0 + i);
    got.push(c.refusal?.decision.rule ?? null);
    a.disconnect(c.key, T0 + i);
  }
  assert.deepEqual(got, [null, null, null, 'smtpd_client_connection_rate_limit', 'smtpd_client_connection_rate_limit']);
  const r = a.connect('smtpd', '192.0.2.1', s, T0 + 10);
  assert.equal(formatReply(r.refusal!.decision.reply), '421 4.7.0 mx.test Error: too many connections from 192.0.2.1');
  assert.equal(r.refusal!.warning, 'Connection rate limit exceeded: 6');
  a.disconnect(r.key, T0 + 10);
  // Postfix restarts the window once start + unit < now.
  assert.notEqual(a.connect('smtpd', '192.0.2.1', s, T0 + 2000).refusal, null);
  assert.equal(a.connect('smtpd', '192.0.2.1', s, T0 + 2001).refusal, null);
});

test('message and recipient rates: counted whatever the verdict, 450 4.7.1 over the limit', () => {
  const a = new ConnectionLimits();
  const s = { ...BASE, messageRateLimit: 2, recipientRateLimit: 3, rateUnitMs: 1000 };
  assert.equal(a.mail('smtpd', '192.0.2.7', s, T0), null);
  assert.equal(a.mail('smtpd', '192.0.2.7', s, T0), null);
  const m = a.mail('smtpd', '192.0.2.7', s, T0);
  assert.equal(formatReply(m!.decision.reply), '450 4.7.1 Error: too much mail from 192.0.2.7');
  assert.equal(m!.decision.rule, 'smtpd_client_message_rate_limit');
  assert.equal(m!.decision.disconnect, false);
  assert.equal(m!.warning, 'Message delivery request rate limit exceeded: 3');
  for (let i = 0; i < 3; i++) assert.equal(a.rcpt('smtpd', '192.0.2.7', s, T0), null);
  const r = a.rcpt('smtpd', '192.0.2.7', s, T0);
  assert.equal(formatReply(r!.decision.reply), '450 4.7.1 Error: too many recipients from 192.0.2.7');
  assert.equal(r!.decision.rule, 'smtpd_client_recipient_rate_limit');
  // One window for every rate of a client (anvil's single `start`).
  assert.equal(a.mail('smtpd', '192.0.2.7', s, T0 + 1001), null);
  assert.equal(a.rcpt('smtpd', '192.0.2.7', s, T0 + 1001), null);
});

test('limits are per service, as anvil keys them by service and client', () => {
  const a = new ConnectionLimits();
  const s = { ...BASE, messageRateLimit: 1 };
  assert.equal(a.mail('smtpd', '192.0.2.1', s, T0), null);
  assert.notEqual(a.mail('smtpd', '192.0.2.1', s, T0), null);
  assert.equal(a.mail('submission', '192.0.2.1', s, T0), null);
});

test('a limit of 0 never refuses', () => {
  const a = new ConnectionLimits();
  for (let i = 0; i < 200; i++) {
    assert.equal(a.connect('smtpd', '192.0.2.1', BASE, T0).refusal, null);
    assert.equal(a.mail('smtpd', '192.0.2.1', BASE, T0), null);
    assert.equal(a.rcpt('smtpd', '192.0.2.1', BASE, T0), null);
  }
});

test('state is pruned: idle clients go after their window, connected ones stay', () => {
  const a = new ConnectionLimits();
  const s = { ...BASE, rateUnitMs: 1000 };
  const held = a.connect('smtpd', '192.0.2.1', s, T0);
  for (let i = 2; i < 1002; i++) {
    const c = a.connect('smtpd', `10.0.${i >> 8}.${i & 255}`, s, T0);
    a.disconnect(c.key, T0);
  }
  assert.equal(a.size, 1001);
  a.prune(1000, T0 + 1001);
  assert.equal(a.size, 1);
  a.disconnect(held.key, T0 + 1002);
  assert.equal(a.size, 0, 'the last close of an expired record drops it');
});

test('state is pruned by the traffic itself, without a timer', () => {
  const a = new ConnectionLimits();
  const s = { ...BASE, rateUnitMs: 1000, messageRateLimit: 5 };
  // 100 windows of 500 new clients each: never more than about two windows' worth held.
  let peak = 0;
  for (let w = 0; w < 100; w++) {
    for (let i = 0; i < 500; i++) a.mail('smtpd', `10.${w}.${i >> 8}.${i & 255}`, s, T0 + w * 1000 + i);
    peak = Math.max(peak, a.size);
  }
  assert.ok(peak <= 1500, `peak ${peak}`);
});

test('a stale prune unit never cuts a live window short', () => {
  const a = new ConnectionLimits();
  const s = { ...BASE, messageRateLimit: 1, rateUnitMs: 10_000 };
  assert.equal(a.mail('smtpd', '192.0.2.1', s, T0), null);
  a.prune(1000, T0 + 5000);
  assert.notEqual(a.mail('smtpd', '192.0.2.1', s, T0 + 5001), null);
});

test('anvilRange: per address by default for IPv4, /84 for IPv6, mapped IPv4 unwrapped', () => {
  const cases: Array<[string, number, number, string]> = [
    ['192.0.2.77', 32, 84, '192.0.2.77'],
    ['192.0.2.77', 24, 84, '192.0.2.0/24'],
    ['::ffff:192.0.2.77', 32, 84, '192.0.2.77'],
    ['2001:db8:1:2:3:4:5:6', 32, 84, '2001:db8:1:2:3::/84'],
    ['2001:db8:1:2:3:4567:5:6', 32, 84, '2001:db8:1:2:3:4000::/84'],
    ['2001:db8::1', 32, 128, '2001:db8::1'],
    ['not-an-address', 32, 84, 'not-an-address'],
  ];
  for (const [ip, v4, v6, want] of cases) assert.equal(anvilRange(ip, v4, v6), want, ip);
  const a = new ConnectionLimits();
  const s = { ...BASE, messageRateLimit: 1 };
  assert.equal(a.mail('smtpd', '2001:db8:1:2::1', s, T0), null);
  assert.notEqual(a.mail('smtpd', '2001:db8:1:2::2', s, T0), null, 'one /84 is one client');
});

test('settings come from the parameters with Postfix defaults', () => {
  const d = configFromText('/tmp', 'main.cf', 'myhostname = mx.example\n');
  assert.deepEqual(anvilSettings(d), {
    hostname: 'mx.example',
    connectionCountLimit: 50,
    connectionRateLimit: 0,
    messageRateLimit: 0,
    recipientRateLimit: 0,
    rateUnitMs: 60_000,
    ipv4PrefixLength: 32,
    ipv6PrefixLength: 84,
  });
  assert.deepEqual(errorLimits(d), { hostname: 'mx.example', softErrorLimit: 10, hardErrorLimit: 20, errorSleepMs: 1000, junkCommandLimit: 100 });
  const c = configFromText('/tmp', 'main.cf', 'myhostname = mx.example\nanvil_rate_time_unit = 2s\nsmtpd_client_recipient_rate_limit = 7\nsmtpd_error_sleep_time = 250ms\n');
  assert.equal(anvilSettings(c).rateUnitMs, 2000);
  assert.equal(anvilSettings(c).recipientRateLimit, 7);
  assert.equal(errorLimits(c).errorSleepMs, 250);
});
