/**
 * @module log/report-reader
 * SUMMARY: readReport() reads the log files into a ReportBuilder: records parsed, connect/
 * disconnect/info lines only counted (ReadOptions.tally). A large log of plain files is read
 * on two cores: splitLog() cuts it in two at about half its bytes, just before a 'connect'
 * line (so no greylist record is parted from the 450 logged right after it), the first part
 * is read here and the second in a worker thread (this module is also the worker's entry
 * point), each with its own builder, and the second builder's state is merged into the first.
 * DIAGNOSTICS: a log that cannot be split (compressed or stdin input, no 'connect' line near
 * the middle) is read in one thread; read errors are thrown as by readLog().
 * SEE ALSO: log/report.ts (state, merge), log/read.ts (readLog, readLogRanges), cli/report.ts.
 */
import { open, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ConfigError } from '../errors.js';
import { readLog, readLogRanges, type LogFilter, type LogRange, type LogRecord, type ReadStats } from './read.js';
import { ReportBuilder, type BuilderState, type ReportOptions } from './report.js';

/** Below this many bytes a second thread costs more than it saves. */
export const PARALLEL_MIN_BYTES = 32 * 1024 * 1024;
/** How far past the middle to look for a 'connect' line. */
const SPLIT_WINDOW = 4 * 1024 * 1024;
const CONNECT = Buffer.from('"event":"connect"');

interface Job {
  readonly ranges: readonly LogRange[];
  readonly filter: LogFilter;
  readonly options: ReportOptions;
}

type JobResult = { readonly state: BuilderState; readonly stats: ReadStats } | { readonly failed: { readonly file: string; readonly detail: string } };

/** The offset of the first line at or after AT in PATH that is a 'connect' record, or null. */
async function connectLineAfter(path: string, at: number): Promise<number | null> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(SPLIT_WINDOW);
    const from = Math.max(0, at - 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, from);
    const data = buf.subarray(0, bytesRead);
    // The first line starting at or after AT: past the newline before it.
    let p = at === 0 ? 0 : data.indexOf(10) + 1;
    if (at > 0 && p === 0) return null;
    while (p < data.length) {
      const nl = data.indexOf(10, p);
      if (nl < 0) return null;
      // pino writes the event third, within the first hundred bytes of the line.
      const k = data.indexOf(CONNECT, p);
      if (k >= 0 && k < nl && k - p < 128) return from + p;
      p = nl + 1;
    }
    return null;
  } finally {
    await fh.close();
  }
}

/** splitLog - two byte-range lists for FILES (plain files, in order), or null when not worth it or not possible */
export async function splitLog(files: readonly string[], minBytes = PARALLEL_MIN_BYTES): Promise<[LogRange[], LogRange[]] | null> {
  if (files.length === 0 || files.some((f) => f === '-' || f.endsWith('.gz'))) return null;
  try {
    return await splitPlain(files, minBytes);
  } catch {
    // A file that went away or cannot be read: the one-thread reader says which, properly.
    return null;
  }
}

async function splitPlain(files: readonly string[], minBytes: number): Promise<[LogRange[], LogRange[]] | null> {
  const sizes = await Promise.all(files.map(async (f) => (await stat(f)).size));
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total < minBytes || total === 0) return null;
  let mid = Math.floor(total / 2);
  let i = 0;
  while (i < files.length - 1 && mid >= sizes[i]!) mid -= sizes[i++]!;
  const cut = await connectLineAfter(files[i]!, mid);
  if (cut === null) return null;
  const first: LogRange[] = [];
  const second: LogRange[] = [];
  files.forEach((path, j) => {
    const size = sizes[j]!;
    if (j < i) first.push({ path, start: 0, end: size });
    else if (j > i) second.push({ path, start: 0, end: size });
    else {
      first.push({ path, start: 0, end: cut });
      second.push({ path, start: cut, end: size });
    }
  });
  return [first, second];
}

/** The reader's callbacks that fill BUILDER. */
function feeding(builder: ReportBuilder) {
  return {
    onRecord: (rec: LogRecord, timeMs: number): void => builder.add(rec, timeMs),
    tally: { events: ReportBuilder.TALLIED, onTally: (ev: string, timeMs: number): void => builder.tally(ev, timeMs) },
  };
}

function run(job: Job): Promise<{ builder: ReportBuilder; stats: ReadStats }> {
  const builder = new ReportBuilder(job.options);
  const f = feeding(builder);
  return readLogRanges(job.ranges, job.filter, f.onRecord, { tally: f.tally }).then((stats) => ({ builder, stats }));
}

/**
 * readReport - FILES ('-' = STDIN) read into a builder. JOBS: 2 = in two threads when the
 * log can be split, 1 = in one; by default two on a machine with two cores and a log of
 * PARALLEL_MIN_BYTES or more (an explicit 2 splits a log of any size).
 */
export async function readReport(
  files: readonly string[],
  filter: LogFilter,
  options: ReportOptions,
  opts: { readonly jobs?: number; readonly stdin?: NodeJS.ReadableStream } = {},
): Promise<{ builder: ReportBuilder; stats: ReadStats }> {
  const jobs = opts.jobs ?? (availableParallelism() > 1 ? 2 : 1);
  const parts = jobs > 1 ? await splitLog(files, opts.jobs === undefined ? PARALLEL_MIN_BYTES : 0) : null;
  if (parts) return inTwoThreads(parts, filter, options);
  const builder = new ReportBuilder(options);
  const f = feeding(builder);
  const stats = await readLog(files, filter, f.onRecord, { ...(opts.stdin ? { stdin: opts.stdin } : {}), tally: f.tally });
  return { builder, stats };
}

/** inTwoThreads - the builder of PARTS[0] with PARTS[1] (read by a worker thread) merged in */
async function inTwoThreads(parts: [LogRange[], LogRange[]], filter: LogFilter, options: ReportOptions): Promise<{ builder: ReportBuilder; stats: ReadStats }> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { ranges: parts[1], filter, options } satisfies Job });
  const later = new Promise<JobResult>((resolve, reject) => {
    worker.once('message', (r: JobResult) => resolve(r));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`report worker exited with status ${code}`)));
  });
  // Settled (and any rejection observed) even if the first part fails.
  later.catch(() => undefined);
  try {
    const mine = await run({ ranges: parts[0], filter, options });
    const theirs = await later;
    if ('failed' in theirs) throw new ConfigError(theirs.failed.file, 0, theirs.failed.detail);
    mine.builder.merge(theirs.state);
    const s = mine.stats;
    return { builder: mine.builder, stats: { lines: s.lines + theirs.stats.lines, matched: s.matched + theirs.stats.matched, bad: s.bad + theirs.stats.bad, bytes: s.bytes + theirs.stats.bytes } };
  } finally {
    await worker.terminate();
  }
}

if (!isMainThread && parentPort && (workerData as Partial<Job> | null)?.ranges) {
  const job = workerData as Job;
  const port = parentPort;
  void run(job).then(
    ({ builder, stats }) => port.postMessage({ state: builder.state(), stats } satisfies JobResult),
    (e: unknown) => {
      // A thrown error loses its class on the way: the parts that make a one-line message go.
      const failed = e instanceof ConfigError ? { file: e.file, detail: e.detail } : { file: job.ranges[0]?.path ?? '(log)', detail: e instanceof Error ? e.message : String(e) };
      port.postMessage({ failed } satisfies JobResult);
    },
  );
}
