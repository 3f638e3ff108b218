/**
 * @module tables/posix-ere
 * SUMMARY: translatePosixEre(pattern, {icase, newline}) turns a `regexp:` pattern — POSIX
 * ERE as glibc regcomp(REG_EXTENDED) reads it — into RE2 syntax with the same meaning, or an
 * error. Covers glibc's bracket rules, classes, {,n}, stacked repetitions, GNU escapes and
 * its case-folding quirks; flag m also keeps `[^...]` from matching a newline.
 * DIAGNOSTICS: glibc's regerror texts ("Invalid preceding regular expression", ...); a valid
 * construct RE2 cannot run is an error naming it ("RE2 does not support backreference \1").
 * SEE ALSO: regex(7), regexp_table(5), glibc posix/regcomp.c, RE2 syntax.
 */

export type Translation =
  | { readonly source: string; readonly groups: number; readonly warnings?: readonly string[] }
  | { readonly error: string };

export interface PosixOptions {
  /** REG_ICASE: on by default in Postfix, toggled by flag i. */
  readonly icase: boolean;
  /** REG_NEWLINE: off by default, toggled by flag m. */
  readonly newline: boolean;
}

/** RE2's limit on {n,m} (POSIX allows up to RE_DUP_MAX = 32767). */
export const RE2_MAX_REPEAT = 1000;
const RE_DUP_MAX = 0x7fff;

const E = {
  BADRPT: 'Invalid preceding regular expression',
  EPAREN: 'Unmatched ( or \\(',
  EBRACK: 'Unmatched [, [^, [:, [., or [=',
  ERANGE: 'Invalid range end',
  ECTYPE: 'Invalid character class name',
  ECOLLATE: 'Invalid collation character',
  EBRACE: 'Unmatched \\{',
  BADBR: 'Invalid content of \\{\\}',
  ESIZE: 'Regular expression too big',
  EESCAPE: 'Trailing backslash',
} as const;

/** An RE2 class that matches no character. */
const NEVER = '[^\\x{0}-\\x{10ffff}]';

const POSIX_CLASSES = new Set(['alpha', 'upper', 'lower', 'digit', 'xdigit', 'space', 'print', 'punct', 'graph', 'cntrl', 'blank', 'alnum']);

class TranslateError extends Error {}

const isWordChar = (c: string): boolean => /^[A-Za-z0-9_]$/.test(c);

/** One character as an RE2 literal outside brackets. */
export function re2Literal(c: string): string {
  const code = c.codePointAt(0)!;
  if (/^[A-Za-z0-9]$/.test(c)) return c;
  if (code < 0x20 || code === 0x7f || c === ' ') return `\\x{${code.toString(16)}}`;
  if (code < 0x80) return `\\${c}`;
  return c;
}

/** One character as an RE2 literal inside brackets. */
export function re2ClassChar(c: string): string {
  const code = c.codePointAt(0)!;
  if (/^[A-Za-z0-9]$/.test(c)) return c;
  if (code < 0x80) return `\\x{${code.toString(16)}}`;
  return c;
}

interface Piece {
  /** RE2 text of the atom plus any repetitions. */
  text: string;
  quantified: boolean;
  /** The piece always consumes at least one word character as its last character. */
  endsWithWordChar: boolean;
  /** The piece always starts by consuming a word character. */
  startsWithWordChar: boolean;
  /** A zero-width assertion: no repetition may follow it (glibc: REG_BADRPT). */
  anchor?: boolean;
  /** A "\<" to be resolved once the next piece is known. */
  wordStart?: boolean;
}

interface Parsed {
  readonly text: string;
  readonly startsWithWordChar: boolean;
  readonly endsWithWordChar: boolean;
}

class PosixParser {
  private readonly cs: string[];
  private i = 0;
  private groups = 0;
  readonly warnings: string[] = [];

  constructor(
    pattern: string,
    private readonly opts: PosixOptions,
  ) {
    this.cs = Array.from(pattern);
  }

  run(): { source: string; groups: number; warnings: string[] } {
    const body = this.parseAlternation(0).text;
    const flags = `${this.opts.icase ? 'i' : ''}${this.opts.newline ? 'm' : 's'}`;
    return { source: `(?${flags})${body}`, groups: this.groups, warnings: this.warnings };
  }

  private peek(k = 0): string | undefined {
    return this.cs[this.i + k];
  }

  private parseAlternation(depth: number): Parsed {
    const branches: Parsed[] = [this.parseBranch(depth)];
    while (this.peek() === '|') {
      this.i++;
      branches.push(this.parseBranch(depth));
    }
    return {
      text: branches.map((b) => b.text).join('|'),
      startsWithWordChar: branches.every((b) => b.startsWithWordChar),
      endsWithWordChar: branches.every((b) => b.endsWithWordChar),
    };
  }

  private parseBranch(depth: number): Parsed {
    const pieces: Piece[] = [];
    // glibc: a repetition operator where an expression must start (start of the pattern,
    // after "(", after "|", after an anchor) is REG_BADRPT.
    let expectExpression = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === '|') break;
      if (c === ')' && depth > 0) break;
      if (c === '*' || c === '+' || c === '?' || c === '{') {
        if (expectExpression) throw new TranslateError(E.BADRPT);
        const last = pieces[pieces.length - 1]!;
        this.applyRepetition(last);
        continue;
      }
      const piece = this.parseAtom(depth, pieces);
      pieces.push(piece);
      expectExpression = piece.anchor === true;
    }
    for (let k = 0; k < pieces.length; k++) {
      const p = pieces[k]!;
      if (!p.wordStart) continue;
      // "\<" is "\b" when a word character must follow; RE2 has no word-start anchor.
      if (!pieces[k + 1]?.startsWithWordChar) {
        throw new TranslateError('RE2 does not support the GNU word-start anchor \\< except right before a word character (use \\b)');
      }
      p.text = '\\b';
    }
    const first = pieces[0];
    const last = pieces[pieces.length - 1];
    return {
      text: pieces.map((p) => p.text).join(''),
      startsWithWordChar: first !== undefined && !first.anchor && first.startsWithWordChar,
      endsWithWordChar: last !== undefined && !last.anchor && last.endsWithWordChar,
    };
  }

  private applyRepetition(last: Piece): void {
    const c = this.cs[this.i++]!;
    let op: string;
    let min: number;
    if (c === '{') {
      const r = this.parseInterval();
      op = r.max === -1 ? `{${r.min},}` : r.min === r.max ? `{${r.min}}` : `{${r.min},${r.max}}`;
      min = r.min;
    } else {
      op = c;
      min = c === '+' ? 1 : 0;
    }
    // RE2 rejects "a**" and reads "a*?" as lazy; POSIX means (a*)* and (a*)?.
    const base = last.quantified ? `(?:${last.text})` : last.text;
    last.text = base + op;
    last.quantified = true;
    if (min === 0) {
      last.endsWithWordChar = false;
      last.startsWithWordChar = false;
    }
  }

  private parseInterval(): { min: number; max: number } {
    const close = this.cs.indexOf('}', this.i);
    if (close < 0) throw new TranslateError(E.EBRACE);
    const content = this.cs.slice(this.i, close).join('');
    this.i = close + 1;
    const m = /^([0-9]*)(,([0-9]*))?$/.exec(content);
    if (!m || (m[1] === '' && m[2] === undefined)) throw new TranslateError(E.BADBR);
    const min = m[1] === '' ? 0 : Math.min(Number(m[1]), RE_DUP_MAX + 1);
    const max = m[2] === undefined ? min : m[3] === '' ? -1 : Math.min(Number(m[3]), RE_DUP_MAX + 1);
    if (max !== -1 && min > max) throw new TranslateError(E.BADBR);
    if ((max === -1 ? min : max) > RE_DUP_MAX) throw new TranslateError(E.ESIZE);
    if ((max === -1 ? min : max) > RE2_MAX_REPEAT) {
      throw new TranslateError(`RE2 does not support repetition counts above ${RE2_MAX_REPEAT} ("{${content}}")`);
    }
    return { min, max };
  }

  private parseAtom(depth: number, before: readonly Piece[]): Piece {
    const c = this.cs[this.i++]!;
    const plain = (text: string, word = false): Piece => ({
      text,
      quantified: false,
      endsWithWordChar: word,
      startsWithWordChar: word,
    });
    switch (c) {
      case '(': {
        if (this.peek() === '?') throw new TranslateError(describeParenQuestion(this.cs.slice(this.i - 1).join('')));
        this.groups++;
        const inner = this.parseAlternation(depth + 1);
        if (this.peek() !== ')') throw new TranslateError(E.EPAREN);
        this.i++;
        return {
          text: `(${inner.text})`,
          quantified: false,
          startsWithWordChar: inner.startsWithWordChar,
          endsWithWordChar: inner.endsWithWordChar,
        };
      }
      case ')':
        // RE_UNMATCHED_RIGHT_PAREN_ORD: a stray ")" is an ordinary character.
        return plain('\\)');
      case '.':
        return plain('.');
      case '^':
        return anchor('^');
      case '$':
        return anchor('$');
      case '[':
        return plain(this.parseBracket());
      case '\\':
        return this.parseEscape(before);
      default:
        return plain(re2Literal(c), isWordChar(c));
    }
  }

  private parseEscape(before: readonly Piece[]): Piece {
    const c = this.cs[this.i++];
    if (c === undefined) throw new TranslateError(E.EESCAPE);
    const cls = (text: string, word = false): Piece => ({ text, quantified: false, endsWithWordChar: word, startsWithWordChar: word });
    switch (c) {
      case 'w':
        return cls('[0-9A-Za-z_]', true);
      case 'W':
        return cls('[^0-9A-Za-z_]');
      case 's':
        return cls('[\\x{9}-\\x{d}\\x{20}]');
      case 'S':
        return cls('[^\\x{9}-\\x{d}\\x{20}]');
      case 'b':
        return anchor('\\b');
      case 'B':
        return anchor('\\B');
      case '`':
        return anchor('\\A');
      case "'":
        return anchor('\\z');
      case '<':
        return { ...anchor(''), wordStart: true };
      case '>': {
        const prev = before[before.length - 1];
        if (prev && prev.endsWithWordChar) return anchor('\\b');
        throw new TranslateError('RE2 does not support the GNU word-end anchor \\> except right after a word character (use \\b)');
      }
      default:
        if (c >= '1' && c <= '9') throw new TranslateError(`RE2 does not support backreference \\${c}`);
        if (c >= 'a' && c <= 'z' && this.opts.icase) {
          // glibc upper-cases the subject for REG_ICASE but not an escaped pattern letter, so
          // "\d" can never match; reproduce that, and say so.
          this.warnings.push(
            `"\\${c}" is not an escape sequence in a POSIX regular expression; matched case-insensitively, as here, it never matches anything${c === 'd' ? ' (for a digit write [0-9])' : ''}`,
          );
          return cls(NEVER);
        }
        if (/^[A-Za-z]$/.test(c)) {
          this.warnings.push(`"\\${c}" is not an escape sequence in a POSIX regular expression; it matches the letter "${c}"`);
        }
        // Any other escaped character is itself: "\n" is "n", "\." is ".", "\{" is "{".
        return cls(re2Literal(c), isWordChar(c));
    }
  }

  private parseBracket(): string {
    let negate = false;
    if (this.peek() === '^') {
      negate = true;
      this.i++;
    }
    const items: string[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw new TranslateError(E.EBRACK);
      if (c === ']' && !first) {
        this.i++;
        break;
      }
      const start = this.bracketElement(first);
      first = false;
      const next = this.peek();
      if (next === undefined) throw new TranslateError(E.EBRACK);
      if (start.kind !== 'class' && start.kind !== 'equiv' && next === '-' && this.peek(1) !== ']') {
        if (this.peek(1) === undefined) throw new TranslateError(E.EBRACK);
        this.i++;
        const end = this.bracketElement(true);
        if (end.kind === 'class' || end.kind === 'equiv') throw new TranslateError(E.ERANGE);
        items.push(this.range(start.ch, end.ch));
        continue;
      }
      items.push(start.kind === 'class' ? `[:${start.name}:]` : re2ClassChar(start.ch));
    }
    // REG_NEWLINE sets RE_HAT_LISTS_NOT_NEWLINE: a non-matching list never matches "\n".
    if (negate && this.opts.newline) items.push('\\x{a}');
    return `[${negate ? '^' : ''}${items.join('')}]`;
  }

  private range(a: string, b: string): string {
    // glibc compares icase range ends after upper-casing them, so [Z-a] is invalid and
    // [a-\] spans A..\ (all letters plus [ and \).
    const lo = this.opts.icase ? asciiUpper(a) : a;
    const hi = this.opts.icase ? asciiUpper(b) : b;
    if (lo.codePointAt(0)! > hi.codePointAt(0)!) throw new TranslateError(E.ERANGE);
    return `${re2ClassChar(lo)}-${re2ClassChar(hi)}`;
  }

  private bracketElement(acceptHyphen: boolean): { kind: 'char'; ch: string } | { kind: 'class'; name: string } | { kind: 'equiv'; ch: string } {
    const c = this.cs[this.i]!;
    const d = this.peek(1);
    if (c === '[' && (d === ':' || d === '=' || d === '.')) {
      const close = this.findSymbolEnd(d, this.i + 2);
      if (close < 0) throw new TranslateError(E.EBRACK);
      const name = this.cs.slice(this.i + 2, close).join('');
      this.i = close + 2;
      if (d === ':') {
        if (!POSIX_CLASSES.has(name)) throw new TranslateError(E.ECTYPE);
        const effective = this.opts.icase && (name === 'upper' || name === 'lower') ? 'alpha' : name;
        return { kind: 'class', name: effective };
      }
      // The C locale has only single-character collating elements.
      if (Array.from(name).length !== 1) throw new TranslateError(E.ECOLLATE);
      return d === '=' ? { kind: 'equiv', ch: name } : { kind: 'char', ch: name };
    }
    if (c === '-' && !acceptHyphen && d !== ']') throw new TranslateError(E.ERANGE);
    this.i++;
    return { kind: 'char', ch: c };
  }

  /** Index of DELIM in "DELIM]" closing a [: [= [. symbol, or -1. */
  private findSymbolEnd(delim: string, from: number): number {
    for (let k = from; k < this.cs.length && k - from < 32; k++) {
      if (this.cs[k] === delim && this.cs[k + 1] === ']') return k;
    }
    return -1;
  }
}

function anchor(text: string): Piece {
  return { text, quantified: false, endsWithWordChar: false, startsWithWordChar: false, anchor: true };
}

function asciiUpper(c: string): string {
  return c >= 'a' && c <= 'z' ? c.toUpperCase() : c;
}

/** "(?" is invalid POSIX; name the Perl construct the admin probably meant. */
export function describeParenQuestion(rest: string): string {
  const named: Array<[string, string]> = [
    ['(?=', 'lookahead (?=...)'],
    ['(?!', 'negative lookahead (?!...)'],
    ['(?<=', 'lookbehind (?<=...)'],
    ['(?<!', 'negative lookbehind (?<!...)'],
    ['(?>', 'atomic group (?>...)'],
    ['(?:', 'non-capturing group (?:...)'],
    ['(?<', 'named group (?<name>...)'],
    ['(?P<', 'named group (?P<name>...)'],
  ];
  for (const [prefix, what] of named) {
    if (rest.startsWith(prefix)) {
      return `${E.BADRPT}: ${what} is Perl syntax, not POSIX (use pcre: for it)${what.includes('look') || what.includes('atomic') ? '; RE2 does not support it either' : ''}`;
    }
  }
  return `${E.BADRPT}: (?...) is Perl syntax, not POSIX (use pcre: for it)`;
}

export function translatePosixEre(pattern: string, opts: PosixOptions): Translation {
  try {
    return new PosixParser(pattern, opts).run();
  } catch (e) {
    if (e instanceof TranslateError) return { error: e.message };
    throw e;
  }
}
