/**
 * @module tables/texthash
 * SUMMARY: `texthash:FILE` — Postfix's flat-text table (dict_thash.c): openTexthashTable()
 * reads FILE into memory; fixed keys, case-folded, first entry of a duplicate wins.
 * DIAGNOSTICS: bad lines become Problems at FILE:LINE and are skipped; an unreadable FILE
 * throws the fs error, which tables/open.ts turns into a surrogate table.
 * SEE ALSO: Postfix dict_thash.c, postmap(1).
 */
import type { Table } from './table.js';
import { openTextTable, type TextTableOptions } from './text-table.js';

export function openTexthashTable(spec: string, name: string, path: string, options: TextTableOptions = {}): Table {
  return openTextTable('texthash', spec, name, path, options);
}
