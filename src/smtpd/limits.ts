/**
 * @module smtpd/limits
 * SUMMARY: Postfix's anvil(8) in process: per (service, client) counters of simultaneous
 * connections and, over one anvil_rate_time_unit window, connection attempts, MAIL and RCPT
 * commands; plus the smtpd checks that turn them into Postfix's replies.
 * Exports ConnectionLimits (connect/disconnect/mail/rcpt/prune), AnvilSettings +
 * anvilSettings(config), anvilRange(ip), LimitRefusal (a 'defer' Decision with the anvil
 * warning text) and ErrorLimits + errorLimits(config) for the error tarpit that
 * smtp-server-patch.ts applies. Every event is counted, refused or not ("regardless of whether or not
 * Postfix actually accepts"); a connect must be paired with disconnect(key).
 * DIAGNOSTICS: none; the caller logs a refusal once.
 * SEE ALSO: anvil(8), postconf(5) smtpd_client_*_limit, anvil_rate_time_unit,
 * smtpd_client_ipv4/ipv6_prefix_length; Postfix smtpd.c smtpd_proto(), mail_cmd(), rcpt_cmd().
 */
import ipaddr from 'ipaddr.js';
import type { Config } from '../config/config.js';
import { reply } from '../mail/reply.js';
import { normalizeClientAddress } from '../mail/mynetworks.js';
import type { Decision } from '../restrictions/state.js';

/** The parameters of one runtime snapshot that the counters are compared with. */
export interface AnvilSettings {
  readonly hostname: string;
  readonly connectionCountLimit: number;
  readonly connectionRateLimit: number;
  readonly messageRateLimit: number;
  readonly recipientRateLimit: number;
  readonly rateUnitMs: number;
  readonly ipv4PrefixLength: number;
  readonly ipv6PrefixLength: number;
}

export function anvilSettings(config: Config): AnvilSettings {
  return {
    hostname: config.get('myhostname'),
    connectionCountLimit: config.int('smtpd_client_connection_count_limit'),
    connectionRateLimit: config.int('smtpd_client_connection_rate_limit'),
    messageRateLimit: config.int('smtpd_client_message_rate_limit'),
    recipientRateLimit: config.int('smtpd_client_recipient_rate_limit'),
    rateUnitMs: Math.max(1, config.time('anvil_rate_time_unit')),
    ipv4PrefixLength: clamp(config.int('smtpd_client_ipv4_prefix_length'), 0, 32),
    ipv6PrefixLength: clamp(config.int('smtpd_client_ipv6_prefix_length'), 0, 128),
  };
}

/**
 * The per-session error tarpit of smtpd(8): errors counted in one session (reset by a
 * delivered message), a delay on every reply from the soft limit on, 421 at the hard limit.
 */
export interface ErrorLimits {
  readonly hostname: string;
  readonly softErrorLimit: number;
  readonly hardErrorLimit: number;
  readonly errorSleepMs: number;
  readonly junkCommandLimit: number;
}

export function errorLimits(config: Config): ErrorLimits {
  return {
    hostname: config.get('myhostname'),
    softErrorLimit: config.int('smtpd_soft_error_limit'),
    // Postfix requires at least 1; 0 would hang up before the first command.
    hardErrorLimit: Math.max(1, config.int('smtpd_hard_error_limit')),
    errorSleepMs: config.time('smtpd_error_sleep_time'),
    junkCommandLimit: config.int('smtpd_junk_command_limit'),
  };
}

/** A limit that was hit: the Decision to answer and log, and anvil's warning for `msg`. */
export interface LimitRefusal {
  readonly decision: Extract<Decision, { kind: 'defer' }>;
  /** e.g. "Message delivery request rate limit exceeded: 3" (smtpd.c's msg_warn, without "from ..."). */
  readonly warning: string;
}

interface Remote {
  /** Connections open now. */
  count: number;
  /** Start of the current rate window; every rate shares it, as in anvil. */
  start: number;
  rate: number;
  mail: number;
  rcpt: number;
}

/**
 * The client's anvil key: its address, or its network when smtpd_client_ipv4/ipv6_prefix_length
 * aggregate (Postfix 3.8: IPv6 clients by /84 by default, because one host owns a whole /64).
 */
export function anvilRange(ip: string, ipv4PrefixLength = 32, ipv6PrefixLength = 84): string {
  const addr = normalizeClientAddress(ip);
  try {
    if (ipaddr.IPv4.isValidFourPartDecimal(addr)) {
      return ipv4PrefixLength >= 32 ? addr : `${ipaddr.IPv4.networkAddressFromCIDR(`${addr}/${ipv4PrefixLength}`).toString()}/${ipv4PrefixLength}`;
    }
    if (ipaddr.IPv6.isValid(addr)) {
      return ipv6PrefixLength >= 128 ? addr : `${ipaddr.IPv6.networkAddressFromCIDR(`${addr}/${ipv6PrefixLength}`).toString()}/${ipv6PrefixLength}`;
    }
  } catch {
    // Not an address we can mask: count it as itself.
  }
  return addr;
}

export class ConnectionLimits {
  private readonly remotes = new Map<string, Remote>();
  /** The longest window seen, so that a prune with a stale unit never cuts a live window. */
  private unitMs = 0;
  private nextPrune = 0;

  /** Records held (for tests and the metrics endpoint). */
  get size(): number {
    return this.remotes.size;
  }

  /**
   * anvil_clnt_connect() and smtpd_proto()'s checks: the connection is counted whatever the
   * verdict (it holds a slot until it closes), then count > limit, then rate > limit.
   */
  connect(service: string, ip: string, s: AnvilSettings, now = Date.now()): { key: string; refusal: LimitRefusal | null } {
    const key = this.key(service, ip, s);
    const r = this.touch(key, s.rateUnitMs, now);
    r.count++;
    r.rate++;
    let refusal: LimitRefusal | null = null;
    if (s.connectionCountLimit > 0 && r.count > s.connectionCountLimit) {
      refusal = refuse(421, '4.7.0', `${s.hostname} Error: too many connections from ${ip}`, 'smtpd_client_connection_count_limit', `Connection concurrency limit exceeded: ${r.count}`, true);
    } else if (s.connectionRateLimit > 0 && r.rate > s.connectionRateLimit) {
      // Postfix answers a rate excess with the same words as a concurrency excess.
      refusal = refuse(421, '4.7.0', `${s.hostname} Error: too many connections from ${ip}`, 'smtpd_client_connection_rate_limit', `Connection rate limit exceeded: ${r.rate}`, true);
    }
    return { key, refusal };
  }

  /** The connection counted under KEY has closed. */
  disconnect(key: string, now = Date.now()): void {
    const r = this.remotes.get(key);
    if (!r) return;
    if (r.count > 0) r.count--;
    // The rates outlive the connection until their window ends (anvil_remote_expire).
    if (r.count === 0 && expired(r, this.unitMs, now)) this.remotes.delete(key);
  }

  /** anvil_clnt_mail(): one MAIL FROM; over smtpd_client_message_rate_limit is a 450. */
  mail(service: string, ip: string, s: AnvilSettings, now = Date.now()): LimitRefusal | null {
    const r = this.touch(this.key(service, ip, s), s.rateUnitMs, now);
    r.mail++;
    if (s.messageRateLimit > 0 && r.mail > s.messageRateLimit) {
      return refuse(450, '4.7.1', `Error: too much mail from ${ip}`, 'smtpd_client_message_rate_limit', `Message delivery request rate limit exceeded: ${r.mail}`, false);
    }
    return null;
  }

  /** anvil_clnt_rcpt(): one RCPT TO; over smtpd_client_recipient_rate_limit is a 450. */
  rcpt(service: string, ip: string, s: AnvilSettings, now = Date.now()): LimitRefusal | null {
    const r = this.touch(this.key(service, ip, s), s.rateUnitMs, now);
    r.rcpt++;
    if (s.recipientRateLimit > 0 && r.rcpt > s.recipientRateLimit) {
      return refuse(450, '4.7.1', `Error: too many recipients from ${ip}`, 'smtpd_client_recipient_rate_limit', `Recipient address rate limit exceeded: ${r.rcpt}`, false);
    }
    return null;
  }

  /** Forget clients with no connection whose window has ended. */
  prune(rateUnitMs: number, now = Date.now()): void {
    const unit = Math.max(rateUnitMs, this.unitMs);
    for (const [key, r] of this.remotes) if (r.count === 0 && expired(r, unit, now)) this.remotes.delete(key);
    this.nextPrune = now + Math.max(unit, 1000);
  }

  private key(service: string, ip: string, s: AnvilSettings): string {
    return `${service}:${anvilRange(ip, s.ipv4PrefixLength, s.ipv6PrefixLength)}`;
  }

  /** The record of KEY with its window restarted if it has ended (ANVIL_REMOTE_INCR_RATE). */
  private touch(key: string, unitMs: number, now: number): Remote {
    this.unitMs = Math.max(this.unitMs, unitMs);
    // The sweep rides on the traffic itself, so the map stays bounded by the clients of
    // one window even where no timer prunes it.
    if (now >= this.nextPrune) this.prune(unitMs, now);
    let r = this.remotes.get(key);
    if (!r) {
      r = { count: 0, start: now, rate: 0, mail: 0, rcpt: 0 };
      this.remotes.set(key, r);
    } else if (r.start + unitMs < now) {
      r.start = now;
      r.rate = 0;
      r.mail = 0;
      r.rcpt = 0;
    }
    return r;
  }
}

function expired(r: Remote, unitMs: number, now: number): boolean {
  return r.start + unitMs < now;
}

function refuse(code: number, status: string, text: string, rule: string, warning: string, disconnect: boolean): LimitRefusal {
  return { decision: { kind: 'defer', reply: reply(code, status, text), rule, disconnect }, warning };
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
