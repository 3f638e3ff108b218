/**
 * @module test/mailbox/mailbox-index
 * SUMMARY: MailboxIndex on a real SQLite file and Maildir.sync()/rebuild() on real
 * directories: UIDVALIDITY/UIDNEXT per folder (status() and folderState()), add() idempotent per name, files dropped in
 * by other tools (no S=/W=) getting UIDs in arrival order with their CRLF size counted,
 * moves to cur/ and flag renames recorded, vanished files removed, UIDs never reused, a
 * message indexed during a sync's listing not taken for vanished, reset/rebuild giving a
 * larger UIDVALIDITY, vanished folders forgotten, a corrupt index set aside and rebuilt, and
 * two connections (as two processes) never handing out the same UID.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir, rename, writeFile, utimes, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INDEX_FILE, MailboxIndex, type MessageFile } from '../../src/mailbox/mailbox-index.js';
import { Maildir } from '../../src/mailbox/maildir.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gg-mindex-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function freshDir(): Promise<string> {
  const d = join(dir, `m${n++}`);
  await mkdir(d, { recursive: true });
  return d;
}

function file(name: string, over: Partial<MessageFile> = {}): MessageFile {
  return { name, dir: 'new', file: name, flags: '', size: 10, vsize: 12, internalDate: 1_700_000_000_000, ...over };
}

describe('MailboxIndex', () => {
  it('gives each folder its own UIDVALIDITY and consecutive UIDs; add() is idempotent per name', async () => {
    const idx = MailboxIndex.open(join(await freshDir(), INDEX_FILE));
    try {
      const before = Math.floor(Date.now() / 1000);
      const inbox = idx.status('INBOX');
      assert.equal(inbox.uidNext, 1);
      assert.equal(inbox.messages, 0);
      assert.ok(inbox.uidValidity >= before && inbox.uidValidity <= Math.floor(Date.now() / 1000) + 1, String(inbox.uidValidity));
      assert.equal(idx.add('INBOX', file('a')), 1);
      assert.equal(idx.add('INBOX', file('b')), 2);
      assert.equal(idx.add('INBOX', file('a')), 1, 'a name the index has keeps its UID');
      assert.equal(idx.add('Sent', file('a')), 1, 'UIDs are per folder');
      const sent = idx.status('Sent');
      assert.notEqual(sent.uidValidity, inbox.uidValidity, 'no two folders share a UIDVALIDITY');
      assert.deepEqual(idx.status('INBOX'), { folder: 'INBOX', uidValidity: inbox.uidValidity, uidNext: 3, messages: 2, firstRecentUid: 1 });
      // The same without the count; a folder seen for the first time is created by either.
      assert.deepEqual(idx.folderState('INBOX'), { folder: 'INBOX', uidValidity: inbox.uidValidity, uidNext: 3, firstRecentUid: 1 });
      idx.claimRecent('INBOX', 3);
      assert.equal(idx.folderState('INBOX').firstRecentUid, 3);
      const drafts = idx.folderState('Drafts');
      assert.deepEqual(idx.status('Drafts'), { ...drafts, messages: 0 });
      assert.ok(drafts.uidValidity > sent.uidValidity);
      assert.deepEqual(idx.messages('INBOX').map((m) => [m.uid, m.name, m.size, m.vsize]), [
        [1, 'a', 10, 12],
        [2, 'b', 10, 12],
      ]);
      assert.deepEqual(idx.folders(), ['Drafts', 'INBOX', 'Sent']);
    } finally {
      idx.close();
    }
  });

  it('never removes what was indexed after the listing began (removeBelowUid)', async () => {
    const idx = MailboxIndex.open(join(await freshDir(), INDEX_FILE));
    try {
      idx.add('INBOX', file('old'));
      const mark = idx.status('INBOX').uidNext;
      // A delivery lands between the directory listing and the sync transaction.
      idx.add('INBOX', file('delivered-meanwhile'));
      const r = idx.sync('INBOX', [], [], { removeBelowUid: mark });
      assert.deepEqual(r, { added: 0, removed: 1, updated: 0 });
      assert.deepEqual(idx.messages('INBOX').map((m) => m.name), ['delivered-meanwhile']);
    } finally {
      idx.close();
    }
  });

  it('hands out distinct UIDs through two connections, as two processes would', async () => {
    const path = join(await freshDir(), INDEX_FILE);
    const a = MailboxIndex.open(path);
    const b = MailboxIndex.open(path);
    try {
      const uids: number[] = [];
      for (let i = 0; i < 50; i++) uids.push((i % 2 === 0 ? a : b).add('INBOX', file(`m${i}`)));
      assert.deepEqual(uids, Array.from({ length: 50 }, (_, i) => i + 1));
      assert.equal(a.status('INBOX').uidValidity, b.status('INBOX').uidValidity);
    } finally {
      a.close();
      b.close();
    }
  });

  it('gives a folder a larger UIDVALIDITY after a reset, even within the same second', async () => {
    const idx = MailboxIndex.open(join(await freshDir(), INDEX_FILE));
    try {
      idx.add('INBOX', file('a'));
      const first = idx.status('INBOX').uidValidity;
      idx.reset('INBOX');
      const second = idx.status('INBOX');
      assert.ok(second.uidValidity > first, `${second.uidValidity} > ${first}`);
      assert.equal(second.uidNext, 1);
      assert.equal(second.messages, 0);
    } finally {
      idx.close();
    }
  });
});

describe('Maildir.sync', () => {
  const MSG = Buffer.from('Subject: x\r\n\r\nbody\r\n');

  it('indexes foreign files, records moves and flags, drops vanished files, never reuses UIDs', async () => {
    const root = await freshDir();
    const md = new Maildir(root, { hostname: 'h' });
    try {
      const d1 = await md.deliver(MSG);
      // Another MDA and a restore from backup drop files in without S=/W=, older ones first.
      await writeFile(join(root, 'new', '1600000002.foreign2.other'), 'Subject: f2\n\nline\nline\n');
      await writeFile(join(root, 'cur', '1600000001.foreign1.other:2,SF'), 'Subject: f1\n\nx\n');
      await utimes(join(root, 'cur', '1600000001.foreign1.other:2,SF'), 1_600_000_001, 1_600_000_001);
      await utimes(join(root, 'new', '1600000002.foreign2.other'), 1_600_000_002, 1_600_000_002);
      await writeFile(join(root, 'new', '.tmp-of-another-tool'), 'ignored');
      assert.deepEqual(await md.sync(), { added: 2, removed: 0, updated: 0 });
      const msgs = md.index().messages('INBOX');
      assert.deepEqual(
        msgs.map((m) => [m.uid, m.name, m.dir, m.flags]),
        [
          [1, d1.name, 'new', ''],
          [2, '1600000001.foreign1.other', 'cur', 'FS'],
          [3, '1600000002.foreign2.other', 'new', ''],
        ],
      );
      const f2 = msgs[2]!;
      assert.equal(f2.size, 23);
      assert.equal(f2.vsize, 27, 'four LFs become CRLF');
      assert.equal(f2.internalDate, 1_600_000_002_000);

      // A reader marks the first message seen (new/ -> cur/ with :2,S) and deletes the third.
      await rename(join(root, 'new', d1.name), join(root, 'cur', `${d1.name}:2,S`));
      await rm(join(root, 'new', '1600000002.foreign2.other'));
      assert.deepEqual(await md.sync(), { added: 0, removed: 1, updated: 1 });
      const after1 = md.index().messages('INBOX');
      assert.deepEqual(after1.map((m) => [m.uid, m.dir, m.flags, m.file]), [
        [1, 'cur', 'S', `${d1.name}:2,S`],
        [2, 'cur', 'FS', '1600000001.foreign1.other:2,SF'],
      ]);
      assert.equal(md.messagePath('INBOX', after1[0]!), join(root, 'cur', `${d1.name}:2,S`));

      const d4 = await md.deliver(MSG);
      assert.equal(d4.uid, 4, 'UID 3 is gone for good');
      assert.deepEqual(await md.sync(), { added: 0, removed: 0, updated: 0 });
    } finally {
      md.close();
    }
  });

  it('rebuilds under a new UIDVALIDITY, and forgets folders that are gone from disk', async () => {
    const root = await freshDir();
    const md = new Maildir(root, { hostname: 'h' });
    try {
      await md.deliver(MSG);
      await md.deliver(MSG);
      await md.deliver(MSG, { folder: 'Trash' });
      const validity = md.index().status('INBOX').uidValidity;
      const r = await md.rebuild();
      assert.deepEqual(Object.fromEntries(r), { INBOX: { added: 2, removed: 0, updated: 0 }, Trash: { added: 1, removed: 0, updated: 0 } });
      const st = md.index().status('INBOX');
      assert.ok(st.uidValidity > validity);
      assert.equal(st.uidNext, 3);
      await rm(join(root, '.Trash'), { recursive: true });
      await md.syncAll();
      assert.deepEqual(md.index().folders(), ['INBOX']);
    } finally {
      md.close();
    }
  });

  it('sets a corrupt index aside and rebuilds it from the files', async () => {
    const root = await freshDir();
    const first = new Maildir(root, { hostname: 'h' });
    await first.deliver(MSG);
    await first.deliver(MSG);
    first.close();
    await writeFile(join(root, INDEX_FILE), Buffer.alloc(8192, 0x5a));
    const warnings: string[] = [];
    const md = new Maildir(root, { hostname: 'h', warn: (m) => warnings.push(m) });
    try {
      assert.deepEqual(await md.sync(), { added: 2, removed: 0, updated: 0 });
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /rebuilding/);
      assert.ok((await readdir(root)).some((f) => f.startsWith(`${INDEX_FILE}.corrupt-`)));
    } finally {
      md.close();
    }
  });
});
