/**
 * @module bench/lib/policyd-standalone
 * SUMMARY: greygate's policy service in a process of its own, for a build whose gateway
 * does not start it (before src/gateway.ts wired policy_service_port): the built modules the
 * gateway would use (dist/: config, tables, greylist store, policy_service_restrictions,
 * the listener, the decision log on stdout and in maillog_file), so the benchmark's
 * client never shares a CPU thread with the server. Exports PolicydStandalone.start(opts) -> {port,
 * stop()}; run as a script (`node --import tsx policyd-standalone.ts CONFIG_DIR DATA_DIR`)
 * it serves until SIGTERM.
 * DIAGNOSTICS: configuration problems (errors) end the script with status 1 and the
 * problems on stderr; start() reports them, or a child that does not listen in 30 s, as a
 * BenchError with the child's last output.
 * SEE ALSO: src/policyd/server.ts, bench/greylist.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BenchError } from './bench-error.js';
import { onExit } from './exit-cleanup.js';
import { LOOPBACK } from './net.js';
import { stopChild } from './stop-child.js';

export interface StandaloneOptions {
  readonly projectRoot: string;
  /** A greygate config dir; its main.cf sets policy_service_port. */
  readonly confDir: string;
  /** data_directory for this process (its greylist database and log). */
  readonly dataDir: string;
  readonly port: number;
  /** stdout/stderr of the child go here. */
  readonly outputFile: string;
}

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

export class PolicydStandalone {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly disarm: () => void,
    private readonly outputFile: string,
  ) {}

  static async start(o: StandaloneOptions): Promise<PolicydStandalone> {
    const out = openSync(o.outputFile, 'w');
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), o.confDir, o.dataDir], {
      cwd: o.projectRoot,
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    const disarm = onExit('greygate policyd', () => {
      child.kill('SIGKILL');
    });
    const p = new PolicydStandalone(o.port, child, disarm, o.outputFile);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!p.running()) {
        await p.stop();
        throw new BenchError(`greygate's policy service exited (status ${child.exitCode ?? child.signalCode})${p.tail()}`);
      }
      if (await listening(o.port)) return p;
      if (Date.now() > deadline) {
        await p.stop();
        throw new BenchError(`greygate's policy service does not listen on ${LOOPBACK}:${o.port} after 30 s${p.tail()}`);
      }
      await sleep(100);
    }
  }

  running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  tail(): string {
    try {
      const lines = readFileSync(this.outputFile, 'utf8').trimEnd().split('\n').slice(-6);
      return lines[0] ? `\n  last output (${this.outputFile}):\n    ${lines.join('\n    ')}` : '';
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    await stopChild(this.child, 'the policy service', 10_000);
    this.disarm();
  }
}

/** The child: build what the gateway would build for the policy service, and serve. */
async function serve(projectRoot: string, confDir: string, dataDir: string): Promise<void> {
  // The built gateway's modules (dist/, as `npm start` runs them), not src/ through tsx.
  const dist = (m: string): string => pathToFileURL(join(projectRoot, 'dist', m)).href;
  const { loadConfig } = (await import(dist('config/config.js'))) as typeof import('../../src/config/config.js');
  const { formatProblem } = (await import(dist('errors.js'))) as typeof import('../../src/errors.js');
  const { TableCache } = (await import(dist('tables/open.js'))) as typeof import('../../src/tables/open.js');
  const { createDnsClient } = (await import(dist('dns/resolver.js'))) as typeof import('../../src/dns/resolver.js');
  const { createMailLogger } = (await import(dist('log/logger.js'))) as typeof import('../../src/log/logger.js');
  const { openGreylist } = (await import(dist('greylist/greylist.js'))) as typeof import('../../src/greylist/greylist.js');
  const { compilePolicyServicePolicy } = (await import(dist('policyd/policy.js'))) as typeof import('../../src/policyd/policy.js');
  const { POLICYD_POLICY, PolicyServiceListener } = (await import(dist('policyd/server.js'))) as typeof import('../../src/policyd/server.js');
  const config = loadConfig(confDir, { overrides: { data_directory: dataDir, maillog_file: join(dataDir, 'log', 'mail.log') } });
  const tables = new TableCache(config.configDir);
  const { greylist, problems: gp } = await openGreylist(config);
  const { policy, problems } = compilePolicyServicePolicy({
    config,
    openTable: (spec) => tables.open(spec),
    dns: createDnsClient(config),
    localUsers: { exists: () => false },
    greylist,
  });
  const errors = [...config.problems, ...gp, ...problems].filter((p) => p.severity === 'error');
  if (errors.length) {
    process.stderr.write(errors.map(formatProblem).join('\n') + '\n');
    process.exit(1);
  }
  const log = createMailLogger({ file: config.get('maillog_file'), stdout: true });
  const listener = new PolicyServiceListener({ host: LOOPBACK, port: config.int('policy_service_port') }, { runtime: () => ({ config, policies: new Map([[POLICYD_POLICY, policy]]) }), log });
  await listener.listen();
  log.info(`policy service listening on ${LOOPBACK}:${listener.port()}`);
  process.once('SIGTERM', () => {
    void listener.close(2000).then(async () => {
      await greylist.close();
      await log.flush();
      process.exit(0);
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [confDir, dataDir] = process.argv.slice(2);
  if (!confDir || !dataDir) {
    process.stderr.write('usage: policyd-standalone.ts CONFIG_DIR DATA_DIR\n');
    process.exit(2);
  }
  serve(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), confDir, dataDir).catch((e: unknown) => {
    process.stderr.write(`policyd-standalone: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
