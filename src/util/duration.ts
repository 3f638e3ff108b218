/**
 * @module util/duration
 * SUMMARY: Postfix time values ("300s", "5m", "2h", "35d", "1w") to and from milliseconds.
 * parseDuration() returns null for text that is not a time value; the caller reports it.
 * A bare number takes the parameter's default unit, as Postfix's time parameters do.
 * SEE ALSO: postconf(5) "time units".
 */

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

export type TimeUnit = 's' | 'm' | 'h' | 'd' | 'w' | 'ms';

export function parseDuration(text: string, defaultUnit: TimeUnit = 's'): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|[smhdw])?\s*$/i.exec(text);
  if (!m) return null;
  const unit = (m[2] ?? defaultUnit).toLowerCase();
  const factor = UNIT_MS[unit];
  if (factor === undefined) return null;
  return Math.round(Number(m[1]) * factor);
}

/** The shortest exact Postfix spelling of a duration ("300s" -> "5m"). */
export function formatDuration(ms: number): string {
  for (const unit of ['w', 'd', 'h', 'm', 's'] as const) {
    const f = UNIT_MS[unit]!;
    if (ms >= f && ms % f === 0) return `${ms / f}${unit}`;
  }
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
