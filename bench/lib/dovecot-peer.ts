/**
 * @module bench/lib/dovecot-peer
 * SUMMARY: a private Dovecot (Debian's dovecot-imapd) on loopback for the IMAP benchmark:
 * `dovecot -F -c ROOT/dovecot.conf` with its own base_dir and state_dir under ROOT, IMAP only
 * on 127.0.0.1:PORT, ssl = no, plaintext LOGIN allowed, one user in a passwd-file (passdb
 * and userdb, {PLAIN} password) whose mail is ROOT's copy of the Maildir, and every log line
 * in ROOT/dovecot.log. Exports DovecotPeer.start(opts) -> DovecotPeer {port, version,
 * running(), tail(), stop()}.
 * DIAGNOSTICS: BenchError when dovecot is missing, when not root (its login and mail
 * processes switch users), or when it exits, does not greet, or refuses the user's LOGIN
 * within 20 s (each with the tail of its log). It is stopped with SIGTERM on every exit path
 * (its master stops its children); after 3 s, SIGKILL.
 * SEE ALSO: dovecot.conf(5), https://doc.dovecot.org/2.3/configuration_manual/, peers.md "Dovecot".
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { BenchError } from './bench-error.js';
import { findExecutable } from './executables.js';
import { onExit } from './exit-cleanup.js';
import { tryLogin } from './imap-client.js';
import { LOOPBACK } from './net.js';
import { stopChild } from './stop-child.js';

const run = promisify(execFile);

export const DOVECOT_HINT = 'install Debian\'s dovecot-imapd package: apt-get install -y dovecot-imapd';

/** Mail is read as this user (Dovecot refuses to run mail processes as root). */
const MAIL_USER = { name: 'nobody', uid: 65534, gid: 65534 };

export interface DovecotOptions {
  /** Directory for the config, run and state dirs, the passwd-file and the log; must be reachable by MAIL_USER. */
  readonly root: string;
  readonly port: number;
  readonly user: string;
  /** No ":" (passwd-file field separator) and no white space. */
  readonly password: string;
  /** The user's Maildir: a copy the benchmark made for Dovecot alone; it is given to the mail user. */
  readonly maildir: string;
}

function dovecotConf(o: DovecotOptions): string {
  const r = o.root;
  return `# Written by greygate's bench/lib/dovecot-peer.ts; removed after the run.
# A private instance: nothing from /etc/dovecot is read.
instance_name = greygate-bench-${o.port}
base_dir = ${join(r, 'run')}
state_dir = ${join(r, 'state')}
protocols = imap
listen = ${LOOPBACK}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = ${join(r, 'dovecot.log')}
mail_location = maildir:${o.maildir}
default_login_user = dovenull
default_internal_user = dovecot
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${join(r, 'passwd')}
}
userdb {
  driver = passwd-file
  args = username_format=%u ${join(r, 'passwd')}
}
service imap-login {
  inet_listener imap {
    address = ${LOOPBACK}
    port = ${o.port}
  }
  inet_listener imaps {
    port = 0
  }
}
`;
}

/** Whether PID has exited (gone, or a zombie nobody has reaped yet). */
function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return / Z /.test(stat.slice(stat.lastIndexOf(')') + 1, stat.lastIndexOf(')') + 4));
  } catch {
    return true;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class DovecotPeer {
  private constructor(
    readonly port: number,
    readonly version: string,
    readonly logFile: string,
    private readonly child: ChildProcess,
    private readonly disarm: () => void,
  ) {}

  static async start(o: DovecotOptions): Promise<DovecotPeer> {
    const bin = findExecutable('dovecot', DOVECOT_HINT);
    if (process.getuid?.() !== 0) throw new BenchError('Dovecot needs root here: its login and mail processes switch to dovenull and nobody');
    if (/[:\s]/.test(o.password) || /[:\s]/.test(o.user)) throw new BenchError('user and password for the passwd-file must not contain ":" or white space');
    const version = `Dovecot ${(await run(bin, ['--version'])).stdout.trim().split(' ')[0]}`;
    const home = join(o.root, 'home');
    mkdirSync(home, { recursive: true });
    await run('chown', ['-R', `${MAIL_USER.uid}:${MAIL_USER.gid}`, home, o.maildir]);
    // Readable by the auth process (user dovecot); the password is a throwaway one.
    writeFileSync(join(o.root, 'passwd'), `${o.user}:{PLAIN}${o.password}:${MAIL_USER.uid}:${MAIL_USER.gid}::${home}\n`, { mode: 0o644 });
    const conf = join(o.root, 'dovecot.conf');
    writeFileSync(conf, dovecotConf(o));
    const logFile = join(o.root, 'dovecot.log');
    // -F: the master stays in the foreground as our child, so its pid is the one to stop.
    const out = openSync(join(o.root, 'dovecot.out'), 'w');
    const child = spawn(bin, ['-F', '-c', conf], { stdio: ['ignore', out, out] });
    closeSync(out);
    const disarm = onExit('Dovecot', () => {
      // 'exit' listeners cannot await: SIGTERM (the master stops its imap processes), a
      // short synchronous wait, then SIGKILL.
      const pid = child.pid;
      if (pid === undefined || exited(pid)) return;
      child.kill('SIGTERM');
      for (let i = 0; i < 60 && !exited(pid); i++) sleepSync(50);
      if (!exited(pid)) child.kill('SIGKILL');
    });
    const peer = new DovecotPeer(o.port, version, logFile, child, disarm);
    try {
      await peer.waitReady(o, 20_000);
    } catch (e) {
      await peer.stop();
      throw e;
    }
    return peer;
  }

  /** Until a LOGIN as the benchmark's user succeeds: the listener, auth and passdb all work. */
  private async waitReady(o: DovecotOptions, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'not tried';
    while (Date.now() < deadline) {
      if (!this.running()) throw new BenchError(`Dovecot exited (status ${this.child.exitCode ?? this.child.signalCode})${this.tail()}`);
      const probe = await tryLogin(this.port, 'Dovecot', o.user, o.password);
      if (probe.kind === 'ok') return;
      if (probe.kind === 'refused') throw new BenchError(`Dovecot refused LOGIN ${o.user}: ${probe.reply}${this.tail()}`);
      last = probe.reason;
      await sleep(200);
    }
    throw new BenchError(`Dovecot not ready on ${LOOPBACK}:${this.port} within ${timeoutMs / 1000} s (${last})${this.tail()}`);
  }

  running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines of Dovecot's log (and of its stdout/stderr), for error messages. */
  tail(): string {
    const lines: string[] = [];
    for (const f of [this.logFile, join(this.logFile, '..', 'dovecot.out')]) {
      try {
        lines.push(...readFileSync(f, 'utf8').trimEnd().split('\n').slice(-6).filter((l) => l !== ''));
      } catch {
        // not written yet
      }
    }
    return lines.length ? `\n  last Dovecot output (${this.logFile}):\n    ${lines.join('\n    ')}` : '';
  }

  async stop(): Promise<void> {
    await stopChild(this.child, 'Dovecot', 10_000);
    this.disarm();
  }
}
