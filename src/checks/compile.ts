/**
 * @module checks/compile
 * SUMMARY: one config snapshot's content checks: the header_checks, mime_header_checks,
 * nested_header_checks and body_checks table lists (Maps, null when the parameter is
 * empty) and the limits cleanup applies. compileChecks(config, openTable) returns a frozen
 * CompiledChecks; `active` is false when no list is set, so a caller can skip the filter.
 * DIAGNOSTICS: a table that cannot be opened is a surrogate whose lookups fail (the message
 * is tempfailed); load problems are in `problems`. A non-numeric limit throws ConfigError.
 * SEE ALSO: header_checks(5), postconf(5) body_checks_size_limit, cleanup_init.c.
 */
import type { Problem } from '../errors.js';
import type { Config } from '../config/config.js';
import { Maps } from '../tables/maps.js';
import type { Table } from '../tables/table.js';
import { DEFAULT_WALK_LIMITS, type WalkLimits } from './message-walk.js';

export interface CompiledChecks {
  /** header_checks: primary message headers. */
  readonly header: Maps | null;
  /** mime_header_checks: MIME headers anywhere, and every header of a MIME part. */
  readonly mimeHeader: Maps | null;
  /** nested_header_checks: non-MIME headers of attached messages. */
  readonly nestedHeader: Maps | null;
  /** body_checks: body lines (records). */
  readonly body: Maps | null;
  /** body_checks_size_limit: bytes of each body segment inspected; 0 means all. */
  readonly bodySizeLimit: number;
  readonly walk: WalkLimits;
  /** Any list is set: without one the filter changes nothing and may be skipped. */
  readonly active: boolean;
  /** Every load problem of every table named. */
  readonly problems: readonly Problem[];
}

/** Postfix defaults for parameters greygate may not register. */
const DEFAULTS: Readonly<Record<string, number>> = {
  header_size_limit: DEFAULT_WALK_LIMITS.headerSizeLimit,
  line_length_limit: DEFAULT_WALK_LIMITS.lineLengthLimit,
  mime_nesting_limit: DEFAULT_WALK_LIMITS.mimeNestingLimit,
  mime_boundary_length_limit: DEFAULT_WALK_LIMITS.mimeBoundaryLengthLimit,
  body_checks_size_limit: 51200,
};

function limit(config: Config, name: string): number {
  return config.has(name) ? config.int(name) : DEFAULTS[name]!;
}

export function compileChecks(config: Config, openTable: (spec: string) => Table): CompiledChecks {
  // mime_header_checks and nested_header_checks default to $header_checks: one Table each.
  const opened = new Map<string, Table>();
  const open = (spec: string): Table => {
    let t = opened.get(spec);
    if (t === undefined) {
      t = openTable(spec);
      opened.set(spec, t);
    }
    return t;
  };
  const maps = (param: string): Maps | null => {
    const specs = config.list(param);
    return specs.length === 0 ? null : new Maps(param, specs.map(open));
  };
  const header = maps('header_checks');
  const mimeHeader = maps('mime_header_checks');
  const nestedHeader = maps('nested_header_checks');
  const body = maps('body_checks');
  const anyHeader = header !== null || mimeHeader !== null || nestedHeader !== null;
  const disableMime = config.has('disable_mime_input_processing') && config.bool('disable_mime_input_processing');
  const walk: WalkLimits = Object.freeze({
    headerSizeLimit: Math.max(1, limit(config, 'header_size_limit')),
    lineLengthLimit: Math.max(2, limit(config, 'line_length_limit')),
    mimeNestingLimit: limit(config, 'mime_nesting_limit'),
    mimeBoundaryLengthLimit: Math.max(1, limit(config, 'mime_boundary_length_limit')),
    // cleanup sets MIME_OPT_REPORT_NESTING when any header check list is set (and MIME is on).
    reportNesting: anyHeader && !disableMime,
    disableMime,
  });
  return Object.freeze({
    header,
    mimeHeader,
    nestedHeader,
    body,
    bodySizeLimit: limit(config, 'body_checks_size_limit'),
    walk,
    active: anyHeader || body !== null,
    problems: Object.freeze([...opened.values()].flatMap((t) => t.problems)),
  });
}
