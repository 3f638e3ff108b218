/**
 * @module tables/static
 * SUMMARY: `static:VALUE` and `static:{ value with spaces }` — every lookup returns VALUE
 * (dict_static.c). openStaticTable() returns a fixed Table whose hits carry the spec as source.
 * DIAGNOSTICS: unbalanced braces give a surrogate table with Postfix's "bad static:name
 * syntax" reason.
 * SEE ALSO: Postfix dict_static.c, DATABASE_README "static".
 */
import type { LookupResult, Table } from './table.js';
import { extpar } from './braces.js';
import { openSurrogateTable } from './surrogate.js';

export function openStaticTable(spec: string, name: string): Table {
  let value = name;
  if (name.startsWith('{')) {
    const r = extpar(name);
    if (r.error !== undefined) return openSurrogateTable('static', spec, spec, `bad static:name syntax: ${r.error}`);
    value = r.text;
  }
  const hit: LookupResult = Object.freeze({ kind: 'hit', value, source: spec });
  return Object.freeze({
    type: 'static',
    spec,
    flags: Object.freeze({ fixed: true, foldCase: false }),
    problems: Object.freeze([]),
    lookup: (): LookupResult => hit,
  });
}
