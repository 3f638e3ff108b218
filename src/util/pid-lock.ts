/**
 * @module util/pid-lock
 * SUMMARY: one running process per state directory (Postfix master's "already running"
 * check). acquirePidLock() creates PATH exclusively with this process's pid; a lock whose
 * process is gone is taken over. Returns a release function.
 * DIAGNOSTICS: throws PidLockError naming the live pid that holds the lock.
 * SEE ALSO: master(8) "fatal: the Postfix mail system is already running".
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync } from 'node:fs';

export class PidLockError extends Error {
  readonly pid: number;
  constructor(path: string, pid: number) {
    super(`${path}: already in use by running process ${pid}`);
    this.pid = pid;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function acquirePidLock(path: string): () => void {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (Number(readFileSync(path, 'utf8').trim()) === process.pid) unlinkSync(path);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let pid = NaN;
    try {
      pid = Number(readFileSync(path, 'utf8').trim());
    } catch {
      // Removed between our open and read: try again.
    }
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) throw new PidLockError(path, pid);
    try {
      unlinkSync(path);
    } catch {
      // Another starter removed it first; the next attempt decides.
    }
  }
  throw new Error(`${path}: cannot take the lock`);
}
