/**
 * @module cli/report
 * SUMMARY: `greygate report [--since D] [--until D] [--top N] [--reject-detail N] [--utc]
 * [--jobs 1|2] [--file PATH]... [--html FILE] [--json]`: a pflogsumm-style summary of the decision log
 * (maillog_file and its rotated siblings, or the --file paths; '-' is stdin). Prints the
 * text report, or the Report object as JSON (--json); --html FILE writes a self-contained
 * page ('-' = stdout) and then prints nothing else unless --json is given. Exports run().
 * DIAGNOSTICS: bad arguments or a --file that does not exist: UsageError (one line, exit 2);
 * lines that are not JSON records are skipped and counted in one warning on stderr.
 * SEE ALSO: log/report.ts, log/read.ts, pflogsumm(1), design.md "CLI".
 */
import { existsSync, writeFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { logFilesFor, parseTimeArg, type LogFilter } from '../log/read.js';
import { readReport } from '../log/report-reader.js';
import { formatReportText } from '../log/report-text.js';
import { formatReportHtml } from '../log/report-html.js';
import type { CliIO } from './io.js';

const USAGE = 'usage: greygate report [--since D] [--until D] [--top N] [--reject-detail N] [--utc] [--jobs 1|2] [--file PATH]... [--html FILE] [--json]';

interface Options {
  since: string | null;
  until: string | null;
  top: number;
  rejectDetail: number;
  utc: boolean;
  files: string[];
  html: string | null;
  json: boolean;
  /** --jobs N: threads for a large log (1 or 2); undefined = 2 on two cores for a log over 32 MB. */
  jobs: number | undefined;
}

function count(name: string, v: string): number {
  if (!/^\d{1,6}$/.test(v)) throw new UsageError(`report: ${name} wants a whole number, not "${v}"`);
  return Number(v);
}

function parseArgs(args: readonly string[]): Options {
  const o: Options = { since: null, until: null, top: 10, rejectDetail: 25, utc: false, files: [], html: null, json: false, jobs: undefined };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-h' || a === '--help') throw new UsageError(USAGE);
    if (!a.startsWith('--')) throw new UsageError(`report: unexpected argument "${a}"; ${USAGE}`);
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = args[++i];
      if (v === undefined) throw new UsageError(`report: option ${name} requires an argument`);
      return v;
    };
    switch (name) {
      case '--since':
        o.since = value();
        break;
      case '--until':
        o.until = value();
        break;
      case '--top':
        o.top = count(name, value());
        break;
      case '--reject-detail':
        o.rejectDetail = count(name, value());
        break;
      case '--file':
        o.files.push(value());
        break;
      case '--html':
        o.html = value();
        break;
      case '--json':
        if (eq > 0) throw new UsageError('report: --json takes no value');
        o.json = true;
        break;
      case '--jobs': {
        const n = count(name, value());
        if (n < 1 || n > 2) throw new UsageError('report: --jobs is 1 or 2');
        o.jobs = n;
        break;
      }
      case '--utc':
        if (eq > 0) throw new UsageError('report: --utc takes no value');
        o.utc = true;
        break;
      default:
        throw new UsageError(`report: unknown option ${name}; ${USAGE}`);
    }
  }
  return o;
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const o = parseArgs(args);
  const now = Date.now();
  const filter: { -readonly [K in keyof LogFilter]: LogFilter[K] } = {};
  if (o.since !== null) filter.since = parseTimeArg(o.since, now);
  if (o.until !== null) filter.until = parseTimeArg(o.until, now);
  if (filter.since !== undefined && filter.until !== undefined && filter.since >= filter.until) {
    throw new UsageError(`report: --since ${o.since} is not before --until ${o.until}`);
  }
  if (o.files.filter((f) => f === '-').length > 1) throw new UsageError('report: stdin (--file -) can be read only once');
  for (const f of o.files) if (f !== '-' && !existsSync(f)) throw new UsageError(`report: ${f}: no such file`);

  let files = o.files;
  if (files.length === 0) {
    const config = loadConfig(io.configDir);
    files = logFilesFor(config);
    if (files.length === 0) io.err(`greygate report: warning: no log file ${config.get('maillog_file')} yet: the report is empty\n`);
  }

  const options = { top: o.top, rejectDetail: o.rejectDetail, utc: o.utc, ...(filter.since !== undefined ? { since: filter.since } : {}), ...(filter.until !== undefined ? { until: filter.until } : {}) };
  // A large log is read by two threads when there are two cores (--jobs 1 turns that off).
  const { builder, stats } = await readReport(files, filter, options, { ...(o.jobs !== undefined ? { jobs: o.jobs } : {}), stdin: io.stdin });
  if (stats.bad > 0) io.err(`greygate report: warning: ${stats.bad} line(s) that are not JSON records were skipped\n`);
  const report = builder.result();

  if (o.html !== null) {
    const page = formatReportHtml(report);
    if (o.html === '-') io.out(page);
    else {
      try {
        writeFileSync(o.html, page);
      } catch (e) {
        throw new UsageError(`report: cannot write ${o.html}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
  }
  if (o.json) io.out(JSON.stringify(report, null, 2) + '\n');
  else if (o.html === null) io.out(formatReportText(report));
  return 0;
}
