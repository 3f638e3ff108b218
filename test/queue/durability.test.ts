/**
 * @module test/queue/durability
 * SUMMARY: kill -9 right after commit() resolved never loses the message: a child process
 * commits and prints each queue ID, the parent SIGKILLs it on the first ID (and, in a second
 * run, after a half-written message), then reopens the queue and finds every printed ID
 * intact, while the dead child's partial file is discarded at open.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { QueueStore } from '../../src/queue/store.js';
import { tempDir } from './queue-fixture.js';

const here = dirname(fileURLToPath(import.meta.url));
const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups) await c();
});

/** runChild - start the committer; kill -9 it as soon as STOP(line) says so; return the IDs it printed */
async function runChild(dataDir: string, count: number, stop: (line: string, ids: string[]) => boolean): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'commit-child.ts'), dataDir, String(count)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: join(here, '..', '..'),
  });
  const ids: string[] = [];
  const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, sig) => res(sig)));
  for await (const line of createInterface({ input: child.stdout })) {
    if (line !== 'PARTIAL') ids.push(line);
    if (stop(line, ids)) {
      child.kill('SIGKILL');
      break;
    }
  }
  assert.equal(await exited, 'SIGKILL');
  return ids;
}

describe('kill -9 durability', () => {
  it('a message whose commit resolved survives SIGKILL at once', async () => {
    const { dir, cleanup } = await tempDir('gg-kill-');
    cleanups.push(cleanup);
    const ids = await runChild(dir, 1000, (_line, got) => got.length >= 1);
    assert.ok(ids.length >= 1);
    const store = await QueueStore.open(dir, { fsync: true });
    for (const id of ids) {
      const r = await store.read('incoming', id);
      assert.equal(r.kind, 'ok', `${id}: ${JSON.stringify(r)}`);
    }
    await store.close();
  });

  it('every committed message survives; the half-written one is discarded at the next open', async () => {
    const { dir, cleanup } = await tempDir('gg-kill-');
    cleanups.push(cleanup);
    const ids = await runChild(dir, 5, (line) => line === 'PARTIAL');
    assert.equal(ids.length, 5);
    const incoming = join(dir, 'queue', 'incoming');
    assert.ok(readdirSync(incoming).some((f) => f.startsWith('.tmp-')), 'the partial file is left by the killed writer');
    const store = await QueueStore.open(dir, { fsync: true });
    assert.deepEqual(readdirSync(incoming).sort(), [...ids].sort());
    for (const [i, id] of ids.entries()) {
      const r = await store.read('incoming', id);
      assert.equal(r.kind, 'ok');
      if (r.kind === 'ok') {
        assert.equal(r.message.envelope.sender, `child${i}@example.org`);
        assert.equal((await store.readBody(r.message)).toString(), `Subject: message ${i}\r\n\r\nbody ${i}\r\n`);
      }
    }
    await store.close();
  });
});
