/**
 * @module imap/compiler
 * SUMMARY: the pure IMAP4rev1 response serialiser. Exports the ImapValue model (NIL, numbers,
 * strings that pick quoted or literal form themselves, atoms, forced literals, lists), its
 * builders (atom, literal, astring, flagList), and compilers that return the exact bytes of a
 * tagged, untagged, status, continuation or FETCH response, CRLF included (compileFetchInto:
 * a FETCH response as pieces, for batching); plus the
 * INTERNALDATE format and the modified UTF-7 mailbox-name encoding.
 * DIAGNOSTICS: pure; never throws on data (CR/LF in free text becomes a space, a string that
 * cannot be quoted becomes a literal).
 * SEE ALSO: RFC 3501 sections 4 (data formats), 7 (responses), 9 (formal syntax); WildDuck
 * imap-core imap-compiler.js.
 */

/** Written verbatim: flags, keywords, response keys like `BODY[1.2]<0>`, sequence-set text. */
export interface ImapAtom {
  readonly atom: string;
}
/** Always written as a literal `{n}\r\n` + bytes. */
export interface ImapLiteral {
  readonly literal: Buffer | string;
}
/** An astring: written as an atom when it is a valid one, else as a string (mailbox names). */
export interface ImapAString {
  readonly astring: string;
}
/**
 * Values written back to back with no space: the grammar's `1*body` (multipart children) and
 * `"(" 1*address ")"` (envelope address lists), which RFC 3501 9 spells without SP.
 */
export interface ImapAdjacent {
  readonly adjacent: readonly ImapValue[];
}

/**
 * A response value: null is NIL; numbers (and bigints) are numbers; a string or Buffer is an
 * IMAP string, quoted when it is short 7-bit text without CR/LF, a literal otherwise; an array
 * is a parenthesised list (items separated by SP; see ImapAdjacent for the exceptions).
 */
export type ImapValue =
  | null
  | number
  | bigint
  | string
  | Buffer
  | ImapAtom
  | ImapLiteral
  | ImapAString
  | ImapAdjacent
  | readonly ImapValue[];

export function atom(text: string): ImapAtom {
  return { atom: text };
}
export function literal(data: Buffer | string): ImapLiteral {
  return { literal: data };
}
export function astring(text: string): ImapAString {
  return { astring: text };
}
export function adjacent(values: readonly ImapValue[]): ImapAdjacent {
  return { adjacent: values };
}
/** Flags and keywords as a parenthesised list of atoms. */
export function flagList(flags: Iterable<string>): ImapValue[] {
  return [...flags].map(atom);
}

/** A response code `[NAME args...]`: `{ name: 'UIDVALIDITY', args: [3857529045] }`. */
export interface ResponseCode {
  readonly name: string;
  /** Written after the name, space-separated (a list arg gets its parentheses). */
  readonly args?: readonly ImapValue[];
}

export type TaggedStatus = 'OK' | 'NO' | 'BAD';
export type UntaggedStatus = 'OK' | 'NO' | 'BAD' | 'PREAUTH' | 'BYE';

/**
 * Strings longer than this go out as literals even when they could be quoted: a client's
 * line-length limit applies to quoted strings, never to literals. (Dovecot has no such limit;
 * this one is far above any header a client would see quoted from it.)
 */
export const MAX_QUOTED_LENGTH = 8192;
/**
 * imap-quote.c: past four `"` or `\`, the escapes cost more than a literal's `{n}\r\n`, so
 * Dovecot switches to a literal; following it keeps our answers byte-identical to its.
 */
const MAX_QUOTED_ESCAPES = 4;

const CRLF = '\r\n';

/** Collects ASCII text and binary pieces; text is joined once, so small responses cost one Buffer. */
class Writer {
  readonly parts: Buffer[] = [];
  text = '';

  write(s: string): void {
    this.text += s;
  }
  bytes(b: Buffer): void {
    if (this.text !== '') {
      this.parts.push(Buffer.from(this.text, 'latin1'));
      this.text = '';
    }
    this.parts.push(b);
  }
  /** The bytes as pieces, without joining them. */
  pieces(): Buffer[] {
    if (this.text !== '') this.parts.push(Buffer.from(this.text, 'latin1'));
    this.text = '';
    return this.parts;
  }
  finish(): Buffer {
    if (this.parts.length === 0) return Buffer.from(this.text, 'latin1');
    if (this.text !== '') this.parts.push(Buffer.from(this.text, 'latin1'));
    return Buffer.concat(this.parts);
  }
}

/** Quoted form is possible: 7-bit, no NUL, CR or LF (RFC 3501 9: QUOTED-CHAR), few escapes. */
function quotableBytes(b: Buffer): boolean {
  if (b.length > MAX_QUOTED_LENGTH) return false;
  let escapes = 0;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0 || c === 0x0a || c === 0x0d || c >= 0x80) return false;
    if ((c === 0x22 || c === 0x5c) && ++escapes > MAX_QUOTED_ESCAPES) return false;
  }
  return true;
}

function quotableString(s: string): boolean {
  if (s.length > MAX_QUOTED_LENGTH || /[^\x01-\x09\x0b\x0c\x0e-\x7f]/.test(s)) return false;
  let escapes = 0;
  for (let i = s.indexOf('"'); i >= 0; i = s.indexOf('"', i + 1)) escapes++;
  for (let i = s.indexOf('\\'); i >= 0; i = s.indexOf('\\', i + 1)) escapes++;
  return escapes <= MAX_QUOTED_ESCAPES;
}

function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, '\\$&')}"`;
}

function writeLiteral(w: Writer, data: Buffer): void {
  w.write(`{${data.length}}${CRLF}`);
  if (data.length > 0) w.bytes(data);
}

/** An atom as the grammar allows it, for astring's choice (resp-specials "]" allowed). */
const ASTRING_ATOM = /^[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5d-\x7a\x7c\x7e]+$/;

function writeValue(w: Writer, v: ImapValue): void {
  if (v === null) {
    w.write('NIL');
  } else if (typeof v === 'number' || typeof v === 'bigint') {
    w.write(String(v));
  } else if (typeof v === 'string') {
    if (quotableString(v)) w.write(quote(v));
    else writeLiteral(w, Buffer.from(v, 'utf8'));
  } else if (Buffer.isBuffer(v)) {
    if (quotableBytes(v)) w.write(quote(v.toString('latin1')));
    else writeLiteral(w, v);
  } else if (isList(v)) {
    w.write('(');
    for (let i = 0; i < v.length; i++) {
      if (i > 0) w.write(' ');
      writeValue(w, v[i]!);
    }
    w.write(')');
  } else if ('atom' in v) {
    w.write(v.atom);
  } else if ('literal' in v) {
    writeLiteral(w, typeof v.literal === 'string' ? Buffer.from(v.literal, 'utf8') : v.literal);
  } else if ('adjacent' in v) {
    for (const item of v.adjacent) writeValue(w, item);
  } else {
    const s = v.astring;
    if (ASTRING_ATOM.test(s) && s.toUpperCase() !== 'NIL') w.write(s);
    else writeValue(w, s);
  }
}

function isList(v: ImapValue): v is readonly ImapValue[] {
  return Array.isArray(v);
}

/** Free text after a status: one line, whatever the caller passed. */
function cleanText(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

function writeCode(w: Writer, code: ResponseCode | undefined): void {
  if (code === undefined) return;
  w.write(`[${code.name}`);
  for (const a of code.args ?? []) {
    w.write(' ');
    writeValue(w, a);
  }
  w.write('] ');
}

/** `TAG OK [CODE] text\r\n`. */
export function compileTagged(tag: string, status: TaggedStatus, text: string, code?: ResponseCode): Buffer {
  const w = new Writer();
  w.write(`${tag} ${status} `);
  writeCode(w, code);
  w.write(cleanText(text) + CRLF);
  return w.finish();
}

/** `* OK [CODE] text\r\n` (also NO, BAD, PREAUTH, BYE). */
export function compileStatus(status: UntaggedStatus, text: string, code?: ResponseCode): Buffer {
  const w = new Writer();
  w.write(`* ${status} `);
  writeCode(w, code);
  w.write(cleanText(text) + CRLF);
  return w.finish();
}

/** `* v1 v2 ...\r\n`: `compileUntagged([3, atom('EXISTS')])`, `compileUntagged([atom('FLAGS'), flagList(f)])`. */
export function compileUntagged(values: readonly ImapValue[]): Buffer {
  const w = new Writer();
  w.write('*');
  for (const v of values) {
    w.write(' ');
    writeValue(w, v);
  }
  w.write(CRLF);
  return w.finish();
}

/** `+ text\r\n` (`+ \r\n` for an empty text, as AUTHENTICATE wants). */
export function compileContinuation(text: string): Buffer {
  return Buffer.from(`+ ${cleanText(text)}${CRLF}`, 'utf8');
}

/**
 * `* SEQ FETCH (NAME value NAME value)\r\n`; names are written verbatim (`BODY[HEADER]<0>`).
 * Pass body sections as literal(buf): Dovecot, and clients' expectations, have them as
 * literals even when short.
 */
export function compileFetch(seq: number, items: readonly (readonly [name: string, value: ImapValue])[]): Buffer {
  return fetchWriter(seq, items).finish();
}

/**
 * compileFetch()'s bytes appended to OUT as pieces (literals are not copied), for a caller
 * that sends many responses in one write; returns how many bytes it added.
 */
export function compileFetchInto(out: Buffer[], seq: number, items: readonly (readonly [name: string, value: ImapValue])[]): number {
  let n = 0;
  for (const p of fetchWriter(seq, items).pieces()) {
    out.push(p);
    n += p.length;
  }
  return n;
}

function fetchWriter(seq: number, items: readonly (readonly [name: string, value: ImapValue])[]): Writer {
  const w = new Writer();
  w.write(`* ${seq} FETCH (`);
  for (let i = 0; i < items.length; i++) {
    const [name, value] = items[i]!;
    w.write(i === 0 ? `${name} ` : ` ${name} `);
    writeValue(w, value);
  }
  w.write(`)${CRLF}`);
  return w;
}

/** One value's bytes, as it would appear inside a response. */
export function compileValue(value: ImapValue): Buffer {
  const w = new Writer();
  writeValue(w, value);
  return w.finish();
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad2 = (n: number): string => String(n).padStart(2, '0');

/**
 * INTERNALDATE `17-Jul-1996 02:44:25 -0700` (without quotes; pass it as a string value).
 * `offsetMinutes` east of UTC; default: the local zone at that instant.
 */
export function formatInternalDate(date: Date, offsetMinutes?: number): string {
  const offset = offsetMinutes ?? -date.getTimezoneOffset();
  const t = new Date(date.getTime() + offset * 60000);
  const abs = Math.abs(offset);
  return (
    `${pad2(t.getUTCDate())}-${MONTHS[t.getUTCMonth()]}-${String(t.getUTCFullYear()).padStart(4, '0')} ` +
    `${pad2(t.getUTCHours())}:${pad2(t.getUTCMinutes())}:${pad2(t.getUTCSeconds())} ` +
    `${offset < 0 ? '-' : '+'}${pad2(Math.floor(abs / 60))}${pad2(abs % 60)}`
  );
}

/** A Unicode mailbox name -> modified UTF-7 (RFC 3501 5.1.3), for LIST/LSUB/STATUS replies. */
export function encodeMailboxName(name: string): string {
  let out = '';
  let run = '';
  const flush = (): void => {
    if (run === '') return;
    const bytes = Buffer.alloc(run.length * 2);
    for (let i = 0; i < run.length; i++) bytes.writeUInt16BE(run.charCodeAt(i), i * 2);
    out += `&${bytes.toString('base64').replace(/=+$/, '').replace(/\//g, ',')}-`;
    run = '';
  };
  for (const ch of name) {
    const c = ch.charCodeAt(0);
    if (ch.length === 1 && c >= 0x20 && c <= 0x7e) {
      flush();
      out += ch === '&' ? '&-' : ch;
    } else {
      run += ch;
    }
  }
  flush();
  return out;
}
