/**
 * @module policyd/server
 * SUMMARY: greygate's Postfix policy delegation server (postgrey-compatible), so that an
 * existing Postfix can use greygate's greylisting and access maps with
 * `check_policy_service inet:HOST:PORT`. PolicyServiceListener listens on one address
 * (listen/port/close, like smtpd's SmtpListener); each connection carries any number of
 * requests, answered one at a time and in order: attributes -> SessionState -> the runtime
 * snapshot's "policyd" Policy (policy_service_restrictions, policyd/policy.ts) -> checkRcpt
 * -> "action=...\n\n" (policyd/action.ts). The replies decided in one turn of the event loop
 * are written together right after it (send()): with many Postfix processes asking at
 * once, the readers woken by the first reply find the next ones already there.
 * DIAGNOSTICS: garbage lines are logged (warn) and ignored. A request without
 * client_address, client_name, sender or recipient, or with a bad client_address, is
 * answered DUNNO with a warning, as postgrey does. A request whose type is not
 * smtpd_access_policy is not answered: it is logged and the connection closed, and so is a
 * request that fails (engine error, no policy, time limit), as SMTPD_POLICY_README asks
 * ("must not send a reply... log a warning and disconnect"); Postfix then applies its
 * smtpd_policy_service_default_action (451 4.3.5 Server configuration problem). Every
 * decision is logged once (see logDecision); check_greylist's answers as 'greylist' events.
 * SEE ALSO: SMTPD_POLICY_README; postgrey(8); Postfix smtpd_check.c check_policy_service().
 */
import { createServer, isIP, type Server, type Socket } from 'node:net';
import type { Config } from '../config/config.js';
import type { MailLogger } from '../log/logger.js';
import type { EventRecord, LogEvent } from '../log/events.js';
import type { Policy } from '../restrictions/policy.js';
import { newEffects, type Decision, type GreylistNote, type SessionState, type TransactionEffects } from '../restrictions/state.js';
import { PolicyRequestReader, formatPolicyReply, type PolicyAttributes } from './protocol.js';
import { policyAction, type PolicyVerdict } from './action.js';
import { boundPort, listenOn } from '../util/listen.js';

/** The key of the policy service's Policy in the runtime snapshot's policies. */
export const POLICYD_POLICY = 'policyd';

export interface PolicyServiceSpec {
  readonly host: string;
  readonly port: number;
}

/** What a reload replaces at once (smtpd's SmtpdRuntime satisfies it). */
export interface PolicydRuntime {
  readonly config: Config;
  readonly policies: ReadonlyMap<string, Policy>;
}

export interface PolicydDeps {
  runtime(): PolicydRuntime;
  log: MailLogger;
  /** Close a connection idle this long (default 10 min; Postfix's own max_idle is 300 s). */
  readonly idleTimeoutMs?: number;
  /** Give up on one request after this long: no answer, disconnect (default 60 s < Postfix's 100 s). */
  readonly requestTimeoutMs?: number;
}

const REQUIRED = ['client_address', 'client_name', 'recipient', 'sender'] as const;
const GARBAGE_LOGGED = 10;

class RequestFailure extends Error {}

export class PolicyServiceListener {
  readonly spec: PolicyServiceSpec;
  private readonly deps: PolicydDeps;
  private readonly server: Server;
  private readonly connections = new Set<Connection>();
  readonly replies = new ReplyCache();
  // Replies decided in this turn of the event loop, written together once its I/O
  // callbacks are done (setImmediate): the client's processes, woken by the first, find the
  // others already there, which saves a wake-up per reply. Order per connection is kept.
  private outSockets: Socket[] = [];
  private outData: Buffer[] = [];
  private outScheduled = false;
  private nextId = 0;
  private closing = false;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(spec: PolicyServiceSpec, deps: PolicydDeps) {
    this.spec = spec;
    this.deps = deps;
    this.server = createServer((socket) => this.accept(socket));
    this.server.on('error', (err) => deps.log.error(`policyd: ${err.message}`, { service: 'policyd' }));
  }

  async listen(): Promise<void> {
    await listenOn(this.server, this.spec.port, this.spec.host);
    this.startSweeper();
  }

  /** One timer for all requests (not one per request): a decision that never comes. */
  private startSweeper(): void {
    const limit = this.deps.requestTimeoutMs ?? 60_000;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const c of this.connections) {
        if (c.since > 0 && now - c.since > limit) {
          this.logFailure(c, new RequestFailure(`no decision after ${limit} ms`));
          c.destroy();
        }
      }
    }, Math.max(50, Math.min(1000, limit / 4)));
    this.sweeper.unref();
  }

  /** Queue DATA for SOCKET; it is written after the current I/O callbacks (see outSockets). */
  send(socket: Socket, data: Buffer): void {
    this.outSockets.push(socket);
    this.outData.push(data);
    if (!this.outScheduled) {
      this.outScheduled = true;
      setImmediate(this.flushReplies);
    }
  }

  /** Write every queued reply now (also before a connection is ended, so none is lost). */
  readonly flushReplies = (): void => {
    this.outScheduled = false;
    const sockets = this.outSockets;
    const data = this.outData;
    if (sockets.length === 0) return;
    this.outSockets = [];
    this.outData = [];
    for (let i = 0; i < sockets.length; i++) {
      const so = sockets[i]!;
      if (!so.destroyed) so.write(data[i]!);
    }
  };

  /** The bound port (useful with port 0 in tests). */
  port(): number {
    return boundPort(this.server, this.spec.port);
  }

  /** Stop accepting; let requests in progress be answered, then close every connection. */
  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    if (this.sweeper) clearInterval(this.sweeper);
    const closed = new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    const deadline = Date.now() + graceMs;
    for (const c of this.connections) c.endWhenIdle();
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const c of this.connections) c.destroy();
    await closed;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const c = new Connection(this, socket, (this.nextId++).toString(36));
    this.connections.add(c);
    socket.once('close', () => this.connections.delete(c));
  }

  /**
   * Answer one request; null means "no answer" (the caller disconnects). A Promise only
   * when there is a decision to wait for; a thrown error or a rejection is a failed request.
   */
  answer(conn: Connection, attrs: PolicyAttributes): string | null | Promise<string | null> {
    const log = this.deps.log;
    const type = attrs.get('request') ?? '';
    if (type !== 'smtpd_access_policy') {
      log.warn(`policyd: unrecognized request type: '${type.slice(0, 100)}'`, { service: 'policyd', session: conn.id, client_ip: conn.peer });
      return null;
    }
    for (const name of REQUIRED) {
      if (!attrs.has(name)) {
        log.warn(`policyd: attribute missing: ${name}`, { service: 'policyd', session: conn.id, client_ip: conn.peer });
        return 'DUNNO';
      }
    }
    const address = attrs.get('client_address')!;
    if (isIP(address) === 0) {
      log.warn(`policyd: can't parse client_address: ${address.slice(0, 100)}`, { service: 'policyd', session: conn.id, client_ip: conn.peer });
      return 'DUNNO';
    }
    const rt = this.deps.runtime();
    const policy = rt.policies.get(POLICYD_POLICY);
    if (!policy) throw new RequestFailure(`no "${POLICYD_POLICY}" policy in the running configuration`);
    const state = sessionStateOf(attrs);
    const fx = newEffects();
    return policy.checkRcpt(state, fx).then((d) => {
      const verdict = policyAction(d, fx);
      this.logDecision(conn, state, fx, d, verdict);
      return verdict.action;
    });
  }

  /**
   * One record per decision: check_greylist's note (postgrey's log line, with its fields
   * flattened as smtpd logs them) becomes the 'greylist' event, carrying the reply when it
   * greylisted; the action sent to Postfix is `policy_action`;
   * any other reject/defer, and a permit that sends an action (PREPEND, HOLD ...), is its own
   * event; a plain DUNNO without a note is not logged.
   */
  private logDecision(conn: Connection, s: SessionState, fx: TransactionEffects, d: Decision, v: PolicyVerdict): void {
    const log = this.deps.log;
    const refused = d.kind !== 'permit';
    let decisionLogged = false;
    for (const n of fx.notes) {
      const g = n.greylist;
      if (g) {
        // The note of the greylisting that decided carries the reply sent.
        let decided: Decision | null = null;
        let action: string | undefined;
        if (v.kind === 'greylist' && g.action === 'greylist' && !decisionLogged) {
          decided = d;
          action = v.action;
          decisionLogged = true;
        } else if (!refused && v.kind === 'prepend' && g.delay !== undefined && v.rule === n.rule) {
          action = v.action;
          decisionLogged = true;
        }
        log.event(greylistRecord(conn, s, g, decided ? (decided.rule ?? n.rule) : n.rule, decided, action, n.text));
        continue;
      }
      const rec = baseRecord(n.event, conn, s);
      rec.rule = n.rule;
      rec.reply = n.text;
      rec.msg = `${s.queueId ?? 'NOQUEUE'}: ${n.event}: RCPT from ${s.client.name}[${s.client.address}]: ${n.text}`;
      log.event(rec);
    }
    if (decisionLogged || v.kind === 'dunno') return;
    const envelope = `from=<${s.sender ?? ''}> to=<${s.recipient ?? ''}> proto=${s.protocol} helo=<${s.helo ?? ''}>`;
    const label = `${s.client.name}[${s.client.address}]`;
    if (refused) {
      const rec = baseRecord(v.kind === 'greylist' ? 'greylist' : d.kind, conn, s);
      withReply(rec, d);
      rec.rule = d.rule;
      rec.policy_action = v.action;
      rec.msg = `${s.queueId ?? 'NOQUEUE'}: reject: RCPT from ${label}: ${String(rec.reply)}; ${envelope}`;
      log.event(rec);
      return;
    }
    const rec = baseRecord(v.kind as LogEvent, conn, s);
    if (v.rule !== null) rec.rule = v.rule;
    rec.policy_action = v.action;
    if (v.dropped.length) rec.dropped = v.dropped;
    rec.msg = `${s.queueId ?? 'NOQUEUE'}: ${v.kind}: RCPT from ${label}: ${v.action}; ${envelope}`;
    log.event(rec);
  }

  logFailure(conn: Connection, err: unknown): void {
    const msg = err instanceof Error ? err.message : String(err);
    const fields: Record<string, unknown> = { service: 'policyd', session: conn.id, client_ip: conn.peer };
    if (!(err instanceof RequestFailure)) fields.stack = err instanceof Error ? err.stack : undefined;
    this.deps.log.error(`policyd: request failed, closing the connection without an answer: ${msg}`, fields);
  }

  /** postgrey's "ignoring garbage: <...>", at most GARBAGE_LOGGED times per connection. */
  logGarbage(conn: Connection, line: string, count: number): void {
    if (count > GARBAGE_LOGGED) return;
    const more = count === GARBAGE_LOGGED ? ' (further garbage on this connection is not logged)' : '';
    this.deps.log.warn(`policyd: ignoring garbage: <${line}>${more}`, { service: 'policyd', session: conn.id, client_ip: conn.peer });
  }

  get idleTimeoutMs(): number {
    return this.deps.idleTimeoutMs ?? 600_000;
  }
}

/** One client connection: its reader and its queue of requests, answered in order. */
class Connection {
  readonly socket: Socket;
  readonly id: string;
  readonly peer: string;
  private readonly owner: PolicyServiceListener;
  private readonly queue: PolicyAttributes[] = [];
  private busy = false;
  private ending = false;
  private garbage = 0;
  /** When the request being decided arrived (0: none). */
  since = 0;
  private dead = false;

  constructor(owner: PolicyServiceListener, socket: Socket, id: string) {
    this.owner = owner;
    this.socket = socket;
    this.id = `policyd-${id}`;
    this.peer = socket.remoteAddress ?? '';
    socket.setNoDelay(true);
    socket.setTimeout(owner.idleTimeoutMs);
    socket.on('timeout', () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.dead = true;
    });
    const reader = new PolicyRequestReader({
      onRequest: (attrs) => {
        // A lone empty line between requests is tolerated silently.
        if (attrs.size === 0) return;
        this.queue.push(attrs);
        if (!this.busy) void this.drain();
      },
      onGarbage: (line) => {
        this.owner.logGarbage(this, line, ++this.garbage);
      },
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
  }

  /** Close once every request received so far is answered. */
  endWhenIdle(): void {
    this.ending = true;
    if (!this.busy) this.end();
  }

  /** Send what is queued for this connection, then close it. */
  private end(): void {
    this.owner.flushReplies();
    this.socket.end();
  }

  /** Close at once, after sending the replies already decided. */
  destroy(): void {
    this.owner.flushReplies();
    this.socket.destroy();
  }

  private async drain(): Promise<void> {
    this.busy = true;
    while (this.queue.length > 0 && !this.dead) {
      const attrs = this.queue.shift()!;
      let action: string | null;
      this.since = Date.now();
      try {
        const a = this.owner.answer(this, attrs);
        action = a instanceof Promise ? await a : a;
        this.since = 0;
      } catch (err) {
        this.since = 0;
        this.owner.logFailure(this, err);
        this.queue.length = 0;
        this.destroy();
        break;
      }
      if (action === null) {
        this.queue.length = 0;
        this.end();
        break;
      }
      if (!this.dead) this.owner.send(this.socket, this.owner.replies.get(action));
    }
    this.busy = false;
    if (this.ending) this.end();
  }
}

/** The fields every policy-service record starts with, in the order smtpd's records have them. */
function baseRecord(event: LogEvent, conn: Connection, s: SessionState): EventRecord {
  const r: EventRecord = { event, stage: 'rcpt', service: 'policyd', session: conn.id, client_ip: s.client.address, client_name: s.client.name };
  if (s.queueId) r.queue_id = s.queueId;
  if (s.helo !== undefined) r.helo = s.helo;
  r.from = s.sender ?? '';
  r.to = s.recipient ?? '';
  if (s.instance) r.instance = s.instance;
  return r;
}

/**
 * A 'greylist' record: the same fields as smtpd's (action, reason, key, delay ...), in the
 * order the note gives them, built as one object (this is the record of every lookup);
 * absent fields are undefined, which the log leaves out.
 */
function greylistRecord(conn: Connection, s: SessionState, g: GreylistNote, rule: string, d: Decision | null, action: string | undefined, msg: string): EventRecord {
  const reply = d && d.kind !== 'permit' ? d.reply : undefined;
  return {
    event: 'greylist',
    stage: 'rcpt',
    service: 'policyd',
    session: conn.id,
    client_ip: s.client.address,
    client_name: s.client.name,
    queue_id: s.queueId || undefined,
    helo: s.helo,
    from: s.sender ?? '',
    to: s.recipient ?? '',
    instance: s.instance || undefined,
    // A whitelist pass's note has its rule (FILE:LINE) and none of key ... awl_count.
    action: g.action,
    reason: g.reason,
    key: g.key,
    remaining: g.remaining,
    delay: g.delay,
    grouping: g.grouping,
    awl_count: g.awl_count,
    rule,
    code: reply?.code,
    status: reply?.status,
    reply: reply ? `${reply.code} ${reply.status} ${reply.text}` : undefined,
    policy_action: action,
    msg,
  };
}

/** The reply of a refusal, as code, status and text. */
function withReply(rec: EventRecord, d: Decision): void {
  if (d.kind === 'permit') return;
  rec.code = d.reply.code;
  rec.status = d.reply.status;
  rec.reply = `${d.reply.code} ${d.reply.status} ${d.reply.text}`;
}

/**
 * The bytes of "action=ACTION\n\n", kept for the actions that repeat (DUNNO, the greylisting
 * reply for each number of seconds left, PREPEND with its date): one encoding per second
 * instead of one per reply.
 */
class ReplyCache {
  private readonly map = new Map<string, Buffer>();

  get(action: string): Buffer {
    let b = this.map.get(action);
    if (b === undefined) {
      b = Buffer.from(formatPolicyReply(action), 'utf8');
      if (this.map.size >= 512) this.map.clear();
      this.map.set(action, b);
    }
    return b;
  }
}

function isEsmtp(p: string | undefined): boolean {
  return p === 'ESMTP' || (p !== undefined && p.length === 5 && p.toUpperCase() === 'ESMTP');
}

/** Build the engine's view of the SMTP session from the request's attributes. */
export function sessionStateOf(a: PolicyAttributes): SessionState {
  const name = a.get('client_name') || 'unknown';
  const helo = a.get('helo_name');
  const sasl = a.get('sasl_username');
  const method = a.get('sasl_method');
  const size = Number(a.get('size') ?? '0');
  const queueId = a.get('queue_id');
  const serverAddress = a.get('server_address');
  const s: SessionState = {
    client: {
      address: a.get('client_address') ?? '',
      port: Number(a.get('client_port') ?? '0') || 0,
      name,
      reverseName: a.get('reverse_client_name') || name,
    },
    protocol: isEsmtp(a.get('protocol_name')) ? 'ESMTP' : 'SMTP',
    sender: a.get('sender') ?? '',
    recipient: a.get('recipient') ?? '',
    recipients: [],
    tls: (a.get('encryption_protocol') ?? '') !== '',
    instance: a.get('instance') ?? '',
    unauthPipelining: false,
    localPort: Number(a.get('server_port') ?? '0') || 0,
    service: 'policyd',
  };
  if (helo) s.helo = helo;
  if (sasl) s.saslUsername = sasl;
  if (method) s.saslMethod = method;
  if (Number.isFinite(size) && size > 0) s.size = size;
  if (queueId) s.queueId = queueId;
  if (serverAddress) s.localAddress = serverAddress;
  return s;
}
