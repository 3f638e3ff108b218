/**
 * @module test/cli/postqueue
 * SUMMARY: `greygate postqueue` in-process through run(args, io) against the queue under
 * main.cf's data_directory: -p and -j output of committed messages (golden, TZ=UTC), the
 * empty queue, -f / -i / -s flushing (mtime reset + trigger file), and UsageError for bad
 * command lines and invalid queue IDs or sites.
 */
process.env.TZ = 'UTC';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { UsageError } from '../../src/errors.js';
import type { CliIO } from '../../src/cli/io.js';
import { run } from '../../src/cli/postqueue.js';
import { QueueStore } from '../../src/queue/store.js';
import { commitMessage } from '../queue/queue-fixture.js';

let root: string;
let configDir: string;
let dataDir: string;

async function setup(extra = ''): Promise<void> {
  root = await mkdtemp(join(tmpdir(), 'gg-cli-postqueue-'));
  configDir = join(root, 'rules');
  dataDir = join(root, 'state');
  await mkdir(configDir);
  await writeFile(join(configDir, 'main.cf'), `data_directory = ${dataDir}\nqueue_fsync = no\n${extra}`);
}

async function postqueue(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIO = { configDir, stdin: Readable.from([]), out: (t) => void (out += t), err: (t) => void (err += t) };
  const code = await run(args, io);
  return { code, out, err };
}

async function withStore<T>(f: (s: QueueStore) => Promise<T>): Promise<T> {
  const s = await QueueStore.open(dataDir, { fsync: false });
  try {
    return await f(s);
  } finally {
    await s.close();
  }
}

describe('postqueue', () => {
  before(() => setup());
  after(() => rm(root, { recursive: true, force: true }));

  it('-p on an empty queue', async () => {
    assert.deepEqual(await postqueue(['-p']), { code: 0, out: 'Mail queue is empty\n', err: '' });
  });
  it('-j on an empty queue prints nothing', async () => {
    assert.deepEqual(await postqueue(['-j']), { code: 0, out: '', err: '' });
  });

  let held = '';
  let deferred = '';
  it('-p lists committed messages in Postfix layout', async () => {
    await withStore(async (s) => {
      held = await commitMessage(s, { target: 'hold', body: 'x'.repeat(1500), envelope: { sender: '', recipients: ['postmaster@example.net'], arrivalTime: Date.UTC(2024, 2, 1, 9, 5, 7) } });
      deferred = await commitMessage(s, { body: 'y'.repeat(600), envelope: { arrivalTime: Date.UTC(2024, 2, 2, 10, 0, 0) } });
      await s.move(deferred, 'incoming', 'deferred');
      const r = await s.read('deferred', deferred);
      assert.equal(r.kind, 'ok');
      if (r.kind !== 'ok') return;
      const env = structuredClone(r.message.envelope);
      env.recipients[0]!.status = 'deferred';
      env.recipients[0]!.delayReason = 'connect to mx.example.com[192.0.2.1]:25: Connection refused';
      env.recipients[1]!.status = 'deferred';
      env.recipients[1]!.delayReason = 'connect to mx.example.com[192.0.2.1]:25: Connection refused';
      env.nextAttemptAt = Date.now() + 3600_000;
      await s.updateEnvelope('deferred', deferred, env);
    });
    const { code, out, err } = await postqueue(['-p']);
    assert.equal(code, 0);
    assert.equal(err, '');
    const pad = (id: string): string => id.padEnd(11, ' ');
    assert.equal(
      out,
      '-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n' +
        `${pad(deferred)}     600 Sat Mar  2 10:00:00  alice@example.org\n` +
        '                 (connect to mx.example.com[192.0.2.1]:25: Connection refused)\n' +
        '                                         bob@example.com\n' +
        '                                         carol@example.com\n' +
        '\n' +
        `${pad(held + '!')}    1500 Fri Mar  1 09:05:07  MAILER-DAEMON\n` +
        '                                         postmaster@example.net\n' +
        '\n' +
        '-- 2 Kbytes in 2 Requests.\n',
    );
  });

  it('-j prints one Postfix JSON object per message', async () => {
    const { code, out } = await postqueue(['-j']);
    assert.equal(code, 0);
    const reason = 'connect to mx.example.com[192.0.2.1]:25: Connection refused';
    assert.equal(
      out,
      `{"queue_name": "deferred", "queue_id": "${deferred}", "arrival_time": ${Date.UTC(2024, 2, 2, 10) / 1000}, "message_size": 600, "forced_expire": false, "sender": "alice@example.org", "recipients": [{"address": "bob@example.com", "delay_reason": "${reason}"}, {"address": "carol@example.com", "delay_reason": "${reason}"}]}\n` +
        `{"queue_name": "hold", "queue_id": "${held}", "arrival_time": ${Date.UTC(2024, 2, 1, 9, 5, 7) / 1000}, "message_size": 1500, "forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"address": "postmaster@example.net"}]}\n`,
    );
  });

  it('-i ID makes that deferred message due now and writes the trigger', async () => {
    assert.ok((await withStore((s) => s.list('deferred')))[0]!.mtimeMs > Date.now());
    assert.deepEqual(await postqueue(['-i', deferred]), { code: 0, out: '', err: '' });
    assert.ok((await withStore((s) => s.list('deferred')))[0]!.mtimeMs <= Date.now() + 1000);
    assert.ok((await withStore((s) => s.flushRequestedAt())) > 0);
  });

  it('-i with an ID that is not queued succeeds silently, as flush(8) does', async () => {
    assert.deepEqual(await postqueue(['-i', 'ABCDEF123']), { code: 0, out: '', err: '' });
  });

  it('-f and -s flush deferred mail', async () => {
    await withStore((s) => s.touch('deferred', deferred, Date.now() + 3600_000));
    assert.equal((await postqueue(['-f'])).code, 0);
    assert.ok((await withStore((s) => s.list('deferred')))[0]!.mtimeMs <= Date.now() + 1000);
    await withStore((s) => s.touch('deferred', deferred, Date.now() + 3600_000));
    assert.equal((await postqueue(['-s', 'nowhere.example'])).code, 0);
    assert.ok((await withStore((s) => s.list('deferred')))[0]!.mtimeMs > Date.now());
    assert.equal((await postqueue(['-s', 'example.com'])).code, 0);
    assert.ok((await withStore((s) => s.list('deferred')))[0]!.mtimeMs <= Date.now() + 1000);
  });

  it('-p warns about an unreadable file and lists the rest', async () => {
    await writeFile(join(dataDir, 'queue', 'incoming', 'BAD0001'), 'not a queue file');
    const { code, out, err } = await postqueue(['-p']);
    assert.equal(code, 0);
    assert.match(err, /^postqueue: warning: incoming\/BAD0001: unreadable queue file: /);
    assert.match(out, /-- 2 Kbytes in 2 Requests\.\n$/);
    await rm(join(dataDir, 'queue', 'incoming', 'BAD0001'));
  });

  const bad: Array<[string[], RegExp]> = [
    [[], /^usage: postqueue -f \| postqueue -i queueid \| postqueue -j \| postqueue -p \| postqueue -s site$/],
    [['-p', '-j'], /^usage: postqueue/],
    [['-pf'], /^usage: postqueue/],
    [['-x'], /invalid option -- 'x'/],
    [['-i'], /option -i requires an argument/],
    [['-p', 'extra'], /^usage: postqueue/],
    [['-i', '../../etc'], /^Invalid request: "\.\.\/\.\.\/etc"$/],
    [['-s', 'bad site!'], /^Cannot flush mail queue - invalid destination: "bad site!"$/],
  ];
  for (const [args, msg] of bad) {
    it(`refuses ${JSON.stringify(args)}`, async () => {
      await assert.rejects(postqueue(args), (e: unknown) => e instanceof UsageError && msg.test(e.message) && !e.message.includes('\n'));
    });
  }
});

describe('postqueue with enable_long_queue_ids = yes', () => {
  before(() => setup('enable_long_queue_ids = yes\n'));
  after(() => rm(root, { recursive: true, force: true }));
  it('uses the long layout', async () => {
    await withStore((s) => commitMessage(s));
    const { out } = await postqueue(['-p']);
    assert.ok(out.startsWith('----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n'), out);
  });
});
