/**
 * @module mailbox/maildir
 * SUMMARY: mailboxes as Maildir/Maildir++ under DATA_DIRECTORY/mail/USER/ (cur, new, tmp;
 * folders as `.Name` with a `maildirfolder` marker), so that mutt, Dovecot, Python's mailbox
 * module and backup tools read them. Exports Maildir (one user's mailbox: deliver, list,
 * describe, folders, sync/rebuild of its index) and MaildirStore (DATA_DIRECTORY -> one
 * cached Maildir per user). A delivery writes tmp/NAME, fsyncs it, links it to new/NAME,
 * fsyncs new/ and only then resolves; the message is stored with LF line ends, and
 * prepended header lines (Return-Path, Delivered-To) go in front. It is then given a UID in
 * the user's mailbox-index; an index failure is reported through `warn` and repaired by the
 * next sync, never turned into a failed delivery (the message is already safe on disk).
 * DIAGNOSTICS: StoreError with the fs error as cause ("create maildir file PATH: No space
 * left on device"); UserError for a user name that is not one; Error for a bad folder name.
 * SEE ALSO: https://cr.yp.to/proto/maildir.html; Courier Maildir++; Dovecot maildir format
 * (S=, W=); Postfix local/maildir.c.
 */
import { randomBytes } from 'node:crypto';
import { renameSync } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { dirname, join } from 'node:path';
import { StoreError, UserError } from '../errors.js';
import { fsyncDir } from '../util/atomic-file.js';
import { INDEX_FILE, MailboxIndex, type MessageEntry, type MessageFile, type SyncResult } from './mailbox-index.js';
import { normalizeUserName } from './users.js';

/** The directory under data_directory that holds one Maildir per user. */
export const MAIL_DIRECTORY = 'mail';
/** The Maildir root itself; every other folder is a `.Name` directory inside it. */
export const INBOX = 'INBOX';
/** Maildir++: marks a folder directory, so deliveries to it skip the INBOX-only work. */
const FOLDER_MARKER = 'maildirfolder';
const SUBDIRS = ['tmp', 'new', 'cur'] as const;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');

const STRERROR: Readonly<Record<string, string>> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EEXIST: 'File exists',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ENOSPC: 'No space left on device',
  EDQUOT: 'Disk quota exceeded',
  EFBIG: 'File too large',
  EROFS: 'Read-only file system',
  EIO: 'Input/output error',
  EMFILE: 'Too many open files',
  ENFILE: 'Too many open files in system',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
};

/** strerror() text for a Node fs error, as Postfix's %m prints it. */
export function fsErrorText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return (typeof code === 'string' && STRERROR[code]) || (err as Error).message;
}

/** The errno code of a (possibly wrapped) fs error, e.g. 'ENOSPC'. */
export function fsErrorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function ioError(what: string, path: string, err: unknown): StoreError {
  return new StoreError(`${what} ${path}: ${fsErrorText(err)}`, { cause: err });
}

/**
 * Whether NAME can be a Maildir++ folder: "." separates hierarchy levels, so no empty
 * level; no "/" (it would leave the mailbox) and no control characters. INBOX is the root.
 * IMAP's modified UTF-7 is the IMAP layer's business: names here are stored as given.
 */
export function isValidFolderName(name: string): boolean {
  if (name.toUpperCase() === INBOX) return true;
  if (name === '' || name.length > 255 || name.includes('/')) return false;
  if (/[\x00-\x1f\x7f]/.test(name)) return false;
  return name.split('.').every((level) => level !== '');
}

/**
 * The entry of one file in new/ or cur/, or null for what is not a message (dot files,
 * which tools use for their own temporaries). The unique name is what precedes ":"; the
 * info "2,FLAGS" after it carries the flags.
 */
export function parseMessageFileName(dir: 'new' | 'cur', file: string): MessageEntry | null {
  if (file === '' || file.startsWith('.')) return null;
  const colon = file.indexOf(':');
  const name = colon < 0 ? file : file.slice(0, colon);
  if (name === '') return null;
  const info = colon < 0 ? '' : file.slice(colon + 1);
  const flags = info.startsWith('2,') ? [...new Set(info.slice(2).replace(/[^A-Za-z]/g, ''))].sort().join('') : '';
  return { name, dir, file, flags };
}

/** The S= (size on disk) and W= (CRLF size) fields Dovecot puts in a unique name. */
export function sizesFromName(name: string): { size?: number; vsize?: number } {
  const out: { size?: number; vsize?: number } = {};
  for (const m of name.matchAll(/,([SW])=(\d+)/g)) {
    if (m[1] === 'S') out.size = Number(m[2]);
    else out.vsize = Number(m[2]);
  }
  return out;
}

function countLf(data: Uint8Array, start = 0): number {
  let n = 0;
  for (let i = data.indexOf(LF, start); i >= 0; i = data.indexOf(LF, i + 1)) n++;
  return n;
}

/**
 * The bytes of a Maildir file: PREPEND header lines, then MESSAGE with its CRLF line ends
 * turned into LF, which is what Maildir readers expect (Postfix local writes LF too).
 */
export function toMaildirBytes(message: Uint8Array, prepend: readonly string[] = []): Buffer {
  const src = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  const head = prepend.length === 0 ? Buffer.alloc(0) : Buffer.from(prepend.map((h) => `${h}\n`).join(''), 'utf8');
  const out = Buffer.allocUnsafe(head.length + src.length);
  let o = head.copy(out, 0);
  let start = 0;
  for (let i = src.indexOf(CRLF); i >= 0; i = src.indexOf(CRLF, start)) {
    o += src.copy(out, o, start, i);
    out[o++] = LF;
    start = i + 2;
  }
  o += src.copy(out, o, start);
  return out.subarray(0, o);
}

/** The host part of a unique name: "/" and ":" are escaped as the Maildir spec says, "," as it separates S=/W=. */
function safeHost(host: string): string {
  return (host || 'localhost').replace(/\//g, '\\057').replace(/:/g, '\\072').replace(/,/g, '\\054');
}

export interface MaildirOptions {
  /** The right-hand part of unique names; default os.hostname(). */
  readonly hostname?: string;
  /**
   * MaildirStore only: how many users' index databases stay open (three file descriptors
   * each); the least recently used is closed beyond that, and reopens on its next use.
   * Default 64.
   */
  readonly maxOpenIndexes?: number;
  /** Told about index problems that did not stop a delivery (the next sync repairs them). */
  readonly warn?: (message: string) => void;
}

export interface DeliverOptions {
  /** Default INBOX. */
  readonly folder?: string;
  /** Header lines (without line ends) written before the message, e.g. "Return-Path: <a@b>". */
  readonly prepend?: readonly string[];
  /** The internal date (ms) to give the file as its mtime, as IMAP APPEND does; default now. */
  readonly internalDate?: number;
}

export interface MaildirDelivery extends MessageFile {
  readonly folder: string;
  /** Absolute path of the file in new/. */
  readonly path: string;
  /** The UID the index gave it, or null when the index failed (the next sync gives one). */
  readonly uid: number | null;
}

const DEFAULT_MAX_OPEN_INDEXES = 64;

/** Files hard links cannot be made on (some network and FUSE file systems): rename instead. */
const NO_LINK = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK']);

/** One user's Maildir (the root is INBOX). */
export class Maildir {
  readonly root: string;
  private readonly host: string;
  private readonly warn: (message: string) => void;
  private readonly ensured = new Set<string>();
  private sequence = 0;
  private openIndex: MailboxIndex | undefined;

  constructor(root: string, options: MaildirOptions = {}) {
    this.root = root;
    this.host = safeHost(options.hostname ?? osHostname());
    this.warn = options.warn ?? (() => undefined);
  }

  /** The directory of FOLDER: the root for INBOX, ROOT/.Name otherwise. */
  folderPath(folder: string = INBOX): string {
    if (!isValidFolderName(folder)) throw new Error(`invalid Maildir folder name: ${JSON.stringify(folder)}`);
    return folder.toUpperCase() === INBOX ? this.root : join(this.root, `.${folder}`);
  }

  /** Where the message file of ENTRY is now. */
  messagePath(folder: string, entry: MessageEntry): string {
    return join(this.folderPath(folder), entry.dir, entry.file);
  }

  /** Create FOLDER's tmp, new and cur (and the root), durably; cheap after the first call. */
  async ensure(folder: string = INBOX): Promise<void> {
    const key = this.folderKey(folder);
    if (this.ensured.has(key)) return;
    // A Maildir++ folder lives inside a Maildir: readers open the root first.
    if (key !== INBOX) await this.ensure(INBOX);
    const dir = this.folderPath(folder);
    let created = false;
    try {
      for (const sub of SUBDIRS) {
        if ((await mkdir(join(dir, sub), { recursive: true, mode: 0o700 })) !== undefined) created = true;
      }
      if (key !== INBOX) {
        const fh = await open(join(dir, FOLDER_MARKER), 'a', 0o600);
        await fh.close();
      }
      if (created) {
        // New directory entries are durable only once their parents are synced: from
        // data/mail down to the folder, so that a message in new/ survives a crash too.
        const dirs = [dirname(dirname(this.root)), dirname(this.root), this.root];
        if (dir !== this.root) dirs.push(dir);
        for (const d of dirs) await fsyncDir(d);
      }
    } catch (err) {
      throw ioError('create maildir', dir, err);
    }
    this.ensured.add(key);
  }

  /**
   * Store MESSAGE (SMTP form, CRLF lines) in FOLDER's new/ and index it. Resolves once the
   * file and its directory entry are on disk. Throws StoreError when the file cannot be
   * written; a unique name that exists already is simply replaced by another.
   */
  async deliver(message: Uint8Array, options: DeliverOptions = {}): Promise<MaildirDelivery> {
    const folder = this.folderKey(options.folder ?? INBOX);
    const data = toMaildirBytes(message, options.prepend);
    const vsize = data.length + countLf(data);
    let file: MessageFile & { path: string };
    for (let attempt = 0; ; attempt++) {
      await this.ensure(folder);
      try {
        file = await this.writeNew(folder, data, vsize, options.internalDate);
        break;
      } catch (err) {
        // Someone removed the mailbox since we created it: create it again, once.
        if (attempt === 0 && fsErrorCode(err) === 'ENOENT') {
          this.ensured.clear();
          // Its index went with it; an open handle would write to the deleted file.
          this.close();
          continue;
        }
        throw err;
      }
    }
    let uid: number | null = null;
    try {
      uid = this.index().add(folder, file);
    } catch (err) {
      this.warn(`${this.root}: message ${file.name} delivered but not indexed: ${(err as Error).message}`);
    }
    return { ...file, folder, uid };
  }

  /** The message files of FOLDER as its new/ and cur/ show them now (no stat). */
  async list(folder: string = INBOX): Promise<MessageEntry[]> {
    const dir = this.folderPath(folder);
    const byName = new Map<string, MessageEntry>();
    // new/ before cur/: a message moved from new/ to cur/ meanwhile is seen in one of them.
    for (const sub of ['new', 'cur'] as const) {
      let files: string[];
      try {
        files = await readdir(join(dir, sub));
      } catch (err) {
        if (fsErrorCode(err) === 'ENOENT') continue;
        throw ioError('read maildir', join(dir, sub), err);
      }
      for (const f of files) {
        const e = parseMessageFileName(sub, f);
        if (e) byName.set(e.name, e);
      }
    }
    return [...byName.values()];
  }

  /**
   * Sizes and internal date of ENTRY. S= and W= in the name are trusted as Dovecot does; a
   * file another tool dropped in without W= is read once to count its lines.
   */
  async describe(folder: string, entry: MessageEntry): Promise<MessageFile> {
    const path = this.messagePath(folder, entry);
    try {
      const st = await stat(path);
      const named = sizesFromName(entry.name);
      const vsize = named.vsize ?? st.size + countLf(await readFile(path));
      return { ...entry, size: st.size, vsize, internalDate: Math.floor(st.mtimeMs) };
    } catch (err) {
      throw ioError('stat maildir file', path, err);
    }
  }

  /** INBOX and every Maildir++ folder directory, sorted (INBOX first). */
  async folders(): Promise<string[]> {
    let entries;
    try {
      entries = await readdir(this.root, { withFileTypes: true });
    } catch (err) {
      if (fsErrorCode(err) === 'ENOENT') return [INBOX];
      throw ioError('read maildir', this.root, err);
    }
    const names = entries
      .filter((e) => e.isDirectory() && e.name.startsWith('.') && e.name !== '.' && e.name !== '..')
      .map((e) => e.name.slice(1))
      .filter((n) => isValidFolderName(n) && n.toUpperCase() !== INBOX)
      .sort();
    return [INBOX, ...names];
  }

  /** The user's index, opened on first use; a corrupt one is set aside and rebuilt. */
  index(): MailboxIndex {
    if (this.openIndex) return this.openIndex;
    const file = join(this.root, INDEX_FILE);
    try {
      this.openIndex = MailboxIndex.open(file);
    } catch (err) {
      const code = (err as StoreError).cause as { code?: unknown } | undefined;
      if (code?.code !== 'SQLITE_CORRUPT' && code?.code !== 'SQLITE_NOTADB') throw err;
      // Only the UIDs are lost: the messages are the files, and a sync numbers them anew
      // under a new UIDVALIDITY. The damaged file is kept for a post-mortem.
      const aside = `${file}.corrupt-${Date.now()}`;
      this.warn(`${file}: ${(err as Error).message}; moved to ${aside}, rebuilding`);
      renameSyncQuiet(file, aside);
      for (const ext of ['-wal', '-shm']) renameSyncQuiet(file + ext, aside + ext);
      this.openIndex = MailboxIndex.open(file);
    }
    return this.openIndex;
  }

  /**
   * Bring FOLDER's index up to date with its directories: files that appeared (delivered by
   * another tool, restored from a backup) get UIDs, vanished ones are dropped, and moves
   * and flag changes are recorded.
   */
  async sync(folder: string = INBOX): Promise<SyncResult> {
    const key = this.folderKey(folder);
    const index = this.index();
    const mark = index.status(key).uidNext;
    let present = await this.list(key);
    const known = new Map(index.messages(key).map((m) => [m.name, m]));
    const listed = new Set(present.map((e) => e.name));
    // readdir() may miss a file that is renamed while it runs (new/ -> cur/, a flag change):
    // look once more before taking a message for deleted.
    if ([...known.values()].some((m) => m.uid < mark && !listed.has(m.name))) {
      const again = await this.list(key);
      const merged = new Map(present.map((e) => [e.name, e]));
      for (const e of again) merged.set(e.name, e);
      present = [...merged.values()];
    }
    const added: MessageFile[] = [];
    for (const e of present) {
      if (known.has(e.name)) continue;
      try {
        added.push(await this.describe(key, e));
      } catch (err) {
        // Moved or deleted since the listing: the next sync sees where it went.
        if (fsErrorCode(err) !== 'ENOENT') throw err;
      }
    }
    return index.sync(key, present, added, { removeBelowUid: mark });
  }

  /** sync() every folder on disk; folders the index knows but the disk lost are forgotten. */
  async syncAll(): Promise<Map<string, SyncResult>> {
    const onDisk = await this.folders();
    const index = this.index();
    for (const f of index.folders()) if (!onDisk.includes(f)) index.reset(f);
    const out = new Map<string, SyncResult>();
    for (const f of onDisk) out.set(f, await this.sync(f));
    return out;
  }

  /** Throw the index away and number every message anew (new UIDVALIDITY for every folder). */
  async rebuild(): Promise<Map<string, SyncResult>> {
    this.index().reset();
    return this.syncAll();
  }

  /** Whether the index database is open now. */
  get indexOpen(): boolean {
    return this.openIndex !== undefined;
  }

  /** Close the index database (the next use opens it again). */
  close(): void {
    this.openIndex?.close();
    this.openIndex = undefined;
  }

  private folderKey(folder: string): string {
    this.folderPath(folder);
    return folder.toUpperCase() === INBOX ? INBOX : folder;
  }

  /** A name that does not repeat: time.MusecPpidQcountRrandom.host (Maildir "modern" identifiers). */
  private uniqueName(): string {
    const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    const rand = randomBytes(4).toString('hex');
    return `${Math.floor(us / 1e6)}.M${us % 1e6}P${process.pid}Q${++this.sequence}R${rand}.${this.host}`;
  }

  private async writeNew(folder: string, data: Buffer, vsize: number, internalDate: number | undefined): Promise<MessageFile & { path: string }> {
    const dir = this.folderPath(folder);
    const sizes = `,S=${data.length},W=${vsize}`;
    let name = this.uniqueName() + sizes;
    const tmp = join(dir, 'tmp', name);
    let fh;
    try {
      fh = await open(tmp, 'wx', 0o600);
    } catch (err) {
      throw ioError('create maildir file', tmp, err);
    }
    try {
      await fh.writeFile(data);
      await fh.sync();
      await fh.close();
      if (internalDate !== undefined) await utimes(tmp, internalDate / 1000, internalDate / 1000);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw ioError('write maildir file', tmp, err);
    }
    let path = join(dir, 'new', name);
    let linked = true;
    try {
      // link(), not rename(): it never replaces a file that happens to have the same name.
      for (let attempt = 0; ; attempt++) {
        try {
          await link(tmp, path);
          break;
        } catch (err) {
          const code = fsErrorCode(err);
          if (code === 'EEXIST' && attempt < 5) {
            name = this.uniqueName() + sizes;
            path = join(dir, 'new', name);
            continue;
          }
          if (code !== undefined && NO_LINK.has(code)) {
            await rename(tmp, path);
            linked = false;
            break;
          }
          throw err;
        }
      }
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw ioError('link to', path, err);
    }
    if (linked) await unlink(tmp).catch(() => undefined);
    let mtime: number;
    try {
      await fsyncDir(join(dir, 'new'));
      mtime = (await stat(path)).mtimeMs;
    } catch (err) {
      // Not known to be durable: take it back, so that a retry does not leave two copies.
      await unlink(path).catch(() => undefined);
      throw ioError('sync maildir', join(dir, 'new'), err);
    }
    return { name, dir: 'new', file: name, flags: '', size: data.length, vsize, internalDate: Math.floor(mtime), path };
  }
}

function renameSyncQuiet(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch {
    // -wal and -shm exist only while some connection has the database open.
  }
}

/** DATA_DIRECTORY/mail: one Maildir per user, opened once and shared by every caller. */
export class MaildirStore {
  readonly dataDir: string;
  readonly mailDir: string;
  private readonly options: MaildirOptions;
  private readonly boxes = new Map<string, Maildir>();

  constructor(dataDir: string, options: MaildirOptions = {}) {
    this.dataDir = dataDir;
    this.mailDir = join(dataDir, MAIL_DIRECTORY);
    this.options = options;
  }

  /**
   * USER's Maildir (USER is case-folded; throws UserError when it cannot be a user name).
   * Hold on to the Maildir, not to the MailboxIndex its index() returns: an index that was
   * not used for a while may be closed, and index() opens it again.
   */
  mailbox(user: string): Maildir {
    const name = normalizeUserName(user);
    if (name === null) throw new UserError(`invalid user name ${JSON.stringify(user)}`);
    // Map order is the recency order: a used mailbox moves to the end. Maildir objects are
    // kept (they are small, and one per user keeps one index connection per user).
    const box = this.boxes.get(name) ?? new Maildir(join(this.mailDir, name), this.options);
    this.boxes.delete(name);
    this.boxes.set(name, box);
    const limit = Math.max(1, this.options.maxOpenIndexes ?? DEFAULT_MAX_OPEN_INDEXES);
    let open = 0;
    for (const b of this.boxes.values()) if (b.indexOpen) open++;
    for (const b of this.boxes.values()) {
      if (open <= limit) break;
      if (b !== box && b.indexOpen) {
        b.close();
        open--;
      }
    }
    return box;
  }

  /** Deliver MESSAGE to USER's Maildir (see Maildir.deliver). */
  deliver(user: string, message: Uint8Array, options: DeliverOptions = {}): Promise<MaildirDelivery> {
    return this.mailbox(user).deliver(message, options);
  }

  /** Close every index database. */
  close(): void {
    for (const box of this.boxes.values()) box.close();
    this.boxes.clear();
  }
}
