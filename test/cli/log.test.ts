/**
 * @module test/cli/log
 * SUMMARY: `greygate log` against the real gateway's decision log: the test sends SMTP
 * traffic with known outcomes (client, sender and relay rejects, a header_checks reject,
 * greylisting, accepted mail; external clients through XCLIENT), stops the gateway and runs
 * the built CLI (dist/main.js, TZ=UTC): every filter returns exactly the records that
 * traffic made, in text (checked field by field) and --json (the log's own lines), rotated
 * files are read oldest first, and bad input gives one line and exit 2 (usage) or 1 (no
 * log). Also: `greygate log | head -1` stops quietly (EPIPE), output goes out in large
 * writes, and --file - reads stdin.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { run } from '../../src/cli/log.js';
import type { CliIO } from '../../src/cli/io.js';
import { MAIN, requireTool, runCli, startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

const FILES = {
  clients: '203.0.113.9/32 REJECT go away\n',
  senders: 'spam@bad.example REJECT no spammers\n',
  header_checks: '/^Subject: .*viagra/ REJECT spam subject\n',
};

const PARAMS = {
  smtpd_client_restrictions: 'check_client_access cidr:clients',
  smtpd_sender_restrictions: 'check_sender_access texthash:senders',
  smtpd_relay_restrictions: 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
  smtpd_recipient_restrictions: 'permit_mynetworks, check_greylist',
  header_checks: 'regexp:header_checks',
  greylist_delay: '1h',
};

/** One SMTP transaction as client IP; the RCPT reply code, and the DATA reply's if accepted. */
async function send(gw: TestGateway, ip: string, from: string, to: string, subject = 'hello'): Promise<number[]> {
  const c = await SmtpClient.connect(gw.port);
  try {
    assert.equal((await c.cmd(`XCLIENT ADDR=${ip} NAME=host.example`)).code, 220);
    await c.cmd('EHLO sender.example');
    assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
    const rcpt = await c.cmd(`RCPT TO:<${to}>`);
    if (rcpt.code !== 250) return [rcpt.code];
    const data = await c.data(`Subject: ${subject}\r\n\r\nbody\r\n`);
    return [rcpt.code, data.code];
  } finally {
    await c.cmd('QUIT').catch(() => undefined);
    c.close();
  }
}

describe('greygate log on the gateway decision log', () => {
  let gw: TestGateway;
  let logLines: string[];

  /** The built CLI on this gateway's config, in UTC. */
  const cli = (args: string[], input?: string) => runCli(['log', ...args, '-c', gw.configDir], { cwd: gw.dir, env: { TZ: 'UTC' }, ...(input !== undefined ? { input } : {}) });
  /** Output lines of a successful run. */
  const lines = async (args: string[]): Promise<string[]> => {
    const r = await cli(args);
    assert.equal(r.stderr, '', `stderr of log ${args.join(' ')}`);
    assert.equal(r.code, 0);
    return r.stdout.split('\n').filter((l) => l !== '');
  };

  before(async () => {
    gw = await startGateway({ params: PARAMS, files: FILES });
    try {
      for (const n of [1, 2, 3]) assert.deepEqual(await send(gw, '203.0.113.9', 'a@b.example', `u${n}@relay.test`), [554]);
      for (const n of [1, 2]) assert.deepEqual(await send(gw, '198.51.100.1', 'spam@bad.example', `v${n}@relay.test`), [554]);
      for (const n of [1, 2]) assert.deepEqual(await send(gw, '198.51.100.2', `ok${n}@good.example`, 'x@other.example'), [554]);
      assert.deepEqual(await send(gw, '127.0.0.1', 'ok@good.example', 'w@relay.test', 'cheap viagra'), [250, 550]);
      for (const n of [1, 2]) assert.deepEqual(await send(gw, '198.51.100.3', `grey${n}@good.example`, 'g@relay.test'), [450]);
      for (const n of [1, 2, 3]) assert.deepEqual(await send(gw, '127.0.0.1', 'ok@good.example', `ok${n}@relay.test`), [250, 250]);
    } finally {
      await gw.stop();
    }
    logLines = readFileSync(gw.logFile, 'utf8').split('\n').filter((l) => l !== '');
  });
  after(() => gw?.cleanup());

  // What the traffic above must have left, filter by filter.
  const counts: Array<{ args: string[]; n: number; each?: RegExp }> = [
    { args: ['--event', 'reject'], n: 8, each: / reject {5}(rcpt|end-of-data) / },
    { args: ['--event', 'defer'], n: 2, each: /: 450 4\.2\.0 <g@relay\.test>: Recipient address rejected: Greylisted.* \[rule check_greylist\]$/ },
    { args: ['--event', 'greylist'], n: 2, each: /: greylist: new, retry in \d+s \[rule check_greylist\]$/ },
    { args: ['--event=accept'], n: 3, each: /: 250 2\.0\.0 Ok: queued as / },
    { args: ['--event', 'reject,defer'], n: 10 },
    { args: ['--event', 'reject', '--event', 'defer'], n: 10 },
    { args: ['--event', 'reject', '--client', '203.0.113.9'], n: 3, each: /\[rule clients:1\]$/ },
    { args: ['--event', 'reject', '--client', '198.51.100.0/24'], n: 4 },
    { args: ['--event', 'reject', '--sender', 'SPAM@bad.example'], n: 2, each: /Sender address rejected: no spammers \[rule senders:1\]$/ },
    { args: ['--event', 'reject', '--from', '@good.example'], n: 3 },
    { args: ['--event', 'reject', '--recipient', 'x@other.example'], n: 2, each: /: 554 5\.7\.1 <x@other\.example>: Relay access denied \[rule reject_unauth_destination\]$/ },
    { args: ['--to', '@relay.test', '--event', 'reject'], n: 6 },
    { args: ['--rule', 'clients:'], n: 3 },
    { args: ['--rule', 'header_checks:1'], n: 1, each: / reject {5}end-of-data [0-9A-F]+ +host\.example\[127\.0\.0\.1\] <ok@good\.example> -> <w@relay\.test>: 550 5\.7\.1 spam subject \[rule header_checks:1\]$/ },
    { args: ['--rule', 'unauth'], n: 2 },
    { args: ['--client', '198.51.100.3', '--event', 'greylist,defer'], n: 4 },
    { args: ['--since', '1h', '--event', 'reject'], n: 8 },
    { args: ['--since', 'yesterday', '--until', 'now', '--event', 'reject'], n: 8 },
    { args: ['--until', '1h', '--event', 'reject'], n: 0 },
  ];
  for (const c of counts) {
    it(`log ${c.args.join(' ')} -> ${c.n} records`, async () => {
      const out = await lines(c.args);
      assert.equal(out.length, c.n, out.join('\n'));
      if (c.each) for (const l of out) assert.match(l, c.each);
    });
  }

  it('prints one readable line per decision: time, event, stage, queue ID, client, envelope, reply, rule', async () => {
    const recs = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const first = recs.find((r) => r.event === 'reject')!;
    const d = new Date(first.time as string);
    const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
    const two = (n: number) => String(n).padStart(2, '0');
    const stamp = `${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
    const out = await lines(['--event', 'reject', '--client', '203.0.113.9']);
    assert.equal(out[0], `${stamp} reject     rcpt        NOQUEUE     host.example[203.0.113.9] <a@b.example> -> <u1@relay.test>: 554 5.7.1 <host.example[203.0.113.9]>: Client host rejected: go away [rule clients:1]`);
    // Every record, decisions and the rest, one line each; connect lines name the client only.
    const all = await lines([]);
    assert.equal(all.length, logLines.length);
    assert.ok(all.some((l) => / connect {4}connect {5}NOQUEUE {5}localhost\[127\.0\.0\.1\]$/.test(l)), all.join('\n'));
    assert.ok(all.some((l) => / start {6}- {11}- {11}greygate started: /.test(l)), all.join('\n'));
  });

  it('--json prints the log lines themselves', async () => {
    const out = await lines(['--json', '--event', 'reject,greylist']);
    const want = logLines.filter((l) => {
      const ev = (JSON.parse(l) as { event: string }).event;
      return ev === 'reject' || ev === 'greylist';
    });
    assert.equal(want.length, 10);
    assert.deepEqual(out, want);
  });

  it('reads rotated logs first (mail.log.1 before mail.log) and --file instead of them', async () => {
    const old = JSON.stringify({ level: 30, time: '2026-01-02T03:04:05.000Z', event: 'reject', stage: 'rcpt', session: 'old', client_ip: '192.0.2.1', from: 'o@old.example', to: 'u@relay.test', code: 554, status: '5.7.1', reply: '554 5.7.1 old', rule: 'old:1' });
    writeFileSync(`${gw.logFile}.1`, `${old}\n`);
    try {
      const out = await lines(['--event', 'reject']);
      assert.equal(out.length, 9);
      assert.match(out[0]!, /^Jan {2}2 03:04:05 reject .* \[rule old:1\]$/);
      assert.equal((await lines(['--event', 'reject', '--file', gw.logFile])).length, 8);
      assert.equal((await lines(['--event', 'reject', `--file=${gw.logFile}.1`, '--file', gw.logFile])).length, 9);
      // --file - reads stdin.
      const r = await cli(['--json', '--file', '-'], `${old}\nnot a record\n`);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, `${old}\n`);
      assert.equal(r.stderr, 'greygate log: warning: skipped 1 line that is not a log record\n');
    } finally {
      rmSync(`${gw.logFile}.1`, { force: true });
    }
  });

  const usage: Array<{ args: string[]; err: RegExp }> = [
    { args: ['--bogus'], err: /^greygate: unknown option: --bogus; usage: greygate log / },
    { args: ['--since', '2x'], err: /^greygate: bad time "2x": expected a duration/ },
    { args: ['--until', '2026-02-30'], err: /^greygate: bad time "2026-02-30"/ },
    { args: ['--since', '1h', '--until', '2h'], err: /^greygate: --since must be earlier than --until\n$/ },
    { args: ['--client', '192.0.2.0/33'], err: /^greygate: bad client address or CIDR block: "192\.0\.2\.0\/33"/ },
    { args: ['--client', 'mail.example.com'], err: /^greygate: bad client address or CIDR block/ },
    { args: ['--event', 'rejects'], err: /^greygate: unknown event "rejects" \(known: connect, disconnect, reject, / },
    { args: ['--event'], err: /^greygate: option --event requires a value/ },
    { args: ['mail.log'], err: /^greygate: unexpected argument "mail\.log" \(log files are named with --file PATH\)/ },
    { args: ['--client', '1.2.3.4/40', '--file', '/nonexistent/mail.log'], err: /^greygate: bad client address/ },
  ];
  for (const c of usage) {
    it(`log ${c.args.join(' ')}: one line, exit 2`, async () => {
      const r = await cli(c.args);
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, c.err);
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
    });
  }

  it('a missing log file: one line, exit 1', async () => {
    const r = await cli(['--file', '/nonexistent/mail.log']);
    assert.deepEqual([r.code, r.stdout, r.stderr], [1, '', 'greygate: /nonexistent/mail.log: cannot read the log: no such file\n']);
    const conf = mkdtempSync(join(tmpdir(), 'gg-cli-log-'));
    try {
      writeFileSync(join(conf, 'main.cf'), `maillog_file = ${join(conf, 'nope', 'mail.log')}\n`);
      const r2 = await runCli(['log', '-c', conf]);
      assert.deepEqual([r2.code, r2.stdout], [1, '']);
      assert.equal(r2.stderr, `greygate: ${join(conf, 'nope', 'mail.log')}: no such log file (maillog_file); name another with --file PATH\n`);
      writeFileSync(join(conf, 'main.cf'), 'maillog_file =\n');
      const r3 = await runCli(['log', '-c', conf]);
      assert.equal(r3.code, 1);
      assert.match(r3.stderr, /^greygate: .*main\.cf:1: maillog_file is empty/);
    } finally {
      rmSync(conf, { recursive: true, force: true });
    }
  });

  it('--help prints the usage and exits 0', async () => {
    const r = await cli(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^usage: greygate log /);
  });
});

describe('greygate log output', () => {
  let dir: string;
  let big: string;
  const N = 30_000;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gg-cli-log-out-'));
    big = join(dir, 'mail.log');
    const t0 = Date.parse('2026-11-25T00:00:00Z');
    const out: string[] = [];
    for (let i = 0; i < N; i++) {
      out.push(JSON.stringify({ level: 30, time: new Date(t0 + i * 100).toISOString(), event: 'reject', stage: 'rcpt', session: `s${i}`, client_ip: '192.0.2.1', client_name: 'unknown', from: `a${i}@example.com`, to: 'u@relay.test', code: 554, status: '5.7.1', reply: '554 5.7.1 <u@relay.test>: Relay access denied', rule: 'reject_unauth_destination' }));
    }
    writeFileSync(big, out.join('\n') + '\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('goes out in large writes, not one per line', async () => {
    let calls = 0;
    let text = '';
    const io: CliIO = { configDir: dir, stdin: Readable.from([]), out: (t) => { calls++; text += t; }, err: (t) => assert.fail(t) };
    assert.equal(await run(['--file', big, '--event', 'reject'], io), 0);
    assert.equal(text.split('\n').length - 1, N);
    assert.ok(calls <= 40, `${calls} writes for ${N} lines`);
  });

  it('stops quietly when its reader goes away (greygate log | head -1)', (t) => {
    const skip = requireTool('/usr/bin/head') ?? requireTool('/bin/bash');
    if (skip) return t.skip(skip);
    for (const json of ['', '--json']) {
      const r = spawnSync('/bin/bash', ['-c', `"${process.execPath}" "${MAIN}" log ${json} --file "${big}" --file "${big}" --file "${big}" | head -1; echo "status=\${PIPESTATUS[0]}"`], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, TZ: 'UTC' } });
      assert.equal(r.stderr, '', `stderr with ${json || 'text'}`);
      const [first, status] = r.stdout.trim().split('\n');
      assert.match(first!, json ? /^\{"level":30/ : /^Nov 25 00:00:00 reject /);
      assert.equal(status, 'status=0');
    }
  });
});
