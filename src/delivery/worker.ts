/**
 * @module delivery/worker
 * SUMMARY: the delivery thread. The gateway starts it with the config directory; it opens
 * its own queue store, DNS client, user store and Maildir store and runs the DeliveryService
 * (queue manager and agents), so that delivering mail uses the second core instead of
 * competing with smtpd for the first, as Postfix's qmgr and smtp processes do.
 * Messages in (WorkerCommand): notify (with the message handed over in memory), endpoints,
 * reload, stop. Messages out (WorkerReport): log records in batches (the gateway writes
 * them: one writer per log file), mailbox changes (for IMAP IDLE), ready, stopped, fatal.
 * DIAGNOSTICS: a failure to start is reported as `fatal` and the thread exits; the gateway
 * logs it and starts a new one.
 * SEE ALSO: delivery/service.ts, gateway.ts, master(8).
 */
import { close } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { networkInterfaces } from 'node:os';
import { loadConfig, type Config } from '../config/config.js';
import type { EventRecord } from '../log/events.js';
import type { MailLogger } from '../log/logger.js';
import { TableCache } from '../tables/open.js';
import { createDnsClient } from '../dns/resolver.js';
import type { Envelope } from '../queue/envelope.js';
import { QueueStore, queueStoreOptions, type RetiredFile } from '../queue/store.js';
import { MaildirStore } from '../mailbox/maildir.js';
import type { MailboxChange } from '../mailbox/mail-store.js';
import { UserStore } from '../mailbox/users.js';
import type { Problem } from '../errors.js';
import { DeliveryService, compileDelivery } from './service.js';
import { perTurn } from '../util/turn-batch.js';

export interface WorkerInit {
  readonly configDir: string;
  readonly endpoints: readonly string[];
}

/** A message committed to incoming/, with the message itself when it was small enough to hand over. */
export interface NotifyItem {
  readonly id: string;
  readonly envelope?: Envelope;
  readonly body?: Uint8Array;
  /** The committed file's descriptor, for this thread to close (off smtpd's thread). */
  readonly fd?: number;
}

export type WorkerCommand =
  | { readonly type: 'notify'; readonly items: readonly NotifyItem[] }
  | { readonly type: 'endpoints'; readonly endpoints: readonly string[] }
  | { readonly type: 'reload' }
  | { readonly type: 'stop' };

export type LogEntry =
  | { readonly kind: 'event'; readonly record: EventRecord }
  | { readonly kind: 'info' | 'warn' | 'error'; readonly msg: string; readonly fields?: Record<string, unknown> };

export type WorkerReport =
  | { readonly type: 'log'; readonly entries: readonly LogEntry[] }
  | { readonly type: 'mailbox'; readonly user: string; readonly folder: string; readonly change: MailboxChange }
  /** Files of delivered messages, renamed to temporary names in incoming/ and opened, for reuse (QueueStore.adopt). */
  | { readonly type: 'recycled'; readonly files: readonly RetiredFile[] }
  | { readonly type: 'ready' }
  | { readonly type: 'stopped' }
  | { readonly type: 'fatal'; readonly message: string };

const LOG_BATCH_MS = 20;
const LOG_BATCH_MAX = 256;

function post(r: WorkerReport): void {
  parentPort!.postMessage(r);
}

/** A MailLogger that ships records to the gateway's logger in small batches. */
function forwardingLogger(): MailLogger & { drain(): void } {
  let batch: LogEntry[] = [];
  let timer: NodeJS.Timeout | null = null;
  const drain = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (batch.length === 0) return;
    const entries = batch;
    batch = [];
    post({ type: 'log', entries });
  };
  const push = (e: LogEntry): void => {
    batch.push(e);
    if (batch.length >= LOG_BATCH_MAX) drain();
    else timer ??= setTimeout(drain, LOG_BATCH_MS);
  };
  return {
    event: (record) => push({ kind: 'event', record }),
    info: (msg, fields) => push(fields ? { kind: 'info', msg, fields } : { kind: 'info', msg }),
    warn: (msg, fields) => push(fields ? { kind: 'warn', msg, fields } : { kind: 'warn', msg }),
    error: (msg, fields) => push(fields ? { kind: 'error', msg, fields } : { kind: 'error', msg }),
    flush: async () => drain(),
    drain,
  };
}

function isLocalAddress(ip: string): boolean {
  const bare = ip.replace(/^::ffff:/i, '');
  if (bare.startsWith('127.') || bare === '::1') return true;
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.address === bare) return true;
  return false;
}

/**
 * Retired queue files are opened here, on this thread, and go to the gateway's queue writer
 * in one message per event-loop turn: smtpd's thread, the busier one, then only adopts them.
 */
function recycler(queue: QueueStore): (path: string) => void {
  const hand = perTurn((files: RetiredFile[]) => post({ type: 'recycled', files }));
  return (path) => {
    void queue.reopenRetired(path).then((f) => {
      if (f) hand(f);
    });
  };
}

async function main(init: WorkerInit): Promise<void> {
  const log = forwardingLogger();
  let config: Config = loadConfig(init.configDir);
  const tables = new TableCache(config.configDir);
  const compile = (cfg: Config) => {
    const problems: Problem[] = [];
    tables.beginGeneration();
    const runtime = compileDelivery(cfg, (spec) => tables.open(spec, { aliases: cfg.list('alias_maps').includes(spec) }), problems);
    problems.push(...tables.endGeneration());
    return { runtime, problems };
  };
  const dataDir = config.dataDir();
  const queue = await QueueStore.open(dataDir, queueStoreOptions(config));
  const users = UserStore.open(dataDir);
  const mailboxes = new MaildirStore(dataDir, { warn: (m) => log.warn(m, { stage: 'local' }) });
  mailboxes.onChange((user, folder, change) => post({ type: 'mailbox', user, folder, change }));
  const endpoints = new Set(init.endpoints);
  const service = new DeliveryService({
    config,
    runtime: compile(config).runtime,
    queue,
    log,
    dns: createDnsClient(config),
    users,
    mailboxes,
    ownEndpoints: endpoints,
    isLocalAddress,
    recycle: recycler(queue),
  });
  parentPort!.on('message', (cmd: WorkerCommand) => {
    switch (cmd.type) {
      case 'notify':
        for (const it of cmd.items) {
          if (it.fd !== undefined) close(it.fd, () => undefined);
          const committed = it.envelope && it.body ? { envelope: it.envelope, body: Buffer.from(it.body.buffer, it.body.byteOffset, it.body.byteLength) } : undefined;
          service.notify(it.id, committed);
        }
        break;
      case 'endpoints':
        endpoints.clear();
        for (const e of cmd.endpoints) endpoints.add(e);
        break;
      case 'reload': {
        // The gateway has validated this configuration before telling us; a file that
        // changed again since then is caught by the next reload.
        try {
          const next = loadConfig(init.configDir);
          const built = compile(next);
          if (next.problems.some((p) => p.severity === 'error') || built.problems.some((p) => p.severity === 'error')) {
            log.warn('delivery: reload skipped, the configuration has errors; keeping the running one');
            break;
          }
          config = next;
          service.reload(config, built.runtime);
        } catch (e) {
          log.error(`delivery: reload failed: ${(e as Error).message}`);
        }
        break;
      }
      case 'stop':
        void (async () => {
          await service.stop();
          await queue.close();
          mailboxes.close();
          users.close();
          log.drain();
          post({ type: 'stopped' });
        })();
        break;
    }
  });
  service.start();
  post({ type: 'ready' });
}

if (parentPort) {
  main(workerData as WorkerInit).catch((e: unknown) => {
    post({ type: 'fatal', message: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  });
}
