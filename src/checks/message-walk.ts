/**
 * @module checks/message-walk
 * SUMMARY: a streaming walk over a message's bytes as Postfix cleanup sees them: the byte
 * stream is cut into smtpd's records (one line, or a line_length_limit chunk of a longer
 * one) and classified by a port of mime_state.c: logical headers (folded lines joined by
 * "\n", "Name :" normalised to "Name:", truncated at header_size_limit) with their class
 * (primary, multipart, nested) and MIME flag, and body records with their offset in the
 * current body segment. Exports MessageWalker (write/end, driving a WalkerSink with
 * absolute byte ranges so the caller can edit the stream) and collectKeys() for tools.
 * DIAGNOSTICS: never throws on content; the MIME nesting error is reported once to the sink.
 * SEE ALSO: Postfix mime_state.c, header_token.c, is_header.c, header_opts.c, smtp_stream.c.
 */

/** Where a header is, as mime_state's header_class. */
export type HeaderClass = 'primary' | 'multipart' | 'nested';

/** smtpd record types: a whole line (its terminator removed), or a chunk of a longer line. */
export const REC_NORM = 1;
export const REC_CONT = 2;

export interface WalkLimits {
  /** header_size_limit: a logical header stops growing once it is this long. */
  readonly headerSizeLimit: number;
  /** line_length_limit: longer lines arrive in chunks of this many bytes. */
  readonly lineLengthLimit: number;
  /** mime_nesting_limit. */
  readonly mimeNestingLimit: number;
  /** mime_boundary_length_limit: boundaries are compared on this many bytes only. */
  readonly mimeBoundaryLengthLimit: number;
  /** MIME_OPT_REPORT_NESTING: tell the sink when nesting exceeds the limit. */
  readonly reportNesting: boolean;
  /**
   * MIME_OPT_DISABLE_MIME (disable_mime_input_processing): Content-Type is not parsed, so
   * everything after the primary headers is body.
   */
  readonly disableMime?: boolean;
}

export const DEFAULT_WALK_LIMITS: WalkLimits = Object.freeze({
  headerSizeLimit: 102400,
  lineLengthLimit: 2048,
  mimeNestingLimit: 100,
  mimeBoundaryLengthLimit: 2048,
  reportNesting: false,
});

/**
 * One complete logical header. `key` holds its text in bytes [0, keyLength) and is only
 * valid during the call. The raw range is the header's bytes in the input stream,
 * continuation lines and line endings included.
 */
export interface HeaderEvent {
  readonly headerClass: HeaderClass;
  /** header_opts HDR_OPT_MIME: Content-Type, Content-Transfer-Encoding, ..., MIME-Version. */
  readonly mime: boolean;
  readonly key: Buffer;
  readonly keyLength: number;
  readonly rawStart: number;
  readonly rawEnd: number;
  /**
   * The header reached header_size_limit, so its text is final before its end: it is
   * reported early, and the rest of its raw bytes arrive through headerTail().
   */
  readonly truncated: boolean;
  /** Its first line ended in a bare LF rather than CRLF. */
  readonly bareLf: boolean;
}

export interface WalkerSink {
  header(h: HeaderEvent): void;
  /** More raw bytes of a header already reported with truncated = true. */
  headerTail(rawStart: number, rawEnd: number): void;
  /**
   * One body record: text in buf[start, end), at OFFSET bytes into the current body segment
   * (line ends count one byte); its raw bytes are [rawStart, rawEnd), and rawEnd - rawStart
   * - (end - start) is the length of its line ending (0 for a chunk of a longer line).
   * Records mime_state invents (an empty line) have rawStart === rawEnd.
   */
  body(type: number, buf: Buffer, start: number, end: number, offset: number, rawStart: number, rawEnd: number): void;
  /** MIME_ERR_NESTING, once; TEXT is the offending header (as mime_state reports it). */
  nestingError?(text: string): void;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const DASH = 0x2d;
const COLON = 0x3a;

const STATE_PRIMARY = 0;
const STATE_MULTIPART = 1;
const STATE_NESTED = 2;
const STATE_BODY = 3;

const CTYPE_OTHER = 0;
const CTYPE_TEXT = 1;
const CTYPE_MESSAGE = 2;
const CTYPE_MULTIPART = 3;

const STYPE_OTHER = 0;
const STYPE_PLAIN = 1;
const STYPE_RFC822 = 2;
const STYPE_PARTIAL = 3;
const STYPE_EXTERN_BODY = 4;
const STYPE_GLOBAL = 5;

const CLASS_OF: readonly HeaderClass[] = ['primary', 'multipart', 'nested'];
const EMPTY = Buffer.alloc(0);

/** header_opts entries with HDR_OPT_MIME, lower-cased. */
const MIME_HEADERS = new Set([
  'content-description',
  'content-disposition',
  'content-id',
  'content-transfer-encoding',
  'content-type',
  'mime-version',
]);

/**
 * is_header_buf(): the length of the header name when buf[start, end) starts a header,
 * else 0. The name is printable ASCII without ":" and space; blanks may separate it from
 * the colon (RFC 822's obsolete form) but may not appear inside it.
 */
export function headerNameLength(buf: Uint8Array, start: number, end: number): number {
  let len = 0;
  let spaced = false;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (c === COLON) return len;
    if (c === SP || c === TAB) {
      if (len === 0) return 0;
      spaced = true;
      continue;
    }
    if (c <= SP || c >= 0x7f || spaced) return 0;
    len++;
  }
  return 0;
}

/** is_header(): TEXT starts with "name:" (PREPEND and REPLACE texts must). */
export function isHeaderText(text: string): boolean {
  let len = 0;
  let spaced = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === COLON) return len > 0;
    if (c === SP || c === TAB) {
      if (len === 0) return false;
      spaced = true;
      continue;
    }
    if (c <= SP || c >= 0x7f || spaced) return false;
    len++;
  }
  return false;
}

interface Boundary {
  readonly defCtype: number;
  readonly defStype: number;
  readonly bytes: Buffer;
}

/** header_token()'s token kinds; a special character is its own code. */
const TOK_TOKEN = 256;
const TOK_QSTRING = 257;

interface Token {
  type: number;
  value: Buffer;
}

/** RFC 2045 tspecials, as mime_state passes them to header_token(). */
const TSPECIALS = new Uint8Array(128);
for (const ch of '()<>@,;:\\"/[]?=') TSPECIALS[ch.charCodeAt(0)] = 1;

function isSpecial(c: number): boolean {
  return (c < 128 && TSPECIALS[c] === 1) || c < 0x20 || c === 0x7f;
}

function isLwsp(c: number): boolean {
  return c === SP || c === TAB || c === CR || c === LF;
}

/**
 * header_token() over buf[pos, end) with tspecials and ';' as terminator: up to MAX tokens
 * of one parameter, skipping white space and (nested) comments, unquoting quoted strings.
 * Returns the count (-1 at the end of the text) and where the next parameter starts.
 */
function headerTokens(buf: Buffer, pos: number, end: number, max: number, out: Token[]): { count: number; next: number } {
  let count = 0;
  let cp = pos;
  let atEnd = true;
  const bytes: number[] = [];
  for (;;) {
    if (cp >= end || buf[cp] === 0) break;
    let ch = buf[cp++]!;
    if (isLwsp(ch)) continue;
    if (ch === 0x3b /* ; */) {
      atEnd = false;
      break;
    }
    if (ch === 0x28 /* ( */) {
      // Comments nest, and a backslash quotes the next character.
      let level = 1;
      while (cp < end && (ch = buf[cp]!) !== 0) {
        cp++;
        if (ch === 0x28) level++;
        else if (ch === 0x29) {
          if (--level === 0) break;
        } else if (ch === 0x5c /* \ */) {
          if (cp >= end || buf[cp] === 0) break;
          cp++;
        }
      }
      continue;
    }
    if (ch === 0x22 /* " */) {
      bytes.length = 0;
      while (cp < end && (ch = buf[cp]!) !== 0) {
        cp++;
        if (ch === 0x22) break;
        if (ch === LF) {
          // Unfolding drops the white space before the line break, not after it.
          while (bytes.length > 0 && isLwsp(bytes[bytes.length - 1]!)) bytes.pop();
          continue;
        }
        if (ch === 0x5c) {
          if (cp >= end || (ch = buf[cp]!) === 0) break;
          cp++;
        }
        bytes.push(ch);
      }
      if (count < max) out[count++] = { type: TOK_QSTRING, value: Buffer.from(bytes) };
      continue;
    }
    if (isSpecial(ch)) {
      if (count < max) out[count++] = { type: ch, value: Buffer.from([ch]) };
      continue;
    }
    const start = cp - 1;
    while (cp < end && (ch = buf[cp]!) !== 0 && !isLwsp(ch) && !isSpecial(ch)) cp++;
    if (count < max) out[count++] = { type: TOK_TOKEN, value: buf.subarray(start, cp) };
  }
  // Nothing left before the end of the text (an empty parameter before ';' counts 0).
  if (count === 0 && atEnd) return { count: -1, next: cp };
  return { count, next: cp };
}

function tokenIs(t: Token | undefined, word: string): boolean {
  if (t === undefined || t.type !== TOK_TOKEN || t.value.length !== word.length) return false;
  for (let i = 0; i < word.length; i++) {
    let c = t.value[i]!;
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== word.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The Postfix MIME state machine, fed with bytes. Headers are held (as text for the key and
 * as a raw range for the sink) until the next record shows they are complete.
 */
export class MessageWalker {
  private readonly sink: WalkerSink;
  private readonly limits: WalkLimits;
  private readonly bound: number;

  /** Bytes of an incomplete record carried over to the next write(). */
  private carry: Buffer;
  private carryLen = 0;
  private carryStart = 0;
  private pos = 0;

  private state = STATE_PRIMARY;
  private ctype = CTYPE_TEXT;
  private stype = STYPE_PLAIN;
  private prevType = 0;
  private bodyOffset = 0;
  private nestingLevel = -1;
  private readonly stack: Boundary[] = [];
  private nestingReported = false;

  /** The pending logical header: key text and raw byte range. */
  private hdr: Buffer;
  private hdrLen = 0;
  private hdrNameLen = 0;
  private hdrRawStart = 0;
  private hdrRawEnd = 0;
  private hdrFrozen = false;
  private hdrBareLf = false;
  private readonly tokens: Token[] = [];

  constructor(sink: WalkerSink, limits: WalkLimits = DEFAULT_WALK_LIMITS) {
    this.sink = sink;
    this.limits = limits;
    this.bound = Math.max(2, limits.lineLengthLimit);
    this.carry = Buffer.allocUnsafe(this.bound + 1);
    this.hdr = Buffer.allocUnsafe(1024);
  }

  /** Bytes written so far. */
  get position(): number {
    return this.pos;
  }

  /**
   * The first byte whose fate the sink has not been told yet: the start of a pending header
   * (its key may still grow) or of an incomplete record. Everything before it is decided.
   */
  get holdFrom(): number {
    if (this.hdrLen > 0 && !this.hdrFrozen) return this.hdrRawStart;
    if (this.carryLen > 0) return this.carryStart;
    return this.pos;
  }

  /** smtp_get()'s cut: records of at most line_length_limit bytes, CRLF or LF removed. */
  write(chunk: Buffer): void {
    const base = this.pos;
    const n = chunk.length;
    this.pos += n;
    let p = 0;
    if (this.carryLen > 0) {
      p = this.finishCarry(chunk, base);
      if (p < 0) return;
    }
    const bound = this.bound;
    let lf = chunk.indexOf(LF, p);
    while (p < n) {
      if (lf !== -1 && lf - p < bound) {
        const textEnd = lf > p && chunk[lf - 1] === CR ? lf - 1 : lf;
        this.record(REC_NORM, chunk, p, textEnd, base + p, base + lf + 1);
        p = lf + 1;
        if (p < n) lf = chunk.indexOf(LF, p);
        continue;
      }
      const avail = (lf === -1 ? n : lf) - p;
      if (avail < bound) break;
      // BOUND bytes without a line feed. A CR in the last place with LF next ends the line.
      if (chunk[p + bound - 1] === CR) {
        if (p + bound >= n) break;
        if (chunk[p + bound] === LF) {
          this.record(REC_NORM, chunk, p, p + bound - 1, base + p, base + p + bound + 1);
          p += bound + 1;
          if (p < n) lf = chunk.indexOf(LF, p);
          continue;
        }
      }
      this.record(REC_CONT, chunk, p, p + bound, base + p, base + p + bound);
      p += bound;
    }
    if (p < n) {
      chunk.copy(this.carry, 0, p, n);
      this.carryLen = n - p;
      this.carryStart = base + p;
    }
  }

  /** Complete the carried record with the head of CHUNK; the index after it, or -1. */
  private finishCarry(chunk: Buffer, base: number): number {
    const bound = this.bound;
    const carry = this.carry;
    let len = this.carryLen;
    const start = this.carryStart;
    if (len === bound) {
      // Waiting for the byte after a CR in the last place.
      this.carryLen = 0;
      if (chunk[0] === LF) {
        this.record(REC_NORM, carry, 0, bound - 1, start, base + 1);
        return 1;
      }
      this.record(REC_CONT, carry, 0, bound, start, base);
      return 0;
    }
    const room = bound - len;
    const scan = Math.min(room, chunk.length);
    const lf = chunk.subarray(0, scan).indexOf(LF);
    if (lf !== -1) {
      chunk.copy(carry, len, 0, lf);
      len += lf;
      this.carryLen = 0;
      const textEnd = len > 0 && carry[len - 1] === CR ? len - 1 : len;
      this.record(REC_NORM, carry, 0, textEnd, start, base + lf + 1);
      return lf + 1;
    }
    chunk.copy(carry, len, 0, scan);
    len += scan;
    if (len < bound) {
      this.carryLen = len;
      return -1;
    }
    if (carry[bound - 1] === CR) {
      if (scan >= chunk.length) {
        this.carryLen = len;
        return -1;
      }
      this.carryLen = 0;
      if (chunk[scan] === LF) {
        this.record(REC_NORM, carry, 0, bound - 1, start, base + scan + 1);
        return scan + 1;
      }
      this.record(REC_CONT, carry, 0, bound, start, base + scan);
      return scan;
    }
    this.carryLen = 0;
    this.record(REC_CONT, carry, 0, bound, start, base + scan);
    return scan;
  }

  /** End of content (REC_TYPE_XTRA): the last partial line, pending header, end of body. */
  end(): void {
    if (this.carryLen > 0) {
      let textEnd = this.carryLen;
      if (this.carry[textEnd - 1] === CR) textEnd--;
      const start = this.carryStart;
      this.carryLen = 0;
      this.record(REC_NORM, this.carry, 0, textEnd, start, this.pos);
    }
    // A message ending inside a long line: mime_state flushes it with an empty record.
    if (this.prevType === REC_CONT) this.record(REC_NORM, EMPTY, 0, 0, this.pos, this.pos);
    if (this.state !== STATE_BODY) {
      if (this.hdrLen > 0) this.flushHeader();
      this.state = STATE_BODY;
      this.bodyOffset = 0;
    }
    this.prevType = 0;
  }

  /** mime_state_update() for one text record. */
  private record(type: number, buf: Buffer, s: number, e: number, rawStart: number, rawEnd: number): void {
    const len = e - s;
    if (this.state !== STATE_BODY) {
      if (this.hdrLen > 0) {
        if (this.prevType === REC_CONT) {
          this.absorb(buf, s, e, false, rawStart, rawEnd);
          this.prevType = type;
          return;
        }
        if (len > 0 && (buf[s] === SP || buf[s] === TAB)) {
          this.absorb(buf, s, e, true, rawStart, rawEnd);
          this.prevType = type;
          return;
        }
        this.flushHeader();
      }
      const nameLen = headerNameLength(buf, s, e);
      if (nameLen > 0) {
        this.startHeader(buf, s, e, nameLen, rawStart, rawEnd);
        this.prevType = type;
        return;
      }
      // This record ends the header block.
      if (len === 0) {
        this.bodyOffset = 0;
        if (this.ctype === CTYPE_MESSAGE) {
          if (this.stype === STYPE_RFC822 || this.stype === STYPE_GLOBAL) this.setMimeState(STATE_NESTED, CTYPE_TEXT, STYPE_PLAIN);
          else this.setState(STATE_BODY);
        } else if (this.ctype === CTYPE_MULTIPART) {
          this.setMimeState(STATE_BODY, CTYPE_OTHER, STYPE_OTHER);
        } else {
          this.setState(STATE_BODY);
        }
      } else {
        // Not a header, not empty: Postfix inserts the missing empty line after the primary
        // headers (only into its own copy; greygate leaves the bytes alone).
        if (this.state === STATE_PRIMARY) this.bodyOut(REC_NORM, EMPTY, 0, 0, rawStart, rawStart);
        this.setState(STATE_BODY);
      }
      // Fall through: the record itself is body text (even when the state became NESTED).
    }
    const stack = this.stack;
    if (stack.length > 0 && this.prevType !== REC_CONT && len > 2 && buf[s] === DASH && buf[s + 1] === DASH) {
      for (let i = stack.length - 1; i >= 0; i--) {
        const b = stack[i]!;
        const bl = b.bytes.length;
        if (len >= 2 + bl && buf.compare(b.bytes, 0, bl, s + 2, s + 2 + bl) === 0) {
          while (stack.length - 1 > i) this.pop();
          if (len >= 4 + bl && buf[s + 2 + bl] === DASH && buf[s + 3 + bl] === DASH) {
            this.pop();
            this.setMimeState(STATE_BODY, CTYPE_OTHER, STYPE_OTHER);
          } else {
            this.setMimeState(STATE_MULTIPART, b.defCtype, b.defStype);
          }
          break;
        }
      }
    }
    this.bodyOut(type, buf, s, e, rawStart, rawEnd);
    this.prevType = type;
  }

  private bodyOut(type: number, buf: Buffer, s: number, e: number, rawStart: number, rawEnd: number): void {
    const offset = this.bodyOffset;
    this.bodyOffset += e - s + 1;
    this.sink.body(type, buf, s, e, offset, rawStart, rawEnd);
  }

  private setMimeState(state: number, ctype: number, stype: number): void {
    this.state = state;
    this.ctype = ctype;
    this.stype = stype;
    if (state === STATE_BODY) this.bodyOffset = 0;
  }

  private setState(state: number): void {
    this.state = state;
    if (state === STATE_BODY) this.bodyOffset = 0;
  }

  private pop(): void {
    this.stack.pop();
    this.nestingLevel--;
  }

  private ensureHeaderRoom(extra: number): void {
    const need = this.hdrLen + extra;
    if (need <= this.hdr.length) return;
    let size = this.hdr.length * 2;
    while (size < need) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.hdr.copy(grown, 0, 0, this.hdrLen);
    this.hdr = grown;
  }

  private startHeader(buf: Buffer, s: number, e: number, nameLen: number, rawStart: number, rawEnd: number): void {
    // "Name : value" becomes "Name: value", as mime_state normalises the obsolete form.
    let rest = s + nameLen;
    while (rest < e && (buf[rest] === SP || buf[rest] === TAB)) rest++;
    this.hdrLen = 0;
    this.ensureHeaderRoom(nameLen + (e - rest));
    buf.copy(this.hdr, 0, s, s + nameLen);
    buf.copy(this.hdr, nameLen, rest, e);
    this.hdrLen = nameLen + (e - rest);
    this.hdrNameLen = nameLen;
    this.hdrRawStart = rawStart;
    this.hdrRawEnd = rawEnd;
    this.hdrFrozen = false;
    this.hdrBareLf = rawEnd - rawStart - (e - s) === 1;
    if (this.hdrLen >= this.limits.headerSizeLimit) this.freezeHeader();
  }

  private absorb(buf: Buffer, s: number, e: number, newline: boolean, rawStart: number, rawEnd: number): void {
    if (this.hdrFrozen) {
      this.sink.headerTail(rawStart, rawEnd);
      return;
    }
    this.hdrRawEnd = rawEnd;
    if (this.hdrLen < this.limits.headerSizeLimit) {
      this.ensureHeaderRoom(e - s + 1);
      if (newline) this.hdr[this.hdrLen++] = LF;
      buf.copy(this.hdr, this.hdrLen, s, e);
      this.hdrLen += e - s;
    }
    // Text past the limit is dropped, so the key is final now: decide without holding more.
    if (this.hdrLen >= this.limits.headerSizeLimit) this.freezeHeader();
  }

  private freezeHeader(): void {
    this.emitHeader(true);
    this.hdrFrozen = true;
  }

  private flushHeader(): void {
    if (!this.hdrFrozen) this.emitHeader(false);
    this.hdrLen = 0;
    this.hdrFrozen = false;
    this.prevType = 0;
  }

  private emitHeader(truncated: boolean): void {
    const name = this.hdr.toString('latin1', 0, this.hdrNameLen).toLowerCase();
    const mime = MIME_HEADERS.has(name);
    if (name === 'content-type' && this.limits.disableMime !== true) this.contentType();
    this.sink.header({
      headerClass: CLASS_OF[this.state]!,
      mime,
      key: this.hdr,
      keyLength: this.hdrLen,
      rawStart: this.hdrRawStart,
      rawEnd: this.hdrRawEnd,
      truncated,
      bareLf: this.hdrBareLf,
    });
  }

  /** mime_state_content_type(): the content type, and boundaries pushed for multipart. */
  private contentType(): void {
    const buf = this.hdr;
    const end = this.hdrLen;
    const tok = this.tokens;
    let { count, next } = headerTokens(buf, this.hdrNameLen + 1, end, 3, tok);
    if (count <= 0) {
      this.ctype = CTYPE_OTHER;
      return;
    }
    if (tokenIs(tok[0], 'text')) {
      this.ctype = CTYPE_TEXT;
      this.stype = count >= 3 && tok[1]!.type === 0x2f && tokenIs(tok[2], 'plain') ? STYPE_PLAIN : STYPE_OTHER;
      return;
    }
    if (tokenIs(tok[0], 'message')) {
      this.ctype = CTYPE_MESSAGE;
      this.stype = STYPE_OTHER;
      if (count >= 3 && tok[1]!.type === 0x2f) {
        if (tokenIs(tok[2], 'rfc822')) this.stype = STYPE_RFC822;
        else if (tokenIs(tok[2], 'partial')) this.stype = STYPE_PARTIAL;
        else if (tokenIs(tok[2], 'external-body')) this.stype = STYPE_EXTERN_BODY;
        else if (tokenIs(tok[2], 'global')) this.stype = STYPE_GLOBAL;
      }
      return;
    }
    if (tokenIs(tok[0], 'multipart')) {
      this.ctype = CTYPE_MULTIPART;
      const digest = count >= 3 && tok[1]!.type === 0x2f && tokenIs(tok[2], 'digest');
      const defCtype = digest ? CTYPE_MESSAGE : CTYPE_TEXT;
      const defStype = digest ? STYPE_RFC822 : STYPE_PLAIN;
      // Every boundary parameter is pushed: a repeated one could hide content otherwise.
      for (;;) {
        ({ count, next } = headerTokens(buf, next, end, 3, tok));
        if (count < 0) break;
        if (count >= 3 && tokenIs(tok[0], 'boundary') && tok[1]!.type === 0x3d) {
          if (this.nestingLevel > this.limits.mimeNestingLimit) {
            if (this.limits.reportNesting && !this.nestingReported) {
              this.nestingReported = true;
              this.sink.nestingError?.(buf.toString('utf8', 0, end));
            }
          } else {
            this.nestingLevel++;
            const value = tok[2]!.value;
            const bl = Math.min(value.length, this.limits.mimeBoundaryLengthLimit);
            this.stack.push({ defCtype, defStype, bytes: Buffer.from(value.subarray(0, bl)) });
          }
        }
      }
    }
    // Any other type leaves the current (default) type as it was, as mime_state does.
  }
}

/** A header or body key as the checks see it, for tools and tests. */
export interface WalkKey {
  readonly kind: 'header' | 'body';
  /** For headers: the class mime_state gives; MIME headers are looked up as 'multipart'. */
  readonly headerClass?: HeaderClass;
  readonly mime?: boolean;
  readonly text: string;
  /** Body records: offset in the current body segment; CONT for a chunk of a longer line. */
  readonly offset?: number;
  readonly continued?: boolean;
}

/**
 * Every header and body record of MESSAGE in order, decoded as UTF-8: what postmap -m -h
 * and -m -b look up (plus the record chunking smtpd adds), for `greygate trace` and tests.
 */
export function collectKeys(message: Buffer, limits: WalkLimits = DEFAULT_WALK_LIMITS): WalkKey[] {
  const keys: WalkKey[] = [];
  const walker = new MessageWalker(
    {
      header(h) {
        keys.push({ kind: 'header', headerClass: h.headerClass, mime: h.mime, text: h.key.toString('utf8', 0, h.keyLength) });
      },
      headerTail() {},
      body(type, buf, start, end, offset) {
        keys.push({ kind: 'body', text: buf.toString('utf8', start, end), offset, continued: type === REC_CONT });
      },
    },
    limits,
  );
  walker.write(message);
  walker.end();
  return keys;
}
