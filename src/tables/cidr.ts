/**
 * @module tables/cidr
 * SUMMARY: `cidr:FILE` — rules `[!]network/prefix value` (IPv4 and IPv6, bare address =
 * full-length prefix, `[addr]/len` and `[addr/len]` forms), `if [!]net/len` ... `endif` blocks
 * (Postfix 3.2), first match in file order wins. openCidrTable() returns a pattern Table
 * (flags.fixed=false: access(5) gives it only the full client address); hits carry FILE:LINE.
 * A `!` rule matches addresses of its own family that are outside the network.
 * DIAGNOSTICS: Postfix's texts with ": skipping this rule": "non-null host address bits in
 * "1.2.3.4/24", perhaps you should use "1.2.3.0/24" instead", "bad mask length", "no lookup
 * result", ...; "IF has no matching ENDIF" is a warning. Unparseable keys simply miss.
 * SEE ALSO: cidr_table(5), Postfix dict_cidr.c, cidr_match.c.
 */
import { readFileSync } from 'node:fs';
import type { Problem } from '../errors.js';
import type { LookupResult, Table } from './table.js';
import { readLogicalLines, trimBlanks, isSpace } from './source-lines.js';
import { inetPton4, inetPton6, formatAddress } from './inet-pton.js';
import { MISS } from './text-table.js';

interface CidrNet {
  readonly v6: boolean;
  readonly net: Uint8Array;
  readonly mask: Uint8Array;
  readonly match: boolean;
}

type CidrRule =
  | { readonly op: 'match'; readonly line: number; readonly net: CidrNet; readonly value: string }
  | { readonly op: 'if'; readonly line: number; readonly net: CidrNet; endif: number }
  | { readonly op: 'endif'; readonly line: number };

const isAlnum = (c: string | undefined): boolean => c !== undefined && /^[A-Za-z0-9]$/.test(c);
const isAllDigits = (s: string): boolean => /^[0-9]+$/.test(s);

function parseAddress(text: string): { v6: boolean; bytes: Uint8Array | null } {
  const v6 = text.includes(':');
  return { v6, bytes: v6 ? inetPton6(text) : inetPton4(text) };
}

/** cidr_match_parse(): the pattern text -> network, or Postfix's reason. */
export function parseCidrPattern(patternIn: string, match: boolean): CidrNet | string {
  let pattern = patternIn;
  let maskSearch: string;
  if (pattern.startsWith('[')) {
    pattern = pattern.slice(1);
    const close = pattern.indexOf(']');
    if (close < 0) return `missing ']' character after "[${pattern}"`;
    const after = pattern.slice(close + 1);
    pattern = pattern.slice(0, close);
    if (after.startsWith('/')) {
      maskSearch = after;
    } else {
      if (after !== '') return `garbage after "[${pattern}]"`;
      maskSearch = pattern;
    }
  } else maskSearch = pattern;
  const slash = maskSearch.indexOf('/');
  if (slash >= 0) {
    const mask = maskSearch.slice(slash + 1);
    if (maskSearch === pattern) pattern = pattern.slice(0, slash);
    const { v6, bytes } = parseAddress(pattern);
    const bits = v6 ? 128 : 32;
    let why: string | null = null;
    if (!isAllDigits(mask)) why = 'bad mask value';
    else if (Number(mask) > bits) why = 'bad mask length';
    else if (!bytes) why = 'bad network value';
    if (why !== null || !bytes) return `${why} in "${pattern}/${mask}"`;
    const len = Number(mask);
    const maskBytes = maskOf(bytes.length, len);
    for (let i = 0; i < bytes.length; i++) {
      if ((bytes[i]! & ~maskBytes[i]!) !== 0) {
        const fixed = bytes.map((b, k) => b & maskBytes[k]!);
        return `non-null host address bits in "${pattern}/${mask}", perhaps you should use "${formatAddress(fixed)}/${len}" instead`;
      }
    }
    return { v6, net: bytes, mask: maskBytes, match };
  }
  const { v6, bytes } = parseAddress(pattern);
  if (!bytes) return `bad address pattern: "${pattern}"`;
  return { v6, net: bytes, mask: maskOf(bytes.length, bytes.length * 8), match };
}

function maskOf(byteCount: number, len: number): Uint8Array {
  const m = new Uint8Array(byteCount);
  for (let i = 0; i < byteCount; i++) {
    const bits = Math.max(0, Math.min(8, len - i * 8));
    m[i] = bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
  }
  return m;
}

function netMatches(n: CidrNet, addr: Uint8Array): boolean {
  for (let i = 0; i < addr.length; i++) if ((addr[i]! & n.mask[i]!) !== n.net[i]) return !n.match;
  return n.match;
}

function skipNegation(text: string, from: number): { at: number; match: boolean } {
  let match = true;
  let i = from;
  for (; i < text.length; i++) {
    if (text[i] === '!') match = !match;
    else if (!isSpace(text[i])) break;
  }
  return { at: i, match };
}

/** dict_cidr_parse_rule(): one logical line -> rule, or the reason it is skipped. */
function parseRule(text: string, line: number, nesting: number): CidrRule | string {
  if (/^if/i.test(text) && !isAlnum(text[2])) {
    const { at, match } = skipNegation(text, 2);
    if (at >= text.length) return 'no address pattern';
    const net = parseCidrPattern(trimBlanks(text.slice(at)), match);
    if (typeof net === 'string') return net;
    return { op: 'if', line, net, endif: -1 };
  }
  if (/^endif/i.test(text) && !isAlnum(text[5])) {
    for (let i = 5; i < text.length; i++) if (!isSpace(text[i])) return 'garbage after ENDIF';
    if (nesting === 0) return 'ENDIF without IF';
    return { op: 'endif', line };
  }
  const { at, match } = skipNegation(text, 0);
  let end = at;
  while (end < text.length && !isSpace(text[end])) end++;
  const pattern = text.slice(at, end);
  let v = end;
  while (v < text.length && isSpace(text[v])) v++;
  const value = trimBlanks(text.slice(v));
  if (pattern === '') return 'no address pattern';
  const net = parseCidrPattern(pattern, match);
  if (typeof net === 'string') return net;
  if (value === '') return 'no lookup result';
  return { op: 'match', line, net, value };
}

/** Parse a cidr source text; returns the rules (with IF->ENDIF links) and fills problems. */
export function parseCidrSource(source: string, file: string, problems: Problem[]): CidrRule[] {
  const rules: CidrRule[] = [];
  const stack: number[] = [];
  for (const { line, text } of readLogicalLines(source, file, problems)) {
    const r = parseRule(text, line, stack.length);
    if (typeof r === 'string') {
      // A stray ENDIF loses nothing; every other skipped line is a lost rule.
      const severity = r === 'ENDIF without IF' ? 'warning' : 'error';
      problems.push({ file, line, severity, message: `${r}: skipping this rule` });
      continue;
    }
    if (r.op === 'if') stack.push(rules.length);
    else if (r.op === 'endif') {
      const ifRule = rules[stack.pop()!] as { endif: number };
      ifRule.endif = rules.length;
    }
    rules.push(r);
  }
  while (stack.length > 0) {
    const r = rules[stack.pop()!]!;
    problems.push({ file, line: r.line, severity: 'warning', message: 'IF has no matching ENDIF' });
  }
  return rules;
}

export function lookupCidr(rules: readonly CidrRule[], file: string, key: string): LookupResult {
  const { v6, bytes } = parseAddress(key);
  if (!bytes) return MISS;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (r.op === 'match') {
      if (r.net.v6 === v6 && netMatches(r.net, bytes)) return { kind: 'hit', value: r.value, source: `${file}:${r.line}` };
    } else if (r.op === 'if') {
      if (r.net.v6 === v6 && netMatches(r.net, bytes)) continue;
      // An IF without ENDIF ends the search when it fails, as in Postfix.
      if (r.endif < 0) return MISS;
      i = r.endif;
    }
  }
  return MISS;
}

export function openCidrTable(spec: string, name: string, path: string): Table {
  const problems: Problem[] = [];
  const rules = parseCidrSource(readFileSync(path, 'utf8'), name, problems);
  return Object.freeze({
    type: 'cidr',
    spec,
    path,
    flags: Object.freeze({ fixed: false, foldCase: false }),
    problems: Object.freeze(problems),
    lookup: (key: string): LookupResult => lookupCidr(rules, name, key),
  });
}
