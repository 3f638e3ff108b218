/**
 * @module mail/match-list
 * SUMMARY: the skeleton every Postfix pattern list shares (match_list.c): items in order,
 * "!" negation (repeatable), "/file/name" expanded in place, the first pattern that matches
 * decides, and a lookup error ends the walk as an error (fail closed). What one pattern
 * means (a CIDR, a host name, a type:table) is the caller's: compileMatchList() asks its
 * `pattern` function to turn each item into a test.
 * DIAGNOSTICS: "no pattern after '!'", unreadable files and files nested too deeply become
 * error Problems at the parameter's main.cf line; an unreadable file fails every lookup
 * that reaches it.
 * SEE ALSO: Postfix match_list.c, postconf(5) on "/file/name" and "type:table" patterns.
 */
import { readFileSync } from 'node:fs';
import type { Problem } from '../errors.js';
import { logicalLines } from '../util/line-reader.js';
import { splitList } from '../config/expand.js';

export type MatchResult = boolean | 'error';

export interface MatchList<Q> {
  match(query: Q): MatchResult;
}

export interface MatchListOptions {
  /** Parameter name and where it is set, for Problems. */
  readonly param: string;
  readonly file: string;
  readonly line: number;
  /** Reads /file/name entries; defaults to readFileSync. */
  readFile?(path: string): string;
}

/** Report a problem about this list; error by default. */
export type ReportProblem = (message: string, severity?: 'error' | 'warning') => void;

const MAX_FILE_DEPTH = 10;

/**
 * Compile ITEMS into a first-match list. PATTERN turns one item (negation already removed)
 * into its test, or null when the item was reported as unusable and should be skipped.
 */
export function compileMatchList<Q>(
  items: readonly string[],
  opts: MatchListOptions,
  problems: Problem[],
  pattern: (item: string, problem: ReportProblem) => ((q: Q) => MatchResult) | null,
): MatchList<Q> {
  const entries: Array<{ negate: boolean; test: (q: Q) => MatchResult }> = [];
  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const problem: ReportProblem = (message, severity = 'error') => {
    problems.push({ file: opts.file, line: opts.line, severity, message: `${opts.param}: ${message}` });
  };
  const add = (raw: string, negated: boolean, depth: number): void => {
    let negate = negated;
    let item = raw;
    while (item.startsWith('!')) {
      negate = !negate;
      item = item.slice(1);
    }
    if (item === '') {
      problem(`no pattern after '!'`);
      return;
    }
    if (item.startsWith('/')) {
      if (depth >= MAX_FILE_DEPTH) {
        problem(`${item}: files nested too deeply`);
        return;
      }
      let text: string;
      try {
        text = readFile(item);
      } catch (err) {
        problem(`open file ${item}: ${(err as Error).message}`);
        // The list is unusable: fail closed on every lookup that reaches this entry.
        entries.push({ negate, test: () => 'error' });
        return;
      }
      for (const l of logicalLines(text)) for (const sub of splitList(l.text)) add(sub, negate, depth + 1);
      return;
    }
    const test = pattern(item, problem);
    if (test) entries.push({ negate, test });
  };
  for (const item of items) add(item, false, 0);
  return {
    match(query: Q): MatchResult {
      for (const e of entries) {
        const r = e.test(query);
        if (r === 'error') return 'error';
        if (r) return !e.negate;
      }
      return false;
    },
  };
}

/** A host name pattern: exact, or any subdomain (parent style) or ".domain" subdomains. */
export function hostnameMatch(name: string, pattern: string, parentMatches: boolean): boolean {
  if (name === pattern) return true;
  if (parentMatches) return name.length > pattern.length && name.endsWith(pattern) && name[name.length - pattern.length - 1] === '.';
  return pattern.startsWith('.') && name.length > pattern.length && name.endsWith(pattern);
}
