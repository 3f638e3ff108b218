/**
 * @module tables/regexp-rules
 * SUMMARY: the rule-file engine of regexp: and pcre: (dict_regexp.c, dict_pcre.c): any
 * delimiter, `!` negation, regexp's `/p1/!/p2/` pair, nested IF/ENDIF, `$1 ${1} $(1) $$`.
 * Exports loadRuleSource() -> RuleProgram and openRuleTable(). RE2.Set prefilters make a
 * miss cost one Set scan whatever the rule count, with Postfix's file-order semantics intact.
 * DIAGNOSTICS: a bad rule is an error Problem at FILE:LINE in Postfix's words (or naming the
 * construct RE2 lacks) and is skipped; a stray ENDIF, a missing ENDIF, a missing result and
 * text after IF/ENDIF are warnings. Everything is checked at load; a lookup never fails.
 * SEE ALSO: regexp_table(5), pcre_table(5), Postfix dict_regexp.c, dict_pcre.c, mac_parse.c.
 */
import { readFileSync } from 'node:fs';
import RE2 from 're2';
import type { Problem } from '../errors.js';
import type { LookupResult, Table } from './table.js';
import { readLogicalLines, trimBlanks, isSpace } from './source-lines.js';
import { translatePosixEre, type Translation } from './posix-ere.js';
import { translatePcre, type PcreFlags } from './pcre-syntax.js';
import { MISS } from './text-table.js';

export type RuleDialect = 'regexp' | 'pcre';

interface CompiledPattern {
  readonly re: RE2;
  readonly negate: boolean;
  /** Number of capturing groups, for the $n range check. */
  readonly groups: number;
}

type ReplacementPart = string | number;

type Rule =
  | {
      readonly op: 'match';
      readonly line: number;
      readonly first: CompiledPattern;
      readonly second: CompiledPattern | null;
      readonly parts: readonly ReplacementPart[];
      readonly maxSub: number;
    }
  | { readonly op: 'if'; readonly line: number; readonly cond: CompiledPattern; endif: number }
  | { readonly op: 'endif'; readonly line: number };

export interface RuleHit {
  readonly value: string;
  readonly line: number;
}

class RuleError extends Error {
  constructor(
    message: string,
    readonly severity: 'error' | 'warning' = 'error',
  ) {
    super(message);
  }
}

const isAlnum = (c: string | undefined): boolean => c !== undefined && /^[A-Za-z0-9]$/.test(c);
const skipping = (m: string): string => (m.endsWith('skipping this rule') ? m : `${m}: skipping this rule`);

type Syntax = { readonly dialect: 'regexp'; readonly icase: boolean; readonly newline: boolean; readonly basic: boolean } | { readonly dialect: 'pcre'; readonly flags: PcreFlags };

interface RawPattern {
  readonly text: string;
  readonly negate: boolean;
  readonly syntax: Syntax;
}

/** The flags after the closing delimiter, checked as Postfix does while reading the rule. */
function parseOptions(dialect: RuleDialect, options: string, warn: (m: string) => void): Syntax {
  if (dialect === 'regexp') {
    let icase = true;
    let newline = false;
    let basic = false;
    for (const f of options) {
      if (f === 'i') icase = !icase;
      else if (f === 'm') newline = !newline;
      else if (f === 'x') basic = !basic;
      else throw new RuleError(`unknown regexp option "${f}": skipping this rule`);
    }
    return { dialect, icase, newline, basic };
  }
  const flags = { caseless: true, dotall: true, multiline: false, extended: false, anchored: false, dollarEndOnly: false, ungreedy: false };
  for (const f of options) {
    switch (f) {
      case 'i':
        flags.caseless = !flags.caseless;
        break;
      case 's':
        flags.dotall = !flags.dotall;
        break;
      case 'm':
        flags.multiline = !flags.multiline;
        break;
      case 'x':
        flags.extended = !flags.extended;
        break;
      case 'A':
        flags.anchored = !flags.anchored;
        break;
      case 'E':
        flags.dollarEndOnly = !flags.dollarEndOnly;
        break;
      case 'U':
        flags.ungreedy = !flags.ungreedy;
        break;
      case 'X':
        // PCRE2 dropped PCRE_EXTRA; Postfix built with PCRE2 warns and ignores it.
        warn('ignoring obsolete regexp option "X"');
        break;
      default:
        throw new RuleError(`unknown regexp option "${f}": skipping this rule`);
    }
  }
  return { dialect, flags };
}

/** dict_regexp_get_pat() / dict_pcre_get_pattern(): "!/pattern/flags" at text[pos]. */
function getPattern(dialect: RuleDialect, text: string, pos: number, warn: (m: string) => void): { pattern: RawPattern; next: number } {
  let negate = false;
  let p = pos;
  for (; p < text.length; p++) {
    if (text[p] === '!') negate = !negate;
    else if (!isSpace(text[p])) break;
  }
  if (p >= text.length) throw new RuleError('no regexp: skipping this rule');
  const delim = text[p]!;
  const start = ++p;
  while (p < text.length) {
    if (text[p] === '\\') {
      if (p + 1 < text.length) p++;
      else break;
    } else if (text[p] === delim) break;
    p++;
  }
  if (p >= text.length || text[p] !== delim) {
    throw new RuleError(`no closing regexp delimiter "${delim}": ${dialect === 'pcre' ? 'ignoring' : 'skipping'} this rule`);
  }
  const body = text.slice(start, p++);
  const optStart = p;
  // regexp stops the flags at "!" for the legacy "/p1/!/p2/" pair; pcre has no such pair.
  while (p < text.length && !isSpace(text[p]) && !(dialect === 'regexp' && text[p] === '!')) p++;
  return { pattern: { text: body, negate, syntax: parseOptions(dialect, text.slice(optStart, p), warn) }, next: p };
}

/** Compile one raw pattern with its flags, or throw RuleError with the reason. */
function compilePattern(raw: RawPattern, warn: (m: string) => void): CompiledPattern {
  let translation: Translation;
  const syntax = raw.syntax;
  if (syntax.dialect === 'regexp') {
    if (syntax.basic) {
      throw new RuleError(
        'flag "x" selects POSIX basic regular expressions, which greygate does not support; write the pattern as an extended regular expression without "x": skipping this rule',
      );
    }
    translation = translatePosixEre(raw.text, { icase: syntax.icase, newline: syntax.newline });
  } else {
    translation = translatePcre(raw.text, syntax.flags);
  }
  if ('error' in translation) throw new RuleError(skipping(translation.error));
  for (const w of translation.warnings ?? []) warn(w);
  let re: RE2;
  try {
    re = new RE2(translation.source, 'u');
  } catch (e) {
    throw new RuleError(skipping(`RE2 cannot compile this pattern: ${(e as Error).message}`));
  }
  return { re, negate: raw.negate, groups: translation.groups };
}

/** mac_parse() + the dict_regexp prescan: literal text and $n references; $$ is "$". */
export function parseReplacement(dialect: RuleDialect, text: string): { parts: ReplacementPart[]; maxSub: number } {
  const parts: ReplacementPart[] = [];
  let literal = '';
  let maxSub = 0;
  const bad = (why: string): RuleError => new RuleError(`bad replacement syntax: ${why}: skipping this rule`);
  for (let i = 0; i < text.length; ) {
    const c = text[i]!;
    if (c !== '$') {
      literal += c;
      i++;
      continue;
    }
    if (text[i + 1] === '$') {
      literal += '$';
      i += 2;
      continue;
    }
    if (literal) parts.push(literal);
    literal = '';
    i++;
    let name: string;
    const open = text[i];
    if (open === '{' || open === '(') {
      const close = open === '{' ? '}' : ')';
      let level = 1;
      let e = i + 1;
      for (; level > 0; e++) {
        if (e >= text.length) throw bad(`truncated macro reference: "${text}"`);
        if (text[e] === open) level++;
        if (text[e] === close) level--;
      }
      name = text.slice(i + 1, e - 1);
      i = e;
    } else {
      let e = i;
      while (e < text.length && /[A-Za-z0-9_]/.test(text[e]!)) e++;
      name = text.slice(i, e);
      i = e;
    }
    if (name === '') throw bad(`empty macro name: "${text}"`);
    if (!/^[0-9]+$/.test(name)) throw bad(`non-numeric replacement index "${name}"`);
    const n = Number(name);
    if (n < 1) throw bad(`${dialect === 'regexp' ? 'out-of-range' : 'out of range'} replacement index "${name}"`);
    if (n > maxSub) maxSub = n;
    parts.push(n);
  }
  if (literal) parts.push(literal);
  return { parts, maxSub };
}

/** dict_regexp_parseline(): one logical line -> rule (null: nothing to add). */
function parseLine(dialect: RuleDialect, text: string, line: number, nesting: number, warn: (m: string) => void): Rule | null {
  if (!isAlnum(text[0])) {
    const first = getPattern(dialect, text, 0, warn);
    let p = first.next;
    let second: RawPattern | null = null;
    if (dialect === 'regexp' && text[p] === '!') {
      const s = getPattern(dialect, text, p, warn);
      second = s.pattern;
      p = s.next;
    }
    while (p < text.length && isSpace(text[p])) p++;
    const result = text.slice(p);
    if (result === '') warn('no replacement text: using empty string');
    const { parts, maxSub } = parseReplacement(dialect, result);
    if (maxSub > 0 && first.pattern.negate) {
      throw new RuleError('$number found in negative match replacement text: skipping this rule');
    }
    const firstRe = compilePattern(first.pattern, warn);
    if (maxSub > firstRe.groups) throw new RuleError(`out of range replacement index "${maxSub}": skipping this rule`);
    const secondRe = second ? compilePattern(second, warn) : null;
    return { op: 'match', line, first: firstRe, second: secondRe, parts, maxSub };
  }
  if (/^if/i.test(text) && !isAlnum(text[2])) {
    let p = 2;
    while (p < text.length && isSpace(text[p])) p++;
    const got = getPattern(dialect, text, p, warn);
    p = got.next;
    while (p < text.length && isSpace(text[p])) p++;
    if (p < text.length) {
      warn(`ignoring extra text after IF statement: "${text.slice(p)}"`);
      warn('do not prepend whitespace to statements between IF and ENDIF');
    }
    const cond = compilePattern(got.pattern, warn);
    return { op: 'if', line, cond, endif: -1 };
  }
  if (/^endif/i.test(text) && !isAlnum(text[5])) {
    if (nesting === 0) {
      warn('ignoring ENDIF without matching IF');
      return null;
    }
    if (text.slice(5).split('').some((c) => !isSpace(c))) warn('ignoring extra text after ENDIF');
    return { op: 'endif', line };
  }
  throw new RuleError('ignoring unrecognized request');
}

interface SetChunk {
  readonly set: InstanceType<typeof RE2.Set>;
  /** Rule index of each pattern in the Set. */
  readonly rules: readonly number[];
}

/**
 * A rule anchored at the start of the key on a literal header name ("^Subject:" without the
 * multiline flag) can only match keys that begin with that name, so it goes in that name's
 * bucket: a header then scans its own bucket's Sets plus the unanchored ones, and the cost
 * of a miss stays flat as rule files grow (RE2 caps one Set's memory, so thousands of rules
 * need several Sets). Names are bucketed lowercased; the Set itself still applies the rule's
 * case sensitivity.
 */
const ANCHORED_NAME = /^(?:\(\?([a-zA-Z]*)\))?\^((?:[A-Za-z0-9_]|\\-)+)\\:/;

function bucketOf(source: string): string | null {
  const m = ANCHORED_NAME.exec(source);
  if (!m || (m[1] ?? '').includes('m')) return null;
  return m[2]!.replace(/\\-/g, '-').toLowerCase();
}

/** The bucket a key belongs to: its leading "Name:" lowercased, or null. */
function keyBucket(key: string): string | null {
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c === 58 /* : */) return i > 0 ? key.slice(0, i).toLowerCase() : null;
    const ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 95;
    if (!ok) return null;
  }
  return null;
}

/** A loaded rule file: the rules in file order plus the Set prefilters. */
export class RuleProgram {
  readonly rules: readonly Rule[];
  /** Sets of rules that may match any key. */
  private readonly chunks: readonly SetChunk[];
  /** Sets of rules anchored on a header name, by lowercased name. */
  private readonly buckets: ReadonlyMap<string, readonly SetChunk[]>;
  /** Rules visited on every lookup: negated first patterns, IF conditions, Set rejects. */
  private readonly always: readonly number[];

  constructor(rules: Rule[]) {
    this.rules = rules;
    const unanchored: number[] = [];
    const byName = new Map<string, number[]>();
    const always: number[] = [];
    rules.forEach((r, i) => {
      if (r.op === 'match' && !r.first.negate) {
        const b = bucketOf(r.first.re.source);
        if (b === null) unanchored.push(i);
        else {
          const list = byName.get(b);
          if (list) list.push(i);
          else byName.set(b, [i]);
        }
      } else if (r.op !== 'endif') always.push(i);
    });
    const rejected: number[] = [];
    const chunks: SetChunk[] = [];
    this.buildSets(unanchored, chunks, rejected);
    const buckets = new Map<string, SetChunk[]>();
    for (const [name, list] of byName) {
      const out: SetChunk[] = [];
      this.buildSets(list, out, rejected);
      buckets.set(name, out);
    }
    this.chunks = chunks;
    this.buckets = buckets;
    this.always = [...always, ...rejected].sort((a, b) => a - b);
  }

  /** Number of RE2.Set prefilters and of rules outside them (for tests and benchmarks). */
  get stats(): { rules: number; sets: number; alwaysEvaluated: number; buckets: number } {
    let sets = this.chunks.length;
    for (const b of this.buckets.values()) sets += b.length;
    return { rules: this.rules.length, sets, alwaysEvaluated: this.always.length, buckets: this.buckets.size };
  }

  private buildSets(indices: number[], out: SetChunk[], rejected: number[]): void {
    if (indices.length === 0) return;
    const sources = indices.map((i) => (this.rules[i] as { first: CompiledPattern }).first.re.source);
    try {
      out.push({ set: new RE2.Set(sources, 'u'), rules: indices });
    } catch {
      // RE2 caps the memory of one compiled Set; split until each part fits.
      if (indices.length === 1) {
        rejected.push(indices[0]!);
        return;
      }
      const mid = indices.length >> 1;
      this.buildSets(indices.slice(0, mid), out, rejected);
      this.buildSets(indices.slice(mid), out, rejected);
    }
  }

  /** The first rule (file order) that matches KEY, as Postfix walks them. */
  lookup(key: string): RuleHit | null {
    let candidates: number[];
    try {
      candidates = this.candidates(key);
    } catch {
      // A Set can run out of DFA memory on a long input; the plain walk is always exact.
      return this.walk(key, null);
    }
    if (candidates.length === 0 && this.always.length === 0) return null;
    return this.walk(key, candidates);
  }

  private candidates(key: string): number[] {
    const name = this.buckets.size > 0 ? keyBucket(key) : null;
    const bucket = name === null ? undefined : this.buckets.get(name);
    const scans = this.chunks.length + (bucket?.length ?? 0);
    if (scans === 0) return [];
    // node-re2 converts a string to UTF-8 on every call: convert once when scanning several Sets.
    const subject: string | Buffer = scans > 1 ? Buffer.from(key) : key;
    let out: number[] | null = null;
    const scan = (c: SetChunk): void => {
      const ids = c.set.match(subject);
      if (ids.length === 0) return;
      out ??= [];
      for (const id of ids) out.push(c.rules[id]!);
    };
    for (const c of this.chunks) scan(c);
    if (bucket) for (const c of bucket) scan(c);
    if (out === null) return [];
    // The walk needs file order; Set.match() promises no order, and buckets interleave.
    return (out as number[]).sort((a, b) => a - b);
  }

  /**
   * Visit rules in file order. With CANDIDATES (sorted rule indices whose positive first
   * pattern the Set matched) only those and the always-evaluated rules are visited; with
   * null every rule is (dict_regexp_lookup() exactly).
   */
  private walk(key: string, candidates: readonly number[] | null): RuleHit | null {
    const rules = this.rules;
    let a = 0;
    let b = 0;
    let pos = 0;
    for (;;) {
      let next: number;
      if (candidates === null) {
        if (pos >= rules.length) return null;
        next = pos;
      } else {
        while (a < candidates.length && candidates[a]! < pos) a++;
        while (b < this.always.length && this.always[b]! < pos) b++;
        const ca = a < candidates.length ? candidates[a]! : Infinity;
        const cb = b < this.always.length ? this.always[b]! : Infinity;
        next = Math.min(ca, cb);
        if (next === Infinity) return null;
      }
      const r = rules[next]!;
      pos = next + 1;
      if (r.op === 'match') {
        const hit = matchRule(r, key);
        if (hit !== null) return { value: hit, line: r.line };
      } else if (r.op === 'if') {
        if (r.cond.re.test(key) !== r.cond.negate) continue;
        // An IF without ENDIF that fails ends the search (dict_regexp_lookup()).
        if (r.endif < 0) return null;
        pos = r.endif + 1;
      }
    }
  }
}

function matchRule(r: Extract<Rule, { op: 'match' }>, key: string): string | null {
  let groups: RegExpExecArray | null = null;
  if (r.first.negate) {
    if (r.first.re.test(key)) return null;
  } else if (r.maxSub > 0) {
    groups = r.first.re.exec(key);
    if (groups === null) return null;
  } else if (!r.first.re.test(key)) return null;
  if (r.second && r.second.re.test(key) === r.second.negate) return null;
  if (r.maxSub === 0) return r.parts.length === 0 ? '' : (r.parts as string[]).join('');
  let out = '';
  for (const part of r.parts) out += typeof part === 'number' ? (groups?.[part] ?? '') : part;
  return out;
}

/** Parse and compile a whole rule file; bad rules become Problems and are skipped. */
export function loadRuleSource(dialect: RuleDialect, source: string, file: string, problems: Problem[]): RuleProgram {
  const rules: Rule[] = [];
  const stack: number[] = [];
  for (const { line, text: raw } of readLogicalLines(source, file, problems)) {
    const text = trimBlanks(raw);
    if (text === '') continue;
    const warnings: string[] = [];
    let rule: Rule | null;
    try {
      rule = parseLine(dialect, text, line, stack.length, (m) => warnings.push(m));
    } catch (e) {
      if (!(e instanceof RuleError)) throw e;
      for (const m of warnings) problems.push({ file, line, severity: 'warning', message: m });
      problems.push({ file, line, severity: e.severity, message: e.message });
      continue;
    }
    for (const m of warnings) problems.push({ file, line, severity: 'warning', message: m });
    if (rule === null) continue;
    if (rule.op === 'if') stack.push(rules.length);
    else if (rule.op === 'endif') (rules[stack.pop()!] as { endif: number }).endif = rules.length;
    rules.push(rule);
  }
  while (stack.length > 0) {
    const r = rules[stack.pop()!]!;
    problems.push({ file, line: r.line, severity: 'warning', message: 'IF has no matching ENDIF' });
  }
  return new RuleProgram(rules);
}

/** A regexp: or pcre: table over FILE; keys keep their case (the i flag decides). */
export interface RuleTable extends Table {
  readonly program: RuleProgram;
}

export function openRuleTable(dialect: RuleDialect, spec: string, name: string, path: string): RuleTable {
  const problems: Problem[] = [];
  const program = loadRuleSource(dialect, readFileSync(path, 'utf8'), name, problems);
  return Object.freeze({
    type: dialect,
    spec,
    path,
    flags: Object.freeze({ fixed: false, foldCase: false }),
    problems: Object.freeze(problems),
    program,
    lookup(key: string): LookupResult {
      const hit = program.lookup(key);
      return hit === null ? MISS : { kind: 'hit', value: hit.value, source: `${name}:${hit.line}` };
    },
  });
}
