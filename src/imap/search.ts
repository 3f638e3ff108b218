/**
 * @module imap/search
 * SUMMARY: evaluates a SEARCH key tree (parser.parseSearch) against one message: matchSearch()
 * decides on flags, UIDs, sizes and dates first and loads the message only when a text key
 * still matters. Text keys are charset-less, case-insensitive substring matches on the bytes
 * read as UTF-8; as in Dovecot, headers also match RFC 2047-decoded and quoted-printable or
 * base64 body parts match decoded. SENT* keys use the Date: header's own calendar day (none:
 * 1-Jan-1970), BEFORE/ON/SINCE the internal date in the context's zone (RFC 3501 6.4.4).
 * DIAGNOSTICS: never throws on content; an error from the caller's `load` propagates.
 * SEE ALSO: RFC 3501 section 6.4.4; RFC 2047; Dovecot index-search.c.
 */
import { parseMessage, type BodyPart, type MessageStructure } from './message-structure.js';
import type { SearchDate, SearchKey, SequenceSet } from './parser.js';
import { sequenceSetHas } from './parser.js';

export interface SearchMessage {
  readonly seq: number;
  readonly uid: number;
  /** System flags (`\Seen`...) and keywords; include `\Recent` when recent. Any case. */
  readonly flags: readonly string[];
  /** RFC822.SIZE. */
  readonly size: number;
  readonly internalDate: Date;
  /**
   * The message (CRLF), or its already-parsed structure; called at most once, and only when
   * a header or text key must be evaluated.
   */
  readonly load: () => MessageStructure | Buffer | Promise<MessageStructure | Buffer>;
}

export interface SearchContext {
  /** EXISTS: what `*` means in a sequence-set key. */
  readonly maxSeq: number;
  /** The mailbox's largest UID: what `*` means in a UID key. */
  readonly maxUid: number;
  /** Minutes east of UTC for BEFORE/ON/SINCE; default: the server's local zone at that date. */
  readonly zoneOffsetMinutes?: number;
}

/** Does the message match? Loads it only when needed. */
export async function matchSearch(key: SearchKey, message: SearchMessage, context: SearchContext): Promise<boolean> {
  const quick = evaluate(key, message, context, null);
  if (quick !== undefined) return quick;
  const loaded = await message.load();
  const content = new Content(Buffer.isBuffer(loaded) ? parseMessage(loaded) : loaded);
  return evaluate(key, message, context, content) === true;
}

/** Whether any key in the tree needs the message's headers or text. */
export function searchNeedsContent(key: SearchKey): boolean {
  switch (key.kind) {
    case 'and':
      return key.keys.some(searchNeedsContent);
    case 'or':
      return searchNeedsContent(key.left) || searchNeedsContent(key.right);
    case 'not':
      return searchNeedsContent(key.key);
    case 'header':
    case 'text':
      return true;
    case 'date':
      return key.field === 'sent';
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------
// Evaluation: true / false, or undefined while the content is not loaded (Kleene logic, so
// `SEEN BODY x` on an unseen message never loads it).
// ---------------------------------------------------------------------------------------

type Tri = boolean | undefined;

function evaluate(key: SearchKey, m: SearchMessage, ctx: SearchContext, content: Content | null): Tri {
  switch (key.kind) {
    case 'all':
      return true;
    case 'and': {
      let result: Tri = true;
      for (const k of key.keys) {
        const r = evaluate(k, m, ctx, content);
        if (r === false) return false;
        if (r === undefined) result = undefined;
      }
      return result;
    }
    case 'or': {
      const l = evaluate(key.left, m, ctx, content);
      if (l === true) return true;
      const r = evaluate(key.right, m, ctx, content);
      if (r === true) return true;
      return l === undefined || r === undefined ? undefined : false;
    }
    case 'not': {
      const r = evaluate(key.key, m, ctx, content);
      return r === undefined ? undefined : !r;
    }
    case 'flag':
      return hasFlag(m.flags, key.flag) === key.set;
    case 'seq':
      return inSet(key.set, m.seq, ctx.maxSeq);
    case 'uid':
      return inSet(key.set, m.uid, ctx.maxUid);
    case 'size':
      return key.op === 'larger' ? m.size > key.size : m.size < key.size;
    case 'date': {
      if (key.field === 'internal') return compareDay(internalDay(m.internalDate, ctx.zoneOffsetMinutes), key.op, dayNumber(key.date));
      if (content === null) return undefined;
      return compareDay(content.sentDay(), key.op, dayNumber(key.date));
    }
    case 'header':
      return content === null ? undefined : content.header(key.field, key.value);
    case 'text':
      return content === null ? undefined : key.where === 'body' ? content.body(key.value) : content.text(key.value);
  }
}

function hasFlag(flags: readonly string[], flag: string): boolean {
  const want = flag.toLowerCase();
  return flags.some((f) => f.toLowerCase() === want);
}

function inSet(set: SequenceSet, value: number, star: number): boolean {
  return sequenceSetHas(set, value, star);
}

function dayNumber(d: SearchDate): number {
  return Math.floor(Date.UTC(d.year, d.month - 1, d.day) / 86400000);
}

function internalDay(date: Date, offsetMinutes: number | undefined): number {
  const offset = offsetMinutes ?? -date.getTimezoneOffset();
  return Math.floor((date.getTime() + offset * 60000) / 86400000);
}

function compareDay(day: number, op: 'before' | 'on' | 'since', wanted: number): boolean {
  return op === 'before' ? day < wanted : op === 'on' ? day === wanted : day >= wanted;
}

// ---------------------------------------------------------------------------------------
// Content: what the text keys look at, computed once per message and only when asked.
// ---------------------------------------------------------------------------------------

const MONTHS: Readonly<Record<string, number>> = { jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12 };

/**
 * The calendar day of an RFC 5322 date as written (its own zone; RFC 3501 disregards time
 * and zone), or null. Lenient: weekday optional, comments and folding ignored, 2-digit years
 * as RFC 5322 4.3 reads them.
 */
export function sentDayOf(text: string): number | null {
  const m = /(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,4})\b/.exec(text.replace(/\([^)]*\)/g, ' '));
  if (m === null) return null;
  const month = MONTHS[m[2]!.toLowerCase()];
  let year = Number(m[3]);
  const day = Number(m[1]);
  if (month === undefined) return null;
  if (m[3]!.length === 2) year += year < 50 ? 2000 : 1900;
  else if (m[3]!.length === 3) year += 1900;
  if (day < 1 || day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return null;
  return Math.floor(Date.UTC(year, month - 1, day) / 86400000);
}

/** RFC 2047 encoded-words decoded (unknown charsets and bad encodings left as they were). */
export function decodeEncodedWords(text: string): string {
  if (!text.includes('=?')) return text;
  // White space between two encoded-words is not part of the text (RFC 2047 6.2).
  return text
    .replace(/(=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[BbQq]\?[^?\s]*\?=)/g, '$1')
    .replace(/=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g, (word: string, charset: string, enc: string, data: string) => {
      let bytes: Buffer;
      if (enc === 'B' || enc === 'b') bytes = Buffer.from(data, 'base64');
      else bytes = decodeQuotedPrintable(Buffer.from(data.replace(/_/g, ' '), 'latin1'));
      const text = decodeCharset(bytes, charset.replace(/\*.*$/, ''));
      return text ?? word;
    });
}

function decodeQuotedPrintable(b: Buffer): Buffer {
  const out = Buffer.alloc(b.length);
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x3d) {
      const hex = b.toString('latin1', i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        out[n++] = parseInt(hex, 16);
        i += 2;
        continue;
      }
      // A soft line break: "=" before the newline.
      if (b[i + 1] === 0x0d && b[i + 2] === 0x0a) {
        i += 2;
        continue;
      }
      if (b[i + 1] === 0x0a) {
        i += 1;
        continue;
      }
    }
    out[n++] = c;
  }
  return out.subarray(0, n);
}

function decodeCharset(bytes: Buffer, charset: string): string | null {
  try {
    return new TextDecoder(charset.trim().toLowerCase() || 'utf-8').decode(bytes);
  } catch {
    return null;
  }
}

function lower(s: string): string {
  return s.toLowerCase();
}

const ADDRESS_HEADERS = new Set(['from', 'to', 'cc', 'bcc', 'sender', 'reply-to']);

class Content {
  #text: string[] | undefined;
  #bodies: string[] | undefined;
  #sentDay: number | undefined;

  constructor(readonly structure: MessageStructure) {}

  sentDay(): number {
    if (this.#sentDay === undefined) {
      const values = this.structure.headerValues('date');
      const last = values[values.length - 1];
      this.#sentDay = (last === undefined ? null : sentDayOf(last.toString('latin1'))) ?? 0;
    }
    return this.#sentDay;
  }

  header(field: string, value: string): boolean {
    const values = this.structure.headerValues(field);
    if (values.length === 0) return false;
    if (value === '') return true;
    const want = lower(value);
    const address = ADDRESS_HEADERS.has(field.toLowerCase());
    for (const raw of values) {
      const text = raw.toString('utf8').replace(/[ \t\r\n]+/g, ' ');
      if (lower(text).includes(want)) return true;
      const decoded = decodeEncodedWords(text);
      if (decoded !== text && lower(decoded).includes(want)) return true;
      // Dovecot matches addresses in their written-out form, where a quoted display name
      // ("Doe, John") has lost its quotes.
      if (address && lower(decoded.replace(/\\(.)/g, '$1').replace(/"/g, '')).includes(want)) return true;
    }
    return false;
  }

  body(value: string): boolean {
    const want = lower(value);
    return this.bodies().some((b) => b.includes(want));
  }

  text(value: string): boolean {
    const want = lower(value);
    if (this.body(value)) return true;
    this.#text ??= headerBlocks(this.structure);
    return this.#text.some((h) => h.includes(want));
  }

  bodies(): string[] {
    return (this.#bodies ??= leafBodies(this.structure));
  }
}

function eachPart(part: BodyPart, visit: (p: BodyPart) => void): void {
  visit(part);
  for (const c of part.children) eachPart(c, visit);
  if (part.message !== null) eachPart(part.message, visit);
}

/** Every header block (the message's, each MIME part's, each attached message's), lower-cased. */
function headerBlocks(s: MessageStructure): string[] {
  const out: string[] = [];
  eachPart(s.root, (p) => {
    if (p.bodyStart <= p.start) return;
    const raw = s.buffer.toString('utf8', p.start, p.bodyStart).replace(/\r?\n(?=[ \t])/g, '');
    out.push(lower(raw));
    const decoded = decodeEncodedWords(raw);
    if (decoded !== raw) out.push(lower(decoded));
  });
  return out;
}

/** The text of every leaf body part, transfer-decoded and charset-decoded when encoded, lower-cased. */
function leafBodies(s: MessageStructure): string[] {
  const out: string[] = [];
  eachPart(s.root, (p) => {
    if (p.children.length > 0 || p.message !== null) return;
    if (p.type === 'multipart') return;
    const raw = s.buffer.subarray(p.bodyStart, p.end);
    if (p.encoding === 'quoted-printable' || p.encoding === 'base64') {
      const bytes = p.encoding === 'base64' ? Buffer.from(raw.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64') : decodeQuotedPrintable(raw);
      const charset = p.params.find(([k]) => k.toLowerCase() === 'charset')?.[1];
      const text = p.type === 'text' && charset !== undefined ? decodeCharset(bytes, charset) : null;
      out.push(lower(text ?? bytes.toString('utf8')));
    } else {
      out.push(lower(raw.toString('utf8')));
    }
  });
  return out;
}
