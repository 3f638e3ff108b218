/**
 * @module test/mailbox/maildir
 * SUMMARY: Maildir and MaildirStore against real directories in a temporary data dir:
 * the layout (tmp, new, cur, `.Folder` with maildirfolder), unique names with S= and W=,
 * LF line ends and prepended headers, nothing left in tmp/, Python's mailbox.Maildir reading
 * what we wrote (messages and folders), concurrent deliveries from this process and from a
 * second one getting distinct files and UIDs, a removed mailbox re-created, and write errors
 * surfacing as StoreError with the errno; when a directory's mtime lets a listing be trusted
 * (mtimeSettled: whole seconds, nanoseconds, coarser fractions, other file systems' clocks).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { StoreError, UserError } from '../../src/errors.js';
import {
  MAIL_DIRECTORY,
  Maildir,
  MaildirStore,
  fsErrorCode,
  isValidFolderName,
  mtimeSettled,
  parseMessageFileName,
  sizesFromName,
  toMaildirBytes,
} from '../../src/mailbox/maildir.js';

const run = promisify(execFile);
const SRC = resolve(import.meta.dirname, '../../src/mailbox/maildir.ts');

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gg-maildir-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
function freshStore(): { store: MaildirStore; data: string } {
  const data = join(dir, `d${n++}`);
  return { store: new MaildirStore(data, { hostname: 'mx.example.org' }), data };
}

const MESSAGE = Buffer.from('From: a@example.org\r\nTo: alice@example.com\r\nSubject: hello\r\n\r\nline one\r\nline two\r\n');

interface PyMessage {
  key: string;
  subject: string | null;
  returnPath: string | null;
  deliveredTo: string | null;
  body: string;
  subdir: string;
}

/** Read a Maildir with Python's mailbox module: every message of each folder. */
async function pythonRead(root: string): Promise<{ folders: string[]; inbox: PyMessage[]; sub: Record<string, PyMessage[]> }> {
  const script = `
import json, mailbox, sys
def dump(md):
    out = []
    for key, msg in sorted(md.items()):
        out.append({"key": key, "subject": msg["Subject"], "returnPath": msg["Return-Path"],
                    "deliveredTo": msg["Delivered-To"], "body": msg.get_payload(), "subdir": msg.get_subdir()})
    return out
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
folders = sorted(md.list_folders())
print(json.dumps({"folders": folders, "inbox": dump(md), "sub": {f: dump(md.get_folder(f)) for f in folders}}))
`;
  const { stdout } = await run('python3', ['-c', script, root]);
  return JSON.parse(stdout) as { folders: string[]; inbox: PyMessage[]; sub: Record<string, PyMessage[]> };
}

describe('file names and bytes', () => {
  const names: Array<{ name: string; dir: 'new' | 'cur'; file: string; want: ReturnType<typeof parseMessageFileName> }> = [
    { name: 'new message', dir: 'new', file: '1700000000.M1P2Q3.host,S=10,W=12', want: { name: '1700000000.M1P2Q3.host,S=10,W=12', dir: 'new', file: '1700000000.M1P2Q3.host,S=10,W=12', flags: '' } },
    { name: 'seen and replied, flags sorted', dir: 'cur', file: '1700000000.x.host:2,SR', want: { name: '1700000000.x.host', dir: 'cur', file: '1700000000.x.host:2,SR', flags: 'RS' } },
    { name: 'cur without info', dir: 'cur', file: '1700000000.y.host', want: { name: '1700000000.y.host', dir: 'cur', file: '1700000000.y.host', flags: '' } },
    { name: 'dot file is a temporary', dir: 'new', file: '.nfs0001', want: null },
    { name: 'empty unique part', dir: 'cur', file: ':2,S', want: null },
  ];
  for (const c of names) it(c.name, () => assert.deepEqual(parseMessageFileName(c.dir, c.file), c.want));

  it('reads S= and W= from a name', () => {
    assert.deepEqual(sizesFromName('1.M2.h,S=120,W=125'), { size: 120, vsize: 125 });
    assert.deepEqual(sizesFromName('1.M2.h'), {});
  });

  it('turns CRLF into LF, keeps bare CR, and puts the prepended lines first', () => {
    const out = toMaildirBytes(Buffer.from('A: 1\r\nB: 2\r\n\r\nx\ry\r\n'), ['Return-Path: <s@x>']);
    assert.equal(out.toString(), 'Return-Path: <s@x>\nA: 1\nB: 2\n\nx\ry\n');
  });

  const folders: Array<[string, boolean]> = [
    ['INBOX', true],
    ['inbox', true],
    ['Sent', true],
    ['Archive.2024', true],
    ['', false],
    ['.Hidden', false],
    ['a..b', false],
    ['trailing.', false],
    ['../escape', false],
    ['a/b', false],
    ['tab\there', false],
  ];
  for (const [name, ok] of folders) it(`folder name ${JSON.stringify(name)} is ${ok ? 'valid' : 'refused'}`, () => assert.equal(isValidFolderName(name), ok));
});

describe('when a directory listing may be trusted (mtimeSettled)', () => {
  // The clock reads X.500 s; mtimes are given in ns, as stat(..., {bigint: true}) has them.
  const NOW_MS = 1_700_000_000_500;
  const at = (s: string): bigint => BigInt(s.replace('.', ''));
  const cases: Array<{ name: string; mtime: bigint; local: boolean; want: boolean }> = [
    { name: 'whole seconds, 1.5 s old: the same second may still change', mtime: at('1699999999.000000000'), local: true, want: false },
    { name: 'whole seconds, 2.5 s old', mtime: at('1699999998.000000000'), local: true, want: true },
    { name: 'nanoseconds, 100 ms old', mtime: at('1700000000.400000001'), local: true, want: true },
    { name: 'nanoseconds, 20 ms old: within a few clock ticks', mtime: at('1700000000.480000001'), local: true, want: false },
    { name: 'nanoseconds, 100 ms old, not a local file system (another clock)', mtime: at('1700000000.400000001'), local: false, want: false },
    { name: 'nanoseconds, 2.5 s old, not a local file system', mtime: at('1699999998.000000001'), local: false, want: true },
    { name: '10 ms granularity, 80 ms old', mtime: at('1700000000.420000000'), local: true, want: true },
    { name: '10 ms granularity, 50 ms old', mtime: at('1700000000.450000000'), local: true, want: false },
    { name: '100 ms granularity, 200 ms old', mtime: at('1700000000.300000000'), local: true, want: true },
    { name: '100 ms granularity, 100 ms old', mtime: at('1700000000.400000000'), local: true, want: false },
    { name: 'in the future (the clock stepped back)', mtime: at('1700000060.123456789'), local: true, want: false },
  ];
  for (const c of cases) it(c.name, () => assert.equal(mtimeSettled(c.mtime, NOW_MS, c.local), c.want));
});

describe('Maildir delivery', () => {
  it('writes into new/ with a unique name, LF lines, the prepended headers, and leaves tmp/ empty', async () => {
    const { store, data } = freshStore();
    try {
      const d = await store.deliver('Alice', MESSAGE, { prepend: ['Return-Path: <a@example.org>', 'Delivered-To: alice@example.com'] });
      const root = join(data, MAIL_DIRECTORY, 'alice');
      for (const sub of ['tmp', 'new', 'cur']) assert.ok((await stat(join(root, sub))).isDirectory(), sub);
      assert.deepEqual(await readdir(join(root, 'tmp')), []);
      assert.deepEqual(await readdir(join(root, 'new')), [d.name]);
      assert.equal(d.path, join(root, 'new', d.name));
      assert.match(d.name, /^\d+\.M\d+P\d+Q\d+R[0-9a-f]{8}\.mx\.example\.org,S=\d+,W=\d+$/);
      const text = await readFile(d.path, 'utf8');
      assert.equal(text, 'Return-Path: <a@example.org>\nDelivered-To: alice@example.com\n' + MESSAGE.toString().replace(/\r\n/g, '\n'));
      assert.equal(d.size, Buffer.byteLength(text));
      assert.equal(d.vsize, Buffer.byteLength(text.replace(/\n/g, '\r\n')));
      assert.deepEqual(sizesFromName(d.name), { size: d.size, vsize: d.vsize });
      assert.equal((await stat(d.path)).mode & 0o777, 0o600);
      assert.equal((await stat(root)).mode & 0o777, 0o700);
      assert.equal(d.uid, 1);
      assert.equal((await store.deliver('alice', MESSAGE)).uid, 2);
    } finally {
      store.close();
    }
  });

  it('is read back by Python mailbox.Maildir, folders included', async () => {
    const { store, data } = freshStore();
    try {
      await store.deliver('bob', MESSAGE, { prepend: ['Return-Path: <a@example.org>', 'Delivered-To: bob@example.com'] });
      const second = Buffer.from('Subject: second\r\n\r\nbody 2\r\n');
      await store.deliver('bob', second);
      const archived = await store.deliver('bob', Buffer.from('Subject: archived\r\n\r\nold\r\n'), { folder: 'Archive.2024' });
      assert.equal(archived.uid, 1, 'each folder numbers its own UIDs');
      const root = join(data, MAIL_DIRECTORY, 'bob');
      assert.ok((await stat(join(root, '.Archive.2024', 'maildirfolder'))).isFile());
      const py = await pythonRead(root);
      assert.deepEqual(py.folders, ['Archive.2024']);
      assert.deepEqual(
        py.inbox.map((m) => [m.subject, m.returnPath, m.deliveredTo, m.body, m.subdir]).sort(),
        [
          ['hello', '<a@example.org>', 'bob@example.com', 'line one\nline two\n', 'new'],
          ['second', null, null, 'body 2\n', 'new'],
        ],
      );
      assert.deepEqual(py.sub['Archive.2024']!.map((m) => m.subject), ['archived']);
      assert.deepEqual(await store.mailbox('bob').folders(), ['INBOX', 'Archive.2024']);
    } finally {
      store.close();
    }
  });

  it('gives concurrent deliveries distinct files and UIDs, in this process and from another one', async () => {
    const { store, data } = freshStore();
    const N = 40;
    let childDone = false;
    const child = run(process.execPath, [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `const { MaildirStore } = await import(${JSON.stringify(SRC)});
       const s = new MaildirStore(${JSON.stringify(data)}, { hostname: 'mx.example.org' });
       const r = await Promise.all(Array.from({ length: ${N} }, (_, i) => s.deliver('carol', Buffer.from('Subject: child ' + i + '\\r\\n\\r\\nx\\r\\n'))));
       s.close();
       console.log(JSON.stringify(r.map((d) => d.uid)));`,
    ]);
    void child.finally(() => (childDone = true));
    try {
      // Keep delivering, four at a time, until the other process has done all of its own.
      const mine: Array<{ uid: number | null; name: string }> = [];
      while (!childDone || mine.length < N) {
        const batch = await Promise.all(Array.from({ length: 4 }, (_, i) => store.deliver('carol', Buffer.from(`Subject: parent ${mine.length + i}\r\n\r\nx\r\n`))));
        mine.push(...batch);
      }
      const theirs = JSON.parse((await child).stdout) as number[];
      const uids = [...mine.map((d) => d.uid), ...theirs];
      assert.ok(uids.every((u) => typeof u === 'number'), 'every delivery was indexed');
      const total = mine.length + N;
      assert.deepEqual([...uids].sort((a, b) => a! - b!), Array.from({ length: total }, (_, i) => i + 1));
      const files = await readdir(join(data, MAIL_DIRECTORY, 'carol', 'new'));
      assert.equal(files.length, total);
      assert.equal(new Set(mine.map((d) => d.name)).size, mine.length);
      const py = await pythonRead(join(data, MAIL_DIRECTORY, 'carol'));
      assert.equal(py.inbox.length, total);
      assert.equal(new Set(py.inbox.map((m) => m.subject)).size, total);
      assert.deepEqual(await readdir(join(data, MAIL_DIRECTORY, 'carol', 'tmp')), []);
    } finally {
      store.close();
    }
  });

  it('re-creates a mailbox removed behind its back', async () => {
    const { store, data } = freshStore();
    try {
      await store.deliver('dave', MESSAGE);
      store.mailbox('dave').close();
      await rm(join(data, MAIL_DIRECTORY, 'dave'), { recursive: true });
      const d = await store.deliver('dave', MESSAGE);
      assert.deepEqual(await readdir(join(data, MAIL_DIRECTORY, 'dave', 'new')), [d.name]);
    } finally {
      store.close();
    }
  });

  it('reports a write failure as a StoreError carrying the errno', async () => {
    const { store, data } = freshStore();
    try {
      await mkdir(join(data, MAIL_DIRECTORY), { recursive: true });
      // A file where the mailbox should be: ENOTDIR, even for root (unlike a chmod).
      await writeFile(join(data, MAIL_DIRECTORY, 'erin'), 'not a directory');
      const err = await store.deliver('erin', MESSAGE).then(
        () => assert.fail('delivered'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof StoreError, String(err));
      assert.match(err.message, /Not a directory|File exists/);
      assert.ok(['ENOTDIR', 'EEXIST'].includes(fsErrorCode(err) ?? ''), fsErrorCode(err));
    } finally {
      store.close();
    }
  });

  it('creates the INBOX Maildir too when the first delivery goes to a folder', async () => {
    const { store, data } = freshStore();
    try {
      await store.deliver('gina', MESSAGE, { folder: 'Sent' });
      const root = join(data, MAIL_DIRECTORY, 'gina');
      for (const sub of ['tmp', 'new', 'cur', '.Sent/tmp', '.Sent/new', '.Sent/cur']) assert.ok((await stat(join(root, sub))).isDirectory(), sub);
      const py = await pythonRead(root);
      assert.deepEqual([py.folders, py.inbox.length, py.sub['Sent']!.length], [['Sent'], 0, 1]);
    } finally {
      store.close();
    }
  });

  it('keeps at most maxOpenIndexes index databases open, reopening on use', async () => {
    const data = join(dir, `d${n++}`);
    const store = new MaildirStore(data, { hostname: 'mx.example.org', maxOpenIndexes: 2 });
    try {
      const users = ['u1', 'u2', 'u3', 'u4'];
      for (const u of users) assert.equal((await store.deliver(u, MESSAGE)).uid, 1);
      const open = users.filter((u) => store.mailbox(u).indexOpen);
      assert.ok(open.length <= 3, open.join());
      assert.equal(store.mailbox('u1').indexOpen, false, 'the least recently used was closed');
      assert.equal((await store.deliver('u1', MESSAGE)).uid, 2);
    } finally {
      store.close();
    }
  });

  it('refuses names that are not user names and folders that are not folders', async () => {
    const { store } = freshStore();
    try {
      assert.throws(() => store.mailbox('../etc'), UserError);
      assert.throws(() => store.mailbox('a/b'), UserError);
      await assert.rejects(store.deliver('frank', MESSAGE, { folder: '../x' }), /invalid Maildir folder name/);
      assert.throws(() => new Maildir(join(dir, 'x')).folderPath('a..b'), /invalid Maildir folder name/);
    } finally {
      store.close();
    }
  });
});
