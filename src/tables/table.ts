/**
 * @module tables/table
 * SUMMARY: the one interface every lookup table implements (Postfix's DICT), and its result.
 * lookup() is synchronous: every table type greygate has is loaded into memory when opened.
 * A miss and a failure are different results: a failure carries a TableError whose kind
 * ('retry' | 'config') decides between 451 4.3.0 and 451 4.3.5 at the caller.
 * SEE ALSO: Postfix dict.h, dict_open.c, maps.c.
 */
import type { Problem, TableError } from '../errors.js';

export type LookupResult =
  | { readonly kind: 'hit'; readonly value: string; /** FILE:LINE of the entry, or TYPE:NAME */ readonly source: string }
  | { readonly kind: 'miss' }
  | { readonly kind: 'error'; readonly error: TableError };

export interface TableFlags {
  /**
   * Exact-key table (DICT_FLAG_FIXED): access(5) partial keys (parent domains, user@,
   * truncated IPs) are tried against it. Pattern tables (regexp, pcre, cidr) see only the
   * full key.
   */
  readonly fixed: boolean;
  /** The table lowercases keys itself (hash, texthash, inline); callers pass keys as they are. */
  readonly foldCase: boolean;
}

export interface Table {
  /** "hash", "texthash", "regexp", "pcre", "cidr", "inline", "static". */
  readonly type: string;
  /** The reference as configured, e.g. "hash:client_access" or "inline:{a=b}". */
  readonly spec: string;
  /** Absolute path of the source file, for file-backed tables. */
  readonly path?: string;
  readonly flags: TableFlags;
  /** Problems found when loading (bad lines are skipped, as Postfix does). */
  readonly problems: readonly Problem[];
  lookup(key: string): LookupResult;
}
