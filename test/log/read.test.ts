/**
 * @module test/log/read
 * SUMMARY: log/read.ts on real files in a temp dir: every filter (event, since/until,
 * client exact/CIDR v4/v6, sender/recipient exact/@domain/<>, rule prefix/line/substring),
 * lines that are not records (counted as bad, never thrown), lines without `event` (only
 * with `all`), CRLF, lines and UTF-8 sequences split across read chunks and stream pieces,
 * lines longer than the read buffer and than the line limit, time-window chunk skipping on
 * a multi-chunk log checked against a plain filter, rotated files (numbered, .gz, dated),
 * stdin, abort, and parseTimeArg's accepted and refused spellings.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { ConfigError, UsageError } from '../../src/errors.js';
import { configFromText } from '../../src/config/config.js';
import { logFilesFor, parseTimeArg, readLog, readLogRanges, type LogFilter, type LogRecord, type ReadStats } from '../../src/log/read.js';
import { mulberry32 } from '../helpers/prng.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-log-read-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const T0 = Date.parse('2026-11-25T10:00:00.000Z');

/** A line as the logger writes it: level, time, then the record's own fields. */
function line(ms: number, fields: Record<string, unknown>): string {
  return JSON.stringify({ level: 30, time: new Date(ms).toISOString(), ...fields });
}

let fileNo = 0;
function file(lines: readonly string[], eol = '\n'): string {
  const p = join(dir, `log-${++fileNo}.log`);
  writeFileSync(p, lines.join(eol) + eol);
  return p;
}

async function read(paths: string[], filter: LogFilter = {}, opts: Parameters<typeof readLog>[3] = {}): Promise<{ recs: LogRecord[]; times: number[]; raw: string[]; stats: ReadStats }> {
  const recs: LogRecord[] = [];
  const times: number[] = [];
  const raw: string[] = [];
  const stats = await readLog(paths, filter, (r, ms, l) => {
    recs.push(r);
    times.push(ms);
    raw.push(l);
  }, opts);
  return { recs, times, raw, stats };
}

// A small mail log: the fields and values the gateway writes.
const SAMPLE = [
  line(T0, { event: 'start', msg: 'greygate started' }),
  line(T0 + 1000, { event: 'connect', stage: 'connect', session: 's1', client_ip: '203.0.113.9', client_name: 'bad.example', msg: 'connect from bad.example[203.0.113.9]' }),
  line(T0 + 2000, { event: 'reject', stage: 'rcpt', session: 's1', client_ip: '203.0.113.9', client_name: 'bad.example', helo: 'x', from: 'Spam@Bad.Example', to: 'u@relay.test', code: 554, status: '5.7.1', reply: '554 5.7.1 <bad.example[203.0.113.9]>: Client host rejected: go away', rule: 'clients:1' }),
  line(T0 + 3000, { event: 'reject', stage: 'rcpt', session: 's2', client_ip: '198.51.100.7', client_name: 'unknown', from: 'a@good.example', to: 'x@other.example', code: 554, status: '5.7.1', reply: '554 5.7.1 <x@other.example>: Relay access denied', rule: 'reject_unauth_destination' }),
  line(T0 + 4000, { event: 'defer', stage: 'rcpt', session: 's3', client_ip: '198.51.100.8', from: 'a@good.example', to: 'u@relay.test', code: 450, status: '4.2.0', reply: '450 4.2.0 <u@relay.test>: Recipient address rejected: Greylisted', rule: 'check_greylist' }),
  line(T0 + 5000, { event: 'reject', stage: 'end-of-data', session: 's4', queue_id: 'ABC123', client_ip: '2001:db8::25', from: '', to: 'u@relay.test', code: 550, status: '5.7.1', reply: '550 5.7.1 spam', rule: '/etc/greygate/header_checks:12' }),
  line(T0 + 6000, { event: 'accept', stage: 'end-of-data', session: 's5', queue_id: 'DEF456', client_ip: '::ffff:192.0.2.10', from: 'b@Good.Example', to: ['one@greygate.test', 'Two@GreyGate.test'], code: 250 }),
  line(T0 + 7000, { event: 'reject', stage: 'rcpt', session: 's6', client_ip: '192.0.2.77', from: 'c@x.good.example', to: 'u@relay.test', code: 554, status: '5.7.1', reply: '554 5.7.1 Service unavailable; Client host [192.0.2.77] blocked using zen.spamhaus.org', rule: 'reject_rbl_client zen.spamhaus.org' }),
  line(T0 + 8000, { event: 'reject', stage: 'end-of-data', session: 's7', queue_id: 'GHI789', client_ip: '192.0.2.78', from: 'd@y.example', to: 'u@relay.test', code: 550, status: '5.7.1', reply: '550 5.7.1 spam', rule: 'mime_header_checks:3' }),
  line(T0 + 9000, { event: 'deliver', stage: 'qmgr', queue_id: 'DEF456', from: 'b@Good.Example', to: 'one@greygate.test', relay: 'local', dsn: '2.0.0', status: 'sent' }),
];

describe('readLog filters', () => {
  let sample: string;
  before(() => {
    sample = file(SAMPLE);
  });

  const cases: Array<{ name: string; filter: LogFilter; sessions: Array<string | undefined> }> = [
    { name: 'no filter: every record with an event', filter: {}, sessions: [undefined, 's1', 's1', 's2', 's3', 's4', 's5', 's6', 's7', undefined] },
    { name: 'one event', filter: { events: new Set(['reject']) }, sessions: ['s1', 's2', 's4', 's6', 's7'] },
    { name: 'two events, in log order', filter: { events: new Set(['defer', 'accept', 'connect']) }, sessions: ['s1', 's3', 's5'] },
    { name: 'an event nobody logged', filter: { events: new Set(['hold']) }, sessions: [] },
    { name: 'since is inclusive, until exclusive', filter: { since: T0 + 3000, until: T0 + 6000 }, sessions: ['s2', 's3', 's4'] },
    { name: 'since with events', filter: { since: T0 + 4000, events: new Set(['reject']) }, sessions: ['s4', 's6', 's7'] },
    { name: 'client exact v4', filter: { client: '203.0.113.9' }, sessions: ['s1', 's1'] },
    { name: 'client exact v4 matches ::ffff: form', filter: { client: '192.0.2.10' }, sessions: ['s5'] },
    { name: 'client CIDR v4', filter: { client: '192.0.2.0/24' }, sessions: ['s5', 's6', 's7'] },
    { name: 'client CIDR with host bits', filter: { client: '192.0.2.77/31' }, sessions: ['s6'] },
    { name: 'client /0', filter: { client: '0.0.0.0/0', events: new Set(['reject']) }, sessions: ['s1', 's2', 's6', 's7'] },
    { name: 'client exact v6 (another spelling)', filter: { client: '2001:0db8:0:0::25' }, sessions: ['s4'] },
    { name: 'client CIDR v6', filter: { client: '2001:db8::/32' }, sessions: ['s4'] },
    { name: 'sender exact, case-insensitive', filter: { sender: 'spam@bad.example' }, sessions: ['s1'] },
    { name: 'sender in angle brackets', filter: { sender: '<SPAM@bad.example>' }, sessions: ['s1'] },
    { name: 'sender @domain: that domain, not its subdomains', filter: { sender: '@good.example' }, sessions: ['s2', 's3', 's5', undefined] },
    { name: 'null sender', filter: { sender: '<>' }, sessions: ['s4'] },
    { name: 'recipient exact in an array', filter: { recipient: 'two@greygate.test' }, sessions: ['s5'] },
    { name: 'recipient @domain', filter: { recipient: '@other.example' }, sessions: ['s2'] },
    { name: 'rule prefix ending in ":" (a file, with or without directory)', filter: { rule: 'header_checks:' }, sessions: ['s4'] },
    { name: 'rule FILE:LINE', filter: { rule: 'header_checks:12' }, sessions: ['s4'] },
    { name: 'rule FILE:LINE is not a prefix of a longer number', filter: { rule: 'header_checks:1' }, sessions: [] },
    { name: 'rule substring', filter: { rule: 'spamhaus' }, sessions: ['s6'] },
    { name: 'rule exact restriction name', filter: { rule: 'reject_unauth_destination' }, sessions: ['s2'] },
    { name: 'filters combine', filter: { events: new Set(['reject']), sender: '@good.example', client: '198.51.100.0/24' }, sessions: ['s2'] },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { recs, stats } = await read([sample], c.filter);
      assert.deepEqual(recs.map((r) => r.session), c.sessions);
      assert.equal(stats.matched, c.sessions.length);
      assert.equal(stats.lines, SAMPLE.length);
      assert.equal(stats.bad, 0);
    });
  }

  it('many events (one pass reading each line\'s event) find what few events (byte searches) find', async () => {
    const wanted = ['reject', 'accept', 'defer', 'deliver', 'hold', 'greylist'];
    const many = await read([sample], { events: new Set(wanted) });
    assert.deepEqual(many.recs.map((r) => r.session), ['s1', 's2', 's3', 's4', 's5', 's6', 's7', undefined]);
    const few: string[] = [];
    for (let i = 0; i < wanted.length; i += 3) few.push(...(await read([sample], { events: new Set(wanted.slice(i, i + 3)) })).raw);
    assert.deepEqual(few.sort(), [...many.raw].sort());
  });

  it('the raw-text tests before JSON.parse never lose a record spelled another way', async () => {
    const t = '"level":30,"time":"2026-11-25T10:00:00.000Z","event":"reject"';
    const p = file([
      `{${t},"session":"blanks","client_ip" : "192.0.2.5","from": "A@B.example","to": [ "x@y.example" ],"rule" : "header_checks:3"}`,
      `{${t},"session":"escaped","client_ip":"192.0.2.6","from":"we\\"ird@b.example","to":["q@y.example","x@y.example"],"rule":"/etc/we\\"ird/header_checks:3"}`,
      `{${t},"session":"value-first","msg":"from","client_ip":"192.0.2.7","from":"a@b.example","to":"x@y.example","rule":"header_checks:3"}`,
      `{${t},"session":"nested-first","note":{"from":"z@z.example","client_ip":"10.0.0.1"},"client_ip":"192.0.2.8","from":"a@b.example","to":["x@y.example"],"rule":"header_checks:3"}`,
      `{${t},"session":"nested-only","note":{"from":"a@b.example","client_ip":"192.0.2.9","to":"x@y.example","rule":"header_checks:3"},"client_ip":"10.0.0.2","from":"c@d.example","to":"w@y.example","rule":"other:1"}`,
      `{${t},"session":"none"}`,
      `{${t},"session":"empty-array","client_ip":"192.0.2.10","to":[]}`,
    ]);
    const sessions = async (filter: LogFilter) => (await read([p], filter)).recs.map((r) => r.session);
    assert.deepEqual(await sessions({ client: '192.0.2.0/24' }), ['blanks', 'escaped', 'value-first', 'nested-first', 'empty-array']);
    assert.deepEqual(await sessions({ sender: '@b.example' }), ['blanks', 'escaped', 'value-first', 'nested-first']);
    assert.deepEqual(await sessions({ sender: 'we"ird@b.example' }), ['escaped']);
    assert.deepEqual(await sessions({ recipient: 'x@y.example' }), ['blanks', 'escaped', 'value-first', 'nested-first']);
    assert.deepEqual(await sessions({ rule: 'header_checks:' }), ['blanks', 'escaped', 'value-first', 'nested-first']);
    assert.deepEqual(await sessions({ client: '10.0.0.1' }), []);
  });

  it('decides on the top-level event, whatever a nested object holds', async () => {
    const p = file([
      '{"level":30,"time":"2026-11-25T10:00:00.000Z","note":{"event":"reject"},"event":"accept","session":"a"}',
      '{"level":30,"time":"2026-11-25T10:00:01.000Z","note":{"event":"connect"},"event":"reject","session":"b"}',
      '{"level":30,"time":"2026-11-25T10:00:02.000Z","event":"connect","note":{"event":"reject"},"session":"c"}',
    ]);
    for (const events of [['reject'], ['reject', 'hold'], ['reject', 'hold', 'bounce', 'expire']]) {
      assert.deepEqual((await read([p], { events: new Set(events) })).recs.map((r) => r.session), ['b'], events.join());
    }
    const both = ['reject', 'accept', 'hold', 'bounce'];
    assert.deepEqual((await read([p], { events: new Set(both) })).recs.map((r) => r.session), ['a', 'b']);
    assert.deepEqual((await read([p], { events: new Set(both.slice(0, 2)) })).recs.map((r) => r.session), ['a', 'b']);
  });

  it('passes the parsed record, its time in ms and the raw line', async () => {
    const { recs, times, raw, stats } = await read([sample], { events: new Set(['deliver']) });
    assert.equal(recs.length, 1);
    assert.equal(times[0], T0 + 9000);
    assert.equal(raw[0], SAMPLE[9]);
    assert.deepEqual(recs[0], JSON.parse(SAMPLE[9]!));
    assert.equal(stats.bytes, SAMPLE.join('\n').length + 1);
  });

  it('tally: counted-only events come as (event, time) from the raw line; the rest are parsed as usual', async () => {
    const p = file([...SAMPLE, line(T0 + 9000, { event: 'connect', msg: 'spelled "event":"reject" in text' }), 'not json "event":"connect"']);
    const tallied: Array<[string, number]> = [];
    const tally = { events: new Set(['connect', 'start']), onTally: (e: string, ms: number) => tallied.push([e, ms]) };
    const all = await read([p]);
    const some = await read([p], {}, { tally });
    const wanted = all.recs.filter((r) => !tally.events.has(r.event));
    assert.deepEqual(some.recs, wanted);
    assert.deepEqual(tallied, all.recs.flatMap((r, i) => (tally.events.has(r.event) ? [[r.event, all.times[i]!] as [string, number]] : [])));
    assert.equal(some.stats.matched, all.stats.matched);
    assert.equal(some.stats.bad, all.stats.bad);
    // since/until apply to tallied lines too; a field filter turns tallying off (it needs the record).
    tallied.length = 0;
    await read([p], { since: T0 + 5000 }, { tally });
    assert.deepEqual(tallied, [['connect', T0 + 9000]]);
    tallied.length = 0;
    const byClient = await read([p], { client: '203.0.113.9' }, { tally });
    assert.deepEqual(tallied, []);
    assert.ok(byClient.recs.some((r) => r.event === 'connect'));
  });

  it('refuses a bad client, CIDR or empty domain with UsageError', async () => {
    for (const client of ['1.2.3', '1.2.3.4/33', '300.1.1.1', 'host.example', '2001:db8::/129', '192.0.2.0/', '192.0.2.0/x']) {
      await assert.rejects(read([sample], { client }), UsageError, client);
    }
    await assert.rejects(read([sample], { sender: '@' }), UsageError);
  });
});

describe('readLog input', () => {
  it('counts lines that are not JSON objects with a time as bad, and goes on', async () => {
    const p = file([
      line(T0, { event: 'reject', session: 'a' }),
      'not json at all',
      '{"level":30,"time":"2026-11-25T10:00:01.000Z","event":"reject"', // cut short
      '[1,2,3]',
      '42',
      '"reject"',
      '{"level":30,"event":"reject","msg":"no time"}',
      '{"level":30,"time":"yesterday-ish","event":"reject"}',
      '',
      line(T0 + 2000, { event: 'reject', session: 'b' }),
    ]);
    const all = await read([p]);
    assert.deepEqual(all.recs.map((r) => r.session), ['a', 'b']);
    assert.equal(all.stats.bad, 7);
    assert.equal(all.stats.lines, 10);
  });

  it('passes records without an event only with opts.all and no event filter', async () => {
    const p = file([
      '{"level":30,"time":"2026-11-25T10:00:00.000Z","msg":"plain pino line"}',
      line(T0 + 1, { event: 'reject', session: 'x' }),
      '{"level":40,"time":"2026-11-25T10:00:00.002Z","msg":"a warning"}',
    ]);
    assert.deepEqual((await read([p])).recs.map((r) => r.msg ?? r.session), ['x']);
    assert.deepEqual((await read([p], {}, { all: true })).recs.map((r) => r.msg ?? r.session), ['plain pino line', 'x', 'a warning']);
    assert.deepEqual((await read([p], { events: new Set(['reject']) }, { all: true })).recs.map((r) => r.session), ['x']);
    assert.equal((await read([p])).stats.bad, 0);
  });

  it('reads CRLF lines and returns the line without its CR', async () => {
    const lines = [line(T0, { event: 'reject', session: 'a' }), line(T0 + 1, { event: 'accept', session: 'b' })];
    const p = file(lines, '\r\n');
    const r = await read([p], { events: new Set(['reject', 'accept']) });
    assert.deepEqual(r.raw, lines);
    const all = await read([p], { since: T0 });
    assert.deepEqual(all.raw, lines);
    assert.equal(all.stats.bad, 0);
  });

  it('reads a last line without a newline, and files one after another', async () => {
    const a = join(dir, 'no-eol.log');
    writeFileSync(a, `${line(T0, { event: 'reject', session: 'a' })}\n${line(T0 + 1, { event: 'reject', session: 'b' })}`);
    const b = file([line(T0 + 2, { event: 'reject', session: 'c' })]);
    const r = await read([a, b], { events: new Set(['reject']) });
    assert.deepEqual(r.recs.map((x) => x.session), ['a', 'b', 'c']);
    assert.equal(r.stats.lines, 3);
  });

  it('finds every record of a log many read chunks long, UTF-8 across chunk edges included', async () => {
    // ~12 MB: three 4 MB reads; line lengths vary so that the edges fall everywhere.
    const rnd = mulberry32(7);
    const lines: string[] = [];
    const want: string[] = [];
    let bytes = 0;
    for (let i = 0; bytes < 12 * 1024 * 1024; i++) {
      const ev = i % 7 === 0 ? 'reject' : 'connect';
      const pad = 'x'.repeat(Math.floor(rnd() * 900));
      const name = `Zoë-Søren-会議-${i}`;
      const l = line(T0 + i, { event: ev, session: `s${i}`, client_name: name, pad });
      if (ev === 'reject') want.push(name);
      lines.push(l);
      bytes += Buffer.byteLength(l) + 1;
    }
    const p = file(lines);
    const r = await read([p], { events: new Set(['reject']) });
    assert.deepEqual(r.recs.map((x) => x.client_name), want);
    assert.equal(r.stats.lines, lines.length);
    assert.equal(r.stats.bytes, bytes);
    const all = await read([p]);
    assert.equal(all.stats.matched, lines.length);
    assert.equal(all.raw[lines.length - 1], lines[lines.length - 1]);
  });

  it('reads a line longer than the read buffer, and skips one longer than the limit as bad', async () => {
    const long = line(T0 + 1, { event: 'reject', session: 'long', pad: 'y'.repeat(9 * 1024 * 1024) });
    // 40 MB: given up at 16 MB, then dropped through two more buffer fills.
    const huge = `{"pad":"${'z'.repeat(40 * 1024 * 1024)}"}`;
    const p = file([line(T0, { event: 'reject', session: 'a' }), long, huge, line(T0 + 2, { event: 'reject', session: 'b' })]);
    const r = await read([p], { events: new Set(['reject']) });
    assert.deepEqual(r.recs.map((x) => x.session), ['a', 'long', 'b']);
    assert.equal(r.stats.lines, 4);
    assert.equal(r.stats.bad, 1);
  });

  it('reads "-" from the stdin stream, in pieces of any size', async () => {
    const lines = [line(T0, { event: 'reject', session: 'a', client_name: 'Zoë' }), 'garbage', line(T0 + 1, { event: 'accept', session: 'b' })];
    const bytes = Buffer.from(lines.join('\n') + '\n');
    // One byte at a time: every line and the UTF-8 "ë" is cut.
    const pieces = [...bytes].map((b) => Buffer.from([b]));
    const r = await read(['-'], {}, { stdin: Readable.from(pieces) });
    assert.deepEqual(r.recs.map((x) => x.session), ['a', 'b']);
    assert.equal(r.recs[0]!.client_name, 'Zoë');
    assert.equal(r.stats.bad, 1);
    assert.equal(r.stats.lines, 3);
    await assert.rejects(readLog(['-'], {}, () => undefined), UsageError);
  });

  it('throws ConfigError naming a file that cannot be read', async () => {
    const missing = join(dir, 'nope.log');
    await assert.rejects(read([missing]), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${missing}: `));
    await assert.rejects(read([dir]), ConfigError);
    await assert.rejects(read([join(dir, 'nope.log.gz')]), ConfigError);
  });

  it('stops between chunks once the signal is aborted', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 40_000; i++) lines.push(line(T0 + i, { event: 'reject', session: `s${i}`, pad: 'p'.repeat(200) }));
    const p = file(lines);
    const ac = new AbortController();
    let n = 0;
    const stats = await readLog([p, p], {}, () => {
      if (++n === 10) ac.abort();
    }, { signal: ac.signal });
    assert.ok(stats.matched < lines.length, `read ${stats.matched} of ${lines.length * 2}`);
  });
});

describe('readLogRanges', () => {
  it('ranges that meet at any byte offset read every line exactly once', async () => {
    const lines = SAMPLE.concat(SAMPLE.map((l) => l.replace('s1', 's1-second-copy')), ['not json', '']);
    const p = file(lines);
    const size = readFileSync(p).length;
    const all = await read([p]);
    for (let cut = 0; cut <= size; cut++) {
      const recs: LogRecord[] = [];
      const onRecord = (r: LogRecord): void => void recs.push(r);
      const s1 = await readLogRanges([{ path: p, start: 0, end: cut }], {}, onRecord);
      const s2 = await readLogRanges([{ path: p, start: cut, end: size }], {}, onRecord);
      assert.deepEqual(recs, all.recs, `cut at ${cut}`);
      assert.equal(s1.bad + s2.bad, all.stats.bad, `bad lines, cut at ${cut}`);
    }
  });

  it('a range inside one long line reads nothing; one ending inside it reads it whole', async () => {
    const long = line(T0, { event: 'reject', msg: 'y'.repeat(3 * 1024 * 1024) });
    const p = file([SAMPLE[0]!, long, SAMPLE[1]!]);
    const start = SAMPLE[0]!.length + 1;
    const seen: string[] = [];
    await readLogRanges([{ path: p, start: start + 10, end: start + 20 }], {}, (r) => void seen.push(r.event));
    assert.deepEqual(seen, []);
    await readLogRanges([{ path: p, start: 0, end: start + 20 }], {}, (r) => void seen.push(r.event));
    assert.deepEqual(seen, ['start', 'reject']);
  });
});

describe('readLog time windows', () => {
  it('skips chunks outside since/until and still finds exactly what a record-by-record filter finds', async () => {
    // 60,000 lines over 10 hours, a little out of order as two writers would leave them.
    const lines: string[] = [];
    const times: number[] = [];
    const rnd = mulberry32(11);
    for (let i = 0; i < 60_000; i++) {
      const ms = T0 + i * 600 + Math.floor(rnd() * 2000);
      times.push(ms);
      lines.push(line(ms, { event: i % 5 === 0 ? 'reject' : 'connect', session: `s${i}`, pad: 'q'.repeat(Math.floor(rnd() * 200)) }));
    }
    const p = file(lines);
    const windows: Array<[number | undefined, number | undefined]> = [
      [T0 + 3 * 3_600_000, undefined],
      [undefined, T0 + 2 * 3_600_000 + 123],
      [T0 + 4 * 3_600_000 + 7, T0 + 4 * 3_600_000 + 60_000],
      [T0 + 20 * 3_600_000, undefined],
      [undefined, T0],
    ];
    for (const [since, until] of windows) {
      for (const events of [undefined, new Set(['reject']), new Set(['reject', 'hold', 'bounce', 'expire'])]) {
        const filter: LogFilter = {};
        if (since !== undefined) filter.since = since;
        if (until !== undefined) filter.until = until;
        if (events) filter.events = events;
        const want = times.filter((t, i) => (since === undefined || t >= since) && (until === undefined || t < until) && (!events || i % 5 === 0));
        const got = await read([p], filter);
        assert.deepEqual(got.times, want, `since ${since} until ${until} events ${events ? [...events].join() : '-'}`);
        assert.equal(got.stats.lines, lines.length);
      }
    }
  });
});

describe('rotated files', () => {
  it('lists maillog_file after its rotated siblings, oldest first, and reads .gz ones', async () => {
    const logDir = join(dir, 'rotated');
    mkdirSync(logDir);
    const mk = (name: string, session: string, ms: number, gz = false): void => {
      const text = line(ms, { event: 'reject', session }) + '\n';
      writeFileSync(join(logDir, name), gz ? gzipSync(text) : text);
    };
    mk('mail.log.10.gz', 'oldest', T0 - 40_000, true);
    mk('mail.log.2.gz', 'older', T0 - 30_000, true);
    mk('mail.log.1', 'old', T0 - 20_000);
    mk('mail.log', 'now', T0);
    writeFileSync(join(logDir, 'mail.log.bak'), 'not a rotation\n');
    writeFileSync(join(logDir, 'other.log.1'), 'not ours\n');
    const config = configFromText(dir, join(dir, 'main.cf'), `maillog_file = ${join(logDir, 'mail.log')}\n`);
    const files = logFilesFor(config);
    assert.deepEqual(files, ['mail.log.10.gz', 'mail.log.2.gz', 'mail.log.1', 'mail.log'].map((n) => join(logDir, n)));
    const r = await read(files);
    assert.deepEqual(r.recs.map((x) => x.session), ['oldest', 'older', 'old', 'now']);
  });

  it('knows logrotate dateext names, and a missing or empty maillog_file', async () => {
    const logDir = join(dir, 'dated');
    mkdirSync(logDir);
    writeFileSync(join(logDir, 'mail.log-20261123.gz'), gzipSync(line(T0 - 2, { event: 'reject', session: 'a' }) + '\n'));
    writeFileSync(join(logDir, 'mail.log-20261124'), line(T0 - 1, { event: 'reject', session: 'b' }) + '\n');
    const cfg = (v: string) => configFromText(dir, join(dir, 'main.cf'), `maillog_file = ${v}\n`);
    const files = logFilesFor(cfg(join(logDir, 'mail.log')));
    assert.deepEqual(files, [join(logDir, 'mail.log-20261123.gz'), join(logDir, 'mail.log-20261124')]);
    assert.deepEqual((await read(files)).recs.map((x) => x.session), ['a', 'b']);
    assert.deepEqual(logFilesFor(cfg(join(dir, 'no-such-dir', 'mail.log'))), []);
    assert.deepEqual(logFilesFor(cfg('')), []);
  });

  it('counts a corrupt .gz as an error of that file', async () => {
    const p = join(dir, 'corrupt.log.gz');
    writeFileSync(p, 'this is not gzip data\n');
    await assert.rejects(read([p]), ConfigError);
  });
});

describe('parseTimeArg', () => {
  const now = new Date(2026, 10, 25, 15, 30, 45, 500).getTime(); // local time
  const ok: Array<[string, number]> = [
    ['2h', now - 2 * 3_600_000],
    ['30m', now - 30 * 60_000],
    ['90s', now - 90_000],
    ['1d', now - 86_400_000],
    ['1w', now - 7 * 86_400_000],
    ['1h30m', now - 90 * 60_000],
    ['0s', now],
    ['now', now],
    ['today', new Date(2026, 10, 25).getTime()],
    ['Yesterday', new Date(2026, 10, 24).getTime()],
    ['2026-11-24', new Date(2026, 10, 24).getTime()],
    ['2026-11-24T10:00', new Date(2026, 10, 24, 10, 0).getTime()],
    ['2026-11-24 10:00:05', new Date(2026, 10, 24, 10, 0, 5).getTime()],
    ['2026-11-24T10:00:05.25', new Date(2026, 10, 24, 10, 0, 5, 250).getTime()],
    ['2026-11-24T10:00:00Z', Date.UTC(2026, 10, 24, 10)],
    ['2026-11-24T10:00:00.123Z', Date.UTC(2026, 10, 24, 10, 0, 0, 123)],
    ['2026-11-24T10:00+02:00', Date.UTC(2026, 10, 24, 8)],
    ['2026-11-24T10:00-0130', Date.UTC(2026, 10, 24, 11, 30)],
    ['2028-02-29', new Date(2028, 1, 29).getTime()],
  ];
  for (const [text, want] of ok) it(`"${text}"`, () => assert.equal(parseTimeArg(text, now), want));

  const bad = ['', '2', '2x', '-2h', 'h', '2 hours', 'tomorrow', '2026-13-01', '2026-02-30', '2027-02-29', '2026-11-24T24:00', '2026-11-24T10:60', '2026-11-24Z', '2026/11/24', '24.11.2026', '2026-11-24T10', '2026-11-24T10:00+25:00'];
  for (const text of bad) it(`refuses "${text}"`, () => assert.throws(() => parseTimeArg(text, now), UsageError));
});
