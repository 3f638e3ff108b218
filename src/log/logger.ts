/**
 * @module log/logger
 * SUMMARY: the decision logger: pino-format JSON lines on stdout and appended to
 * maillog_file. createMailLogger() returns a MailLogger whose event() writes one record;
 * flush() is for shutdown and tests (lines still pending at process exit are written
 * synchronously). ISO timestamps, no pid/hostname noise. event() serialises flat records
 * itself (the policy service writes one per lookup, tens of thousands a second) into the
 * line pino would write; info/warn/error, and records with nested objects, go through pino.
 * Both feed one LineSink, so lines keep their order. The onEvent/onMessage hooks see each
 * record or message once, as it is written (metrics count there).
 * DIAGNOSTICS: a maillog_file that cannot be created throws at startup (fail loud); a
 * failed write is reported once on stderr and the lines of that write are lost; EPIPE
 * stops writing to that descriptor, as pino's destinations do.
 * SEE ALSO: log/events.ts, pino (its asJson() line format).
 */
import { mkdirSync, openSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import type { EventRecord } from './events.js';

const FLUSH_MS = 100;
/**
 * Lines are gathered into writes of up to this many bytes, handed to the kernel at least
 * every FLUSH_MS: one write per line would cost more than the decision itself, and a log
 * reader is never more than FLUSH_MS behind (a crash loses at most that much).
 */
const CHUNK = 64 * 1024;

export interface MailLogger {
  event(record: EventRecord): void;
  /** Free-form operational messages (startup, reload, I/O trouble). */
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  flush(): Promise<void>;
}

export interface LoggerOptions {
  /** Path of maillog_file; empty = stdout only. */
  readonly file: string;
  /** Also write to stdout (the daemon does; CLI commands that log do not). */
  readonly stdout: boolean;
  /** Sees every decision record as it is written, once (the metrics counters). */
  readonly onEvent?: (record: EventRecord) => void;
  /** Sees the level of every info/warn/error message. */
  readonly onMessage?: (level: 'info' | 'warn' | 'error') => void;
}

/**
 * Buffered appends of whole lines to some file descriptors, one batch in flight at a time
 * (so lines stay in order), asynchronous so that a slow disk or reader never stalls the
 * event loop. The pino stream interface: write(line), flush(cb).
 */
class LineSink {
  // Lines are encoded into CHUNK-sized buffers as they come: a line string then dies young
  // (the garbage collector never copies it), and a full chunk is written as it is.
  private cur: Buffer = Buffer.allocUnsafe(CHUNK);
  private used = 0;
  /** Full chunks (and, on a flush, the partial one), oldest first: each a view of its buffer. */
  private sealed: Buffer[] = [];
  /**
   * Written chunks' buffers, for reuse: a new 64 KB buffer every hundred lines is memory
   * outside the heap that V8 counts, and answers with full collections.
   */
  private spare: Buffer[] = [];
  private writing = false;
  private readonly fds: number[];
  private waiters: Array<() => void> = [];
  private reported = false;

  constructor(fds: number[]) {
    this.fds = fds;
  }

  write(line: string): boolean {
    // No destination (or every one gone with EPIPE): nothing is kept.
    if (this.fds.length === 0) return true;
    const n = Buffer.byteLength(line, 'utf8');
    if (this.used + n > this.cur.length) {
      this.seal();
      if (n > this.cur.length) this.cur = Buffer.allocUnsafe(n);
    }
    // All ASCII (as good as always): a copy; otherwise UTF-8 encoding.
    this.used += this.cur.write(line, this.used, n === line.length ? 'latin1' : 'utf8');
    if (!this.writing && this.sealed.length > 0) this.drain();
    return true;
  }

  /** Hand everything pending to the kernel; CB once it has all been written. */
  flush(cb: () => void = () => undefined): void {
    this.seal();
    if (!this.writing && this.sealed.length === 0) {
      cb();
      return;
    }
    this.waiters.push(cb);
    if (!this.writing) this.drain();
  }

  /** The periodic flush: only if something is waiting. */
  tick(): void {
    if (this.writing) return;
    this.seal();
    if (this.sealed.length > 0) this.drain();
  }

  /** Close the current chunk (if it holds anything) and start a new one. */
  private seal(): void {
    if (this.used === 0) return;
    this.sealed.push(this.cur.subarray(0, this.used));
    this.cur = this.spare.pop() ?? Buffer.allocUnsafe(CHUNK);
    this.used = 0;
  }

  /** At process exit: what is pending is written synchronously (a batch in flight finishes on its own). */
  flushSync(): void {
    this.seal();
    // The chunk in flight, if any, is the first one: it is being written already.
    const chunks = this.writing ? this.sealed.slice(1) : this.sealed;
    this.sealed = [];
    for (const buf of chunks) {
      for (const fd of this.fds) {
        try {
          for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
        } catch {
          // Exiting: nothing better to do with a failed write.
        }
      }
    }
  }

  /** Write the oldest chunk to every descriptor, then the next, until none is left. */
  private drain(): void {
    const buf = this.sealed[0];
    if (buf === undefined || this.fds.length === 0) {
      this.sealed = [];
      const w = this.waiters;
      this.waiters = [];
      for (const cb of w) cb();
      return;
    }
    this.writing = true;
    let left = this.fds.length;
    const done = (): void => {
      if (--left > 0) return;
      this.writing = false;
      this.sealed.shift();
      // The chunk's whole buffer, again CHUNK bytes long (a chunk is a view of its start).
      if (this.spare.length < 4 && buf.buffer.byteLength >= buf.byteOffset + CHUNK) this.spare.push(Buffer.from(buf.buffer, buf.byteOffset, CHUNK));
      this.drain();
    };
    for (const fd of [...this.fds]) this.writeAll(fd, buf, 0, done);
  }

  private writeAll(fd: number, buf: Buffer, off: number, done: () => void): void {
    write(fd, buf, off, buf.length - off, null, (err, n) => {
      if (err) {
        if (err.code === 'EAGAIN') {
          // A non-blocking pipe that is full: try again shortly.
          setTimeout(() => this.writeAll(fd, buf, off, done), 10).unref();
          return;
        }
        if (err.code === 'EPIPE') this.fds.splice(this.fds.indexOf(fd), 1);
        else if (!this.reported) {
          this.reported = true;
          process.stderr.write(`greygate: cannot write the mail log (fd ${fd}): ${err.message}\n`);
        }
        done();
        return;
      }
      if (off + n < buf.length) this.writeAll(fd, buf, off + n, done);
      else done();
    });
  }
}

/** Every sink made, for the synchronous flush at process exit (pino's destinations do the same). */
const LIVE_SINKS = new Set<LineSink>();
let exitHooked = false;

function register(sink: LineSink): void {
  LIVE_SINKS.add(sink);
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', () => {
    for (const s of LIVE_SINKS) s.flushSync();
  });
}

/**
 * The JSON line pino writes for logger.info(R): level 30, time, then R's own fields in
 * order (undefined, functions and symbols left out, non-finite numbers as null), escaped
 * as JSON.stringify does (pino leaves a lone UTF-16 surrogate unescaped; no decoded input
 * has one). One native JSON.stringify: no string pieces for the collector. null when R has
 * a field that pino would serialise in its own way (objects, BigInt, "err"): the caller
 * lets pino do it.
 */
function eventLine(r: EventRecord, time: string): string | null {
  for (const k in r) {
    const v = r[k];
    const t = typeof v;
    if (t === 'bigint') return null;
    if (t === 'object' && v !== null) {
      if (k === 'err' || !Array.isArray(v)) return null;
      for (const x of v as unknown[]) if (typeof x !== 'string') return null;
    }
  }
  const body = JSON.stringify(r);
  return body === '{}' ? `{"level":30,"time":"${time}"}\n` : `{"level":30,"time":"${time}",${body.slice(1)}\n`;
}

export function createMailLogger(opts: LoggerOptions): MailLogger {
  const fds: number[] = [];
  if (opts.stdout) fds.push(1);
  if (opts.file) {
    mkdirSync(dirname(opts.file), { recursive: true });
    fds.push(openSync(opts.file, 'a'));
  }
  const sink = new LineSink(fds);
  if (fds.length) {
    register(sink);
    const timer = setInterval(() => sink.tick(), FLUSH_MS);
    timer.unref();
  }
  const logger: Logger = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, sink);
  const { onEvent, onMessage } = opts;
  // One ISO string per millisecond, not one per line.
  let lastMs = 0;
  let lastIso = '';
  return {
    event: (r) => {
      onEvent?.(r);
      if (fds.length === 0) return;
      const now = Date.now();
      if (now !== lastMs) {
        lastMs = now;
        lastIso = new Date(now).toISOString();
      }
      const line = eventLine(r, lastIso);
      if (line === null) logger.info(r);
      else sink.write(line);
    },
    info: (msg, f) => {
      onMessage?.('info');
      logger.info({ event: 'info', ...f }, msg);
    },
    warn: (msg, f) => {
      onMessage?.('warn');
      logger.warn({ event: 'warn', ...f }, msg);
    },
    error: (msg, f) => {
      onMessage?.('error');
      logger.error({ event: 'error', ...f }, msg);
    },
    flush: () =>
      new Promise<void>((res) => {
        sink.flush(() => res());
      }),
  };
}

/** A logger that drops everything (offline tools). */
export const NULL_LOGGER: MailLogger = {
  event: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  flush: async () => undefined,
};
