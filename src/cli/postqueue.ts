/**
 * @module cli/postqueue
 * SUMMARY: `greygate postqueue -p | -j | -f | -i queue_id | -s site`, Postfix's user
 * interface to the queue: list it as mailq does (-p), as JSON lines (-j), or make deferred
 * mail due now and wake the running gateway (-f all, -i one message, -s one destination).
 * Exports run(args, io); the data directory comes from main.cf (data_directory).
 * DIAGNOSTICS: a bad command line is a UsageError (exit 2); an invalid queue ID or site is
 * refused as Postfix does; an unreadable queue file is a warning on stderr and is skipped.
 * SEE ALSO: postqueue(1), Postfix postqueue.c; queue/admin.ts, queue/format.ts.
 */
import { UsageError } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { QueueStore, queueStoreOptions } from '../queue/store.js';
import { flushAll, flushOne, flushSite, isFlushSite, listQueue } from '../queue/admin.js';
import { formatJsonLine, formatShowq } from '../queue/format.js';
import { isQueueId } from '../queue/queue-id.js';
import type { CliIO } from './io.js';

const USAGE = 'usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site';

type Mode = { kind: 'list' | 'json' | 'flush' } | { kind: 'flush-file'; id: string } | { kind: 'flush-site'; site: string };

/** parseArgs - getopt("fi:jps:v"): exactly one mode, no operands */
function parseArgs(args: readonly string[]): Mode {
  let mode: Mode | null = null;
  const set = (m: Mode): void => {
    if (mode) throw new UsageError(USAGE);
    mode = m;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      if (i + 1 < args.length) throw new UsageError(USAGE);
      break;
    }
    if (!a.startsWith('-') || a === '-') throw new UsageError(USAGE);
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      if (c === 'v') continue;
      if (c === 'p') set({ kind: 'list' });
      else if (c === 'j') set({ kind: 'json' });
      else if (c === 'f') set({ kind: 'flush' });
      else if (c === 'i' || c === 's') {
        const v = j + 1 < a.length ? a.slice(j + 1) : args[++i];
        if (v === undefined) throw new UsageError(`option -${c} requires an argument; ${USAGE}`);
        set(c === 'i' ? { kind: 'flush-file', id: v } : { kind: 'flush-site', site: v });
        break;
      } else throw new UsageError(`invalid option -- '${c}'; ${USAGE}`);
    }
  }
  if (!mode) throw new UsageError(USAGE);
  return mode;
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const mode = parseArgs(args);
  if (mode.kind === 'flush-file' && !isQueueId(mode.id)) throw new UsageError(`Invalid request: "${mode.id}"`);
  if (mode.kind === 'flush-site' && !isFlushSite(mode.site)) {
    const s = mode.site.length > 100 ? `${mode.site.slice(0, 100)}...` : mode.site;
    throw new UsageError(`Cannot flush mail queue - invalid destination: "${s}"`);
  }
  const config = loadConfig(io.configDir);
  const opts = queueStoreOptions(config);
  const store = await QueueStore.open(config.dataDir(), opts);
  try {
    switch (mode.kind) {
      case 'list':
      case 'json': {
        const { messages, problems } = await listQueue(store);
        for (const p of problems) io.err(`postqueue: warning: ${p.queue}/${p.id}: unreadable queue file: ${p.reason}\n`);
        io.out(mode.kind === 'list' ? formatShowq(messages, { longQueueIds: opts.longQueueIds ?? false }) : messages.map(formatJsonLine).join(''));
        break;
      }
      case 'flush':
        await flushAll(store);
        break;
      case 'flush-file':
        // flush(8) answers OK for an ID it does not find; so does postqueue -i.
        await flushOne(store, mode.id);
        break;
      case 'flush-site':
        await flushSite(store, mode.site);
        break;
    }
  } finally {
    await store.close();
  }
  return 0;
}
