/**
 * @module test/queue/store
 * SUMMARY: QueueStore against a real directory: a message is visible only after commit(),
 * commit() resolves only once the file is in its queue, abort() and failed commits leave
 * nothing behind, partial files of dead writers are discarded at open, group commit under
 * concurrency (every message intact, fewer directory fsyncs than messages), in-place
 * envelope updates surviving a torn tail, moves/removes that tolerate lost races, and
 * unreadable files that go to corrupt/ and are never deleted.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, fstatSync, readdirSync, readFileSync, statSync, writeFileSync, utimesSync, appendFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { QueueIOError } from '../../src/errors.js';
import { QueueStore, QUEUE_NAMES, type QueueMessage } from '../../src/queue/store.js';
import { commitMessage, SAMPLE_BODY, sampleEnvelope, tempDir } from './queue-fixture.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await tempDir()));
after(() => cleanup());

let n = 0;
async function freshStore(opts: { fsync?: boolean; poolSize?: number; longQueueIds?: boolean } = {}): Promise<{ store: QueueStore; data: string }> {
  const data = join(dir, `d${n++}`);
  const store = await QueueStore.open(data, { fsync: opts.fsync ?? true, poolSize: opts.poolSize ?? 8, longQueueIds: opts.longQueueIds ?? false });
  return { store, data };
}

async function readOk(store: QueueStore, queue: 'incoming' | 'hold' | 'deferred' | 'active', id: string): Promise<QueueMessage> {
  const r = await store.read(queue, id);
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  return (r as { message: QueueMessage }).message;
}

const visible = (data: string, q: string): string[] => readdirSync(join(data, 'queue', q)).filter((f) => !f.startsWith('.'));

describe('QueueStore.open', () => {
  it('creates every queue directory', async () => {
    const { store, data } = await freshStore();
    for (const q of QUEUE_NAMES) assert.ok(statSync(join(data, 'queue', q)).isDirectory(), q);
    await store.close();
  });

  it('discards partial files of dead writers and of earlier boots, keeps those of live ones', async () => {
    const { store, data } = await freshStore({ poolSize: 0 });
    const incoming = join(data, 'queue', 'incoming');
    const w = store.createWriter();
    await w.write(Buffer.from('being written'));
    const mine = readdirSync(incoming);
    // A writer's file carries this boot's tag and our pid.
    assert.equal(mine.length, 1);
    const boot = mine[0]!.split('-')[1]!;
    assert.ok(mine.every((f) => f.startsWith(`.tmp-${boot}-${process.pid}-`)), mine.join());
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    writeFileSync(join(incoming, `.tmp-${boot}-${dead}-a-1`), 'partial message of a dead writer');
    writeFileSync(join(incoming, `.tmp-${boot === 'ffffffff' ? 'eeeeeeee' : 'ffffffff'}-1-a-2`), 'pid 1 is alive, but this is from an earlier boot');
    writeFileSync(join(incoming, `.tmp-${boot}-1-a-3`), 'pid 1 is alive in this boot');
    const old = new Date(Date.now() - 30 * 86400_000);
    utimesSync(join(incoming, `.tmp-${boot}-1-a-3`), old, old);
    const other = await QueueStore.open(data, { fsync: true });
    assert.deepEqual(readdirSync(incoming).sort(), [...mine, `.tmp-${boot}-1-a-3`].sort());
    assert.deepEqual((await other.recover()).purged, []);
    await other.close();
    await w.commit(sampleEnvelope(), 'incoming');
    assert.equal((await store.read('incoming', w.queueId)).kind, 'ok');
    await store.close();
  });

  it('recover({ activeToIncoming }) gives mail of a dead scheduler back to incoming', async () => {
    const { store, data } = await freshStore();
    const id = await commitMessage(store);
    await store.move(id, 'incoming', 'active');
    const report = await store.recover({ activeToIncoming: true });
    assert.deepEqual(report.requeued, [id]);
    assert.deepEqual(visible(data, 'active'), []);
    assert.deepEqual(visible(data, 'incoming'), [id]);
    await store.close();
  });
});

describe('QueueWriter', () => {
  it('the message is visible only after commit() resolved', async () => {
    const { store, data } = await freshStore();
    const w = store.createWriter();
    await w.write(Buffer.from(SAMPLE_BODY));
    assert.deepEqual(visible(data, 'incoming'), []);
    assert.deepEqual(await store.list('incoming'), []);
    const p = w.commit(sampleEnvelope(), 'incoming');
    await p;
    assert.deepEqual(visible(data, 'incoming'), [w.queueId]);
    const m = await readOk(store, 'incoming', w.queueId);
    assert.equal((await store.readBody(m)).toString(), SAMPLE_BODY);
    assert.equal(m.envelope.queueId, w.queueId);
    assert.equal(m.envelope.messageSize, SAMPLE_BODY.length);
    assert.deepEqual(w.envelope, m.envelope);
    await store.close();
  });

  it('commits to hold', async () => {
    const { store, data } = await freshStore();
    const id = await commitMessage(store, { target: 'hold', envelope: { holdReason: 'HOLD rule' } });
    assert.deepEqual(visible(data, 'hold'), [id]);
    assert.deepEqual(visible(data, 'incoming'), []);
    assert.equal((await readOk(store, 'hold', id)).envelope.hold, 'HOLD rule');
    await store.close();
  });

  const sizes: Array<[string, number, number]> = [
    ['empty', 0, 1],
    ['one byte', 1, 1],
    ['1 KB in one chunk', 1024, 1024],
    ['300 KB in 1 KB chunks (spills to disk before commit)', 300 * 1024, 1024],
    ['1 MB in one chunk', 1024 * 1024, 1024 * 1024],
  ];
  for (const [name, size, chunk] of sizes) {
    it(`stores a message byte for byte: ${name}`, async () => {
      const { store } = await freshStore();
      const body = Buffer.alloc(size);
      for (let i = 0; i < size; i++) body[i] = (i * 7) % 256;
      const id = await commitMessage(store, { body, chunk });
      const m = await readOk(store, 'incoming', id);
      assert.equal(m.bodyLength, size);
      assert.ok((await store.readBody(m)).equals(body));
      const chunks: Buffer[] = [];
      for await (const c of store.bodyStream(m)) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(body));
      await store.close();
    });
  }

  it('readers emit prepended headers before the stored bytes', async () => {
    const { store } = await freshStore();
    const id = await commitMessage(store, { envelope: { prependHeaders: ['X-Spam-Flag: YES', 'X-Rule: header_checks:3'] } });
    const m = await readOk(store, 'incoming', id);
    const want = 'X-Spam-Flag: YES\r\nX-Rule: header_checks:3\r\n' + SAMPLE_BODY;
    assert.equal((await store.readBody(m)).toString(), want);
    assert.equal(m.envelope.messageSize, want.length);
    let streamed = '';
    for await (const c of store.bodyStream(m)) streamed += (c as Buffer).toString();
    assert.equal(streamed, want);
    await store.close();
  });

  it('abort() removes the partial file', async () => {
    const { store, data } = await freshStore({ poolSize: 0 });
    const w = store.createWriter();
    await w.write(Buffer.alloc(200 * 1024, 'a'));
    assert.equal(readdirSync(join(data, 'queue', 'incoming')).length, 1);
    await w.abort();
    assert.deepEqual(readdirSync(join(data, 'queue', 'incoming')), []);
    await w.abort();
    await store.close();
  });

  it('a failed commit rejects with QueueIOError and leaves nothing behind', async () => {
    const { store, data } = await freshStore({ poolSize: 0 });
    rmSync(join(data, 'queue', 'hold'), { recursive: true });
    const w = store.createWriter();
    await w.write(Buffer.from(SAMPLE_BODY));
    await assert.rejects(w.commit(sampleEnvelope(), 'hold'), (e: unknown) => e instanceof QueueIOError && e.message.includes(w.queueId));
    assert.deepEqual(readdirSync(join(data, 'queue', 'incoming')), []);
    await w.abort();
    await store.close();
  });

  it('close() leaves no temporary files behind', async () => {
    const { store, data } = await freshStore({ poolSize: 4 });
    await commitMessage(store);
    const w = store.createWriter();
    await w.abort();
    await store.close();
    assert.deepEqual(readdirSync(join(data, 'queue', 'incoming')).filter((f) => f.startsWith('.')), []);
  });

  it('refuses writes after commit', async () => {
    const { store } = await freshStore();
    const w = store.createWriter();
    await w.commit(sampleEnvelope(), 'incoming');
    assert.throws(() => w.write(Buffer.from('x')));
    await assert.rejects(w.commit(sampleEnvelope(), 'incoming'));
    await store.close();
  });

  it('long queue IDs when enabled', async () => {
    const { store } = await freshStore({ longQueueIds: true });
    const id = await commitMessage(store);
    assert.match(id, /^[0-9A-Za-z]{10}z[0-9A-Za-y]+$/);
    await readOk(store, 'incoming', id);
    await store.close();
  });
});

describe('group commit', () => {
  it('200 concurrent commits: each resolves only when its file is in place, all intact, fewer directory fsyncs', async () => {
    const { store, data } = await freshStore({ fsync: true });
    const N = 200;
    const ids = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const w = store.createWriter();
        await w.write(Buffer.from(`Subject: ${i}\r\n\r\n`));
        await w.write(Buffer.alloc(1000, String(i % 10)));
        await w.commit(sampleEnvelope({ sender: `s${i}@example.org` }), i % 10 === 0 ? 'hold' : 'incoming');
        // commit() resolved: the file must already be under its final name.
        assert.ok(existsSync(join(data, 'queue', i % 10 === 0 ? 'hold' : 'incoming', w.queueId)));
        return w.queueId;
      }),
    );
    assert.equal(new Set(ids).size, N);
    for (let i = 0; i < N; i++) {
      const m = await readOk(store, i % 10 === 0 ? 'hold' : 'incoming', ids[i]!);
      assert.equal(m.envelope.sender, `s${i}@example.org`);
      const body = (await store.readBody(m)).toString();
      assert.ok(body.startsWith(`Subject: ${i}\r\n\r\n`) && body.length === `Subject: ${i}\r\n\r\n`.length + 1000);
    }
    assert.ok(store.dirSyncRounds < N, `directory fsyncs: ${store.dirSyncRounds}`);
    await store.close();
  });

  it('a sync requested during an fsync waits for the next one; later requests share it', async () => {
    const { store } = await freshStore({ fsync: true });
    const before = store.dirSyncRounds;
    const order: string[] = [];
    const p1 = store.syncDir('incoming').then(() => order.push('p1'));
    const p2 = store.syncDir('incoming').then(() => order.push('p2'));
    const p3 = store.syncDir('incoming').then(() => order.push('p3'));
    await Promise.all([p1, p2, p3]);
    assert.deepEqual(order, ['p1', 'p2', 'p3']);
    assert.equal(store.dirSyncRounds - before, 2);
    await store.close();
  });
});

describe('queue operations', () => {
  it('move, touch, expire, remove; a missing file is false, not an error', async () => {
    const { store, data } = await freshStore();
    const id = await commitMessage(store);
    assert.equal(await store.move(id, 'incoming', 'active'), true);
    assert.equal(await store.move(id, 'incoming', 'active'), false);
    assert.equal((await store.locate(id))?.queue, 'active');
    const due = Date.now() + 3600_000;
    assert.equal(await store.touch('active', id, due), true);
    assert.equal(Math.round((await store.list('active'))[0]!.mtimeMs / 1000), Math.round(due / 1000));
    assert.equal(await store.setForcedExpire('active', id), true);
    assert.equal(await store.setForcedExpire('active', id), false);
    assert.equal((await readOk(store, 'active', id)).forcedExpire, true);
    assert.equal(await store.move(id, 'active', 'deferred', { resetTime: true }), true);
    assert.ok(Math.abs((await store.list('deferred'))[0]!.mtimeMs - Date.now()) < 5000);
    assert.equal(await store.remove('deferred', id), true);
    assert.equal(await store.remove('deferred', id), false);
    assert.equal(await store.touch('deferred', id, 0), false);
    assert.deepEqual((await store.read('deferred', id)).kind, 'missing');
    assert.equal(await store.locate(id), null);
    assert.deepEqual(visible(data, 'deferred'), []);
    await store.close();
  });

  it('retire + reopenRetired + adopt: a finished message\'s file becomes a later queue file (same inode, old bytes gone)', async () => {
    const { store, data } = await freshStore({ poolSize: 1 });
    const big = 'Subject: big\r\n\r\n' + 'x'.repeat(300_000) + '\r\n';
    const id = await commitMessage(store, { body: big, chunk: 64 * 1024 });
    assert.equal(await store.move(id, 'incoming', 'active'), true);
    const ino = statSync(join(data, 'queue', 'active', id)).ino;
    const path = await store.retire('active', id);
    assert.ok(path && path.startsWith(join(data, 'queue', 'incoming', '.')), String(path));
    assert.equal(statSync(path).ino, ino);
    assert.equal(await store.retire('active', id), null, 'gone: null, not an error');
    assert.equal(await store.locate(id), null);
    assert.deepEqual(visible(data, 'incoming'), []);
    const reopened = await store.reopenRetired(path);
    assert.ok(reopened, 'reopened');
    store.adopt(reopened);
    let reused: string | null = null;
    for (let i = 0; i < 50 && reused === null; i++) {
      const next = await commitMessage(store, { body: 'Subject: small\r\n\r\nhi\r\n' });
      if (statSync(join(data, 'queue', 'incoming', next)).ino === ino) reused = next;
      else await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(reused, 'the retired inode came back as a queue file');
    const m = await store.read('incoming', reused, { withBody: true });
    assert.equal(m.kind, 'ok');
    assert.ok(m.kind === 'ok' && m.body && !m.body.includes('x'.repeat(100)), 'the old message is not in the new file');
    assert.ok(m.kind === 'ok' && m.body?.toString().includes('Subject: small'));
    // A file that cannot be reopened is null, not an error; the store goes on.
    assert.equal(await store.reopenRetired(join(data, 'queue', 'incoming', '.tmp-gone')), null);
    await commitMessage(store);
    await store.close();
  });

  it('commit(..., { keepOpen }) leaves the descriptor to the caller: takeFd() once, then null', async () => {
    const { store, data } = await freshStore();
    const w = store.createWriter();
    await w.write(Buffer.from(SAMPLE_BODY));
    await w.commit(sampleEnvelope(), 'incoming', { keepOpen: true });
    const fd = w.takeFd();
    assert.equal(typeof fd, 'number');
    assert.equal(w.takeFd(), null);
    assert.equal(fstatSync(fd!).ino, statSync(join(data, 'queue', 'incoming', w.queueId)).ino);
    closeSync(fd!);
    assert.equal((await store.read('incoming', w.queueId)).kind, 'ok');
    const plain = store.createWriter();
    await plain.write(Buffer.from(SAMPLE_BODY));
    await plain.commit(sampleEnvelope(), 'incoming');
    assert.equal(plain.takeFd(), null);
    await store.close();
  });

  it('refuses a path that is not a queue ID', async () => {
    const { store } = await freshStore();
    assert.throws(() => store.pathOf('incoming', '../../etc/passwd'));
    await store.close();
  });

  it('updateEnvelope appends in place (same inode), sets the next-attempt mtime, and survives a torn tail', async () => {
    const { store, data } = await freshStore();
    const id = await commitMessage(store);
    const path = join(data, 'queue', 'incoming', id);
    const ino = statSync(path).ino;
    const m = await readOk(store, 'incoming', id);
    const env = structuredClone(m.envelope);
    env.attempts = 1;
    env.lastAttemptAt = Date.now();
    env.nextAttemptAt = Date.now() + 600_000;
    env.recipients[0]!.status = 'delivered';
    env.recipients[1]!.status = 'deferred';
    env.recipients[1]!.delayReason = 'connect to mx.example.com[192.0.2.1]:25: Connection timed out';
    assert.equal(await store.updateEnvelope('incoming', id, env), true);
    assert.equal(statSync(path).ino, ino);
    let got = await readOk(store, 'incoming', id);
    assert.deepEqual(got.envelope, env);
    assert.equal(Math.round(got.mtimeMs / 1000), Math.round(env.nextAttemptAt / 1000));
    assert.equal((await store.readBody(got)).toString(), SAMPLE_BODY);

    // A crash in the middle of the next append leaves a torn record.
    appendFileSync(path, 'ENV 00000100 0123456789abcdef\n{"version":1,"que');
    got = await readOk(store, 'incoming', id);
    assert.deepEqual(got.envelope, env);
    const env2 = { ...structuredClone(env), attempts: 2 };
    assert.equal(await store.updateEnvelope('incoming', id, env2), true);
    assert.equal((await readOk(store, 'incoming', id)).envelope.attempts, 2);
    assert.equal(await store.updateEnvelope('hold', id, env2), false);
    await store.close();
  });

  it('unreadable files go to corrupt/, are never deleted nor overwritten', async () => {
    const { store, data } = await freshStore();
    const good = await commitMessage(store);
    const bad = 'BADC0FFEE1';
    const garbage = 'this is not a queue file\n';
    writeFileSync(join(data, 'queue', 'deferred', bad), garbage);
    // A file whose last bytes were lost: header fine, no envelope record.
    const truncated = 'DEADBEEF22';
    const full = readFileSync(join(data, 'queue', 'incoming', good));
    writeFileSync(join(data, 'queue', 'incoming', truncated), full.subarray(0, full.length - 40));
    const r = await store.read('deferred', bad);
    assert.equal(r.kind, 'corrupt');
    assert.equal((await store.read('incoming', truncated)).kind, 'corrupt');

    const report = await store.recover({ verify: true });
    assert.deepEqual(report.quarantined.map((q) => `${q.queue}/${q.id}`).sort(), [`deferred/${bad}`, `incoming/${truncated}`]);
    assert.equal(readFileSync(join(data, 'queue', 'corrupt', bad), 'utf8'), garbage);
    assert.deepEqual(visible(data, 'incoming'), [good]);

    writeFileSync(join(data, 'queue', 'hold', bad), 'second file with the same name\n');
    assert.equal(await store.quarantine('hold', bad), `${bad}.1`);
    assert.equal(readFileSync(join(data, 'queue', 'corrupt', bad), 'utf8'), garbage);
    assert.equal(await store.quarantine('hold', bad), null);
    await store.close();
  });

  it('flush trigger is visible to a watcher in another store', async () => {
    const { store, data } = await freshStore();
    const other = await QueueStore.open(data, { fsync: false });
    assert.equal(await store.flushRequestedAt(), 0);
    const seen = new Promise<void>((res) => {
      const stop = store.watchFlush(() => {
        stop();
        res();
      });
    });
    await other.requestFlush();
    await seen;
    assert.ok((await store.flushRequestedAt()) > 0);
    await other.close();
    await store.close();
  });
});
