/**
 * @module test/queue/envelope
 * SUMMARY: the queue file format as pure functions: envelope JSON round trip (snake_case,
 * versioned), refusal of damaged or newer envelopes, the 32-byte header, and record
 * framing where the last intact record wins and a torn or altered tail is ignored.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ENVELOPE_VERSION,
  HEADER_SIZE,
  buildEnvelope,
  decodeHeader,
  encodeHeader,
  encodeRecord,
  parseEnvelope,
  scanRecords,
  serialiseEnvelope,
  type Envelope,
} from '../../src/queue/envelope.js';
import { sampleEnvelope } from './queue-fixture.js';

function sample(): Envelope {
  return buildEnvelope('8A3B61C0E2F', sampleEnvelope({ holdReason: 'held by rule', prependHeaders: ['X-Test: 1'], bcc: ['archive@example.org'] }), 100, 1_700_000_000_000);
}

describe('buildEnvelope', () => {
  it('fills in the queue state of a new message', () => {
    const env = sample();
    assert.equal(env.version, ENVELOPE_VERSION);
    assert.equal(env.arrivalTime, 1_700_000_000_000);
    assert.equal(env.nextAttemptAt, env.arrivalTime);
    assert.equal(env.attempts, 0);
    assert.equal(env.messageSize, 100 + 'X-Test: 1\r\n'.length);
    assert.deepEqual(env.recipients.map((r) => [r.address, r.originalAddress, r.status]), [
      ['bob@example.com', 'bob@example.com', 'pending'],
      ['carol@example.com', 'Carol@Example.com', 'pending'],
    ]);
    assert.deepEqual(env.client, { address: '192.0.2.10', name: 'mail.example.org', reverseName: 'mail.example.org', port: 40000, helo: 'mail.example.org', protocol: 'ESMTP' });
    assert.equal(env.hold, 'held by rule');
  });
  it('takes arrivalTime from the caller when given', () => {
    assert.equal(buildEnvelope('A1', sampleEnvelope({ arrivalTime: 5000 }), 0, 9000).arrivalTime, 5000);
  });
});

describe('serialiseEnvelope / parseEnvelope', () => {
  it('round-trips every field', () => {
    const env = sample();
    env.recipients[0]!.status = 'deferred';
    env.recipients[0]!.delayReason = 'connect to mx.example.com[192.0.2.1]:25: Connection refused';
    env.recipients[0]!.dsn = { status: '4.4.1', diagnostic: 'X-Postfix; connection refused', remoteMta: 'mx.example.com' };
    env.recipients[1]!.orcpt = 'rfc822;Carol@Example.com';
    env.lastAttemptAt = 1_700_000_100_000;
    env.client.saslUsername = 'alice';
    Object.assign(env, { discard: 'x', redirect: 'r@example.org', filter: 'smtp:[127.0.0.1]:10025', envid: 'ID1', ret: 'HDRS', bodyType: '8BITMIME', smtputf8: true });
    const r = parseEnvelope(serialiseEnvelope(env));
    assert.ok(r.ok);
    assert.deepEqual(r.value, env);
  });
  it('uses snake_case names on disk', () => {
    const o = JSON.parse(serialiseEnvelope(sample()));
    assert.equal(o.queue_id, '8A3B61C0E2F');
    assert.equal(o.client.client_ip, '192.0.2.10');
    assert.equal(o.recipients[1].orig_address, 'Carol@Example.com');
    assert.equal(o.hold_reason, 'held by rule');
  });
  const bad: Array<[string, string, RegExp]> = [
    ['not JSON', '{"version":', /not JSON/],
    ['newer version', JSON.stringify({ ...JSON.parse(serialiseEnvelope(sample())), version: 2 }), /unsupported envelope version 2/],
    ['missing sender', JSON.stringify({ ...JSON.parse(serialiseEnvelope(sample())), sender: undefined }), /sender/],
    ['bad status', serialiseEnvelope(sample()).replace('"pending"', '"lost"'), /status/],
    ['recipients not a list', JSON.stringify({ ...JSON.parse(serialiseEnvelope(sample())), recipients: {} }), /recipients/],
    ['negative size', JSON.stringify({ ...JSON.parse(serialiseEnvelope(sample())), message_size: -1 }), /message_size/],
  ];
  for (const [name, text, reason] of bad) {
    it(`refuses ${name}`, () => {
      const r = parseEnvelope(text);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.reason, reason);
    });
  }
});

describe('file framing', () => {
  it('header holds the message length in 32 bytes', () => {
    const h = encodeHeader(123456);
    assert.equal(h.length, HEADER_SIZE);
    assert.deepEqual(decodeHeader(h), { ok: true, value: 123456 });
    assert.equal(decodeHeader(Buffer.from('From: x\r\n'.padEnd(40, ' '))).ok, false);
    assert.equal(decodeHeader(h.subarray(0, 10)).ok, false);
  });
  it('the last intact record wins', () => {
    const a = sample();
    const b = { ...sample(), attempts: 3 };
    const area = Buffer.concat([encodeRecord(a), encodeRecord(b)]);
    const scan = scanRecords(area);
    assert.equal(scan.count, 2);
    assert.equal(scan.end, area.length);
    assert.equal(JSON.parse(scan.last!).attempts, 3);
  });
  it('a torn append falls back to the previous record', () => {
    const first = encodeRecord(sample());
    const second = encodeRecord({ ...sample(), attempts: 3 });
    for (const cut of [1, 20, 31, second.length - 1]) {
      const scan = scanRecords(Buffer.concat([first, second.subarray(0, cut)]));
      assert.equal(scan.count, 1, `cut at ${cut}`);
      assert.equal(scan.end, first.length);
      assert.equal(JSON.parse(scan.last!).attempts, 0);
    }
  });
  it('an altered record is not trusted', () => {
    const rec = encodeRecord(sample());
    const i = rec.indexOf('alice');
    rec[i] = 'A'.charCodeAt(0);
    assert.equal(scanRecords(rec).last, null);
  });
  it('no record at all is an incomplete file', () => {
    assert.deepEqual(scanRecords(Buffer.alloc(0)), { last: null, count: 0, end: 0 });
    assert.equal(scanRecords(Buffer.alloc(100)).last, null);
  });
});
