/**
 * @module config/parse
 * SUMMARY: main.cf text -> ordered `name = value` entries with their line numbers (pure).
 * Lines follow Postfix syntax: "#" comments, whitespace-led continuation lines.
 * DIAGNOSTICS: a line that is not `name = value` becomes an error Problem and is skipped;
 * a repeated name is a warning and the later entry wins, as postconf(1) says.
 * SEE ALSO: postconf(5) "syntax".
 */
import type { Problem } from '../errors.js';
import { logicalLines } from '../util/line-reader.js';

export interface ConfigEntry {
  readonly name: string;
  readonly value: string;
  readonly line: number;
}

export interface ParsedConfig {
  readonly entries: ReadonlyMap<string, ConfigEntry>;
  readonly problems: Problem[];
}

export function parseMainCf(file: string, text: string): ParsedConfig {
  const entries = new Map<string, ConfigEntry>();
  const problems: Problem[] = [];
  for (const { line, text: l } of logicalLines(text)) {
    const eq = l.indexOf('=');
    if (eq < 0) {
      problems.push({ file, line, severity: 'error', message: `missing '=' after parameter name: "${l}"` });
      continue;
    }
    const name = l.slice(0, eq).trim();
    const value = l.slice(eq + 1).trim();
    if (!/^[A-Za-z0-9_]+$/.test(name)) {
      problems.push({ file, line, severity: 'error', message: `bad parameter name: "${name}"` });
      continue;
    }
    const prev = entries.get(name);
    if (prev) {
      problems.push({ file, line, severity: 'warning', message: `overriding earlier entry at line ${prev.line}: ${name}=${prev.value}` });
    }
    entries.set(name, { name, value, line });
  }
  return { entries, problems };
}
