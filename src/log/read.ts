/**
 * @module log/read
 * SUMMARY: read and filter the decision log (mail.log, pino JSON lines) for `greygate log`
 * and `greygate report`, fast enough for logs of millions of lines. readLog(paths, filter,
 * onRecord, opts) -> ReadStats streams each file in large reads (rotated `.gz` files and
 * stdin through a stream), and rejects most lines before JSON.parse: one to three wanted
 * events are searched for as `"event":"NAME"` in the bytes (more: each line's name after
 * `"event":"` is looked up), since/until compare the fixed-width ISO `"time":"...Z"` text
 * (whole chunks outside are skipped), and client/sender/recipient/rule values are read from
 * the raw text when it is spelled as the logger spells it (else the parsed record decides).
 * The event search expects the logger's spelling (no blanks around ':'): an --event filter
 * does not see lines written otherwise. parseTimeArg() turns "2h", "2026-11-24T10:00",
 * "today"... into epoch ms; logFilesFor(config) lists maillog_file and its rotated siblings,
 * oldest first.
 * DIAGNOSTICS: a line that is not a JSON object with a usable time is counted in
 * ReadStats.bad and skipped; a line longer than MAX_LINE is skipped as bad without being
 * held in memory. A file that cannot be read throws ConfigError(path); a bad time, client
 * or CIDR argument throws UsageError.
 * SEE ALSO: design.md "Log", log/events.ts, pflogsumm(1), journalctl(1) --since.
 */
import { isAscii } from 'node:buffer';
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { createGunzip } from 'node:zlib';
import ipaddr from 'ipaddr.js';
import { ConfigError, UsageError } from '../errors.js';
import type { Config } from '../config/config.js';

/** A decision record as the logger wrote it (JSON object), plus its time in ms. */
export interface LogRecord {
  readonly [field: string]: unknown;
  readonly time: string;
  readonly event: string;
}

export interface LogFilter {
  /** epoch ms, inclusive */
  since?: number;
  /** epoch ms, exclusive */
  until?: number;
  events?: ReadonlySet<string>;
  /** client_ip exact, or a CIDR "192.0.2.0/24" */
  client?: string;
  /** from: exact address (case-insensitive), or "@domain" suffix; "<>" is the null sender */
  sender?: string;
  /** to (string or array): same matching as sender */
  recipient?: string;
  /** rule: exact, or a prefix ending in ':' (e.g. "header_checks:") / substring */
  rule?: string;
}

export interface ReadStats {
  lines: number;
  matched: number;
  bad: number;
  bytes: number;
}

export interface ReadOptions {
  /** What path '-' reads. */
  stdin?: NodeJS.ReadableStream;
  /** Also pass records without an `event` (when filter.events is unset). */
  all?: boolean;
  /** Stop reading (between chunks) once aborted, e.g. when the reader of our output has gone. */
  signal?: AbortSignal;
  /**
   * Events the caller only counts: their lines are not parsed, onTally gets the event and
   * time read from the raw text (a report needs no more of the connect/disconnect lines that
   * are half of a log). Used only when the filter has no field tests beyond since/until.
   */
  tally?: { readonly events: ReadonlySet<string>; onTally(event: string, timeMs: number): void };
}

/** Bytes per read: large reads are what makes a 300 MB log take a fraction of a second. */
const CHUNK = 4 * 1024 * 1024;
/** A longer line is not something the logger writes: skipped as bad, never buffered whole. */
const MAX_LINE = 16 * 1024 * 1024;
/**
 * Lines from several writers (the gateway, `greygate sendmail`) reach the file up to a flush
 * interval out of order; a whole chunk is skipped on its first or last time stamp only when
 * it is this far outside since/until.
 */
const ORDER_SLACK_MS = 60_000;
const TIME_KEY = '"time":"';
/** As the logger spells the field (JSON.stringify: no blanks); a long needle is a fast one. */
const EVENT_KEY = '"event":"';
/** Up to this many events, one byte search each; more, one pass reading each line's event. */
const MAX_NEEDLES = 3;

type Pred = (rec: Record<string, unknown>) => boolean;
type RawPred = (line: string) => boolean;

/** The filter, compiled once: what the raw text is checked for, and predicates for the parsed record. */
interface Compiled {
  readonly events: ReadonlySet<string> | null;
  readonly all: boolean;
  readonly since: number;
  readonly until: number;
  /** since or until is set. */
  readonly timed: boolean;
  /** since/until as the logger spells times, for comparing the raw text. */
  readonly sinceIso: string;
  readonly untilIso: string;
  /** Tests of the raw line that every match passes (cheap, before JSON.parse). */
  readonly raw: readonly RawPred[];
  /** The same tests on the parsed record, which decide. */
  readonly preds: readonly Pred[];
}

function isoBound(ms: number, fallback: string): string {
  if (!Number.isFinite(ms)) return fallback;
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  if (y < 0) return '';
  if (y > 9999) return '~';
  return d.toISOString();
}

function compileFilter(filter: LogFilter, all: boolean): Compiled {
  const preds: Pred[] = [];
  const raw: RawPred[] = [];
  /** Field NAME's string value (or, with ARRAYS, one of its array's) must pass TEST. */
  const field = (name: string, test: (v: string) => boolean, arrays: boolean): void => {
    const key = `"${name}"`;
    raw.push((line) => rawHas(line, key, test));
    preds.push((r) => {
      const v = r[name];
      if (typeof v === 'string') return test(v);
      if (arrays && Array.isArray(v)) for (const x of v) if (typeof x === 'string' && test(x)) return true;
      return false;
    });
  };
  if (filter.client !== undefined) field('client_ip', compileClient(filter.client), false);
  if (filter.sender !== undefined) field('from', compileAddress(filter.sender, '--sender'), false);
  if (filter.recipient !== undefined) field('to', compileAddress(filter.recipient, '--recipient'), true);
  if (filter.rule !== undefined) field('rule', compileRule(filter.rule), false);
  const since = filter.since ?? -Infinity;
  const until = filter.until ?? Infinity;
  const events = filter.events ? new Set(filter.events) : null;
  return {
    events,
    all,
    since,
    until,
    timed: since !== -Infinity || until !== Infinity,
    // '' sorts before and '~' after every time stamp.
    sinceIso: isoBound(since, ''),
    untilIso: isoBound(until, '~'),
    raw,
    preds,
  };
}

/** client_ip exact or in a CIDR block. */
function compileClient(spec: string): (ip: string) => boolean {
  const bad = (): UsageError => new UsageError(`bad client address or CIDR block: "${spec}" (expected e.g. 192.0.2.1, 192.0.2.0/24, 2001:db8::/32)`);
  const slash = spec.indexOf('/');
  if (slash < 0) {
    if (ipaddr.IPv4.isValidFourPartDecimal(spec)) {
      const v4 = ipaddr.IPv4.parse(spec).toString();
      return (ip) => ip === v4 || (ip.startsWith('::ffff:') && ip.slice(7) === v4);
    }
    if (!ipaddr.IPv6.isValid(spec)) throw bad();
    const v6 = ipaddr.IPv6.parse(spec).toNormalizedString();
    return (ip) => ip.includes(':') && ipaddr.IPv6.isValid(ip) && ipaddr.IPv6.parse(ip).toNormalizedString() === v6;
  }
  const addr = spec.slice(0, slash);
  const bitsText = spec.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) throw bad();
  const bits = Number(bitsText);
  if (ipaddr.IPv4.isValidFourPartDecimal(addr)) {
    if (bits > 32) throw bad();
    const net = v4ToInt(addr)!;
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    const want = (net & mask) >>> 0;
    return (ip) => {
      const n = v4ToInt(ip.startsWith('::ffff:') ? ip.slice(7) : ip);
      return n !== null && ((n & mask) >>> 0) === want;
    };
  }
  if (!ipaddr.IPv6.isValid(addr) || bits > 128) throw bad();
  const range: [ipaddr.IPv6, number] = [ipaddr.IPv6.parse(addr), bits];
  return (ip) => ip.includes(':') && ipaddr.IPv6.isValid(ip) && ipaddr.IPv6.parse(ip).match(range);
}

/**
 * Could some `KEY: value` of the raw line pass TEST? The values are read as the logger writes
 * them (a string or an array of strings, no escapes); anything spelled otherwise answers
 * true, so that the parsed record decides. A line without KEY at all cannot match.
 */
function rawHas(line: string, key: string, test: (v: string) => boolean): boolean {
  for (let k = line.indexOf(key); k >= 0; k = line.indexOf(key, k + key.length)) {
    let p = k + key.length;
    while (line.charCodeAt(p) === 32) p++;
    // Not a key (a value that happens to read "from"), or a shape the parser must judge.
    if (line.charCodeAt(p) !== 58) return true;
    p++;
    while (line.charCodeAt(p) === 32) p++;
    const array = line.charCodeAt(p) === 91;
    if (array) p++;
    for (;;) {
      if (line.charCodeAt(p) !== 34) return true;
      const end = line.indexOf('"', p + 1);
      if (end < 0) return true;
      const value = line.slice(p + 1, end);
      if (value.includes('\\')) return true;
      if (test(value)) return true;
      if (!array) break;
      const c = line.charCodeAt(end + 1);
      if (c === 93) break;
      if (c !== 44) return true;
      p = end + 2;
    }
  }
  return false;
}

function v4ToInt(ip: string): number | null {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 255) return null;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
    } else return null;
  }
  if (dots !== 3 || digits === 0 || part > 255) return null;
  return n * 256 + part;
}

/** An address: exact (case-insensitive, angle brackets optional), "@domain" suffix, "<>" the null sender. */
function compileAddress(spec: string, what: string): (addr: string) => boolean {
  let s = spec.trim();
  if (s.startsWith('<') && s.endsWith('>')) s = s.slice(1, -1);
  s = s.toLowerCase();
  if (s.startsWith('@')) {
    if (s.length === 1) throw new UsageError(`${what} @: a domain is missing after "@"`);
    return (a) => a.length > s.length && a.toLowerCase().endsWith(s);
  }
  return (a) => a.length === s.length && a.toLowerCase() === s;
}

/**
 * "header_checks:" matches every rule of that file (written FILE:LINE, maybe with a
 * directory); "header_checks:12" that one line; anything else (restriction names, DNSBL
 * domains) is a substring.
 */
function compileRule(spec: string): (rule: string) => boolean {
  if (spec === '') throw new UsageError('--rule: empty rule');
  if (spec.endsWith(':')) return (r) => r.startsWith(spec) || r.includes(`/${spec}`);
  if (/:\d+$/.test(spec)) return (r) => r === spec || r.endsWith(`/${spec}`);
  return (r) => r.includes(spec);
}

/**
 * The canonical time stamp of a raw line (pino's isoTime: 24 characters), or null when the
 * line spells it some other way (then the parsed record decides).
 */
function rawTime(line: string, from: number, to: number): string | null {
  // pino writes `{"level":NN,"time":"` first; search only the start of the line.
  const lim = Math.min(to, from + 96);
  const k = line.indexOf(TIME_KEY, from);
  if (k < 0 || k > lim) return null;
  const a = k + TIME_KEY.length;
  if (a + 25 > to || line.charCodeAt(a + 24) !== 34 || line.charCodeAt(a + 23) !== 90 || line.charCodeAt(a + 10) !== 84) return null;
  return line.slice(a, a + 24);
}

/** Epoch ms of ISO time stamps; the date and second part parsed once per second of log. */
class TimeParser {
  private lastPrefix = '';
  private lastBase = 0;
  parse(t: string): number {
    if (t.length === 24 && t.charCodeAt(19) === 46 && t.charCodeAt(23) === 90) {
      const prefix = t.slice(0, 19);
      if (prefix !== this.lastPrefix) {
        const base = Date.parse(`${prefix}Z`);
        if (Number.isNaN(base)) return NaN;
        this.lastPrefix = prefix;
        this.lastBase = base;
      }
      const c0 = t.charCodeAt(20) - 48;
      const c1 = t.charCodeAt(21) - 48;
      const c2 = t.charCodeAt(22) - 48;
      if (c0 >= 0 && c0 <= 9 && c1 >= 0 && c1 <= 9 && c2 >= 0 && c2 <= 9) return this.lastBase + c0 * 100 + c1 * 10 + c2;
    }
    return Date.parse(t);
  }
}

/** Text of BUF[a, b): Latin-1 (the cheapest) when it is all ASCII, which it nearly always is. */
function decode(buf: Buffer, a: number, b: number): string {
  const view = buf.subarray(a, b);
  return view.toString(isAscii(view) ? 'latin1' : 'utf8');
}

/** What readLog does with whole lines, chunk after chunk. */
class Scanner {
  readonly stats: ReadStats = { lines: 0, matched: 0, bad: 0, bytes: 0 };
  private readonly times = new TimeParser();
  /** With a few events, their needles as bytes: searching the bytes beats decoding the chunk and searching its text. */
  private readonly needles: readonly Buffer[] | null;
  /** With several events: `NAME"` by the first character of NAME. */
  private readonly byFirst: ReadonlyMap<number, readonly string[]>;

  private readonly tally: ReadOptions['tally'] | undefined;
  /** Tallied events as `NAME"`, by the first character of NAME. */
  private readonly tallyByFirst = new Map<number, string[]>();

  constructor(
    private readonly f: Compiled,
    private readonly onRecord: (rec: LogRecord, timeMs: number, line: string) => void,
    tally?: ReadOptions['tally'],
  ) {
    this.tally = tally && f.raw.length === 0 && f.preds.length === 0 ? tally : undefined;
    for (const name of this.tally?.events ?? []) {
      const quoted = JSON.stringify(name);
      const list = this.tallyByFirst.get(quoted.charCodeAt(1)) ?? [];
      list.push(`${quoted.slice(1)}`);
      this.tallyByFirst.set(quoted.charCodeAt(1), list);
    }
    // Names as JSON spells them inside the quotes (the same, for every name the gateway logs).
    const names = f.events ? [...f.events].map((e) => JSON.stringify(e).slice(1, -1)) : [];
    this.needles = names.length > 0 && names.length <= MAX_NEEDLES ? names.map((name) => Buffer.from(`${EVENT_KEY}${name}"`, 'utf8')) : null;
    const byFirst = new Map<number, string[]>();
    for (const name of names) {
      const list = byFirst.get(name.charCodeAt(0)) ?? [];
      list.push(`${name}"`);
      byFirst.set(name.charCodeAt(0), list);
    }
    this.byFirst = byFirst;
  }

  /** BUF holds whole lines, each ending in \n except perhaps the last (end of input). */
  scan(buf: Buffer): void {
    this.stats.lines += countLines(buf);
    if (this.skipChunk(buf)) return;
    if (this.needles) {
      this.scanNeedles(buf, this.needles);
      return;
    }
    if (this.f.events) {
      this.scanEvents(buf);
      return;
    }
    const text = decode(buf, 0, buf.length);
    let p = 0;
    const n = text.length;
    while (p < n) {
      let q = text.indexOf('\n', p);
      if (q < 0) q = n;
      this.line(text, p, q);
      p = q + 1;
    }
  }

  /** A line that is too long to hold: skipped whole. */
  tooLong(): void {
    this.stats.lines++;
    this.stats.bad++;
  }

  /** With since/until: is the whole chunk outside the window (by its first or last line)? */
  private skipChunk(buf: Buffer): boolean {
    const f = this.f;
    if (!f.timed || buf.length === 0) return false;
    if (f.since !== -Infinity) {
      const end = buf[buf.length - 1] === 10 ? buf.length - 1 : buf.length;
      const start = end === 0 ? 0 : buf.lastIndexOf(10, end - 1) + 1;
      const head = decode(buf, start, Math.min(end, start + 128));
      const t = rawTime(head, 0, head.length);
      if (t !== null && this.times.parse(t) < f.since - ORDER_SLACK_MS) return true;
    }
    if (f.until !== Infinity) {
      const head = decode(buf, 0, Math.min(buf.length, 128));
      const t = rawTime(head, 0, head.length);
      if (t !== null && this.times.parse(t) >= f.until + ORDER_SLACK_MS) return true;
    }
    return false;
  }

  /**
   * A few events: visit only the lines holding one of the needles (`"event":"NAME"`), found
   * in the bytes, one search per needle, in line order.
   */
  private scanNeedles(buf: Buffer, needles: readonly Buffer[]): void {
    const n = buf.length;
    const next = needles.map((nd) => buf.indexOf(nd));
    for (;;) {
      let h = -1;
      for (const x of next) if (x >= 0 && (h < 0 || x < h)) h = x;
      if (h < 0) return;
      const a = h === 0 ? 0 : buf.lastIndexOf(10, h - 1) + 1;
      let b = buf.indexOf(10, h);
      if (b < 0) b = n;
      const text = decode(buf, a, b);
      this.line(text, 0, text.length);
      for (let i = 0; i < next.length; i++) if (next[i]! >= 0 && next[i]! <= b) next[i] = buf.indexOf(needles[i]!, b + 1);
    }
  }

  /**
   * Several events: one pass over the text, reading the name after each line's `"event":"`
   * (one search per wanted event would cost a pass each). Every occurrence in the line
   * counts, in case a nested object spells the key first; the parsed record decides.
   */
  private scanEvents(buf: Buffer): void {
    const text = decode(buf, 0, buf.length);
    const byFirst = this.byFirst;
    const n = text.length;
    let a = 0;
    while (a < n) {
      let b = text.indexOf('\n', a);
      if (b < 0) b = n;
      search: for (let k = text.indexOf(EVENT_KEY, a); k >= 0 && k < b; k = text.indexOf(EVENT_KEY, k + 1)) {
        const from = k + EVENT_KEY.length;
        const cands = byFirst.get(text.charCodeAt(from));
        if (cands === undefined) continue;
        // No substring made: on most lines the first character already rules every name out.
        for (const c of cands) {
          if (from + c.length <= b && text.startsWith(c, from)) {
            this.line(text, a, b);
            break search;
          }
        }
      }
      a = b + 1;
    }
  }

  /** A line of a counted-only event, counted from its raw text; false when it is not one. */
  private tallied(text: string, a: number, b: number): boolean {
    const tally = this.tally!;
    // The logger writes `"event":"NAME"` right after level and time; look no further.
    const k = text.indexOf(EVENT_KEY, a);
    if (k < 0 || k > a + 96 || k >= b) return false;
    const from = k + EVENT_KEY.length;
    // Compared in place: most lines are not tallied, and a substring per line costs more.
    const cands = this.tallyByFirst.get(text.charCodeAt(from));
    if (cands === undefined) return false;
    let ev: string | undefined;
    for (const c of cands) {
      if (from + c.length <= b && text.startsWith(c, from)) {
        ev = c.slice(0, -1);
        break;
      }
    }
    if (ev === undefined || (this.f.events && !this.f.events.has(ev))) return false;
    const t = rawTime(text, a, b);
    if (t === null || text.charCodeAt(b - 1) !== 125) return false;
    const ms = this.times.parse(t);
    if (Number.isNaN(ms)) return false;
    if (ms >= this.f.since && ms < this.f.until) {
      this.stats.matched++;
      tally.onTally(ev, ms);
    }
    return true;
  }

  private line(text: string, a: number, b: number): void {
    if (b > a && text.charCodeAt(b - 1) === 13) b--;
    if (b === a) return;
    const f = this.f;
    if (f.timed) {
      const t = rawTime(text, a, b);
      if (t !== null && (t < f.sinceIso || t >= f.untilIso)) {
        // The raw text is enough to drop it, but a line that is not JSON must still count as bad.
        if (text.charCodeAt(a) !== 123 || text.charCodeAt(b - 1) !== 125) this.stats.bad++;
        return;
      }
    }
    if (this.tally && this.tallied(text, a, b)) return;
    const line = a === 0 && b === text.length ? text : text.slice(a, b);
    for (const p of f.raw) if (!p(line)) return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      this.stats.bad++;
      return;
    }
    if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) {
      this.stats.bad++;
      return;
    }
    const r = rec as Record<string, unknown>;
    const time = r.time;
    const ms = typeof time === 'string' ? this.times.parse(time) : NaN;
    if (Number.isNaN(ms)) {
      this.stats.bad++;
      return;
    }
    if (ms < f.since || ms >= f.until) return;
    const ev = r.event;
    if (f.events) {
      if (typeof ev !== 'string' || !f.events.has(ev)) return;
    } else if (typeof ev !== 'string' && !f.all) return;
    for (const p of f.preds) if (!p(r)) return;
    this.stats.matched++;
    this.onRecord(r as LogRecord, ms, line);
  }
}

function countLines(buf: Buffer): number {
  let n = 0;
  let p = 0;
  for (;;) {
    const q = buf.indexOf(10, p);
    if (q < 0) break;
    n++;
    p = q + 1;
  }
  // A last line without its newline (the end of the input) is a line too.
  return p < buf.length ? n + 1 : n;
}

/**
 * Gathers bytes into CHUNK-sized pieces that end at a line boundary (so no line and no UTF-8
 * sequence is ever split) and hands their text to the scanner; a line longer than MAX_LINE
 * is dropped as it streams past.
 */
class Chunker {
  private buf = Buffer.allocUnsafe(CHUNK);
  private len = 0;
  /** Inside a line that is too long: drop bytes up to its newline. */
  private skipping = false;

  constructor(private readonly scanner: Scanner) {}

  /** Room to read into: the tail of the buffer (grown when a line fills it). */
  space(): Buffer {
    if (this.len === this.buf.length) this.grow();
    return this.buf.subarray(this.len);
  }

  /** N bytes were read into space(). */
  filled(n: number): void {
    this.scanner.stats.bytes += n;
    this.len += n;
    if (this.len >= this.buf.length >> 1 || this.len === this.buf.length) this.flush(false);
  }

  /** Bytes from a stream. */
  push(piece: Buffer): void {
    let off = 0;
    while (off < piece.length) {
      const room = this.space();
      const n = Math.min(room.length, piece.length - off);
      piece.copy(room, 0, off, off + n);
      off += n;
      this.filled(n);
    }
  }

  /** Process every whole line held; at the end (FINAL), the unterminated last one too. */
  flush(final: boolean): void {
    let from = 0;
    if (this.skipping) {
      const nl = this.buf.indexOf(10, 0);
      if (nl < 0 || nl >= this.len) {
        this.len = 0;
        if (final) this.skipping = false;
        return;
      }
      this.skipping = false;
      from = nl + 1;
    }
    const end = final ? this.len : this.buf.lastIndexOf(10, this.len - 1) + 1;
    if (end > from) {
      this.scanner.scan(this.buf.subarray(from, end));
      from = end;
    } else if (from === 0 && this.len >= MAX_LINE) {
      // No newline in MAX_LINE bytes: give that line up.
      this.scanner.tooLong();
      this.skipping = true;
      this.len = 0;
      return;
    }
    if (from > 0) {
      this.buf.copy(this.buf, 0, from, this.len);
      this.len -= from;
    }
  }

  /** Only for a line longer than the buffer: a full buffer of MAX_LINE has been given up by flush(). */
  private grow(): void {
    const bigger = Buffer.allocUnsafe(Math.min(MAX_LINE, this.buf.length * 2));
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }
}

function readError(path: string, err: unknown): ConfigError {
  const e = err as NodeJS.ErrnoException;
  const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'is a directory' : e.message;
  return new ConfigError(path, 0, `cannot read the log: ${why}`, { cause: err });
}

/**
 * The lines of PATH that start at a byte offset in [start, end): a line that begins before
 * `start` belongs to the previous range, one that begins before `end` is read to its end.
 */
async function readPlainRange(range: LogRange, chunker: Chunker, signal: AbortSignal | undefined): Promise<void> {
  const { path, start, end } = range;
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw readError(path, err);
  }
  // From the byte before `start`: when it is a newline, the line at `start` is ours.
  let pos = start > 0 ? start - 1 : 0;
  let skipping = start > 0;
  try {
    while (!signal?.aborted) {
      // Read straight into the chunker's buffer: no copy of a 300 MB log.
      const room = chunker.space();
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(room, 0, room.length, pos));
      } catch (err) {
        throw readError(path, err);
      }
      if (n === 0) break;
      let at = pos;
      pos += n;
      if (skipping) {
        const nl = room.subarray(0, n).indexOf(10);
        if (nl < 0) continue;
        skipping = false;
        at += nl + 1;
        // The first line of ours would start at or past the end: the range holds no line.
        if (at >= end) break;
        room.copyWithin(0, nl + 1, n);
        n -= nl + 1;
      }
      // The newline that ends the line holding byte end-1 ends this range (it may be reads later).
      const from = Math.max(0, end - 1 - at);
      const nl = from < n ? room.subarray(0, n).indexOf(10, from) : -1;
      if (nl >= 0) {
        chunker.filled(nl + 1);
        break;
      }
      chunker.filled(n);
    }
    if (!signal?.aborted) chunker.flush(true);
  } finally {
    await fh.close();
  }
}

async function readStream(path: string, stream: NodeJS.ReadableStream, chunker: Chunker, signal: AbortSignal | undefined): Promise<void> {
  try {
    for await (const piece of stream as AsyncIterable<Buffer | string>) {
      if (signal?.aborted) return;
      chunker.push(typeof piece === 'string' ? Buffer.from(piece) : piece);
    }
  } catch (err) {
    throw readError(path, err);
  }
  chunker.flush(true);
}

/**
 * Streams the files (path '-' = the given stdin stream) in order, calling onRecord for every record that passes
 * the filter with the parsed record, its time in epoch ms and the raw line (for --json output without
 * re-serialising). Lines that are not JSON objects are counted in stats.bad and skipped (never thrown).
 * The file is never loaded whole. Non-decision lines (pino info/warn without `event`) have event undefined and
 * are skipped unless filter.events is undefined AND opts.all is set.
 */
export async function readLog(
  paths: readonly string[],
  filter: LogFilter,
  onRecord: (rec: LogRecord, timeMs: number, line: string) => void,
  opts: ReadOptions = {},
): Promise<ReadStats> {
  const scanner = new Scanner(compileFilter(filter, opts.all === true), onRecord, opts.tally);
  for (const path of paths) {
    if (opts.signal?.aborted) break;
    // One chunker per file: a file's unterminated last line never joins the next file's first.
    const chunker = new Chunker(scanner);
    if (path === '-') {
      if (!opts.stdin) throw new UsageError('"-" names standard input, but there is none');
      await readStream('(stdin)', opts.stdin, chunker, opts.signal);
    } else if (path.endsWith('.gz')) {
      const file = createReadStream(path);
      const gunzip = createGunzip();
      // An unreadable file fails the gunzip stream that readStream iterates.
      file.on('error', (err) => gunzip.destroy(err));
      try {
        await readStream(path, file.pipe(gunzip), chunker, opts.signal);
      } finally {
        file.destroy();
        gunzip.destroy();
      }
    } else await readPlainRange({ path, start: 0, end: Infinity }, chunker, opts.signal);
  }
  return scanner.stats;
}

/** Part of a plain (not compressed) log file, by byte offsets: see readLogRanges(). */
export interface LogRange {
  readonly path: string;
  readonly start: number;
  readonly end: number;
}

/**
 * readLog() over parts of plain files: the lines that start in each range, in order. Ranges
 * that meet at an offset split the file's lines between them exactly once, so a large log
 * can be read by several threads (cli/report.ts).
 */
export async function readLogRanges(
  ranges: readonly LogRange[],
  filter: LogFilter,
  onRecord: (rec: LogRecord, timeMs: number, line: string) => void,
  opts: Omit<ReadOptions, 'stdin'> = {},
): Promise<ReadStats> {
  const scanner = new Scanner(compileFilter(filter, opts.all === true), onRecord, opts.tally);
  for (const r of ranges) {
    if (opts.signal?.aborted) break;
    if (r.end > r.start) await readPlainRange(r, new Chunker(scanner), opts.signal);
  }
  return scanner.stats;
}

const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "2h", "30m", "90s", "1d", "1w", an ISO date/time ("2026-11-24", "2026-11-24T10:00"), "today", "yesterday" -> epoch ms; throws UsageError on anything else. */
export function parseTimeArg(text: string, now: number): number {
  const s = text.trim();
  const bad = (): UsageError =>
    new UsageError(`bad time "${text}": expected a duration ago (90s, 30m, 2h, 1d, 1w, 1h30m), a date or date/time (2026-11-24, 2026-11-24T10:00, 2026-11-24 10:00:00Z), "today", "yesterday" or "now"`);
  const lower = s.toLowerCase();
  if (lower === 'now') return now;
  if (lower === 'today' || lower === 'yesterday') {
    const d = new Date(now);
    d.setHours(0, 0, 0, 0);
    if (lower === 'yesterday') d.setDate(d.getDate() - 1);
    return d.getTime();
  }
  if (/^(?:\d+[smhdw])+$/i.test(s)) {
    let ms = 0;
    for (const m of s.matchAll(/(\d+)([smhdw])/gi)) ms += Number(m[1]) * UNIT_MS[m[2]!.toLowerCase()]!;
    if (!Number.isSafeInteger(ms)) throw bad();
    return now - ms;
  }
  // A date and time without a zone is local time, date alone included (unlike Date.parse).
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3})\d*)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?$/i.exec(s);
  if (!m) throw bad();
  const num = (i: number): number => (m[i] === undefined ? 0 : Number(m[i]));
  const [y, mo, d, h, mi, sec] = [num(1), num(2), num(3), num(4), num(5), num(6)];
  const frac = m[7] === undefined ? 0 : Number(m[7].padEnd(3, '0'));
  if (mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || sec > 59) throw bad();
  const zone = m[8];
  if (zone === undefined) return new Date(y, mo - 1, d, h, mi, sec, frac).getTime();
  let offset = 0;
  if (zone.toUpperCase() !== 'Z') {
    const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!;
    if (Number(z[2]) > 23 || Number(z[3]) > 59) throw bad();
    offset = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3])) * 60_000;
  }
  return Date.UTC(y, mo - 1, d, h, mi, sec, frac) - offset;
}

function daysIn(y: number, mo: number): number {
  return new Date(Date.UTC(y, mo, 0)).getUTCDate();
}

/** The log files for a config: maillog_file (resolved like the gateway does) and its rotated siblings
 *  (mail.log.1, mail.log.2 ... oldest first; .gz ones decompressed by streaming) that exist. */
export function logFilesFor(config: Config): string[] {
  const value = config.get('maillog_file').trim();
  if (value === '') return [];
  // The gateway opens maillog_file as written, relative to its working directory.
  const file = resolve(value);
  const dir = dirname(file);
  const base = basename(file);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  // logrotate's two namings: mail.log.N[.gz] (N = 1 is the newest) and mail.log-DATE[.gz].
  const numbered: Array<{ n: number; name: string }> = [];
  const dated: string[] = [];
  for (const name of names) {
    if (!name.startsWith(base) || name === base) continue;
    const rest = name.slice(base.length);
    const num = /^\.(\d+)(?:\.gz)?$/.exec(rest);
    if (num) numbered.push({ n: Number(num[1]), name });
    else if (/^-\d{8,10}(?:\.gz)?$/.test(rest)) dated.push(name);
  }
  numbered.sort((a, b) => b.n - a.n || (a.name.endsWith('.gz') ? -1 : 1));
  dated.sort();
  const out = [...dated, ...numbered.map((x) => x.name)].map((name) => join(dir, name));
  if (existsSync(file)) out.push(file);
  return out;
}
