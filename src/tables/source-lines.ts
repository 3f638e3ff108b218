/**
 * @module tables/source-lines
 * SUMMARY: split a table source file into logical lines exactly as Postfix's readllines(3)
 * does for map files: a line starting with whitespace continues the previous one and is
 * appended as is (its leading whitespace kept, nothing inserted), comment and blank lines are
 * skipped even in the middle of a continuation, each logical line carries the number of its
 * first physical line. Exports readLogicalLines(); text is returned untrimmed.
 * DIAGNOSTICS: a logical line that starts with whitespace (nothing to continue) is dropped
 * and reported as an error Problem, where Postfix logs a warning and drops it too.
 * SEE ALSO: Postfix readlline.c; util/line-reader.ts (main.cf flavour: joins with one space).
 */
import type { Problem } from '../errors.js';

export interface SourceLine {
  /** 1-based number of the physical line the logical line starts on. */
  readonly line: number;
  readonly text: string;
}

const isSpace = (c: string | undefined): boolean =>
  c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';

/** True for an empty, whitespace-only or "#" comment physical line. */
function isIgnorable(raw: string): boolean {
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (isSpace(c)) continue;
    return c === '#';
  }
  return true;
}

export function readLogicalLines(source: string, file: string, problems: Problem[]): SourceLine[] {
  // Postfix splits on "\n" only: a "\r" stays in the text (and is trimmed as whitespace by
  // the table parsers), which is what `postmap` does with a CRLF file.
  const physical = source.split('\n');
  if (physical.length > 0 && physical[physical.length - 1] === '') physical.pop();
  const out: SourceLine[] = [];
  let current: { line: number; text: string } | null = null;
  const flush = (): void => {
    if (!current) return;
    if (isSpace(current.text[0])) {
      const shown = current.text.length > 30 ? `${current.text.slice(0, 30)}...` : current.text;
      problems.push({
        file,
        line: current.line,
        severity: 'error',
        message: `logical line must not start with whitespace: "${shown}"`,
      });
    } else {
      out.push(current);
    }
    current = null;
  };
  for (let i = 0; i < physical.length; i++) {
    const raw = physical[i]!;
    if (isIgnorable(raw)) continue;
    if (current && isSpace(raw[0])) {
      current.text += raw;
      continue;
    }
    flush();
    current = { line: i + 1, text: raw };
  }
  flush();
  return out;
}

/** Postfix trimblanks(): drop trailing whitespace. */
export function trimBlanks(s: string): string {
  let end = s.length;
  while (end > 0 && isSpace(s[end - 1])) end--;
  return end === s.length ? s : s.slice(0, end);
}

export { isSpace };
