/**
 * log/report, log/report-text and log/report-html on hand-built decision records: every
 * number of the Report (totals, shares, stage x rule groups, top lists, greylist outcomes,
 * per-hour/per-day volume, deliveries), the text layout, the escaping of attacker-controlled
 * strings in the HTML page and in the text, and the cost of add().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReportBuilder, type ReportRecord } from '../../src/log/report.js';
import { formatReportText, formatBytes, formatSeconds, sanitizeText } from '../../src/log/report-text.js';
import { escapeHtml, formatReportHtml } from '../../src/log/report-html.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 10, 24, 10, 5);
const EVIL = '<script>alert(1)</script>@evil.example';

/** [record, ms after T0]. */
function traffic(): Array<[ReportRecord, number]> {
  const r: Array<[ReportRecord, number]> = [];
  const at = (ms: number, rec: ReportRecord): void => void r.push([rec, ms]);
  for (let i = 0; i < 4; i++) at(i, { event: 'connect', stage: 'connect', session: `s${i}`, client_ip: '127.0.0.1' });
  // check_greylist through smtpd: the greylist record, then its 450.
  at(10, { event: 'greylist', stage: 'rcpt', session: 's1', client_ip: '198.51.100.10', from: 'a@s.example', to: 'u@relay.test', action: 'greylist', reason: 'new', key: 'K1', remaining: 300, rule: 'check_greylist' });
  at(11, { event: 'defer', stage: 'rcpt', session: 's1', client_ip: '198.51.100.10', from: 'a@s.example', to: 'u@relay.test', code: 450, status: '4.2.0', reply: '450 4.2.0 <u@relay.test>: Recipient address rejected: Greylisted', rule: 'check_greylist' });
  at(20, { event: 'defer', stage: 'rcpt', session: 's2', client_ip: '203.0.113.9', from: 'spam@x.example', to: 'u@elsewhere.test', code: 454, status: '4.7.1', reply: '454 4.7.1 <u@elsewhere.test>: Relay access denied', rule: 'defer_unauth_destination' });
  at(30, { event: 'reject', stage: 'rcpt', session: 's2', client_ip: '203.0.113.9', from: '', to: 'a@b.example', code: 554, status: '5.7.1', reply: '554 5.7.1 <a@b.example>: Relay access denied', rule: 'reject_unauth_destination' });
  at(40, { event: 'reject', stage: 'end-of-data', session: 's3', queue_id: 'Q9', client_ip: '198.51.100.7', from: EVIL, to: ['r1@relay.test', 'r2@relay.test'], code: 550, status: '5.7.1', reply: '550 5.7.1 spam <b>subject</b>', rule: 'header_checks:3', size: 777 });
  at(50, { event: 'reject', stage: 'rcpt', session: 's4', client_ip: '203.0.113.10', from: 'b@x.example', to: 'c@d.example', code: 554, status: '5.7.1', reply: '554 5.7.1 <c@d.example>: Relay access denied (latest)', rule: 'reject_unauth_destination' });
  // The policy service's greylist record carries its reply: it counts by itself.
  at(60, { event: 'greylist', stage: 'rcpt', service: 'policyd', session: 'p1', client_ip: '192.0.2.1', from: 'x@y.example', to: 'z@relay.test', action: 'greylist', reason: 'new', key: 'K2', code: 450, rule: 'check_greylist' });
  at(70, { event: 'reject', stage: 'connect', session: 's5', client_ip: '192.0.2.99', code: 421, status: '4.7.0', reply: '421 4.7.0 mx Error: too many connections', rule: 'smtpd_client_connection_count_limit' });
  // A store failure of check_greylist: no greylist record before it, so a plain 4xx.
  at(80, { event: 'defer', stage: 'rcpt', session: 's9', client_ip: '192.0.2.50', from: 'q@q.example', to: 'u@relay.test', code: 451, status: '4.3.0', reply: '451 4.3.0 <u@relay.test>: Temporary lookup failure', rule: 'check_greylist' });
  at(H, { event: 'greylist', stage: 'rcpt', session: 's6', client_ip: '198.51.100.10', action: 'pass', reason: 'triplet found', key: 'K1', delay: 400, rule: 'check_greylist' });
  at(H + 1, { event: 'greylist', stage: 'rcpt', session: 's6', action: 'pass', reason: 'triplet found', key: 'K3', delay: 30, rule: 'check_greylist' });
  at(H + 2, { event: 'greylist', stage: 'rcpt', session: 's6', action: 'pass', reason: 'triplet found', key: 'K4', delay: 7200, rule: 'check_greylist' });
  at(H + 3, { event: 'greylist', stage: 'rcpt', session: 's6', action: 'pass', reason: 'client AWL', awl_count: 6, rule: 'check_greylist' });
  at(H + 4, { event: 'greylist', stage: 'rcpt', session: 's6', action: 'pass', reason: 'client whitelist', rule: 'whitelist_clients:2' });
  at(H + 10, { event: 'accept', stage: 'end-of-data', session: 's6', queue_id: 'Q1', client_ip: '198.51.100.10', from: 'a@s.example', to: ['u@relay.test'], size: 1000, code: 250 });
  at(H + 20, { event: 'accept', stage: 'end-of-data', session: 's7', queue_id: 'Q2', client_ip: '198.51.100.11', from: '', to: ['x@relay.test', 'y@relay.test'], size: 500, code: 250 });
  at(H + 30, { event: 'hold', stage: 'end-of-data', rule: 'header_checks:5' });
  at(H + 31, { event: 'discard', stage: 'end-of-data', rule: 'header_checks:6' });
  at(H + 32, { event: 'reject_warning', stage: 'rcpt', rule: 'reject_unknown_client_hostname' });
  at(H + 33, { event: 'warn', stage: 'end-of-data', rule: 'header_checks:7' });
  at(H + 34, { event: 'disconnect', stage: 'disconnect', session: 's7' });
  at(2 * H, { event: 'deliver', stage: 'qmgr', queue_id: 'Q1', relay: 'mx.relay.test[127.0.0.1]:2526', delay: 2.5, status: 'sent' });
  at(2 * H + 1, { event: 'deliver', stage: 'qmgr', queue_id: 'Q2', relay: 'mx.relay.test[127.0.0.1]:2526', delay: 1, status: 'sent' });
  at(2 * H + 2, { event: 'deliver', stage: 'qmgr', queue_id: 'Q2', relay: 'mx.relay.test[127.0.0.1]:2526', delay: 3, status: 'sent' });
  at(2 * H + 3, { event: 'defer', stage: 'qmgr', queue_id: 'Q3', relay: 'other.test[192.0.2.7]:25', delay: 5, status: 'deferred', code: 451 });
  at(2 * H + 4, { event: 'bounce', stage: 'qmgr', queue_id: 'Q4', relay: 'other.test[192.0.2.7]:25', delay: 6, status: 'bounced', code: 550 });
  at(2 * H + 5, { event: 'expire', stage: 'qmgr', queue_id: 'Q5', relay: 'none', status: 'expired' });
  return r;
}

function build(opts: ConstructorParameters<typeof ReportBuilder>[0] = { utc: true }) {
  const b = new ReportBuilder(opts);
  for (const [rec, ms] of traffic()) b.add(rec, T0 + ms);
  return b.result();
}

test('grand totals and shares', () => {
  const r = build();
  assert.equal(r.records, traffic().length);
  assert.deepEqual(r.totals, {
    connections: 4,
    received: 2,
    rejected: 3,
    deferred: 3,
    greylisted: 2,
    greylistedTriplets: 2,
    discarded: 1,
    held: 1,
    rejectWarnings: 1,
    warnings: 1,
    delivered: 3,
    deliveryDeferrals: 1,
    bounced: 1,
    expired: 1,
    bytesReceived: 1500,
    bytesDelivered: 2000,
    senders: 2,
    sendingHosts: 2,
    recipients: 3,
  });
  const share = Object.fromEntries(r.verdicts.map((v) => [v.verdict, [v.count, v.percent]]));
  // SMTP decisions: 2 received + 1 discarded + 3 rejected + 3 deferred + 2 greylisted = 11.
  assert.deepEqual(share.received, [2, 18.18]);
  assert.deepEqual(share.rejected, [3, 27.27]);
  assert.deepEqual(share.deferred, [3, 27.27]);
  assert.deepEqual(share.greylisted, [2, 18.18]);
  assert.deepEqual(share.discarded, [1, 9.09]);
  assert.deepEqual(share.held, [1, 9.09]);
  // Delivery outcomes: 3 delivered + 1 bounced + 1 expired = 5.
  assert.deepEqual(share.delivered, [3, 60]);
  assert.deepEqual(share.bounced, [1, 20]);
  assert.deepEqual(share.expired, [1, 20]);
  assert.equal(r.period.first, new Date(T0).toISOString());
  assert.equal(r.period.last, new Date(T0 + 2 * H + 5).toISOString());
  assert.equal(r.period.since, null);
  assert.equal(r.period.timeZone, 'utc');
});

test('rejects by stage x rule: counts, 4xx part, clients, latest reply, order', () => {
  const r = build();
  assert.deepEqual(
    r.rejects.map((g) => [g.stage, g.rule, g.count, g.deferred, g.clients, g.code, g.percent]),
    [
      ['rcpt', 'reject_unauth_destination', 2, 0, 2, 554, 33.33],
      ['connect', 'smtpd_client_connection_count_limit', 1, 1, 1, 421, 16.67],
      ['end-of-data', 'header_checks:3', 1, 0, 1, 550, 16.67],
      ['rcpt', 'check_greylist', 1, 1, 1, 451, 16.67],
      ['rcpt', 'defer_unauth_destination', 1, 1, 1, 454, 16.67],
    ],
  );
  assert.equal(r.rejects[0]!.reply, '554 5.7.1 <c@d.example>: Relay access denied (latest)');
  assert.equal(r.rejects[0]!.last, new Date(T0 + 50).toISOString());
  assert.equal(build({ utc: true, rejectDetail: 2 }).rejects.length, 2);
});

test('top rejected and top received lists', () => {
  const r = build();
  assert.deepEqual(r.topRejected.clients.slice(0, 2), [
    { name: '203.0.113.9', count: 2 },
    { name: '192.0.2.50', count: 1 },
  ]);
  assert.equal(r.topRejected.clients.length, 5);
  assert.deepEqual(r.topRejected.senders.map((e) => [e.name, e.count]), [
    ['<>', 1],
    [EVIL, 1],
    ['b@x.example', 1],
    ['q@q.example', 1],
    ['spam@x.example', 1],
  ]);
  // An end-of-data reject counts each recipient; the connect-time one has none.
  assert.deepEqual(r.topRejected.recipients.map((e) => e.name).sort(), ['a@b.example', 'c@d.example', 'r1@relay.test', 'r2@relay.test', 'u@elsewhere.test', 'u@relay.test']);
  assert.deepEqual(r.topReceived.senders, [
    { name: '<>', count: 1 },
    { name: 'a@s.example', count: 1 },
  ]);
  assert.deepEqual(r.topReceived.recipients.length, 3);
  const small = build({ utc: true, top: 1 });
  assert.deepEqual(small.topRejected.clients, [{ name: '203.0.113.9', count: 2 }]);
});

test('top lists: the N largest of many, ties by name, the same as a full sort', () => {
  const b = new ReportBuilder({ top: 7 });
  const want = new Map<string, number>();
  for (let i = 0; i < 3000; i++) {
    const ip = `10.0.${i % 211}.${i % 13}`;
    want.set(ip, (want.get(ip) ?? 0) + 1);
    b.add({ event: 'reject', stage: 'rcpt', code: 554, rule: 'x', client_ip: ip }, T0 + i);
  }
  const sorted = [...want].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1)).slice(0, 7);
  assert.deepEqual(
    b.result().topRejected.clients.map((e) => [e.name, e.count]),
    sorted,
  );
});

test('greylist outcomes: triplets, passes, never retried, delay distribution, AWL and whitelist hits', () => {
  const g = build().greylist;
  assert.equal(g.replies, 2);
  assert.equal(g.triplets, 2);
  assert.equal(g.passed, 3);
  assert.equal(g.passedTriplets, 1);
  assert.equal(g.neverRetried, 1);
  assert.equal(g.passRate, 50);
  assert.deepEqual(g.delay, { min: 30, median: 400, p90: 7200, max: 7200, mean: 2543.33 });
  assert.deepEqual(
    g.delayBuckets.filter((b) => b.count > 0).map((b) => [b.label, b.count]),
    [
      ['< 1m', 1],
      ['5-10m', 1],
      ['1-4h', 1],
    ],
  );
  assert.equal(g.delayBuckets.reduce((n, b) => n + b.count, 0), 3);
  assert.equal(g.awlHits, 1);
  assert.equal(g.whitelistHits, 1);
  assert.deepEqual(g.passReasons, [
    { name: 'triplet found', count: 3 },
    { name: 'client AWL', count: 1 },
    { name: 'client whitelist', count: 1 },
  ]);
});

test('per-hour volume and deliveries per relay', () => {
  const r = build();
  assert.equal(r.perHour.unit, 'hour');
  assert.deepEqual(
    r.perHour.rows.map((x) => [x.label, x.received, x.rejected, x.greylisted, x.deferred, x.delivered, x.bounced]),
    [
      ['2026-11-24 10:00', 0, 3, 2, 3, 0, 0],
      ['2026-11-24 11:00', 2, 0, 0, 0, 0, 0],
      ['2026-11-24 12:00', 0, 0, 0, 0, 3, 1],
    ],
  );
  assert.equal(r.perHour.rows[0]!.start, '2026-11-24T10:00:00.000Z');
  assert.deepEqual(r.perDay.map((d) => [d.label, d.start, d.received, d.rejected, d.delivered]), [['2026-11-24', '2026-11-24T00:00:00.000Z', 2, 3, 3]]);
  assert.deepEqual(r.deliveries, [
    { relay: 'mx.relay.test[127.0.0.1]:2526', delivered: 3, deferred: 0, bounced: 0, bytes: 2000, avgDelay: 2.17, maxDelay: 3 },
    { relay: 'other.test[192.0.2.7]:25', delivered: 0, deferred: 1, bounced: 1, bytes: 0, avgDelay: 0, maxDelay: 0 },
  ]);
});

test('several days: hours of the day summed, every day a row (quiet ones too)', () => {
  const b = new ReportBuilder({ utc: true });
  const day0 = Date.UTC(2026, 10, 20);
  b.add({ event: 'accept', size: 1 }, day0 + 9 * H);
  b.add({ event: 'accept', size: 1 }, day0 + 9 * H + 5);
  b.add({ event: 'reject', stage: 'rcpt', code: 554, rule: 'r' }, day0 + 2 * 24 * H + 9 * H);
  b.add({ event: 'accept', size: 1 }, day0 + 3 * 24 * H + 23 * H);
  const r = b.result();
  assert.equal(r.perHour.unit, 'hour-of-day');
  assert.equal(r.perHour.rows.length, 24);
  assert.deepEqual([r.perHour.rows[9]!.label, r.perHour.rows[9]!.received, r.perHour.rows[9]!.rejected], ['09:00', 2, 1]);
  assert.equal(r.perHour.rows[23]!.received, 1);
  assert.deepEqual(
    r.perDay.map((d) => [d.label, d.received, d.rejected]),
    [
      ['2026-11-20', 2, 0],
      ['2026-11-21', 0, 0],
      ['2026-11-22', 0, 1],
      ['2026-11-23', 1, 0],
    ],
  );
});

test('an empty log gives an empty report, and text and HTML render it', () => {
  const r = new ReportBuilder().result();
  assert.equal(r.records, 0);
  assert.equal(r.period.first, null);
  assert.equal(r.totals.received, 0);
  assert.deepEqual(r.perHour.rows, []);
  assert.equal(r.greylist.delay, null);
  assert.match(formatReportText(r), /no records/);
  assert.match(formatReportHtml(r), /no traffic in the period/);
});

test('text: pflogsumm layout with aligned numbers and percentages', () => {
  const text = formatReportText(build());
  for (const h of ['Grand Totals', 'Per-Hour Traffic Summary', 'Rejects by stage and rule', 'Top rejected clients', 'Top rejected senders', 'Top rejected recipients', 'Greylisting', 'Message Delivery by relay']) {
    assert.match(text, new RegExp(`^${h}\\n-{${h.length}}$`, 'm'), h);
  }
  assert.match(text, /^ {6}2 {3}received +18\.2%$/m);
  assert.match(text, /^ {6}3 {3}rejected \(5xx\) +27\.3%$/m);
  assert.match(text, /^ {6}2 {3}greylisted \(2 triplets\) +18\.2%$/m);
  assert.match(text, /^ {3}1500 {3}bytes received$/m);
  assert.match(text, /^ {2}2026-11-24 10:00 +0 +3 +2 +3 +0 +0$/m);
  assert.match(text, /^ +2 +33\.3% +0 +2 +rcpt +reject_unauth_destination +554 5\.7\.1 <c@d\.example>: Relay access denied \(latest\)$/m);
  assert.match(text, /^ +1 +never retried$/m);
  assert.match(text, /^ +1 +passed after retry \(50\.0% of the triplets greylisted\)$/m);
  assert.match(text, /delay before the first pass: min 30s, median 6m 40s, p90 2h 0m, max 2h 0m/);
  assert.match(text, /^ +3 +2000 +0 +0 +2\.2s +3s +mx\.relay\.test\[127\.0\.0\.1\]:2526$/m);
  // Columns line up: every row of the per-hour table has the same length.
  const hourRows = text.split('\n').filter((l) => /^ {2}2026-11-24 \d\d:00/.test(l));
  assert.equal(hourRows.length, 3);
  assert.equal(new Set(hourRows.map((l) => l.length)).size, 1);
});

test('text: control characters from the log never reach the terminal', () => {
  const b = new ReportBuilder();
  b.add({ event: 'reject', stage: 'mail', code: 554, rule: 'check_sender_access hash:senders', from: 'x\u001b[31m@evil\u202e.example', reply: '554 bad\u0007' }, T0);
  const text = formatReportText(b.result());
  assert.doesNotMatch(text, /[\u001b\u0007\u202e]/);
  assert.match(text, /x\?\[31m@evil\?\.example/);
  assert.equal(sanitizeText('a\r\nb'), 'a??b');
});

test('HTML: self-contained, SVG charts, every log string escaped', () => {
  const html = formatReportHtml(build());
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html, /<b>subject/);
  assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;@evil\.example/);
  assert.match(html, /550 5\.7\.1 spam &lt;b&gt;subject&lt;\/b&gt;/);
  // No network: no external URL, no link/img/font.
  assert.doesNotMatch(html, /https?:\/\//);
  assert.doesNotMatch(html, /<(link|img|iframe|object)\b/i);
  assert.doesNotMatch(html, /@import|url\(/);
  for (const id of ['chart-volume', 'chart-rules', 'chart-delay']) assert.match(html, new RegExp(`<svg [^>]*id="${id}"`), id);
  assert.equal((html.match(/<rect class="s-received"/g) ?? []).length, 1);
  assert.match(html, /prefers-color-scheme:dark/);
  assert.equal(escapeHtml(`<a href="x" onclick='y'>&`), '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;');
});

test('formatting helpers', () => {
  assert.equal(formatBytes(1500), '1500');
  assert.equal(formatBytes(2_834_000), '2768k');
  assert.equal(formatBytes(50 * 1024 * 1024), '50m');
  assert.equal(formatSeconds(2.25), '2.3s');
  assert.equal(formatSeconds(400), '6m 40s');
  assert.equal(formatSeconds(7200), '2h 0m');
  assert.equal(formatSeconds(90_000), '1d 1h');
});

test('add() keeps up with the reader: well over 500,000 records/s', () => {
  const recs = traffic();
  const b = new ReportBuilder();
  const n = 1_000_000;
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    const [rec, ms] = recs[i % recs.length]!;
    b.add(rec, T0 + ms + (i >> 4));
  }
  const secs = (performance.now() - t) / 1000;
  const rate = n / secs;
  console.log(`ReportBuilder.add: ${Math.round(rate).toLocaleString('en-US')} records/s`);
  assert.ok(rate > 500_000, `${rate} records/s`);
  assert.equal(b.result().records, n);
});

test('merge: a report read in two parts equals the one read whole, wherever the log is cut', () => {
  const recs = traffic();
  const whole = build();
  // Every cut that does not part a greylist record from its 450 (splitLog cuts before a connect line).
  for (let cut = 0; cut <= recs.length; cut++) {
    const before = recs[cut - 1]?.[0];
    if (before?.event === 'greylist' && typeof before.code !== 'number') continue;
    const a = new ReportBuilder({ utc: true });
    const b = new ReportBuilder({ utc: true });
    recs.forEach(([rec, ms], i) => (i < cut ? a : b).add(rec, T0 + ms));
    // The state crosses a thread as a structured clone.
    a.merge(structuredClone(b.state()));
    assert.deepEqual(a.result(), whole, `cut before record ${cut}`);
  }
});

test('merge: tallied records and passes of triplets greylisted in the earlier part', () => {
  const a = new ReportBuilder({ utc: true });
  const b = new ReportBuilder({ utc: true });
  a.tally('connect', T0);
  a.add({ event: 'greylist', stage: 'rcpt', session: 's', action: 'greylist', key: 'K', code: 450, rule: 'check_greylist' }, T0 + 1);
  a.add({ event: 'greylist', stage: 'rcpt', session: 's', action: 'greylist', key: 'N', code: 450, rule: 'check_greylist' }, T0 + 2);
  b.tally('connect', T0 + 10);
  b.add({ event: 'greylist', stage: 'rcpt', session: 't', action: 'pass', reason: 'triplet found', key: 'K', delay: 60, rule: 'check_greylist' }, T0 + 11);
  a.merge(b.state());
  const r = a.result();
  assert.equal(r.totals.connections, 2);
  assert.equal(r.greylist.triplets, 2);
  assert.equal(r.greylist.neverRetried, 1);
});
