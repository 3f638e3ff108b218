/**
 * @module tables/pcre-syntax
 * SUMMARY: translate a Postfix `pcre:` pattern (PCRE2 syntax with pcre_table(5) flags) into
 * RE2 syntax: translatePcre(pattern, flags) returns {source, groups} or {error}. Kept exact
 * where RE2 differs: `$` also matches before a final newline (unless E or m), `\s` includes
 * VT, `\h \v \R \N \Z \G` are spelled out, `\Q...\E`, `(?#...)` comments and flag x
 * (free-spacing, also inline `(?x)`) are resolved here, flag A anchors at the start.
 * DIAGNOSTICS: a construct RE2 cannot run is an error that names it, e.g. "RE2 does not
 * support lookahead (?=...)", "... backreference \1", "... possessive quantifier *+",
 * "... atomic group (?>...)", "... recursion (?R)", "... \K"; other syntax errors come from RE2.
 * SEE ALSO: pcre_table(5), pcre2pattern(3), RE2 syntax wiki.
 */
import { re2Literal, re2ClassChar, RE2_MAX_REPEAT, type Translation } from './posix-ere.js';

export interface PcreFlags {
  /** PCRE2_CASELESS: on by default, toggled by i. */
  readonly caseless: boolean;
  /** PCRE2_DOTALL: on by default, toggled by s. */
  readonly dotall: boolean;
  /** PCRE2_MULTILINE: toggled by m. */
  readonly multiline: boolean;
  /** PCRE2_EXTENDED: toggled by x. */
  readonly extended: boolean;
  /** PCRE2_ANCHORED: toggled by A. */
  readonly anchored: boolean;
  /** PCRE2_DOLLAR_ENDONLY: toggled by E. */
  readonly dollarEndOnly: boolean;
  /** PCRE2_UNGREEDY: toggled by U. */
  readonly ungreedy: boolean;
}

class TranslateError extends Error {}

const unsupported = (what: string): TranslateError => new TranslateError(`RE2 does not support ${what}`);

/** PCRE2's \s: space, \t \n \v \f \r. */
const SPACE_ITEMS = '\\x{9}-\\x{d}\\x{20}';
/** \h: horizontal white space. */
const HSPACE_ITEMS = '\\x{9}\\x{20}\\x{a0}\\x{1680}\\x{180e}\\x{2000}-\\x{200a}\\x{202f}\\x{205f}\\x{3000}';
/** \v: vertical white space (not RE2's \v, which is only VT). */
const VSPACE_ITEMS = '\\x{a}-\\x{d}\\x{85}\\x{2028}\\x{2029}';
const POSIX_CLASSES = new Set(['alnum', 'alpha', 'ascii', 'blank', 'cntrl', 'digit', 'graph', 'lower', 'print', 'punct', 'space', 'upper', 'word', 'xdigit']);

interface Scope {
  extended: boolean;
  multiline: boolean;
  /** (?n): plain parentheses do not capture. */
  noCapture: boolean;
  /** Caseless matching is on here (it does not apply to \p{...} in PCRE2). */
  caseless: boolean;
}

class PcreParser {
  private readonly cs: string[];
  private i = 0;
  private groups = 0;
  private readonly scopes: Scope[];
  /** Whether the previous emitted item can take a quantifier. */
  private lastRepeatable = false;
  private out = '';

  constructor(
    pattern: string,
    private readonly flags: PcreFlags,
  ) {
    this.cs = Array.from(pattern);
    this.scopes = [{ extended: flags.extended, multiline: flags.multiline, noCapture: false, caseless: flags.caseless }];
  }

  private get scope(): Scope {
    return this.scopes[this.scopes.length - 1]!;
  }

  private peek(k = 0): string | undefined {
    return this.cs[this.i + k];
  }

  private emit(text: string, repeatable: boolean): void {
    this.out += text;
    this.lastRepeatable = repeatable;
  }

  run(): { source: string; groups: number } {
    while (this.i < this.cs.length) this.step();
    if (this.scopes.length > 1) throw new TranslateError('missing closing parenthesis');
    const f = this.flags;
    const inline = `${f.caseless ? 'i' : ''}${f.dotall ? 's' : ''}${f.multiline ? 'm' : ''}${f.ungreedy ? 'U' : ''}`;
    let body = this.out;
    if (f.anchored) body = `\\A(?:${body})`;
    return { source: (inline ? `(?${inline})` : '') + body, groups: this.groups };
  }

  private step(): void {
    const c = this.cs[this.i]!;
    if (this.scope.extended) {
      if (/^[ \t\n\v\f\r]$/.test(c)) {
        this.i++;
        return;
      }
      if (c === '#') {
        while (this.i < this.cs.length && this.cs[this.i] !== '\n') this.i++;
        return;
      }
    }
    this.i++;
    switch (c) {
      case '\\':
        this.escape();
        return;
      case '(':
        this.openGroup();
        return;
      case ')':
        if (this.scopes.length === 1) throw new TranslateError('unmatched closing parenthesis');
        this.scopes.pop();
        this.emit(')', true);
        return;
      case '[':
        this.emit(this.charClass(), true);
        return;
      case '*':
      case '+':
      case '?':
        this.quantifier(c);
        return;
      case '{': {
        const q = /^\{(\d+)(,(\d*))?\}/.exec(this.cs.slice(this.i - 1, this.i + 24).join(''));
        if (!q) {
          // PCRE2 (before 10.43) and RE2 both take a "{" that starts no quantifier literally.
          this.emit('\\{', true);
          return;
        }
        for (const n of [q[1], q[3]]) {
          if (n !== undefined && n !== '' && Number(n) > RE2_MAX_REPEAT) {
            throw unsupported(`repetition counts above ${RE2_MAX_REPEAT} ("${q[0]}")`);
          }
        }
        this.i += q[0].length - 1;
        this.quantifier(q[0]);
        return;
      }
      case '.':
        this.emit('.', true);
        return;
      case '|':
        this.emit('|', false);
        return;
      case '^':
        this.emit('^', false);
        return;
      case '$':
        // PCRE's "$" also matches before a newline that ends the subject (not with E or m).
        if (this.scope.multiline) this.emit('$', false);
        else if (this.flags.dollarEndOnly) this.emit('\\z', false);
        else this.emit('(?:\\n?\\z)', false);
        return;
      default:
        this.emit(re2Literal(c), true);
    }
  }

  private quantifier(q: string): void {
    if (!this.lastRepeatable) throw new TranslateError(`quantifier "${q}" does not follow a repeatable item`);
    let text = q;
    const next = this.peek();
    if (next === '+') throw unsupported(`possessive quantifier ${q}+`);
    if (next === '?') {
      text += '?';
      this.i++;
    }
    this.out += text;
    this.lastRepeatable = false;
  }

  private openGroup(): void {
    const rest = this.cs.slice(this.i, this.i + 8).join('');
    if (rest.startsWith('*')) {
      if (/^\*[A-Z:]/.test(rest)) throw unsupported(`backtracking control verb (${rest.split(')')[0]})`);
    }
    if (!rest.startsWith('?')) {
      const capture = !this.scope.noCapture;
      if (capture) this.groups++;
      this.scopes.push({ ...this.scope });
      this.emit(capture ? '(' : '(?:', false);
      return;
    }
    const lookups: Array<[string, string]> = [
      ['?=', 'lookahead (?=...)'],
      ['?!', 'negative lookahead (?!...)'],
      ['?<=', 'lookbehind (?<=...)'],
      ['?<!', 'negative lookbehind (?<!...)'],
      ['?>', 'atomic group (?>...)'],
      ['?|', 'branch reset group (?|...)'],
      ['?(', 'conditional group (?(...)...)'],
      ['?C', 'callout (?C...)'],
      ['?R)', 'recursion (?R)'],
      ['?&', 'subroutine call (?&name)'],
      ['?P>', 'subroutine call (?P>name)'],
      ['?P=', 'backreference (?P=name)'],
    ];
    for (const [prefix, what] of lookups) if (rest.startsWith(prefix)) throw unsupported(what);
    if (/^\?[+-]?\d/.test(rest)) throw unsupported(`recursion or subroutine call (${rest.split(')')[0]})`);
    if (rest.startsWith('?#')) {
      while (this.i < this.cs.length && this.cs[this.i] !== ')') this.i++;
      if (this.i >= this.cs.length) throw new TranslateError('missing ) after (?# comment');
      this.i++;
      return;
    }
    if (rest.startsWith('?:')) {
      this.i += 2;
      this.scopes.push({ ...this.scope });
      this.emit('(?:', false);
      return;
    }
    const named = /^\?(?:P?<([A-Za-z_][A-Za-z0-9_]*)>|'([A-Za-z_][A-Za-z0-9_]*)')/.exec(this.cs.slice(this.i, this.i + 40).join(''));
    if (named) {
      this.i += named[0].length;
      this.groups++;
      this.scopes.push({ ...this.scope });
      this.emit(`(?P<${named[1] ?? named[2]}>`, false);
      return;
    }
    const opt = /^\?(\^?)([A-Za-z]*)(?:-([A-Za-z]*))?([:)])/.exec(this.cs.slice(this.i, this.i + 24).join(''));
    if (!opt) throw new TranslateError(`unrecognized character after (? at "(${rest}"`);
    const reset = opt[1] === '^';
    const on = opt[2] ?? '';
    const off = opt[3] ?? '';
    for (const f of on + off) {
      if (!'imnsxU'.includes(f)) throw unsupported(`the inline option "${f}" in (${opt[0]}`);
    }
    this.i += opt[0].length;
    // "(?^)" first unsets i, m, n, s and x; RE2 needs them spelled out.
    const re2On = on.replace(/[xn]/g, '');
    const re2Off = ((reset ? 'ims' : '') + off.replace(/[xn]/g, '')).split('').filter((f, k, a) => a.indexOf(f) === k && !re2On.includes(f)).join('');
    const re2Flags = re2On + (re2Off ? `-${re2Off}` : '');
    const apply = (s: Scope): void => {
      if (reset) {
        s.extended = false;
        s.multiline = false;
        s.noCapture = false;
        s.caseless = false;
      }
      if (on.includes('i')) s.caseless = true;
      if (off.includes('i')) s.caseless = false;
      if (on.includes('x')) s.extended = true;
      if (off.includes('x')) s.extended = false;
      if (on.includes('m')) s.multiline = true;
      if (off.includes('m')) s.multiline = false;
      if (on.includes('n')) s.noCapture = true;
      if (off.includes('n')) s.noCapture = false;
    };
    if (opt[4] === ':') {
      const s = { ...this.scope };
      apply(s);
      this.scopes.push(s);
      this.emit(re2Flags ? `(?${re2Flags}:` : '(?:', false);
    } else {
      // "(?i)" changes the rest of the enclosing group, as in RE2.
      apply(this.scope);
      if (re2Flags) this.out += `(?${re2Flags})`;
      this.lastRepeatable = false;
    }
  }

  /** Text of \Q...\E as literals (the \Q has been consumed). */
  private quoted(inClass: boolean): string {
    let text = '';
    while (this.i < this.cs.length) {
      if (this.cs[this.i] === '\\' && this.cs[this.i + 1] === 'E') {
        this.i += 2;
        break;
      }
      const ch = this.cs[this.i++]!;
      text += inClass ? re2ClassChar(ch) : re2Literal(ch);
    }
    return text;
  }

  /** A character code escape (\x \o \0 \c \a \e \f \n \r \t), or null. */
  private codeEscape(c: string, inClass: boolean): number | null {
    switch (c) {
      case 'a':
        return 7;
      case 'e':
        return 0x1b;
      case 'f':
        return 0xc;
      case 'n':
        return 0xa;
      case 'r':
        return 0xd;
      case 't':
        return 9;
      case 'b':
        return inClass ? 8 : null;
      case 'x': {
        if (this.peek() === '{') {
          const m = /^\{([0-9A-Fa-f]+)\}/.exec(this.cs.slice(this.i, this.i + 12).join(''));
          if (!m) throw new TranslateError('bad \\x{...} escape');
          this.i += m[0].length;
          return parseInt(m[1]!, 16);
        }
        const m = /^[0-9A-Fa-f]{0,2}/.exec(this.cs.slice(this.i, this.i + 2).join(''))!;
        this.i += m[0].length;
        return m[0] === '' ? 0 : parseInt(m[0], 16);
      }
      case 'o': {
        const m = /^\{([0-7]+)\}/.exec(this.cs.slice(this.i, this.i + 16).join(''));
        if (!m) throw new TranslateError('missing opening brace after \\o');
        this.i += m[0].length;
        return parseInt(m[1]!, 8);
      }
      case 'c': {
        const x = this.cs[this.i++];
        if (x === undefined) throw new TranslateError('\\c at end of pattern');
        return x.toUpperCase().charCodeAt(0) ^ 0x40;
      }
      case '0': {
        const m = /^[0-7]{0,2}/.exec(this.cs.slice(this.i, this.i + 2).join(''))!;
        this.i += m[0].length;
        return parseInt('0' + m[0], 8);
      }
      default:
        return null;
    }
  }

  private escape(): void {
    const c = this.cs[this.i++];
    if (c === undefined) throw new TranslateError('\\ at end of pattern');
    const code = this.codeEscape(c, false);
    if (code !== null && code > 0xff) throw new TranslateError('character code point value in \\x{} or \\o{} is too large');
    if (code !== null) {
      this.emit(re2Literal(String.fromCodePoint(code)), true);
      return;
    }
    switch (c) {
      case 'd':
      case 'D':
      case 'w':
      case 'W':
        this.emit(`\\${c}`, true);
        return;
      case 's':
        this.emit(`[${SPACE_ITEMS}]`, true);
        return;
      case 'S':
        this.emit(`[^${SPACE_ITEMS}]`, true);
        return;
      case 'h':
        this.emit(`[${HSPACE_ITEMS}]`, true);
        return;
      case 'H':
        this.emit(`[^${HSPACE_ITEMS}]`, true);
        return;
      case 'v':
        this.emit(`[${VSPACE_ITEMS}]`, true);
        return;
      case 'V':
        this.emit(`[^${VSPACE_ITEMS}]`, true);
        return;
      case 'R':
        this.emit('(?:\\r\\n|[\\x{a}-\\x{d}\\x{85}\\x{2028}\\x{2029}])', true);
        return;
      case 'N':
        if (this.peek() === '{') throw unsupported('\\N{...}');
        this.emit('[^\\n]', true);
        return;
      case 'b':
      case 'B':
      case 'A':
      case 'z':
        this.emit(`\\${c}`, false);
        return;
      case 'G':
        // Postfix matches from offset 0, where \G (start of the match attempt) is \A.
        this.emit('\\A', false);
        return;
      case 'Z':
        this.emit('(?:\\n?\\z)', false);
        return;
      case 'Q':
        this.emit(this.quoted(false), true);
        return;
      case 'E':
        return;
      case 'p':
      case 'P': {
        const m = /^(\{\^?[A-Za-z_&]+\}|[A-Za-z])/.exec(this.cs.slice(this.i, this.i + 40).join(''));
        if (!m) throw new TranslateError(`malformed \\${c} escape`);
        this.i += m[0].length;
        // PCRE2 never case-folds a Unicode property; RE2 would under (?i).
        this.emit(this.scope.caseless ? `(?-i:\\${c}${m[0]})` : `\\${c}${m[0]}`, true);
        return;
      }
      case 'K':
        throw unsupported('\\K (match start reset)');
      case 'X':
        throw unsupported('\\X (extended grapheme cluster)');
      case 'C':
        throw unsupported('\\C (single code unit)');
      case 'g': {
        if (this.peek() === '<' || this.peek() === "'") throw unsupported(`subroutine call \\g${this.peek()}...`);
        throw unsupported('backreference \\g');
      }
      case 'k':
        throw unsupported('named backreference \\k');
      default:
        if (c >= '1' && c <= '9') {
          this.decimalEscape(c);
          return;
        }
        if (/^[A-Za-z]$/.test(c)) throw new TranslateError(`unrecognized character follows \\: "\\${c}"`);
        this.emit(re2Literal(c), true);
    }
  }

  /**
   * PCRE2: \N with N < 10, a leading 8 or 9, or N <= groups so far is a backreference;
   * otherwise up to three octal digits are a character ("\101" is "A").
   */
  private decimalEscape(first: string): void {
    const m = /^[0-9]*/.exec(this.cs.slice(this.i, this.i + 8).join(''))!;
    const digits = first + m[0];
    const n = Number(digits);
    if (n < 10 || first === '8' || first === '9' || n <= this.groups) throw unsupported(`backreference \\${digits}`);
    const oct = /^[0-7]{1,3}/.exec(digits)![0];
    this.i += oct.length - 1;
    const code = parseInt(oct, 8);
    if (code > 0xff) throw new TranslateError('octal value is greater than \\377 in 8-bit non-UTF mode');
    this.emit(re2Literal(String.fromCodePoint(code)), true);
  }

  private charClass(): string {
    let text = '[';
    let negated = false;
    if (this.peek() === '^') {
      text += '^';
      negated = true;
      this.i++;
    }
    /** \p{...} items, kept apart when caseless: PCRE2 does not fold them, RE2 would. */
    const properties: string[] = [];
    let first = true;
    /** The previous item was one character (so a "-" after it makes a range). */
    let lastWasChar = false;
    let inRange = false;
    for (;;) {
      const c = this.cs[this.i];
      if (c === undefined) throw new TranslateError('missing terminating ] for character class');
      this.i++;
      if (c === ']' && !first) break;
      first = false;
      const before = text.length;
      const wasRange = inRange;
      inRange = false;
      if (c === '[' && /^[:=.]/.test(this.peek() ?? '')) {
        const m = /^([:=.])(\^?)([A-Za-z]+)\1\]/.exec(this.cs.slice(this.i, this.i + 20).join(''));
        if (m && m[1] === ':') {
          if (!POSIX_CLASSES.has(m[3]!)) throw new TranslateError(`unknown POSIX class name "${m[3]}"`);
          if (wasRange) throw new TranslateError('invalid range in character class');
          text += `[:${m[2]}${m[3]}:]`;
          this.i += m[0].length;
          lastWasChar = false;
          continue;
        }
        if (m || this.peek() !== ':') throw new TranslateError('POSIX collating elements are not supported');
      }
      if (c === '\\') {
        const item = this.classEscape();
        if (/^\\[pP]/.test(item.text) && this.scope.caseless) {
          if (negated) throw unsupported('\\p{...} in a negated class under case-insensitive matching (RE2 would fold it)');
          if (wasRange) throw new TranslateError('invalid range in character class');
          properties.push(item.text);
          lastWasChar = false;
          continue;
        }
        const isChar = item.single;
        if (wasRange && !isChar) throw new TranslateError('invalid range in character class');
        text += item.text;
        lastWasChar = isChar && !wasRange;
        continue;
      }
      if (c === '-' && !wasRange && this.peek() !== ']' && text.length > 0 && before > (text.startsWith('[^') ? 2 : 1)) {
        // A "-" after a character starts a range; after a class it is an error in PCRE2.
        if (!lastWasChar) throw new TranslateError('invalid range in character class');
        text += '-';
        inRange = true;
        lastWasChar = false;
        continue;
      }
      text += re2ClassChar(c);
      lastWasChar = !wasRange;
    }
    if (properties.length === 0) return text + ']';
    const props = `(?-i:[${properties.join('')}])`;
    return text === '[' ? props : `(?:${props}|${text}])`;
  }

  private classEscape(): { text: string; single: boolean } {
    const text = this.classEscapeText();
    return { text, single: /^(\\x\{[0-9a-f]+\}|[A-Za-z0-9]|[^\x00-\x7f])$/u.test(text) };
  }

  private classEscapeText(): string {
    const c = this.cs[this.i++];
    if (c === undefined) throw new TranslateError('\\ at end of pattern');
    const code = this.codeEscape(c, true);
    if (code !== null && code > 0xff) throw new TranslateError('character code point value in \\x{} or \\o{} is too large');
    if (code !== null) return re2ClassChar(String.fromCodePoint(code));
    switch (c) {
      case 'd':
      case 'D':
      case 'w':
      case 'W':
        return `\\${c}`;
      case 's':
        return SPACE_ITEMS;
      case 'S':
        return '[:^space:]';
      case 'h':
        return HSPACE_ITEMS;
      case 'v':
        return VSPACE_ITEMS;
      case 'H':
      case 'V':
        throw unsupported(`\\${c} inside a character class`);
      case 'Q':
        return this.quoted(true);
      case 'E':
        return '';
      case 'p':
      case 'P': {
        const m = /^(\{\^?[A-Za-z_&]+\}|[A-Za-z])/.exec(this.cs.slice(this.i, this.i + 40).join(''));
        if (!m) throw new TranslateError(`malformed \\${c} escape`);
        this.i += m[0].length;
        return `\\${c}${m[0]}`;
      }
      default:
        // In a class \1 is octal, not a backreference.
        if (c >= '1' && c <= '7') {
          const m = /^[0-7]{0,2}/.exec(this.cs.slice(this.i, this.i + 2).join(''))!;
          this.i += m[0].length;
          return re2ClassChar(String.fromCodePoint(parseInt(c + m[0], 8)));
        }
        if (/^[A-Za-z0-9]$/.test(c)) throw new TranslateError(`escape sequence "\\${c}" is invalid in a character class`);
        return re2ClassChar(c);
    }
  }
}

export function translatePcre(pattern: string, flags: PcreFlags): Translation {
  try {
    return new PcreParser(pattern, flags).run();
  } catch (e) {
    if (e instanceof TranslateError) return { error: e.message };
    throw e;
  }
}
