/**
 * @module test/queue/commit-child
 * SUMMARY: child process for the kill -9 test (not a test file): opens the queue under
 * argv[2] with fsync on, commits messages one after another and prints each queue ID the
 * moment its commit() resolves; after argv[3] messages it starts one more writer, writes
 * part of a message, prints PARTIAL and waits to be killed.
 */
import { QueueStore } from '../../src/queue/store.js';
import { sampleEnvelope } from './queue-fixture.js';

const dataDir = process.argv[2]!;
const count = Number(process.argv[3] ?? 5);
const store = await QueueStore.open(dataDir, { fsync: true });
for (let i = 0; i < count; i++) {
  const w = store.createWriter();
  await w.write(Buffer.from(`Subject: message ${i}\r\n\r\nbody ${i}\r\n`));
  await w.commit(sampleEnvelope({ sender: `child${i}@example.org` }), 'incoming');
  process.stdout.write(`${w.queueId}\n`);
}
const partial = store.createWriter();
await partial.write(Buffer.alloc(300 * 1024, 'p'));
process.stdout.write('PARTIAL\n');
setInterval(() => undefined, 1000);
