/**
 * @module tables/maps
 * SUMMARY: an ordered list of tables searched as one (Postfix maps.c): the first hit wins,
 * and a failure is never taken for a miss — the search stops and returns the error, so the
 * caller can fail closed (451 4.3.x). Exports class Maps { lookup(key, {fixedOnly}) }.
 * DIAGNOSTICS: an empty key is a miss (maps_find()'s guard); a hit with an empty value is a
 * 'config' error ("... returns an empty string result"), as maps_find() treats it.
 * SEE ALSO: Postfix maps.c, access(5), smtpd_check.c.
 */
import { TableError, type Problem } from '../errors.js';
import type { LookupResult, Table } from './table.js';
import { MISS } from './text-table.js';

export interface MapsLookupOptions {
  /**
   * Only consult exact-key tables (DICT_FLAG_FIXED), as maps_find() does for the partial
   * keys of access(5) (parent domains, user@, truncated addresses).
   */
  readonly fixedOnly?: boolean;
}

export class Maps {
  /** What the list is for, e.g. "smtpd_client_restrictions", used in error texts. */
  readonly title: string;
  readonly tables: readonly Table[];

  constructor(title: string, tables: readonly Table[]) {
    this.title = title;
    this.tables = Object.freeze([...tables]);
  }

  /** Every load problem of every table in the list. */
  get problems(): Problem[] {
    return this.tables.flatMap((t) => t.problems);
  }

  lookup(key: string, options: MapsLookupOptions = {}): LookupResult {
    if (key === '') return MISS;
    for (const table of this.tables) {
      if (options.fixedOnly && !table.flags.fixed) continue;
      const r = table.lookup(key);
      if (r.kind === 'miss') continue;
      if (r.kind === 'hit' && r.value === '') {
        return {
          kind: 'error',
          error: new TableError('config', table.spec, `${this.title} lookup of ${key} returns an empty string result; a table should return no result when not found`),
        };
      }
      return r;
    }
    return MISS;
  }
}
