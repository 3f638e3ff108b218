/**
 * @module tables/braces
 * SUMMARY: Postfix's "{ ... }" helpers used by inline: and static: specs: balpar() (length of
 * a balanced {text}), extpar() (strip the braces and surrounding whitespace), mystrtokq()
 * (split on separators outside braces) and split_qnameval() ("key = value", quoted key).
 * Each returns an error string where Postfix does, with Postfix's wording.
 * SEE ALSO: Postfix balpar.c, extpar.c, mystrtok.c, split_qnameval.c.
 */
import { isSpace, trimBlanks } from './source-lines.js';

/** Length of "{text}" at the start of s including both braces, or 0 if unbalanced. */
export function balpar(s: string, open = '{', close = '}'): number {
  if (s[0] !== open) return 0;
  let level = 1;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (c === close) {
      if (--level === 0) return i + 1;
    } else if (c === open) level++;
  }
  return 0;
}

/** Strip "{" and "}" and the whitespace inside them (EXTPAR_FLAG_STRIP). */
export function extpar(s: string): { text: string; error?: string } {
  let text: string;
  let error: string | undefined;
  if (s[0] !== '{') {
    return { text: s.trim(), error: `no '{' at start of text in "${s}"` };
  }
  const len = balpar(s);
  if (len === 0) {
    error = `missing '}' in "${s}"`;
    text = s.slice(1);
  } else {
    if (len !== s.length) error = `syntax error after '}' in "${s}"`;
    text = s.slice(1, len - 1);
  }
  text = trimBlanks(text);
  let i = 0;
  while (i < text.length && isSpace(text[i])) i++;
  return error === undefined ? { text: text.slice(i) } : { text: text.slice(i), error };
}

export const CHARS_COMMA_SP = ', \t\r\n';

/** Split on any of SEP outside {} (mystrtokq); empty tokens are skipped. */
export function splitOutsideBraces(s: string, sep = CHARS_COMMA_SP): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    while (i < s.length && sep.includes(s[i]!)) i++;
    if (i >= s.length) break;
    const start = i;
    let level = 0;
    for (; i < s.length; i++) {
      const c = s[i]!;
      if (c === '{') level++;
      else if (level > 0 && c === '}') level--;
      else if (level === 0 && sep.includes(c)) break;
    }
    out.push(s.slice(start, i));
    if (i < s.length) i++;
  }
  return out;
}

/** "key = value" with an optionally quoted key; the key stays in its quoted form. */
export function splitQNameVal(buf: string): { key: string; value: string } | { error: string } {
  let k = 0;
  while (k < buf.length && isSpace(buf[k])) k++;
  if (k >= buf.length) return { error: 'no key found; expected format: key = value' };
  let inQuotes = false;
  let e = k;
  for (; e < buf.length; e++) {
    const c = buf[e];
    if (c === '\\') {
      e++;
      if (e >= buf.length) break;
    } else if (isSpace(c) || c === '=') {
      if (!inQuotes) break;
    } else if (c === '"') {
      inQuotes = !inQuotes;
    }
  }
  if (inQuotes) return { error: `unbalanced '"'` };
  const keyEnd = Math.min(e, buf.length);
  let v = keyEnd;
  while (v < buf.length && isSpace(buf[v])) v++;
  if (buf[v] !== '=') return { error: "missing '=' after attribute name" };
  v++;
  while (v < buf.length && isSpace(buf[v])) v++;
  return { key: buf.slice(k, keyEnd), value: trimBlanks(buf.slice(v)) };
}
