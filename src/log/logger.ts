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
  if (opts.stdout) streams.push({ stream: pino.destination({ dest: 1, sync: false }) });
  if (opts.file) {
    mkdirSync(dirname(opts.file), { recursive: true });
    fileDest = pino.destination({ dest: opts.file, sync: false, append: true });
    streams.push({ stream: fileDest });
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
