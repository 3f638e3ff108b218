/**
 * @module cli/log
 * SUMMARY: `greygate log [--since T] [--until T] [--event E[,E]] [--client IP|CIDR]
 * [--sender|--from ADDR] [--recipient|--to ADDR] [--rule RULE] [--json] [--file PATH]...`:
 * the decision log, filtered, one readable line per record (time, event, stage, queue ID,
 * client, envelope, reply or delivery status, rule) or, with --json, the original lines.
 * Reads maillog_file and its rotated siblings (log/read.ts logFilesFor), or the --file
 * paths ('-' = stdin). Exports run(args, io) and formatText(rec, time) (one text line).
 * DIAGNOSTICS: an unknown option, a bad time, event, address or CIDR is a UsageError (exit
 * 2); a missing log file is one line and exit 1; lines that are not log records are counted
 * and reported in one warning at the end. Output goes out in large writes and stops quietly
 * when its reader goes away (`greygate log | head`).
 * SEE ALSO: design.md "CLI" and "Log", log/read.ts, journalctl(1), pflogsumm(1).
 */
import { ConfigError, UsageError } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { LOG_EVENTS } from '../log/events.js';
import { logFilesFor, parseTimeArg, readLog, type LogFilter, type LogRecord } from '../log/read.js';
import type { CliIO } from './io.js';

const USAGE =
  'usage: greygate log [--since DURATION|TIME] [--until DURATION|TIME] [--event EVENT[,EVENT]] [--client IP|CIDR] ' +
  '[--sender ADDR|@DOMAIN] [--recipient ADDR|@DOMAIN] [--rule RULE] [--json] [--file PATH]... [-c CONFIG_DIR]';

const KNOWN_EVENTS: readonly string[] = LOG_EVENTS;

/** Text is handed to io.out in pieces of about this many characters, not line by line. */
const OUT_CHUNK = 256 * 1024;

interface Options {
  readonly filter: LogFilter;
  readonly json: boolean;
  readonly files: string[];
}

const VALUE_OPTIONS = new Set(['--since', '--until', '--event', '--client', '--sender', '--from', '--recipient', '--to', '--rule', '--file']);

function parseArgs(args: readonly string[], now: number): Options {
  const filter: LogFilter = {};
  const events = new Set<string>();
  const files: string[] = [];
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--json') {
      json = true;
      continue;
    }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (!VALUE_OPTIONS.has(name)) {
      if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option: ${arg}; ${USAGE}`);
      throw new UsageError(`unexpected argument "${arg}" (log files are named with --file PATH); ${USAGE}`);
    }
    let value: string | undefined;
    if (eq > 0) value = arg.slice(eq + 1);
    else {
      value = args[++i];
      if (value === undefined) throw new UsageError(`option ${name} requires a value; ${USAGE}`);
    }
    switch (name) {
      case '--since':
        filter.since = parseTimeArg(value, now);
        break;
      case '--until':
        filter.until = parseTimeArg(value, now);
        break;
      case '--event':
        for (const e of value.split(',').map((x) => x.trim())) {
          if (e === '') continue;
          if (!KNOWN_EVENTS.includes(e)) throw new UsageError(`unknown event "${e}" (known: ${KNOWN_EVENTS.join(', ')})`);
          events.add(e);
        }
        if (events.size === 0) throw new UsageError(`option --event requires an event name; ${USAGE}`);
        break;
      case '--client':
        filter.client = value;
        break;
      case '--sender':
      case '--from':
        filter.sender = value;
        break;
      case '--recipient':
      case '--to':
        filter.recipient = value;
        break;
      case '--rule':
        filter.rule = value;
        break;
      case '--file':
        if (value === '') throw new UsageError(`option --file requires a path; ${USAGE}`);
        files.push(value);
        break;
    }
  }
  if (events.size > 0) filter.events = events;
  if (filter.since !== undefined && filter.until !== undefined && filter.since >= filter.until) {
    throw new UsageError('--since must be earlier than --until');
  }
  return { filter, json, files };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** syslog's "Nov 25 02:58:14" in local time, as Postfix's maillog reads; made once per second. */
class Clock {
  private sec = NaN;
  private text = '';
  format(ms: number): string {
    const sec = Math.floor(ms / 1000);
    if (sec !== this.sec) {
      const d = new Date(ms);
      const two = (n: number): string => (n < 10 ? `0${n}` : String(n));
      this.sec = sec;
      this.text = `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2)} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    }
    return this.text;
  }
}

function str(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function recipients(to: unknown): string | undefined {
  if (typeof to === 'string') return `<${to}>`;
  if (Array.isArray(to) && to.length > 0) return to.map((x) => `<${str(x) ?? ''}>`).join(',');
  return undefined;
}

/** What the record says happened, after the client and envelope. */
function detail(r: LogRecord): string {
  const ev = r.event;
  if (ev === 'connect' || ev === 'disconnect') return '';
  if (ev === 'greylist' && r.action !== undefined) {
    let s = `${str(r.action)}: ${str(r.reason) ?? ''}`;
    if (r.delay !== undefined) s += `, delayed ${str(r.delay)}s`;
    if (r.remaining !== undefined) s += `, retry in ${str(r.remaining)}s`;
    return s;
  }
  if (r.dsn !== undefined || r.relay !== undefined) {
    // A delivery attempt: Postfix's "relay=..., delay=..., dsn=..., status=... (reply)".
    const parts: string[] = [];
    for (const k of ['relay', 'delay', 'dsn', 'status'] as const) {
      const v = str(r[k]);
      if (v !== undefined) parts.push(`${k}=${v}`);
    }
    const reply = str(r.reply);
    return reply === undefined ? parts.join(', ') : `${parts.join(', ')} (${reply})`;
  }
  return str(r.reply) ?? str(r.msg) ?? '';
}

// Log fields come from SMTP clients: a HELO or address could carry terminal escapes.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_ALL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * One readable line (no newline) for a record whose time reads TIME:
 * `Nov 25 02:58:14 reject     rcpt        NOQUEUE     name[ip] <from> -> <to>: 554 5.7.1 ... [rule FILE:LINE]`.
 */
export function formatText(r: LogRecord, time: string): string {
  const event = str(r.event) ?? '-';
  const stage = str(r.stage) ?? '-';
  const id = str(r.queue_id) ?? (r.session !== undefined ? 'NOQUEUE' : '-');
  let line = `${time} ${event.padEnd(10)} ${stage.padEnd(11)} ${id.padEnd(11)}`;
  let who = '';
  const ip = str(r.client_ip);
  if (ip !== undefined) who = `${str(r.client_name) ?? 'unknown'}[${ip}]`;
  const from = str(r.from);
  const to = recipients(r.to);
  if (from !== undefined || to !== undefined) {
    const env = from === undefined ? `-> ${to}` : to === undefined ? `<${from}>` : `<${from}> -> ${to}`;
    who = who === '' ? env : `${who} ${env}`;
  }
  const what = detail(r);
  if (who !== '') line += ` ${who}`;
  if (what !== '') line += who === '' ? ` ${what}` : `: ${what}`;
  const rule = str(r.rule);
  if (rule !== undefined) line += ` [rule ${rule}]`;
  if (CONTROL.test(line)) line = line.replace(CONTROL_ALL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return line;
}

/** The files to read: --file paths, or maillog_file and its rotated siblings. */
function inputFiles(opts: Options, io: CliIO): string[] {
  if (opts.files.length > 0) return opts.files;
  const config = loadConfig(io.configDir);
  const files = logFilesFor(config);
  if (files.length === 0) {
    const where = config.get('maillog_file').trim();
    if (where === '') throw new ConfigError(config.file, config.lineOf('maillog_file'), 'maillog_file is empty (the log goes to stdout only): name a log with --file PATH');
    throw new ConfigError(where, 0, 'no such log file (maillog_file); name another with --file PATH');
  }
  return files;
}

export async function run(args: string[], io: CliIO): Promise<number> {
  if (args.includes('-h') || args.includes('--help')) {
    io.out(`${USAGE}\n`);
    return 0;
  }
  const opts = parseArgs(args, Date.now());
  // Compiling the filter over no files refuses a bad address or CIDR before any file is opened.
  await readLog([], opts.filter, () => undefined);
  const files = inputFiles(opts, io);

  // The reader of our output may go away (`| head`): stop reading, say nothing, exit 0.
  const stop = new AbortController();
  const failed: { error?: Error } = {};
  const onStdoutError = (err: NodeJS.ErrnoException): void => {
    if (err.code !== 'EPIPE') failed.error ??= err;
    stop.abort();
  };
  process.stdout.on('error', onStdoutError);

  let pending: string[] = [];
  let size = 0;
  const flush = (): void => {
    if (size === 0) return;
    const text = pending.join('');
    pending = [];
    size = 0;
    if (!stop.signal.aborted) io.out(text);
  };
  const put = (line: string): void => {
    pending.push(line, '\n');
    size += line.length + 1;
    if (size >= OUT_CHUNK) flush();
  };
  const clock = new Clock();
  const onRecord = opts.json
    ? (_r: LogRecord, _ms: number, line: string): void => put(line)
    : (r: LogRecord, ms: number): void => put(formatText(r, clock.format(ms)));

  let stats;
  try {
    stats = await readLog(files, opts.filter, onRecord, { stdin: io.stdin, signal: stop.signal });
    flush();
    // A failed write reports its error on a later tick: listen until then.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.stdout.off('error', onStdoutError);
  }
  if (failed.error) {
    io.err(`greygate log: cannot write the output: ${failed.error.message}\n`);
    return 1;
  }
  if (stats.bad > 0 && !stop.signal.aborted) {
    io.err(`greygate log: warning: skipped ${stats.bad === 1 ? '1 line that is not a log record' : `${stats.bad} lines that are not log records`}\n`);
  }
  return 0;
}
