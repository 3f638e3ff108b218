/**
 * @module bench/log
 * SUMMARY: `npm run bench:log` (issue 7) — how fast an admin's review of a big decision log
 * is. Writes a realistic 1,000,000-line mail.log (bench/lib/gen-log.ts: connect, reject,
 * greylist, defer, accept, deliver ... over 6 hours, ~15% rejects) under a temp dir, then
 * times the built CLI as an admin runs it, output to /dev/null, median of BENCH_RUNS:
 * `greygate log --event reject` and, when the build has it, `greygate report` (the targets:
 * >= 500,000 lines/s), plus `log --event reject --json`, `log --since 2h` and
 * `log --client CIDR` for information, and `grep -c '"event":"reject"'` on the same file as a
 * reference point (printed, not a target). Before timing, each command's answer is checked
 * once: the number of lines `log --event reject` prints, and grep's count, must equal the
 * rejects the generator wrote.
 * DIAGNOSTICS: a missing build, a command that fails or prints on stderr, or a wrong count
 * ends the run with one line on stderr and exit 1; the temp dir is removed on every exit path
 * (BENCH_KEEP=1 keeps it).
 * SEE ALSO: bench/README.md, src/log/read.ts, src/cli/log.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BenchError } from './lib/bench-error.js';
import { runBench } from './lib/bench-main.js';
import { describeEnvironment } from './lib/environment.js';
import { benchRoot, installExitHandlers } from './lib/exit-cleanup.js';
import { generateLog } from './lib/gen-log.js';
import { positiveInts } from './lib/options.js';
import { formatRate, formatRatio, median, renderTable } from './lib/table.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TARGET_LINES_PER_S = 500_000;

interface Options {
  readonly lines: number;
  readonly hours: number;
  readonly runs: number;
  readonly entry: string;
  readonly keep: boolean;
  readonly jsonFile: string | undefined;
}

/**
 * BENCH_LINES (1000000; 200000 with BENCH_QUICK=1), BENCH_HOURS (6), BENCH_RUNS (3; 1 quick),
 * BENCH_GREYGATE_MAIN (dist/main.js), BENCH_KEEP=1, BENCH_JSON=FILE.
 */
function readOptions(env: NodeJS.ProcessEnv): Options {
  const quick = env.BENCH_QUICK === '1';
  const one = (name: string, def: number): number => (env[name] === undefined ? def : positiveInts(name, env[name]!)[0]!);
  return {
    lines: one('BENCH_LINES', quick ? 200_000 : 1_000_000),
    hours: one('BENCH_HOURS', 6),
    runs: one('BENCH_RUNS', quick ? 1 : 3),
    entry: resolve(env.BENCH_GREYGATE_MAIN ?? join(PROJECT_ROOT, 'dist', 'main.js')),
    keep: env.BENCH_KEEP === '1',
    jsonFile: env.BENCH_JSON,
  };
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

interface RunResult {
  readonly seconds: number;
  /** Lines of stdout, when counted. */
  readonly outLines: number;
  readonly stdout: string;
}

/**
 * Run ARGV to the end; stdout counted (COUNT) or sent to /dev/null as in `> /dev/null`.
 * A non-zero exit or anything on stderr is a BenchError.
 */
function runTimed(label: string, argv: readonly string[], count: boolean, keepStdout = false): Promise<RunResult> {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', count ? 'pipe' : 'ignore', 'pipe'], cwd: PROJECT_ROOT });
    let stderr = '';
    let outLines = 0;
    let stdout = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout?.on('data', (d: Buffer) => {
      for (let i = d.indexOf(10); i >= 0; i = d.indexOf(10, i + 1)) outLines++;
      if (keepStdout) stdout += d.toString('utf8');
    });
    child.on('error', (e) => rej(new BenchError(`${label}: ${e.message}`)));
    child.on('close', (code, signal) => {
      const seconds = (performance.now() - t0) / 1000;
      if (code !== 0 || stderr !== '') {
        rej(new BenchError(`${label}: exit ${code ?? signal}${stderr ? `: ${stderr.trim().split('\n')[0]}` : ''}`));
        return;
      }
      res({ seconds, outLines, stdout });
    });
  });
}

interface Row {
  readonly label: string;
  readonly target: boolean;
  readonly seconds: number[];
}

async function main(): Promise<void> {
  const opts = readOptions(process.env);
  installExitHandlers();
  if (!existsSync(opts.entry)) throw new BenchError(`${opts.entry} not found: run \`npm run build\` first`);
  const hasReport = existsSync(join(PROJECT_ROOT, 'src', 'cli', 'report.ts'));
  const { root } = benchRoot('greygate-bench-log-', opts.keep);
  log(`bench:log: ${describeEnvironment(PROJECT_ROOT)}`);

  const confDir = join(root, 'conf');
  const logFile = join(root, 'log', 'mail.log');
  mkdirSync(confDir);
  mkdirSync(dirname(logFile));
  writeFileSync(join(confDir, 'main.cf'), `# Written by bench/log.ts; removed after the run.\ndata_directory = ${join(root, 'data')}\nmaillog_file = ${logFile}\n`);

  let t0 = performance.now();
  const gen = generateLog(logFile, { lines: opts.lines, hours: opts.hours });
  const rejects = gen.events.get('reject') ?? 0;
  log(
    `  generated ${gen.lines.toLocaleString('en-US')} lines (${(gen.bytes / 1e6).toFixed(0)} MB, ${opts.hours} h, ` +
      `${((100 * rejects) / gen.lines).toFixed(1)}% rejects) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${logFile}${opts.keep ? ' (kept: BENCH_KEEP=1)' : ''}`,
  );

  const gg = (...args: string[]): string[] => [process.execPath, opts.entry, ...args, '-c', confDir];
  const commands: Array<{ label: string; argv: string[]; target: boolean }> = [
    { label: 'greygate log --event reject', argv: gg('log', '--event', 'reject'), target: true },
  ];
  if (hasReport) commands.push({ label: 'greygate report', argv: gg('report'), target: true });
  commands.push(
    { label: 'greygate log --event reject --json', argv: gg('log', '--event', 'reject', '--json'), target: false },
    { label: 'greygate log --since 2h', argv: gg('log', '--since', '2h'), target: false },
    { label: 'greygate log --client 192.0.2.0/27', argv: gg('log', '--client', '192.0.2.0/27'), target: false },
    { label: `grep -c '"event":"reject"' (reference)`, argv: ['grep', '-c', '"event":"reject"', logFile], target: false },
  );

  // The answers first: what is timed must also be right.
  t0 = performance.now();
  const check = await runTimed('log --event reject', gg('log', '--event', 'reject'), true);
  if (check.outLines !== rejects) throw new BenchError(`greygate log --event reject printed ${check.outLines} lines; the log holds ${rejects} rejects`);
  const grep = await runTimed('grep -c', ['grep', '-c', '"event":"reject"', logFile], true, true);
  if (Number(grep.stdout.trim()) !== rejects) throw new BenchError(`grep -c counted ${grep.stdout.trim()}; the log holds ${rejects} rejects`);
  log(`  checked: log --event reject prints ${rejects.toLocaleString('en-US')} lines, grep counts as many (${((performance.now() - t0) / 1000).toFixed(1)} s)`);

  const rows: Row[] = commands.map((c) => ({ label: c.label, target: c.target, seconds: [] }));
  for (let run = 1; run <= opts.runs; run++) {
    for (const [i, c] of commands.entries()) {
      // grep's stdout must not be /dev/null: GNU grep stops at the first match when it is.
      const r = await runTimed(c.label, c.argv, c.argv[0] === 'grep');
      rows[i]!.seconds.push(r.seconds);
      log(`  run ${run}/${opts.runs}: ${c.label}: ${r.seconds.toFixed(2)} s (${formatRate(gen.lines / r.seconds)} lines/s)`);
    }
  }

  const table = rows.map((r) => {
    const s = median(r.seconds);
    const rate = gen.lines / s;
    return [r.label, s.toFixed(2), formatRate(rate), r.target ? formatRatio(rate, TARGET_LINES_PER_S) : '—'];
  });
  const verdicts = rows.filter((r) => r.target).map((r) => `${r.label}: ${gen.lines / median(r.seconds) >= TARGET_LINES_PER_S ? 'meets' : 'MISSES'} the ${formatRate(TARGET_LINES_PER_S)} lines/s target`);
  process.stdout.write(
    [
      `## bench:log — ${describeEnvironment(PROJECT_ROOT)}`,
      '',
      `${gen.lines.toLocaleString('en-US')} lines, ${(gen.bytes / 1e6).toFixed(0)} MB, ${rejects.toLocaleString('en-US')} rejects; wall-clock time of the whole command (node start-up included), output to /dev/null; median of ${opts.runs}.`,
      '',
      renderTable(['command', 'seconds', 'lines/s', 'vs 500,000 lines/s'], table),
      '',
      ...verdicts.map((v) => `**${v}**`),
      '',
    ].join('\n'),
  );
  if (opts.jsonFile) {
    writeFileSync(opts.jsonFile, JSON.stringify({ lines: gen.lines, bytes: gen.bytes, rejects, rows: rows.map((r) => ({ label: r.label, target: r.target, seconds: r.seconds })) }, null, 2) + '\n');
  }
}

runBench('bench:log', main);
