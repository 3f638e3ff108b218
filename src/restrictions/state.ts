/**
 * @module restrictions/state
 * SUMMARY: the plain data the restriction engine reads (SessionState) and what it returns
 * (Decision, plus per-transaction side effects). No sockets, no I/O: smtpd, the policy
 * service and `greygate trace` all build a SessionState and ask the same engine.
 * SEE ALSO: Postfix smtpd_check.c (SMTPD_STATE), SMTPD_POLICY_README attribute names.
 */
import type { Reply } from '../mail/reply.js';

export type Stage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data' | 'end-of-data';

export interface ClientInfo {
  readonly address: string;
  readonly port: number;
  /** Forward-confirmed reverse name, or "unknown" (Postfix's client_name). */
  readonly name: string;
  /** First PTR name, not confirmed, or "unknown" (Postfix's reverse_client_name). */
  readonly reverseName: string;
  /**
   * How `name` was found (DnsClient.verifiedClientName): ok, temp (DNS trouble), perm (no
   * PTR) or forged (PTR does not map back). Absent: derived from name === "unknown" (perm).
   */
  readonly nameStatus?: 'ok' | 'temp' | 'perm' | 'forged';
  /** How `reverseName` was found; absent: derived from reverseName === "unknown". */
  readonly reverseNameStatus?: 'ok' | 'temp' | 'perm' | 'forged';
}

export interface SessionState {
  client: ClientInfo;
  /** HELO/EHLO argument; undefined before HELO. */
  helo?: string;
  protocol: 'SMTP' | 'ESMTP';
  /** MAIL FROM address without <>; "" for the null sender; undefined before MAIL. */
  sender?: string;
  /** The recipient being checked at the rcpt stage (without <>). */
  recipient?: string;
  /** Recipients accepted so far in this transaction. */
  recipients: string[];
  saslUsername?: string;
  saslMethod?: string;
  tls: boolean;
  /** Declared SIZE= or, at end-of-data, the real size. */
  size?: number;
  queueId?: string;
  /** Constant for all recipients of one message (policy "instance"). */
  instance: string;
  /** The client sent commands ahead of replies where it was not allowed to. */
  unauthPipelining: boolean;
  /** Local port the client connected to and the service name (smtpd, submission, smtps). */
  localPort: number;
  service: string;
  /** Local address the client connected to (policy server_address). */
  localAddress?: string;
  /**
   * Optional observer of every restriction step (`greygate trace`). Absent in the daemon:
   * the engine then only reads this property once per list walked and per table searched.
   */
  onStep?: (step: RestrictionStep) => void;
}

/**
 * What the restriction engine reports to SessionState.onStep, in evaluation order:
 *   list         a restriction list (or a class, or a table's right-hand side) is entered;
 *                depth 1 is a top-level smtpd_*_restrictions list
 *   restriction  one restriction was evaluated: its name as written, the status it returned
 *                and the provenance (FILE:LINE of a table entry, or the restriction name)
 *   lookup       one access(5) key was looked up in a check_*_access table
 */
export type RestrictionStep =
  | {
      readonly type: 'list';
      readonly stage: Stage;
      readonly depth: number;
      readonly replyClass: string;
      readonly replyName: string;
      readonly names: readonly string[];
    }
  | {
      readonly type: 'restriction';
      readonly stage: Stage;
      readonly depth: number;
      readonly name: string;
      readonly result: 'dunno' | 'ok' | 'reject';
      readonly rule: string;
      /** The reply, when result is 'reject' (a 4xx reply is a deferral). */
      readonly reply?: Reply;
    }
  | {
      readonly type: 'lookup';
      readonly stage: Stage;
      readonly depth: number;
      readonly table: string;
      readonly key: string;
      readonly result: 'hit' | 'miss' | 'error';
      readonly value?: string;
      /** FILE:LINE of the entry that matched. */
      readonly source?: string;
      readonly error?: string;
    };

/** Side effects of access(5) results that do not end evaluation; they apply to the message. */
export interface TransactionEffects {
  hold?: { text: string; rule: string };
  discard?: { text: string; rule: string };
  redirect?: { address: string; rule: string };
  filter?: { nexthop: string; rule: string };
  bcc?: { address: string; rule: string };
  prepend: Array<{ header: string; rule: string }>;
  /**
   * WARN / INFO / reject_warning lines to log. The engine's own complaints (a broken table
   * entry, a DNS list failure that was skipped, a policy server timeout) are 'warn' notes
   * whose text starts with "warning: ", as Postfix's msg_warn() lines do.
   */
  notes: Array<{ event: 'warn' | 'info' | 'reject_warning'; text: string; rule: string; stage: Stage; greylist?: GreylistNote }>;
}

/**
 * What check_greylist decided, on its 'info' note (the text is postgrey's log line): the
 * listener logs it as a 'greylist' event with these fields.
 */
export interface GreylistNote {
  readonly action: 'greylist' | 'pass';
  /** new, early-retry, client whitelist, recipient whitelist, client AWL, triplet found, organisation retry. */
  readonly reason: string;
  /** The triplet ("net/sender/recipient", or "org:DOMAIN/sender/recipient"). */
  readonly key?: string;
  /** Seconds the triplet waited (its first pass, when the X-Greylist header is added). */
  readonly delay?: number;
  /** Seconds still to wait (greylisted). */
  readonly remaining?: number;
  /** The grouping that made an organisation pass ("rdns:DOMAIN"). */
  readonly grouping?: string;
  /** The whitelist entry's FILE:LINE. */
  readonly rule?: string;
  /** The client IP's auto-whitelist count after this attempt. */
  readonly awl_count?: number;
}

export function newEffects(): TransactionEffects {
  return { prepend: [], notes: [] };
}

export type Decision =
  /** The stage passes (explicit or implicit permit). */
  | { readonly kind: 'permit'; readonly rule: string | null }
  | { readonly kind: 'reject'; readonly reply: Reply; readonly rule: string; readonly disconnect: boolean }
  | { readonly kind: 'defer'; readonly reply: Reply; readonly rule: string; readonly disconnect: boolean };
