/**
 * @module smtpd/limits
 * SUMMARY: per-client connection accounting (a small, in-process part of Postfix's anvil):
 * simultaneous connections per IP (smtpd_client_connection_count_limit) and connections
 * per time unit (smtpd_client_connection_rate_limit over anvil_rate_time_unit).
 * open() returns a refusal reason or null and must be paired with close().
 * SEE ALSO: anvil(8), postconf(5) smtpd_client_connection_count_limit.
 */

export class ConnectionLimits {
  private readonly counts = new Map<string, number>();
  private readonly rates = new Map<string, { start: number; n: number }>();

  /** Count a new connection; 'count' or 'rate' when it is over a limit (and not counted). */
  open(ip: string, countLimit: number, rateLimit: number, rateUnitMs: number, now = Date.now()): 'count' | 'rate' | null {
    const n = this.counts.get(ip) ?? 0;
    if (countLimit > 0 && n >= countLimit) return 'count';
    if (rateLimit > 0) {
      let r = this.rates.get(ip);
      if (!r || now - r.start >= rateUnitMs) {
        r = { start: now, n: 0 };
        this.rates.set(ip, r);
      }
      if (r.n >= rateLimit) return 'rate';
      r.n++;
    }
    this.counts.set(ip, n + 1);
    return null;
  }

  close(ip: string): void {
    const n = (this.counts.get(ip) ?? 1) - 1;
    if (n <= 0) this.counts.delete(ip);
    else this.counts.set(ip, n);
  }

  /** Forget rate windows that have ended (called from a timer). */
  prune(rateUnitMs: number, now = Date.now()): void {
    for (const [ip, r] of this.rates) if (now - r.start >= rateUnitMs) this.rates.delete(ip);
  }
}
