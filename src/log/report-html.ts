/**
 * @module log/report-html
 * SUMMARY: `greygate report --html FILE`: the Report as one self-contained HTML page (inline
 * CSS, inline SVG charts: per-hour stacked bars, top reject rules, greylist delay
 * distribution; no script, no network, no external font), readable in light and dark mode.
 * Exports formatReportHtml(report, { title? }) -> string and escapeHtml().
 * DIAGNOSTICS: none. Every log-derived string (sender addresses, HELO names, reply texts,
 * rule names) is attacker-controlled and goes through escapeHtml(), in text and attributes.
 * SEE ALSO: log/report.ts, log/report-text.ts, pflogsumm(1).
 */
import type { Report, TopEntry, VolumeRow } from './report.js';
import { describePeriod, formatBytes, formatSeconds } from './report-text.js';

const ESC: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Safe in element content and in quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c]!);
}

function num(n: number): string {
  return n.toLocaleString('en-US');
}

function pct(n: number): string {
  return `${n.toFixed(1)}%`;
}

/** Long attacker-chosen strings are cut for the chart labels (the tables show them whole). */
function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** A round axis maximum and its tick step for values up to MAX. */
function niceScale(max: number, ticks = 4): { top: number; step: number } {
  if (max <= 0) return { top: 1, step: 1 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = Math.max(1, (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag);
  return { top: Math.ceil(max / step) * step, step };
}

type Series = 'received' | 'rejected' | 'greylisted' | 'deferred';
const STACK: readonly Series[] = ['received', 'rejected', 'greylisted', 'deferred'];

const CSS = `
:root{color-scheme:light dark;--bg:#f7f8fa;--card:#fff;--fg:#1c2230;--muted:#5d6675;--border:#dfe3ea;--grid:#e7eaf0;
--received:#2f8f46;--rejected:#d03b3b;--greylisted:#8a94a6;--deferred:#e58a1f;--delivered:#2c6fd1;--bounced:#8a46c2;--bar:#2c6fd1}
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--card:#1b2029;--fg:#e4e8ef;--muted:#9aa4b5;--border:#2c3442;--grid:#283040;
--received:#4cbb69;--rejected:#f06060;--greylisted:#9aa6ba;--deferred:#f0a040;--delivered:#5b9cf5;--bounced:#b27be6;--bar:#5b9cf5}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 12px}
.period{color:var(--muted);margin:0 0 20px}
section{background:var(--card);border:1px solid var(--border);border-radius:10px;padding:16px 18px;margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:0 0 18px}
.card{background:var(--card);border:1px solid var(--border);border-left:5px solid var(--c);border-radius:10px;padding:10px 14px}
.card .n{font-size:26px;font-weight:650;font-variant-numeric:tabular-nums}
.card .l{font-size:13px}
.card .p{color:var(--muted);font-size:12px}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:18px;margin:0 0 18px}
.cols section{margin:0}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid var(--border);text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.n,th.n{text-align:right;white-space:nowrap}
td.t{word-break:break-all}
.reply{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;color:var(--muted);word-break:break-word}
.muted{color:var(--muted)}
.none{color:var(--muted);font-style:italic}
svg{display:block;width:100%;height:auto}
svg text{fill:var(--muted);font:12px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
svg .lbl{fill:var(--fg)}
svg .grid{stroke:var(--grid);stroke-width:1}
svg .axis{stroke:var(--border);stroke-width:1}
.s-received{fill:var(--received)}.s-rejected{fill:var(--rejected)}.s-greylisted{fill:var(--greylisted)}.s-deferred{fill:var(--deferred)}
.s-bar{fill:var(--bar)}
.line-delivered{fill:none;stroke:var(--delivered);stroke-width:2}.dot-delivered{fill:var(--delivered)}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:8px 0 0;color:var(--muted);font-size:13px}
.legend span::before{content:"";display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px;background:var(--c)}
details{margin-top:10px}summary{cursor:pointer;color:var(--muted)}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}
.kv .n{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
`;

function tableHtml(head: ReadonlyArray<readonly [string, 'n' | 't' | '']>, rows: ReadonlyArray<readonly string[]>): string {
  const th = head.map(([h, c]) => `<th${c === 'n' ? ' class="n"' : ''}>${escapeHtml(h)}</th>`).join('');
  // Cells arrive escaped already (some hold markup).
  const body = rows.map((r) => `<tr>${r.map((cell, i) => `<td${head[i]![1] ? ` class="${head[i]![1]}"` : ''}>${cell}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function topSection(title: string, what: string, entries: readonly TopEntry[]): string {
  const inner =
    entries.length === 0
      ? '<p class="none">none</p>'
      : tableHtml(
          [
            ['count', 'n'],
            [what, 't'],
          ],
          entries.map((e) => [num(e.count), escapeHtml(e.name)]),
        );
  return `<section><h2>${escapeHtml(title)}</h2>${inner}</section>`;
}

/** Short x-axis labels: "14:00", with the date where the day changes. */
function hourLabels(rows: readonly VolumeRow[]): string[] {
  let day = '';
  return rows.map((r) => {
    if (r.label.length <= 5) return r.label;
    const d = r.label.slice(0, 10);
    const h = r.label.slice(11, 16);
    if (d !== day) {
      day = d;
      return `${d.slice(5)} ${h}`;
    }
    return h;
  });
}

/** Per-hour stacked bars of the SMTP verdicts, with deliveries as a line. */
function volumeChart(rows: readonly VolumeRow[], labels: readonly string[], id: string, what: string): string {
  const W = 1100;
  const H = 300;
  const L = 52;
  const R = 12;
  const T = 14;
  const B = 46;
  if (rows.length === 0) return `<svg viewBox="0 0 ${W} 80" role="img" aria-label="no traffic" id="${id}"><text x="${W / 2}" y="44" text-anchor="middle">no traffic in the period</text></svg>`;
  let max = 0;
  for (const r of rows) max = Math.max(max, r.received + r.rejected + r.greylisted + r.deferred, r.delivered);
  const { top, step } = niceScale(max);
  const ph = H - T - B;
  const pw = W - L - R;
  const slot = pw / rows.length;
  const bw = Math.max(2, Math.min(38, slot * 0.72));
  const y = (v: number): number => T + ph - (v / top) * ph;
  const parts: string[] = [];
  for (let v = 0; v <= top; v += step) {
    parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`);
    parts.push(`<text x="${L - 8}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${num(v)}</text>`);
  }
  const every = Math.max(1, Math.ceil(rows.length / 16));
  const line: string[] = [];
  rows.forEach((r, i) => {
    const x = L + i * slot + (slot - bw) / 2;
    let acc = 0;
    const tip = `${r.label}: ${r.received} received, ${r.rejected} rejected, ${r.greylisted} greylisted, ${r.deferred} deferred, ${r.delivered} delivered, ${r.bounced} bounced`;
    parts.push(`<g><title>${escapeHtml(tip)}</title>`);
    for (const s of STACK) {
      const v = r[s];
      if (v <= 0) continue;
      const y0 = y(acc + v);
      const h = y(acc) - y0;
      parts.push(`<rect class="s-${s}" x="${x.toFixed(1)}" y="${y0.toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.max(h, 0.5).toFixed(1)}"/>`);
      acc += v;
    }
    parts.push('</g>');
    const cx = L + i * slot + slot / 2;
    line.push(`${cx.toFixed(1)},${y(r.delivered).toFixed(1)}`);
    if (i % every === 0) parts.push(`<text x="${cx.toFixed(1)}" y="${H - B + 18}" text-anchor="middle">${escapeHtml(labels[i]!)}</text>`);
  });
  if (rows.some((r) => r.delivered > 0)) {
    parts.push(`<polyline class="line-delivered" points="${line.join(' ')}"/>`);
    if (rows.length <= 60) for (const p of line) parts.push(`<circle class="dot-delivered" cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3"/>`);
  }
  parts.push(`<line class="axis" x1="${L}" x2="${W - R}" y1="${y(0)}" y2="${y(0)}"/>`);
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="messages per ${what}" id="${id}">${parts.join('')}</svg>`;
}

const LEGEND = `<div class="legend"><span style="--c:var(--received)">received</span><span style="--c:var(--rejected)">rejected</span><span style="--c:var(--greylisted)">greylisted</span><span style="--c:var(--deferred)">deferred (4xx)</span><span style="--c:var(--delivered)">delivered (line)</span></div>`;

/** Horizontal bars: the most frequent reject rules, 5xx and 4xx parts. */
function rulesChart(report: Report): string {
  const groups = report.rejects.slice(0, 12);
  const W = 1100;
  if (groups.length === 0) return `<svg viewBox="0 0 ${W} 60" role="img" aria-label="no rejects" id="chart-rules"><text x="${W / 2}" y="34" text-anchor="middle">no rejects in the period</text></svg>`;
  const rowH = 26;
  const L = 400;
  const R = 70;
  const H = groups.length * rowH + 10;
  const max = Math.max(...groups.map((g) => g.count));
  const pw = W - L - R;
  const parts: string[] = [];
  groups.forEach((g, i) => {
    const y = 5 + i * rowH;
    const label = `${g.stage} · ${g.rule}`;
    const hard = g.count - g.deferred;
    const w5 = (hard / max) * pw;
    const w4 = (g.deferred / max) * pw;
    parts.push(`<g><title>${escapeHtml(`${label}: ${g.count} (${hard} 5xx, ${g.deferred} 4xx) — ${g.reply}`)}</title>`);
    parts.push(`<text class="lbl" x="${L - 10}" y="${y + 17}" text-anchor="end">${escapeHtml(clip(label, 56))}</text>`);
    if (hard > 0) parts.push(`<rect class="s-rejected" x="${L}" y="${y + 4}" width="${Math.max(w5, 1).toFixed(1)}" height="${rowH - 8}" rx="2"/>`);
    if (g.deferred > 0) parts.push(`<rect class="s-deferred" x="${(L + w5).toFixed(1)}" y="${y + 4}" width="${Math.max(w4, 1).toFixed(1)}" height="${rowH - 8}" rx="2"/>`);
    parts.push(`<text x="${(L + w5 + w4 + 8).toFixed(1)}" y="${y + 17}">${num(g.count)}</text></g>`);
  });
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="top reject rules" id="chart-rules">${parts.join('')}</svg>`;
}

/** Vertical bars: how long greylisted triplets waited before their first pass. */
function delayChart(report: Report): string {
  const buckets = report.greylist.delayBuckets;
  const W = 1100;
  const H = 220;
  const L = 52;
  const R = 12;
  const T = 20;
  const B = 34;
  if (report.greylist.passed === 0) return `<svg viewBox="0 0 ${W} 60" role="img" aria-label="no greylist passes" id="chart-delay"><text x="${W / 2}" y="34" text-anchor="middle">no greylisted triplet passed in the period</text></svg>`;
  const { top, step } = niceScale(Math.max(...buckets.map((b) => b.count)));
  const ph = H - T - B;
  const slot = (W - L - R) / buckets.length;
  const bw = slot * 0.62;
  const y = (v: number): number => T + ph - (v / top) * ph;
  const parts: string[] = [];
  for (let v = 0; v <= top; v += step) {
    parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`);
    parts.push(`<text x="${L - 8}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${num(v)}</text>`);
  }
  buckets.forEach((b, i) => {
    const cx = L + i * slot + slot / 2;
    if (b.count > 0) {
      parts.push(`<rect class="s-bar" x="${(cx - bw / 2).toFixed(1)}" y="${y(b.count).toFixed(1)}" width="${bw.toFixed(1)}" height="${(y(0) - y(b.count)).toFixed(1)}" rx="2"><title>${escapeHtml(`${b.label}: ${b.count}`)}</title></rect>`);
      parts.push(`<text class="lbl" x="${cx.toFixed(1)}" y="${(y(b.count) - 5).toFixed(1)}" text-anchor="middle">${num(b.count)}</text>`);
    }
    parts.push(`<text x="${cx.toFixed(1)}" y="${H - B + 18}" text-anchor="middle">${escapeHtml(b.label)}</text>`);
  });
  parts.push(`<line class="axis" x1="${L}" x2="${W - R}" y1="${y(0)}" y2="${y(0)}"/>`);
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="greylist delay distribution" id="chart-delay">${parts.join('')}</svg>`;
}

function volumeTable(rows: readonly VolumeRow[], first: string): string {
  return tableHtml(
    [
      [first, ''],
      ['received', 'n'],
      ['rejected', 'n'],
      ['greylisted', 'n'],
      ['deferred', 'n'],
      ['delivered', 'n'],
      ['bounced', 'n'],
    ],
    rows.map((r) => [escapeHtml(r.label), num(r.received), num(r.rejected), num(r.greylisted), num(r.deferred), num(r.delivered), num(r.bounced)]),
  );
}

export function formatReportHtml(report: Report, opts: { title?: string } = {}): string {
  const t = report.totals;
  const share = new Map(report.verdicts.map((v) => [v.verdict, v.percent]));
  const title = opts.title ?? 'greygate report';
  const card = (n: number, label: string, color: string, sub: string): string =>
    `<div class="card" style="--c:var(--${color})"><div class="n">${num(n)}</div><div class="l">${escapeHtml(label)}</div><div class="p">${escapeHtml(sub)}</div></div>`;
  const cards = [
    card(t.received, 'received', 'received', pct(share.get('received') ?? 0)),
    card(t.rejected, 'rejected', 'rejected', pct(share.get('rejected') ?? 0)),
    card(t.greylisted, 'greylisted', 'greylisted', pct(share.get('greylisted') ?? 0)),
    card(t.deferred, 'deferred (4xx)', 'deferred', pct(share.get('deferred') ?? 0)),
    card(t.delivered, 'delivered', 'delivered', pct(share.get('delivered') ?? 0)),
    card(t.bounced, 'bounced', 'bounced', pct(share.get('bounced') ?? 0)),
  ].join('');

  const totals = tableHtml(
    [
      ['', 't'],
      ['count', 'n'],
      ['share', 'n'],
    ],
    [
      ['received', num(t.received), pct(share.get('received') ?? 0)],
      ['rejected (5xx)', num(t.rejected), pct(share.get('rejected') ?? 0)],
      ['deferred (4xx, not greylisting)', num(t.deferred), pct(share.get('deferred') ?? 0)],
      [`greylisted (${num(t.greylistedTriplets)} triplets)`, num(t.greylisted), pct(share.get('greylisted') ?? 0)],
      ['discarded', num(t.discarded), pct(share.get('discarded') ?? 0)],
      ['held', num(t.held), pct(share.get('held') ?? 0)],
      ['reject warnings', num(t.rejectWarnings), ''],
      ['delivered', num(t.delivered), pct(share.get('delivered') ?? 0)],
      ['bounced', num(t.bounced), pct(share.get('bounced') ?? 0)],
      ['expired', num(t.expired), pct(share.get('expired') ?? 0)],
      ['delivery deferrals', num(t.deliveryDeferrals), ''],
    ],
  );
  const more = tableHtml(
    [
      ['', 't'],
      ['', 'n'],
    ],
    [
      ['bytes received', escapeHtml(formatBytes(t.bytesReceived))],
      ['bytes delivered', escapeHtml(formatBytes(t.bytesDelivered))],
      ['connections', num(t.connections)],
      ['senders', num(t.senders)],
      ['sending hosts', num(t.sendingHosts)],
      ['recipients', num(t.recipients)],
      ['warnings', num(t.warnings)],
    ],
  );

  const rejects =
    report.rejects.length === 0
      ? '<p class="none">no rejects in the period</p>'
      : tableHtml(
          [
            ['count', 'n'],
            ['share', 'n'],
            ['4xx', 'n'],
            ['clients', 'n'],
            ['stage', ''],
            ['rule', 't'],
            ['last reply', ''],
          ],
          report.rejects.map((g) => [num(g.count), pct(g.percent), num(g.deferred), num(g.clients), escapeHtml(g.stage), escapeHtml(g.rule), `<span class="reply">${escapeHtml(g.reply)}</span>`]),
        );

  const g = report.greylist;
  const gl = [
    [g.replies, 'greylist replies (450)'],
    [g.triplets, 'triplets greylisted'],
    [g.passedTriplets, `passed after retry (${pct(g.passRate)})`],
    [g.neverRetried, 'never retried'],
    [g.passed, 'first passes after the delay'],
    [g.awlHits, 'auto-whitelist (AWL) passes'],
    [g.whitelistHits, 'whitelist passes'],
  ] as const;
  const delay = g.delay
    ? `<p class="muted">delay before the first pass: min ${formatSeconds(g.delay.min)}, median ${formatSeconds(g.delay.median)}, p90 ${formatSeconds(g.delay.p90)}, max ${formatSeconds(g.delay.max)}, mean ${formatSeconds(g.delay.mean)}</p>`
    : '';
  const reasons =
    g.passReasons.length === 0
      ? ''
      : `<h2 style="margin-top:14px">Passes by reason</h2>${tableHtml(
          [
            ['count', 'n'],
            ['reason', 't'],
          ],
          g.passReasons.map((e) => [num(e.count), escapeHtml(e.name)]),
        )}`;

  const deliveries =
    report.deliveries.length === 0
      ? '<p class="none">no deliveries in the period</p>'
      : tableHtml(
          [
            ['sent', 'n'],
            ['bytes', 'n'],
            ['defers', 'n'],
            ['bounced', 'n'],
            ['avg delay', 'n'],
            ['max delay', 'n'],
            ['relay', 't'],
          ],
          report.deliveries.map((d) => [num(d.delivered), escapeHtml(formatBytes(d.bytes)), num(d.deferred), num(d.bounced), d.delivered > 0 ? escapeHtml(formatSeconds(d.avgDelay)) : '-', d.delivered > 0 ? escapeHtml(formatSeconds(d.maxDelay)) : '-', escapeHtml(d.relay)]),
        );

  const hourTitle = report.perHour.unit === 'hour' ? 'Traffic per hour' : 'Traffic per hour of the day (summed over the days)';
  const perDay =
    report.perDay.length > 1
      ? `<section><h2>Traffic per day</h2>${volumeChart(report.perDay, report.perDay.map((r) => r.label.slice(5)), 'chart-days', 'day')}${LEGEND}<details><summary>table</summary>${volumeTable(report.perDay, 'date')}</details></section>`
      : '';

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>${escapeHtml(title)}</h1>
<p class="period">${escapeHtml(describePeriod(report))}</p>
<div class="cards">${cards}</div>
<section><h2>${escapeHtml(hourTitle)}</h2>
${volumeChart(report.perHour.rows, hourLabels(report.perHour.rows), 'chart-volume', 'hour')}
${LEGEND}
<details><summary>table</summary>${volumeTable(report.perHour.rows, report.perHour.unit === 'hour' ? 'hour' : 'time')}</details>
</section>
<div class="cols">
<section><h2>Grand totals</h2>${totals}</section>
<section><h2>Volume</h2>${more}</section>
</div>
${perDay}
<section><h2>Top reject rules</h2>
${rulesChart(report)}
<div class="legend"><span style="--c:var(--rejected)">5xx</span><span style="--c:var(--deferred)">4xx</span></div>
</section>
<section><h2>Rejects by stage and rule</h2>${rejects}</section>
<div class="cols">
${topSection('Top rejected clients', 'client', report.topRejected.clients)}
${topSection('Top rejected senders', 'sender', report.topRejected.senders)}
${topSection('Top rejected recipients', 'recipient', report.topRejected.recipients)}
</div>
<section><h2>Greylisting</h2>
<div class="kv">${gl.map(([n, l]) => `<span class="n">${num(n)}</span><span>${escapeHtml(l)}</span>`).join('')}</div>
${delay}
<h2 style="margin-top:14px">Delay before the first pass</h2>
${delayChart(report)}
${reasons}
</section>
<section><h2>Message delivery by relay</h2>${deliveries}</section>
<div class="cols">
${topSection('Top senders (received)', 'sender', report.topReceived.senders)}
${topSection('Top sending hosts (received)', 'client', report.topReceived.clients)}
${topSection('Top recipients (received)', 'recipient', report.topReceived.recipients)}
</div>
</main>
</body>
</html>
`;
}
