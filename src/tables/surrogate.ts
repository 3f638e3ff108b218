/**
 * @module tables/surrogate
 * SUMMARY: the table that stands in for one that could not be opened (dict_surrogate.c):
 * openSurrogateTable() returns a Table whose every lookup fails with
 * `{kind:'error', error: TableError('config', spec, reason)}` and whose `problems` holds the
 * reason as an error Problem at FILE (line 0) or at the spec.
 * DIAGNOSTICS: none at lookup; the caller decides whether a surrogate is fatal (a command) or
 * a degraded mode (the daemon fails closed: 451 4.3.5 Server configuration error).
 * SEE ALSO: Postfix dict_surrogate.c, smtpd_check.c (fail closed).
 */
import { TableError, type Problem } from '../errors.js';
import type { LookupResult, Table } from './table.js';

/** A Table flagged as a surrogate (open failed). */
export interface SurrogateTable extends Table {
  readonly surrogate: true;
  readonly reason: string;
}

export function openSurrogateTable(type: string, spec: string, where: string, reason: string, path?: string): SurrogateTable {
  const problem: Problem = Object.freeze({ file: where, line: 0, severity: 'error', message: reason });
  // Postfix gives a surrogate DICT_FLAG_PATTERN: only full keys reach it, and they all fail.
  const table: SurrogateTable = {
    type,
    spec,
    flags: Object.freeze({ fixed: false, foldCase: false }),
    problems: Object.freeze([problem]),
    surrogate: true,
    reason,
    lookup(): LookupResult {
      return { kind: 'error', error: new TableError('config', spec, reason) };
    },
    ...(path !== undefined ? { path } : {}),
  };
  return Object.freeze(table);
}

export function isSurrogate(t: Table): t is SurrogateTable {
  return (t as Partial<SurrogateTable>).surrogate === true;
}
