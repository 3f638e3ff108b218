/**
 * @module imap/parser
 * SUMMARY: the pure IMAP4rev1 command reader and parser (no sockets, no storage). CommandReader
 * frames received bytes into commands (literals, LITERAL+, limits), continuation requests and
 * raw lines (IDLE, AUTHENTICATE); parseCommand() gives `{ tag, command, args: ImapNode[] }`;
 * the interpreters give args meaning (sequence sets, FETCH/STORE items, SEARCH keys, APPEND).
 * DIAGNOSTICS: nothing is thrown or logged: bad input comes back as an ImapParseError (`code`
 * BAD, TOOBIG or BADCHARSET, a one-line `message` for the reply).
 * SEE ALSO: RFC 3501 sections 4, 6.4, 9; RFC 7888 (LITERAL+); WildDuck imap-core imap-parser.js.
 */

// ---------------------------------------------------------------------------------------
// Nodes and results
// ---------------------------------------------------------------------------------------

/** A partial fetch `<origin.count>`; `count` absent when the client sent only `<origin>`. */
export interface FetchPartial {
  readonly origin: number;
  readonly count?: number;
}

/**
 * An atom. Tokens that RFC 3501 gives their own grammar (sequence sets `1:*,3`, flags
 * `\Seen`, list-mailbox with `%`/`*`, dates `1-Feb-1994`) are atoms too; the interpret
 * helpers give them meaning. `BODY[...]`, `BODY.PEEK[...]` and `BINARY*[...]` carry their
 * section (the nodes between the brackets) and partial.
 */
export interface AtomNode {
  readonly type: 'atom';
  readonly value: string;
  readonly section?: readonly ImapNode[];
  readonly partial?: FetchPartial;
}
/** A quoted string, escapes removed, decoded as UTF-8. */
export interface StringNode {
  readonly type: 'string';
  readonly value: string;
}
/** A literal `{n}` / `{n+}`: the bytes exactly as sent. */
export interface LiteralNode {
  readonly type: 'literal';
  readonly value: Buffer;
}
/** The atom NIL (any case), unquoted. */
export interface NilNode {
  readonly type: 'nil';
}
export interface ListNode {
  readonly type: 'list';
  readonly items: readonly ImapNode[];
}
export type ImapNode = AtomNode | StringNode | LiteralNode | NilNode | ListNode;

/**
 * Why a command (or a piece of one) was refused. `code` picks the reply: 'BAD' is a tagged
 * (or, without a tag, untagged) BAD; 'TOOBIG' is `BAD [TOOBIG]` (or `NO [TOOBIG]` for APPEND,
 * the server's choice); 'BADCHARSET' is `NO [BADCHARSET (US-ASCII UTF-8)]` for SEARCH.
 */
export interface ImapParseError {
  readonly kind: 'parse-error';
  readonly code: 'BAD' | 'TOOBIG' | 'BADCHARSET';
  /** The tag, when it could be read; null means answer untagged (`* BAD ...`). */
  readonly tag: string | null;
  /** One line of reply text, no CRLF. */
  readonly message: string;
  /**
   * The connection cannot be resynchronised and must be closed after the reply (an
   * oversized non-synchronizing literal whose bytes are already on their way).
   */
  readonly disconnect: boolean;
}

/**
 * Every parse and interpret helper answers either its value or an ImapParseError, never a
 * throw. The interpret helpers do not know the tag: their errors have `tag: null`, and the
 * caller answers with the command's tag.
 */
export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ImapParseError };

export interface ImapCommand {
  readonly tag: string;
  /**
   * The command name, upper-cased. A UID command is joined with its verb: 'UID FETCH',
   * 'UID STORE', 'UID SEARCH', 'UID COPY', 'UID MOVE', 'UID EXPUNGE'.
   */
  readonly command: string;
  readonly args: readonly ImapNode[];
}

// ---------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------

export interface ReaderLimits {
  /** Longest line (one line part, between literals), CRLF excluded. Dovecot: 64 KiB. */
  readonly maxLineLength: number;
  /** Largest single literal (APPEND needs message_size_limit). */
  readonly maxLiteralSize: number;
  /** Largest whole command: every line part and literal together. */
  readonly maxCommandSize: number;
}

export const DEFAULT_READER_LIMITS: ReaderLimits = Object.freeze({
  maxLineLength: 65536,
  maxLiteralSize: 50 * 1024 * 1024,
  maxCommandSize: 52 * 1024 * 1024,
});

/** The text the connection sends for a synchronizing literal (`+ ` is added by the compiler). */
export const LITERAL_CONTINUATION_TEXT = 'Ready for literal data';

/**
 * What CommandReader.next() yields.
 * - 'command': a complete command; `result` is the parse (or the BAD to send); `size` is
 *   its byte count, literals included.
 * - 'continue': the client sent `{n}` and waits: send `+ Ready for literal data` now.
 * - 'line': in line mode, one raw line without its CRLF (IDLE's DONE, AUTHENTICATE data).
 * - 'error': a limit was exceeded (code 'TOOBIG'); the offending command has been discarded.
 *   Reply, then close if `disconnect`.
 */
export type ReaderEvent =
  | { readonly kind: 'command'; readonly result: Parsed<ImapCommand>; readonly size: number }
  | { readonly kind: 'continue'; readonly size: number }
  | { readonly kind: 'line'; readonly line: Buffer }
  | { readonly kind: 'error'; readonly error: ImapParseError };

export type ReaderMode = 'command' | 'line';

const LF = 0x0a;
const CR = 0x0d;
const CRLF = Buffer.from('\r\n');
/** `{123}` or `{123+}` at the end of a line part; digits bounded so the size stays exact. */
const LITERAL_TAIL = /\{(\d{1,15})(\+?)\}$/;

/**
 * Incremental command framing: push() what the socket gives, then call next() until it
 * answers null (more bytes needed). Pull-based so the connection can run one command at a
 * time and switch to line mode (IDLE, AUTHENTICATE) before the bytes after it are framed.
 */
export class CommandReader {
  readonly limits: ReaderLimits;
  /** 'command' (the default) frames commands with literals; 'line' yields raw lines. */
  mode: ReaderMode = 'command';

  // Received bytes not yet framed: a chunk list, so a large literal arriving in many
  // chunks is copied once, not once per chunk.
  #chunks: Buffer[] = [];
  #length = 0;
  // Bytes at the front already scanned for LF without finding one.
  #scanned = 0;
  // The command being assembled.
  #parts: Buffer[] = [];
  #commandSize = 0;
  #literalLeft = 0;
  // Discarding through the next LF after an overlong line.
  #skipping = false;

  constructor(limits?: Partial<ReaderLimits>) {
    this.limits = { ...DEFAULT_READER_LIMITS, ...limits };
  }

  /** Append received bytes. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Bytes buffered and not yet framed (STARTTLS: must be 0 before the handshake). */
  get pending(): number {
    return this.#length;
  }

  /** True while a command is partly read (a literal or a line part is outstanding). */
  get inCommand(): boolean {
    return this.#parts.length > 0 || this.#literalLeft > 0;
  }

  /** The next event, or null when more bytes are needed. */
  next(): ReaderEvent | null {
    for (;;) {
      if (this.#literalLeft > 0) {
        if (this.#length === 0) return null;
        const n = Math.min(this.#literalLeft, this.#length);
        this.#parts.push(this.#take(n));
        this.#literalLeft -= n;
        if (this.#literalLeft > 0) return null;
        continue;
      }
      const lf = this.#indexOfLF();
      if (this.#skipping) {
        if (lf < 0) {
          this.#take(this.#length);
          return null;
        }
        this.#take(lf + 1);
        this.#skipping = false;
        continue;
      }
      if (lf < 0) {
        // +1: a CR may be waiting for its LF.
        if (this.#length > this.limits.maxLineLength + 1) {
          const error = this.#tooBig('Command line too long', false);
          this.#skipping = true;
          return { kind: 'error', error };
        }
        return null;
      }
      let line = this.#take(lf + 1).subarray(0, lf);
      if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
      if (line.length > this.limits.maxLineLength) return { kind: 'error', error: this.#tooBig('Command line too long', false, line) };
      if (this.mode === 'line' && this.#parts.length === 0) return { kind: 'line', line };
      // Clients (and people at telnet) send stray empty lines; RFC 3501 has no meaning for them.
      if (line.length === 0 && this.#parts.length === 0) continue;
      this.#commandSize += line.length + 2;
      if (this.#commandSize > this.limits.maxCommandSize) return { kind: 'error', error: this.#tooBig('Command too large', false, line) };
      const m = LITERAL_TAIL.exec(line.subarray(Math.max(0, line.length - 20)).toString('latin1'));
      if (m === null) {
        this.#parts.push(line);
        const bytes = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts);
        const size = this.#commandSize;
        this.#reset();
        return { kind: 'command', result: parseCommand(bytes), size };
      }
      const size = Number(m[1]);
      const synchronizing = m[2] !== '+';
      if (size > this.limits.maxLiteralSize || this.#commandSize + size > this.limits.maxCommandSize) {
        // A synchronizing client waits for our "+" and sends nothing more, so the stream is
        // still in step; a LITERAL+ client is already sending bytes we cannot tell from
        // commands (RFC 7888 section 4), so the connection has to go.
        return { kind: 'error', error: this.#tooBig('Literal size too large', !synchronizing, line) };
      }
      this.#parts.push(line, CRLF);
      this.#commandSize += size;
      this.#literalLeft = size;
      if (synchronizing) return { kind: 'continue', size };
    }
  }

  #tooBig(message: string, disconnect: boolean, line?: Buffer): ImapParseError {
    const first = this.#parts[0] ?? line ?? this.#peek(256);
    this.#reset();
    return { kind: 'parse-error', code: 'TOOBIG', tag: readTag(first), message, disconnect };
  }

  #reset(): void {
    this.#parts = [];
    this.#commandSize = 0;
    this.#literalLeft = 0;
  }

  #indexOfLF(): number {
    let offset = 0;
    for (const chunk of this.#chunks) {
      if (offset + chunk.length > this.#scanned) {
        const from = Math.max(0, this.#scanned - offset);
        const i = chunk.indexOf(LF, from);
        if (i >= 0) return offset + i;
      }
      offset += chunk.length;
    }
    this.#scanned = this.#length;
    return -1;
  }

  #peek(n: number): Buffer {
    const first = this.#chunks[0];
    if (first === undefined) return Buffer.alloc(0);
    return first.length >= n || this.#chunks.length === 1 ? first.subarray(0, n) : Buffer.concat(this.#chunks).subarray(0, n);
  }

  #take(n: number): Buffer {
    this.#length -= n;
    this.#scanned = Math.max(0, this.#scanned - n);
    const first = this.#chunks[0];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0]!;
      const want = n - filled;
      if (chunk.length <= want) {
        chunk.copy(out, filled);
        filled += chunk.length;
        this.#chunks.shift();
      } else {
        chunk.copy(out, filled, 0, want);
        this.#chunks[0] = chunk.subarray(want);
        filled += want;
      }
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------
// Command syntax
// ---------------------------------------------------------------------------------------

const SP = 0x20;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const LPAREN = 0x28;
const RPAREN = 0x29;
const LBRACE = 0x7b;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

/** A failure inside the tokenizer; caught in parseCommand and turned into a returned error. */
class SyntaxFailure {
  constructor(readonly message: string) {}
}

/**
 * ATOM-CHAR plus what real commands put in atoms anyway: `*` and `%` (sequence sets,
 * list-mailbox), `]` (resp-specials are ASTRING-CHARs: `[Gmail]/Sent`), `\` (flags). What
 * stays out is what would make the stream ambiguous: space, CTLs, 8-bit, ( ) { and ".
 */
function isAtomChar(c: number, inSection: boolean): boolean {
  if (c <= SP || c >= 0x7f) return false;
  if (c === LPAREN || c === RPAREN || c === LBRACE || c === DQUOTE) return false;
  if (c === RBRACKET && inSection) return false;
  return true;
}

/** tag = 1*<any ASTRING-CHAR except "+">; ATOM-CHAR has no "%" nor "*". */
function isTagChar(c: number): boolean {
  return isAtomChar(c, false) && c !== 0x2b && c !== 0x25 && c !== 0x2a && c !== BACKSLASH;
}

/** The tag at the start of a command line, or null when there is no valid one. */
function readTag(line: Buffer): string | null {
  let i = 0;
  while (i < line.length && isTagChar(line[i]!)) i++;
  if (i === 0 || (i < line.length && line[i] !== SP)) return null;
  return line.subarray(0, i).toString('latin1');
}

const SECTION_ATOMS = new Set(['BODY', 'BODY.PEEK', 'BINARY', 'BINARY.PEEK', 'BINARY.SIZE']);
const MAX_NUMBER = 4294967295;
const MAX_DEPTH = 64;

function unexpected(c: number): string {
  if (c >= 0x80) return '8-bit data outside a string';
  if (c < SP || c === 0x7f) return 'Control character in a command';
  return `Unexpected '${String.fromCharCode(c)}'`;
}

class Tokenizer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  fail(message: string): never {
    throw new SyntaxFailure(message);
  }

  /** Nodes until `close` (consumed) or, for close null, the end of input. */
  nodes(close: number | null, inSection: boolean, depth: number): ImapNode[] {
    if (depth > MAX_DEPTH) this.fail('Too deeply nested lists');
    const out: ImapNode[] = [];
    const buf = this.buf;
    for (;;) {
      if (this.pos >= buf.length) {
        if (close === null) return out;
        this.fail(close === RPAREN ? "Missing ')'" : "Missing ']'");
      }
      const c = buf[this.pos]!;
      if (c === close) {
        this.pos++;
        return out;
      }
      if (c === RPAREN || c === RBRACKET) this.fail(`Unexpected '${String.fromCharCode(c)}'`);
      out.push(this.node(inSection, depth));
      if (this.pos >= buf.length) continue;
      const d = buf[this.pos]!;
      if (d === SP) {
        this.pos++;
        // One trailing space before the end of the line is tolerated (some clients send it).
        if (this.pos >= buf.length && close === null) return out;
        if (buf[this.pos] === SP) this.fail('Double space between arguments');
        continue;
      }
      if (d !== close) this.fail(d === RPAREN || d === RBRACKET || d >= 0x80 || d < SP || d === 0x7f ? unexpected(d) : 'Missing space between arguments');
    }
  }

  node(inSection: boolean, depth: number): ImapNode {
    const buf = this.buf;
    const c = buf[this.pos]!;
    if (c === LPAREN) {
      this.pos++;
      return { type: 'list', items: this.nodes(RPAREN, inSection, depth + 1) };
    }
    if (c === DQUOTE) return this.quoted();
    if (c === LBRACE) return this.literal();
    return this.atom(inSection, depth);
  }

  quoted(): StringNode {
    const buf = this.buf;
    let i = this.pos + 1;
    let start = i;
    let out: Buffer[] | null = null;
    for (;;) {
      if (i >= buf.length) this.fail('Missing closing quote');
      const c = buf[i]!;
      if (c === DQUOTE) break;
      if (c === CR || c === LF || c === 0) this.fail('CR, LF or NUL in a quoted string');
      if (c === BACKSLASH) {
        const e = buf[i + 1];
        if (e !== DQUOTE && e !== BACKSLASH) this.fail('Invalid escape in a quoted string');
        (out ??= []).push(buf.subarray(start, i));
        i += 1;
        start = i;
      }
      i++;
    }
    const tail = buf.subarray(start, i);
    const value = out === null ? tail.toString('utf8') : Buffer.concat([...out, tail]).toString('utf8');
    this.pos = i + 1;
    return { type: 'string', value };
  }

  literal(): LiteralNode {
    const buf = this.buf;
    let i = this.pos + 1;
    const digitsStart = i;
    while (i < buf.length && buf[i]! >= 0x30 && buf[i]! <= 0x39) i++;
    if (i === digitsStart || i - digitsStart > 15) this.fail('Invalid literal size');
    const size = Number(buf.subarray(digitsStart, i).toString('latin1'));
    if (buf[i] === 0x2b) i++;
    if (buf[i] !== 0x7d) this.fail('Invalid literal');
    i++;
    if (buf[i] === CR) i++;
    if (buf[i] !== LF) this.fail('A literal must end its line');
    i++;
    if (i + size > buf.length) this.fail('Literal data is truncated');
    this.pos = i + size;
    return { type: 'literal', value: buf.subarray(i, i + size) };
  }

  atom(inSection: boolean, depth: number): ImapNode {
    const buf = this.buf;
    const start = this.pos;
    let i = start;
    while (i < buf.length) {
      const c = buf[i]!;
      if (c === LBRACKET && SECTION_ATOMS.has(buf.subarray(start, i).toString('latin1').toUpperCase())) break;
      if (!isAtomChar(c, inSection)) break;
      i++;
    }
    if (i === start) this.fail(unexpected(buf[i]!));
    const value = buf.subarray(start, i).toString('latin1');
    this.pos = i;
    if (buf[i] !== LBRACKET) {
      return value.length === 3 && value.toUpperCase() === 'NIL' ? { type: 'nil' } : { type: 'atom', value };
    }
    this.pos++;
    const section = this.nodes(RBRACKET, true, depth + 1);
    if (buf[this.pos] !== 0x3c) return { type: 'atom', value, section };
    const m = /^<(\d{1,10})(?:\.(\d{1,10}))?>/.exec(buf.subarray(this.pos, this.pos + 24).toString('latin1'));
    if (m === null) this.fail('Invalid partial');
    const origin = Number(m[1]);
    if (origin > MAX_NUMBER) this.fail('Invalid partial');
    this.pos += m[0].length;
    if (m[2] === undefined) return { type: 'atom', value, section, partial: { origin } };
    const count = Number(m[2]);
    if (count === 0 || count > MAX_NUMBER) this.fail('Invalid partial');
    return { type: 'atom', value, section, partial: { origin, count } };
  }
}

function bad(tag: string | null, message: string): { ok: false; error: ImapParseError } {
  return { ok: false, error: { kind: 'parse-error', code: 'BAD', tag, message, disconnect: false } };
}

/**
 * Parse one complete command as the client sent it: `TAG SP COMMAND [SP args]`, with any
 * literals inline (`{n}\r\n` + n bytes, `{n+}` too) and without the final CRLF.
 */
export function parseCommand(bytes: Buffer): Parsed<ImapCommand> {
  const tag = readTag(bytes);
  if (tag === null) return bad(null, 'Error in IMAP command received by server.');
  let i = tag.length + 1;
  const nameStart = i;
  while (i < bytes.length && bytes[i] !== SP) i++;
  const name = bytes.subarray(nameStart, i).toString('latin1');
  if (!/^[A-Za-z][A-Za-z0-9._-]*$/.test(name)) return bad(tag, name === '' ? 'Missing command.' : 'Error in IMAP command: Invalid command name.');
  let command = name.toUpperCase();
  let args: ImapNode[] = [];
  if (i < bytes.length) {
    const t = new Tokenizer(bytes);
    t.pos = i + 1;
    try {
      args = t.nodes(null, false, 0);
    } catch (e) {
      if (e instanceof SyntaxFailure) return bad(tag, `Error in IMAP command ${command}: ${e.message}`);
      // Anything else is a bug in this file; still answer BAD rather than kill the session.
      return bad(tag, `Error in IMAP command ${command}: internal parser error`);
    }
  }
  if (command === 'UID') {
    const verb = args[0];
    if (verb === undefined || verb.type !== 'atom' || verb.section !== undefined) return bad(tag, 'Error in IMAP command UID: Missing command.');
    command = `UID ${verb.value.toUpperCase()}`;
    args = args.slice(1);
  }
  return { ok: true, value: { tag, command, args } };
}

// ---------------------------------------------------------------------------------------
// Interpreting args
// ---------------------------------------------------------------------------------------

function fail<T>(message: string): Parsed<T> {
  return { ok: false, error: { kind: 'parse-error', code: 'BAD', tag: null, message, disconnect: false } };
}

/**
 * The text of an astring/nstring node: atoms, quoted strings and literals (UTF-8); NIL gives
 * null (callers wanting an astring treat null as 'NIL'); a list or a BODY[...] atom gives
 * undefined.
 */
export function nodeText(node: ImapNode | undefined): string | null | undefined {
  if (node === undefined) return undefined;
  switch (node.type) {
    case 'atom':
      return node.section === undefined ? node.value : undefined;
    case 'string':
      return node.value;
    case 'literal':
      return node.value.toString('utf8');
    case 'nil':
      return null;
    case 'list':
      return undefined;
  }
}

/** An astring argument: NIL is the string "NIL" here. */
function astringOf(node: ImapNode | undefined): string | undefined {
  const t = nodeText(node);
  return t === null ? 'NIL' : t;
}

/** One range of a sequence set; '*' is the largest number in use (seq or UID). */
export interface SequenceRange {
  readonly start: number | '*';
  readonly end: number | '*';
}
export type SequenceSet = readonly SequenceRange[];

const SEQUENCE_SET = /^(?:\*|[1-9]\d{0,9})(?::(?:\*|[1-9]\d{0,9}))?(?:,(?:\*|[1-9]\d{0,9})(?::(?:\*|[1-9]\d{0,9}))?)*$/;

/** Whether `text` has the sequence-set grammar (used to tell a set from a SEARCH key). */
export function isSequenceSet(text: string): boolean {
  return SEQUENCE_SET.test(text);
}

/** `1:*,3,5:7` -> ranges. Zero, numbers over 2^32-1 and junk are BAD. */
export function parseSequenceSet(text: string): Parsed<SequenceSet> {
  if (!SEQUENCE_SET.test(text)) return fail('Invalid message sequence set');
  const out: SequenceRange[] = [];
  for (const piece of text.split(',')) {
    const [a, b] = piece.split(':') as [string, string | undefined];
    const start = a === '*' ? '*' : Number(a);
    const end = b === undefined ? start : b === '*' ? '*' : Number(b);
    if ((start !== '*' && start > MAX_NUMBER) || (end !== '*' && end > MAX_NUMBER)) return fail('Invalid message sequence set');
    out.push({ start, end });
  }
  return { ok: true, value: out };
}

/** Does `value` fall in the set, with `*` standing for `star` (RFC 3501 9: `559:*` includes star). */
export function sequenceSetHas(set: SequenceSet, value: number, star: number): boolean {
  for (const r of set) {
    const a = r.start === '*' ? star : r.start;
    const b = r.end === '*' ? star : r.end;
    if (value >= Math.min(a, b) && value <= Math.max(a, b)) return true;
  }
  return false;
}

/** The first index in ascending `values` whose value is >= n. */
function lowerBound(values: readonly number[], n: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! < n) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The members of `values` (ascending: 1..EXISTS, or the mailbox's UIDs) that the set names,
 * ascending and without duplicates; `*` is the last of `values` (0 when empty).
 */
export function expandSequenceSet(set: SequenceSet, values: readonly number[]): number[] {
  const star = values.length > 0 ? values[values.length - 1]! : 0;
  if (set.length === 1) {
    const r = set[0]!;
    const a = r.start === '*' ? star : r.start;
    const b = r.end === '*' ? star : r.end;
    const from = lowerBound(values, Math.min(a, b));
    const to = lowerBound(values, Math.max(a, b) + 1);
    return values.slice(from, to);
  }
  const marks = new Uint8Array(values.length);
  for (const r of set) {
    const a = r.start === '*' ? star : r.start;
    const b = r.end === '*' ? star : r.end;
    const to = lowerBound(values, Math.max(a, b) + 1);
    for (let i = lowerBound(values, Math.min(a, b)); i < to; i++) marks[i] = 1;
  }
  const out: number[] = [];
  for (let i = 0; i < marks.length; i++) if (marks[i] === 1) out.push(values[i]!);
  return out;
}

/** Ascending numbers -> the compact text form `1:3,7,9:10` (for COPYUID, APPENDUID). */
export function formatSequenceSet(values: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < values.length) {
    const start = values[i]!;
    let end = start;
    while (i + 1 < values.length && values[i + 1] === end + 1) end = values[++i]!;
    parts.push(start === end ? String(start) : `${start}:${end}`);
    i++;
  }
  return parts.join(',');
}

/** A body section spec `[1.2.HEADER.FIELDS (A B)]`: part path, then what of that part. */
export interface SectionSpec {
  /** Part numbers, [] for the whole message. */
  readonly path: readonly number[];
  /** null: the whole part (BODY[] or BODY[1.2]). */
  readonly text: null | 'HEADER' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT' | 'TEXT' | 'MIME';
  /** The field names for HEADER.FIELDS[.NOT], as the client sent them. */
  readonly fields: readonly string[];
}

export type SimpleFetchName =
  | 'UID'
  | 'FLAGS'
  | 'INTERNALDATE'
  | 'RFC822.SIZE'
  | 'ENVELOPE'
  | 'BODYSTRUCTURE'
  /** BODY without a section: the non-extensible BODYSTRUCTURE. */
  | 'BODY';

export type FetchItem =
  | { readonly kind: 'simple'; readonly name: SimpleFetchName }
  | {
      readonly kind: 'section';
      /** The item as the response names it: `BODY[HEADER.FIELDS (A B)]<0>`, `RFC822.HEADER`. */
      readonly responseName: string;
      readonly section: SectionSpec;
      readonly partial?: FetchPartial;
      /** Fetching it sets \Seen (BODY[...], RFC822, RFC822.TEXT; not .PEEK, not RFC822.HEADER). */
      readonly setsSeen: boolean;
    };

const FETCH_MACROS: Readonly<Record<string, readonly SimpleFetchName[]>> = {
  ALL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE'],
  FAST: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE'],
  FULL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'],
};
const SIMPLE_FETCH = new Set<string>(['UID', 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODYSTRUCTURE', 'BODY']);
const RFC822_FETCH: Readonly<Record<string, { text: SectionSpec['text']; setsSeen: boolean }>> = {
  RFC822: { text: null, setsSeen: true },
  'RFC822.HEADER': { text: 'HEADER', setsSeen: false },
  'RFC822.TEXT': { text: 'TEXT', setsSeen: true },
};
const SECTION_TEXTS = new Set(['HEADER', 'HEADER.FIELDS', 'HEADER.FIELDS.NOT', 'TEXT', 'MIME']);

/** A header field name as RFC 5322 allows it (printable ASCII but ":"). */
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

/** The nodes between `[` and `]` -> SectionSpec, or an error message. */
function parseSection(nodes: readonly ImapNode[]): SectionSpec | string {
  if (nodes.length === 0) return { path: [], text: null, fields: [] };
  const first = nodes[0]!;
  if (first.type !== 'atom' || first.section !== undefined) return 'Invalid section';
  const pieces = first.value.split('.');
  const path: number[] = [];
  while (pieces.length > 0 && /^\d+$/.test(pieces[0]!)) {
    const n = Number(pieces.shift());
    if (n === 0 || n > MAX_NUMBER) return 'Invalid section part number';
    path.push(n);
  }
  const rest = pieces.join('.').toUpperCase();
  if (rest === '') {
    if (path.length === 0 || nodes.length > 1) return 'Invalid section';
    return { path, text: null, fields: [] };
  }
  if (!SECTION_TEXTS.has(rest)) return `Invalid section text ${rest}`;
  const text = rest as NonNullable<SectionSpec['text']>;
  if (text === 'MIME' && path.length === 0) return 'MIME needs a part number';
  if (text !== 'HEADER.FIELDS' && text !== 'HEADER.FIELDS.NOT') {
    return nodes.length === 1 ? { path, text, fields: [] } : 'Invalid section';
  }
  const list = nodes[1];
  if (nodes.length !== 2 || list === undefined || list.type !== 'list' || list.items.length === 0) return `${text} needs a list of field names`;
  const fields: string[] = [];
  for (const item of list.items) {
    const name = astringOf(item);
    if (name === undefined || !FIELD_NAME.test(name)) return 'Invalid header field name';
    fields.push(name);
  }
  return { path, text, fields };
}

/** How a section is written back in the response: `1.2.HEADER.FIELDS (FROM TO)`. */
export function formatSection(section: SectionSpec): string {
  let out = section.path.join('.');
  if (section.text !== null) out += (out === '' ? '' : '.') + section.text;
  if (section.fields.length > 0) out += ` (${section.fields.map((f) => f.toUpperCase()).join(' ')})`;
  return out;
}

function parseFetchAtom(node: ImapNode): Parsed<FetchItem> {
  if (node.type !== 'atom') return fail('Invalid fetch item');
  const name = node.value.toUpperCase();
  if (node.section === undefined) {
    if (SIMPLE_FETCH.has(name)) return { ok: true, value: { kind: 'simple', name: name as SimpleFetchName } };
    const r = RFC822_FETCH[name];
    if (r !== undefined) return { ok: true, value: { kind: 'section', responseName: name, section: { path: [], text: r.text, fields: [] }, setsSeen: r.setsSeen } };
    return fail(`Unknown fetch item ${name}`);
  }
  if (name !== 'BODY' && name !== 'BODY.PEEK') return fail(`Unsupported fetch item ${name}`);
  const section = parseSection(node.section);
  if (typeof section === 'string') return fail(section);
  const partial = node.partial;
  const responseName = `BODY[${formatSection(section)}]${partial === undefined ? '' : `<${partial.origin}>`}`;
  const item: FetchItem = partial === undefined
    ? { kind: 'section', responseName, section, setsSeen: name === 'BODY' }
    : { kind: 'section', responseName, section, partial, setsSeen: name === 'BODY' };
  return { ok: true, value: item };
}

/**
 * The FETCH item argument (one atom, a macro ALL/FAST/FULL, or a parenthesised list) ->
 * items in request order, duplicates removed. UID is not added here: a UID FETCH handler
 * adds it.
 */
export function parseFetchItems(node: ImapNode | undefined): Parsed<FetchItem[]> {
  if (node === undefined) return fail('Missing fetch items');
  let nodes: readonly ImapNode[];
  if (node.type === 'atom' && node.section === undefined) {
    const macro = FETCH_MACROS[node.value.toUpperCase()];
    if (macro !== undefined) return { ok: true, value: macro.map((name) => ({ kind: 'simple', name })) };
    nodes = [node];
  } else if (node.type === 'list') {
    if (node.items.length === 0) return fail('Empty fetch item list');
    nodes = node.items;
  } else {
    nodes = [node];
  }
  const out: FetchItem[] = [];
  const seen = new Set<string>();
  for (const n of nodes) {
    const r = parseFetchAtom(n);
    if (!r.ok) return r;
    const item = r.value;
    const key = item.kind === 'simple' ? item.name : `${item.responseName}${item.partial?.count ?? ''}${item.setsSeen ? '' : '.PEEK'}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(item);
  }
  return { ok: true, value: out };
}

/** The canonical system flags; stored and echoed in this case. */
export const SYSTEM_FLAGS = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'] as const;
const SYSTEM_FLAG_BY_UPPER = new Map<string, string>(SYSTEM_FLAGS.map((f) => [f.toUpperCase(), f]));
/** flag-keyword = atom: ATOM-CHARs only (no wildcards, no "]", no "\"). */
const KEYWORD = /^[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5e-\x7a\x7c\x7e]+$/;

/**
 * A flag list (APPEND, STORE): system flags canonicalised, keywords kept, duplicates
 * dropped; \Recent and unknown system flags are BAD.
 */
export function parseFlagList(nodes: readonly ImapNode[]): Parsed<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const node of nodes) {
    let text: string;
    if (node.type === 'atom' && node.section === undefined) text = node.value;
    else if (node.type === 'nil') text = 'NIL';
    else return fail('Invalid flag');
    let flag: string;
    if (text.startsWith('\\')) {
      const system = SYSTEM_FLAG_BY_UPPER.get(text.toUpperCase());
      if (system === undefined) return fail(`Invalid system flag ${text}`);
      flag = system;
    } else {
      if (!KEYWORD.test(text)) return fail(`Invalid keyword ${text}`);
      flag = text;
    }
    // Keywords compare case-insensitively (RFC 3501 2.3.2 says flags are case-insensitive).
    const key = flag.toUpperCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(flag);
  }
  return { ok: true, value: out };
}

export interface StoreAction {
  readonly operation: 'set' | 'add' | 'remove';
  readonly silent: boolean;
  /** System flags in canonical case, keywords as sent; no duplicates. */
  readonly flags: readonly string[];
}

/** STORE args after the sequence set: `+FLAGS.SILENT (\Seen $Junk)` or bare flags. */
export function parseStoreAction(args: readonly ImapNode[]): Parsed<StoreAction> {
  const item = args[0];
  if (item === undefined || item.type !== 'atom' || item.section !== undefined) return fail('Missing store item');
  const m = /^([+-]?)FLAGS(\.SILENT)?$/i.exec(item.value);
  if (m === null) return fail(`Invalid store item ${item.value}`);
  const operation = m[1] === '+' ? 'add' : m[1] === '-' ? 'remove' : 'set';
  const rest = args.slice(1);
  let nodes: readonly ImapNode[];
  const only = rest.length === 1 ? rest[0]! : undefined;
  if (only !== undefined && only.type === 'list') nodes = only.items;
  else if (rest.length > 0 && rest.every((n) => n.type !== 'list')) nodes = rest;
  else return fail('Missing or invalid flags');
  const flags = parseFlagList(nodes);
  if (!flags.ok) return flags;
  return { ok: true, value: { operation, silent: m[2] !== undefined, flags: flags.value } };
}

// ---------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** A calendar day of a search date (`1-Feb-1994`). */
export interface SearchDate {
  readonly year: number;
  /** 1-12. */
  readonly month: number;
  readonly day: number;
}

/** `1-Feb-1994` / `01-Feb-1994` (a search date) -> SearchDate, or null. */
export function parseSearchDate(text: string): SearchDate | null {
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(text);
  if (m === null) return null;
  const month = MONTHS.indexOf(m[2]!.toUpperCase()) + 1;
  const day = Number(m[1]);
  const year = Number(m[3]);
  if (month === 0 || day < 1 || day > daysInMonth(year, month)) return null;
  return { year, month, day };
}

/** An APPEND date-time `"17-Jul-1996 02:44:25 -0700"` (1-digit days with or without a leading space) -> Date, or null. */
export function parseDateTime(text: string): Date | null {
  const m = /^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(text);
  if (m === null) return null;
  const month = MONTHS.indexOf(m[2]!.toUpperCase()) + 1;
  const day = Number(m[1]);
  const year = Number(m[3]);
  const [hour, minute, second, zh, zm] = [m[4], m[5], m[6], m[8], m[9]].map(Number) as [number, number, number, number, number];
  if (month === 0 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 60 || zm > 59) return null;
  const offset = (m[7] === '-' ? -1 : 1) * (zh * 60 + zm);
  return new Date(Date.UTC(year, month - 1, day, hour, minute, Math.min(second, 59)) - offset * 60000);
}

// ---------------------------------------------------------------------------------------
// SEARCH
// ---------------------------------------------------------------------------------------

export type SearchKey =
  | { readonly kind: 'all' }
  | { readonly kind: 'and'; readonly keys: readonly SearchKey[] }
  | { readonly kind: 'or'; readonly left: SearchKey; readonly right: SearchKey }
  | { readonly kind: 'not'; readonly key: SearchKey }
  /** A system flag (canonical case, `\Recent` included) or keyword is (set: true) or is not set. */
  | { readonly kind: 'flag'; readonly flag: string; readonly set: boolean }
  | { readonly kind: 'seq'; readonly set: SequenceSet }
  | { readonly kind: 'uid'; readonly set: SequenceSet }
  | {
      readonly kind: 'date';
      /** internal: BEFORE/ON/SINCE; sent: SENTBEFORE/SENTON/SENTSINCE (the Date: header). */
      readonly field: 'internal' | 'sent';
      readonly op: 'before' | 'on' | 'since';
      readonly date: SearchDate;
    }
  | { readonly kind: 'size'; readonly op: 'larger' | 'smaller'; readonly size: number }
  /** HEADER name value, and FROM/TO/CC/BCC/SUBJECT; an empty value matches any such header. */
  | { readonly kind: 'header'; readonly field: string; readonly value: string }
  /** BODY (body only) and TEXT (header and body). */
  | { readonly kind: 'text'; readonly where: 'body' | 'text'; readonly value: string };

export interface SearchQuery {
  /** The CHARSET given (upper-cased), or null. Only US-ASCII and UTF-8 are accepted. */
  readonly charset: string | null;
  /** The keys ANDed together (a single key is not wrapped). */
  readonly key: SearchKey;
}

/** The charsets SEARCH accepts; BADCHARSET lists them. */
export const SEARCH_CHARSETS = ['US-ASCII', 'UTF-8'] as const;

const FLAG_KEYS: Readonly<Record<string, readonly [string, boolean]>> = {
  ANSWERED: ['\\Answered', true],
  DELETED: ['\\Deleted', true],
  DRAFT: ['\\Draft', true],
  FLAGGED: ['\\Flagged', true],
  RECENT: ['\\Recent', true],
  SEEN: ['\\Seen', true],
  UNANSWERED: ['\\Answered', false],
  UNDELETED: ['\\Deleted', false],
  UNDRAFT: ['\\Draft', false],
  UNFLAGGED: ['\\Flagged', false],
  UNSEEN: ['\\Seen', false],
  OLD: ['\\Recent', false],
};
const HEADER_KEYS: Readonly<Record<string, string>> = { FROM: 'From', TO: 'To', CC: 'Cc', BCC: 'Bcc', SUBJECT: 'Subject' };
const DATE_KEYS: Readonly<Record<string, readonly ['internal' | 'sent', 'before' | 'on' | 'since']>> = {
  BEFORE: ['internal', 'before'],
  ON: ['internal', 'on'],
  SINCE: ['internal', 'since'],
  SENTBEFORE: ['sent', 'before'],
  SENTON: ['sent', 'on'],
  SENTSINCE: ['sent', 'since'],
};

class SearchFailure {
  constructor(readonly message: string) {}
}

class SearchReader {
  i = 0;
  constructor(readonly nodes: readonly ImapNode[]) {}

  fail(message: string): never {
    throw new SearchFailure(message);
  }

  string(key: string): string {
    const t = astringOf(this.nodes[this.i++]);
    if (t === undefined) this.fail(`${key} needs a string`);
    return t;
  }

  key(depth: number): SearchKey {
    if (depth > MAX_DEPTH) this.fail('Search keys nested too deeply');
    const node = this.nodes[this.i++];
    if (node === undefined) this.fail('Missing search key');
    if (node.type === 'list') {
      if (node.items.length === 0) this.fail('Empty search key list');
      const inner = new SearchReader(node.items);
      const keys: SearchKey[] = [];
      while (inner.i < node.items.length) keys.push(inner.key(depth + 1));
      return keys.length === 1 ? keys[0]! : { kind: 'and', keys };
    }
    if (node.type !== 'atom' || node.section !== undefined) this.fail('Invalid search key');
    const name = node.value.toUpperCase();
    const flag = FLAG_KEYS[name];
    if (flag !== undefined) return { kind: 'flag', flag: flag[0], set: flag[1] };
    const header = HEADER_KEYS[name];
    if (header !== undefined) return { kind: 'header', field: header, value: this.string(name) };
    const date = DATE_KEYS[name];
    if (date !== undefined) {
      const text = astringOf(this.nodes[this.i++]);
      const d = text === undefined ? null : parseSearchDate(text);
      if (d === null) this.fail(`${name} needs a date like 1-Feb-1994`);
      return { kind: 'date', field: date[0], op: date[1], date: d };
    }
    switch (name) {
      case 'ALL':
        return { kind: 'all' };
      case 'NEW':
        return { kind: 'and', keys: [{ kind: 'flag', flag: '\\Recent', set: true }, { kind: 'flag', flag: '\\Seen', set: false }] };
      case 'KEYWORD':
      case 'UNKEYWORD': {
        const k = this.string(name);
        // A keyword that cannot exist matches nothing, as in Dovecot; it is not an error.
        return { kind: 'flag', flag: k, set: name === 'KEYWORD' };
      }
      case 'HEADER': {
        const field = this.string(name);
        if (!FIELD_NAME.test(field)) this.fail('Invalid header field name');
        return { kind: 'header', field, value: this.string(name) };
      }
      case 'BODY':
      case 'TEXT':
        return { kind: 'text', where: name === 'BODY' ? 'body' : 'text', value: this.string(name) };
      case 'LARGER':
      case 'SMALLER': {
        const t = astringOf(this.nodes[this.i++]);
        if (t === undefined || !/^\d{1,15}$/.test(t)) this.fail(`${name} needs a number`);
        return { kind: 'size', op: name === 'LARGER' ? 'larger' : 'smaller', size: Number(t) };
      }
      case 'NOT':
        return { kind: 'not', key: this.key(depth + 1) };
      case 'OR': {
        const left = this.key(depth + 1);
        return { kind: 'or', left, right: this.key(depth + 1) };
      }
      case 'UID': {
        const t = astringOf(this.nodes[this.i++]);
        const set = t === undefined ? null : parseSequenceSet(t);
        if (set === null || !set.ok) this.fail('UID needs a sequence set');
        return { kind: 'uid', set: set.value };
      }
      default: {
        const set = parseSequenceSet(node.value);
        if (set.ok) return { kind: 'seq', set: set.value };
        this.fail(`Unknown search key ${name}`);
      }
    }
  }
}

/**
 * SEARCH args (after `SEARCH` / `UID SEARCH`) -> the key tree. A CHARSET other than
 * US-ASCII/UTF-8 is a BADCHARSET error; an unknown key or a missing argument is BAD.
 */
export function parseSearch(args: readonly ImapNode[]): Parsed<SearchQuery> {
  let charset: string | null = null;
  let nodes = args;
  const first = args[0];
  if (first !== undefined && first.type === 'atom' && first.section === undefined && first.value.toUpperCase() === 'CHARSET') {
    const c = astringOf(args[1]);
    if (c === undefined) return fail('CHARSET needs a name');
    charset = c.toUpperCase();
    if (!(SEARCH_CHARSETS as readonly string[]).includes(charset)) {
      return { ok: false, error: { kind: 'parse-error', code: 'BADCHARSET', tag: null, message: `Unsupported charset ${c}`, disconnect: false } };
    }
    nodes = args.slice(2);
  }
  if (nodes.length === 0) return fail('Missing search parameters');
  const reader = new SearchReader(nodes);
  const keys: SearchKey[] = [];
  try {
    while (reader.i < nodes.length) keys.push(reader.key(0));
  } catch (e) {
    if (e instanceof SearchFailure) return fail(e.message);
    return fail('Invalid search parameters');
  }
  return { ok: true, value: { charset, key: keys.length === 1 ? keys[0]! : { kind: 'and', keys } } };
}

// ---------------------------------------------------------------------------------------
// APPEND and mailbox names
// ---------------------------------------------------------------------------------------

export interface AppendRequest {
  /** The mailbox name as sent (modified UTF-7 not decoded; see decodeMailboxName). */
  readonly mailbox: string;
  readonly flags: readonly string[];
  /** The date-time argument, or null when absent (the server uses the current time). */
  readonly date: Date | null;
  readonly message: Buffer;
}

/** APPEND args: `mailbox [flag-list] [date-time] literal`. */
export function parseAppend(args: readonly ImapNode[]): Parsed<AppendRequest> {
  const mailbox = astringOf(args[0]);
  if (mailbox === undefined) return fail('Missing mailbox name');
  let i = 1;
  let flags: string[] = [];
  const f = args[i];
  if (f !== undefined && f.type === 'list') {
    const r = parseFlagList(f.items);
    if (!r.ok) return r;
    flags = r.value;
    i++;
  }
  let date: Date | null = null;
  const d = args[i];
  if (d !== undefined && d.type === 'string' && i < args.length - 1) {
    date = parseDateTime(d.value);
    if (date === null) return fail('Invalid date-time');
    i++;
  }
  const m = args[i];
  if (m === undefined) return fail('Missing message literal');
  if (i !== args.length - 1) return fail('Too many arguments (MULTIAPPEND is not supported)');
  const message = m.type === 'literal' ? m.value : m.type === 'string' ? Buffer.from(m.value, 'utf8') : null;
  if (message === null) return fail('The message must be a literal');
  return { ok: true, value: { mailbox, flags, date, message } };
}

/** A mailbox name in modified UTF-7 (RFC 3501 5.1.3) -> Unicode; malformed input is returned unchanged. */
export function decodeMailboxName(name: string): string {
  if (!name.includes('&')) return name;
  let out = '';
  let i = 0;
  while (i < name.length) {
    const amp = name.indexOf('&', i);
    if (amp < 0) {
      out += name.slice(i);
      break;
    }
    out += name.slice(i, amp);
    const dash = name.indexOf('-', amp + 1);
    if (dash < 0) return name;
    const b64 = name.slice(amp + 1, dash);
    if (b64 === '') out += '&';
    else {
      if (!/^[A-Za-z0-9+,]+$/.test(b64)) return name;
      const bytes = Buffer.from(b64.replace(/,/g, '/'), 'base64');
      if (bytes.length % 2 !== 0) return name;
      for (let k = 0; k < bytes.length; k += 2) out += String.fromCharCode(bytes.readUInt16BE(k));
    }
    i = dash + 1;
  }
  return out;
}
