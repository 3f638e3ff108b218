/**
 * @module tables/text-table
 * SUMMARY: the "key whitespace value" source format shared by hash: and texthash: (the parser
 * of postmap.c and dict_thash.c), loaded into memory with keys case-folded at load and at
 * lookup (DICT_FLAG_FOLD_FIX). Exports parseKeyValueSource(), openTextTable() and foldKey().
 * The key ends at the first whitespace outside double quotes, a backslash protects the next
 * character, and the key is kept in its quoted form (postmap does not unquote it).
 * DIAGNOSTICS: a line without a value or with an unbalanced quote is an error Problem and is
 * skipped; a duplicate key is a warning and the first entry wins (postmap's DICT_FLAG_DUP_WARN);
 * a "key: value" line is a warning ("is this an alias file?").
 * SEE ALSO: postmap(1), Postfix postmap.c, dict_thash.c, access(5).
 */
import { readFileSync } from 'node:fs';
import { TableError, type Problem } from '../errors.js';
import type { LookupResult, Table, TableFlags } from './table.js';
import { readLogicalLines, trimBlanks, isSpace } from './source-lines.js';
import { parseAliasesSource } from './aliases.js';

export interface TextEntry {
  readonly value: string;
  readonly line: number;
}

/**
 * Postfix folds fixed-table keys with casefold() when SMTPUTF8 is on (the default since
 * compatibility_level 1). toUpperCase().toLowerCase() approximates full Unicode case folding
 * (ß -> ss, final sigma -> sigma) better than toLowerCase() alone.
 */
export function foldKey(key: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(key)) return key.toLowerCase();
  return key.toUpperCase().toLowerCase();
}

export function parseKeyValueSource(
  source: string,
  file: string,
  problems: Problem[],
): Map<string, TextEntry> {
  const entries = new Map<string, TextEntry>();
  for (const { line, text } of readLogicalLines(source, file, problems)) {
    let inQuotes = false;
    let i = 0;
    for (; i < text.length; i++) {
      const c = text[i];
      if (c === '\\') {
        i++;
        if (i >= text.length) break;
      } else if (isSpace(c)) {
        if (!inQuotes) break;
      } else if (c === '"') {
        inQuotes = !inQuotes;
      }
    }
    if (inQuotes) {
      problems.push({ file, line, severity: 'error', message: `unbalanced '"' in '${text}' -- ignoring this line` });
      continue;
    }
    const key = text.slice(0, Math.min(i, text.length));
    let v = i + 1;
    while (v < text.length && isSpace(text[v])) v++;
    const value = trimBlanks(text.slice(Math.min(v, text.length)));
    if (key === '' || value === '') {
      problems.push({ file, line, severity: 'error', message: 'expected format: key whitespace value -- ignoring this line' });
      continue;
    }
    if (key.endsWith(':')) {
      problems.push({ file, line, severity: 'warning', message: 'record is in "key: value" format; is this an alias file?' });
    }
    const folded = foldKey(key);
    if (entries.has(folded)) {
      problems.push({ file, line, severity: 'warning', message: `duplicate entry: "${key}"` });
      continue;
    }
    entries.set(folded, { value, line });
  }
  return entries;
}

const FIXED_FOLDED: TableFlags = Object.freeze({ fixed: true, foldCase: true });

/** How a hash:/texthash: source is read: postmap's "key value" or postalias's "name: value". */
export interface TextTableOptions {
  /** The table is named by alias_maps: read it in aliases(5) format, as postalias does. */
  readonly aliases?: boolean;
}

/** A file-backed in-memory key/value table of TYPE (hash or texthash). */
export function openTextTable(type: string, spec: string, name: string, path: string, options: TextTableOptions = {}): Table {
  const problems: Problem[] = [];
  const source = readFileSync(path, 'utf8');
  const entries = options.aliases ? parseAliasesSource(source, name, problems) : parseKeyValueSource(source, name, problems);
  return Object.freeze({
    type,
    spec,
    path,
    flags: FIXED_FOLDED,
    problems: Object.freeze(problems),
    lookup(key: string): LookupResult {
      const e = entries.get(foldKey(key));
      return e ? { kind: 'hit', value: e.value, source: `${name}:${e.line}` } : MISS;
    },
  });
}

export const MISS: LookupResult = Object.freeze({ kind: 'miss' });

/** A lookup failure of the kind every surrogate and broken table returns. */
export function configError(spec: string, reason: string): LookupResult {
  return { kind: 'error', error: new TableError('config', spec, reason) };
}
