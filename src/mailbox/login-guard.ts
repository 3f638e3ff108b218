/**
 * @module mailbox/login-guard
 * SUMMARY: password checks for POP3, IMAP (and later SMTP AUTH) with brute-force brakes:
 * every failed login is answered only after a delay (Dovecot's auth_failure_delay, 2 s),
 * and a client network or a user name with too many recent failures is refused for a while
 * without the password even being checked. Exports LoginGuard (login) and the outcome type.
 * DIAGNOSTICS: nothing is logged here (the listener logs the outcome with its session's
 * fields); a failing user database (StoreError from verify) is thrown to the caller, who
 * answers with a temporary failure.
 * SEE ALSO: Dovecot auth_failure_delay and auth-penalty; RFC 3501 11.1; RFC 2595 6.
 */
import { isIPv6 } from 'node:net';

/** The part of mailbox/users.ts UserStore the guard needs. */
export interface PasswordVerifier {
  verify(name: string, password: string): Promise<boolean>;
}

export interface LoginGuardOptions {
  /** How long a failed login waits before it is answered (default 2000 ms, as Dovecot). */
  readonly failureDelayMs?: number;
  /** Failures from one client network within `windowMs` before it is refused (default 10). */
  readonly maxFailuresPerClient?: number;
  /**
   * Failures for one user name within `windowMs` before it is refused (default 30). Higher
   * than the per-client limit: a refused user is refused from everywhere, so a low value
   * would let anybody lock the real user out; this one only stops a distributed guess.
   */
  readonly maxFailuresPerUser?: number;
  /** How long a failure counts (default 15 min). */
  readonly windowMs?: number;
  /** Clients and users tracked at most (default 100,000); the oldest are forgotten first. */
  readonly maxEntries?: number;
}

export type LoginOutcome =
  /** USER is the canonical (case-folded) name to open the mailbox of. */
  | { readonly kind: 'ok'; readonly user: string }
  | { readonly kind: 'failed' }
  /** Too many failures: refused without a check; try again after `retryAfterMs`. */
  | { readonly kind: 'refused'; readonly retryAfterMs: number; readonly by: 'client' | 'user' };

const DEFAULTS = {
  failureDelayMs: 2000,
  maxFailuresPerClient: 10,
  maxFailuresPerUser: 30,
  windowMs: 15 * 60 * 1000,
  maxEntries: 100_000,
};

/**
 * The network a client is counted under: the IPv4 address, or the IPv6 /64 (one customer
 * gets a whole /64, so counting single IPv6 addresses would count nothing).
 */
export function clientKey(ip: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4) return v4[1]!;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

interface Tally {
  /** Failure times (ms), oldest first, at most the limit. */
  failures: number[];
  /** Checks under way: counted with the failures so parallel guesses cannot slip through. */
  inFlight: number;
}

export class LoginGuard {
  private readonly users: PasswordVerifier;
  private readonly opts: typeof DEFAULTS;
  private readonly clients = new Map<string, Tally>();
  private readonly names = new Map<string, Tally>();

  constructor(users: PasswordVerifier, options: LoginGuardOptions = {}) {
    this.users = users;
    this.opts = { ...DEFAULTS, ...definedOnly(options) };
  }

  /**
   * Check USER's PASSWORD for a client at CLIENT_IP. Failures and refusals resolve only
   * after the failure delay. Throws what the verifier throws (a failed user database).
   */
  async login(user: string, password: string, clientIp: string): Promise<LoginOutcome> {
    const now = Date.now();
    const name = user.toLowerCase();
    const client = this.record(this.clients, clientKey(clientIp), now);
    const named = this.record(this.names, name, now);
    const refusal = this.refusal(client, this.opts.maxFailuresPerClient, 'client', now) ?? this.refusal(named, this.opts.maxFailuresPerUser, 'user', now);
    if (refusal) {
      await delay(this.opts.failureDelayMs);
      return refusal;
    }
    client.inFlight++;
    named.inFlight++;
    let ok: boolean;
    try {
      ok = await this.users.verify(user, password);
    } finally {
      client.inFlight--;
      named.inFlight--;
    }
    if (ok) {
      // The user proved who they are: guesses at their name stop counting against them.
      // The client's count stays (one valid account must not reset a guesser's budget).
      named.failures.length = 0;
      return { kind: 'ok', user: name };
    }
    const at = Date.now();
    push(client, at, this.opts.maxFailuresPerClient);
    push(named, at, this.opts.maxFailuresPerUser);
    await delay(this.opts.failureDelayMs);
    return { kind: 'failed' };
  }

  /** Failures counted now for CLIENT_IP's network (for tests and diagnostics). */
  failuresOf(clientIp: string): number {
    const r = this.clients.get(clientKey(clientIp));
    if (!r) return 0;
    const since = Date.now() - this.opts.windowMs;
    return r.failures.filter((t) => t > since).length;
  }

  private refusal(r: Tally, limit: number, by: 'client' | 'user', now: number): LoginOutcome | null {
    if (limit <= 0 || r.failures.length + r.inFlight < limit) return null;
    // Refused until the oldest failure that keeps it at the limit leaves the window.
    const oldest = r.failures[Math.max(0, r.failures.length - limit)] ?? now;
    return { kind: 'refused', by, retryAfterMs: Math.max(1, oldest + this.opts.windowMs - now) };
  }

  /** The record of KEY with its expired failures dropped; created when missing. */
  private record(map: Map<string, Tally>, key: string, now: number): Tally {
    let r = map.get(key);
    if (r === undefined) {
      this.prune(map, now);
      r = { failures: [], inFlight: 0 };
    } else {
      map.delete(key);
    }
    // Map order is recency order: the least recently used are pruned first.
    map.set(key, r);
    const since = now - this.opts.windowMs;
    while (r.failures.length > 0 && r.failures[0]! <= since) r.failures.shift();
    return r;
  }

  private prune(map: Map<string, Tally>, now: number): void {
    if (map.size < this.opts.maxEntries) return;
    const since = now - this.opts.windowMs;
    for (const [k, r] of map) {
      if (r.inFlight === 0 && (r.failures.length === 0 || r.failures[r.failures.length - 1]! <= since)) map.delete(k);
    }
    for (const k of map.keys()) {
      if (map.size < this.opts.maxEntries) break;
      map.delete(k);
    }
  }
}

function push(r: Tally, at: number, limit: number): void {
  r.failures.push(at);
  // Only the newest LIMIT failures matter for the refusal.
  if (r.failures.length > Math.max(1, limit)) r.failures.shift();
}

function delay(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

function definedOnly(o: LoginGuardOptions): Partial<typeof DEFAULTS> {
  const out: Partial<typeof DEFAULTS> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as { [key: string]: unknown })[k] = v;
  return out;
}
