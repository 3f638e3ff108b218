/**
 * @module queue/admin
 * SUMMARY: the back end of postqueue and postsuper: listQueue (showq), findMessage, and
 * delete/hold/release/requeue/expire (*One -> acted?, *All -> count), flushAll/One/Site.
 * Each is a rename, unlink, utimes or chmod of one file, so it is safe while a gateway runs
 * in another process: ENOENT means someone else moved the file, and per-ID operations look
 * in every queue twice, as postsuper does. A flush only makes messages due (mtime = now)
 * and writes the `queue/flush` trigger; the scheduler notices on its next scan.
 * DIAGNOSTICS: QueueIOError from the store; an invalid queue ID is never acted on.
 * SEE ALSO: Postfix postsuper.c, showq.c, flush.c flush_one_file(); postsuper(1), postqueue(1).
 */
import { isQueueId } from './queue-id.js';
import { MESSAGE_QUEUES, type MessageQueue, type QueueMessage, type QueueName, type QueueStore } from './store.js';
import type { Envelope } from './envelope.js';

/** The order showq lists queues in (Postfix 3.x). */
export const SHOWQ_QUEUES: readonly MessageQueue[] = ['active', 'incoming', 'deferred', 'hold'];

export interface ListedRecipient {
  readonly address: string;
  readonly origAddress: string;
  readonly delayReason?: string;
}

/** One message as postqueue shows it. */
export interface ListedMessage {
  readonly queue: MessageQueue;
  readonly id: string;
  /** Milliseconds since the epoch. */
  readonly arrivalTime: number;
  readonly messageSize: number;
  readonly forcedExpire: boolean;
  /** Raw envelope sender; '' is the null sender. */
  readonly sender: string;
  readonly recipients: readonly ListedRecipient[];
}

export interface QueueProblem {
  readonly queue: QueueName;
  readonly id: string;
  readonly reason: string;
}

export interface QueueListing {
  readonly messages: ListedMessage[];
  /** Files that could not be read; they are reported, never touched, by a listing. */
  readonly problems: QueueProblem[];
}

/**
 * listedRecipients - the recipients that still need delivery, in showq's order
 * showq prints the defer logfile (recipients with a reason) first and then the queue file's
 * remaining recipients, so that is the order here too.
 */
export function listedRecipients(env: Envelope): ListedRecipient[] {
  const open = env.recipients.filter((r) => r.status === 'pending' || r.status === 'deferred');
  const withReason = open.filter((r) => r.status === 'deferred' && r.delayReason);
  const rest = open.filter((r) => !(r.status === 'deferred' && r.delayReason));
  return [
    ...withReason.map((r) => ({ address: r.address, origAddress: r.originalAddress, delayReason: r.delayReason! })),
    ...rest.map((r) => ({ address: r.address, origAddress: r.originalAddress })),
  ];
}

function toListed(m: QueueMessage & { queue: MessageQueue }): ListedMessage {
  const env = m.envelope;
  return {
    queue: m.queue,
    id: m.id,
    arrivalTime: env.arrivalTime,
    messageSize: env.messageSize,
    forcedExpire: m.forcedExpire,
    sender: env.sender,
    recipients: listedRecipients(env),
  };
}

/** listQueue - every readable message in QUEUES, queue by queue */
export async function listQueue(store: QueueStore, queues: readonly MessageQueue[] = SHOWQ_QUEUES): Promise<QueueListing> {
  const messages: ListedMessage[] = [];
  const problems: QueueProblem[] = [];
  for (const queue of queues) {
    const files = await store.list(queue);
    for (let i = 0; i < files.length; i += 32) {
      const reads = await Promise.all(files.slice(i, i + 32).map((f) => store.read(queue, f.id).then((r) => ({ f, r }))));
      for (const { f, r } of reads) {
        // A message that moved meanwhile shows up in its new queue, or not at all (as in showq).
        if (r.kind === 'ok') messages.push(toListed({ ...r.message, queue }));
        else if (r.kind === 'corrupt') problems.push({ queue, id: f.id, reason: r.reason });
      }
    }
  }
  return { messages, problems };
}

/** findMessage - read ID from whichever of QUEUES holds it */
export async function findMessage(store: QueueStore, id: string, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<QueueMessage | null> {
  if (!isQueueId(id)) return null;
  for (let tries = 0; tries < 2; tries++) {
    for (const q of queues) {
      const r = await store.read(q, id);
      if (r.kind === 'ok') return r.message;
    }
  }
  return null;
}

/* Per-ID operations try each candidate queue, twice: the file may move under us. */
async function onFirst(id: string, queues: readonly MessageQueue[], act: (q: MessageQueue) => Promise<boolean>): Promise<boolean> {
  if (!isQueueId(id)) return false;
  for (let tries = 0; tries < 2; tries++) {
    for (const q of queues) if (await act(q)) return true;
  }
  return false;
}

async function onAll(store: QueueStore, queues: readonly MessageQueue[], act: (q: MessageQueue, id: string) => Promise<boolean>): Promise<number> {
  let n = 0;
  for (const q of queues) {
    for (const f of await store.list(q)) if (await act(q, f.id)) n++;
  }
  return n;
}

/** deleteOne - postsuper -d ID: remove it from the first of QUEUES that has it */
export function deleteOne(store: QueueStore, id: string, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<boolean> {
  return onFirst(id, queues, (q) => store.remove(q, id));
}

/** deleteAll - postsuper -d ALL [queue...] */
export function deleteAll(store: QueueStore, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<number> {
  return onAll(store, queues, (q, id) => store.remove(q, id));
}

/** holdOne - postsuper -h ID: move to hold from incoming, active or deferred */
export async function holdOne(store: QueueStore, id: string, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<boolean> {
  return onFirst(id, queues.filter((q) => q !== 'hold'), (q) => store.move(id, q, 'hold'));
}

/** holdAll - postsuper -h ALL [queue...] */
export async function holdAll(store: QueueStore, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<number> {
  const n = await onAll(store, queues.filter((q) => q !== 'hold'), (q, id) => store.move(id, q, 'hold', { sync: false }));
  if (n > 0 && store.fsync) await store.syncDir('hold');
  return n;
}

/** releaseOne - postsuper -H ID: hold to deferred, due now (postsuper(1): released mail goes to deferred) */
export async function releaseOne(store: QueueStore, id: string, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<boolean> {
  if (!queues.includes('hold')) return false;
  return onFirst(id, ['hold'], () => store.move(id, 'hold', 'deferred', { resetTime: true }));
}

/** releaseAll - postsuper -H ALL */
export async function releaseAll(store: QueueStore, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<number> {
  if (!queues.includes('hold')) return 0;
  const n = await onAll(store, ['hold'], (_q, id) => store.move(id, 'hold', 'deferred', { resetTime: true, sync: false }));
  if (n > 0 && store.fsync) await store.syncDir('deferred');
  return n;
}

/**
 * requeueOne - postsuper -r ID: back to incoming with the next attempt set to now
 * Postfix moves it to maildrop for a fresh cleanup pass; greygate's incoming queue is that
 * fresh start: the scheduler tries every recipient not yet delivered or bounced.
 */
export async function requeueOne(store: QueueStore, id: string, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<boolean> {
  return onFirst(id, queues, (q) => store.move(id, q, 'incoming', { resetTime: true }));
}

/** requeueAll - postsuper -r ALL [queue...] */
export async function requeueAll(store: QueueStore, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<number> {
  const n = await onAll(store, queues, (q, id) => store.move(id, q, 'incoming', { resetTime: true, sync: false }));
  if (n > 0 && store.fsync) await store.syncDir('incoming');
  return n;
}

/** expireOne - postsuper -e ID: mark for forced expiry (returned to the sender at the next attempt) */
export function expireOne(store: QueueStore, id: string, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<boolean> {
  return onFirst(id, queues, (q) => store.setForcedExpire(q, id));
}

/** expireAll - postsuper -e ALL [queue...] */
export function expireAll(store: QueueStore, queues: readonly MessageQueue[] = MESSAGE_QUEUES): Promise<number> {
  return onAll(store, queues, (q, id) => store.setForcedExpire(q, id));
}

/** flushAll - postqueue -f: every deferred message is due now; wake the scheduler */
export async function flushAll(store: QueueStore): Promise<number> {
  const now = Date.now();
  const n = await onAll(store, ['deferred'], (q, id) => store.touch(q, id, now));
  await store.requestFlush();
  return n;
}

/** flushOne - postqueue -i ID: that message is due now (deferred, else incoming, as flush(8) does) */
export async function flushOne(store: QueueStore, id: string): Promise<boolean> {
  const now = Date.now();
  const found = await onFirst(id, ['deferred', 'incoming'], (q) => store.touch(q, id, now));
  if (found) await store.requestFlush();
  return found;
}

/** A destination postqueue -s accepts: a host name or an address literal in []. */
export function isFlushSite(site: string): boolean {
  if (/^\[[0-9A-Fa-f.:]+\]$/.test(site) || /^\[IPv6:[0-9A-Fa-f.:]+\]$/i.test(site)) return true;
  return site.length <= 255 && /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(site);
}

/** flushSite - postqueue -s SITE: deferred mail with an open recipient at SITE is due now */
export async function flushSite(store: QueueStore, site: string): Promise<number> {
  const want = site.toLowerCase().replace(/\.$/, '');
  const now = Date.now();
  const n = await onAll(store, ['deferred'], async (q, id) => {
    const r = await store.read(q, id);
    if (r.kind !== 'ok') return false;
    const hit = listedRecipients(r.message.envelope).some((rc) => rc.address.slice(rc.address.lastIndexOf('@') + 1).toLowerCase() === want);
    return hit && (await store.touch(q, id, now));
  });
  await store.requestFlush();
  return n;
}
