/**
 * @module bench/lib/cpu-profile-report
 * SUMMARY: where a server's CPU went during the timed commands only: cut a V8 .cpuprofile
 * (the gateway run with `--cpu-prof`) to the CLOCK_MONOTONIC intervals that bench:imap
 * writes to BENCH_JSON (`monotonicUs`), and list the functions by self and by inclusive
 * time, per run. Exports summarizeProfile(profile, windows) -> ProfileSummary; run as a script:
 * `node --import tsx bench/lib/cpu-profile-report.ts PROFILE BENCH_JSON selectMs|envelopeMs|bodyMs [TOP]`.
 * Start-up, the warm-up session and the idle time between commands are left out, which a
 * whole-profile view (Chrome DevTools) would mix in.
 * DIAGNOSTICS: BenchError (one line, exit 1) for unreadable files, an unknown operation, or
 * intervals that fall outside the profile (a profile of another run).
 * SEE ALSO: https://chromedevtools.github.io/devtools-protocol/tot/Profiler/#type-Profile,
 * node --cpu-prof; V8 and libuv both read CLOCK_MONOTONIC on Linux.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BenchError } from './bench-error.js';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

/** The parts of a .cpuprofile this report reads (times in µs). */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileLine {
  /** "function file:line" with the project root cut off. */
  readonly name: string;
  readonly us: number;
}

export interface ProfileSummary {
  /** Sum of the windows' lengths. */
  readonly wallUs: number;
  /** Sampled time inside the windows that the thread was not idle. */
  readonly busyUs: number;
  readonly idleUs: number;
  /** Time spent in the function itself; descending. */
  readonly self: readonly ProfileLine[];
  /** Time spent in the function or anything it called (each function once per stack); descending. */
  readonly inclusive: readonly ProfileLine[];
}

const PROJECT = /^(?:file:\/\/)?.*?\/(dist|src|node_modules)\//;

function frameName(f: CallFrame): string {
  const url = f.url.replace(PROJECT, '$1/');
  return `${f.functionName || '(anonymous)'} ${url}${url ? `:${f.lineNumber + 1}` : ''}`.trim();
}

export function summarizeProfile(p: CpuProfile, windows: ReadonlyArray<readonly [number, number]>): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // A sample at time t stands for the interval until the next sample.
  const perNode = new Map<number, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    const span = p.timeDeltas[i + 1] ?? 0;
    if (!windows.some(([a, b]) => t >= a && t < b)) continue;
    perNode.set(p.samples[i]!, (perNode.get(p.samples[i]!) ?? 0) + span);
  }
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let idle = 0;
  let sampled = 0;
  for (const [id, us] of perNode) {
    sampled += us;
    const node = byId.get(id);
    if (!node) continue;
    if (node.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const name = frameName(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + us);
    // Recursion would count a function twice in one stack.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (!n) break;
      const k = frameName(n.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  const sorted = (m: Map<string, number>): ProfileLine[] => [...m].map(([name, us]) => ({ name, us })).sort((a, b) => b.us - a.us);
  return {
    wallUs: windows.reduce((n, [a, b]) => n + (b - a), 0),
    busyUs: sampled - idle,
    idleUs: idle,
    self: sorted(self),
    inclusive: sorted(inclusive).filter((l) => l.name !== '(root)'),
  };
}

const OPERATIONS = ['selectMs', 'envelopeMs', 'bodyMs'] as const;

function readJson(file: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new BenchError(`${file}: cannot read the ${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function main(argv: readonly string[]): void {
  const [profileFile, jsonFile, op, topText] = argv;
  if (!profileFile || !jsonFile || !op) throw new BenchError('usage: cpu-profile-report.ts PROFILE.cpuprofile BENCH_JSON selectMs|envelopeMs|bodyMs [TOP]');
  if (!(OPERATIONS as readonly string[]).includes(op)) throw new BenchError(`unknown operation "${op}" (known: ${OPERATIONS.join(', ')})`);
  const profile = readJson(profileFile, 'profile') as CpuProfile;
  const runs = (readJson(jsonFile, 'BENCH_JSON output') as { runs?: { greygate?: Array<{ monotonicUs?: Record<string, [number, number]> }> } }).runs?.greygate ?? [];
  const windows = runs.map((r) => r.monotonicUs?.[op]).filter((w): w is [number, number] => Array.isArray(w));
  if (windows.length === 0) throw new BenchError(`${jsonFile}: no greygate runs with monotonicUs.${op}`);
  if (windows.some(([a, b]) => a < profile.startTime || b > profile.endTime)) {
    throw new BenchError(`${jsonFile}: the timed commands lie outside ${profileFile}'s interval: not the same run?`);
  }
  const s = summarizeProfile(profile, windows);
  const top = Number(topText ?? 25);
  const n = windows.length;
  const ms = (us: number): string => (us / 1000 / n).toFixed(1).padStart(8);
  const pct = (us: number): string => `${((100 * us) / s.busyUs).toFixed(1).padStart(5)}%`;
  const out = [
    `${op}: ${n} run(s), ${ms(s.wallUs).trim()} ms wall per run, of which ${ms(s.busyUs).trim()} ms busy on the profiled thread (${((100 * s.busyUs) / s.wallUs).toFixed(0)}%)`,
    '',
    'self ms/run, share of busy time',
    ...s.self.slice(0, top).map((l) => `${ms(l.us)} ${pct(l.us)}  ${l.name}`),
    '',
    'inclusive ms/run, share of busy time',
    ...s.inclusive.slice(0, top).map((l) => `${ms(l.us)} ${pct(l.us)}  ${l.name}`),
  ];
  process.stdout.write(out.join('\n') + '\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`cpu-profile-report: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
