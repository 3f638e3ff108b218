/**
 * @module bench/lib/bench-main
 * SUMMARY: what every benchmark's main does at its edges: stop the servers it started (in
 * reverse order, reporting but surviving a failure) and remove its temp dir, and report a
 * failure as one line (BenchError) or with a stack (a bug, or BENCH_DEBUG=1).
 */
import { rmSync } from 'node:fs';
import { BenchError } from './bench-error.js';

/** Stop every started server (newest first), then remove ROOT unless KEEP. */
export async function teardown(stops: Array<() => Promise<void>>, root: string, keep: boolean, disarmRoot: () => void): Promise<void> {
  for (const stop of stops.reverse()) {
    try {
      await stop();
    } catch (e) {
      process.stderr.write(`bench: stopping failed: ${e instanceof Error ? e.message : String(e)}\n`);
    }
  }
  if (!keep) rmSync(root, { recursive: true, force: true });
  disarmRoot();
}

/** Run MAIN; a failure sets exit status 1 with a one-line message (a stack for bugs). */
export function runBench(name: string, main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    if (e instanceof BenchError && process.env.BENCH_DEBUG !== '1') process.stderr.write(`${name}: ${e.message}\n`);
    else process.stderr.write(`${name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  });
}
