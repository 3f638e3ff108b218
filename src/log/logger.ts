/**
 * @module log/logger
 * SUMMARY: the decision logger: pino JSON lines on stdout and appended to maillog_file.
 * createMailLogger() returns a MailLogger whose event() writes one record; flush() and
 * close() are for shutdown and tests. ISO timestamps, no pid/hostname noise.
 * DIAGNOSTICS: a maillog_file that cannot be created throws at startup (fail loud).
 * SEE ALSO: log/events.ts, pino multistream.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import type { EventRecord } from './events.js';

const FLUSH_MS = 100;

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
}

export function createMailLogger(opts: LoggerOptions): MailLogger {
  const streams: pino.StreamEntry[] = [];
  let fileDest: pino.DestinationStream & { flushSync?: () => void; end?: () => void } | null = null;
  // Lines are gathered into writes of up to 4 KB (one syscall per line would cost more than
  // the decision itself at thousands of decisions per second) and flushed at least every
  // FLUSH_MS, so a log reader is never far behind and a crash loses at most that much.
  const dests: Array<pino.DestinationStream & { flush?: () => void }> = [];
  if (opts.stdout) dests.push(pino.destination({ dest: 1, sync: false, minLength: 4096 }));
  if (opts.file) {
    mkdirSync(dirname(opts.file), { recursive: true });
    fileDest = pino.destination({ dest: opts.file, sync: false, append: true, minLength: 4096 });
    dests.push(fileDest);
  }
  for (const d of dests) streams.push({ stream: d });
  if (dests.length) {
    const timer = setInterval(() => {
      for (const d of dests) {
        try {
          d.flush?.();
        } catch {
          // A flush already in progress: the next tick writes the rest.
        }
      }
    }, FLUSH_MS);
    timer.unref();
  }
  const logger: Logger = pino(
    { base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' },
    streams.length ? pino.multistream(streams) : pino.destination('/dev/null'),
  );
  return {
    event: (r) => logger.info(r),
    info: (msg, f) => logger.info({ event: 'info', ...f }, msg),
    warn: (msg, f) => logger.warn({ event: 'warn', ...f }, msg),
    error: (msg, f) => logger.error({ event: 'error', ...f }, msg),
    flush: () =>
      new Promise<void>((res) => {
        logger.flush(() => res());
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
