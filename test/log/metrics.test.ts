/**
 * Prometheus metrics: the counting hook (unit, with a micro-benchmark printed), the HTTP
 * endpoint (404/405/HEAD/bad requests), and the real gateway with metrics_port scraped with
 * curl and fetch after real traffic: every expected value comes from the traffic the test
 * sent (accepted and delivered to a loopback sink, held and rejected by header_checks,
 * relay denied), cross-checked against the decision log.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Metrics, MAX_SERIES, OTHER_RULE } from '../../src/log/metrics.js';
import { MetricsListener } from '../../src/log/metrics-http.js';
import { createMailLogger } from '../../src/log/logger.js';
import type { EventRecord } from '../../src/log/events.js';
import { freePort, requireTool, startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { SmtpSink } from '../helpers/smtp-sink.js';

const run = promisify(execFile);
const CURL = '/usr/bin/curl';

/* ---- exposition-format reading */

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of NAME whose labels include LABELS (exactly one sample must match); 0 when none does. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(hits.length <= 1, `${name} ${JSON.stringify(labels)} matches ${hits.length} samples`);
  return hits[0]?.value ?? 0;
}

/** The sum of NAME over every sample whose labels include LABELS. */
function total(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

async function waitFor(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** TCP ports process PID listens on (from /proc: its socket inodes in LISTEN state). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== '0A' || !inodes.has(cols[9]!)) continue;
      ports.add(parseInt(cols[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/* ---- the counting hook */

describe('Metrics: counting the decision log', () => {
  const rec = (r: EventRecord): EventRecord => r;

  it('counts each record once by event, stage and rule, with the derived metrics', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const log = createMailLogger({ file: '', stdout: false, onEvent: m.observeEvent, onMessage: m.observeLog });
    log.event(rec({ event: 'connect', stage: 'connect', session: 's1', service: 'smtpd', client_ip: '192.0.2.1' }));
    log.event(rec({ event: 'connect', stage: 'connect', session: 's2', service: 'submission', client_ip: '192.0.2.2' }));
    log.event(rec({ event: 'reject', stage: 'rcpt', session: 's1', code: 554, status: '5.7.1', rule: 'reject_unauth_destination' }));
    log.event(rec({ event: 'reject', stage: 'rcpt', session: 's1', code: 554, status: '5.7.1', rule: 'reject_unauth_destination' }));
    log.event(rec({ event: 'greylist', stage: 'rcpt', session: 's1', code: 450, rule: 'check_greylist' }));
    log.event(rec({ event: 'greylist', stage: 'rcpt', service: 'policyd', code: 450, rule: 'check_greylist' }));
    log.event(rec({ event: 'accept', stage: 'end-of-data', session: 's2', code: 250, size: 1000, to: ['a@x', 'b@x'] }));
    log.event(rec({ event: 'accept', stage: 'end-of-data', session: 's2', code: 250, size: 500, to: 'c@x' }));
    log.event(rec({ event: 'deliver', stage: 'qmgr', status: 'sent', delay: 0.2 }));
    log.event(rec({ event: 'bounce', stage: 'qmgr', status: 'bounced', delay: 7 }));
    log.event(rec({ event: 'expire', stage: 'qmgr', status: 'expired', delay: 432000 }));
    log.event(rec({ event: 'disconnect', stage: 'disconnect', session: 's1' }));
    log.event(rec({ event: 'disconnect', stage: 'disconnect', session: 'never-connected' }));
    log.warn('something odd');
    log.error('something broken');
    m.observeTransaction(0.03, 'accept');
    m.observeTransaction(0.2, 'reject');
    const s = parse(await m.render());
    assert.equal(value(s, 'greygate_events_total', { event: 'reject', stage: 'rcpt', rule: 'reject_unauth_destination' }), 2);
    assert.equal(value(s, 'greygate_events_total', { event: 'greylist', stage: 'rcpt', rule: 'check_greylist' }), 2);
    assert.equal(value(s, 'greygate_events_total', { event: 'accept', stage: 'end-of-data', rule: '' }), 2);
    assert.equal(value(s, 'greygate_events_total', { event: 'disconnect' }), 2);
    assert.equal(total(s, 'greygate_events_total'), 13);
    // 250 x2, 554 x2 and smtpd's 450; the policy service's 450 is Postfix's reply, not ours.
    assert.equal(value(s, 'greygate_smtp_replies_total', { code_class: '2xx' }), 2);
    assert.equal(value(s, 'greygate_smtp_replies_total', { code_class: '4xx' }), 1);
    assert.equal(value(s, 'greygate_smtp_replies_total', { code_class: '5xx' }), 2);
    assert.equal(value(s, 'greygate_accepted_bytes_total'), 1500);
    assert.equal(value(s, 'greygate_accepted_recipients_total'), 3);
    assert.equal(value(s, 'greygate_delivery_seconds_count', { status: 'sent' }), 1);
    assert.equal(value(s, 'greygate_delivery_seconds_bucket', { status: 'sent', le: '0.25' }), 1);
    assert.equal(value(s, 'greygate_delivery_seconds_bucket', { status: 'sent', le: '0.1' }), 0);
    assert.equal(value(s, 'greygate_delivery_seconds_count', { status: 'bounced' }), 1);
    assert.equal(value(s, 'greygate_delivery_seconds_count', { status: 'expired' }), 1);
    assert.equal(value(s, 'greygate_delivery_seconds_sum', { status: 'expired' }), 432000);
    assert.equal(value(s, 'greygate_smtp_transaction_seconds_count', { outcome: 'accept' }), 1);
    assert.equal(value(s, 'greygate_smtp_transaction_seconds_count', { outcome: 'reject' }), 1);
    assert.equal(value(s, 'greygate_smtp_transaction_seconds_count', { outcome: 'defer' }), 0);
    assert.equal(value(s, 'greygate_smtp_sessions', { service: 'smtpd' }), 0);
    assert.equal(value(s, 'greygate_smtp_sessions', { service: 'submission' }), 1);
    assert.equal(value(s, 'greygate_log_messages_total', { level: 'warn' }), 1);
    assert.equal(value(s, 'greygate_log_messages_total', { level: 'error' }), 1);
    // No label carries a client, an address or a session.
    for (const x of s) for (const v of Object.values(x.labels)) assert.ok(!/192\.0\.2|@|^s\d$/.test(v), `${x.name} label ${v}`);
  });

  it('keeps counting across scrapes (counts are handed over as differences)', async () => {
    const m = new Metrics({ defaultMetrics: false });
    for (let i = 0; i < 3; i++) m.observeEvent({ event: 'reject', stage: 'rcpt', rule: 'r', code: 550, size: 10 });
    assert.equal(value(parse(await m.render()), 'greygate_events_total', { rule: 'r' }), 3);
    assert.equal(value(parse(await m.render()), 'greygate_events_total', { rule: 'r' }), 3);
    for (let i = 0; i < 4; i++) m.observeEvent({ event: 'reject', stage: 'rcpt', rule: 'r', code: 550 });
    m.observeEvent({ event: 'accept', stage: 'end-of-data', size: 7, to: 'a@b' });
    const s = parse(await m.render());
    assert.equal(value(s, 'greygate_events_total', { rule: 'r' }), 7);
    assert.equal(value(s, 'greygate_smtp_replies_total', { code_class: '5xx' }), 7);
    assert.equal(value(s, 'greygate_accepted_bytes_total'), 7);
  });

  it(`caps the label sets at ${MAX_SERIES}: further rules count as ${OTHER_RULE}`, async () => {
    const m = new Metrics({ defaultMetrics: false });
    const n = MAX_SERIES + 50;
    for (let i = 0; i < n; i++) m.observeEvent({ event: 'reject', stage: 'rcpt', rule: `bogus-${i}` });
    m.observeEvent({ event: 'reject', stage: 'rcpt', rule: 'bogus-0' });
    const s = parse(await m.render()).filter((x) => x.name === 'greygate_events_total');
    assert.ok(s.length <= MAX_SERIES + 1, `${s.length} series`);
    assert.equal(value(s, 'greygate_events_total', { rule: OTHER_RULE }), 50);
    assert.equal(value(s, 'greygate_events_total', { rule: 'bogus-0' }), 2);
    assert.equal(total(s, 'greygate_events_total'), n + 1);
  });

  it('counts messages in each queue directory at scrape time (temporary dot files excluded)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'greygate-metrics-'));
    try {
      const dirs: Record<string, string> = {};
      for (const q of ['incoming', 'active', 'deferred', 'hold']) mkdirSync((dirs[q] = join(dir, q)));
      dirs.corrupt = join(dir, 'corrupt-never-made');
      for (let i = 0; i < 5; i++) writeFileSync(join(dirs.deferred!, `ID${i}`), 'x');
      writeFileSync(join(dirs.incoming!, '.tmp-1-2-3'), '');
      writeFileSync(join(dirs.hold!, 'ID9'), 'x');
      const m = new Metrics({ defaultMetrics: false, queueDirs: dirs });
      let s = parse(await m.render());
      assert.equal(value(s, 'greygate_queue_messages', { queue: 'deferred' }), 5);
      assert.equal(value(s, 'greygate_queue_messages', { queue: 'incoming' }), 0);
      assert.equal(value(s, 'greygate_queue_messages', { queue: 'hold' }), 1);
      assert.equal(value(s, 'greygate_queue_messages', { queue: 'corrupt' }), 0);
      rmSync(join(dirs.deferred!, 'ID0'));
      s = parse(await m.render());
      assert.equal(value(s, 'greygate_queue_messages', { queue: 'deferred' }), 4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('costs little per record (micro-benchmark, printed)', async () => {
    const rules = Array.from({ length: 40 }, (_, i) => `header_checks:${i + 1}`);
    const events = ['reject', 'greylist', 'accept', 'connect', 'disconnect', 'defer'] as const;
    const recs: EventRecord[] = Array.from({ length: 1000 }, (_, i) => ({
      event: events[i % events.length]!,
      stage: 'rcpt',
      session: `s${i}`,
      client_ip: `192.0.2.${i % 250}`,
      from: 'a@b.example',
      to: 'c@d.example',
      code: 450,
      status: '4.2.0',
      reply: '450 4.2.0 <c@d.example>: Recipient address rejected: Greylisted, see RFC 6647',
      rule: rules[i % rules.length]!,
    }));
    const N = 300_000;
    const m = new Metrics({ defaultMetrics: false });
    let t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) m.observeEvent(recs[i % recs.length]!);
    const hookNs = Number(process.hrtime.bigint() - t) / N;
    const dir = mkdtempSync(join(tmpdir(), 'greygate-metrics-bench-'));
    try {
      const plain = createMailLogger({ file: join(dir, 'a.log'), stdout: false });
      const hooked = createMailLogger({ file: join(dir, 'b.log'), stdout: false, onEvent: new Metrics({ defaultMetrics: false }).observeEvent });
      const time = async (l: typeof plain): Promise<number> => {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < N; i++) l.event(recs[i % recs.length]!);
        const ns = Number(process.hrtime.bigint() - t0) / N;
        await l.flush();
        return ns;
      };
      await time(plain);
      await time(hooked);
      const plainNs = await time(plain);
      const hookedNs = await time(hooked);
      t = process.hrtime.bigint();
      await m.render();
      const renderMs = Number(process.hrtime.bigint() - t) / 1e6;
      console.log(
        `metrics hook: observeEvent ${hookNs.toFixed(0)} ns/record; logger.event ${plainNs.toFixed(0)} ns without the hook, ${hookedNs.toFixed(0)} ns with it; render of ${events.length * rules.length} series ${renderMs.toFixed(1)} ms`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/* ---- the HTTP endpoint */

describe('MetricsListener', () => {
  let listener: MetricsListener;
  let url: string;
  const errors: string[] = [];
  let failRender = false;
  const metrics = new Metrics({ defaultMetrics: false });
  before(async () => {
    metrics.observeEvent({ event: 'reject', stage: 'rcpt', rule: 'reject_unauth_destination', code: 554 });
    const source = {
      contentType: metrics.contentType,
      render: () => (failRender ? Promise.reject(new Error('collector broke')) : metrics.render()),
    };
    listener = new MetricsListener({ host: '127.0.0.1', port: 0 }, source, (m) => errors.push(m));
    await listener.listen();
    url = `http://127.0.0.1:${listener.port()}`;
  });
  after(() => listener.close());

  const cases: Array<{ name: string; method: string; path: string; status: number; body?: RegExp; allow?: string }> = [
    { name: 'GET /metrics', method: 'GET', path: '/metrics', status: 200, body: /^greygate_events_total\{event="reject",stage="rcpt",rule="reject_unauth_destination"\} 1$/m },
    { name: 'GET /metrics with a query string', method: 'GET', path: '/metrics?name[]=x', status: 200, body: /greygate_events_total/ },
    { name: 'HEAD /metrics', method: 'HEAD', path: '/metrics', status: 200, body: /^$/ },
    { name: 'GET /', method: 'GET', path: '/', status: 404, body: /^Not Found\n$/ },
    { name: 'GET /metrics/', method: 'GET', path: '/metrics/', status: 404 },
    { name: 'GET /metricsx', method: 'GET', path: '/metricsx', status: 404 },
    { name: 'POST /metrics', method: 'POST', path: '/metrics', status: 405, allow: 'GET, HEAD' },
    { name: 'DELETE /metrics', method: 'DELETE', path: '/metrics', status: 405, allow: 'GET, HEAD' },
  ];
  for (const c of cases) {
    it(`${c.name} -> ${c.status}`, async () => {
      const res = await fetch(url + c.path, { method: c.method, ...(c.method === 'POST' ? { body: 'x=1' } : {}) });
      assert.equal(res.status, c.status);
      const body = await res.text();
      if (c.body) assert.match(body, c.body);
      if (c.status === 200) {
        assert.equal(res.headers.get('content-type'), metrics.contentType);
        assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4; charset=utf-8$/);
        assert.ok(Number(res.headers.get('content-length')) > 0);
      }
      if (c.allow) assert.equal(res.headers.get('allow'), c.allow);
    });
  }

  it('answers garbage with 400 and keeps serving', async () => {
    for (const garbage of ['GARBAGE\r\n\r\n', 'GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n', '\x00\x01\x02\xff\r\n\r\n']) {
      const answer = await new Promise<string>((resolve, reject) => {
        const s = connect(listener.port(), '127.0.0.1');
        let got = '';
        s.setEncoding('latin1');
        s.on('data', (d: string) => (got += d));
        s.on('error', reject);
        s.on('close', () => resolve(got));
        s.write(garbage, 'latin1');
      });
      assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/, JSON.stringify(garbage));
    }
    // A client that goes away in the middle of its request.
    await new Promise<void>((resolve) => {
      const s = connect(listener.port(), '127.0.0.1', () => {
        s.write('GET /metr');
        s.destroy();
        resolve();
      });
    });
    assert.equal((await fetch(url + '/metrics')).status, 200);
  });

  it('a failed render is a 500 and one logged error', async () => {
    failRender = true;
    try {
      const res = await fetch(url + '/metrics');
      assert.equal(res.status, 500);
      await res.text();
      assert.equal(errors.length, 1);
      assert.match(errors[0]!, /cannot render the metrics: collector broke/);
    } finally {
      failRender = false;
    }
  });
});

/* ---- the gateway, end to end */

const DELIVERY = { master_service_disable: '', minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s' };
const HEADER_CHECKS = '/^Subject: .*forbidden/ REJECT spam subject\n/^Subject: .*quarantine/ HOLD held for review\n';

/** One transaction from 127.0.0.1 (mynetworks); returns the reply to the end of data. */
async function send(gw: TestGateway, to: string, subject: string): Promise<number> {
  const c = await SmtpClient.connect(gw.port);
  try {
    assert.equal((await c.cmd('EHLO client.example')).code, 250);
    assert.equal((await c.cmd('MAIL FROM:<sender@client.example>')).code, 250);
    assert.equal((await c.cmd(`RCPT TO:<${to}>`)).code, 250);
    const r = await c.data(`From: sender@client.example\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\nHello.\r\n`);
    await c.cmd('QUIT');
    return r.code;
  } finally {
    c.close();
  }
}

/** An external client (XCLIENT, as a front proxy would) trying to relay; returns the RCPT reply. */
async function relayAttempt(gw: TestGateway, i: number): Promise<string> {
  const c = await SmtpClient.connect(gw.port);
  try {
    assert.equal((await c.cmd(`XCLIENT ADDR=203.0.113.${i} NAME=mail${i}.example.net`)).code, 220);
    assert.equal((await c.cmd(`EHLO mail${i}.example.net`)).code, 250);
    assert.equal((await c.cmd('MAIL FROM:<spammer@example.net>')).code, 250);
    const r = await c.cmd('RCPT TO:<victim@elsewhere.example>');
    await c.cmd('QUIT');
    return r.raw;
  } finally {
    c.close();
  }
}

describe('the gateway with metrics_port', () => {
  let sink: SmtpSink;
  let gw: TestGateway;
  let metricsPort: number;
  let url: string;
  const sent = { delivered: 3, held: 1, headerReject: 1, relayDenied: 2 };

  before(async () => {
    sink = await SmtpSink.start({});
    metricsPort = await freePort();
    gw = await startGateway({
      params: {
        ...DELIVERY,
        metrics_port: String(metricsPort),
        transport_maps: 'hash:transport',
        relay_domains: 'relay.test, routed.test',
        smtpd_relay_restrictions: 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
        header_checks: 'regexp:header_checks',
      },
      files: { transport: `routed.test smtp:${sink.nexthop}\n`, header_checks: HEADER_CHECKS },
    });
    url = `http://127.0.0.1:${metricsPort}/metrics`;
    for (let i = 0; i < sent.delivered; i++) assert.equal(await send(gw, `user${i}@routed.test`, `hello ${i}`), 250);
    assert.equal(await send(gw, 'user@routed.test', 'please quarantine this'), 250);
    assert.equal(await send(gw, 'user@routed.test', 'forbidden fruit'), 550);
    for (let i = 0; i < sent.relayDenied; i++) assert.equal(await relayAttempt(gw, i + 1), '554 5.7.1 <victim@elsewhere.example>: Relay access denied');
    await sink.waitForMessages(sent.delivered);
    const sessions = sent.delivered + sent.held + sent.headerReject + sent.relayDenied;
    await waitFor('every decision in the log', () => {
      const log = gw.log();
      return log.filter((r) => r.event === 'deliver').length === sent.delivered && log.filter((r) => r.event === 'disconnect').length === sessions;
    });
  });

  after(async () => {
    await gw?.stop();
    await sink?.stop();
    gw?.cleanup();
  });

  it('listens on inet_interfaces at metrics_port, and says so in the start record', async () => {
    const start = await gw.waitLog((r) => r.event === 'start' && Array.isArray(r.listeners));
    const listeners = start.listeners as Array<{ service: string; host: string; port: number }>;
    assert.deepEqual(
      listeners.filter((l) => l.service === 'metrics'),
      [{ service: 'metrics', host: '127.0.0.1', port: metricsPort }],
    );
    assert.ok(listeningPorts(gw.proc!.pid!).includes(metricsPort));
  });

  it('counts the traffic the test sent (scraped with fetch), matching the decision log', async () => {
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const s = parse(await res.text());
    const accepted = sent.delivered + sent.held;
    const sessions = sent.delivered + sent.held + sent.headerReject + sent.relayDenied;
    assert.equal(total(s, 'greygate_events_total', { event: 'accept', stage: 'end-of-data' }), accepted);
    assert.equal(value(s, 'greygate_events_total', { event: 'hold', stage: 'end-of-data', rule: 'header_checks:2' }), sent.held);
    assert.equal(value(s, 'greygate_events_total', { event: 'reject', stage: 'end-of-data', rule: 'header_checks:1' }), sent.headerReject);
    assert.equal(value(s, 'greygate_events_total', { event: 'reject', stage: 'rcpt', rule: 'reject_unauth_destination' }), sent.relayDenied);
    assert.equal(total(s, 'greygate_events_total', { event: 'reject' }), sent.headerReject + sent.relayDenied);
    assert.equal(total(s, 'greygate_events_total', { event: 'deliver', stage: 'qmgr' }), sent.delivered);
    assert.equal(total(s, 'greygate_events_total', { event: 'connect', stage: 'connect' }), sessions);
    assert.equal(total(s, 'greygate_events_total', { event: 'disconnect' }), sessions);
    assert.equal(total(s, 'greygate_events_total', { event: 'xclient' }), sent.relayDenied);
    // Every record counted once: the metrics agree with the log, event by event.
    const log = gw.log();
    for (const ev of ['connect', 'disconnect', 'xclient', 'reject', 'accept', 'hold', 'deliver', 'relay', 'defer', 'greylist']) {
      assert.equal(total(s, 'greygate_events_total', { event: ev }), log.filter((r) => r.event === ev).length, ev);
    }
    assert.equal(value(s, 'greygate_smtp_replies_total', { code_class: '2xx' }), accepted);
    assert.equal(value(s, 'greygate_smtp_replies_total', { code_class: '5xx' }), sent.headerReject + sent.relayDenied);
    assert.equal(value(s, 'greygate_smtp_replies_total', { code_class: '4xx' }), 0);
    assert.equal(value(s, 'greygate_accepted_recipients_total'), accepted);
    const loggedBytes = log.filter((r) => r.event === 'accept').reduce((a, r) => a + Number(r.size), 0);
    assert.ok(loggedBytes > 0);
    assert.equal(value(s, 'greygate_accepted_bytes_total'), loggedBytes);
    assert.equal(value(s, 'greygate_smtp_transaction_seconds_count', { outcome: 'accept' }), sent.delivered);
    assert.equal(value(s, 'greygate_smtp_transaction_seconds_count', { outcome: 'hold' }), sent.held);
    assert.equal(value(s, 'greygate_smtp_transaction_seconds_count', { outcome: 'reject' }), sent.headerReject);
    assert.equal(value(s, 'greygate_smtp_transaction_seconds_count', { outcome: 'defer' }), 0);
    assert.equal(value(s, 'greygate_smtp_transaction_seconds_bucket', { outcome: 'accept', le: '+Inf' }), sent.delivered);
    assert.ok(value(s, 'greygate_smtp_transaction_seconds_sum', { outcome: 'accept' }) > 0);
    assert.equal(value(s, 'greygate_delivery_seconds_count', { status: 'sent' }), sent.delivered);
    assert.equal(value(s, 'greygate_delivery_seconds_bucket', { status: 'sent', le: '+Inf' }), sent.delivered);
    assert.equal(value(s, 'greygate_delivery_seconds_count', { status: 'bounced' }), 0);
    assert.equal(value(s, 'greygate_queue_messages', { queue: 'hold' }), sent.held);
    for (const q of ['incoming', 'active', 'deferred', 'corrupt']) assert.equal(value(s, 'greygate_queue_messages', { queue: q }), 0, q);
    assert.equal(value(s, 'greygate_smtp_sessions', { service: 'smtpd' }), 0);
    // Process metrics from the same registry.
    assert.ok(value(s, 'process_resident_memory_bytes') > 0);
    assert.ok(s.some((x) => x.name === 'nodejs_eventloop_lag_seconds'));
  });

  it('serves the same counters to curl; HEAD works; other paths are 404', async (t) => {
    const skip = requireTool(CURL);
    if (skip) return t.skip(skip);
    const { stdout } = await run(CURL, ['-sS', '-D', '-', url]);
    const [head, body] = stdout.split('\r\n\r\n', 2) as [string, string];
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head, /\r\ncontent-type: text\/plain; version=0\.0\.4; charset=utf-8\r\n/i);
    const s = parse(body);
    assert.equal(value(s, 'greygate_events_total', { event: 'reject', stage: 'rcpt', rule: 'reject_unauth_destination' }), sent.relayDenied);
    assert.equal(value(s, 'greygate_events_total', { event: 'reject', stage: 'end-of-data', rule: 'header_checks:1' }), sent.headerReject);
    assert.equal(value(s, 'greygate_delivery_seconds_count', { status: 'sent' }), sent.delivered);
    const headOnly = await run(CURL, ['-sS', '-I', url]);
    assert.match(headOnly.stdout, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(headOnly.stdout, /\r\ncontent-length: [1-9]\d*\r\n/i);
    for (const path of ['/', '/metrics.txt', '/favicon.ico']) {
      const r = await run(CURL, ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${metricsPort}${path}`]);
      assert.equal(r.stdout, '404', path);
    }
    const post = await run(CURL, ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '-d', 'x', url]);
    assert.equal(post.stdout, '405');
  });

  it('shows an open SMTP session in greygate_smtp_sessions', async () => {
    const connects = (): number => gw.log().filter((r) => r.event === 'connect').length;
    const before = connects();
    const c = await SmtpClient.connect(gw.port);
    try {
      await c.cmd('EHLO client.example');
      await waitFor('the connect record', () => connects() > before);
      assert.equal(value(parse(await (await fetch(url)).text()), 'greygate_smtp_sessions', { service: 'smtpd' }), 1);
      await c.cmd('QUIT');
    } finally {
      c.close();
    }
    await waitFor('the session to end', async () => value(parse(await (await fetch(url)).text()), 'greygate_smtp_sessions', { service: 'smtpd' }) === 0);
  });

  it('a reload that changes metrics_port warns that it needs a restart, and keeps serving', async () => {
    const other = await freePort();
    gw.writeMainCf({ metrics_port: String(other) });
    gw.signal('SIGHUP');
    const w = await gw.waitLog((r) => typeof r.msg === 'string' && r.msg.includes('metrics_port changed'));
    assert.equal(w.level, 40);
    assert.match(String(w.msg), new RegExp(`metrics_port changed to ${other}: the metrics endpoint changes only on restart`));
    assert.equal((await fetch(url)).status, 200);
    gw.writeMainCf();
    gw.signal('SIGHUP');
    await waitFor('the second reload', () => gw.log().filter((r) => r.event === 'reload' && r.status === 'ok').length >= 2);
  });
});

describe('the gateway without metrics_port', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    await gw?.stop();
    gw?.cleanup();
  });

  it('a metrics_port in use stops the start with one line', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), 'greygate-metrics-busy-'));
    try {
      await assert.rejects(startGateway({ dir, params: { metrics_port: String(port) } }), (err: Error) => {
        assert.match(err.message, new RegExp(`metrics: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
        assert.doesNotMatch(err.message, /\n\s+at /, 'no stack trace');
        return true;
      });
    } finally {
      busy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('metrics_port = 0 (the default) opens nothing', async () => {
    const start = await gw.waitLog((r) => r.event === 'start' && Array.isArray(r.listeners));
    const listeners = start.listeners as Array<{ service: string; port: number }>;
    assert.deepEqual(listeners.map((l) => l.service).sort(), ['smtpd', 'smtps', 'submission']);
    assert.deepEqual(listeningPorts(gw.proc!.pid!), [gw.ports.smtpd, gw.ports.submission, gw.ports.smtps].sort((a, b) => a - b));
  });
});
