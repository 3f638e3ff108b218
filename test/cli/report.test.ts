/**
 * `greygate report` end to end: the real gateway (dist/main.js) takes traffic with known
 * outcomes through real SMTP on loopback (XCLIENT sets the outside client): accepted mail
 * relayed to a loopback sink, relay-denied recipients, header_checks rejects, a greylisted
 * triplet that passes after its retry, one never retried. Then the built CLI reports on the
 * gateway's log: every number of --json comes from the traffic sent here; the text shows
 * them; --since/--until split the period; --html is opened in headless Chromium (screenshot
 * not blank, no console errors, the SVG charts in the DOM, the attacker's strings escaped).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { requireTool, runCli, startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { SmtpSink } from '../helpers/smtp-sink.js';
import type { Report } from '../../src/log/report.js';

const CHROMIUM = '/usr/bin/chromium';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One transaction from IP (XCLIENT); the RCPT reply, and the DATA reply when it got that far. */
async function attempt(gw: TestGateway, ip: string, from: string, to: string, subject = 'hello'): Promise<{ rcpt: number; data?: number; text: string }> {
  const c = await SmtpClient.connect(gw.port);
  try {
    assert.equal((await c.cmd(`XCLIENT ADDR=${ip} NAME=[UNAVAILABLE]`)).code, 220);
    await c.cmd('EHLO client.example');
    assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
    const rcpt = await c.cmd(`RCPT TO:<${to}>`);
    if (rcpt.code !== 250) return { rcpt: rcpt.code, text: rcpt.raw };
    const data = await c.data(`From: <${from}>\r\nTo: <${to}>\r\nSubject: ${subject}\r\n\r\nreport test\r\n`);
    return { rcpt: rcpt.code, data: data.code, text: data.raw };
  } finally {
    c.close();
  }
}

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      res({ code, stdout, stderr });
    });
  });
}

/** PNG size and how much its pixels vary: a blank page inflates to nearly all one byte value. */
function pngInfo(file: string): { width: number; height: number; distinct: number; nonZero: number } {
  const png = readFileSync(file);
  assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  const idat: Buffer[] = [];
  let width = 0;
  let height = 0;
  for (let off = 8; off < png.length; ) {
    const len = png.readUInt32BE(off);
    const type = png.subarray(off + 4, off + 8).toString('latin1');
    const data = png.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const seen = new Set<number>();
  let nonZero = 0;
  for (const b of raw) {
    seen.add(b);
    if (b !== 0) nonZero++;
  }
  return { width, height, distinct: seen.size, nonZero: nonZero / raw.length };
}

describe('greygate report on the gateway\'s own log', () => {
  let sink: SmtpSink;
  let gw: TestGateway;
  let mid = 0;
  let tmp = '';

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'greygate-report-'));
    sink = await SmtpSink.start({});
    gw = await startGateway({
      params: {
        smtpd_relay_restrictions: 'reject_unauth_destination',
        smtpd_recipient_restrictions: 'check_greylist',
        greylist_delay: '1s',
        greylist_whitelist_clients: 'greylist_whitelist',
        header_checks: 'regexp:header_checks',
        master_service_disable: '',
        relayhost: sink.nexthop,
        queue_run_delay: '1s',
        minimal_backoff_time: '1s',
        maximal_backoff_time: '2s',
      },
      files: {
        greylist_whitelist: '192.0.2.0/24\n',
        header_checks: '# spam subjects\n/^Subject:.*(viagra.*)$/ REJECT spam: $1\n',
      },
    });
    // Before `mid`: two relay-denied recipients from one outside client.
    assert.equal((await attempt(gw, '203.0.113.5', "o'neil&co@evil.example", 'x@elsewhere.test')).rcpt, 554);
    assert.equal((await attempt(gw, '203.0.113.5', 'r@evil.example', 'y@elsewhere.test')).rcpt, 554);
    await sleep(150);
    mid = Date.now();
    await sleep(150);
    // Three accepted (the client is on the greylist whitelist).
    for (let i = 1; i <= 3; i++) assert.equal((await attempt(gw, '192.0.2.10', `a${i}@good.example`, `u${i}@relay.test`)).data, 250);
    // Two header_checks rejects whose reply carries the attacker's subject.
    for (let i = 0; i < 2; i++) {
      const r = await attempt(gw, '192.0.2.20', 'spam@bad.example', 'u1@relay.test', 'viagra <script>alert(1)</script>');
      assert.equal(r.data, 550, r.text);
    }
    // A greylisted triplet that passes after the delay, and one never retried.
    assert.equal((await attempt(gw, '198.51.100.10', 'g@grey.example', 'user@relay.test')).rcpt, 450);
    assert.equal((await attempt(gw, '198.51.100.99', 'never@grey.example', 'user@relay.test')).rcpt, 450);
    await sleep(1300);
    assert.equal((await attempt(gw, '198.51.100.10', 'g@grey.example', 'user@relay.test')).data, 250);
    for (const deadline = Date.now() + 20_000; gw.log().filter((x) => x.event === 'deliver').length < 4; await sleep(100)) {
      if (Date.now() > deadline) throw new Error(`not delivered: ${readFileSync(gw.logFile, 'utf8')}`);
    }
    await gw.stop();
  });

  after(async () => {
    await gw?.stop();
    await sink?.stop();
    gw?.cleanup();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  async function reportJson(...args: string[]): Promise<Report> {
    const r = await gw.cli(['report', '--json', ...args]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    return JSON.parse(r.stdout) as Report;
  }

  it('--json: every number from the traffic sent', async () => {
    const r = await reportJson();
    const t = r.totals;
    assert.equal(t.connections, 10);
    assert.equal(t.received, 4);
    assert.equal(t.rejected, 4);
    assert.equal(t.deferred, 0);
    assert.equal(t.greylisted, 2);
    assert.equal(t.greylistedTriplets, 2);
    assert.equal(t.discarded, 0);
    assert.equal(t.held, 0);
    assert.equal(t.delivered, 4);
    assert.equal(t.bounced, 0);
    assert.equal(t.senders, 4);
    assert.equal(t.sendingHosts, 2);
    assert.equal(t.recipients, 4);
    const sizes = gw.log().filter((x) => x.event === 'accept').map((x) => x.size as number);
    assert.equal(sizes.length, 4);
    assert.equal(t.bytesReceived, sizes.reduce((a, b) => a + b, 0));
    assert.ok(t.bytesReceived > 4 * 60);
    assert.equal(t.bytesDelivered, t.bytesReceived);
    const share = Object.fromEntries(r.verdicts.map((v) => [v.verdict, v.percent]));
    // SMTP decisions: 4 received + 4 rejected + 2 greylisted.
    assert.equal(share.received, 40);
    assert.equal(share.rejected, 40);
    assert.equal(share.greylisted, 20);
    assert.equal(share.delivered, 100);

    assert.deepEqual(
      r.rejects.map((g) => [g.stage, g.rule, g.count, g.deferred, g.clients, g.code]),
      [
        ['end-of-data', 'header_checks:2', 2, 0, 1, 550],
        ['rcpt', 'reject_unauth_destination', 2, 0, 1, 554],
      ],
    );
    assert.equal(r.rejects[0]!.reply, '550 5.7.1 spam: viagra <script>alert(1)</script>');
    assert.equal(r.rejects[1]!.reply, '554 5.7.1 <y@elsewhere.test>: Relay access denied');
    assert.deepEqual(r.topRejected.clients, [
      { name: '192.0.2.20', count: 2 },
      { name: '203.0.113.5', count: 2 },
    ]);
    assert.deepEqual(r.topRejected.senders, [
      { name: 'spam@bad.example', count: 2 },
      { name: "o'neil&co@evil.example", count: 1 },
      { name: 'r@evil.example', count: 1 },
    ]);
    assert.deepEqual(r.topRejected.recipients, [
      { name: 'u1@relay.test', count: 2 },
      { name: 'x@elsewhere.test', count: 1 },
      { name: 'y@elsewhere.test', count: 1 },
    ]);

    const g = r.greylist;
    assert.equal(g.replies, 2);
    assert.equal(g.triplets, 2);
    assert.equal(g.passed, 1);
    assert.equal(g.passedTriplets, 1);
    assert.equal(g.neverRetried, 1);
    assert.equal(g.passRate, 50);
    assert.ok(g.delay && g.delay.min >= 1 && g.delay.max <= 10, JSON.stringify(g.delay));
    assert.equal(g.delayBuckets[0]!.count, 1);
    assert.equal(g.whitelistHits, 5);
    assert.equal(g.awlHits, 0);

    // Per hour: the rows add up to the totals (the run may straddle an hour).
    assert.equal(r.perHour.unit, 'hour');
    const sum = (k: 'received' | 'rejected' | 'greylisted' | 'delivered'): number => r.perHour.rows.reduce((n, x) => n + x[k], 0);
    assert.deepEqual([sum('received'), sum('rejected'), sum('greylisted'), sum('delivered')], [4, 4, 2, 4]);
    assert.deepEqual(r.deliveries.map((d) => [d.relay, d.delivered, d.deferred, d.bounced, d.bytes]), [[`127.0.0.1[127.0.0.1]:${sink.port}`, 4, 0, 0, t.bytesReceived]]);
  });

  it('--since and --until split the period', async () => {
    const at = new Date(mid).toISOString();
    const before = await reportJson('--until', at);
    assert.deepEqual([before.totals.connections, before.totals.rejected, before.totals.received, before.totals.greylisted], [2, 2, 0, 0]);
    assert.equal(before.period.until, at);
    const afterMid = await reportJson('--since', at);
    assert.deepEqual([afterMid.totals.connections, afterMid.totals.rejected, afterMid.totals.received, afterMid.totals.greylisted, afterMid.totals.delivered], [8, 2, 4, 2, 4]);
    assert.deepEqual(afterMid.rejects.map((g) => g.rule), ['header_checks:2']);
    const recent = await reportJson('--since', '1h');
    assert.equal(recent.totals.received, 4);
    const future = await reportJson('--since', new Date(Date.now() + 3_600_000).toISOString());
    assert.equal(future.records, 0);
  });

  it('text: the pflogsumm-style sections show the same numbers', async () => {
    const r = await gw.cli(['report', '--top', '5']);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout;
    assert.match(text, /^Grand Totals$/m);
    assert.match(text, /^ +4 {3}received +40\.0%$/m);
    assert.match(text, /^ +4 {3}rejected \(5xx\) +40\.0%$/m);
    assert.match(text, /^ +2 {3}greylisted \(2 triplets\) +20\.0%$/m);
    assert.match(text, /^ +4 {3}delivered +100\.0%$/m);
    assert.match(text, /^ +10 {3}connections$/m);
    assert.match(text, /^Per-Hour Traffic Summary$/m);
    assert.match(text, /^ +2 +50\.0% +0 +1 +end-of-data +header_checks:2 +550 5\.7\.1 spam: viagra <script>alert\(1\)<\/script>$/m);
    assert.match(text, /^ +2 +50\.0% +0 +1 +rcpt +reject_unauth_destination +554 5\.7\.1 <y@elsewhere\.test>: Relay access denied$/m);
    assert.match(text, /^Top rejected clients\n-+\n +2 {3}192\.0\.2\.20\n +2 {3}203\.0\.113\.5\n/m);
    assert.match(text, /^ +1 {3}passed after retry \(50\.0% of the triplets greylisted\)$/m);
    assert.match(text, /^ +1 {3}never retried$/m);
    assert.match(text, /^ +5 {3}whitelist passes$/m);
  });

  it('--file: named files and stdin, lines that are not records counted on stderr', async () => {
    const copy = join(tmp, 'copy.log');
    appendFileSync(copy, readFileSync(gw.logFile));
    appendFileSync(copy, 'this is not JSON\n{"event":"accept","no":"time"}\n');
    const r = await gw.cli(['report', '--json', '--file', copy]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as Report).totals.received, 4);
    assert.equal(r.stderr, 'greygate report: warning: 2 line(s) that are not JSON records were skipped\n');
    const s = await gw.cli(['report', '--json', '--file', '-'], readFileSync(gw.logFile, 'utf8'));
    assert.equal(s.code, 0, s.stderr);
    assert.equal((JSON.parse(s.stdout) as Report).totals.rejected, 4);
  });

  it('no log yet: a warning and an empty report; --html - writes the page to stdout', async () => {
    const conf = join(tmp, 'conf');
    mkdirSync(conf);
    writeFileSync(join(conf, 'main.cf'), `data_directory = ${join(tmp, 'data')}\nmaillog_file = ${join(tmp, 'none', 'mail.log')}\n`);
    const r = await runCli(['report', '-c', conf]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `greygate report: warning: no log file ${join(tmp, 'none', 'mail.log')} yet: the report is empty\n`);
    assert.match(r.stdout, /^greygate report: no records/);
    const h = await runCli(['report', '--html', '-', '-c', conf]);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /^<!doctype html>[\s\S]*no traffic in the period[\s\S]*<\/html>\n$/);
  });

  it('--jobs 2 (two threads, each half of the log, merged) gives the same report as --jobs 1', async () => {
    // Three copies end to end, so the cut falls inside a file and sessions repeat across it.
    const copy = join(tmp, 'thrice.log');
    for (let i = 0; i < 3; i++) appendFileSync(copy, readFileSync(gw.logFile));
    const one = await gw.cli(['report', '--json', '--jobs', '1', '--file', copy]);
    const two = await gw.cli(['report', '--json', '--jobs', '2', '--file', copy]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(two.code, 0, two.stderr);
    assert.deepEqual(JSON.parse(two.stdout), JSON.parse(one.stdout));
    assert.equal((JSON.parse(two.stdout) as Report).totals.received, 12);
  });

  it('bad arguments: one line on stderr, exit 2', async () => {
    for (const args of [['--top', 'x'], ['--bogus'], ['--since', '5q'], ['--file', join(tmp, 'missing.log')], ['--since', '1h', '--until', '2h'], ['extra'], ['--html'], ['--jobs', '3']]) {
      const r = await gw.cli(['report', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^greygate: [^\n]+\n$/, args.join(' '));
    }
  });

  it('--html: a self-contained page, rendered by headless Chromium', async (t) => {
    const html = join(tmp, 'report.html');
    const r = await gw.cli(['report', '--html', html]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    const page = readFileSync(html, 'utf8');
    // The attacker's strings are text, never markup.
    assert.doesNotMatch(page, /<script/i);
    assert.match(page, /spam: viagra &lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(page, /o&#39;neil&amp;co@evil\.example/);
    assert.doesNotMatch(page, /https?:\/\/|<link|<img|url\(/);

    const skip = requireTool(CHROMIUM);
    if (skip) return t.skip(skip);
    const png = join(tmp, 'report.png');
    const shot = await run(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--enable-logging=stderr', '--v=0', `--screenshot=${png}`, '--window-size=1200,2000', `file://${html}`]);
    assert.equal(shot.code, 0, shot.stderr);
    assert.ok(existsSync(png) && statSync(png).size > 20_000, 'screenshot written');
    assert.doesNotMatch(shot.stderr, /Uncaught|CONSOLE/);
    const info = pngInfo(png);
    assert.deepEqual([info.width, info.height], [1200, 2000]);
    assert.ok(info.distinct > 50 && info.nonZero > 0.02, `screenshot looks blank: ${JSON.stringify(info)}`);

    const dom = await run(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--dump-dom', `file://${html}`]);
    assert.equal(dom.code, 0, dom.stderr);
    for (const id of ['chart-volume', 'chart-rules', 'chart-delay']) assert.match(dom.stdout, new RegExp(`<svg [^>]*id="${id}"`), id);
    // Volume: a received bar (4 accepted) and a rejected bar; rules: two bars; delay: one bar.
    assert.ok((dom.stdout.match(/<rect class="s-received"/g) ?? []).length >= 1);
    assert.ok((dom.stdout.match(/<rect class="s-rejected"/g) ?? []).length >= 3);
    assert.equal((dom.stdout.match(/<rect class="s-bar"/g) ?? []).length, 1);
    assert.doesNotMatch(dom.stdout, /<script/i);
  });
});
