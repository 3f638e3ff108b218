/**
 * @module bench/lib/maildir-fixture
 * SUMMARY: put the benchmark's corpus into a user's Maildir the way greygate's local
 * delivery does (src/mailbox/maildir.ts MaildirStore.deliver: tmp -> fsync -> new, and a UID
 * in greygate's index), and copy that Maildir for another server without greygate's index.
 * Exports deliverCorpus(dataDir, user, messages, progress) -> {seconds, path} and
 * copyMaildir(from, to) -> number of message files copied.
 * DIAGNOSTICS: StoreError from the store when a delivery fails; BenchError when a delivery
 * got no UID (greygate's index would then be built by the gateway's first SELECT, and the
 * two servers would not start from the same state).
 * SEE ALSO: src/mailbox/maildir.ts, src/mailbox/mailbox-index.ts (INDEX_FILE).
 */
import { cpSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { INDEX_FILE } from '../../src/mailbox/mailbox-index.js';
import { MaildirStore } from '../../src/mailbox/maildir.js';
import { BenchError } from './bench-error.js';
import type { CorpusMessage } from './mail-corpus.js';

/**
 * Deliver MESSAGES in order, one at a time (so UIDs follow the corpus order), to USER's
 * Maildir under DATA_DIR/mail/, as the gateway's local delivery would.
 */
export async function deliverCorpus(
  dataDir: string,
  user: string,
  messages: readonly CorpusMessage[],
  progress: (done: number) => void = () => undefined,
): Promise<{ seconds: number; path: string }> {
  const warnings: string[] = [];
  const store = new MaildirStore(dataDir, { warn: (m) => warnings.push(m) });
  const path = store.mailbox(user).root;
  const t0 = performance.now();
  try {
    for (let i = 0; i < messages.length; i++) {
      const d = await store.deliver(user, messages[i]!.bytes);
      if (d.uid === null) throw new BenchError(`message ${i + 1} was delivered but not indexed: ${warnings.at(-1) ?? 'no reason given'}`);
      if ((i + 1) % 1000 === 0) progress(i + 1);
    }
  } finally {
    // Checkpoints and closes the index, so the gateway opens a database nobody holds.
    store.close();
  }
  return { seconds: (performance.now() - t0) / 1000, path };
}

/**
 * Copy the Maildir FROM to TO, leaving out greygate's index (and its -wal/-shm), so the
 * other server builds its own from the files, as it would on a migrated mailbox.
 */
export function copyMaildir(from: string, to: string): number {
  cpSync(from, to, {
    recursive: true,
    preserveTimestamps: true,
    filter: (src) => !basename(src).startsWith(INDEX_FILE),
  });
  return ['new', 'cur'].reduce((n, d) => n + readdirSync(join(to, d)).length, 0);
}
