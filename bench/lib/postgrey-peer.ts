/**
 * @module bench/lib/postgrey-peer
 * SUMMARY: run Debian's postgrey (1.37) on loopback as peers.md says: in the foreground,
 * `postgrey --inet=127.0.0.1:PORT --dbdir=DIR --delay=N --user=postgrey --group=postgrey`,
 * with its database in a directory of the benchmark's and its default (Debian) whitelists.
 * Exports PostgreyPeer.start(opts) -> PostgreyPeer {port, version, stop(), tail()}.
 * DIAGNOSTICS: BenchError when postgrey is missing, when not root (postgrey switches to its
 * own user), or when it exits or does not listen within 20 s (with its last stderr lines).
 * It is killed (by its pid) on every exit path of the benchmark (exit-cleanup).
 * SEE ALSO: postgrey(8), /work/shared/peers.md "postgrey".
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { BenchError } from './bench-error.js';
import { findExecutable } from './executables.js';
import { onExit } from './exit-cleanup.js';
import { LOOPBACK } from './net.js';
import { stopChild } from './stop-child.js';

const run = promisify(execFile);

export const POSTGREY_HINT = 'install Debian\'s postgrey package: apt-get install -y postgrey';

export interface PostgreyOptions {
  /** The database directory (created, and given to the postgrey user). */
  readonly dbdir: string;
  readonly port: number;
  /** --delay in seconds; 0 is read as "unset" (300 s) by postgrey, so at least 1. */
  readonly delay: number;
  /** More command-line options, e.g. --auto-whitelist-clients=0. */
  readonly extraArgs?: readonly string[];
}

/** Whether something accepts TCP connections on PORT. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: LOOPBACK, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function accountIds(name: string): Promise<{ uid: number; gid: number }> {
  try {
    const uid = Number((await run('id', ['-u', name])).stdout.trim());
    const gid = Number((await run('id', ['-g', name])).stdout.trim());
    return { uid, gid };
  } catch {
    throw new BenchError(`no "${name}" user: ${POSTGREY_HINT}`);
  }
}

export class PostgreyPeer {
  private constructor(
    readonly port: number,
    readonly version: string,
    private readonly child: ChildProcess,
    private readonly disarm: () => void,
    private readonly stderr: () => string,
  ) {}

  static async start(o: PostgreyOptions): Promise<PostgreyPeer> {
    const bin = findExecutable('postgrey', POSTGREY_HINT);
    if (process.getuid?.() !== 0) throw new BenchError('postgrey needs root here: it switches to the postgrey user (--user/--group)');
    if (o.delay < 1) throw new BenchError('postgrey reads --delay=0 as unset (300 s): use at least 1');
    const version = (await run(bin, ['--version'])).stdout.trim();
    const { uid, gid } = await accountIds('postgrey');
    mkdirSync(o.dbdir, { recursive: true });
    chownSync(o.dbdir, uid, gid);
    const args = [`--inet=${LOOPBACK}:${o.port}`, `--dbdir=${o.dbdir}`, `--delay=${o.delay}`, '--user=postgrey', '--group=postgrey', ...(o.extraArgs ?? [])];
    // It logs every decision on stderr: read (keeping only the tail) so the pipe never fills.
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      err = (err + d).slice(-4000);
    });
    const disarm = onExit('postgrey', () => {
      child.kill('SIGKILL');
    });
    const peer = new PostgreyPeer(o.port, version, child, disarm, () => err);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        await peer.stop();
        throw new BenchError(`postgrey exited (status ${child.exitCode ?? child.signalCode})${peer.tail()}`);
      }
      if (await listening(o.port)) break;
      if (Date.now() > deadline) {
        await peer.stop();
        throw new BenchError(`postgrey does not listen on ${LOOPBACK}:${o.port} after 20 s${peer.tail()}`);
      }
      await sleep(100);
    }
    return peer;
  }

  /** postgrey's last stderr lines, for error messages. */
  tail(): string {
    const lines = this.stderr().trimEnd().split('\n').slice(-5).filter((l) => l !== '');
    return lines.length ? `\n  last postgrey output:\n    ${lines.join('\n    ')}` : '';
  }

  running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    await stopChild(this.child, 'postgrey', 10_000);
    this.disarm();
  }
}
