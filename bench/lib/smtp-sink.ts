/**
 * @module bench/lib/smtp-sink
 * SUMMARY: run Postfix's smtp-sink on loopback: the relay target of the Postfix peer, and on
 * its own the loopback ceiling (smtp-source straight into a server that queues nothing).
 * Exports SmtpSink.start(port) -> SmtpSink {port, stop()}.
 * DIAGNOSTICS: BenchError when smtp-sink is missing or does not greet; the process is killed
 * on any exit of the benchmark (exit-cleanup).
 * SEE ALSO: smtp-sink(1), /work/shared/peers.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { findExecutable } from './executables.js';
import { onExit } from './exit-cleanup.js';
import { LOOPBACK, waitForSmtpGreeting } from './net.js';

export class SmtpSink {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly disarm: () => void,
    private readonly stderr: () => string,
  ) {}

  static async start(port: number): Promise<SmtpSink> {
    const bin = findExecutable('smtp-sink');
    // smtp-sink refuses to keep root privileges; as root it must be told whom to become.
    const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
    // 1000 is the listen backlog: c=100 bursts of connects must never see a refusal.
    const child = spawn(bin, [...user, `${LOOPBACK}:${port}`, '1000'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      err = (err + d).slice(-2000);
    });
    const disarm = onExit('smtp-sink', () => {
      child.kill('SIGKILL');
    });
    const sink = new SmtpSink(port, child, disarm, () => err.trim());
    try {
      await waitForSmtpGreeting(port, {
        label: 'smtp-sink',
        timeoutMs: 10_000,
        exited: () => (child.exitCode !== null || child.signalCode !== null ? sink.stderr() || `status ${child.exitCode ?? child.signalCode}` : undefined),
      });
    } catch (e) {
      await sink.stop();
      throw e;
    }
    return sink;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      await gone;
    }
    this.disarm();
  }
}
