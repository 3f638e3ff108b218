/**
 * The decision log the policy service writes through log/logger.ts: one line per record, in
 * order, with exactly the bytes pino writes for the same record (the logger serialises flat
 * records itself, for speed, and lets pino do the others), in maillog_file; flush() waits
 * for the lines written so far; and the greylist records of a real policy service on
 * 127.0.0.1 read back with the fields of the decision.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { configFromText } from '../../src/config/config.js';
import { offlineDnsClient } from '../../src/dns/resolver.js';
import { openGreylist } from '../../src/greylist/greylist.js';
import type { EventRecord } from '../../src/log/events.js';
import { createMailLogger } from '../../src/log/logger.js';
import { openTable } from '../../src/tables/open.js';
import { compilePolicyServicePolicy } from '../../src/policyd/policy.js';
import { POLICYD_POLICY, PolicyServiceListener } from '../../src/policyd/server.js';
import { RawPolicyClient, encodeRequest, postfixRcptRequest } from './policy-client.js';

const dir = mkdtempSync(join(tmpdir(), 'gg-decision-log-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** What pino itself writes for logger.info(record), with the logger's options. */
function pinoLines(records: readonly EventRecord[]): string[] {
  const out: string[] = [];
  const ref = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, { write: (s: string) => void out.push(s) });
  for (const r of records) ref.info(r);
  return out;
}

const withoutTime = (line: string): string => line.replace(/"time":"[^"]*"/, '"time":"T"');

describe('decision log lines', () => {
  const records: EventRecord[] = [
    {
      event: 'greylist', stage: 'rcpt', service: 'policyd', session: 'policyd-0', client_ip: '192.0.2.1', client_name: 'unknown', from: 'a@b.example',
      to: 'c@d.example', instance: '1.2', action: 'greylist', reason: 'new', key: '192.0.2.0/a@b.example/c@d.example', remaining: 300, rule: 'check_greylist',
      code: 450, status: '4.2.0', reply: '450 4.2.0 <c@d.example>: Recipient address rejected: Greylisted', policy_action: 'DEFER_IF_PERMIT 4.2.0 Greylisted',
      msg: 'action=greylist, reason=new, client_name=unknown, client_address=192.0.2.1, sender=a@b.example, recipient=c@d.example',
    },
    { event: 'reject', msg: 'quote " backslash \\ tab \t newline \n done', to: ['x@y', 'q"uote@z'], nothing: undefined, empty: null, nan: NaN, inf: -Infinity, yes: true },
    { event: 'info', long: `${'x'.repeat(150)}"`, utf8: 'é ü 😀 ∑', '"odd key': 1, fn: (() => 1) as unknown },
    { event: 'warn', nested: { b: 2, a: 1 }, list: [1, 'two'], msg: 'objects are pino\'s to write' },
    { event: 'error', err: new Error('boom') },
  ];

  it('are the lines pino writes for the same records, in maillog_file, in order', async () => {
    const file = join(dir, 'same.log');
    const log = createMailLogger({ file, stdout: false });
    for (const r of records) log.event(r);
    log.info('started', { event: 'start', pid: 1 });
    await log.flush();
    const got = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
    const info: string[] = [];
    pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, { write: (s: string) => void info.push(s) }).info({ event: 'start', pid: 1 }, 'started');
    const want = [...pinoLines(records), ...info].map((l) => l.trimEnd());
    assert.deepEqual(got.map(withoutTime), want.map(withoutTime));
    for (const l of got) assert.match(l, /^\{"level":(30|40|50),"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",/);
  });

  it('flush() waits for every line written before it, across many batches', async () => {
    const file = join(dir, 'many.log');
    writeFileSync(file, '{"already":"there"}\n');
    const log = createMailLogger({ file, stdout: false });
    const n = 20_000;
    for (let i = 0; i < n; i++) log.event({ event: 'greylist', n: i, msg: `line ${i} ${'p'.repeat(i % 300)}` });
    await log.flush();
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
    assert.equal(lines.length, n + 1, 'appended, none lost');
    lines.slice(1).forEach((l, i) => assert.equal((JSON.parse(l) as { n: number }).n, i));
  });

  it('a logger with no destination keeps nothing', async () => {
    const log = createMailLogger({ file: '', stdout: false });
    for (let i = 0; i < 1000; i++) log.event({ event: 'info', msg: 'dropped' });
    await log.flush();
  });
});

describe('the policy service\'s greylist records', () => {
  it('one per decision, read back with the decision\'s fields', async () => {
    const file = join(dir, 'policyd.log');
    const config = configFromText(dir, join(dir, 'main.cf'), [
      `data_directory = ${join(dir, 'data')}`,
      'myhostname = policy.greygate.test',
      'greylist_delay = 1s',
      'policy_service_restrictions = check_greylist',
    ].join('\n'));
    const { greylist } = await openGreylist(config, { cleanupIntervalMs: 0 });
    const { policy, problems } = compilePolicyServicePolicy({ config, openTable: (s) => openTable(s, dir), dns: offlineDnsClient('test'), localUsers: { exists: () => false }, greylist });
    assert.deepEqual(problems, []);
    const log = createMailLogger({ file, stdout: false });
    const listener = new PolicyServiceListener({ host: '127.0.0.1', port: 0 }, { runtime: () => ({ config, policies: new Map([[POLICYD_POLICY, policy]]) }), log });
    await listener.listen();
    const client = await RawPolicyClient.connect(listener.port());
    try {
      const req = (rcpt: string): string => encodeRequest(postfixRcptRequest({ client: '192.0.2.9', sender: 'news@lists.example', recipient: rcpt }));
      // Two requests in one write: answered in order, each logged once.
      client.write(req('a@example.org') + req('b@example.org'));
      assert.match(await client.action(), /^DEFER_IF_PERMIT 4\.2\.0 /);
      assert.match(await client.action(), /^DEFER_IF_PERMIT 4\.2\.0 /);
    } finally {
      client.close();
      await listener.close(1000);
      await greylist.close();
    }
    await log.flush();
    const recs = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(recs.length, 2);
    for (const [i, rcpt] of ['a@example.org', 'b@example.org'].entries()) {
      const r = recs[i]!;
      assert.equal(r.event, 'greylist');
      assert.equal(r.to, rcpt);
      assert.equal(r.action, 'greylist');
      assert.equal(r.reason, 'new');
      assert.equal(r.code, 450);
      assert.equal(r.status, '4.2.0');
      assert.equal(r.rule, 'check_greylist');
      assert.match(String(r.policy_action), /^DEFER_IF_PERMIT 4\.2\.0 /);
      assert.equal(r.msg, `action=greylist, reason=new, client_name=unknown, client_address=192.0.2.9, sender=news@lists.example, recipient=${rcpt}`);
    }
  });
});
