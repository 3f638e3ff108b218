/**
 * @module bench/lib/greygate-runner
 * SUMMARY: start the built gateway (`node dist/main.js start -c DIR`) with a throw-away
 * config and data directory, SMTP on one loopback port and every other listener off.
 * Exports GreygateRunner.start(opts) -> GreygateRunner {port, queued(), stop()}.
 * queued() counts the messages in data/queue (a 250 to DATA means the file is there and
 * fsynced), which is how a run's acceptance is confirmed while greygate has no delivery.
 * DIAGNOSTICS: BenchError when dist/main.js is missing (run `npm run build`) or the gateway
 * exits or does not greet (with the tail of its output); it is killed on every exit path.
 * SEE ALSO: /work/shared/design.md "main.cf" and "CLI".
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
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

// design.md's queue states. corrupt/ is left out on purpose: a message that lands there
// was not safely accepted, and the count check should then fail.
const QUEUE_STATES = ['incoming', 'active', 'deferred', 'hold'];

/** Queue-file names: a leading dot or a .tmp suffix marks a write still in progress. */
function isQueueFile(name: string): boolean {
  return !name.startsWith('.') && !name.endsWith('.tmp');
}

export class GreygateRunner {
  private constructor(
    readonly port: number,
    readonly dataDir: string,
    readonly confDir: string,
    readonly outputFile: string,
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
    const child = spawn(process.execPath, [entry, 'start', '-c', confDir], {
      cwd: o.projectRoot,
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    const disarm = onExit('greygate', () => {
      child.kill('SIGKILL');
    });
    const gg = new GreygateRunner(o.port, dataDir, confDir, outputFile, child, disarm);
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
    let n = 0;
    for (const state of QUEUE_STATES) {
      try {
        const entries = await readdir(join(this.dataDir, 'queue', state), { recursive: true, withFileTypes: true });
        n += entries.filter((e) => e.isFile() && isQueueFile(e.name)).length;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    return n;
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
