/**
 * @module bench/lib/greygate-runner
 * SUMMARY: start the built gateway (`node dist/main.js start -c DIR`) with a throw-away
 * config and data directory, SMTP on one loopback port and every other listener off.
 * Exports GreygateRunner.start(opts) -> GreygateRunner {port, queued(), queueState(),
 * waitForEmptyQueue(), delayReasons(), logSize(), countEvents(), stop()}.
 * queued() counts the messages in data/queue (a 250 to DATA means the file is there and
 * fsynced), which is how a run's acceptance is confirmed while greygate has no delivery;
 * waitForEmptyQueue() is the end of a relay run (every message handed to the next hop and
 * its file removed), and countEvents() reads the decision log for deliver/defer/bounce.
 * DIAGNOSTICS: BenchError when dist/main.js is missing (run `npm run build`) or the gateway
 * exits or does not greet (with the tail of its output); waitForEmptyQueue() throws one for
 * deferred or held mail (with `postqueue -j`'s delay reasons), for a queue that stops
 * shrinking, and for a time limit; the gateway is killed on every exit path.
 * SEE ALSO: /work/shared/design.md "main.cf" and "CLI".
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { BenchError } from './bench-error.js';
import { onExit } from './exit-cleanup.js';
import { LOOPBACK, waitForSmtpGreeting } from './net.js';
import { stopChild } from './stop-child.js';

export interface GreygateOptions {
  /** Project root: the gateway's working directory, and where dist/main.js is by default. */
  readonly projectRoot: string;
  /** Another build's main.js (to compare builds); default <projectRoot>/dist/main.js. */
  readonly entry?: string;
  /** Temp directory owned by the benchmark; config, data and logs go below it. */
  readonly root: string;
  readonly port: number;
  /** smtp-sink port: where example.com goes once greygate has a queue manager. */
  readonly relayPort: number;
  readonly relayDomain: string;
  /** More main.cf lines, appended after the benchmark's own (e.g. `header_checks = ...`). */
  readonly extraMainCf?: string;
  /** Files copied into the config dir first, e.g. rule files named by extraMainCf. */
  readonly configFiles?: readonly ConfigFile[];
  /** Flags for node before the entry point, e.g. `--cpu-prof --cpu-prof-dir=DIR` to profile. */
  readonly nodeArgs?: readonly string[];
}

/** A file to place in the instance's config directory under NAME, copied from SOURCE. */
export interface ConfigFile {
  readonly name: string;
  readonly source: string;
}

// The listeners greygate enables by default; all but smtpd are turned off so that the
// benchmark never collides with another instance on the default ports.
const OTHER_LISTENERS = ['submission_port', 'smtps_port', 'pop3_port', 'pop3s_port', 'imap_port', 'imaps_port'];

function mainCf(o: GreygateOptions, dataDir: string, maillog: string): string {
  return `# Written by greygate's bench/lib/greygate-runner.ts; removed after the run.
data_directory = ${dataDir}
inet_interfaces = ${LOOPBACK}
smtpd_port = ${o.port}
${OTHER_LISTENERS.map((p) => `${p} = 0`).join('\n')}
myhostname = bench.greygate.test
mynetworks = 127.0.0.0/8
relay_domains = ${o.relayDomain}
# The same relay target as the Postfix peer, so that once greygate delivers, nothing can
# leave the loopback (example.com would otherwise be looked up in the DNS).
transport_maps = texthash:transport
# One client IP opens up to 100 parallel connections: no anvil-style refusal.
smtpd_client_connection_count_limit = 0
# The default, spelled out: the comparison is with Postfix, which fsyncs before its 250.
queue_fsync = yes
maillog_file = ${maillog}
${o.extraMainCf ? `# Added by the benchmark for this instance:\n${o.extraMainCf.trimEnd()}\n` : ''}`;
}

const run = promisify(execFile);

// design.md's queue states. corrupt/ is left out on purpose: a message that lands there
// was not safely accepted, and the count check should then fail.
const QUEUE_STATES = ['incoming', 'active', 'deferred', 'hold'];

function describeState(q: QueueState): string {
  return Object.entries(q.byState)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${s} ${n}`)
    .join(', ');
}

/** Queue-file names: a leading dot or a .tmp suffix marks a write still in progress. */
function isQueueFile(name: string): boolean {
  return !name.startsWith('.') && !name.endsWith('.tmp');
}

/** Queue files per state directory; `stuck` is what will not leave without help (deferred, hold). */
export interface QueueState {
  readonly total: number;
  readonly stuck: number;
  readonly byState: Readonly<Record<string, number>>;
}

export interface DrainOptions {
  /** Give up after this long in all. */
  readonly timeoutMs: number;
  /** Give up when the queue has not shrunk for this long (no delivery happening). */
  readonly stallMs: number;
}

export class GreygateRunner {
  private constructor(
    readonly port: number,
    readonly dataDir: string,
    readonly confDir: string,
    readonly outputFile: string,
    private readonly entry: string,
    private readonly cwd: string,
    private readonly child: ChildProcess,
    private readonly disarm: () => void,
  ) {}

  static async start(o: GreygateOptions): Promise<GreygateRunner> {
    const entry = o.entry ?? join(o.projectRoot, 'dist', 'main.js');
    if (!existsSync(entry)) throw new BenchError(`${entry} not found: run \`npm run build\` first`);
    const confDir = join(o.root, 'conf');
    const dataDir = join(o.root, 'data');
    const maillog = join(o.root, 'mail.log');
    const outputFile = join(o.root, 'stdout.log');
    mkdirSync(confDir, { recursive: true });
    writeFileSync(join(confDir, 'main.cf'), mainCf(o, dataDir, maillog));
    writeFileSync(join(confDir, 'transport'), `${o.relayDomain} smtp:[${LOOPBACK}]:${o.relayPort}\n`);
    for (const f of o.configFiles ?? []) copyFileSync(f.source, join(confDir, f.name));

    // The decision log goes to stdout as well as maillog_file. A file, not a pipe: a pipe
    // that the benchmark reads would add its own cost, and one it does not read would block.
    const out = openSync(outputFile, 'w');
    const child = spawn(process.execPath, [...(o.nodeArgs ?? []), entry, 'start', '-c', confDir], {
      cwd: o.projectRoot,
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    const disarm = onExit('greygate', () => {
      child.kill('SIGKILL');
    });
    const gg = new GreygateRunner(o.port, dataDir, confDir, outputFile, entry, o.projectRoot, child, disarm);
    try {
      await waitForSmtpGreeting(o.port, {
        label: 'greygate',
        timeoutMs: 30_000,
        exited: () => (gg.running() ? undefined : `status ${child.exitCode ?? child.signalCode}${gg.tail()}`),
      });
    } catch (e) {
      await gg.stop();
      const msg = e instanceof Error ? e.message : String(e);
      throw new BenchError(msg.includes('last output') ? msg : msg + gg.tail(), { cause: e });
    }
    return gg;
  }

  running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Messages in the queue: one queue file each, in whichever state directory it is. */
  async queued(): Promise<number> {
    return (await this.queueState()).total;
  }

  async queueState(): Promise<QueueState> {
    const byState: Record<string, number> = {};
    let total = 0;
    for (const state of QUEUE_STATES) {
      let n = 0;
      try {
        const entries = await readdir(join(this.dataDir, 'queue', state), { recursive: true, withFileTypes: true });
        n = entries.filter((e) => e.isFile() && isQueueFile(e.name)).length;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      byState[state] = n;
      total += n;
    }
    return { total, stuck: (byState.deferred ?? 0) + (byState.hold ?? 0), byState };
  }

  /**
   * Wait until incoming/, active/, deferred/ and hold/ are all empty: every message has been
   * handed to its next hop and its queue file removed. Returns the seconds it took. A
   * deferral fails at once: the retry would come minutes later and the run measure nothing.
   */
  async waitForEmptyQueue(o: DrainOptions): Promise<number> {
    const t0 = Date.now();
    let lowest = Number.POSITIVE_INFINITY;
    let lastProgress = t0;
    for (;;) {
      const q = await this.queueState();
      if (q.stuck > 0) {
        throw new BenchError(
          `greygate deferred or held ${q.stuck} message(s) (${describeState(q)})${await this.delayReasons()}`,
        );
      }
      if (q.total === 0) return (Date.now() - t0) / 1000;
      if (!this.running()) throw new BenchError(`greygate died with ${q.total} message(s) queued${this.tail()}`);
      const now = Date.now();
      if (q.total < lowest) {
        lowest = q.total;
        lastProgress = now;
      } else if (now - lastProgress > o.stallMs) {
        throw new BenchError(
          `greygate delivered nothing for ${o.stallMs / 1000} s; ${q.total} message(s) still queued (${describeState(q)}): ` +
            `does this build deliver (queue manager + smtp transport)?${await this.delayReasons()}${this.tail()}`,
        );
      }
      if (now - t0 > o.timeoutMs) {
        throw new BenchError(`greygate's queue still holds ${q.total} message(s) after ${o.timeoutMs / 1000} s (${describeState(q)})${this.tail()}`);
      }
      await sleep(50);
    }
  }

  /** The distinct delay reasons `greygate postqueue -j` shows, for error messages. */
  async delayReasons(): Promise<string> {
    let stdout: string;
    try {
      stdout = (await run(process.execPath, [this.entry, 'postqueue', '-j', '-c', this.confDir], { cwd: this.cwd, maxBuffer: 64 << 20 })).stdout;
    } catch (e) {
      return `\n  (postqueue -j failed: ${(e as Error).message.split('\n')[0]})`;
    }
    const reasons = new Map<string, number>();
    for (const line of stdout.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const m = JSON.parse(line) as { queue_name?: string; recipients?: Array<{ delay_reason?: string }> };
        for (const r of m.recipients ?? []) {
          const why = `${m.queue_name ?? '?'}: ${r.delay_reason ?? '(no delay reason)'}`;
          reasons.set(why, (reasons.get(why) ?? 0) + 1);
        }
      } catch {
        reasons.set(`unparsable postqueue -j line: ${line.slice(0, 120)}`, 1);
      }
    }
    if (reasons.size === 0) return '';
    const top = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 5);
    return `\n  postqueue -j:\n    ${top.map(([why, n]) => `${n}× ${why}`).join('\n    ')}`;
  }

  /** Bytes in the decision log so far: the start offset for countEvents(). */
  logSize(): number {
    try {
      return statSync(this.outputFile).size;
    } catch {
      return 0;
    }
  }

  /** How many records of each EVENT the decision log (stdout) holds after byte offset SINCE. */
  countEvents(since: number, events: readonly string[]): Record<string, number> {
    const counts: Record<string, number> = Object.fromEntries(events.map((e) => [e, 0]));
    const fd = openSync(this.outputFile, 'r');
    try {
      const size = statSync(this.outputFile).size;
      const buf = Buffer.alloc(Math.max(0, size - since));
      let off = 0;
      while (off < buf.length) {
        const n = readSync(fd, buf, off, buf.length - off, since + off);
        if (n === 0) break;
        off += n;
      }
      // One JSON record per line (pino); the field is spelled once, in log/events.ts.
      for (const m of buf.toString('utf8', 0, off).matchAll(/"event":"([a-z_]+)"/g)) {
        const e = m[1]!;
        if (e in counts) counts[e]! += 1;
      }
    } finally {
      closeSync(fd);
    }
    return counts;
  }

  /** The last lines greygate printed, for error messages. */
  tail(): string {
    try {
      const lines = readFileSync(this.outputFile, 'utf8').trimEnd().split('\n').slice(-8);
      return lines.length === 0 || lines[0] === '' ? '' : `\n  last output (${this.outputFile}):\n    ${lines.join('\n    ')}`;
    } catch {
      return '';
    }
  }

  /** SIGTERM drains and stops (design.md); after 15 s the benchmark stops waiting. */
  async stop(): Promise<void> {
    await stopChild(this.child, 'greygate', 15_000);
    this.disarm();
  }
}
