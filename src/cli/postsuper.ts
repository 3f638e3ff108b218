/**
 * @module cli/postsuper
 * SUMMARY: `greygate postsuper [-d|-h|-H|-r|-e|-f queue_id|ALL|-]... [-p] [-s] [queue...]`,
 * Postfix's privileged queue maintenance: delete, hold, release from hold (to deferred),
 * requeue (to incoming, due now), force-expire, purge dead writers' files, and with -s (or
 * no option) move unreadable files to corrupt/. Operations run in command-line order, on
 * the named queues (default incoming, active, deferred, hold); `-` reads queue IDs from stdin.
 * DIAGNOSTICS: Postfix's messages on stderr: `postsuper: ID: removed`, `postsuper: Deleted:
 * N messages`, `postsuper: warning: invalid mail queue id: X`; an ID that is not queued is
 * not an error (exit 0). A bad option or queue name is a UsageError (exit 2).
 * SEE ALSO: postsuper(1), Postfix postsuper.c; queue/admin.ts.
 */
import { UsageError } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { MESSAGE_QUEUES, QueueStore, queueStoreOptions, type MessageQueue } from '../queue/store.js';
import {
  deleteAll,
  deleteOne,
  expireAll,
  expireOne,
  holdAll,
  holdOne,
  releaseAll,
  releaseOne,
  requeueAll,
  requeueOne,
} from '../queue/admin.js';
import { isQueueId } from '../queue/queue-id.js';
import type { CliIO } from './io.js';

const USAGE =
  'usage: postsuper [-d queue_id (delete)] [-e queue_id (expire)] [-f queue_id (expire and/or un-hold)] ' +
  '[-h queue_id (hold)] [-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)] ' +
  '[-s (structure fix)] [-v (verbose)] [queue...]';

type OpFlag = 'd' | 'e' | 'f' | 'h' | 'H' | 'r';
const OP_FLAGS = new Set<string>(['d', 'e', 'f', 'h', 'H', 'r']);

interface Parsed {
  ops: Array<{ flag: OpFlag; arg: string }>;
  purge: boolean;
  structure: boolean;
  queues: MessageQueue[];
}

/** parseArgs - getopt("d:e:f:h:H:pr:sSv") with GNU argument permutation; operands are queue names */
function parseArgs(args: readonly string[]): Parsed {
  const p: Parsed = { ops: [], purge: false, structure: false, queues: [] };
  const operands: string[] = [];
  let optionsDone = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (optionsDone || !a.startsWith('-') || a === '-') {
      operands.push(a);
      continue;
    }
    if (a === '--') {
      optionsDone = true;
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      if (OP_FLAGS.has(c)) {
        const v = j + 1 < a.length ? a.slice(j + 1) : args[++i];
        if (v === undefined) throw new UsageError(`option -${c} requires a queue ID argument; ${USAGE}`);
        p.ops.push({ flag: c as OpFlag, arg: v });
        break;
      }
      if (c === 'p') p.purge = true;
      else if (c === 's' || c === 'S') p.structure = true;
      else if (c !== 'v') throw new UsageError(`invalid option -- '${c}'; ${USAGE}`);
    }
  }
  for (const q of operands) {
    // corrupt/ is not a queue postsuper may touch: its files are never deleted.
    if (!(MESSAGE_QUEUES as readonly string[]).includes(q)) throw new UsageError(`invalid directory name: ${q}`);
    p.queues.push(q as MessageQueue);
  }
  if (p.queues.length === 0) p.queues = [...MESSAGE_QUEUES];
  return p;
}

const plural = (n: number): string => `${n} message${n !== 1 ? 's' : ''}`;

async function readStdinIds(io: CliIO): Promise<string[]> {
  let text = '';
  for await (const chunk of io.stdin) text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => l.replace(/\r$/, ''));
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const p = parseArgs(args);
  const config = loadConfig(io.configDir);
  const store = await QueueStore.open(config.dataDir(), queueStoreOptions(config));
  const say = (text: string): void => io.err(`postsuper: ${text}\n`);
  const count = { requeued: 0, deleted: 0, expired: 0, held: 0, released: 0 };
  let stdinUsed = false;
  try {
    // Postfix does repairs first: purge (done by open) and the structure check.
    if (p.structure || (p.ops.length === 0 && !p.purge)) {
      const report = await store.recover({ verify: true });
      for (const q of report.quarantined) say(`warning: ${q.queue}/${q.id}: moved to the corrupt queue: ${q.reason}`);
    } else if (p.purge) await store.recover();

    type One = (id: string) => Promise<void>;
    const perId: Record<OpFlag, One> = {
      d: async (id) => {
        if (await deleteOne(store, id, p.queues)) {
          say(`${id}: removed`);
          count.deleted++;
        }
      },
      h: async (id) => {
        if (await holdOne(store, id, p.queues)) {
          say(`${id}: placed on hold`);
          count.held++;
        }
      },
      H: async (id) => {
        if (await releaseOne(store, id, p.queues)) {
          say(`${id}: released from hold`);
          count.released++;
        }
      },
      r: async (id) => {
        if (await requeueOne(store, id, p.queues)) {
          say(`${id}: requeued`);
          count.requeued++;
        }
      },
      e: async (id) => {
        if (await expireOne(store, id, p.queues)) {
          say(`${id}: expired`);
          count.expired++;
        }
      },
      f: async (id) => {
        await perId.e(id);
        await perId.H(id);
      },
    };
    const all: Record<OpFlag, () => Promise<void>> = {
      d: async () => void (count.deleted += await deleteAll(store, p.queues)),
      h: async () => void (count.held += await holdAll(store, p.queues)),
      H: async () => void (count.released += await releaseAll(store, p.queues)),
      r: async () => void (count.requeued += await requeueAll(store, p.queues)),
      e: async () => void (count.expired += await expireAll(store, p.queues)),
      f: async () => {
        count.expired += await expireAll(store, p.queues);
        count.released += await releaseAll(store, p.queues);
      },
    };

    for (const op of p.ops) {
      // As a safety measure, ALL must be upper case (postsuper(1)).
      if (op.arg === 'ALL') {
        await all[op.flag]();
        continue;
      }
      let ids = [op.arg];
      if (op.arg === '-') {
        ids = stdinUsed ? [] : await readStdinIds(io);
        stdinUsed = true;
      }
      for (const id of ids) {
        if (!isQueueId(id)) say(`warning: invalid mail queue id: ${id}`);
        else await perId[op.flag](id);
      }
    }
    // A running gateway picks requeued mail up at once, and released or force-expired mail
    // on a deferred scan now (Postfix's postsuper signals the queue manager the same way).
    if (count.requeued > 0) await store.requestPickup();
    if (count.released > 0 || count.expired > 0) await store.requestFlush();
  } finally {
    await store.close();
  }

  const did = (...flags: OpFlag[]): boolean => p.ops.some((o) => flags.includes(o.flag));
  if (did('r')) say(`Requeued: ${plural(count.requeued)}`);
  if (did('d')) say(`Deleted: ${plural(count.deleted)}`);
  if (did('e', 'f')) say(`Force-expired: ${plural(count.expired)}`);
  if (did('h')) say(`Placed on hold: ${plural(count.held)}`);
  if (did('H', 'f')) say(`Released from hold: ${plural(count.released)}`);
  return 0;
}
