/**
 * @module bench/lib/table
 * SUMMARY: statistics and printing for benchmark results: median(values), formatRate(n),
 * formatRatio(a, b), renderTable(headers, rows) -> a Markdown table padded to line up in a
 * terminal, so the same text reads well on stdout and pastes into bench/README.md.
 * SEE ALSO: /work/shared/peers.md (the reference table this output mirrors).
 */

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function formatRate(rate: number): string {
  if (!Number.isFinite(rate)) return '—';
  return Math.round(rate).toLocaleString('en-US');
}

export function formatRatio(numerator: number, denominator: number): string {
  if (!Number.isFinite(numerator) || !Number.isFinite(denominator) || denominator === 0) return '—';
  return `${(numerator / denominator).toFixed(2)}×`;
}

/** First column left-aligned (labels), the others right-aligned (numbers). */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length), 3));
  const cell = (text: string, i: number): string => (i === 0 ? text.padEnd(widths[i]!) : text.padStart(widths[i]!));
  const line = (cells: readonly string[]): string => `| ${headers.map((_, i) => cell(cells[i] ?? '', i)).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `)).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}
