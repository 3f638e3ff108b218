/**
 * @module cli/io
 * SUMMARY: what every CLI command receives: its arguments (with -c already removed), the
 * config directory, and the standard streams. Commands return their exit status and never
 * call process.exit themselves, so tests can run them in-process.
 * DIAGNOSTICS: a command throws UsageError/ConfigError for user mistakes; cli/main.ts prints
 * the message as one line on stderr and exits 1 (2 for usage).
 */
import type { Readable } from 'node:stream';

export interface CliIO {
  readonly configDir: string;
  readonly stdin: Readable;
  out(text: string): void;
  err(text: string): void;
}

export type CliCommand = (args: string[], io: CliIO) => Promise<number>;
