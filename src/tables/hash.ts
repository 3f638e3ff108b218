/**
 * @module tables/hash
 * SUMMARY: `hash:FILE` — Postfix's indexed access table, read straight from the text source
 * FILE (no `postmap FILE` step and no FILE.db): openHashTable() returns a fixed, case-folding
 * Table whose hits carry FILE:LINE. Same parser and semantics as texthash: (text-table.ts).
 * DIAGNOSTICS: bad lines become Problems at FILE:LINE and are skipped; an unreadable FILE
 * throws the fs error, which tables/open.ts turns into a surrogate table.
 * SEE ALSO: postmap(1), access(5), DATABASE_README "hash".
 */
import type { Table } from './table.js';
import { openTextTable, type TextTableOptions } from './text-table.js';

export function openHashTable(spec: string, name: string, path: string, options: TextTableOptions = {}): Table {
  return openTextTable('hash', spec, name, path, options);
}
