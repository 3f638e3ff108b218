/**
 * @module util/line-reader
 * SUMMARY: split Postfix-style text files into logical lines with their first line number.
 * A line starting with whitespace continues the previous logical line; empty lines and lines
 * whose first non-blank character is "#" are skipped (readlline(3) in Postfix).
 * A continuation is appended as Postfix does: the newline goes, its leading whitespace stays.
 * SEE ALSO: postconf(5) "syntax", regexp_table(5), access(5).
 */

export interface LogicalLine {
  /** 1-based number of the physical line the logical line starts on. */
  readonly line: number;
  readonly text: string;
}

export function logicalLines(source: string): LogicalLine[] {
  const out: LogicalLine[] = [];
  const physical = source.split(/\r?\n/);
  let current: { line: number; text: string } | null = null;
  for (let i = 0; i < physical.length; i++) {
    const raw = physical[i]!;
    const trimmedStart = raw.trimStart();
    if (trimmedStart === '' || trimmedStart.startsWith('#')) continue;
    if (raw.length !== trimmedStart.length && current) {
      current.text += raw.trimEnd();
      continue;
    }
    if (current) out.push(current);
    // A first line that starts with whitespace has nothing to continue; take it as is.
    current = { line: i + 1, text: trimmedStart.trimEnd() };
  }
  if (current) out.push(current);
  return out;
}
