/**
 * @module errors
 * SUMMARY: every error class and stable GG_* code greygate throws across a module boundary.
 * Expected outcomes (a miss, a reject, a deferral) are return values, never these; these are
 * for failed I/O, broken files and bugs. A user's mistake is reported by `message` alone, as
 * one line, never with a stack.
 * SEE ALSO: fastify lib/errors.js, undici lib/core/errors.js.
 */

export type ErrorCode =
  | 'GG_CONFIG'
  | 'GG_USAGE'
  | 'GG_TABLE_RETRY'
  | 'GG_TABLE_CONFIG'
  | 'GG_QUEUE_IO'
  | 'GG_PROTOCOL'
  | 'GG_STORE'
  | 'GG_USER';

export class GreygateError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A problem found while loading a file: FILE:LINE: message. */
export interface Problem {
  readonly file: string;
  readonly line: number;
  readonly severity: 'error' | 'warning';
  readonly message: string;
}

export function formatProblem(p: Problem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}` : p.file;
  return p.severity === 'warning' ? `${where}: warning: ${p.message}` : `${where}: ${p.message}`;
}

export class ConfigError extends GreygateError {
  readonly file: string;
  readonly line: number;
  /** The message without its FILE:LINE prefix. */
  readonly detail: string;
  constructor(file: string, line: number, message: string, options?: { cause?: unknown }) {
    super('GG_CONFIG', line > 0 ? `${file}:${line}: ${message}` : `${file}: ${message}`, options);
    this.file = file;
    this.line = line;
    this.detail = message;
  }
}

/** Bad command-line arguments. */
export class UsageError extends GreygateError {
  constructor(message: string) {
    super('GG_USAGE', message);
  }
}

/**
 * A table lookup that failed (as opposed to missed). 'retry' maps to 451 4.3.0 Temporary
 * lookup failure; 'config' to 451 4.3.5 Server configuration error (smtpd_check.c).
 */
export class TableError extends GreygateError {
  readonly kind: 'retry' | 'config';
  readonly table: string;
  constructor(kind: 'retry' | 'config', table: string, message: string, options?: { cause?: unknown }) {
    super(kind === 'retry' ? 'GG_TABLE_RETRY' : 'GG_TABLE_CONFIG', `${table}: ${message}`, options);
    this.kind = kind;
    this.table = table;
  }
}

export class QueueIOError extends GreygateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GG_QUEUE_IO', message, options);
  }
}

/** A failed store (greylist database, user database) operation. */
export class StoreError extends GreygateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GG_STORE', message, options);
  }
}

export class UserError extends GreygateError {
  constructor(message: string) {
    super('GG_USER', message);
  }
}

/** An SMTP-level failure that carries the reply to send. */
export class ProtocolError extends GreygateError {
  readonly reply: { code: number; status: string; text: string };
  constructor(reply: { code: number; status: string; text: string }) {
    super('GG_PROTOCOL', `${reply.code} ${reply.status} ${reply.text}`);
    this.reply = reply;
  }
}
