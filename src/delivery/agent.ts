/**
 * @module delivery/agent
 * SUMMARY: the contract between the scheduler (qmgr) and the delivery agents (smtp, local):
 * a DeliveryJob is one message for some of its recipients to one transport:nexthop, and an
 * agent answers with one RecipientOutcome per recipient, in the job's order.
 * Expected outcomes (delivered, deferred, bounced) are values; an agent throws only for bugs.
 * SEE ALSO: Postfix qmgr_deliver.c, deliver_request.h, smtp_trouble.c.
 */
import type { DsnResult, Envelope } from '../queue/envelope.js';

/** One message, some of its recipients, one destination. */
export interface DeliveryJob {
  readonly queueId: string;
  /** The envelope as the scheduler holds it (read-only for agents). */
  readonly envelope: Envelope;
  /** Recipient addresses for this job (after redirect/bcc expansion), in envelope order. */
  readonly recipients: readonly JobRecipient[];
  /** Transport name from the route (`smtp`, `relay`, `local`, ...). */
  readonly transport: string;
  /** Next hop as routed: `[host]:port`, `host:port`, `host`, or the local hostname. */
  readonly nexthop: string;
  /** The whole message as delivered: prepended headers and the stored bytes, CRLF lines. */
  readonly message: Buffer;
}

export interface JobRecipient {
  /** Index in envelope.recipients; the scheduler uses it to record the outcome. */
  readonly index: number;
  readonly address: string;
  readonly originalAddress: string;
}

export type RecipientOutcome =
  | {
      readonly kind: 'delivered';
      /** `host[ip]:port` for SMTP, `local` for mailboxes, `none` for discard. */
      readonly relay: string;
      readonly dsn: DsnResult;
      /** The remote reply or a local description ("delivered to maildir"). */
      readonly reply: string;
    }
  | { readonly kind: 'deferred'; readonly relay: string; readonly dsn: DsnResult; readonly reason: string }
  | { readonly kind: 'bounced'; readonly relay: string; readonly dsn: DsnResult; readonly reason: string };

export interface DeliveryAgent {
  /** Deliver; resolves to exactly one outcome per job recipient, in order. Never rejects. */
  deliver(job: DeliveryJob): Promise<RecipientOutcome[]>;
  /** Close cached connections and files. */
  close(): Promise<void>;
}

/** Every recipient of a job gets the same outcome (a connection failure, a 5xx to MAIL FROM). */
export function allRecipients(job: DeliveryJob, outcome: RecipientOutcome): RecipientOutcome[] {
  return job.recipients.map(() => outcome);
}
