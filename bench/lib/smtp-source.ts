/**
 * @module bench/lib/smtp-source
 * SUMMARY: the load driver: run Postfix's smtp-source once and time it wall-clock.
 * Exports runSmtpSource(spec) -> LoadResult {messages, sessions, seconds, rate}.
 * One connection per message (no -d) and one recipient each, like inbound MX traffic; the
 * body is either `-l BYTES` of generated text or a real message file (`-F`, which
 * smtp-source sends line by line with CRLF appended and dot-stuffing, so an LF file is right).
 * DIAGNOSTICS: smtp-source stops at the first reply that is not 2xx (354 for DATA) and says
 * so on stderr; any exit status but 0, any stderr output, or the time limit is a BenchError
 * carrying its first stderr line.
 * SEE ALSO: smtp-source(1), Postfix src/smtpstone/smtp-source.c.
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { BenchError } from './bench-error.js';
import { findExecutable } from './executables.js';
import { LOOPBACK } from './net.js';

export const SENDER = 'sender@example.org';
export const RECIPIENT = 'user@example.com';

export type MessageBody = { kind: 'generated'; bytes: number } | { kind: 'file'; path: string };

export interface LoadSpec {
  readonly port: number;
  readonly messages: number;
  /** Parallel SMTP sessions (smtp-source -s): the concurrency. */
  readonly sessions: number;
  readonly body: MessageBody;
  /** What is under test, for error messages. */
  readonly label: string;
}

export interface LoadResult {
  readonly messages: number;
  readonly sessions: number;
  readonly seconds: number;
  /** Messages per second accepted (every one got 250 to its DATA). */
  readonly rate: number;
}

export function smtpSourceArgs(spec: LoadSpec): string[] {
  const body = spec.body.kind === 'generated' ? ['-l', String(spec.body.bytes)] : ['-F', spec.body.path];
  return [
    ...body,
    '-m', String(spec.messages),
    '-s', String(spec.sessions),
    '-f', SENDER,
    '-t', RECIPIENT,
    `${LOOPBACK}:${spec.port}`,
  ];
}

/** The command line of a run, with placeholders, for the printed results. */
export function describeCommand(body: MessageBody): string {
  const b = body.kind === 'generated' ? `-l ${body.bytes}` : `-F ${body.path}`;
  return `smtp-source ${b} -m N -s C -f ${SENDER} -t ${RECIPIENT} ${LOOPBACK}:PORT`;
}

export async function runSmtpSource(spec: LoadSpec): Promise<LoadResult> {
  const bin = findExecutable('smtp-source');
  // Generous: a server slower than 25 msg/s is broken, and smtp-source's own timeout is 300 s.
  const limitMs = 60_000 + spec.messages * 40;
  const started = performance.now();
  const child = spawn(bin, smtpSourceArgs(spec), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, limitMs);
  const status = await new Promise<number | string>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  }).finally(() => clearTimeout(timer));
  const seconds = (performance.now() - started) / 1000;
  const what = `smtp-source -s ${spec.sessions} -m ${spec.messages} against ${spec.label}`;
  if (timedOut) throw new BenchError(`${what}: no end after ${limitMs / 1000} s (server stalled?)`);
  const firstLine = stderr.trim().split('\n')[0] ?? '';
  if (status !== 0) throw new BenchError(`${what} failed (status ${status}): ${firstLine || 'no message'}`);
  // A warning such as "connect: Connection refused" followed by a successful retry still
  // means the server turned a client away: that run is not a clean measurement.
  if (firstLine !== '') throw new BenchError(`${what} reported: ${firstLine}`);
  return { messages: spec.messages, sessions: spec.sessions, seconds, rate: spec.messages / seconds };
}
