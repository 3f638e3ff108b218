/**
 * @module config/expand
 * SUMMARY: Postfix parameter expansion and list splitting (pure).
 * expand(): $name, ${name}, $(name), ${name?value}, ${name:value} (and the {value} forms of
 * Postfix 3.0), recursively; an unknown name expands to "". splitList(): commas and/or
 * whitespace separate items, but text inside { } stays one item (inline:{ a=b, c=d }).
 * DIAGNOSTICS: throws ExpansionLoopError on a recursive definition.
 * SEE ALSO: postconf(5) "parameter expansion", mac_expand(3).
 */

export class ExpansionLoopError extends Error {}

export type Lookup = (name: string) => string | undefined;

const MAX_DEPTH = 100;

export function expand(value: string, lookup: Lookup, depth = 0): string {
  if (!value.includes('$')) return value;
  if (depth > MAX_DEPTH) throw new ExpansionLoopError(`parameter expansion is too deep (recursive definition?)`);
  let out = '';
  let i = 0;
  while (i < value.length) {
    const c = value[i]!;
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = value[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next === '{' || next === '(') {
      const close = next === '{' ? '}' : ')';
      const end = matchingClose(value, i + 1, next, close);
      if (end < 0) {
        out += value.slice(i);
        break;
      }
      const inner = value.slice(i + 2, end);
      out += expandBraced(inner, lookup, depth);
      i = end + 1;
      continue;
    }
    const m = /^[A-Za-z0-9_]+/.exec(value.slice(i + 1));
    if (!m) {
      out += '$';
      i++;
      continue;
    }
    out += expandName(m[0], lookup, depth);
    i += 1 + m[0].length;
  }
  return out;
}

function matchingClose(s: string, openAt: number, open: string, close: string): number {
  let level = 0;
  for (let j = openAt; j < s.length; j++) {
    if (s[j] === open) level++;
    else if (s[j] === close && --level === 0) return j;
  }
  return -1;
}

function expandName(name: string, lookup: Lookup, depth: number): string {
  const v = lookup(name);
  return v === undefined ? '' : expand(v, lookup, depth + 1);
}

function expandBraced(inner: string, lookup: Lookup, depth: number): string {
  const m = /^([A-Za-z0-9_]+)(?:([?:])(.*))?$/s.exec(inner);
  if (!m) return '';
  const value = expandName(m[1]!, lookup, depth);
  if (m[2] === undefined) return value;
  let alt = m[3]!.trim();
  if (alt.startsWith('{') && alt.endsWith('}')) alt = alt.slice(1, -1).trim();
  const wanted = m[2] === '?' ? value !== '' : value === '';
  return wanted ? expand(alt, lookup, depth + 1) : '';
}

/** Split a Postfix list: separators are commas and whitespace; {...} groups stay whole. */
export function splitList(value: string): string[] {
  const items: string[] = [];
  let cur = '';
  let level = 0;
  for (const c of value) {
    if (c === '{') level++;
    else if (c === '}' && level > 0) level--;
    if (level === 0 && (c === ',' || /\s/.test(c))) {
      if (cur) items.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur) items.push(cur);
  return items;
}
