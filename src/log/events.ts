/**
 * @module log/events
 * SUMMARY: the decision log's record type: the only place its field names are spelled.
 * Every decision (connect, reject, defer, greylist, accept, discard, hold, warn, relay,
 * deliver, bounce, expire ...) is one record, written once by the caller that acted on it.
 * SEE ALSO: design.md "Log", Postfix log_whatsup() in smtpd_check.c.
 */

/** Every event value the gateway logs, in one list (`greygate log --event` checks against it). */
export const LOG_EVENTS = [
  'connect',
  'disconnect',
  'reject',
  'reject_warning',
  'defer',
  'greylist',
  'accept',
  'discard',
  'hold',
  'warn',
  'info',
  'prepend',
  'replace',
  'strip',
  'ignore',
  'dunno',
  'pass',
  'redirect',
  'filter',
  'bcc',
  'relay',
  'deliver',
  'bounce',
  'expire',
  'auth',
  'starttls',
  'xclient',
  'config',
  'reload',
  'start',
  'stop',
  'error',
] as const;

export type LogEvent = (typeof LOG_EVENTS)[number];

export interface EventRecord {
  event: LogEvent;
  stage?: string;
  session?: string;
  queue_id?: string;
  client_ip?: string;
  client_name?: string;
  helo?: string;
  from?: string;
  to?: string | string[];
  code?: number;
  status?: string;
  reply?: string;
  rule?: string;
  size?: number;
  /** Anything else the event needs (relay, delay, dsn, sasl_username, ...). */
  [extra: string]: unknown;
}
