/**
 * @module bench/lib/smtp-sink
 * SUMMARY: run Postfix's smtp-sink on loopback: the relay target of the Postfix peer, and on
 * its own the loopback ceiling (smtp-source straight into a server that queues nothing).
 * Exports SmtpSink.start(port, opts?) -> SmtpSink {port, received(), stop()}. With
 * opts.counters, smtp-sink runs with -c and received() is the number of messages it has
 * taken ("." received), so a relay benchmark can check that every message arrived.
 * DIAGNOSTICS: BenchError when smtp-sink is missing or does not greet; the process is killed
 * on any exit of the benchmark (exit-cleanup).
 * SEE ALSO: smtp-sink(1), /work/shared/peers.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { findExecutable } from './executables.js';
import { onExit } from './exit-cleanup.js';
import { LOOPBACK, waitForSmtpGreeting } from './net.js';

export interface SmtpSinkOptions {
  /** Run with -c and keep its message counter (received()); off for the ceiling runs. */
  readonly counters?: boolean;
}

// -c prints `sess=N quit=N mesg=N` + CR after every session end, QUIT and "."; the last
// complete one is the current count.
const COUNTER = /mesg=(\d+)\r/g;

export class SmtpSink {
  private messages: number | undefined;

  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly disarm: () => void,
    private readonly stderr: () => string,
  ) {}

  static async start(port: number, opts: SmtpSinkOptions = {}): Promise<SmtpSink> {
    const bin = findExecutable('smtp-sink');
    // smtp-sink refuses to keep root privileges; as root it must be told whom to become.
    const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
    const counters = opts.counters ? ['-c'] : [];
    // 1000 is the listen backlog: c=100 bursts of connects must never see a refusal.
    const child = spawn(bin, [...user, ...counters, `${LOOPBACK}:${port}`, '1000'], {
      stdio: ['ignore', opts.counters ? 'pipe' : 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      err = (err + d).slice(-2000);
    });
    const disarm = onExit('smtp-sink', () => {
      child.kill('SIGKILL');
    });
    const sink = new SmtpSink(port, child, disarm, () => err.trim());
    if (opts.counters) {
      sink.messages = 0;
      // A counter may straddle two chunks: keep the unfinished tail for the next one.
      let rest = '';
      child.stdout?.setEncoding('utf8').on('data', (d: string) => {
        const text = rest + d;
        const end = text.lastIndexOf('\r');
        rest = text.slice(end + 1);
        for (const m of text.slice(0, end + 1).matchAll(COUNTER)) sink.messages = Number(m[1]);
      });
    }
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

  /** Messages received so far ("." seen); undefined unless started with counters. */
  received(): number | undefined {
    return this.messages;
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
