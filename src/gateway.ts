/**
 * @module gateway
 * SUMMARY: the composition root of `greygate start`: config, tables, policy, queue, users,
 * TLS, DNS and the SMTP listeners, wired once; the only module that imports everything.
 * Gateway.start() refuses to start on any configuration error (every FILE:LINE problem in
 * the GatewayStartError). reload() (SIGHUP, or a changed file) builds a whole new runtime
 * snapshot and swaps it in one assignment; with errors the old one stays in force and the
 * problems are logged. stop() stops accepting, lets transactions in progress finish, exits.
 * SEE ALSO: postfix(1) reload/stop, master(8).
 */
import { close as fsClose, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { acquirePidLock, PidLockError } from './util/pid-lock.js';
import { GreygateError, formatProblem, type Problem } from './errors.js';
import { loadConfig, type Config } from './config/config.js';
import { FileWatcher } from './config/watch.js';
import { createMailLogger, type MailLogger } from './log/logger.js';
import { TableCache } from './tables/open.js';
import { createDnsClient, type DnsClient } from './dns/resolver.js';
import { createClientNameResolver } from './dns/client-name.js';
import { QUEUE_NAMES, QueueStore, prependBytes, queueStoreOptions } from './queue/store.js';
import { Metrics } from './log/metrics.js';
import { MetricsListener } from './log/metrics-http.js';
import { UserStore } from './mailbox/users.js';
import { loadTlsMaterial } from './smtpd/tls.js';
import { openGreylist, type Greylist } from './greylist/greylist.js';
import { SmtpListener, type ServiceName } from './smtpd/server.js';
import { ConnectionLimits } from './smtpd/limits.js';
import { PolicyServiceListener } from './policyd/server.js';
import type { SmtpdRuntime } from './smtpd/ports.js';
import { compileRuntime, type CompiledRuntime } from './runtime.js';
import { Worker } from 'node:worker_threads';
import type { NotifyItem, WorkerCommand, WorkerInit, WorkerReport } from './delivery/worker.js';
import { MaildirStore } from './mailbox/maildir.js';
import { LoginGuard } from './mailbox/login-guard.js';
import { Pop3Listener } from './pop3/server.js';
import { ImapListener } from './imap/server.js';
import type { SmtpdQueue } from './smtpd/ports.js';
import { perTurn } from './util/turn-batch.js';

/** Largest message handed from smtpd to the queue manager in memory. */
const HANDOFF_LIMIT = 256 * 1024;
/** How long stop() waits for the delivery thread to finish what it is doing. */
const WORKER_STOP_MS = 12_000;

export class GatewayStartError extends GreygateError {
  readonly problems: readonly Problem[];
  constructor(problems: readonly Problem[]) {
    super('GG_CONFIG', problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
}

export interface GatewayOptions {
  readonly configDir: string;
  /** Log to stdout as well as maillog_file (the daemon does). */
  readonly stdout?: boolean;
}


export class Gateway {
  private readonly opts: GatewayOptions;
  private config: Config;
  private runtimeSnapshot: SmtpdRuntime;
  private readonly log: MailLogger;
  private readonly tables: TableCache;
  private readonly dns: DnsClient;
  private readonly users: UserStore;
  private readonly queue: QueueStore;
  private readonly listeners: SmtpListener[] = [];
  private readonly policyListeners: PolicyServiceListener[] = [];
  private readonly mailListeners: Array<{ service: 'pop3' | 'pop3s' | 'imap' | 'imaps'; listener: Pop3Listener | ImapListener }> = [];
  /** Prometheus counters (metrics_port set), fed by the logger's hook; null when off. */
  private readonly metrics: Metrics | null;
  private readonly metricsListeners: MetricsListener[] = [];
  private readonly watcher: FileWatcher;
  private reloading: Promise<void> | null = null;

  private readonly releaseLock: () => void;
  private readonly greylist: Greylist;
  private readonly mailboxes: MaildirStore;
  private worker: Worker | null = null;
  private workerStopped: (() => void) | null = null;
  private stopping = false;
  /** `ip:port` of our SMTP listeners (`*:port` for a wildcard bind): the smtp agent's loop check. */
  private readonly ownEndpoints = new Set<string>();

  private constructor(opts: GatewayOptions, config: Config, built: CompiledRuntime, deps: { log: MailLogger; tables: TableCache; dns: DnsClient; users: UserStore; queue: QueueStore; release: () => void; greylist: Greylist; metrics: Metrics | null }) {
    this.releaseLock = deps.release;
    this.metrics = deps.metrics;
    this.greylist = deps.greylist;
    this.opts = opts;
    this.config = config;
    this.runtimeSnapshot = built.runtime;
    this.tellDelivery({ type: 'reload' });
    this.mailboxes = new MaildirStore(config.dataDir(), { warn: (m) => deps.log.warn(m, { stage: 'local' }) });
    this.log = deps.log;
    this.tables = deps.tables;
    this.dns = deps.dns;
    this.users = deps.users;
    this.queue = deps.queue;
    this.watcher = new FileWatcher(() => void this.reload('file change'));
    this.watcher.setFiles([...built.files, ...this.greylist.files()]);
  }

  static async start(opts: GatewayOptions): Promise<Gateway> {
    const config = loadConfig(opts.configDir);
    const cfgErrors = config.problems.filter((p) => p.severity === 'error');
    if (cfgErrors.length) throw new GatewayStartError(config.problems);
    const dataDir = config.dataDir();
    mkdirSync(dataDir, { recursive: true });
    let release: () => void;
    try {
      release = acquirePidLock(join(dataDir, 'greygate.pid'));
    } catch (err) {
      if (err instanceof PidLockError) throw new GreygateError('GG_CONFIG', `data_directory ${dataDir} is in use by another greygate (pid ${err.pid}): the mail system is already running`);
      throw err;
    }
    // Counting happens where records are written, so nothing is counted twice or missed.
    const metrics = config.int('metrics_port') !== 0 ? new Metrics({ queueDirs: Object.fromEntries(QUEUE_NAMES.map((q) => [q, join(dataDir, 'queue', q)])) }) : null;
    const log = createMailLogger({ file: config.get('maillog_file'), stdout: opts.stdout ?? true, ...(metrics ? { onEvent: metrics.observeEvent, onMessage: metrics.observeLog } : {}) });
    for (const p of config.problems) log.warn(formatProblem(p), { event: 'config', rule: `${p.file}:${p.line}` });
    const tables = new TableCache(config.configDir);
    const users = UserStore.open(dataDir);
    const dns = createDnsClient(config);
    const gl = await openGreylist(config, {
      onCleanupError: (err) => log.error(`greylist cleanup failed: ${err.message}`, { event: 'error' }),
      writeBehind: { onError: (err) => log.error(`greylist database write failed (will retry): ${err.message}`, { event: 'error' }) },
    });
    const built = compileRuntime(config, tables, dns, users, { greylist: gl.greylist });
    const problems = [...gl.problems, ...built.problems];
    const errors = problems.filter((p) => p.severity === 'error');
    for (const p of problems) if (p.severity === 'warning') log.warn(formatProblem(p), { event: 'config' });
    if (errors.length) {
      await gl.greylist.close();
      users.close();
      release();
      await log.flush();
      throw new GatewayStartError(errors);
    }
    const queue = await QueueStore.open(dataDir, queueStoreOptions(config));
    // Mail that was being delivered when the process died goes back in line (at least once).
    const recovered = await queue.recover({ activeToIncoming: true });
    if (recovered.requeued.length) log.info(`requeued ${recovered.requeued.length} message(s) left in active/`, { event: 'start' });
    const gw = new Gateway(opts, config, built, { log, tables, dns, users, queue, release, greylist: gl.greylist, metrics });
    try {
      await gw.listen();
      if (deliveryDisabled(config)) log.info('queue manager disabled by master_service_disable: mail is accepted and queued, not delivered', { event: 'start' });
      else gw.startDelivery();
    } catch (err) {
      await gw.stopDelivery();
      await gl.greylist.close();
      await queue.close();
      users.close();
      release();
      throw err;
    }
    return gw;
  }

  private async listen(): Promise<void> {
    const cfg = this.config;
    const tls = await loadTlsMaterial(cfg);
    const hosts = listenAddresses(cfg.list('inet_interfaces'));
    const limits = new ConnectionLimits();
    const services: Array<[ServiceName, string]> = [
      ['smtpd', 'smtpd_port'],
      ['submission', 'submission_port'],
      ['smtps', 'smtps_port'],
    ];
    const deps = {
      runtime: () => this.runtimeSnapshot,
      queue: this.notifyingQueue(),
      users: this.users,
      dns: createClientNameResolver(this.dns, { system: cfg.list('dns_resolvers').length === 0, timeoutMs: cfg.time('dns_timeout') }),
      log: this.log,
      tls: { key: tls.key, cert: tls.cert },
      ...(this.metrics ? { metrics: this.metrics } : {}),
    };
    for (const [name, param] of services) {
      const port = cfg.int(param);
      if (port === 0) continue;
      for (const host of hosts) {
        const l = new SmtpListener({ name, host, port }, deps, limits);
        await this.bind(name, host, port, l);
        this.listeners.push(l);
        this.ownEndpoints.add(host === '::' || host === '0.0.0.0' ? `*:${l.port()}` : `${host.replace(/^::ffff:/i, '')}:${l.port()}`);
      }
    }
    const policyPort = cfg.int('policy_service_port');
    if (policyPort !== 0) {
      for (const host of hosts) {
        const l = new PolicyServiceListener({ host, port: policyPort }, { runtime: () => this.runtimeSnapshot, log: this.log });
        await this.bind('policy service', host, policyPort, l);
        this.policyListeners.push(l);
      }
    }
    // POP3 and IMAP (Dovecot's job): one login guard for both, so failed guesses on one
    // count against the other.
    const guard = new LoginGuard(this.users);
    const pop3Deps = {
      guard,
      mailboxes: this.mailboxes,
      log: this.log,
      tls: () => ({ key: tls.key, cert: tls.cert }),
      config: () => this.runtimeSnapshot.config,
    };
    const mailServices: Array<['pop3' | 'pop3s', string, boolean]> = [
      ['pop3', 'pop3_port', false],
      ['pop3s', 'pop3s_port', true],
    ];
    for (const [service, param, implicitTls] of mailServices) {
      const port = cfg.int(param);
      if (port === 0) continue;
      for (const host of hosts) {
        const l = new Pop3Listener({ host, port, implicitTls }, pop3Deps);
        await this.bind(service, host, port, l);
        this.mailListeners.push({ service, listener: l });
      }
    }
    const imapServices: Array<['imap' | 'imaps', string, boolean]> = [
      ['imap', 'imap_port', false],
      ['imaps', 'imaps_port', true],
    ];
    for (const [service, param, implicitTls] of imapServices) {
      const port = cfg.int(param);
      if (port === 0) continue;
      for (const host of hosts) {
        const l = new ImapListener(
          { host, port, implicitTls },
          { users: this.users, loginGuard: guard, mailboxes: this.mailboxes, log: this.log, tls: { key: tls.key, cert: tls.cert }, config: cfg },
        );
        await this.bind(service, host, port, l);
        this.mailListeners.push({ service, listener: l });
      }
    }
    const metricsPort = cfg.int('metrics_port');
    if (this.metrics && metricsPort !== 0) {
      for (const host of hosts) {
        const l = new MetricsListener({ host, port: metricsPort }, this.metrics, (m) => this.log.error(m, { service: 'metrics' }));
        await this.bind('metrics', host, metricsPort, l);
        this.metricsListeners.push(l);
      }
    }
    const pruner = setInterval(() => limits.prune(cfg.time('anvil_rate_time_unit')), 60_000);
    pruner.unref();
    this.log.event({
      event: 'start',
      msg: `greygate started: ${this.ports().map((l) => `${l.service}=${l.host}:${l.port}`).join(' ')}`,
      listeners: this.ports(),
      tls: tls.generated ? 'self-signed' : 'configured',
    });
  }

  /** Listen, or close every listener opened so far and fail the start with one line. */
  private async bind(service: string, host: string, port: number, l: { listen(): Promise<void> }): Promise<void> {
    try {
      await l.listen();
    } catch (err) {
      await this.closeListeners();
      throw new GreygateError('GG_CONFIG', `${service}: cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The queue manager and its agents run in a worker thread (delivery/worker.ts), as
   * Postfix's qmgr and smtp run beside smtpd: delivering uses the second core. If the thread
   * dies, it is started again after a second (master(8) respawning qmgr); mail it was
   * delivering is in active/ and goes back in line (at least once, never lost).
   */
  private startDelivery(): void {
    if (this.stopping) return;
    const init: WorkerInit = { configDir: this.opts.configDir, endpoints: [...this.ownEndpoints] };
    const worker = new Worker(new URL('./delivery/worker.js', import.meta.url), { workerData: init });
    this.worker = worker;
    worker.on('message', (r: WorkerReport) => {
      switch (r.type) {
        case 'log':
          for (const e of r.entries) {
            if (e.kind === 'event') this.log.event(e.record);
            else this.log[e.kind](e.msg, e.fields);
          }
          break;
        case 'mailbox':
          this.mailboxes.announce(r.user, r.folder, r.change);
          break;
        case 'recycled':
          for (const f of r.files) this.queue.adopt(f);
          break;
        case 'fatal':
          this.log.error(`delivery: ${r.message}`, { event: 'error' });
          break;
        case 'stopped':
          this.workerStopped?.();
          break;
        case 'ready':
          break;
      }
    });
    worker.on('error', (e) => this.log.error(`delivery thread failed: ${e.message}`, { event: 'error' }));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = null;
      this.workerStopped?.();
      if (this.stopping) return;
      this.log.error(`delivery thread exited (status ${code}); starting it again`, { event: 'error' });
      setTimeout(() => this.startDelivery(), 1000).unref();
    });
  }

  private async stopDelivery(): Promise<void> {
    this.stopping = true;
    const worker = this.worker;
    if (worker) {
      const done = new Promise<void>((res) => (this.workerStopped = res));
      worker.postMessage({ type: 'stop' } satisfies WorkerCommand);
      const t = setTimeout(() => void worker.terminate(), WORKER_STOP_MS);
      await done;
      clearTimeout(t);
      await worker.terminate();
    }
    this.mailboxes.close();
  }

  private tellDelivery(cmd: WorkerCommand, transfer?: ArrayBuffer[]): void {
    this.worker?.postMessage(cmd, transfer);
  }

  /**
   * Commits finish in groups (one directory fsync covers several), and a postMessage costs
   * about as much as the rest of the handoff: the group's notices go over in one message.
   */
  private readonly notifyDelivery = perTurn((items: NotifyItem[]): void => {
    if (!this.worker) {
      // No delivery thread (restarting): the scan at its start finds the files; the descriptors are ours to close.
      for (const it of items) if (it.fd !== undefined) fsClose(it.fd, () => undefined);
      return;
    }
    const transfer: ArrayBuffer[] = [];
    for (const it of items) if (it.body) transfer.push(it.body.buffer as ArrayBuffer);
    this.tellDelivery({ type: 'notify', items }, transfer);
  });

  /** The queue as smtpd sees it: a commit to incoming/ wakes the queue manager at once. */
  private notifyingQueue(): SmtpdQueue {
    const queue = this.queue;
    return {
      createWriter: () => {
        const w = queue.createWriter();
        // Small messages are kept in memory on their way to disk and handed to the queue
        // manager, which then need not read back a file it is about to deliver.
        let kept: Buffer[] | null = [];
        let keptBytes = 0;
        return {
          get queueId() {
            return w.queueId;
          },
          write: (chunk) => {
            if (kept) {
              keptBytes += chunk.length;
              if (keptBytes > HANDOFF_LIMIT) kept = null;
              else kept.push(chunk);
            }
            return w.write(chunk);
          },
          commit: async (env, target) => {
            // The file's close, too, is left to the delivery thread when it gets the message.
            const handOver = target === 'incoming' && kept !== null && this.worker !== null;
            await w.commit(env, target, handOver ? { keepOpen: true } : undefined);
            const fd = w.takeFd();
            if (target !== 'incoming') return;
            const stored = w.envelope;
            if (stored && kept) {
              // A fresh copy whose memory moves to the delivery thread without another copy.
              const body = Buffer.concat([prependBytes(stored), ...kept]);
              const bytes = new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
              this.notifyDelivery(fd === null ? { id: w.queueId, envelope: stored, body: bytes } : { id: w.queueId, envelope: stored, body: bytes, fd });
            } else {
              if (fd !== null) fsClose(fd, () => undefined);
              this.notifyDelivery({ id: w.queueId });
            }
            kept = null;
          },
          abort: () => w.abort(),
        };
      },
    };
  }

  /** Rebuild config and tables; keep the old snapshot if anything is wrong. */
  reload(reason: string): Promise<void> {
    if (this.reloading) return this.reloading;
    this.reloading = this.doReload(reason).finally(() => {
      this.reloading = null;
    });
    return this.reloading;
  }

  private async doReload(reason: string): Promise<void> {
    let config: Config;
    try {
      config = loadConfig(this.opts.configDir);
    } catch (err) {
      this.log.event({ event: 'reload', status: 'failed', reason, msg: `reload failed, keeping the running configuration: ${(err as Error).message}` });
      return;
    }
    const errors = config.problems.filter((p) => p.severity === 'error');
    if (errors.length) {
      for (const p of errors) this.log.event({ event: 'config', rule: `${p.file}:${p.line}`, msg: formatProblem(p) });
      this.log.event({ event: 'reload', status: 'failed', reason, msg: `reload failed: ${errors.length} error(s) in main.cf, keeping the running configuration` });
      return;
    }
    const built = compileRuntime(config, this.tables, this.dns, this.users, { greylist: this.greylist });
    const bad = built.problems.filter((p) => p.severity === 'error');
    if (bad.length) {
      for (const p of bad) this.log.event({ event: 'config', rule: `${p.file}:${p.line}`, msg: formatProblem(p) });
      this.log.event({ event: 'reload', status: 'failed', reason, msg: `reload failed: ${bad.length} error(s), keeping the running configuration` });
      this.watcher.setFiles(new Set([...built.files, ...this.watchedFiles()]));
      return;
    }
    // Whitelist files that cannot be read keep their previous entries (greylist.reload).
    for (const p of this.greylist.reload(config)) this.log.event({ event: 'config', rule: `${p.file}:${p.line}`, msg: formatProblem(p) });
    const old = this.runtimeSnapshot;
    if (config.int('metrics_port') !== this.config.int('metrics_port')) {
      this.log.warn(`metrics_port changed to ${config.int('metrics_port')}: the metrics endpoint changes only on restart`, { event: 'reload' });
    }
    this.config = config;
    this.runtimeSnapshot = built.runtime;
    this.tellDelivery({ type: 'reload' });
    // Sessions that started with the old snapshot keep using it for a while.
    setTimeout(() => closePolicies(old), 300_000).unref();
    this.watcher.setFiles([...built.files, ...this.greylist.files()]);
    this.log.event({ event: 'reload', status: 'ok', reason, msg: `reloaded configuration (${reason})` });
  }

  private watchedFiles(): string[] {
    return [this.config.file, ...this.tables.files(), ...this.greylist.files()];
  }

  ports(): Array<{ service: ServiceName | 'policyd' | 'pop3' | 'pop3s' | 'imap' | 'imaps' | 'metrics'; host: string; port: number }> {
    return [
      ...this.listeners.map((l) => ({ service: l.spec.name, host: l.spec.host, port: l.port() })),
      ...this.policyListeners.map((l) => ({ service: 'policyd' as const, host: l.spec.host, port: l.port() })),
      ...this.mailListeners.map((m) => ({ service: m.service, host: m.listener.spec.host, port: m.listener.port() })),
      ...this.metricsListeners.map((l) => ({ service: 'metrics' as const, host: l.spec.host, port: l.port() })),
    ];
  }

  private async closeListeners(): Promise<void> {
    await Promise.all([...this.listeners.map((l) => l.close()), ...this.policyListeners.map((l) => l.close()), ...this.mailListeners.map((m) => m.listener.close()), ...this.metricsListeners.map((l) => l.close())]);
    this.mailListeners.length = 0;
    this.metricsListeners.length = 0;
    this.listeners.length = 0;
    this.policyListeners.length = 0;
  }

  async stop(): Promise<void> {
    this.watcher.close();
    this.log.event({ event: 'stop', msg: 'greygate stopping: no new connections, finishing transactions in progress' });
    await this.closeListeners();
    await this.stopDelivery();
    closePolicies(this.runtimeSnapshot);
    await this.greylist.close();
    await this.queue.close();
    this.users.close();
    this.releaseLock();
    this.log.event({ event: 'stop', msg: 'greygate stopped' });
    await this.log.flush();
  }
}

/** inet_interfaces -> addresses to bind. */
export function listenAddresses(items: string[]): string[] {
  if (items.length === 0 || items.includes('all')) return ['::'];
  const out = new Set<string>();
  for (const it of items) {
    if (it === 'loopback-only') {
      out.add('127.0.0.1');
      continue;
    }
    out.add(it.replace(/^\[(.*)\]$/, '$1'));
  }
  return [...out];
}

/** master_service_disable names qmgr (Postfix's service/type form, or the bare name). */
function deliveryDisabled(config: Config): boolean {
  return config.list('master_service_disable').some((s) => /^qmgr(\/(unix|fifo))?$/i.test(s));
}

/** Close the policies of a snapshot no session can start with any more. */
function closePolicies(rt: SmtpdRuntime): void {
  for (const p of new Set(rt.policies.values())) p.close();
}
