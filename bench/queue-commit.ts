/**
 * @module bench/queue-commit
 * SUMMARY: `node --import tsx bench/queue-commit.ts [N] [SIZE]` — queue commits per second
 * (durable: fdatasync + rename + directory fsync before each commit() resolves) at
 * concurrency 1, 20 and 100, for QueueStore's group commit, for QueueStore with fsync off
 * (what durability costs), and for one util/atomic-file.ts writeFileAtomic() per message
 * (tmp, fsync, rename, fsync directory: no batching). Prints a Markdown table on stdout:
 * the median msgs/s of BENCH_RUNS runs (default 3) and directory fsyncs per message. The
 * queue lives under os.tmpdir() (set TMPDIR to measure another disk); UV_THREADPOOL_SIZE
 * bounds how many file fsyncs run at once.
 * DIAGNOSTICS: a failed commit ends the run with its error; temp dirs are removed.
 * SEE ALSO: src/queue/store.ts (DirSyncer), /work/shared/peers.md (Postfix: one fsync per message).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueStore } from '../src/queue/store.js';
import { writeFileAtomic } from '../src/util/atomic-file.js';

const N = Number(process.argv[2] ?? 2000);
const SIZE = Number(process.argv[3] ?? 1024);
const CONCURRENCY = [1, 20, 100];
const body = Buffer.alloc(SIZE, 'x');
body.write('Subject: bench\r\n\r\n');

async function pool(concurrency: number, n: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await task(next++);
    }),
  );
  return (performance.now() - t0) / 1000;
}

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function benchStore(concurrency: number, fsync: boolean): Promise<{ rate: number; syncsPerMsg: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'gg-qbench-'));
  try {
    const store = await QueueStore.open(dir, { fsync });
    const secs = await pool(concurrency, N, async () => {
      const w = store.createWriter();
      await w.write(body);
      await w.commit(
        { sender: 'sender@example.org', recipients: ['user@example.com'], client: { address: '127.0.0.1', name: 'localhost' }, protocol: 'ESMTP', helo: 'bench' },
        'incoming',
      );
    });
    const syncs = store.dirSyncRounds;
    await store.close();
    return { rate: N / secs, syncsPerMsg: syncs / N };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchAtomic(concurrency: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'gg-qbench-'));
  try {
    const secs = await pool(concurrency, N, (i) => writeFileAtomic(join(dir, `m${i}`), body));
    return N / secs;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: string[] = [];
for (const c of CONCURRENCY) {
  const on: number[] = [];
  const off: number[] = [];
  const atomic: number[] = [];
  const syncs: number[] = [];
  // Interleaved, so a slow patch of the disk does not land on one variant only.
  for (let r = 0; r < RUNS; r++) {
    const s = await benchStore(c, true);
    on.push(s.rate);
    syncs.push(s.syncsPerMsg);
    off.push((await benchStore(c, false)).rate);
    atomic.push(await benchAtomic(c));
  }
  rows.push(`| ${c} | ${median(on).toFixed(0)} | ${median(syncs).toFixed(2)} | ${median(off).toFixed(0)} | ${median(atomic).toFixed(0)} |`);
  process.stderr.write(`concurrency ${c} done\n`);
}
process.stdout.write(
  `queue commit, ${N} messages of ${SIZE} bytes, median of ${RUNS}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}, dir ${tmpdir()}\n\n` +
    '| concurrency | QueueStore msgs/s | dir fsyncs/msg | QueueStore fsync off | writeFileAtomic per message |\n|---|---|---|---|---|\n' +
    rows.join('\n') +
    '\n',
);
