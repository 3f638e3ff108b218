/**
 * @module bench/lib/environment
 * SUMMARY: one line naming what a benchmark ran on, for its progress output and results:
 * CPU count and model, Node version, greygate version and git commit, and the peer's version.
 * Exports describeEnvironment(projectRoot, peers) -> string.
 * DIAGNOSTICS: none; a directory that is not a git checkout just has no commit in the line.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

/** PEERS: e.g. ["Postfix 3.7.11"]; each is appended as given. */
export function describeEnvironment(projectRoot: string, peers: readonly string[] = []): string {
  let git = '';
  try {
    git = execFileSync('git', ['-C', projectRoot, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout: the version alone identifies the build
  }
  const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version?: string };
  const cpu = cpus();
  return [
    `${cpu.length} CPU(s) (${cpu[0]?.model.trim() ?? 'unknown'})`,
    `Node ${process.version}`,
    `greygate ${pkg.version ?? '?'}${git ? ` (${git})` : ''}`,
    ...peers,
  ].join(', ');
}
