/**
 * @module test/cli/postsuper
 * SUMMARY: `greygate postsuper` in-process through run(args, io): -d/-h/-H/-r/-e/-f with
 * one ID, ALL, and `-` (IDs on stdin), queue operands, Postfix's stderr messages and
 * counters, exit 0 for IDs that are not queued, warnings for invalid IDs, the structure
 * check moving unreadable files to corrupt/, and UsageError for bad command lines.
 */
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { UsageError } from '../../src/errors.js';
import type { CliIO } from '../../src/cli/io.js';
import { run } from '../../src/cli/postsuper.js';
import { QueueStore, type MessageQueue } from '../../src/queue/store.js';
import { commitMessage } from '../queue/queue-fixture.js';

let root: string;
let configDir: string;
let dataDir: string;
let seq = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gg-cli-postsuper-'));
  configDir = join(root, 'rules');
  await mkdir(configDir);
});
after(() => rm(root, { recursive: true, force: true }));
beforeEach(async () => {
  dataDir = join(root, `state${seq++}`);
  await writeFile(join(configDir, 'main.cf'), `data_directory = ${dataDir}\n`);
});

async function postsuper(args: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIO = { configDir, stdin: Readable.from([Buffer.from(stdin)]), out: (t) => void (out += t), err: (t) => void (err += t) };
  const code = await run(args, io);
  return { code, out, err };
}

const names = (q: string): string[] => readdirSync(join(dataDir, 'queue', q)).filter((f) => !f.startsWith('.')).sort();

/** One message per queue. */
async function populate(): Promise<Record<MessageQueue, string>> {
  const s = await QueueStore.open(dataDir, { fsync: false });
  const ids = {} as Record<MessageQueue, string>;
  for (const q of ['incoming', 'active', 'deferred', 'hold'] as const) {
    const id = await commitMessage(s, { target: q === 'hold' ? 'hold' : 'incoming' });
    if (q === 'active' || q === 'deferred') await s.move(id, 'incoming', q);
    ids[q] = id;
  }
  await s.close();
  return ids;
}

describe('postsuper -d', () => {
  it('deletes one message by ID, wherever it is', async () => {
    const ids = await populate();
    const r = await postsuper(['-d', ids.deferred]);
    assert.deepEqual(r, { code: 0, out: '', err: `postsuper: ${ids.deferred}: removed\npostsuper: Deleted: 1 message\n` });
    assert.deepEqual(names('deferred'), []);
  });
  it('an ID that is not queued is not an error', async () => {
    await populate();
    assert.deepEqual(await postsuper(['-d', 'ABCDEF12345']), { code: 0, out: '', err: 'postsuper: Deleted: 0 messages\n' });
  });
  it('an invalid ID is a warning', async () => {
    await populate();
    const r = await postsuper(['-d', 'ABC*']);
    assert.equal(r.code, 0);
    assert.equal(r.err, 'postsuper: warning: invalid mail queue id: ABC*\npostsuper: Deleted: 0 messages\n');
  });
  it('-d ALL deletes everything; -d ALL deferred only the deferred queue', async () => {
    const ids = await populate();
    assert.equal((await postsuper(['-d', 'ALL', 'deferred'])).err, 'postsuper: Deleted: 1 message\n');
    assert.deepEqual(names('incoming'), [ids.incoming]);
    assert.equal((await postsuper(['-d', 'ALL'])).err, 'postsuper: Deleted: 3 messages\n');
    for (const q of ['incoming', 'active', 'deferred', 'hold']) assert.deepEqual(names(q), []);
  });
  it('ALL must be upper case: "all" is just an ID that is not queued', async () => {
    await populate();
    assert.equal((await postsuper(['-d', 'all'])).err, 'postsuper: Deleted: 0 messages\n');
  });
  it('-d - reads IDs from stdin, one per line', async () => {
    const ids = await populate();
    const r = await postsuper(['-d', '-'], `${ids.incoming}\n${ids.hold}\nnot*valid\n`);
    assert.equal(r.err, `postsuper: ${ids.incoming}: removed\npostsuper: ${ids.hold}: removed\npostsuper: warning: invalid mail queue id: not*valid\npostsuper: Deleted: 2 messages\n`);
  });
  it('several -d options, attached arguments too', async () => {
    const ids = await populate();
    const r = await postsuper(['-d', ids.incoming, `-d${ids.active}`]);
    assert.equal(r.err, `postsuper: ${ids.incoming}: removed\npostsuper: ${ids.active}: removed\npostsuper: Deleted: 2 messages\n`);
  });
});

describe('postsuper -h / -H / -r / -e / -f', () => {
  it('-h holds, -H releases to deferred', async () => {
    const ids = await populate();
    assert.equal((await postsuper(['-h', ids.incoming])).err, `postsuper: ${ids.incoming}: placed on hold\npostsuper: Placed on hold: 1 message\n`);
    assert.equal((await postsuper(['-h', 'ALL'])).err, 'postsuper: Placed on hold: 2 messages\n');
    assert.deepEqual(names('hold'), Object.values(ids).sort());
    assert.equal((await postsuper(['-H', ids.hold])).err, `postsuper: ${ids.hold}: released from hold\npostsuper: Released from hold: 1 message\n`);
    assert.deepEqual(names('deferred'), [ids.hold]);
    assert.equal((await postsuper(['-H', 'ALL'])).err, 'postsuper: Released from hold: 3 messages\n');
    assert.deepEqual(names('deferred'), Object.values(ids).sort());
  });
  it('-r requeues to incoming', async () => {
    const ids = await populate();
    assert.equal((await postsuper(['-r', ids.deferred])).err, `postsuper: ${ids.deferred}: requeued\npostsuper: Requeued: 1 message\n`);
    assert.equal((await postsuper(['-r', 'ALL', 'hold'])).err, 'postsuper: Requeued: 1 message\n');
    assert.deepEqual(names('incoming'), [ids.incoming, ids.deferred, ids.hold].sort());
  });
  it('-e expires; -f expires and releases', async () => {
    const ids = await populate();
    assert.equal((await postsuper(['-e', ids.active])).err, `postsuper: ${ids.active}: expired\npostsuper: Force-expired: 1 message\n`);
    assert.equal(
      (await postsuper(['-f', ids.hold])).err,
      `postsuper: ${ids.hold}: expired\npostsuper: ${ids.hold}: released from hold\npostsuper: Force-expired: 1 message\npostsuper: Released from hold: 1 message\n`,
    );
    assert.deepEqual(names('deferred'), [ids.deferred, ids.hold].sort());
  });
  it('operations run in command-line order; reports come in Postfix order', async () => {
    const ids = await populate();
    const r = await postsuper(['-h', ids.deferred, '-d', ids.incoming, '-r', ids.deferred]);
    assert.equal(
      r.err,
      `postsuper: ${ids.deferred}: placed on hold\npostsuper: ${ids.incoming}: removed\npostsuper: ${ids.deferred}: requeued\n` +
        'postsuper: Requeued: 1 message\npostsuper: Deleted: 1 message\npostsuper: Placed on hold: 1 message\n',
    );
    assert.ok(names('incoming').includes(ids.deferred));
  });
});

describe('postsuper structure check', () => {
  it('with no operation, unreadable files move to corrupt/ (never deleted)', async () => {
    const ids = await populate();
    await writeFile(join(dataDir, 'queue', 'deferred', 'BAD0002'), 'garbage');
    const r = await postsuper([]);
    assert.equal(r.code, 0);
    assert.match(r.err, /^postsuper: warning: deferred\/BAD0002: moved to the corrupt queue: /);
    assert.equal(readFileSync(join(dataDir, 'queue', 'corrupt', 'BAD0002'), 'utf8'), 'garbage');
    assert.deepEqual(names('deferred'), [ids.deferred]);
    assert.equal((await postsuper(['-s'])).err, '');
  });
});

describe('postsuper usage errors', () => {
  const bad: Array<[string[], RegExp]> = [
    [['-d'], /^option -d requires a queue ID argument; usage: postsuper/],
    [['-x'], /^invalid option -- 'x'; usage: postsuper/],
    [['-d', 'ALL', 'corrupt'], /^invalid directory name: corrupt$/],
    [['-d', 'ALL', 'nosuchqueue'], /^invalid directory name: nosuchqueue$/],
  ];
  for (const [args, msg] of bad) {
    it(`refuses ${JSON.stringify(args)}`, async () => {
      await assert.rejects(postsuper(args), (e: unknown) => e instanceof UsageError && msg.test(e.message) && !e.message.includes('\n'));
    });
  }
});
