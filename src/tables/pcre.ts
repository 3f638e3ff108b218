/**
 * @module tables/pcre
 * SUMMARY: `pcre:FILE` — Postfix pcre_table(5) with PCRE2 syntax compiled to RE2 (see
 * pcre-syntax.ts). Flags as pcre_table(5): i (caseless, on by default), s (dotall, on by
 * default), m, x (free-spacing), A (anchored), E (dollar end only), U (ungreedy); X is
 * ignored with a warning as Postfix built with PCRE2 does. No legacy "/p1/!/p2/" pair (that is
 * regexp: only). openPcreTable() returns a pattern Table; hits carry FILE:LINE.
 * DIAGNOSTICS: a construct RE2 cannot run (lookaround, backreference, possessive or atomic
 * group, recursion, \K, ...) is an error naming it; the rule is skipped and the rest load.
 * Like regexp:, matching is per character (Postfix's PCRE runs without UTF, per byte).
 * SEE ALSO: pcre_table(5), pcre2pattern(3), Postfix dict_pcre.c.
 */
import { openRuleTable, type RuleTable } from './regexp-rules.js';

export function openPcreTable(spec: string, name: string, path: string): RuleTable {
  return openRuleTable('pcre', spec, name, path);
}
