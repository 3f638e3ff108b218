/**
 * @module log/report-text
 * SUMMARY: `greygate report` as text, in pflogsumm's layout: Grand Totals, Per-Day and
 * Per-Hour Traffic Summary, Rejects by stage and rule, top rejected clients, senders and
 * recipients, Greylisting, Message Delivery by relay, top received. Exports
 * formatReportText(report) -> string (aligned columns, percentages, one trailing newline).
 * DIAGNOSTICS: none. Log-derived strings are attacker-controlled: control characters (a
 * terminal escape in a sender address) are shown as '?', never passed to the terminal.
 * SEE ALSO: log/report.ts, pflogsumm(1).
 */
import type { Report, TopEntry, VolumeRow } from './report.js';

type Align = 'l' | 'r';

// C0/C1 controls and bidirectional overrides: nothing from the log may drive the terminal.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** A log-derived string made safe for a terminal. */
export function sanitizeText(s: string): string {
  return s.replace(UNSAFE, '?');
}

function int(n: number): string {
  return String(n);
}

function percent(n: number): string {
  return `${n.toFixed(1)}%`;
}

/** pflogsumm's sizes: 1023, 2768k, 12m (powers of 1024). */
export function formatBytes(n: number): string {
  if (n < 1024 * 10) return String(n);
  if (n < 1024 * 1024 * 10) return `${Math.round(n / 1024)}k`;
  if (n < 1024 * 1024 * 1024 * 10) return `${Math.round(n / (1024 * 1024))}m`;
  return `${Math.round(n / (1024 * 1024 * 1024))}g`;
}

/** Seconds as "42s", "5m 3s", "2h 10m", "3d 4h". */
export function formatSeconds(s: number): string {
  if (s < 60) return `${Math.round(s * 10) / 10}s`;
  const t = Math.round(s);
  if (t < 3600) return `${Math.floor(t / 60)}m ${t % 60}s`;
  if (t < 86_400) return `${Math.floor(t / 3600)}h ${Math.floor((t % 3600) / 60)}m`;
  return `${Math.floor(t / 86_400)}d ${Math.floor((t % 86_400) / 3600)}h`;
}

function heading(title: string): string {
  return `\n${title}\n${'-'.repeat(title.length)}\n`;
}

/** Columns padded to their widest cell; the last column is not padded. */
function table(head: readonly string[], align: readonly Align[], rows: readonly (readonly string[])[], indent = '  '): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    indent +
    cells
      .map((c, i) => {
        if (i === cells.length - 1 && align[i] === 'l') return c;
        return align[i] === 'r' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd() +
    '\n';
  let out = line(head);
  out += indent + widths.map((w) => '-'.repeat(w)).join('  ') + '\n';
  for (const r of rows) out += line(r);
  return out;
}

function topList(title: string, entries: readonly TopEntry[]): string {
  let out = heading(title);
  if (entries.length === 0) return out + '  none\n';
  const w = Math.max(...entries.map((e) => int(e.count).length), 5);
  for (const e of entries) out += `  ${int(e.count).padStart(w)}   ${sanitizeText(e.name)}\n`;
  return out;
}

function volume(rows: readonly VolumeRow[], label: string): string {
  return table(
    [label, 'received', 'rejected', 'greylisted', 'deferred', 'delivered', 'bounced'],
    ['l', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows.map((r) => [r.label, int(r.received), int(r.rejected), int(r.greylisted), int(r.deferred), int(r.delivered), int(r.bounced)]),
  );
}

/** "2026-11-25T03:12:09.478Z" as the report's local or UTC "2026-11-25 03:12:09". */
function when(iso: string | null, utc: boolean): string {
  if (iso === null) return '-';
  const d = new Date(iso);
  const p = (n: number): string => String(n).padStart(2, '0');
  return utc
    ? `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`
    : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The period line: what was asked for, and the records actually found. */
export function describePeriod(r: Report): string {
  const utc = r.period.timeZone === 'utc';
  const zone = utc ? 'UTC' : 'local time';
  const asked = r.period.since !== null || r.period.until !== null ? `period ${when(r.period.since, utc)} .. ${r.period.until === null ? 'now' : when(r.period.until, utc)}; ` : '';
  if (r.records === 0) return `${asked}no records (${zone})`;
  return `${asked}records ${when(r.period.first, utc)} .. ${when(r.period.last, utc)} (${zone}; ${r.records} records)`;
}

export function formatReportText(r: Report): string {
  const t = r.totals;
  const share = new Map(r.verdicts.map((v) => [v.verdict, v.percent]));
  let out = `greygate report: ${describePeriod(r)}\n`;

  out += heading('Grand Totals');
  out += 'messages\n\n';
  const rows: Array<[string, string, string] | null> = [
    [int(t.received), 'received', percent(share.get('received') ?? 0)],
    [int(t.rejected), 'rejected (5xx)', percent(share.get('rejected') ?? 0)],
    [int(t.deferred), 'deferred (4xx)', percent(share.get('deferred') ?? 0)],
    [int(t.greylisted), `greylisted (${t.greylistedTriplets} triplet${t.greylistedTriplets === 1 ? '' : 's'})`, percent(share.get('greylisted') ?? 0)],
    [int(t.discarded), 'discarded', percent(share.get('discarded') ?? 0)],
    [int(t.held), 'held', percent(share.get('held') ?? 0)],
    [int(t.rejectWarnings), 'reject warnings', ''],
    null,
    [int(t.delivered), 'delivered', percent(share.get('delivered') ?? 0)],
    [int(t.bounced), 'bounced', percent(share.get('bounced') ?? 0)],
    [int(t.expired), 'expired', percent(share.get('expired') ?? 0)],
    [int(t.deliveryDeferrals), 'delivery deferrals', ''],
  ];
  const filled = rows.filter((x) => x !== null);
  const w = Math.max(7, ...filled.map((x) => x[0].length));
  const lw = Math.max(...filled.map((x) => x[1].length));
  for (const row of rows) {
    if (row === null) {
      out += '\n';
      continue;
    }
    const [n, label, p] = row;
    out += `${n.padStart(w)}   ${p ? `${label.padEnd(lw)}  ${p.padStart(6)}` : label}\n`;
  }
  out += '\n';
  const more: Array<[string, string]> = [
    [formatBytes(t.bytesReceived), 'bytes received'],
    [formatBytes(t.bytesDelivered), 'bytes delivered'],
    [int(t.connections), 'connections'],
    [int(t.senders), 'senders'],
    [int(t.sendingHosts), 'sending hosts'],
    [int(t.recipients), 'recipients'],
    [int(t.warnings), 'warnings'],
  ];
  for (const [n, label] of more) out += `${n.padStart(w)}   ${label}\n`;
  out += '\n  shares: of the SMTP decisions (received + rejected + deferred + greylisted + discarded)\n';
  out += '  above the blank line, of the delivery outcomes (delivered + bounced + expired) below it.\n';

  if (r.perDay.length > 1) {
    out += heading('Per-Day Traffic Summary');
    out += volume(r.perDay, 'date');
  }
  out += heading(r.perHour.unit === 'hour' ? 'Per-Hour Traffic Summary' : 'Per-Hour Traffic Summary (hours of the day, summed over the days)');
  if (r.perHour.rows.length === 0) out += '  none\n';
  else out += volume(r.perHour.rows, r.perHour.unit === 'hour' ? 'hour' : 'time');

  out += heading('Rejects by stage and rule');
  if (r.rejects.length === 0) out += '  none\n';
  else {
    out += table(
      ['count', '%', '4xx', 'clients', 'stage', 'rule', 'last reply'],
      ['r', 'r', 'r', 'r', 'l', 'l', 'l'],
      r.rejects.map((g) => [int(g.count), percent(g.percent), int(g.deferred), int(g.clients), sanitizeText(g.stage), sanitizeText(g.rule), sanitizeText(g.reply)]),
    );
  }

  out += topList('Top rejected clients', r.topRejected.clients);
  out += topList('Top rejected senders', r.topRejected.senders);
  out += topList('Top rejected recipients', r.topRejected.recipients);

  const g = r.greylist;
  out += heading('Greylisting');
  const gl: Array<[string, string]> = [
    [int(g.replies), 'greylist replies (450)'],
    [int(g.triplets), 'triplets greylisted'],
    [int(g.passedTriplets), `passed after retry (${percent(g.passRate)} of the triplets greylisted)`],
    [int(g.neverRetried), 'never retried'],
    [int(g.passed), 'first passes after the delay'],
    [int(g.awlHits), 'auto-whitelist (AWL) passes'],
    [int(g.whitelistHits), 'whitelist passes'],
  ];
  const gw = Math.max(7, ...gl.map((x) => x[0].length));
  for (const [n, label] of gl) out += `${n.padStart(gw)}   ${label}\n`;
  if (g.delay) {
    const d = g.delay;
    out += `\n  delay before the first pass: min ${formatSeconds(d.min)}, median ${formatSeconds(d.median)}, p90 ${formatSeconds(d.p90)}, max ${formatSeconds(d.max)}, mean ${formatSeconds(d.mean)}\n\n`;
    const most = Math.max(...g.delayBuckets.map((b) => b.count));
    const bw = Math.max(...g.delayBuckets.map((b) => b.label.length));
    const cw = Math.max(...g.delayBuckets.map((b) => int(b.count).length));
    for (const b of g.delayBuckets) out += `  ${b.label.padEnd(bw)}  ${int(b.count).padStart(cw)}  ${'#'.repeat(most > 0 ? Math.round((b.count / most) * 40) : 0)}`.trimEnd() + '\n';
  }
  if (g.passReasons.length > 0) {
    out += '\n  passes by reason:\n';
    const rw = Math.max(...g.passReasons.map((e) => int(e.count).length), 5);
    for (const e of g.passReasons) out += `  ${int(e.count).padStart(rw)}   ${sanitizeText(e.name)}\n`;
  }

  out += heading('Message Delivery by relay');
  if (r.deliveries.length === 0) out += '  none\n';
  else {
    out += table(
      ['sent', 'bytes', 'defers', 'bounced', 'avg delay', 'max delay', 'relay'],
      ['r', 'r', 'r', 'r', 'r', 'r', 'l'],
      r.deliveries.map((d) => [int(d.delivered), formatBytes(d.bytes), int(d.deferred), int(d.bounced), d.delivered > 0 ? formatSeconds(d.avgDelay) : '-', d.delivered > 0 ? formatSeconds(d.maxDelay) : '-', sanitizeText(d.relay)]),
    );
  }

  out += topList('Top senders (received)', r.topReceived.senders);
  out += topList('Top sending hosts (received)', r.topReceived.clients);
  out += topList('Top recipients (received)', r.topReceived.recipients);
  return out;
}
