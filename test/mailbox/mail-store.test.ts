/**
 * @module test/mailbox/mail-store
 * SUMMARY: the UserMailbox/MailStore API of mailbox/maildir.ts on real directories: folders
 * (create, delete, rename with children, INBOX rename, names), subscriptions (written as
 * Courier/Dovecot read them, Dovecot 2.3's v2 file read), open() snapshots with \Recent
 * claimed once and new/ moved to cur/, read() byte-exact in CRLF form, readMany() (whole and
 * header-only, through renames and expunges by this and another process), setFlags (file-name
 * letters as mutt and Python's mailbox read them, keywords in the index, letters we do not
 * manage kept), expunge (only \Deleted, limited by UIDs), append (flags, internal date),
 * copy (hard link) and move (rename) with UIDPLUS pairs, change events with their origin,
 * the POP3 lock, UIDs surviving a new store, schema 1 indexes migrated in place, and the
 * listing of a quiet folder reused only while its directories' mtimes are settled (another
 * writer's change in the same second seen; a recent or future mtime never trusted).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { link, mkdtemp, readdir, readFile, rm, stat, rename, unlink, utimes, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { INDEX_FILE } from '../../src/mailbox/mailbox-index.js';
import type { MailboxChange } from '../../src/mailbox/mail-store.js';
import { fromMaildirBytes, imapFlags, MaildirStore, parseImapFlags, parseSubscriptions, type Maildir } from '../../src/mailbox/maildir.js';

const run = promisify(execFile);

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gg-mailstore-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
function fresh(): { store: MaildirStore; data: string; box: Maildir; root: string } {
  const data = join(dir, `d${n++}`);
  const store = new MaildirStore(data, { hostname: 'mx.example.org' });
  return { store, data, box: store.mailbox('alice'), root: join(data, 'mail', 'alice') };
}

const msg = (i: number): Buffer => Buffer.from(`From: a@example.org\r\nSubject: message ${i}\r\n\r\nbody ${i}\r\n.\r\nend\r\n`);

async function ok<T extends { kind: string }>(p: Promise<T>): Promise<Extract<T, { kind: 'ok' }>> {
  const r = await p;
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  return r as Extract<T, { kind: 'ok' }>;
}

async function files(root: string, sub: 'new' | 'cur', folder = ''): Promise<string[]> {
  return (await readdir(join(root, folder, sub))).sort();
}

/** Another Maildir writer (procmail, Postfix local): tmp/, then a link into new/, as the spec says. */
async function foreignDeliver(root: string, tag: string): Promise<void> {
  const name = `${Math.floor(Date.now() / 1000)}.P${process.pid}_${tag}.other.example`;
  await writeFile(join(root, 'tmp', name), `Subject: ${tag}\n\n${tag}\n`);
  await link(join(root, 'tmp', name), join(root, 'new', name));
  await unlink(join(root, 'tmp', name));
}

describe('flag helpers', () => {
  it('maps IMAP flags to Maildir letters and keywords, and back', () => {
    const p = parseImapFlags(['\\seen', '\\DELETED', '\\Recent', '\\Bogus', '$forwarded', '$Junk', '$junk', 'Work', 'bad(word', '']);
    assert.deepEqual([...p.letters].sort(), ['P', 'S', 'T']);
    assert.deepEqual(p.keywords, ['$Junk', 'Work']);
    assert.deepEqual(imapFlags('DFPRSTa', '$Junk Work'), ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft', '$Forwarded', '$Junk', 'Work']);
    assert.deepEqual(imapFlags('', ''), []);
  });

  it('turns every LF into CRLF', () => {
    assert.equal(fromMaildirBytes(Buffer.from('a\nb\r\nc\n\n')).toString(), 'a\r\nb\r\r\nc\r\n\r\n');
    assert.equal(fromMaildirBytes(Buffer.from('no newline')).toString(), 'no newline');
  });

  it('reads both subscriptions formats', () => {
    assert.deepEqual(parseSubscriptions('INBOX\nSent\nwork.2024\n\n'), ['INBOX', 'Sent', 'work.2024']);
    assert.deepEqual(parseSubscriptions('V\t2\n\nInbox\nwork\t2024\nSent\n'), ['INBOX', 'work.2024', 'Sent']);
  });
});

describe('UserMailbox folders', () => {
  it('creates, lists, renames (children too, UIDVALIDITY kept) and deletes folders', async () => {
    const { store, box, root } = fresh();
    try {
      assert.deepEqual(await box.folders(), ['INBOX']);
      await ok(box.createFolder('Sent'));
      await ok(box.createFolder('work.'));
      await ok(box.createFolder('work.2024'));
      assert.deepEqual(await box.createFolder('Sent'), { kind: 'exists', folder: 'Sent' });
      assert.deepEqual(await box.createFolder('inbox'), { kind: 'exists', folder: 'INBOX' });
      assert.deepEqual(await box.createFolder('a..b'), { kind: 'invalid-name', folder: 'a..b' });
      assert.deepEqual(await box.createFolder('a/b'), { kind: 'invalid-name', folder: 'a/b' });
      assert.deepEqual(await box.folders(), ['INBOX', 'Sent', 'work', 'work.2024']);
      assert.ok((await stat(join(root, '.work.2024', 'maildirfolder'))).isFile());
      for (const sub of ['cur', 'new', 'tmp']) assert.ok((await stat(join(root, '.Sent', sub))).isDirectory());

      const app = await ok(box.append('work.2024', msg(1), { flags: ['\\Seen'] }));
      const renamed = await ok(box.renameFolder('work', 'archive'));
      assert.deepEqual(renamed, { kind: 'ok', from: 'work', to: 'archive' });
      assert.deepEqual(await box.folders(), ['INBOX', 'Sent', 'archive', 'archive.2024']);
      const moved = await ok(box.open('archive.2024'));
      assert.equal(moved.uidValidity, app.uidValidity, 'UIDVALIDITY goes with the folder');
      assert.deepEqual(moved.messages.map((m) => [m.uid, m.flags]), [[app.uid, ['\\Seen']]]);

      assert.deepEqual(await box.renameFolder('nope', 'x'), { kind: 'nonexistent', folder: 'nope' });
      assert.deepEqual(await box.renameFolder('Sent', 'archive'), { kind: 'exists', folder: 'archive' });
      assert.deepEqual(await box.renameFolder('Sent', 'INBOX'), { kind: 'exists', folder: 'INBOX' });
      await ok(box.createFolder('x.2024'));
      await ok(box.createFolder('x'));
      await ok(box.deleteFolder('x'));
      assert.deepEqual(await box.renameFolder('archive', 'x'), { kind: 'exists', folder: 'x.2024' }, 'a child target is taken');

      assert.deepEqual(await box.deleteFolder('INBOX'), { kind: 'inbox', folder: 'INBOX' });
      assert.deepEqual(await box.deleteFolder('Trash'), { kind: 'nonexistent', folder: 'Trash' });
      await ok(box.deleteFolder('archive'));
      assert.deepEqual(await box.folders(), ['INBOX', 'Sent', 'archive.2024', 'x.2024'], 'children stay');
      assert.ok(!(await readdir(root)).some((f) => f.includes('deleted')), 'nothing left behind');
      assert.deepEqual(await box.open('archive'), { kind: 'nonexistent', folder: 'archive' });

      // A folder created again under an old name gets a new UIDVALIDITY.
      await ok(box.deleteFolder('Sent'));
      const before = (await ok(box.status('INBOX'))).uidValidity;
      await ok(box.createFolder('Sent'));
      assert.ok((await ok(box.status('Sent'))).uidValidity > before);
    } finally {
      store.close();
    }
  });

  it('renames INBOX by moving its messages into the new folder (RFC 3501 6.3.5)', async () => {
    const { store, box } = fresh();
    try {
      await store.deliver('alice', msg(1));
      await store.deliver('alice', msg(2));
      const inbox = await ok(box.open('INBOX'));
      await ok(box.renameFolder('INBOX', 'Old'));
      assert.deepEqual(await box.folders(), ['INBOX', 'Old']);
      const after = await ok(box.open('INBOX'));
      assert.equal(after.messages.length, 0);
      assert.equal(after.uidValidity, inbox.uidValidity);
      const old = await ok(box.open('Old'));
      assert.equal(old.messages.length, 2);
      assert.ok((await box.read('Old', old.messages[1]!.uid))!.equals(msg(2)));
    } finally {
      store.close();
    }
  });

  it('keeps subscriptions in the Maildir++ subscriptions file', async () => {
    const { store, box, root } = fresh();
    try {
      assert.deepEqual(await box.subscriptions(), []);
      await box.subscribe('Sent', true);
      await box.subscribe('inbox', true);
      await box.subscribe('Not.There', true);
      await box.subscribe('Sent', true);
      assert.deepEqual(await box.subscriptions(), ['Sent', 'INBOX', 'Not.There']);
      await box.subscribe('Not.There', false);
      assert.equal(await readFile(join(root, 'subscriptions'), 'utf8'), 'Sent\nINBOX\n');
      assert.deepEqual(await box.folders(), ['INBOX'], 'the file is not a folder');
    } finally {
      store.close();
    }
  });
});

describe('UserMailbox messages', () => {
  it('opens a snapshot; SELECT claims \\Recent once and moves new/ to cur/, EXAMINE does not', async () => {
    const { store, box, root } = fresh();
    try {
      const d1 = await store.deliver('alice', msg(1), { prepend: ['Return-Path: <s@example.net>'] });
      await store.deliver('alice', msg(2));
      const examine = await ok(box.open('INBOX'));
      assert.deepEqual(examine.messages.map((m) => [m.uid, m.recent, m.flags]), [
        [1, true, []],
        [2, true, []],
      ]);
      assert.equal(examine.uidNext, 3);
      assert.equal(examine.messages[0]!.size, d1.vsize);
      assert.equal(examine.messages[0]!.internalDate, d1.internalDate);
      assert.equal((await files(root, 'new')).length, 2);
      const select = await ok(box.open('INBOX', { claimRecent: true }));
      assert.deepEqual(select.messages.map((m) => m.recent), [true, true]);
      assert.deepEqual(await files(root, 'new'), []);
      assert.ok((await files(root, 'cur')).every((f) => f.endsWith(':2,')));
      await store.deliver('alice', msg(3));
      const again = await ok(box.open('INBOX', { claimRecent: true }));
      assert.deepEqual(again.messages.map((m) => [m.uid, m.recent]), [
        [1, false],
        [2, false],
        [3, true],
      ]);
      const st = await ok(box.status('INBOX'));
      assert.deepEqual(st, { kind: 'ok', folder: 'INBOX', messages: 3, recent: 0, unseen: 3, uidNext: 4, uidValidity: again.uidValidity });
      // Byte-exact, even after the file moved to cur/.
      assert.ok((await box.read('INBOX', 1))!.equals(Buffer.concat([Buffer.from('Return-Path: <s@example.net>\r\n'), msg(1)])));
      assert.equal(await box.read('INBOX', 99), null);
      assert.equal(await box.read('../x', 1), null);
      assert.deepEqual(await box.open('Nope'), { kind: 'nonexistent', folder: 'Nope' });
      assert.deepEqual(await box.status('a..b'), { kind: 'invalid-name', folder: 'a..b' });
    } finally {
      store.close();
    }
  });

  it('stores system flags as info letters (read by Python mailbox), keywords in the index, and keeps foreign letters', async () => {
    const { store, box, root } = fresh();
    try {
      for (let i = 1; i <= 3; i++) await store.deliver('alice', msg(i));
      let r = await box.setFlags('INBOX', [1, 2, 42], ['\\Seen', '\\Flagged', '$Junk'], 'add');
      assert.deepEqual(r, [
        { uid: 1, flags: ['\\Flagged', '\\Seen', '$Junk'] },
        { uid: 2, flags: ['\\Flagged', '\\Seen', '$Junk'] },
      ]);
      r = await box.setFlags('INBOX', [2], ['\\Flagged', '$junk'], 'remove');
      assert.deepEqual(r, [{ uid: 2, flags: ['\\Seen'] }]);
      r = await box.setFlags('INBOX', [3], ['\\Answered', '$Forwarded', 'Work'], 'replace');
      assert.deepEqual(r, [{ uid: 3, flags: ['\\Answered', '$Forwarded', 'Work'] }]);
      const cur = await files(root, 'cur');
      assert.deepEqual(cur.map((f) => f.slice(f.indexOf(':'))).sort(), [':2,FS', ':2,PR', ':2,S']);
      assert.deepEqual(await files(root, 'new'), []);
      // Another reader (mutt) adds a flag and a Dovecot keyword letter: we keep "a".
      const f3 = cur.find((f) => f.endsWith(':2,PR'))!;
      await rename(join(root, 'cur', f3), join(root, 'cur', f3.replace(':2,PR', ':2,PRSa')));
      r = await box.setFlags('INBOX', [3], ['\\Draft'], 'add');
      assert.deepEqual(r, [{ uid: 3, flags: ['\\Answered', '\\Seen', '\\Draft', '$Forwarded', 'Work'] }]);
      assert.ok((await files(root, 'cur')).some((f) => f.endsWith(':2,DPRSa')));
      const snap = await ok(box.open('INBOX'));
      assert.deepEqual(snap.keywords.sort(), ['$Forwarded', '$Junk', 'Work']);
      const py = await run('python3', [
        '-c',
        'import mailbox,sys,json\nm=mailbox.Maildir(sys.argv[1],create=False)\nprint(json.dumps(sorted(m[k].get_flags() for k in m.keys())))',
        root,
      ]);
      assert.deepEqual(JSON.parse(py.stdout), ['DPRSa', 'FS', 'S']);
      // A message gone behind our back is skipped, not an error.
      const gone = (await files(root, 'cur')).find((f) => f.endsWith(':2,S'))!;
      await rm(join(root, 'cur', gone));
      r = await box.setFlags('INBOX', [1, 2, 3], ['\\Deleted'], 'add');
      assert.deepEqual(r.map((u) => u.uid), [1, 3]);
    } finally {
      store.close();
    }
  });

  it('expunges only \\Deleted messages, limited to the given UIDs', async () => {
    const { store, box, root } = fresh();
    try {
      for (let i = 1; i <= 4; i++) await store.deliver('alice', msg(i));
      await box.setFlags('INBOX', [1, 2, 3], ['\\Deleted'], 'add');
      assert.deepEqual(await box.expunge('INBOX', [2, 4]), [2]);
      // mutt marks message 4 deleted on its own (T in the file name).
      await ok(box.open('INBOX'));
      const f4 = (await files(root, 'new')).concat(await files(root, 'cur')).find((f) => !f.includes(':2,T'))!;
      const sub = (await files(root, 'new')).includes(f4) ? 'new' : 'cur';
      await rename(join(root, sub, f4), join(root, 'cur', `${f4.split(':')[0]}:2,T`));
      assert.deepEqual(await box.expunge('INBOX'), [1, 3, 4]);
      assert.deepEqual((await ok(box.open('INBOX'))).messages, []);
      assert.deepEqual([...(await files(root, 'new')), ...(await files(root, 'cur'))], []);
      assert.deepEqual(await box.expunge('Nope'), []);
    } finally {
      store.close();
    }
  });

  it('appends with flags and an internal date, and answers APPENDUID', async () => {
    const { store, box, root } = fresh();
    try {
      const date = Date.UTC(2020, 1, 29, 12, 0, 0);
      const a = await ok(box.append('INBOX', msg(1), { flags: ['\\Seen', 'Work'], internalDate: date }));
      const b = await ok(box.append('INBOX', msg(2)));
      assert.equal(b.uid, a.uid + 1);
      const snap = await ok(box.open('INBOX'));
      assert.equal(snap.uidValidity, a.uidValidity);
      assert.deepEqual(snap.messages.map((m) => [m.uid, m.flags, m.internalDate === date]), [
        [a.uid, ['\\Seen', 'Work'], true],
        [b.uid, [], false],
      ]);
      assert.equal(snap.messages[0]!.size, msg(1).length);
      assert.equal((await files(root, 'cur')).length, 1);
      assert.equal((await files(root, 'new')).length, 1);
      assert.ok((await box.read('INBOX', a.uid))!.equals(msg(1)));
      assert.deepEqual(await box.append('Nope', msg(1)), { kind: 'nonexistent', folder: 'Nope' });
    } finally {
      store.close();
    }
  });

  it('copies (hard links) and moves (renames) with UID pairs, keeping flags, keywords and dates', async () => {
    const { store, box, root } = fresh();
    try {
      for (let i = 1; i <= 3; i++) await store.deliver('alice', msg(i), { internalDate: Date.UTC(2021, 0, i) });
      await ok(box.createFolder('Archive'));
      await box.setFlags('INBOX', [2], ['\\Flagged', 'Work'], 'add');
      const c = await ok(box.copy('INBOX', [3, 2, 9], 'Archive'));
      assert.deepEqual(c.pairs, [
        [2, 1],
        [3, 2],
      ]);
      const arch = await ok(box.open('Archive'));
      assert.equal(c.uidValidity, arch.uidValidity);
      assert.deepEqual(arch.messages.map((m) => [m.uid, m.flags, m.internalDate, m.recent]), [
        [1, ['\\Flagged', 'Work'], Date.UTC(2021, 0, 2), true],
        [2, [], Date.UTC(2021, 0, 3), true],
      ]);
      const src = await stat(join(root, 'cur', (await files(root, 'cur'))[0]!));
      assert.equal(src.nlink, 2, 'a copy is a hard link');
      assert.ok((await box.read('Archive', 1))!.equals(msg(2)));

      const m = await ok(box.move('INBOX', [1, 2], 'Archive'));
      assert.deepEqual(m.pairs, [
        [1, 3],
        [2, 4],
      ]);
      assert.deepEqual((await ok(box.open('INBOX'))).messages.map((x) => x.uid), [3]);
      assert.deepEqual((await ok(box.open('Archive'))).messages.map((x) => [x.uid, x.flags]), [
        [1, ['\\Flagged', 'Work']],
        [2, []],
        [3, []],
        [4, ['\\Flagged', 'Work']],
      ]);
      assert.ok((await box.read('Archive', 3))!.equals(msg(1)));
      assert.deepEqual(await box.copy('INBOX', [3], 'Nope'), { kind: 'nonexistent', folder: 'Nope' });
      assert.deepEqual(await box.move('INBOX', [], 'Archive'), { kind: 'ok', uidValidity: arch.uidValidity, pairs: [] });
    } finally {
      store.close();
    }
  });

  it('keeps UIDs, flags and keywords for a new store on the same directory', async () => {
    const { store, box, data } = fresh();
    await store.deliver('alice', msg(1));
    await store.deliver('alice', msg(2));
    await box.setFlags('INBOX', [2], ['\\Seen', 'Work'], 'add');
    const first = await ok(box.open('INBOX', { claimRecent: true }));
    store.close();
    const again = new MaildirStore(data);
    try {
      const snap = await ok(again.mailbox('ALICE').open('INBOX'));
      assert.deepEqual(
        snap.messages.map((m) => [m.uid, m.flags]),
        first.messages.map((m) => [m.uid, m.flags]),
      );
      assert.equal(snap.uidValidity, first.uidValidity);
      assert.ok(snap.messages.every((m) => !m.recent));
    } finally {
      again.close();
    }
  });

  it('reuses a quiet folder\'s listing, but sees other tools\' and processes\' changes', async () => {
    const { store, box, root, data } = fresh();
    const other = new MaildirStore(data);
    try {
      await store.deliver('alice', msg(1));
      await store.deliver('alice', msg(2));
      await ok(box.open('INBOX', { claimRecent: true }));
      const old = (Date.now() - 3_600_000) / 1000;
      const age = async (): Promise<void> => {
        for (const sub of ['new', 'cur']) await utimes(join(root, sub), old, old);
      };
      await age();
      assert.deepEqual((await ok(box.open('INBOX'))).messages.map((m) => m.flags), [[], []]);
      // mutt marks message 1 seen: a rename in cur/.
      const f1 = (await files(root, 'cur'))[0]!;
      await rename(join(root, 'cur', f1), join(root, 'cur', `${f1.split(':')[0]}:2,S`));
      assert.deepEqual((await ok(box.open('INBOX'))).messages.map((m) => m.flags), [['\\Seen'], []]);
      await age();
      await ok(box.open('INBOX'));
      // Another process sets a keyword: no file changes, only its index commit.
      await other.mailbox('alice').setFlags('INBOX', [2], ['Work'], 'add');
      assert.deepEqual((await ok(box.open('INBOX'))).messages.map((m) => m.flags), [['\\Seen'], ['Work']]);
    } finally {
      other.close();
      store.close();
    }
  });

  it('hands every open() of a quiet folder the same snapshot; own flag changes are confirmed by a listing, others\' same-tick renames still seen', async () => {
    const { store, box, root } = fresh();
    try {
      for (let i = 1; i <= 4; i++) await store.deliver('alice', msg(i));
      const first = await ok(box.open('INBOX', { claimRecent: true }));
      assert.deepEqual(first.messages.map((m) => m.recent), [true, true, true, true]);
      assert.equal(first.firstUnseen, 1);
      const old = (Date.now() - 3_600_000) / 1000;
      const age = async (): Promise<void> => {
        for (const sub of ['new', 'cur']) await utimes(join(root, sub), old, old);
      };
      await age();
      const a = await ok(box.open('INBOX', { claimRecent: true }));
      const b = await ok(box.open('INBOX'));
      // One immutable array for every session while nothing changed; \Recent went to the first SELECT only.
      assert.equal(a.messages, b.messages);
      assert.ok(a.messages.every((m) => !m.recent));
      assert.deepEqual(await ok(box.status('INBOX')), { kind: 'ok', folder: 'INBOX', messages: 4, recent: 0, unseen: 4, uidNext: 5, uidValidity: a.uidValidity });
      // This process's own change (directories now modified too recently to be trusted).
      await box.setFlags('INBOX', [1, 2], ['\\Seen'], 'add');
      const c = await ok(box.open('INBOX'));
      assert.notEqual(c.messages, a.messages);
      assert.deepEqual(c.messages.map((m) => m.flags), [['\\Seen'], ['\\Seen'], [], []]);
      assert.equal(c.firstUnseen, 3);
      assert.deepEqual(a.messages.map((m) => m.flags), [[], [], [], []], 'a snapshot already handed out never changes');
      // mutt renames a file right after our change, very likely in the same mtime tick.
      await box.setFlags('INBOX', [3], ['\\Flagged'], 'add');
      const f4 = (await files(root, 'cur')).find((f) => !f.includes(':2,S') && !f.includes(':2,F'))!;
      await rename(join(root, 'cur', f4), join(root, 'cur', `${f4.split(':')[0]}:2,T`));
      assert.deepEqual((await ok(box.open('INBOX'))).messages.map((m) => m.flags), [['\\Seen'], ['\\Seen'], ['\\Flagged'], ['\\Deleted']]);
      // Own change, then the directories age past the window: one listing confirms, then reused.
      await box.setFlags('INBOX', [4], ['\\Deleted'], 'remove');
      await age();
      const d = await ok(box.open('INBOX'));
      assert.deepEqual(d.messages.map((m) => m.flags), [['\\Seen'], ['\\Seen'], ['\\Flagged'], []]);
      assert.equal((await ok(box.open('INBOX'))).messages, d.messages);
      const f1 = (await files(root, 'cur')).find((f) => f.endsWith(':2,S'))!;
      await rename(join(root, 'cur', f1), join(root, 'cur', `${f1.split(':')[0]}:2,RS`));
      assert.deepEqual((await ok(box.open('INBOX'))).messages.map((m) => m.flags).filter((f) => f.includes('\\Answered')).length, 1);
      // A delivery is a change: the next open has it, \Recent for a claiming session only.
      await store.deliver('alice', msg(5));
      const e = await ok(box.open('INBOX', { claimRecent: true }));
      assert.deepEqual(e.messages.map((m) => [m.uid, m.recent]), [[1, false], [2, false], [3, false], [4, false], [5, true]]);
      assert.ok((await ok(box.open('INBOX'))).messages.every((m) => !m.recent));
    } finally {
      store.close();
    }
  });

  it('trusts a listing once the directories\' sub-second mtimes have settled; another writer\'s change in the same second is seen', async (t) => {
    const { store, box, root } = fresh();
    try {
      await store.deliver('alice', msg(1));
      await store.deliver('alice', msg(2));
      await ok(box.open('INBOX', { claimRecent: true }));
      if ((await stat(join(root, 'cur'), { bigint: true })).mtimeNs % 1_000_000_000n === 0n) {
        t.skip('this file system keeps whole-second mtimes: the 2 s rule applies');
        return;
      }
      // Early in a second, so that everything below happens within it.
      while (Date.now() % 1000 < 110 || Date.now() % 1000 > 400) await sleep(20);
      const settled = (Date.now() - 100) / 1000;
      const setMtime = async (when: number): Promise<void> => {
        for (const sub of ['new', 'cur']) await utimes(join(root, sub), when, when);
      };
      await setMtime(settled);
      // Lists (this process's own move to cur/ is confirmed by a listing), then trusts it.
      assert.equal((await ok(box.open('INBOX'))).messages.length, 2);
      const second = Math.floor(settled);
      // Proof that the listing is reused: a file slipped in with the mtime put back is not seen.
      await foreignDeliver(root, 'hidden');
      await setMtime(settled);
      assert.equal((await ok(box.open('INBOX'))).messages.length, 2);
      // A real change by another writer, in the same second as the last one: a new mtime.
      await foreignDeliver(root, 'same-second');
      const newMtime = (await stat(join(root, 'new'), { bigint: true })).mtimeNs;
      // Only a very slow machine gets past the second; the change must be seen all the same.
      if (newMtime / 1_000_000_000n !== BigInt(second)) t.diagnostic('the second ended before the second write');
      const after = await ok(box.open('INBOX'));
      assert.deepEqual(after.messages.map((m) => m.uid), [1, 2, 3, 4]);
      // mutt sets \Seen on message 1, still within that second (a rename in cur/).
      const f1 = (await files(root, 'cur'))[0]!;
      await rename(join(root, 'cur', f1), join(root, 'cur', `${f1.split(':')[0]}:2,S`));
      assert.deepEqual((await ok(box.open('INBOX'))).messages.map((m) => m.flags), [['\\Seen'], [], [], []]);
    } finally {
      store.close();
    }
  });

  it('confirms its own changes with a listing in the background, so that the next open() need not list', async () => {
    const { store, box, root } = fresh();
    try {
      for (let i = 1; i <= 3; i++) await store.deliver('alice', msg(i));
      // A SELECT moves new/ to cur/ (own renames, unconfirmed); the directories then look old.
      await ok(box.open('INBOX', { claimRecent: true }));
      const old = (Math.floor(Date.now() / 1000) - 5) + 0.125;
      const setMtime = async (): Promise<void> => {
        for (const sub of ['new', 'cur']) await utimes(join(root, sub), old, old);
      };
      await setMtime();
      // The background listing's timer (100 ms) fires before this one: it is queued first.
      await sleep(400);
      // A file slipped in with the mtime put back is not seen: that listing is being reused.
      await foreignDeliver(root, 'hidden');
      await setMtime();
      assert.equal((await ok(box.open('INBOX'))).messages.length, 3);
      // Own flag changes: the same. That background listing finds the hidden file, as any would.
      await box.setFlags('INBOX', [1], ['\\Seen'], 'add');
      await setMtime();
      await sleep(400);
      const f2 = (await files(root, 'cur')).find((f) => f.endsWith(':2,'))!;
      await rename(join(root, 'cur', f2), join(root, 'cur', `${f2}F`));
      await setMtime();
      assert.deepEqual((await ok(box.open('INBOX'))).messages.map((m) => m.flags), [['\\Seen'], [], [], []]);
      // Any real change is seen at once, the hidden rename with it.
      await foreignDeliver(root, 'real');
      const now = await ok(box.open('INBOX'));
      assert.equal(now.messages.length, 5);
      assert.equal(now.messages.filter((m) => m.flags.includes('\\Flagged')).length, 1);
      // A folder deleted before its background listing is not brought back into the index.
      await box.createFolder('Gone');
      await box.append('Gone', msg(9));
      await ok(box.open('Gone', { claimRecent: true }));
      await box.setFlags('Gone', [1], ['\\Seen'], 'add');
      assert.equal((await box.deleteFolder('Gone')).kind, 'ok');
      await sleep(400);
      assert.ok(!box.index().folders().includes('Gone'), box.index().folders().join(' '));
    } finally {
      store.close();
    }
  });

  it('lists again a folder whose directories were modified too recently, even when their mtime repeats', async () => {
    const { store, box, root } = fresh();
    try {
      await store.deliver('alice', msg(1));
      await ok(box.open('INBOX', { claimRecent: true }));
      // Modified 10 ms ago, then (a clock stepped back) in the future: neither may be trusted.
      for (const [i, offsetMs] of [10, -60_000].entries()) {
        const when = (Date.now() - offsetMs) / 1000;
        for (const sub of ['new', 'cur']) await utimes(join(root, sub), when, when);
        await ok(box.open('INBOX'));
        // Another writer in the same clock tick: the mtime does not move.
        await foreignDeliver(root, `tick${i}`);
        for (const sub of ['new', 'cur']) await utimes(join(root, sub), when, when);
        assert.equal((await ok(box.open('INBOX'))).messages.length, 2 + i, `offset ${offsetMs} ms`);
      }
    } finally {
      store.close();
    }
  });

  it('readMany: the same bytes as read(), header prefixes, and stale locations after renames by us and by others', async () => {
    const { store, box, root, data } = fresh();
    const other = new MaildirStore(data);
    try {
      const big = Buffer.concat([Buffer.from('From: b@example.org\r\nSubject: big\r\n\r\n'), Buffer.alloc(300_000, 'x\r\n')]);
      const headerless = Buffer.from('no header line at all\r\n');
      const longHeader = Buffer.from(`X-Long: ${'y'.repeat(20_000)}\r\nSubject: h\r\n\r\nbody\r\n`);
      for (const m of [msg(1), big, headerless, longHeader, msg(5)]) await store.deliver('alice', m);
      await ok(box.open('INBOX', { claimRecent: true }));
      const uids = [1, 2, 3, 4, 5, 99];
      const whole = await Promise.all(uids.map((u) => box.read('INBOX', u)));
      assert.deepEqual(await box.readMany('INBOX', uids), whole);
      const heads = await box.readMany('INBOX', uids, 'header');
      assert.deepEqual(heads.map((h) => h?.toString('latin1')), [
        'From: a@example.org\r\nSubject: message 1\r\n\r\n',
        'From: b@example.org\r\nSubject: big\r\n\r\n',
        'no header line at all\r\n',
        `X-Long: ${'y'.repeat(20_000)}\r\nSubject: h\r\n\r\n`,
        'From: a@example.org\r\nSubject: message 5\r\n\r\n',
        undefined,
      ]);
      // Our own flag change renames the files; another process's rename and expunge too.
      await box.setFlags('INBOX', [1, 2], ['\\Seen'], 'add');
      const f5 = (await files(root, 'cur')).find((f) => f.includes(',') && !f.endsWith('S'))!;
      assert.ok(f5);
      await other.mailbox('alice').setFlags('INBOX', [3, 4, 5], ['\\Flagged'], 'add');
      await other.mailbox('alice').setFlags('INBOX', [4], ['\\Deleted'], 'add');
      assert.deepEqual(await other.mailbox('alice').expunge('INBOX'), [4]);
      assert.deepEqual(await box.readMany('INBOX', uids), [whole[0], whole[1], whole[2], null, whole[4], null]);
      // Removed behind the index's back: found missing, not served from a stale path.
      const cur = await files(root, 'cur');
      await rm(join(root, 'cur', cur.find((f) => f.startsWith(cur[0]!.split(':')[0]!))!));
      const after = await box.readMany('INBOX', [1, 2, 3, 5]);
      assert.equal(after.filter((b) => b === null).length, 1);
    } finally {
      other.close();
      store.close();
    }
  });

  it('serialises concurrent changes of one mailbox', async () => {
    const { store, box } = fresh();
    try {
      for (let i = 1; i <= 20; i++) await store.deliver('alice', msg(i));
      const all = Array.from({ length: 20 }, (_, i) => i + 1);
      await Promise.all([
        box.setFlags('INBOX', all, ['\\Seen'], 'add'),
        box.open('INBOX', { claimRecent: true }),
        box.setFlags('INBOX', all.filter((u) => u % 2 === 0), ['\\Deleted'], 'add'),
        box.setFlags('INBOX', all, ['k1'], 'add'),
        store.deliver('alice', msg(21)),
        box.status('INBOX'),
      ]);
      assert.deepEqual(await box.expunge('INBOX'), all.filter((u) => u % 2 === 0));
      const snap = await ok(box.open('INBOX'));
      assert.deepEqual(snap.messages.map((m) => m.uid), [...all.filter((u) => u % 2 === 1), 21]);
      assert.ok(snap.messages.slice(0, -1).every((m) => m.flags.join(' ') === '\\Seen k1'));
    } finally {
      store.close();
    }
  });
});

describe('MailStore', () => {
  it('tells listeners about deliveries, appends, flags, expunges, copies and folders, with the origin', async () => {
    const { store, box } = fresh();
    const seen: Array<[string, string, MailboxChange, unknown]> = [];
    const stop = store.onChange((user, folder, change, origin) => seen.push([user, folder, change, origin]));
    store.onChange(() => {
      throw new Error('a broken listener');
    });
    try {
      await store.deliver('Alice', msg(1));
      const me = { session: 1 };
      await ok(box.append('INBOX', msg(2), {}, me));
      await box.setFlags('INBOX', [1], ['\\Deleted'], 'add', me);
      await box.setFlags('INBOX', [1], ['\\Deleted'], 'add', me);
      await box.expunge('INBOX', undefined, me);
      await ok(box.createFolder('A', me));
      await ok(box.copy('INBOX', [2], 'A', me));
      await ok(box.move('INBOX', [2], 'A'));
      stop();
      await store.deliver('alice', msg(3));
      assert.deepEqual(seen, [
        ['alice', 'INBOX', { kind: 'exists', uids: [1] }, undefined],
        ['alice', 'INBOX', { kind: 'exists', uids: [2] }, me],
        ['alice', 'INBOX', { kind: 'flags', updates: [{ uid: 1, flags: ['\\Deleted'] }] }, me],
        ['alice', 'INBOX', { kind: 'expunge', uids: [1] }, me],
        ['alice', 'A', { kind: 'folder', action: 'create' }, me],
        ['alice', 'A', { kind: 'exists', uids: [1] }, me],
        ['alice', 'A', { kind: 'exists', uids: [2] }, undefined],
        ['alice', 'INBOX', { kind: 'expunge', uids: [2] }, undefined],
      ]);
    } finally {
      store.close();
    }
  });

  it('gives one POP3 lock per user', () => {
    const { store } = fresh();
    const release = store.lockPop3('alice');
    assert.ok(release);
    assert.equal(store.lockPop3('ALICE'), null);
    assert.ok(store.lockPop3('bob'));
    release();
    release();
    const again = store.lockPop3('alice');
    assert.ok(again);
    assert.equal(store.lockPop3('alice'), null);
  });

  it('migrates a schema-1 index in place, keeping UIDs', async () => {
    const { store, box, root } = fresh();
    await store.deliver('alice', msg(1));
    await store.deliver('alice', msg(2));
    const before = await ok(box.open('INBOX'));
    store.close();
    // Turn the file back into what greygate wrote before keywords and \Recent existed.
    const db = new Database(join(root, INDEX_FILE));
    db.exec(
      'CREATE TABLE m1 (folder TEXT NOT NULL, uid INTEGER NOT NULL, name TEXT NOT NULL, dir TEXT NOT NULL, file TEXT NOT NULL, flags TEXT NOT NULL, size INTEGER NOT NULL, vsize INTEGER NOT NULL, internal_date INTEGER NOT NULL, PRIMARY KEY (folder, uid), UNIQUE (folder, name)) WITHOUT ROWID;' +
        'INSERT INTO m1 SELECT folder, uid, name, dir, file, flags, size, vsize, internal_date FROM messages; DROP TABLE messages; ALTER TABLE m1 RENAME TO messages;' +
        'CREATE TABLE f1 (name TEXT PRIMARY KEY NOT NULL, uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL) WITHOUT ROWID;' +
        'INSERT INTO f1 SELECT name, uidvalidity, uidnext FROM folders; DROP TABLE folders; ALTER TABLE f1 RENAME TO folders; PRAGMA user_version = 1;',
    );
    db.close();
    const again = new MaildirStore(join(root, '..', '..'));
    try {
      const snap = await ok(again.mailbox('alice').open('INBOX'));
      assert.equal(snap.uidValidity, before.uidValidity);
      assert.deepEqual(snap.messages.map((m) => m.uid), [1, 2]);
      await again.mailbox('alice').setFlags('INBOX', [1], ['Work'], 'add');
      assert.deepEqual((await ok(again.mailbox('alice').open('INBOX'))).messages[0]!.flags, ['Work']);
    } finally {
      again.close();
    }
  });
});
