/**
 * @module tables/regexp
 * SUMMARY: `regexp:FILE` (regexp_table(5)): POSIX ERE, case-insensitive unless flag i, `.`
 * matching newline unless flag m, compiled to RE2 via posix-ere.ts. openRegexpTable() returns
 * a pattern Table (keys keep their case); hits carry FILE:LINE. DIAGNOSTICS: regexp-rules.ts.
 * Known differences from Postfix (glibc, C locale): RE2 is leftmost-first, not leftmost-
 * longest, so $n after an alternation can differ (/(a|ab)/ on "ab": Postfix "ab", here "a");
 * matching is per character, not byte, and case folding covers non-ASCII letters;
 * backreferences and flag x (POSIX BRE) are refused. SEE ALSO: regexp_table(5), dict_regexp.c.
 */
import { openRuleTable, type RuleTable } from './regexp-rules.js';

export function openRegexpTable(spec: string, name: string, path: string): RuleTable {
  return openRuleTable('regexp', spec, name, path);
}
