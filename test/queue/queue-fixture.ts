/**
 * @module test/queue/queue-fixture
 * SUMMARY: shared helpers for the queue tests: a temporary data directory, a sample
 * NewEnvelope, and commitMessage() which writes and commits one message through the real
 * QueueWriter. Not a test file itself.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NewEnvelope } from '../../src/queue/envelope.js';
import type { QueueStore } from '../../src/queue/store.js';

export async function tempDir(prefix = 'gg-queue-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function sampleEnvelope(over: Partial<NewEnvelope> = {}): NewEnvelope {
  return {
    sender: 'alice@example.org',
    recipients: ['bob@example.com', { address: 'carol@example.com', originalAddress: 'Carol@Example.com', notify: ['FAILURE', 'DELAY'] }],
    client: { address: '192.0.2.10', name: 'mail.example.org', reverseName: 'mail.example.org', port: 40000 },
    helo: 'mail.example.org',
    protocol: 'ESMTP',
    service: 'smtpd',
    ...over,
  };
}

export const SAMPLE_BODY = 'Received: from mail.example.org\r\nSubject: test\r\n\r\nHello.\r\n';

/** commitMessage - write BODY (in CHUNK-sized pieces) and commit it; returns the queue ID */
export async function commitMessage(
  store: QueueStore,
  opts: { body?: string | Buffer; envelope?: Partial<NewEnvelope>; target?: 'incoming' | 'hold'; chunk?: number } = {},
): Promise<string> {
  const body = Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body ?? SAMPLE_BODY);
  const w = store.createWriter();
  const step = opts.chunk ?? body.length;
  for (let i = 0; i < body.length; i += Math.max(1, step)) await w.write(body.subarray(i, i + step));
  await w.commit(sampleEnvelope(opts.envelope), opts.target ?? 'incoming');
  return w.queueId;
}
