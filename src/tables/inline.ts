/**
 * @module tables/inline
 * SUMMARY: `inline:{ key=value, key2=value2 }` (Postfix 3.0) — an in-memory fixed table
 * written in main.cf itself; `{ key = value with spaces, or commas }` as one element keeps
 * spaces and commas in the value. openInlineTable() folds keys like hash:; a later duplicate
 * replaces an earlier one (dict_inline.c has no duplicate check). Hits carry the spec as source.
 * DIAGNOSTICS: any syntax error gives a surrogate table whose reason is Postfix's text, e.g.
 * `missing '=' after attribute name: "inline:{ a }"; need "inline:{name=value...}"`.
 * SEE ALSO: Postfix dict_inline.c, DATABASE_README "inline".
 */
import type { LookupResult, Table } from './table.js';
import { balpar, extpar, splitOutsideBraces, splitQNameVal } from './braces.js';
import { openSurrogateTable } from './surrogate.js';
import { foldKey, MISS } from './text-table.js';

export function openInlineTable(spec: string, name: string): Table {
  const need = `"inline:${name}"; need "inline:{name=value...}"`;
  const fail = (why: string): Table => openSurrogateTable('inline', spec, spec, `${why}: ${need}`);
  const len = balpar(name);
  if (len === 0 || len !== name.length || len === 2) return fail('bad syntax');
  const entries = new Map<string, string>();
  for (let token of splitOutsideBraces(name.slice(1, -1))) {
    if (token.startsWith('{')) {
      const r = extpar(token);
      if (r.error !== undefined) return fail(r.error);
      token = r.text;
    }
    const kv = splitQNameVal(token);
    if ('error' in kv) return fail(kv.error);
    entries.set(foldKey(kv.key), kv.value);
  }
  if (entries.size === 0) return fail('empty table');
  return Object.freeze({
    type: 'inline',
    spec,
    flags: Object.freeze({ fixed: true, foldCase: true }),
    problems: Object.freeze([]),
    lookup(key: string): LookupResult {
      const value = entries.get(foldKey(key));
      return value === undefined ? MISS : { kind: 'hit', value, source: spec };
    },
  });
}
