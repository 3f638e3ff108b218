/**
 * @module test/queue/admin
 * SUMMARY: every queue administration operation against a real queue: listing in showq
 * order with the recipients still to deliver, find, delete, hold, release (to deferred),
 * requeue (to incoming, due now), force-expire, flush of all / one / a site (mtime reset
 * and the flush trigger), queue restrictions, invalid IDs, and lost races (ENOENT).
 */
import { describe, it, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QueueStore, type MessageQueue } from '../../src/queue/store.js';
import * as admin from '../../src/queue/admin.js';
import { commitMessage, tempDir } from './queue-fixture.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await tempDir('gg-admin-')));
after(() => cleanup());

let store: QueueStore;
let data: string;
let seq = 0;
beforeEach(async () => {
  data = join(dir, `d${seq++}`);
  store = await QueueStore.open(data, { fsync: true });
});
afterEach(() => store.close());

const names = (q: string): string[] => readdirSync(join(data, 'queue', q)).filter((f) => !f.startsWith('.')).sort();
const HOUR = 3600_000;

/** One message in each queue: returns {incoming, active, deferred, hold} IDs. */
async function populate(): Promise<Record<MessageQueue, string>> {
  const ids = {} as Record<MessageQueue, string>;
  for (const q of ['incoming', 'active', 'deferred', 'hold'] as const) {
    const id = await commitMessage(store, { target: q === 'hold' ? 'hold' : 'incoming', envelope: { sender: `${q}@example.org` } });
    if (q === 'active' || q === 'deferred') await store.move(id, 'incoming', q);
    if (q === 'deferred') await store.touch('deferred', id, Date.now() + HOUR);
    ids[q] = id;
  }
  return ids;
}

describe('listQueue', () => {
  it('lists active, incoming, deferred, hold in that order, with open recipients only', async () => {
    const ids = await populate();
    const r = await store.read('deferred', ids.deferred);
    assert.equal(r.kind, 'ok');
    if (r.kind !== 'ok') return;
    const env = structuredClone(r.message.envelope);
    env.recipients.push({ address: 'dave@example.net', originalAddress: 'dave@example.net', status: 'delivered' });
    env.recipients.push({ address: 'erin@example.net', originalAddress: 'erin@example.net', status: 'bounced', bounceReason: 'User unknown' });
    env.recipients[1]!.status = 'deferred';
    env.recipients[1]!.delayReason = 'Connection timed out';
    env.nextAttemptAt = Date.now() + HOUR;
    assert.equal(await store.updateEnvelope('deferred', ids.deferred, env), true);

    const { messages, problems } = await admin.listQueue(store);
    assert.deepEqual(problems, []);
    assert.deepEqual(messages.map((m) => [m.queue, m.id, m.sender]), [
      ['active', ids.active, 'active@example.org'],
      ['incoming', ids.incoming, 'incoming@example.org'],
      ['deferred', ids.deferred, 'deferred@example.org'],
      ['hold', ids.hold, 'hold@example.org'],
    ]);
    // The deferred recipient with a reason first (showq reads the defer log first), then the rest.
    assert.deepEqual(messages[2]!.recipients, [
      { address: 'carol@example.com', origAddress: 'Carol@Example.com', delayReason: 'Connection timed out' },
      { address: 'bob@example.com', origAddress: 'bob@example.com' },
    ]);
  });

  it('reports unreadable files as problems without touching them', async () => {
    const ids = await populate();
    writeFileSync(join(data, 'queue', 'deferred', 'BAD123'), 'garbage');
    const { messages, problems } = await admin.listQueue(store);
    assert.equal(messages.length, 4);
    assert.deepEqual(problems.map((p) => `${p.queue}/${p.id}`), ['deferred/BAD123']);
    assert.deepEqual(names('deferred'), ['BAD123', ids.deferred].sort());
  });

  it('findMessage searches every queue', async () => {
    const ids = await populate();
    for (const q of ['incoming', 'active', 'deferred', 'hold'] as const) assert.equal((await admin.findMessage(store, ids[q]))?.queue, q);
    assert.equal(await admin.findMessage(store, 'ABCDEF0'), null);
    assert.equal(await admin.findMessage(store, '../x'), null);
  });
});

describe('postsuper operations', () => {
  it('deleteOne finds the message in any queue; unknown and invalid IDs are false', async () => {
    const ids = await populate();
    for (const q of ['incoming', 'active', 'deferred', 'hold'] as const) assert.equal(await admin.deleteOne(store, ids[q]), true);
    for (const q of ['incoming', 'active', 'deferred', 'hold']) assert.deepEqual(names(q), []);
    assert.equal(await admin.deleteOne(store, ids.hold), false);
    assert.equal(await admin.deleteOne(store, 'not/valid'), false);
  });

  it('deleteAll respects the queue list and never touches corrupt/', async () => {
    const ids = await populate();
    writeFileSync(join(data, 'queue', 'corrupt', 'C0FFEE'), 'x');
    assert.equal(await admin.deleteAll(store, ['deferred', 'hold']), 2);
    assert.deepEqual(names('incoming'), [ids.incoming]);
    assert.deepEqual(names('active'), [ids.active]);
    assert.equal(await admin.deleteAll(store), 2);
    assert.deepEqual(names('corrupt'), ['C0FFEE']);
  });

  it('deleteOne limited to a queue leaves other queues alone', async () => {
    const ids = await populate();
    assert.equal(await admin.deleteOne(store, ids.incoming, ['deferred']), false);
    assert.deepEqual(names('incoming'), [ids.incoming]);
  });

  it('hold moves from incoming, active and deferred; release moves hold to deferred', async () => {
    const ids = await populate();
    assert.equal(await admin.holdOne(store, ids.deferred), true);
    assert.equal(await admin.holdOne(store, ids.hold), false, 'already on hold');
    assert.equal(await admin.holdAll(store), 2);
    assert.deepEqual(names('hold'), Object.values(ids).sort());
    assert.equal(await admin.releaseOne(store, ids.incoming), true);
    assert.deepEqual(names('deferred'), [ids.incoming]);
    assert.equal(await admin.releaseOne(store, ids.incoming), false);
    assert.equal(await admin.releaseOne(store, ids.active, ['deferred']), false, 'hold not in the queue list');
    assert.equal(await admin.releaseAll(store), 3);
    assert.deepEqual(names('hold'), []);
    assert.deepEqual(names('deferred'), Object.values(ids).sort());
  });

  it('a released message keeps its envelope and is due (mtime in the past)', async () => {
    const ids = await populate();
    assert.equal(await admin.releaseOne(store, ids.hold), true);
    const [f] = (await store.list('deferred')).filter((x) => x.id === ids.hold);
    assert.ok(f && f.mtimeMs <= Date.now());
    assert.equal((await admin.findMessage(store, ids.hold))?.envelope.sender, 'hold@example.org');
  });

  it('requeue moves to incoming with the next attempt set to now', async () => {
    const ids = await populate();
    assert.equal(await admin.requeueOne(store, ids.deferred), true);
    const f = (await store.list('incoming')).find((x) => x.id === ids.deferred)!;
    assert.ok(Math.abs(f.mtimeMs - Date.now()) < 5000);
    assert.equal(await admin.requeueOne(store, 'ABC123'), false);
    assert.equal(await admin.requeueAll(store, ['hold', 'active']), 2);
    assert.deepEqual(names('incoming'), [ids.incoming, ids.deferred, ids.hold, ids.active].sort());
    assert.equal(await admin.requeueAll(store), 4, 'requeue of incoming counts too');
  });

  it('expire marks the file; listings show forced_expire', async () => {
    const ids = await populate();
    assert.equal(await admin.expireOne(store, ids.deferred), true);
    assert.equal(await admin.expireOne(store, ids.deferred), false, 'already expired');
    assert.equal(await admin.expireAll(store), 3);
    const { messages } = await admin.listQueue(store);
    assert.ok(messages.every((m) => m.forcedExpire));
  });

  it('a message moved by someone else meanwhile is found in its new queue (lost race)', async () => {
    const ids = await populate();
    // The gateway moves incoming -> active between the admin's list and its rename.
    await store.move(ids.incoming, 'incoming', 'active');
    assert.equal(await admin.holdOne(store, ids.incoming), true);
    assert.ok(names('hold').includes(ids.incoming));
  });
});

describe('flush', () => {
  it('flushAll makes every deferred message due and writes the trigger', async () => {
    const ids = await populate();
    assert.equal((await store.list('deferred'))[0]!.mtimeMs > Date.now(), true);
    const t0 = Date.now();
    assert.equal(await admin.flushAll(store), 1);
    assert.ok((await store.list('deferred'))[0]!.mtimeMs <= Date.now() + 1000);
    assert.ok((await store.flushRequestedAt()) >= t0);
    assert.deepEqual(names('deferred'), [ids.deferred], 'flush only resets times, it moves nothing');
  });

  it('flushOne: deferred or incoming; unknown IDs do not trigger', async () => {
    const ids = await populate();
    assert.equal(await admin.flushOne(store, 'ABCDEF'), false);
    assert.equal(await store.flushRequestedAt(), 0);
    assert.equal(await admin.flushOne(store, ids.hold), false, 'held mail is not flushed');
    assert.equal(await admin.flushOne(store, ids.deferred), true);
    assert.ok((await store.list('deferred'))[0]!.mtimeMs <= Date.now() + 1000);
    assert.ok((await store.flushRequestedAt()) > 0);
  });

  it('flushSite picks deferred mail with an open recipient at that domain', async () => {
    const a = await commitMessage(store, { envelope: { recipients: ['x@site.example'] } });
    const b = await commitMessage(store, { envelope: { recipients: ['y@other.example'] } });
    for (const id of [a, b]) {
      await store.move(id, 'incoming', 'deferred');
      await store.touch('deferred', id, Date.now() + HOUR);
    }
    assert.equal(await admin.flushSite(store, 'SITE.example'), 1);
    const due = (await store.list('deferred')).filter((f) => f.mtimeMs <= Date.now() + 1000).map((f) => f.id);
    assert.deepEqual(due, [a]);
  });

  const sites: Array<[string, boolean]> = [
    ['example.com', true],
    ['[192.0.2.1]', true],
    ['[IPv6:2001:db8::1]', true],
    ['bad site', false],
    ['-x.example', false],
    ['', false],
  ];
  for (const [s, ok] of sites) it(`isFlushSite ${JSON.stringify(s)}`, () => assert.equal(admin.isFlushSite(s), ok));
});
