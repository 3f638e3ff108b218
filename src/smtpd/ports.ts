/**
 * @module smtpd/ports
 * SUMMARY: what the SMTP listener needs from the rest of greygate, as narrow interfaces:
 * the policy engine, the queue writer, the user store, the DNS client and the runtime
 * snapshot (config + compiled policies) that a reload swaps. gateway.ts wires the real
 * implementations in; tests do the same with real ones on loopback.
 */
import type { TransactionObserver } from '../log/metrics.js';
import type { Config } from '../config/config.js';
import type { MailLogger } from '../log/logger.js';
import type { ClientInfo } from '../restrictions/state.js';
import type { Policy } from '../restrictions/policy.js';
import type { CompiledChecks } from '../checks/compile.js';

/** The restriction engine, as the listener sees it. */
export type SmtpdPolicy = Policy;

/** The envelope handed to the queue with the message. */
export interface AcceptedEnvelope {
  sender: string;
  recipients: string[];
  arrivalTime: number;
  size: number;
  client: { address: string; name: string; reverseName: string; port: number };
  helo: string | undefined;
  protocol: string;
  saslUsername: string | undefined;
  service: string;
  holdReason?: string;
  filter?: string;
  bodyType?: '7BIT' | '8BITMIME';
  smtputf8?: boolean;
}

export interface SmtpdQueueWriter {
  readonly queueId: string;
  write(chunk: Buffer): void | Promise<void>;
  commit(envelope: AcceptedEnvelope, target: 'incoming' | 'hold'): Promise<void>;
  abort(): Promise<void>;
}

export interface SmtpdQueue {
  createWriter(): SmtpdQueueWriter;
}

export interface SmtpdUsers {
  verify(name: string, password: string): Promise<boolean>;
}

export interface SmtpdDns {
  verifiedClientName(ip: string): Promise<Pick<ClientInfo, 'name' | 'reverseName' | 'nameStatus' | 'reverseNameStatus'>>;
}

/** Client address (and verified name) in a namadr list such as mynetworks; lookup errors answer false. */
export type IpMatcher = (ip: string, name?: string) => boolean;

/** Everything that a reload replaces at once. A session keeps the one it started with. */
export interface SmtpdRuntime {
  readonly config: Config;
  /** Policy per service name ("smtpd", "submission", "smtps"). */
  readonly policies: ReadonlyMap<string, SmtpdPolicy>;
  /** header_checks, mime_header_checks, nested_header_checks, body_checks. */
  readonly checks: CompiledChecks;
  readonly mynetworks: IpMatcher;
  readonly bareNewlineExclusions: IpMatcher;
  readonly xclientHosts: IpMatcher;
  readonly limitExceptions: IpMatcher;
}

export interface SmtpdDeps {
  runtime(): SmtpdRuntime;
  queue: SmtpdQueue;
  users: SmtpdUsers;
  dns: SmtpdDns;
  log: MailLogger;
  tls: { key: Buffer; cert: Buffer };
  /** Times each transaction; set when metrics_port is. */
  metrics?: TransactionObserver;
}
