/**
 * @module tables/aliases
 * SUMMARY: the aliases(5) source format ("name: value, value, ...") that Postfix's postalias
 * builds hash: tables from, for tables named by alias_maps: parseAliasesSource() returns
 * entries keyed by the folded, unquoted name, with the value list normalised to "a, b, c" as
 * `postalias -q` prints it. Continuation lines and # comments as in every table file.
 * DIAGNOSTICS: "need name:value pair" and "name must be local" (an @ or % in the name) are
 * error Problems at FILE:LINE and skip the entry; a duplicate name is a warning, first wins.
 * SEE ALSO: aliases(5), postalias(1), Postfix postalias.c.
 */
import type { Problem } from '../errors.js';
import { readLogicalLines } from './source-lines.js';
import { foldKey, type TextEntry } from './text-table.js';

/** Split TEXT at unquoted occurrences of SEP (double quotes, backslash escapes). */
function splitUnquoted(text: string, sep: string, limit = Infinity): string[] {
  const out: string[] = [];
  let inQuotes = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') i++;
    else if (c === '"') inQuotes = !inQuotes;
    else if (c === sep && !inQuotes && out.length < limit) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

/** "quoted name" -> quoted name (the internal form postalias stores). */
function unquote(name: string): string {
  let out = '';
  let inQuotes = false;
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '\\' && i + 1 < name.length) out += name[++i];
    else if (c === '"') inQuotes = !inQuotes;
    else if (inQuotes || !/\s/.test(c)) out += c;
  }
  return out;
}

export function parseAliasesSource(source: string, file: string, problems: Problem[]): Map<string, TextEntry> {
  const entries = new Map<string, TextEntry>();
  for (const { line, text } of readLogicalLines(source, file, problems)) {
    const [rawKey = '', rawValue] = splitUnquoted(text, ':', 1);
    const key = rawKey.trim();
    const values = rawValue === undefined ? [] : splitUnquoted(rawValue, ',').map((v) => v.trim()).filter((v) => v !== '');
    if (key === '' || values.length === 0 || splitUnquoted(key, ',').length > 1) {
      problems.push({ file, line, severity: 'error', message: 'need name:value pair' });
      continue;
    }
    if (splitUnquoted(key, '@').length > 1 || splitUnquoted(key, '%').length > 1) {
      problems.push({ file, line, severity: 'error', message: 'name must be local' });
      continue;
    }
    const folded = foldKey(unquote(key));
    if (entries.has(folded)) {
      problems.push({ file, line, severity: 'warning', message: `duplicate entry: "${unquote(key)}"` });
      continue;
    }
    entries.set(folded, { value: values.join(', '), line });
  }
  return entries;
}
