/**
 * @module delivery/service
 * SUMMARY: the delivery side of greygate assembled from its parts: the queue manager
 * (scheduler.ts), the smtp/relay agent (relay.ts), the local agent (local.ts), the
 * non-delivery notices (queue/bounce.ts) and the routing snapshot (compileDelivery()).
 * Exports compileDelivery() (config → DeliveryRuntime, used by `check`, start and reload)
 * and DeliveryService (start, notify, reload, stop). The gateway runs it in a worker thread
 * of its own (delivery/worker.ts), as Postfix runs qmgr and smtp beside smtpd.
 * DIAGNOSTICS: configuration problems are returned by compileDelivery(); delivery outcomes
 * are logged by the scheduler.
 * SEE ALSO: qmgr(8), smtp(8), local(8), bounce(8).
 */
import type { Config } from '../config/config.js';
import type { Problem } from '../errors.js';
import type { MailLogger } from '../log/logger.js';
import type { Table } from '../tables/table.js';
import { Maps } from '../tables/maps.js';
import type { DnsClient } from '../dns/resolver.js';
import type { QueueStore } from '../queue/store.js';
import { buildNotice, noticeRecipient, noticeSettings } from '../queue/bounce.js';
import type { MaildirStore } from '../mailbox/maildir.js';
import type { UserStore } from '../mailbox/users.js';
import type { DeliveryAgent } from './agent.js';
import { Router } from './router.js';
import { Scheduler, deliverySettings, type Committed, type DeliveryRuntime, type OutgoingNotice } from './scheduler.js';
import { SmtpAgent, smtpAgentOptions } from './relay.js';
import { LocalAgent, type ForwardInput } from './local.js';

/** compileDelivery - routing, alias_maps and queue-manager settings of one config snapshot */
export function compileDelivery(config: Config, openTable: (spec: string) => Table, problems: Problem[]): DeliveryRuntime {
  return {
    router: new Router(config, openTable, problems),
    settings: deliverySettings(config),
    aliases: new Maps('alias_maps', config.list('alias_maps').map(openTable)),
  };
}

export interface DeliveryServiceDeps {
  readonly config: Config;
  readonly runtime: DeliveryRuntime;
  readonly queue: QueueStore;
  readonly log: MailLogger;
  readonly dns: DnsClient;
  readonly users: UserStore;
  readonly mailboxes: MaildirStore;
  /** `ip:port` of our SMTP listeners, `*:port` for a wildcard bind (the loop check). */
  readonly ownEndpoints: ReadonlySet<string>;
  /** Whether an address belongs to this host (for `*:port` endpoints). */
  readonly isLocalAddress: (ip: string) => boolean;
  /** Finished messages' files, for reuse by smtpd's queue writer (SchedulerDeps.recycle). */
  readonly recycle?: (path: string) => void;
}

export class DeliveryService {
  private readonly deps: DeliveryServiceDeps;
  private config: Config;
  private runtime: DeliveryRuntime;
  private readonly agents = new Map<string, DeliveryAgent>();
  private readonly scheduler: Scheduler;

  constructor(deps: DeliveryServiceDeps) {
    this.deps = deps;
    this.config = deps.config;
    this.runtime = deps.runtime;
    const own = deps.ownEndpoints;
    // Agents keep the start-up settings (connection caches, limits); routing and scheduling
    // follow every reload.
    const smtp = new SmtpAgent(
      smtpAgentOptions(deps.config, {
        dns: deps.dns,
        log: deps.log,
        isSelf: (ip, port) => own.has(`${ip}:${port}`) || (own.has(`*:${port}`) && deps.isLocalAddress(ip)),
      }),
    );
    const snapshot = () => this.runtime;
    const local = new LocalAgent({
      users: deps.users,
      mailboxes: deps.mailboxes,
      get aliases() {
        return snapshot().aliases;
      },
      recipientDelimiter: deps.config.get('recipient_delimiter'),
      isLocalDomain: (d) => this.runtime.router.isLocalDomain(d) === true,
      forward: (input) => this.forward(input),
      myorigin: deps.config.get('myorigin'),
      configDir: deps.config.configDir,
      warn: (m) => deps.log.warn(m, { stage: 'local' }),
    });
    this.agents.set('smtp', smtp);
    this.agents.set('relay', smtp);
    this.agents.set('local', local);
    this.scheduler = new Scheduler({
      store: deps.queue,
      log: deps.log,
      runtime: () => this.runtime,
      agents: this.agents,
      notice: (kind, env, recipients, message, now) =>
        buildNotice({
          kind,
          envelope: env,
          recipients: recipients.map((r) => noticeRecipient(r.recipient, kind, { relay: r.relay, lastAttemptAt: r.lastAttempt })),
          message,
          now,
          settings: noticeSettings(this.config),
        }),
      submit: (n) => this.submit(n, 'bounce'),
      ...(deps.recycle ? { recycle: deps.recycle } : {}),
    });
  }

  start(): void {
    this.scheduler.start();
  }

  notify(id: string, committed?: Committed): void {
    this.scheduler.notify(id, committed);
  }

  /** reload - a new config snapshot (already validated by the caller) */
  reload(config: Config, runtime: DeliveryRuntime): void {
    this.config = config;
    this.runtime = runtime;
  }

  async stop(): Promise<void> {
    await this.scheduler.stop();
    const agents = new Set(this.agents.values());
    this.agents.clear();
    await Promise.all([...agents].map((a) => a.close()));
  }

  /** Queue a message the mail system itself sends (a notice, a forwarded copy). */
  private async submit(n: OutgoingNotice, service: string): Promise<string> {
    const w = this.deps.queue.createWriter();
    try {
      await w.write(n.message);
      await w.commit({ sender: n.sender, recipients: [...n.recipients], client: { address: '127.0.0.1', name: 'localhost' }, protocol: service, service }, 'incoming');
    } catch (e) {
      await w.abort();
      throw e;
    }
    return w.queueId;
  }

  private async forward(input: ForwardInput): Promise<string> {
    const id = await this.submit({ sender: input.sender, recipients: input.recipients, message: input.message }, 'local');
    this.deps.log.event({ event: 'info', stage: 'local', queue_id: id, from: input.sender, to: input.recipients, orig_to: input.origin, msg: `${id}: forwarded from ${input.origin} to ${input.recipients.join(', ')}` });
    this.scheduler.notify(id);
    return id;
  }
}
