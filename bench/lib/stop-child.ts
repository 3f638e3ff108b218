/**
 * @module bench/lib/stop-child
 * SUMMARY: stop a server the benchmark started: SIGTERM, then SIGKILL if it is still there
 * after GRACE_MS (saying so on stderr), and wait for it to exit.
 */
import type { ChildProcess } from 'node:child_process';

export async function stopChild(child: ChildProcess, name: string, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const t = setTimeout(() => {
    process.stderr.write(`bench: ${name} ignored SIGTERM for ${graceMs / 1000} s; killing it\n`);
    child.kill('SIGKILL');
  }, graceMs);
  await gone;
  clearTimeout(t);
}
