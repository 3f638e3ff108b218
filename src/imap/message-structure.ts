/**
 * @module imap/message-structure
 * SUMMARY: one parse per message serves every FETCH item: parseMessage() walks the MIME tree
 * (byte ranges, no decoding) and the MessageStructure answers ENVELOPE, BODYSTRUCTURE/BODY
 * (ImapValues for imap/compiler), BODY[section]<partial> bytes and header lookups for SEARCH.
 * The walk, RFC 822 tokenizer, address parser and string forms follow Dovecot 2.3, quirks
 * included, so clients see what Dovecot shows them (test/imap compares the two).
 * DIAGNOSTICS: never throws on content: a missing end boundary ends at the parent's end, a bad
 * Content-Type keeps what could be read, nesting stops at 100 levels.
 * SEE ALSO: RFC 3501 6.4.5, 7.4.2; RFC 2045/2046, 5322, 2183, 2231; Dovecot message-parser.c.
 */
import { adjacent, literal, type ImapValue } from './compiler.js';
import type { FetchPartial, SectionSpec } from './parser.js';

/** One header field as it appears in the message. */
export interface HeaderField {
  /** The name as written, LWSP before the colon removed; '' for a line without a colon. */
  readonly name: string;
  /** The name, lower-cased, for lookups. */
  readonly key: string;
  /** Byte range of the whole field in the message buffer, folded lines and newline included. */
  readonly start: number;
  readonly end: number;
  /** Where the value starts (after the colon and the white space that follows it). */
  readonly valueStart: number;
  /** Where the value ends (before the field's final newline). */
  readonly valueEnd: number;
}

/** One MIME entity. All offsets index MessageStructure.buffer. */
export interface BodyPart {
  /** Start of the part's header (= start of the part). */
  readonly start: number;
  /** Start of the part's body (after the blank line; = `end` when there is no body). */
  readonly bodyStart: number;
  /** End of the part (exclusive). */
  readonly end: number;
  readonly headers: readonly HeaderField[];
  /** Content-Type, lower-cased; text/plain by default (message/rfc822 in a multipart/digest). */
  readonly type: string;
  readonly subtype: string;
  /** Content-Type parameters, names and values as sent (quotes removed). */
  readonly params: readonly (readonly [string, string])[];
  /** Content-Transfer-Encoding, lower-cased; '7bit' when absent. */
  readonly encoding: string;
  /** multipart/*: the body parts; otherwise empty. */
  readonly children: readonly BodyPart[];
  /** message/rfc822: the encapsulated message; otherwise null. */
  readonly message: BodyPart | null;
}

/** A parsed message; build it once per message with parseMessage and ask it for everything. */
export interface MessageStructure {
  readonly buffer: Buffer;
  readonly root: BodyPart;
  /** RFC822.SIZE: buffer.length. */
  readonly size: number;
  /** The ENVELOPE value (cached). */
  envelope(): ImapValue;
  /** BODYSTRUCTURE (extensible = true) or BODY (false) (cached). */
  bodyStructure(extensible: boolean): ImapValue;
  /**
   * The bytes of BODY[section]<partial> (NULs turned into 0x80, as literals may not hold
   * NUL); an empty Buffer for a part that does not exist or a partial past the end, as
   * Dovecot answers. Send it with compiler literal().
   */
  section(spec: SectionSpec, partial?: FetchPartial): Buffer;
  /** The values (raw bytes, leading white space and newlines of folding removed) of the top-level header `name`. */
  headerValues(name: string): Buffer[];
  /** The raw header block of the top-level message (blank line included). */
  header(): Buffer;
  /** The raw body of the top-level message. */
  body(): Buffer;
}

// ---------------------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------------------

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const DASH = 0x2d;
const COLON = 0x3a;
const CRLF = Buffer.from('\r\n');
const isLwsp = (c: number | undefined): boolean => c === SP || c === TAB;
/** U+FFFD as UTF-8 bytes in a latin1 string: what Dovecot puts where a header had NUL. */
const NUL_REPLACEMENT = '\xef\xbf\xbd';
/** MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS / _TOTAL_ */
const MAX_NESTED_PARTS = 100;
const MAX_TOTAL_PARTS = 10000;
/** BOUNDARY_STRING_MAX_LEN: longer boundary parameters are cut (only the prefix must match). */
const BOUNDARY_MAX = 80;

/** A latin1 string holds one byte per char, so bytes survive the trip through string code. */
function bin(buf: Buffer, start: number, end: number): string {
  return buf.toString('latin1', start, end);
}
function bytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

// ---------------------------------------------------------------------------------------
// RFC 822 tokenizer (rfc822-parser.c). Results: -1 error, 0 end of data, 1 more data.
// ---------------------------------------------------------------------------------------

// atext: 1 = atext, 2 = letter/digit/8-bit, 4 = atext that is a MIME tspecial ("/", "=", "?").
const ATEXT = new Uint8Array(256);
for (let c = 0x80; c < 256; c++) ATEXT[c] = 2;
for (let c = 0x30; c <= 0x39; c++) ATEXT[c] = 2;
for (let c = 0x41; c <= 0x5a; c++) ATEXT[c] = 2;
for (let c = 0x61; c <= 0x7a; c++) ATEXT[c] = 2;
for (const ch of "!#$%&'*+-^_`{|}~") ATEXT[ch.charCodeAt(0)] = 1;
for (const ch of '/=?') ATEXT[ch.charCodeAt(0)] = 4;
const isAtext = (c: number | undefined): boolean => c !== undefined && ATEXT[c] !== 0;
const isToken = (c: number | undefined): boolean => c !== undefined && (ATEXT[c]! & 3) !== 0;

class Rfc822 {
  p = 0;
  readonly end: number;
  /** The text of the last comment skipped, when tracked (address parsing). */
  lastComment: string | null;
  nul: string | null = null;

  constructor(readonly d: Buffer, trackComments: boolean) {
    this.end = d.length;
    this.lastComment = trackComments ? '' : null;
  }

  skipComment(): number {
    const d = this.d;
    let level = 1;
    if (this.lastComment !== null) this.lastComment = '';
    let start = ++this.p;
    for (; this.p < this.end; this.p++) {
      const c = d[this.p]!;
      if (c === 0) {
        if (this.lastComment !== null && this.nul !== null) {
          this.lastComment += bin(d, start, this.p) + this.nul;
          start = this.p + 1;
        }
      } else if (c === 0x28) {
        level++;
      } else if (c === 0x29) {
        if (--level === 0) {
          if (this.lastComment !== null) this.lastComment += bin(d, start, this.p);
          this.p++;
          return this.p < this.end ? 1 : 0;
        }
      } else if (c === LF) {
        if (this.lastComment !== null) {
          let e = this.p;
          if (e > start && d[e - 1] === CR) e--;
          this.lastComment += bin(d, start, e);
          start = this.p + 1;
        }
      } else if (c === 0x5c) {
        this.p++;
        if (this.p >= this.end) return -1;
        const e = d[this.p];
        if (e === CR || e === LF || e === 0) {
          this.p--;
          continue;
        }
        if (this.lastComment !== null) this.lastComment += bin(d, start, this.p - 1);
        start = this.p;
      }
    }
    return -1;
  }

  skipLwsp(): number {
    const d = this.d;
    while (this.p < this.end) {
      const c = d[this.p];
      if (c === SP || c === TAB || c === CR || c === LF) {
        this.p++;
        continue;
      }
      if (c !== 0x28) break;
      if (this.skipComment() < 0) return -1;
    }
    return this.p < this.end ? 1 : 0;
  }

  atom(acc: { s: string }): number {
    if (this.p >= this.end || !isAtext(this.d[this.p])) return -1;
    const start = this.p++;
    while (this.p < this.end && isAtext(this.d[this.p])) this.p++;
    acc.s += bin(this.d, start, this.p);
    return this.p < this.end ? this.skipLwsp() : 0;
  }

  dotAtom(acc: { s: string }): number {
    if (this.p >= this.end || !isAtext(this.d[this.p])) return -1;
    let start = this.p++;
    for (;;) {
      while (this.p < this.end && isAtext(this.d[this.p])) this.p++;
      if (this.p >= this.end) break;
      if (start === this.p) return -1;
      acc.s += bin(this.d, start, this.p);
      const ret = this.skipLwsp();
      if (ret <= 0) return ret;
      if (this.d[this.p] !== 0x2e) return 1;
      this.p++;
      acc.s += '.';
      if (this.skipLwsp() <= 0) return -1;
      start = this.p;
    }
    acc.s += bin(this.d, start, this.p);
    return 0;
  }

  mimeToken(acc: { s: string }): number {
    const start = this.p;
    while (this.p < this.end && (isToken(this.d[this.p]) || this.d[this.p] === 0x2e)) this.p++;
    acc.s += bin(this.d, start, this.p);
    return this.p < this.end ? this.skipLwsp() : 0;
  }

  quoted(acc: { s: string }): number {
    const d = this.d;
    this.p++;
    let start = this.p;
    for (; this.p < this.end; this.p++) {
      const c = d[this.p]!;
      if (c === 0) {
        if (this.nul !== null) {
          acc.s += bin(d, start, this.p) + this.nul;
          start = this.p + 1;
        }
      } else if (c === 0x22) {
        acc.s += bin(d, start, this.p);
        this.p++;
        return this.skipLwsp();
      } else if (c === LF) {
        let e = this.p;
        if (e > start && d[e - 1] === CR) e--;
        acc.s += bin(d, start, e);
        start = this.p + 1;
      } else if (c === 0x5c) {
        this.p++;
        if (this.p >= this.end) return -1;
        const e = d[this.p];
        if (e === CR || e === LF || e === 0) {
          this.p--;
          continue;
        }
        acc.s += bin(d, start, this.p - 1);
        start = this.p;
      }
    }
    return -1;
  }

  atomOrDot(acc: { s: string }): number {
    const start = this.p;
    while (this.p < this.end && (isAtext(this.d[this.p]) || this.d[this.p] === 0x2e)) this.p++;
    acc.s += bin(this.d, start, this.p);
    return this.p < this.end ? this.skipLwsp() : 0;
  }

  phrase(acc: { s: string }): number {
    if (this.p >= this.end) return 0;
    if (this.d[this.p] === 0x2e) return -1;
    for (;;) {
      const ret = this.d[this.p] === 0x22 ? this.quoted(acc) : this.atomOrDot(acc);
      if (ret <= 0) return ret;
      const c = this.d[this.p];
      if (!isAtext(c) && c !== 0x22 && c !== 0x2e) break;
      acc.s += ' ';
    }
    return this.skipLwsp();
  }

  domainLiteral(acc: { s: string }): number {
    const d = this.d;
    let start = this.p++;
    for (; this.p < this.end; this.p++) {
      const c = d[this.p]!;
      if (c === 0) {
        if (this.nul !== null) {
          acc.s += bin(d, start, this.p) + this.nul;
          start = this.p + 1;
        }
      } else if (c === 0x5b) {
        return -1;
      } else if (c === 0x5d) {
        acc.s += bin(d, start, this.p + 1);
        this.p++;
        return this.skipLwsp();
      } else if (c === LF) {
        let e = this.p;
        if (e > start && d[e - 1] === CR) e--;
        acc.s += bin(d, start, e);
        start = this.p + 1;
      } else if (c === 0x5c) {
        this.p++;
        if (this.p >= this.end) return -1;
        const e = d[this.p];
        if (e === CR || e === LF || e === 0) {
          acc.s += bin(d, start, this.p);
          start = this.p;
          this.p--;
        }
      }
    }
    return -1;
  }

  domain(acc: { s: string }): number {
    this.p++;
    if (this.skipLwsp() <= 0) return -1;
    return this.d[this.p] === 0x5b ? this.domainLiteral(acc) : this.dotAtom(acc);
  }

  /** type "/" subtype; on failure acc keeps what Dovecot keeps (the type, when the input just ends). */
  contentType(acc: { s: string }): number {
    const base = acc.s.length;
    if (this.skipLwsp() <= 0) return -1;
    if (this.mimeToken(acc) <= 0 || acc.s.length === base) return -1;
    if (this.d[this.p] !== 0x2f) {
      acc.s = acc.s.slice(0, base);
      return -1;
    }
    this.p++;
    if (this.skipLwsp() <= 0) {
      acc.s = acc.s.slice(0, base);
      return -1;
    }
    acc.s += '/';
    const sub = acc.s.length;
    const ret = this.mimeToken(acc);
    if (ret < 0 || acc.s.length === sub || (this.p !== this.end && this.d[this.p] !== 0x3b)) {
      acc.s = acc.s.slice(0, base);
      return -1;
    }
    return ret;
  }

  contentParam(): { ret: number; key: string; value: string } {
    const value = { s: '' };
    if (this.p >= this.end) return { ret: 0, key: '', value: '' };
    if (this.d[this.p] !== 0x3b) return { ret: -1, key: '', value: '' };
    this.p++;
    if (this.skipLwsp() <= 0) return { ret: -1, key: '', value: '' };
    const key = { s: '' };
    if (this.mimeToken(key) <= 0) return { ret: -1, key: '', value: '' };
    if (this.d[this.p] !== 0x3d) return { ret: -1, key: '', value: '' };
    this.p++;
    let ret = this.skipLwsp();
    if (ret <= 0) {
      // broken / no value
    } else if (this.d[this.p] === 0x22) {
      ret = this.quoted(value);
    } else if (this.p < this.end && this.d[this.p] === 0x3d) {
      // Broken senders write name==?utf-8?b?...?= unquoted.
      const start = this.p;
      while (this.p < this.end) {
        const c = this.d[this.p];
        if (c === 0x3b || c === SP || c === TAB || c === CR || c === LF) break;
        this.p++;
      }
      value.s += bin(this.d, start, this.p);
    } else {
      ret = this.mimeToken(value);
    }
    return { ret: ret < 0 ? -1 : 1, key: key.s, value: value.s };
  }
}

/**
 * Content parameters as Dovecot 2.3 lists them: plain ones in order, then RFC 2231 ones
 * (name*0, name*1*, name*) merged per name, sorted by name, still percent-encoded, with the
 * name marked `name*` when any segment was extended.
 */
function parseParams(rfc: Rfc822): [string, string][] {
  const result: [string, string][] = [];
  const ext: { key: string; value: string; idx: number; extended: boolean }[] = [];
  const saved = rfc.nul;
  rfc.nul = NUL_REPLACEMENT;
  // Dovecot reuses one record, so a `name*` after `x*3` inherits index 3; kept for fidelity.
  let idx = 0;
  for (;;) {
    const r = rfc.contentParam();
    if (r.ret === 0) break;
    if (r.ret < 0) {
      if (rfc.p >= rfc.end) break;
      rfc.p++;
      continue;
    }
    const star = r.key.indexOf('*');
    let plain = true;
    if (star >= 0) {
      let i = star;
      if (i + 1 < r.key.length) {
        i++;
        idx = 0;
        while (i < r.key.length && r.key.charCodeAt(i) >= 0x30 && r.key.charCodeAt(i) <= 0x39) idx = idx * 10 + r.key.charCodeAt(i++) - 0x30;
      }
      let extended = false;
      if (r.key[i] === '*') {
        extended = true;
        i++;
      }
      if (i >= r.key.length) {
        ext.push({ key: r.key.slice(0, star), value: r.value, idx, extended });
        plain = false;
      }
    }
    if (plain) result.push([r.key, r.value]);
  }
  rfc.nul = saved;
  if (ext.length === 0) return result;
  ext.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.idx - b.idx));
  for (let i = 0; i < ext.length; ) {
    const first = ext[i]!;
    let j = i;
    let ok = true;
    let haveExtended = false;
    let nextIdx = 0;
    for (; j < ext.length && ext[j]!.key.toLowerCase() === first.key.toLowerCase(); j++) {
      if (ext[j]!.idx !== nextIdx) ok = false;
      if (ext[j]!.extended) haveExtended = true;
      nextIdx++;
    }
    if (!ok) {
      for (let k = i; k < j; k++) {
        const e = ext[k]!;
        result.push([`${e.key}*${e.idx}${e.extended ? '*' : ''}`, e.value]);
      }
    } else {
      let value = !first.extended && haveExtended ? "''" : '';
      for (let k = i; k < j; k++) {
        const e = ext[k]!;
        value += !e.extended && haveExtended ? e.value.replace(/%/g, '%25') : e.value;
      }
      result.push([haveExtended ? `${first.key}*` : first.key, value]);
    }
    i = j;
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Addresses (message-address.c with FILL_MISSING, non-strict dots)
// ---------------------------------------------------------------------------------------

interface Address {
  name: string | null;
  route: string | null;
  mailbox: string | null;
  domain: string | null;
}

class AddressParser {
  readonly list: Address[] = [];
  addr: Address = { name: null, route: null, mailbox: null, domain: null };
  invalid = false;
  readonly str = { s: '' };
  constructor(readonly rfc: Rfc822) {}

  add(): void {
    this.list.push(this.addr);
    this.addr = { name: null, route: null, mailbox: null, domain: null };
    this.invalid = false;
  }

  nonStrictDotAtom(): number {
    const rfc = this.rfc;
    let ret = -1;
    do {
      while (rfc.d[rfc.p] === 0x2e) {
        this.str.s += '.';
        rfc.p++;
        if (rfc.p === rfc.end) return 0;
        ret = 1;
      }
      if (rfc.d[rfc.p] === 0x40) break;
      ret = rfc.atom(this.str);
    } while (ret > 0 && rfc.d[rfc.p] === 0x2e);
    return ret;
  }

  localPart(): number {
    this.str.s = '';
    const ret = this.rfc.d[this.rfc.p] === 0x22 ? this.rfc.quoted(this.str) : this.nonStrictDotAtom();
    if (ret < 0) return -1;
    this.addr.mailbox = this.str.s;
    return ret;
  }

  domain(): number {
    this.str.s = '';
    const ret = this.rfc.domain(this.str);
    if (ret < 0) return -1;
    this.addr.domain = this.str.s;
    return ret;
  }

  domainList(): number {
    const rfc = this.rfc;
    this.str.s = '';
    for (;;) {
      if (rfc.p >= rfc.end) return 0;
      if (rfc.d[rfc.p] !== 0x40) break;
      if (this.str.s.length > 0) this.str.s += ',';
      this.str.s += '@';
      const ret = rfc.domain(this.str);
      if (ret <= 0) return ret;
      while (rfc.skipLwsp() > 0 && rfc.d[rfc.p] === 0x2c) rfc.p++;
    }
    this.addr.route = this.str.s;
    return 1;
  }

  angleAddr(): number {
    const rfc = this.rfc;
    rfc.p++;
    if (rfc.skipLwsp() <= 0) return -1;
    if (rfc.d[rfc.p] === 0x40) {
      if (this.domainList() > 0 && rfc.d[rfc.p] === COLON) {
        rfc.p++;
      } else {
        this.addr.route = 'INVALID_ROUTE';
        if (rfc.p >= rfc.end) return -1;
      }
      if (rfc.skipLwsp() <= 0) return -1;
    }
    if (rfc.d[rfc.p] !== 0x3e) {
      if (this.localPart() <= 0) return -1;
      if (rfc.d[rfc.p] === 0x40 && this.domain() <= 0) return -1;
    }
    if (rfc.d[rfc.p] !== 0x3e) return -1;
    rfc.p++;
    return rfc.skipLwsp();
  }

  nameAddr(): number {
    const rfc = this.rfc;
    this.str.s = '';
    if (rfc.phrase(this.str) <= 0 || rfc.d[rfc.p] !== 0x3c) return -1;
    this.addr.name = this.str.s === '' ? null : this.str.s;
    if (this.angleAddr() < 0) {
      this.addr.domain = 'SYNTAX_ERROR';
      this.invalid = true;
    }
    return rfc.p < rfc.end ? 1 : 0;
  }

  addrSpec(): number {
    const rfc = this.rfc;
    rfc.lastComment = '';
    const quoted = rfc.d[rfc.p] === 0x22;
    let ret = this.localPart();
    let ret2 = -2;
    if (ret <= 0) this.invalid = true;
    if (ret !== 0 && rfc.p < rfc.end && rfc.d[rfc.p] === 0x40) {
      ret2 = this.domain();
      if (ret2 <= 0) ret = ret2;
    }
    if (rfc.lastComment !== null && rfc.lastComment.length > 0) {
      this.addr.name = rfc.lastComment;
    } else if (ret2 === -2) {
      // "user" alone is a mailbox; "user more words" is a display name.
      this.str.s += ' ';
      const before = this.str.s.length;
      rfc.phrase(this.str);
      if (this.str.s.length !== before) {
        this.addr.mailbox = null;
        this.addr.name = this.str.s;
      } else if (!quoted) {
        this.addr.domain = '';
      }
      this.invalid = true;
      ret = -1;
    }
    return ret;
  }

  addFixed(): void {
    if (this.addr.mailbox === null) this.addr.mailbox = 'MISSING_MAILBOX';
    if (this.addr.domain === null || this.addr.domain === '') this.addr.domain = 'MISSING_DOMAIN';
    this.add();
  }

  mailbox(): number {
    const rfc = this.rfc;
    const start = rfc.p;
    let ret = this.nameAddr();
    if (ret < 0) {
      rfc.p = start;
      ret = this.addrSpec();
      if (this.invalid && this.addr.name === null && this.addr.mailbox !== null && this.addr.domain === null) {
        this.addr.name = this.addr.mailbox;
        this.addr.mailbox = null;
      }
    }
    this.addFixed();
    return ret;
  }

  group(): number {
    const rfc = this.rfc;
    this.str.s = '';
    if (rfc.phrase(this.str) <= 0 || rfc.d[rfc.p] !== COLON) return -1;
    rfc.p++;
    let ret = rfc.skipLwsp();
    this.addr.mailbox = this.str.s;
    this.add();
    if (ret > 0 && rfc.d[rfc.p] !== 0x3b) {
      for (;;) {
        this.mailbox();
        if (rfc.p >= rfc.end || rfc.d[rfc.p] !== 0x2c) break;
        rfc.p++;
        if (rfc.skipLwsp() <= 0) {
          ret = -1;
          break;
        }
      }
    }
    if (ret >= 0) {
      if (rfc.p >= rfc.end || rfc.d[rfc.p] !== 0x3b) ret = -1;
      else {
        rfc.p++;
        ret = rfc.skipLwsp();
      }
    }
    this.add();
    return ret === 0 ? 0 : 1;
  }

  address(): number {
    const start = this.rfc.p;
    let ret = this.group();
    if (ret < 0) {
      this.rfc.p = start;
      ret = this.mailbox();
    }
    return ret;
  }

  addressList(): void {
    const rfc = this.rfc;
    // Each round consumes input or stops, so this ends; the bound is only a backstop.
    for (let guard = 0; guard < 100000; guard++) {
      if (this.address() === 0) break;
      if (rfc.p >= rfc.end || rfc.d[rfc.p] !== 0x2c) break;
      rfc.p++;
      const ret = rfc.skipLwsp();
      if (ret <= 0) {
        if (ret < 0) this.addFixed();
        break;
      }
    }
  }
}

function parseAddresses(value: Buffer): Address[] {
  const rfc = new Rfc822(value, true);
  rfc.nul = NUL_REPLACEMENT;
  const parser = new AddressParser(rfc);
  if (rfc.skipLwsp() > 0) parser.addressList();
  return parser.list;
}

// ---------------------------------------------------------------------------------------
// String forms (imap-quote.c)
// ---------------------------------------------------------------------------------------

/** A header value as Dovecot keeps it: NUL replaced by U+FFFD. */
function headerText(value: Buffer): string {
  const s = bin(value, 0, value.length);
  return s.includes('\0') ? s.replace(/\0/g, NUL_REPLACEMENT) : s;
}

/** imap_append_nstring_nolf: newlines before white space vanish, others become a space. */
function nolf(s: string | null): ImapValue {
  if (s === null) return null;
  if (!/[\r\n]/.test(s)) return bytes(s);
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\r' && c !== '\n') out += c;
    else {
      const n = s[i + 1];
      if (n !== undefined && n !== ' ' && n !== '\t' && n !== '\r' && n !== '\n') out += ' ';
    }
  }
  return bytes(out);
}

/**
 * imap_append_string_for_humans: white space runs become one space, ends trimmed, NUL becomes
 * 0x80; anything it had to change (or 8-bit, or quote characters) goes out as a literal.
 */
function forHumans(s: string): ImapValue {
  let modify = false;
  let lastLwsp = true;
  let prefix = true;
  let removed = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) {
      lastLwsp = false;
      modify = true;
    } else if (c === CR || c === LF || c === TAB || c === SP) {
      if (c !== SP) modify = true;
      if (lastLwsp) {
        modify = true;
        removed++;
      }
      lastLwsp = true;
    } else {
      if (c === 0x22 || c === 0x5c || c >= 0x80) modify = true;
      lastLwsp = false;
    }
    if (!lastLwsp) prefix = false;
  }
  if (lastLwsp && s.length > 0 && !prefix) {
    modify = true;
    removed++;
  }
  if (!modify) return bytes(s);
  if (s.length === removed) return '';
  let out = '';
  lastLwsp = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) {
      out += '\x80';
      lastLwsp = false;
    } else if (c === CR || c === LF || c === TAB || c === SP) {
      if (!lastLwsp) out += ' ';
      lastLwsp = true;
    } else {
      out += s[i];
      lastLwsp = false;
    }
  }
  if (lastLwsp && out.endsWith(' ')) out = out.slice(0, -1);
  return literal(bytes(out));
}

function nstr(s: string | null): ImapValue {
  return s === null ? null : bytes(s);
}

// ---------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------

const ENVELOPE_STRINGS = new Set(['date', 'subject', 'message-id', 'in-reply-to']);
const ENVELOPE_ADDRESSES = ['from', 'sender', 'reply-to', 'to', 'cc', 'bcc'] as const;

function envelopeOf(buf: Buffer, headers: readonly HeaderField[] | null): ImapValue {
  if (headers === null) return [null, null, null, null, null, null, null, null, null, null];
  const strings = new Map<string, string>();
  const addresses = new Map<string, Address[]>();
  for (const h of headers) {
    if (ENVELOPE_STRINGS.has(h.key)) strings.set(h.key, headerText(buf.subarray(h.valueStart, h.valueEnd)));
    else if ((ENVELOPE_ADDRESSES as readonly string[]).includes(h.key)) {
      // Repeated address headers are merged, as Dovecot does, so a second From: is not hidden.
      const list = parseAddresses(buf.subarray(h.valueStart, h.valueEnd));
      const prev = addresses.get(h.key);
      if (prev === undefined) addresses.set(h.key, list);
      else prev.push(...list);
    }
  }
  const addressValue = (list: Address[] | undefined): ImapValue => {
    if (list === undefined || list.length === 0) return null;
    return [adjacent(list.map((a) => [a.name === null ? null : forHumans(a.name), nstr(a.route), nstr(a.mailbox), nstr(a.domain)]))];
  };
  const from = addresses.get('from');
  const pick = (key: string): Address[] | undefined => {
    const l = addresses.get(key);
    return l !== undefined && l.length > 0 ? l : from;
  };
  const subject = strings.get('subject');
  return [
    nolf(strings.get('date') ?? null),
    subject === undefined ? null : forHumans(subject),
    addressValue(from),
    addressValue(pick('sender')),
    addressValue(pick('reply-to')),
    addressValue(addresses.get('to')),
    addressValue(addresses.get('cc')),
    addressValue(addresses.get('bcc')),
    nolf(strings.get('in-reply-to') ?? null),
    nolf(strings.get('message-id') ?? null),
  ];
}

// ---------------------------------------------------------------------------------------
// The MIME walk (message-parser.c)
// ---------------------------------------------------------------------------------------

/** What Content-* headers say, as message-part-data.c keeps it (case as written). */
interface PartData {
  type: string | null;
  subtype: string;
  params: [string, string][];
  id: string | null;
  description: string | null;
  encoding: string | null;
  md5: string | null;
  disposition: string | null;
  dispositionParams: [string, string][] | null;
  language: string[] | null;
  location: string | null;
}

interface Part extends BodyPart {
  start: number;
  bodyStart: number;
  end: number;
  headers: HeaderField[];
  type: string;
  subtype: string;
  params: [string, string][];
  encoding: string;
  children: Part[];
  message: Part | null;
  multipart: boolean;
  rfc822: boolean;
  text: boolean;
  /** Cut off by the nesting or part-count limit: described as application/octet-stream. */
  truncated: boolean;
  data: PartData;
  envelopeHeaders: HeaderField[] | null;
  /** The header ended with a blank line (HEADER.FIELDS answers end with one only then). */
  eoh: boolean;
}

interface Boundary {
  readonly text: Buffer;
  readonly owner: Part;
}

/** How a part's scan stopped: at the end of the buffer, or at a boundary line. */
type Stop =
  | { readonly kind: 'eof' }
  | {
      readonly kind: 'boundary';
      readonly boundary: Boundary;
      /** Where the data before the boundary ends (its [CR]LF belongs to the boundary). */
      readonly bodyEnd: number;
      /** After the boundary line's LF; null when the line runs to the end of the buffer. */
      readonly next: number | null;
      readonly epilogue: boolean;
    };

function emptyData(): PartData {
  return {
    type: null,
    subtype: '',
    params: [],
    id: null,
    description: null,
    encoding: null,
    md5: null,
    disposition: null,
    dispositionParams: null,
    language: null,
    location: null,
  };
}

class Walker {
  readonly stack: Boundary[] = [];
  total = 0;
  constructor(readonly buf: Buffer) {}

  /** The boundary that the line at `pos` starts, by boundary_find's rules, or null. */
  boundaryAt(pos: number): { boundary: Boundary; next: number | null; epilogue: boolean } | null {
    const buf = this.buf;
    if (this.stack.length === 0 || buf[pos] !== DASH || buf[pos + 1] !== DASH) return null;
    const from = pos + 2;
    const lf = buf.indexOf(LF, from);
    let lineEnd = lf < 0 ? buf.length : lf;
    if (lf >= 0 && lineEnd > from && buf[lineEnd - 1] === CR) lineEnd--;
    const len = lineEnd - from;
    const trailingDashes = lf >= 0 && len > 2 && buf[lineEnd - 1] === DASH && buf[lineEnd - 2] === DASH;
    let best: Boundary | null = null;
    // Latest first, so a boundary reused by a nested part is the inner one; longest prefix wins.
    for (let i = this.stack.length - 1; i >= 0; i--) {
      const b = this.stack[i]!;
      const bl = b.text.length;
      if (bl <= len && buf.compare(b.text, 0, bl, from, from + bl) === 0 && (best === null || best.text.length < bl)) {
        best = b;
        if (bl === len || (bl === len - 2 && trailingDashes)) break;
      }
    }
    if (best === null) return null;
    const bl = best.text.length;
    const epilogue = buf.length - from >= bl + 2 && buf[from + bl] === DASH && buf[from + bl + 1] === DASH;
    return { boundary: best, next: lf < 0 ? null : lf + 1, epilogue };
  }

  /** Scan a body from `pos` (a line start) to the next boundary line or the end. */
  scan(pos: number): Stop {
    if (this.stack.length === 0) return { kind: 'eof' };
    const buf = this.buf;
    const first = this.boundaryAt(pos);
    if (first !== null) return { kind: 'boundary', bodyEnd: pos, ...first };
    let lf = buf.indexOf(LF, pos);
    while (lf >= 0) {
      const found = this.boundaryAt(lf + 1);
      if (found !== null) {
        const bodyEnd = lf > pos && buf[lf - 1] === CR ? lf - 1 : lf;
        return { kind: 'boundary', bodyEnd, ...found };
      }
      lf = buf.indexOf(LF, lf + 1);
    }
    return { kind: 'eof' };
  }

  /** Forget boundaries above `b` (and `b` itself when `inclusive`). */
  unwind(b: Boundary, inclusive: boolean): void {
    const i = this.stack.lastIndexOf(b);
    if (i >= 0) this.stack.length = inclusive ? i : i + 1;
  }

  emptyMessage(pos: number, parent: Part): Part {
    return {
      start: pos,
      bodyStart: pos,
      end: pos,
      headers: [],
      type: 'text',
      subtype: 'plain',
      params: [],
      encoding: '7bit',
      children: [],
      message: null,
      multipart: false,
      rfc822: false,
      text: true,
      truncated: false,
      data: emptyData(),
      envelopeHeaders: parent.rfc822 ? [] : null,
      eoh: false,
    };
  }

  /**
   * Parse one part starting at `start`. Returns the part and where its scan stopped; the
   * caller owns the stop unless it names a boundary of this part.
   */
  part(start: number, parent: Part | null, mimeChild: boolean, depth: number): { part: Part; stop: Stop } {
    const buf = this.buf;
    this.total++;
    const part: Part = {
      start,
      bodyStart: start,
      end: start,
      headers: [],
      type: 'text',
      subtype: 'plain',
      params: [],
      encoding: '7bit',
      children: [],
      message: null,
      multipart: false,
      rfc822: false,
      text: false,
      truncated: false,
      data: emptyData(),
      envelopeHeaders: null,
      eoh: false,
    };
    // --- header
    let pos = start;
    let isMime = mimeChild;
    let contentTypeSeen = false;
    let flagType = '';
    let boundaryParam: string | null = null;
    let headerStop: Stop | null = null;
    let prevNewline = 0;
    let blankLine = false;
    while (pos < buf.length) {
      const found = this.boundaryAt(pos);
      if (found !== null) {
        // An enclosing boundary ends the header; the newline before it is the parent's.
        headerStop = { kind: 'boundary', bodyEnd: pos, ...found };
        pos -= prevNewline;
        break;
      }
      if (buf[pos] === LF || (buf[pos] === CR && buf[pos + 1] === LF)) {
        prevNewline = buf[pos] === CR ? 2 : 1;
        pos += prevNewline;
        blankLine = true;
        break;
      }
      // One field: its first line, then every line that starts with white space.
      const fieldStart = pos;
      let lineEnd = buf.indexOf(LF, pos);
      for (;;) {
        if (lineEnd < 0) {
          lineEnd = buf.length;
          break;
        }
        if (!isLwsp(buf[lineEnd + 1])) break;
        lineEnd = buf.indexOf(LF, lineEnd + 1);
      }
      const fieldEnd = lineEnd < buf.length ? lineEnd + 1 : buf.length;
      const valueEnd = lineEnd < buf.length && lineEnd > fieldStart && buf[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
      prevNewline = fieldEnd - valueEnd;
      const firstLf = buf.indexOf(LF, fieldStart);
      const firstLineEnd = firstLf < 0 || firstLf > valueEnd ? valueEnd : firstLf > fieldStart && buf[firstLf - 1] === CR ? firstLf - 1 : firstLf;
      const colon = buf.indexOf(COLON, fieldStart);
      let name = '';
      let valueStart = fieldStart;
      if (colon >= 0 && colon < firstLineEnd) {
        let nameEnd = colon;
        while (nameEnd > fieldStart && isLwsp(buf[nameEnd - 1])) nameEnd--;
        name = bin(buf, fieldStart, nameEnd);
        valueStart = colon + 1;
        let v = valueStart;
        while (v < firstLineEnd && isLwsp(buf[v])) v++;
        // SKIP_INITIAL_LWSP, except that an all-blank first line loses only one character.
        valueStart = v < firstLineEnd ? v : isLwsp(buf[valueStart]) ? valueStart + 1 : valueStart;
      }
      const field: HeaderField = { name, key: name.toLowerCase(), start: fieldStart, end: fieldEnd, valueStart, valueEnd };
      part.headers.push(field);
      if (field.key === 'mime-version') isMime = true;
      else if (field.key === 'content-type') {
        isMime = true;
        if (!contentTypeSeen) {
          contentTypeSeen = true;
          const rfc = new Rfc822(buf.subarray(valueStart, valueEnd), false);
          rfc.skipLwsp();
          const acc = { s: '' };
          const ret = rfc.contentType(acc);
          flagType = acc.s.toLowerCase();
          if (ret >= 0 && flagType.startsWith('multipart/')) {
            for (const [k, v] of parseParams(rfc)) {
              if (k.toLowerCase() === 'boundary') {
                boundaryParam = v.slice(0, BOUNDARY_MAX);
                break;
              }
            }
          }
        }
      }
      pos = fieldEnd;
    }
    part.bodyStart = pos;
    // --- what the header says
    if (isMime && contentTypeSeen) {
      if (flagType === 'message/rfc822') part.rfc822 = true;
      else if (flagType === 'text' || flagType.startsWith('text/')) part.text = true;
      else if (flagType.startsWith('multipart/')) part.multipart = true;
    } else if (parent !== null && parent.multipart && parent.subtype.toLowerCase() === 'digest' && !parent.truncated) {
      part.rfc822 = true;
    } else {
      part.text = true;
    }
    const tooDeep = depth + 1 >= MAX_NESTED_PARTS || this.total >= MAX_TOTAL_PARTS;
    if ((part.rfc822 || part.multipart) && tooDeep) {
      part.truncated = true;
      part.rfc822 = false;
      part.multipart = false;
    }
    if (isMime) part.data = partData(buf, part.headers);
    if (parent !== null && parent.rfc822) part.envelopeHeaders = part.headers;
    describe(part);
    part.eoh = blankLine;
    // --- body
    let own: Boundary | null = null;
    if (blankLine && part.multipart && boundaryParam !== null) {
      // Pushed at the blank line, as Dovecot does, so that a nested part reusing an enclosing
      // boundary string finds its own first.
      own = { text: Buffer.from(boundaryParam, 'latin1'), owner: part };
      this.stack.push(own);
    }
    if (blankLine) {
      // Dovecot looks for an enclosing boundary before it knows the header has ended, so a
      // boundary right after the blank line takes that line's newline as its own.
      const found = this.boundaryAt(pos);
      if (found !== null && found.boundary !== own) {
        if (own !== null) this.unwind(own, true);
        own = null;
        headerStop = { kind: 'boundary', bodyEnd: pos, ...found };
        pos -= prevNewline;
        part.bodyStart = pos;
      }
    }
    if (headerStop !== null || !blankLine) {
      part.end = pos;
      // A message/rfc822 part still gets its (empty) message, as in Dovecot.
      if (part.rfc822) part.message = this.emptyMessage(pos, part);
      return { part, stop: headerStop ?? { kind: 'eof' } };
    }
    if (own !== null) {
      let stop = this.scan(pos);
      for (;;) {
        if (stop.kind === 'eof') {
          part.end = buf.length;
          return { part, stop };
        }
        if (stop.boundary.owner !== part) {
          part.end = stop.bodyEnd;
          return { part, stop };
        }
        if (stop.epilogue) {
          this.unwind(own, true);
          if (stop.next === null) {
            part.end = buf.length;
            return { part, stop: { kind: 'eof' } };
          }
          const after = this.scan(stop.next);
          part.end = after.kind === 'eof' ? buf.length : after.bodyEnd;
          return { part, stop: after };
        }
        this.unwind(own, false);
        if (stop.next === null) {
          part.end = buf.length;
          return { part, stop: { kind: 'eof' } };
        }
        const child = this.part(stop.next, part, true, depth + 1);
        part.children.push(child.part);
        stop = child.stop;
        // A child that ended on a boundary found in its header leaves that line's newline
        // to us, so our scan resumes at the boundary line itself.
      }
    }
    if (part.rfc822) {
      const child = this.part(pos, part, false, depth + 1);
      part.message = child.part;
      part.end = child.stop.kind === 'eof' ? buf.length : child.stop.bodyEnd;
      return { part, stop: child.stop };
    }
    const stop = this.scan(pos);
    part.end = stop.kind === 'eof' ? buf.length : stop.bodyEnd;
    return { part, stop };
  }
}

/** type, subtype, params and encoding for the exported BodyPart fields. */
function describe(part: Part): void {
  const d = part.data;
  if (part.rfc822) {
    part.type = 'message';
    part.subtype = 'rfc822';
  } else if (part.truncated) {
    part.type = 'application';
    part.subtype = 'octet-stream';
  } else if (d.type === null) {
    part.type = 'text';
    part.subtype = 'plain';
  } else {
    part.type = d.type.toLowerCase();
    part.subtype = d.subtype.toLowerCase();
  }
  if (part.multipart) part.subtype = d.subtype.toLowerCase();
  part.params = d.params;
  part.encoding = (d.encoding ?? '7bit').toLowerCase();
}

/** The Content-* headers of a MIME part (message-part-data.c): first of each wins. */
function partData(buf: Buffer, headers: readonly HeaderField[]): PartData {
  const d = emptyData();
  for (const h of headers) {
    if (!h.key.startsWith('content-')) continue;
    const value = buf.subarray(h.valueStart, h.valueEnd);
    switch (h.key) {
      case 'content-type': {
        if (d.type !== null) break;
        const rfc = new Rfc822(value, false);
        rfc.skipLwsp();
        const acc = { s: '' };
        const ret = rfc.contentType(acc);
        const slash = acc.s.indexOf('/');
        d.type = slash < 0 ? acc.s : acc.s.slice(0, slash);
        d.subtype = slash < 0 ? '' : acc.s.slice(slash + 1);
        if (ret >= 0) d.params = parseParams(rfc);
        break;
      }
      case 'content-transfer-encoding': {
        if (d.encoding !== null) break;
        const rfc = new Rfc822(value, false);
        rfc.skipLwsp();
        const acc = { s: '' };
        if (rfc.mimeToken(acc) >= 0 && rfc.skipLwsp() === 0 && acc.s.length > 0) d.encoding = acc.s;
        break;
      }
      case 'content-disposition': {
        if (d.dispositionParams !== null) break;
        const rfc = new Rfc822(value, false);
        rfc.skipLwsp();
        const acc = { s: '' };
        if (rfc.mimeToken(acc) < 0) break;
        d.disposition = acc.s;
        d.dispositionParams = parseParams(rfc);
        break;
      }
      case 'content-language': {
        if (d.language !== null) break;
        const rfc = new Rfc822(value, false);
        const langs: string[] = [];
        rfc.skipLwsp();
        for (;;) {
          const acc = { s: '' };
          if (rfc.atom(acc) < 0) break;
          langs.push(acc.s);
          if (rfc.p >= rfc.end || rfc.d[rfc.p] !== 0x2c) break;
          rfc.p++;
          rfc.skipLwsp();
        }
        if (langs.length > 0) d.language = langs;
        break;
      }
      case 'content-id':
        d.id ??= headerText(value);
        break;
      case 'content-md5':
        d.md5 ??= headerText(value);
        break;
      case 'content-description':
        d.description ??= headerText(value);
        break;
      case 'content-location':
        d.location ??= headerText(value);
        break;
    }
  }
  return d;
}

// ---------------------------------------------------------------------------------------
// BODYSTRUCTURE (imap-bodystructure.c)
// ---------------------------------------------------------------------------------------

function paramsValue(params: readonly (readonly [string, string])[] | null, defaultCharset: boolean): ImapValue {
  if (params === null || (params.length === 0 && !defaultCharset)) return null;
  const out: ImapValue[] = [];
  let seenCharset = false;
  for (const [k, v] of params) {
    if (k.toLowerCase() === 'charset') seenCharset = true;
    out.push(bytes(k), bytes(v));
  }
  if (defaultCharset && !seenCharset) out.push('charset', 'us-ascii');
  return out;
}

function extensionValues(d: PartData): ImapValue[] {
  return [
    d.disposition === null ? null : [bytes(d.disposition), paramsValue(d.dispositionParams, false)],
    d.language === null ? null : d.language.map(bytes),
    nolf(d.location),
  ];
}

const EMPTY_BODY: ImapValue[] = ['text', 'plain', ['charset', 'us-ascii'], null, null, '7bit', 0, 0];

function bodyStructureOf(buf: Buffer, part: Part, extended: boolean): ImapValue[] {
  const d = part.data;
  if (part.multipart) {
    const out: ImapValue[] = [
      part.children.length > 0
        ? adjacent(part.children.map((c) => bodyStructureOf(buf, c, extended)))
        : extended
          ? [...EMPTY_BODY, null, null, null, null]
          : EMPTY_BODY,
    ];
    out.push(bytes(d.subtype));
    if (extended) out.push(paramsValue(d.params, false), ...extensionValues(d));
    return out;
  }
  let text: boolean;
  const out: ImapValue[] = [];
  if (part.rfc822) {
    out.push('message', 'rfc822');
    text = false;
  } else if (part.truncated) {
    out.push('application', 'octet-stream');
    text = false;
  } else if (d.type === null) {
    out.push('text', 'plain');
    text = true;
  } else {
    out.push(bytes(d.type), bytes(d.subtype));
    text = d.type.toLowerCase() === 'text';
  }
  const size = part.end - part.bodyStart;
  out.push(paramsValue(d.params, text), nolf(d.id), nolf(d.description), d.encoding === null ? '7bit' : bytes(d.encoding), size);
  if (text) out.push(countLines(buf, part.bodyStart, part.end));
  else if (part.rfc822 && part.message !== null) {
    out.push(envelopeOf(buf, part.message.envelopeHeaders), bodyStructureOf(buf, part.message, extended), countLines(buf, part.bodyStart, part.end));
  }
  if (extended) out.push(nolf(d.md5), ...extensionValues(d));
  return out;
}

function countLines(buf: Buffer, start: number, end: number): number {
  let n = 0;
  let i = buf.indexOf(LF, start);
  while (i >= 0 && i < end) {
    n++;
    i = buf.indexOf(LF, i + 1);
  }
  return n;
}

// ---------------------------------------------------------------------------------------
// Sections (imap-msgpart.c)
// ---------------------------------------------------------------------------------------

/** The part a section path names, or null (imap_msgpart_find). */
function findPart(root: Part, path: readonly number[]): Part | null {
  let part: Part | null = root;
  for (let i = 0; i < path.length && part !== null; i++) {
    const num = path[i]!;
    const more = i + 1 < path.length;
    if (part.multipart) {
      part = part.children[num - 1] ?? null;
    } else if (num !== 1 || (more && !part.rfc822)) {
      part = null;
    }
    if (part !== null && part.rfc822 && more) part = part.message;
  }
  return part;
}

function headerLines(buf: Buffer, part: Part, fields: readonly string[], include: boolean): Buffer {
  const wanted = new Set(fields.map((f) => f.toLowerCase()));
  const out: Buffer[] = [];
  for (const h of part.headers) {
    if (h.name === '' ? include : wanted.has(h.key) !== include) continue;
    out.push(buf.subarray(h.start, h.end));
    if (h.end === h.valueEnd) out.push(CRLF);
  }
  // Dovecot ends the answer with the blank line when the header had one, and answers a bare
  // blank line when nothing matched.
  if (part.eoh || (include && out.length === 0)) out.push(CRLF);
  return Buffer.concat(out);
}

function noNuls(b: Buffer): Buffer {
  if (!b.includes(0)) return b;
  const copy = Buffer.from(b);
  for (let i = 0; i < copy.length; i++) if (copy[i] === 0) copy[i] = 0x80;
  return copy;
}

function sectionBytes(buf: Buffer, root: Part, spec: SectionSpec): Buffer {
  if (spec.path.length === 0) {
    switch (spec.text) {
      case null:
        return buf;
      case 'HEADER':
        return buf.subarray(root.start, root.bodyStart);
      case 'TEXT':
        return buf.subarray(root.bodyStart, root.end);
      case 'HEADER.FIELDS':
        return headerLines(buf, root, spec.fields, true);
      case 'HEADER.FIELDS.NOT':
        return headerLines(buf, root, spec.fields, false);
      case 'MIME':
        return Buffer.alloc(0);
    }
  }
  let part = findPart(root, spec.path);
  if (part === null) return Buffer.alloc(0);
  switch (spec.text) {
    case null:
      return buf.subarray(part.bodyStart, part.end);
    case 'MIME':
      // For a message/rfc822 part Dovecot answers its own MIME header (not the inner one's).
      return buf.subarray(part.start, part.bodyStart);
    default:
      if (!part.rfc822 || part.message === null) return Buffer.alloc(0);
      part = part.message;
  }
  switch (spec.text) {
    case 'HEADER':
      return buf.subarray(part.start, part.bodyStart);
    case 'TEXT':
      return buf.subarray(part.bodyStart, part.end);
    case 'HEADER.FIELDS':
      return headerLines(buf, part, spec.fields, true);
    case 'HEADER.FIELDS.NOT':
      return headerLines(buf, part, spec.fields, false);
  }
}

// ---------------------------------------------------------------------------------------
// The structure
// ---------------------------------------------------------------------------------------

class ParsedMessage implements MessageStructure {
  readonly root: Part;
  readonly size: number;
  #envelope: ImapValue | undefined;
  #body: ImapValue | undefined;
  #bodyStructure: ImapValue | undefined;

  constructor(readonly buffer: Buffer) {
    this.size = buffer.length;
    const walker = new Walker(buffer);
    this.root = walker.part(0, null, false, 0).part;
    this.root.end = buffer.length;
  }

  envelope(): ImapValue {
    return (this.#envelope ??= envelopeOf(this.buffer, this.root.headers));
  }

  bodyStructure(extensible: boolean): ImapValue {
    if (extensible) return (this.#bodyStructure ??= bodyStructureOf(this.buffer, this.root, true));
    return (this.#body ??= bodyStructureOf(this.buffer, this.root, false));
  }

  section(spec: SectionSpec, partial?: FetchPartial): Buffer {
    let data = sectionBytes(this.buffer, this.root, spec);
    if (partial !== undefined) {
      if (partial.origin >= data.length) return Buffer.alloc(0);
      data = data.subarray(partial.origin, partial.count === undefined ? undefined : partial.origin + partial.count);
    }
    return noNuls(data);
  }

  headerValues(name: string): Buffer[] {
    const key = name.toLowerCase();
    const out: Buffer[] = [];
    for (const h of this.root.headers) {
      if (h.key !== key) continue;
      const raw = this.buffer.subarray(h.valueStart, h.valueEnd);
      out.push(raw.includes(LF) ? Buffer.from(bin(raw, 0, raw.length).replace(/\r?\n/g, ''), 'latin1') : raw);
    }
    return out;
  }

  header(): Buffer {
    return this.buffer.subarray(this.root.start, this.root.bodyStart);
  }

  body(): Buffer {
    return this.buffer.subarray(this.root.bodyStart, this.root.end);
  }
}

/** Walk a message; never throws. The buffer is kept, not copied. */
export function parseMessage(buffer: Buffer): MessageStructure {
  return new ParsedMessage(buffer);
}
