/**
 * @module bench/lib/exit-cleanup
 * SUMMARY: last-resort teardown of what the benchmark started (daemons, temp dirs) when the
 * process ends any way other than through the normal `finally` path: Ctrl-C, SIGTERM, an
 * uncaught error. Exports onExit(label, fn) -> disarm(), runExitSteps(), installExitHandlers(),
 * benchRoot(prefix, keep) -> { root, disarm }.
 * Steps are synchronous because 'exit' listeners cannot await; they run last-in first-out
 * (a temp dir is removed only after the daemon using it is stopped) and each failure is
 * printed on stderr and does not stop the other steps.
 * SEE ALSO: node:process 'exit' event.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Step {
  readonly label: string;
  readonly run: () => void;
}

// A registry filled while the benchmark starts its resources; the only module-level state.
const steps: Step[] = [];
let installed = false;

/** Register a synchronous teardown step; the returned function disarms it once done normally. */
export function onExit(label: string, run: () => void): () => void {
  const step: Step = { label, run };
  steps.push(step);
  return () => {
    const i = steps.indexOf(step);
    if (i >= 0) steps.splice(i, 1);
  };
}

export function runExitSteps(): void {
  while (steps.length > 0) {
    const step = steps.pop()!;
    try {
      step.run();
    } catch (e) {
      process.stderr.write(`bench: cleanup of ${step.label} failed: ${e instanceof Error ? e.message : String(e)}\n`);
    }
  }
}

const SIGNALS: ReadonlyArray<[NodeJS.Signals, number]> = [
  ['SIGINT', 2],
  ['SIGTERM', 15],
  ['SIGHUP', 1],
];

export function installExitHandlers(): void {
  if (installed) return;
  installed = true;
  // 'exit' also fires after an uncaught exception or unhandled rejection has been printed.
  process.on('exit', runExitSteps);
  for (const [sig, num] of SIGNALS) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping daemons and removing temp dirs\n`);
      runExitSteps();
      process.exit(128 + num);
    });
  }
}

/**
 * benchRoot - a fresh temp directory for one benchmark run (mode 755: Postfix's and
 * Dovecot's daemons run as other users and must reach their files below it), removed on
 * every exit path unless KEEP. Register it first, so it is removed last, after every server
 * using it has stopped. Returns the path and the function that disarms its removal.
 */
export function benchRoot(prefix: string, keep: boolean): { root: string; disarm: () => void } {
  const root = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(root, 0o755);
  const disarm = onExit('temp dir', () => {
    if (!keep) rmSync(root, { recursive: true, force: true });
  });
  return { root, disarm };
}
