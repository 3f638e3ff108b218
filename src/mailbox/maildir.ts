/**
 * @module mailbox/maildir
 * SUMMARY: mailboxes as Maildir/Maildir++ under DATA_DIRECTORY/mail/USER/ (cur, new, tmp;
 * folders as `.Name` with a `maildirfolder` marker), so that mutt, Dovecot, Python's mailbox
 * module and backup tools read them. Exports Maildir (one user's mailbox: deliver, list,
 * describe, sync/rebuild of its index, and mail-store.ts's UserMailbox for POP3/IMAP) and
 * MaildirStore (DATA_DIRECTORY -> one cached Maildir per user; mail-store.ts's MailStore:
 * change events, the POP3 lock). A delivery writes tmp/NAME, fsyncs it, links it to
 * new/NAME, fsyncs new/ and only then resolves; the message is stored with LF line ends, and
 * prepended header lines (Return-Path, Delivered-To) go in front. It is then given a UID in
 * the user's mailbox-index; an index failure is reported through `warn` and repaired by the
 * next sync, never turned into a failed delivery (the message is already safe on disk).
 * System flags live in the `:2,` info suffix (D F P R S T, as Dovecot and mutt), keywords in
 * the index; a flag change is a rename, a COPY a hard link, a MOVE a rename.
 * DIAGNOSTICS: StoreError with the fs error as cause ("create maildir file PATH: No space
 * left on device"); UserError for a user name that is not one; Error for a bad folder name
 * passed to the low-level methods (the UserMailbox ones return `invalid-name` instead).
 * SEE ALSO: https://cr.yp.to/proto/maildir.html; Courier Maildir++; Dovecot maildir format
 * (S=, W=, subscriptions); Postfix local/maildir.c; RFC 3501, 4315, 6851.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, readSync, renameSync, statfsSync, statSync } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { dirname, join } from 'node:path';
import { StoreError, UserError } from '../errors.js';
import { fsyncDir, writeFileAtomic } from '../util/atomic-file.js';
import {
  INDEX_FILE,
  MailboxIndex,
  type IndexedMessage,
  type MessageEntry,
  type MessageFile,
  type MessageUpdate,
  type NewMessage,
  type SyncResult,
} from './mailbox-index.js';
import {
  FLAG_LETTERS,
  HIERARCHY_SEPARATOR as HIERARCHY_SEP,
  SYSTEM_FLAGS,
  type AppendOptions,
  type AppendResult,
  type ChangeListener,
  type ChangeOrigin,
  type CopyResult,
  type CreateResult,
  type DeleteResult,
  type FlagMode,
  type FlagUpdate,
  type InvalidName,
  type MailboxChange,
  type MailStore,
  type MessageInfo,
  type Nonexistent,
  type OpenOptions,
  type OpenResult,
  type ReadPart,
  type RenameResult,
  type StatusResult,
  type UserMailbox,
} from './mail-store.js';
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

/**
 * The message of a Maildir file as IMAP and POP3 serve it: every LF becomes CRLF. Our own
 * files never hold CRLF (toMaildirBytes), so this undoes it byte for byte, and it agrees
 * with the W= size (size + number of LFs) that describe() computes for foreign files.
 */
export function fromMaildirBytes(data: Uint8Array): Buffer {
  const src = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const lines = countLf(src);
  if (lines === 0) return Buffer.from(src);
  const out = Buffer.allocUnsafe(src.length + lines);
  let o = 0;
  let start = 0;
  for (let i = src.indexOf(LF); i >= 0; i = src.indexOf(LF, start)) {
    o += src.copy(out, o, start, i);
    out[o++] = 0x0d;
    out[o++] = LF;
    start = i + 1;
  }
  src.copy(out, o, start);
  return out;
}

/** Maildir info letter -> IMAP flag (FLAG_LETTERS reversed). */
const LETTER_FLAGS: ReadonlyMap<string, string> = new Map(Object.entries(FLAG_LETTERS).map(([flag, letter]) => [letter, flag]));
/** The letters this store manages; any other letter in a file name (Dovecot's a-z keywords) is left alone. */
const MANAGED_LETTERS = new Set(LETTER_FLAGS.keys());
const SYSTEM_BY_LOWER: ReadonlyMap<string, string> = new Map(SYSTEM_FLAGS.map((f) => [f.toLowerCase(), f]));
/** RFC 3501 flag-keyword = atom: no atom-specials, no CTL, no 8-bit. */
const KEYWORD = /^[^\x00-\x20\x7f-\uffff(){%*"\\\]]+$/;

/** The IMAP flags of a message: system flags (in SYSTEM_FLAGS order), $Forwarded, then keywords. */
export function imapFlags(letters: string, keywords: string): string[] {
  const out: string[] = [];
  for (const f of SYSTEM_FLAGS) if (letters.includes(FLAG_LETTERS[f]!)) out.push(f);
  if (letters.includes('P')) out.push('$Forwarded');
  if (keywords !== '') out.push(...keywords.split(' '));
  return out;
}

/** FLAGS split into Maildir letters and keywords; \Recent, unknown \Flags and non-atoms are dropped. */
export function parseImapFlags(flags: readonly string[]): { letters: Set<string>; keywords: string[] } {
  const letters = new Set<string>();
  const keywords: string[] = [];
  const seen = new Set<string>();
  for (const flag of flags) {
    const lower = flag.toLowerCase();
    if (flag.startsWith('\\')) {
      const system = SYSTEM_BY_LOWER.get(lower);
      if (system) letters.add(FLAG_LETTERS[system]!);
    } else if (lower === '$forwarded') {
      letters.add('P');
    } else if (KEYWORD.test(flag) && !seen.has(lower)) {
      // Keywords compare case-insensitively (RFC 3501 uses atoms; Dovecot keeps the first spelling).
      seen.add(lower);
      keywords.push(flag);
    }
  }
  return { letters, keywords };
}

/** CURRENT keywords after a STORE of GIVEN with MODE (case-insensitive, first spelling kept). */
function combineKeywords(current: readonly string[], given: readonly string[], mode: FlagMode): string[] {
  if (mode === 'replace') return [...given];
  const lower = new Set(given.map((k) => k.toLowerCase()));
  if (mode === 'remove') return current.filter((k) => !lower.has(k.toLowerCase()));
  const have = new Set(current.map((k) => k.toLowerCase()));
  return [...current, ...given.filter((k) => !have.has(k.toLowerCase()))];
}

/**
 * The names in a Maildir++ `subscriptions` file: one a line (Courier, Dovecot 1.x-2.2), or
 * Dovecot 2.3's version 2 ("V\t2" line, blank line, then names with levels separated by TAB).
 */
export function parseSubscriptions(text: string): string[] {
  const lines = text.split('\n');
  let v2 = false;
  if (lines[0] === 'V\t2') {
    v2 = true;
    lines.splice(0, 2);
  }
  const out: string[] = [];
  for (const raw of lines) {
    const line = raw.replace(/\r$/, '');
    if (line === '') continue;
    const name = v2 ? line.split('\t').join(HIERARCHY_SEP) : line;
    const key = name.toUpperCase() === INBOX ? INBOX : name;
    if (!out.includes(key)) out.push(key);
  }
  return out;
}

/** The message entries of a listing of new/ and cur/ (one per unique name; cur/ wins). */
function entriesOf(names: { readonly new: readonly string[]; readonly cur: readonly string[] }): MessageEntry[] {
  const byName = new Map<string, MessageEntry>();
  for (const sub of ['new', 'cur'] as const) {
    for (const f of names[sub]) {
      const e = parseMessageFileName(sub, f);
      if (e) byName.set(e.name, e);
    }
  }
  return [...byName.values()];
}

function nonexistent(folder: string): Nonexistent {
  return { kind: 'nonexistent', folder };
}

/** Maildir info letters: sorted, as the Maildir spec requires ("in ASCII order"). */
function sortedLetters(letters: Iterable<string>): string {
  return [...new Set(letters)].sort().join('');
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
/**
 * What syncFolder() remembers of a folder: the index's rows as this process last knew them
 * exactly (after a sync, or after a change it made itself and applied to them).
 */
interface SyncedFolder {
  /**
   * dirStamp() taken before the listing that confirmed ROWS; null when ROWS come from this
   * process's own change, which no listing has confirmed yet (another tool may have changed
   * the directory in the same mtime tick).
   */
  readonly stamp: string | null;
  /** The index's dataVersion() when ROWS were read or patched. */
  readonly version: number;
  readonly rows: IndexedMessage[];
}

/**
 * What open() and status() derive from a folder's rows, kept while the rows (the same
 * array) and the index's dataVersion() are unchanged: SELECT of a quiet folder then hands
 * every session the same MessageInfo array, with no per-SELECT copy and no SQLite query.
 */
interface OpenedFolder {
  readonly rows: readonly IndexedMessage[];
  readonly version: number;
  readonly uidValidity: number;
  readonly uidNext: number;
  /** The index's first_recent; this process's claimRecent() moves it (and updates it here). */
  firstRecent: number;
  /** MessageInfo of every row, none \Recent (open() copies the recent suffix). */
  readonly messages: readonly MessageInfo[];
  readonly keywords: readonly string[];
  readonly unseen: number;
  /** Sequence number of the first message without \Seen, 0 for none. */
  readonly firstUnseen: number;
  /** Rows whose file is still in new/ (a claiming open moves them). */
  readonly inNew: number;
}

/** The position of UID in ROWS (ascending UIDs), or the position it would take. */
function uidPosition(rows: ReadonlyArray<{ readonly uid: number }>, uid: number): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rows[mid]!.uid < uid) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Where the files of a folder's UIDs were last seen, so that readMany() needs no index query
 * per message. Only a hint: a stale path fails with ENOENT and read() asks the index. Valid
 * while no other process wrote the index (a rebuild there renumbers UIDs).
 */
interface Located {
  readonly version: number;
  readonly rows: readonly IndexedMessage[];
  byUid: Map<number, IndexedMessage> | null;
}

/** readMany()'s header mode reads this much at a time until it sees the blank line. */
const HEADER_CHUNK = 8192;
/** A larger read buffer than this is not kept for the next message. */
const MAX_KEPT_READ_BUFFER = 4 * 1024 * 1024;
const LF_LF = Buffer.from('\n\n');
/** dirStamp()'s stat: nanosecond times, and undefined rather than a throw for a missing directory. */
const STAT_QUIET = { bigint: true, throwIfNoEntry: false } as const;
const CR = 0x0d;

/**
 * How long after a directory's last modification a listing of it is not trusted (see
 * syncFolder), unless mtimeSettled() may use FINE_DIRTY_MS: a file system that keeps whole
 * seconds (ext3, HFS+) or two (FAT) gives a second change in the same second the same mtime,
 * and a file server's clock may be off from ours (Dovecot's MAILDIR_SYNC_SECS is 1 s of drift).
 */
const DIRTY_MS = 2000;
/**
 * The same for a local file system whose mtimes have a sub-second part, on top of their
 * apparent granularity: Linux stamps a change from a clock that advances once a tick
 * (1-10 ms, CONFIG_HZ), so changes within one tick share an mtime even on a nanosecond file
 * system; 50 ms is several ticks. The clock is this machine's, so there is no drift to allow for.
 */
const FINE_DIRTY_MS = 50;
/** How long after an unconfirmed change its background listing runs (see Maildir.remember()). */
const CONFIRM_MS = 2 * FINE_DIRTY_MS;
/**
 * statfs() f_type of the local file systems whose directory mtimes have the kernel clock's
 * precision: ext2/3/4, XFS, Btrfs, tmpfs, overlayfs, ZFS, F2FS, bcachefs. Anything else (NFS,
 * SMB, FUSE, ...) may stamp with another machine's clock and gets DIRTY_MS.
 */
const LOCAL_FS_TYPES: ReadonlySet<number> = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630, 0x2fc12fc1, 0xf2f52010, 0xca451a4e]);

/** Whether PATH is on one of LOCAL_FS_TYPES (false when statfs() fails). */
function onLocalFileSystem(path: string): boolean {
  try {
    return LOCAL_FS_TYPES.has(statfsSync(path).type);
  } catch {
    return false;
  }
}

/**
 * Whether a listing of a directory whose mtime is MTIME_NS (ns since the epoch), taken after
 * reading the clock at NOW_MS, is still the truth as long as the mtime stays the same. A later
 * change gets an mtime of at least its time less one clock tick and the file system's
 * granularity, so it cannot repeat an mtime older than that; a recent mtime can be repeated
 * and must be listed again. LOCAL says the file system stamps with this machine's clock
 * (onLocalFileSystem). Its granularity is read off the value itself (trailing decimal zeros
 * of the fraction; no fraction means whole seconds), so an unlucky round value only costs a
 * listing. A clock that steps back makes mtimes look recent: listed again, never trusted.
 */
export function mtimeSettled(mtimeNs: bigint, nowMs: number, local: boolean): boolean {
  const fraction = mtimeNs % 1_000_000_000n;
  let windowMs = DIRTY_MS;
  if (local && fraction !== 0n) {
    let granularityNs = 1n;
    while (fraction % (granularityNs * 10n) === 0n) granularityNs *= 10n;
    windowMs = FINE_DIRTY_MS + Math.ceil(Number(granularityNs) / 1e6);
  }
  return mtimeNs <= BigInt(Math.floor(nowMs - windowMs)) * 1_000_000n;
}

/** Told about every change made through a Maildir (MaildirStore turns it into ChangeListener calls). */
export type MaildirNotify = (folder: string, change: MailboxChange, origin: ChangeOrigin) => void;

/** The Maildir++ subscriptions file in the root, as Courier and Dovecot keep it. */
export const SUBSCRIPTIONS_FILE = 'subscriptions';
/**
 * A folder being deleted is first renamed to this prefix plus a random part: "..x" is not a
 * valid folder name, so readers (and folders()) stop seeing it at once, as Dovecot's
 * "..DOVECOT-TRASHED" does.
 */
const TRASH_PREFIX = '..greygate-deleted-';

/** One user's Maildir (the root is INBOX). */
export class Maildir implements UserMailbox {
  readonly root: string;
  private readonly host: string;
  private readonly warn: (message: string) => void;
  private readonly notify: MaildirNotify;
  private readonly ensured = new Set<string>();
  private sequence = 0;
  private openIndex: MailboxIndex | undefined;
  /** Tail of the chain that runs this mailbox's syncs and changes one at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Per folder: the rows of its last full sync, valid while nothing has changed since. */
  private readonly synced = new Map<string, SyncedFolder>();
  private readonly located = new Map<string, Located>();
  /** open()'s IMAP flags per index row: a quiet folder's rows are the same objects from SELECT to SELECT. */
  private readonly flagsOfRow = new WeakMap<IndexedMessage, readonly string[]>();
  /** Per folder: open()'s snapshot of its current rows (see OpenedFolder). */
  private readonly opened = new Map<string, OpenedFolder>();
  /** The file names of a rows array by subdirectory, for listAndSync()'s quick comparison. */
  private readonly filesOfRows = new WeakMap<readonly IndexedMessage[], { new: Set<string>; cur: Set<string> }>();
  /** Per folder: the timer of a background listing that will confirm its rows (see remember()). */
  private readonly confirming = new Map<string, NodeJS.Timeout>();
  /** Whether the Maildir is on a local file system (see mtimeSettled); asked once. */
  private localFs: boolean | undefined;
  /** readMany()'s file buffer, reused from message to message. */
  private readBuffer = Buffer.allocUnsafeSlow(64 * 1024);

  constructor(root: string, options: MaildirOptions = {}, notify: MaildirNotify = () => undefined) {
    this.root = root;
    this.host = safeHost(options.hostname ?? osHostname());
    this.warn = options.warn ?? (() => undefined);
    this.notify = notify;
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
    this.touched(folder);
    try {
      uid = this.index().add(folder, file);
    } catch (err) {
      this.warn(`${this.root}: message ${file.name} delivered but not indexed: ${(err as Error).message}`);
    }
    // Unindexed, it is announced by the sync that numbers it (a session's next refresh).
    if (uid !== null) this.notify(folder, { kind: 'exists', uids: [uid] }, undefined);
    return { ...file, folder, uid };
  }

  /** The message files of FOLDER as its new/ and cur/ show them now (no stat). */
  async list(folder: string = INBOX): Promise<MessageEntry[]> {
    return entriesOf(await this.readNames(folder));
  }

  /** The raw names in FOLDER's new/ and cur/ (a missing one lists as empty). */
  private async readNames(folder: string): Promise<{ new: string[]; cur: string[] }> {
    const dir = this.folderPath(folder);
    const out = { new: [] as string[], cur: [] as string[] };
    // new/ before cur/: a message moved from new/ to cur/ meanwhile is seen in one of them.
    for (const sub of ['new', 'cur'] as const) {
      try {
        out[sub] = await readdir(join(dir, sub));
      } catch (err) {
        if (fsErrorCode(err) === 'ENOENT') continue;
        throw ioError('read maildir', join(dir, sub), err);
      }
    }
    return out;
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
    return (await this.exclusive(() => this.syncFolder(key))).result;
  }

  /**
   * sync(), returning the index's messages of KEY afterwards (UID order). Like Dovecot, a
   * folder whose new/ and cur/ have not been modified since the last sync, and whose index
   * no other process wrote, is not listed again: an IMAP NOOP or SELECT of a large folder
   * then costs two stat() calls. A directory modified too recently is always listed (mtime
   * granularity could hide a second change in the same tick: see mtimeSettled()).
   */
  private async syncFolder(key: string): Promise<{ result: SyncResult; rows: IndexedMessage[]; version: number }> {
    const index = this.index();
    const stamp = this.dirStamp(key);
    const version = index.dataVersion();
    const cached = this.synced.get(key);
    if (cached && stamp !== null && cached.stamp === stamp && cached.version === version) {
      this.locate(key, version, cached.rows);
      return { result: { added: 0, removed: 0, updated: 0 }, rows: cached.rows, version };
    }
    this.synced.delete(key);
    // Rows still exactly the index's (no other writer since): the listing is compared with
    // them, without reading 10,000 rows back from SQLite.
    const out = await this.listAndSync(key, cached && cached.version === version ? cached.rows : null);
    const after = index.dataVersion();
    // VERSION was read before the listing: a commit by another writer meanwhile shows as a
    // change at the next sync. A null stamp is never a hit, but the rows are still exact.
    this.remember(key, { stamp, version, rows: out.rows });
    this.locate(key, after, out.rows);
    return { ...out, version: after };
  }

  /**
   * The inode numbers and modification times (ns) of KEY's new/ and cur/ as one string, or
   * null when either was modified too recently to be trusted (or is missing). Synchronous on
   * purpose: two stat() calls of directories in the dentry cache take microseconds, while two
   * thread-pool round trips were most of a quiet SELECT's time on a busy machine.
   */
  private dirStamp(key: string): string | null {
    const dir = this.folderPath(key);
    // The clock first: a change after this reading gets a later mtime (see mtimeSettled).
    const now = Date.now();
    let n, c;
    try {
      n = statSync(join(dir, 'new'), STAT_QUIET);
      c = statSync(join(dir, 'cur'), STAT_QUIET);
    } catch {
      // Not listable either: the listing that follows reports why.
      return null;
    }
    if (!n || !c) return null;
    const local = (this.localFs ??= onLocalFileSystem(this.root));
    if (!mtimeSettled(n.mtimeNs, now, local) || !mtimeSettled(c.mtimeNs, now, local)) return null;
    return `${n.ino}:${n.mtimeNs}:${c.ino}:${c.mtimeNs}`;
  }

  /** MailboxIndex.reset(), and the cached listings with it. */
  private resetIndex(folder?: string): void {
    this.touched();
    this.index().reset(folder);
  }

  /**
   * Forget what the last sync of KEY (every folder when omitted) saw: this process changed it.
   * The located hints survive a change to one folder (a stale one only costs a retry), but
   * not one that may renumber UIDs (reset, rename, close).
   */
  private touched(key?: string): void {
    if (key === undefined) {
      this.synced.clear();
      this.located.clear();
      this.opened.clear();
    } else {
      this.synced.delete(key);
      this.opened.delete(key);
    }
  }

  /**
   * This process changed the rows of KEY in the index by UPDATES (a flag change, new/ ->
   * cur/), starting from BASE, the rows it knew exactly before: remember the result, so that
   * the next sync only compares a listing with it. A UID not in BASE leaves nothing known.
   */
  private patched(key: string, base: SyncedFolder | null, updates: readonly MessageUpdate[]): void {
    if (base === null) return;
    const rows = base.rows.slice();
    for (const u of updates) {
      const i = uidPosition(rows, u.uid);
      const r = rows[i];
      if (r === undefined || r.uid !== u.uid) return;
      rows[i] = { ...r, ...u.entry, ...(u.keywords === undefined ? {} : { keywords: u.keywords }) };
    }
    this.remember(key, { stamp: null, version: base.version, rows });
  }

  /**
   * Keep ENTRY as what syncFolder() knows of KEY. Rows no listing has confirmed yet (this
   * process's own change, or directories modified too recently) get one in the background
   * once the directories have settled, so that the next SELECT or NOOP of a large folder finds
   * a listing it can trust instead of making one (some 15 ms for 10,000 files) while its client waits.
   */
  private remember(key: string, entry: SyncedFolder): void {
    this.synced.set(key, entry);
    if (entry.stamp === null) this.confirmLater(key, 0);
  }

  /**
   * In a while, list KEY if nothing has confirmed its rows by then (see remember()); ATTEMPT
   * counts the times its directories were found not yet settled.
   */
  private confirmLater(key: string, attempt: number): void {
    if (this.confirming.has(key)) return;
    const delay = attempt === 0 && this.localFs !== false ? CONFIRM_MS : DIRTY_MS + CONFIRM_MS;
    const timer = setTimeout(() => {
      this.confirming.delete(key);
      try {
        // Closed, reset or confirmed meanwhile: nothing to do (and no index to reopen).
        if (this.openIndex === undefined || this.synced.get(key)?.stamp !== null) return;
        if (this.dirStamp(key) === null) {
          // Not settled yet (a whole-second file system, a change since): once more, later.
          if (attempt < 2) this.confirmLater(key, attempt + 1);
          return;
        }
        this.exclusive(async () => {
          // Checked again when its turn comes: a folder deleted or renamed meanwhile is not
          // to be synced (that would give it an index entry again).
          if (this.openIndex === undefined || this.synced.get(key)?.stamp !== null) return;
          await this.syncFolder(key);
        }).catch(() => undefined); // A failure is the next foreground sync's to report.
      } catch {
        // Nothing in the background may fail: a foreground sync reports what is wrong.
      }
    }, delay);
    timer.unref();
    this.confirming.set(key, timer);
  }

  /** What syncFolder() remembers of KEY when its rows are still exactly the index's, or null. */
  private knownRows(key: string): SyncedFolder | null {
    const s = this.synced.get(key);
    return s && s.version === this.index().dataVersion() ? s : null;
  }

  /** Remember ROWS as where KEY's files are (see Located). */
  private locate(key: string, version: number, rows: readonly IndexedMessage[]): void {
    const prev = this.located.get(key);
    if (prev && prev.rows === rows && prev.version === version) return;
    this.located.set(key, { version, rows, byUid: null });
  }

  /** KEY's located hints, or null when there are none or another process wrote the index since. */
  private hints(key: string): Map<number, IndexedMessage> | null {
    const loc = this.located.get(key);
    if (!loc) return null;
    if (loc.version !== this.index().dataVersion()) {
      this.located.delete(key);
      return null;
    }
    return (loc.byUid ??= new Map(loc.rows.map((r) => [r.uid, r])));
  }

  /** This process renamed files of KEY: keep the hints pointing at them. */
  private relocated(key: string, updates: readonly MessageUpdate[]): void {
    const byUid = this.located.has(key) ? this.hints(key) : null;
    if (!byUid) return;
    for (const u of updates) {
      const r = byUid.get(u.uid);
      if (r && u.entry) byUid.set(u.uid, { ...r, ...u.entry });
    }
  }

  private async listAndSync(key: string, knownRows: IndexedMessage[] | null = null): Promise<{ result: SyncResult; rows: IndexedMessage[] }> {
    const index = this.index();
    const mark = index.uidNext(key);
    const names = await this.readNames(key);
    if (knownRows !== null && this.sameFiles(knownRows, names)) return { result: { added: 0, removed: 0, updated: 0 }, rows: knownRows };
    let present = entriesOf(names);
    const rows = knownRows ?? index.messages(key);
    const known = new Map(rows.map((m) => [m.name, m]));
    const listed = new Set(present.map((e) => e.name));
    // readdir() may miss a file that is renamed while it runs (new/ -> cur/, a flag change):
    // look once more before taking a message for deleted.
    if (rows.some((m) => m.uid < mark && !listed.has(m.name))) {
      const again = await this.list(key);
      const merged = new Map(present.map((e) => [e.name, e]));
      for (const e of again) merged.set(e.name, e);
      present = [...merged.values()];
    }
    // The common case (nothing changed on disk) costs no write transaction.
    if (present.length === rows.length && present.every((e) => known.get(e.name)?.file === e.file && known.get(e.name)?.dir === e.dir)) {
      return { result: { added: 0, removed: 0, updated: 0 }, rows };
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
    const result = index.sync(key, present, added, { removeBelowUid: mark });
    return { result, rows: index.messages(key) };
  }

  /** Whether NAMES (a listing of new/ and cur/) are exactly the files of ROWS. */
  private sameFiles(rows: readonly IndexedMessage[], names: { new: string[]; cur: string[] }): boolean {
    let files = this.filesOfRows.get(rows);
    if (!files) {
      files = { new: new Set(), cur: new Set() };
      for (const r of rows) files[r.dir].add(r.file);
      this.filesOfRows.set(rows, files);
    }
    let n = 0;
    for (const sub of ['new', 'cur'] as const) {
      const set = files[sub];
      for (const f of names[sub]) {
        // Dot files are other tools' temporaries, not messages (parseMessageFileName).
        if (f.startsWith('.')) continue;
        if (!set.has(f)) return false;
        n++;
      }
    }
    return n === rows.length;
  }

  /** sync() every folder on disk; folders the index knows but the disk lost are forgotten. */
  async syncAll(): Promise<Map<string, SyncResult>> {
    const onDisk = await this.folders();
    const index = this.index();
    for (const f of index.folders()) if (!onDisk.includes(f)) this.resetIndex(f);
    const out = new Map<string, SyncResult>();
    for (const f of onDisk) out.set(f, await this.sync(f));
    return out;
  }

  /** Throw the index away and number every message anew (new UIDVALIDITY for every folder). */
  async rebuild(): Promise<Map<string, SyncResult>> {
    this.resetIndex();
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
    this.touched();
    for (const timer of this.confirming.values()) clearTimeout(timer);
    this.confirming.clear();
  }

  // ---- UserMailbox (mail-store.ts): what POP3 and IMAP use. ----

  /**
   * Run FN after every sync/change queued before it: the index and the file names of one
   * mailbox change one step at a time, whichever session asks (deliveries need not wait:
   * a link into new/ plus one index insert never conflicts with a step).
   */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The folder key of NAME, or the invalid-name outcome. */
  private checkName(name: string): string | InvalidName {
    return isValidFolderName(name) ? this.folderKey(name) : { kind: 'invalid-name', folder: name };
  }

  /** Whether folder KEY exists on disk (INBOX always does: it is created on first use). */
  private async folderExists(key: string): Promise<boolean> {
    if (key === INBOX) return true;
    try {
      return (await stat(this.folderPath(key))).isDirectory();
    } catch (err) {
      if (fsErrorCode(err) === 'ENOENT') return false;
      throw ioError('stat maildir folder', this.folderPath(key), err);
    }
  }

  async createFolder(name: string, origin?: ChangeOrigin): Promise<CreateResult> {
    // RFC 3501 6.3.3: a trailing separator only declares the intent to create children.
    const wanted = name.endsWith(HIERARCHY_SEP) && name.length > 1 ? name.slice(0, -1) : name;
    const key = this.checkName(wanted);
    if (typeof key !== 'string') return key;
    return this.exclusive(async () => {
      if (key === INBOX) return { kind: 'exists', folder: key };
      await this.ensure(INBOX);
      const dir = this.folderPath(key);
      try {
        await mkdir(dir, { mode: 0o700 });
      } catch (err) {
        if (fsErrorCode(err) === 'EEXIST') return { kind: 'exists', folder: key };
        throw ioError('create maildir folder', dir, err);
      }
      // An index entry left from a folder of that name removed behind our back: a new
      // folder must not reuse its UIDVALIDITY with other messages.
      if (this.index().folders().includes(key)) this.resetIndex(key);
      this.ensured.delete(key);
      await this.ensure(key);
      this.notify(key, { kind: 'folder', action: 'create' }, origin);
      return { kind: 'ok', folder: key };
    });
  }

  /**
   * Delete folder NAME and its messages. Its children stay (Maildir++ folders are flat: "a.b"
   * does not live inside "a"), so 'has-children' is never returned here; IMAP LIST then
   * shows "a" as a \Noselect parent, as Dovecot does.
   */
  async deleteFolder(name: string, origin?: ChangeOrigin): Promise<DeleteResult> {
    const key = this.checkName(name);
    if (typeof key !== 'string') return key;
    return this.exclusive(async () => {
      if (key === INBOX) return { kind: 'inbox', folder: key };
      if (!(await this.folderExists(key))) return { kind: 'nonexistent', folder: key };
      const dir = this.folderPath(key);
      const trash = join(this.root, `${TRASH_PREFIX}${randomBytes(6).toString('hex')}`);
      try {
        await rename(dir, trash);
      } catch (err) {
        if (fsErrorCode(err) === 'ENOENT') return { kind: 'nonexistent', folder: key };
        throw ioError('delete maildir folder', dir, err);
      }
      this.ensured.delete(key);
      this.resetIndex(key);
      this.notify(key, { kind: 'folder', action: 'delete' }, origin);
      // Once renamed the folder is gone for every reader; a failed removal only leaves a
      // hidden directory behind, which is not worth failing the command for.
      await rm(trash, { recursive: true, force: true }).catch((err: unknown) => this.warn(`${trash}: cannot remove: ${fsErrorText(err)}`));
      return { kind: 'ok', folder: key };
    });
  }

  async renameFolder(from: string, to: string, origin?: ChangeOrigin): Promise<RenameResult> {
    const src = this.checkName(from);
    if (typeof src !== 'string') return src;
    const dst = this.checkName(to);
    if (typeof dst !== 'string') return dst;
    return this.exclusive(async () => {
      if (dst === INBOX || (await this.folderExists(dst))) return { kind: 'exists', folder: dst };
      if (!(await this.folderExists(src))) return { kind: 'nonexistent', folder: src };
      await this.ensure(INBOX);
      if (src === INBOX) {
        // RFC 3501 6.3.5: INBOX's messages move to the new folder; INBOX stays, empty; its
        // children ("INBOX.x") are unaffected.
        await this.createFolderDir(dst);
        const rows = (await this.syncFolder(INBOX)).rows;
        await this.transfer(INBOX, rows, dst, 'move', origin);
        this.notify(dst, { kind: 'folder', action: 'create' }, origin);
        return { kind: 'ok', from: src, to: dst };
      }
      const prefix = src + HIERARCHY_SEP;
      const children = (await this.folders()).filter((f) => f.startsWith(prefix));
      const moves: Array<[string, string]> = [[src, dst], ...children.map((c): [string, string] => [c, dst + c.slice(src.length)])];
      for (const [, target] of moves.slice(1)) {
        if (!isValidFolderName(target)) return { kind: 'invalid-name', folder: target };
        if (await this.folderExists(target)) return { kind: 'exists', folder: target };
      }
      for (const [a, b] of moves) {
        try {
          await rename(this.folderPath(a), this.folderPath(b));
        } catch (err) {
          throw ioError('rename maildir folder', this.folderPath(a), err);
        }
        this.ensured.delete(a);
        // UIDVALIDITY and UIDs go with the folder: clients keep their caches (Dovecot does so).
        this.touched();
        this.index().renameFolder(a, b);
        this.notify(a, { kind: 'folder', action: 'rename', to: b }, origin);
      }
      await fsyncDir(this.root).catch(() => undefined);
      return { kind: 'ok', from: src, to: dst };
    });
  }

  /** mkdir ROOT/.KEY with tmp/new/cur and the marker (the caller knows it does not exist). */
  private async createFolderDir(key: string): Promise<void> {
    if (this.index().folders().includes(key)) this.resetIndex(key);
    this.ensured.delete(key);
    await this.ensure(key);
  }

  async subscriptions(): Promise<string[]> {
    let text: string;
    try {
      text = await readFile(join(this.root, SUBSCRIPTIONS_FILE), 'utf8');
    } catch (err) {
      if (fsErrorCode(err) === 'ENOENT') return [];
      throw ioError('read', join(this.root, SUBSCRIPTIONS_FILE), err);
    }
    return parseSubscriptions(text);
  }

  async subscribe(name: string, on: boolean): Promise<void> {
    const key = isValidFolderName(name) ? this.folderKey(name) : name;
    await this.exclusive(async () => {
      const list = await this.subscriptions();
      const has = list.includes(key);
      if (has === on) return;
      const next = on ? [...list, key] : list.filter((n) => n !== key);
      await this.ensure(INBOX);
      const file = join(this.root, SUBSCRIPTIONS_FILE);
      try {
        // Version-1 format (one name a line): what Courier, old and new Dovecot all read.
        await writeFileAtomic(file, next.map((n) => `${n}\n`).join(''));
      } catch (err) {
        throw ioError('write', file, err);
      }
    });
  }

  async open(folder: string, options: OpenOptions = {}): Promise<OpenResult> {
    const key = this.checkName(folder);
    if (typeof key !== 'string') return key;
    return this.exclusive(async () => {
      if (!(await this.folderExists(key))) return nonexistent(key);
      await this.ensure(key);
      const synced = await this.syncFolder(key);
      let rows = synced.rows;
      let c = this.openedFolder(key, rows, synced.version);
      if (options.claimRecent && (c === null || c.inNew > 0)) {
        const moved = await this.moveNewToCur(key, rows);
        if (moved !== rows) {
          rows = moved;
          c = null;
        }
      }
      c ??= this.describeFolder(key, rows);
      let firstRecent = c.firstRecent;
      if (options.claimRecent) {
        const upTo = (rows.length === 0 ? 0 : rows[rows.length - 1]!.uid) + 1;
        // Nothing to claim (the usual SELECT): no write transaction.
        if (c.firstRecent < upTo) {
          firstRecent = this.index().claimRecent(key, upTo);
          c.firstRecent = Math.max(firstRecent, Math.min(upTo, c.uidNext));
        }
      }
      let messages = c.messages;
      const from = uidPosition(messages, firstRecent);
      if (from < messages.length) messages = [...messages.slice(0, from), ...messages.slice(from).map((m) => ({ ...m, recent: true }))];
      return {
        kind: 'ok',
        folder: key,
        uidValidity: c.uidValidity,
        uidNext: c.uidNext,
        messages,
        keywords: c.keywords,
        firstUnseen: c.firstUnseen,
      };
    });
  }

  /**
   * open()'s snapshot of KEY when ROWS are still the rows it was made from and VERSION (the
   * index's dataVersion() that syncFolder() just read) is still its version, else null.
   */
  private openedFolder(key: string, rows: readonly IndexedMessage[], version: number): OpenedFolder | null {
    const c = this.opened.get(key);
    if (!c) return null;
    if (c.rows === rows && c.version === version) return c;
    this.opened.delete(key);
    return null;
  }

  /** Build (and keep) open()'s snapshot of KEY from its current ROWS. */
  private describeFolder(key: string, rows: readonly IndexedMessage[]): OpenedFolder {
    const index = this.index();
    const version = index.dataVersion();
    const st = index.folderState(key);
    const keywords = new Set<string>();
    let unseen = 0;
    let firstUnseen = 0;
    let inNew = 0;
    const messages: MessageInfo[] = rows.map((r, i) => {
      let flags = this.flagsOfRow.get(r);
      if (!flags) {
        flags = imapFlags(r.flags, r.keywords);
        this.flagsOfRow.set(r, flags);
      }
      if (r.keywords !== '') for (const k of r.keywords.split(' ')) keywords.add(k);
      if (r.flags.includes('P')) keywords.add('$Forwarded');
      if (!r.flags.includes('S')) {
        unseen++;
        if (firstUnseen === 0) firstUnseen = i + 1;
      }
      if (r.dir === 'new') inNew++;
      return { uid: r.uid, flags, size: r.vsize, internalDate: r.internalDate, recent: false };
    });
    const c: OpenedFolder = {
      rows,
      version,
      uidValidity: st.uidValidity,
      uidNext: st.uidNext,
      firstRecent: st.firstRecentUid,
      messages,
      keywords: [...keywords],
      unseen,
      firstUnseen,
      inNew,
    };
    this.opened.set(key, c);
    return c;
  }

  /**
   * What Dovecot does when a session takes the \Recent messages: their files leave new/ for
   * cur/ (with an empty info), so a Maildir reader no longer shows them as new either.
   */
  private async moveNewToCur(key: string, rows: IndexedMessage[]): Promise<IndexedMessage[]> {
    const dir = this.folderPath(key);
    const updates: MessageUpdate[] = [];
    const out = rows.slice();
    for (let i = 0; i < out.length; i++) {
      const r = out[i]!;
      if (r.dir !== 'new') continue;
      const entry: MessageEntry = { name: r.name, dir: 'cur', file: `${r.name}:2,${r.flags}`, flags: r.flags };
      try {
        await rename(join(dir, 'new', r.file), join(dir, 'cur', entry.file));
      } catch (err) {
        // Moved by another reader meanwhile: the next sync records where it went.
        if (fsErrorCode(err) === 'ENOENT') continue;
        throw ioError('rename maildir file', join(dir, 'new', r.file), err);
      }
      updates.push({ uid: r.uid, entry });
      out[i] = { ...r, ...entry };
    }
    // Nothing moved (the usual SELECT): the last listing is still the truth, and the next
    // SELECT can skip reading 10,000 rows back from the index.
    if (updates.length === 0) return rows;
    const base = this.knownRows(key);
    this.touched(key);
    this.index().update(key, updates);
    this.relocated(key, updates);
    // The index now holds exactly OUT: the next sync only has to confirm it with a listing.
    if (base?.rows === rows) this.remember(key, { stamp: null, version: base.version, rows: out });
    return out;
  }

  async status(folder: string): Promise<StatusResult> {
    const key = this.checkName(folder);
    if (typeof key !== 'string') return key;
    return this.exclusive(async () => {
      if (!(await this.folderExists(key))) return nonexistent(key);
      await this.ensure(key);
      const { rows, version } = await this.syncFolder(key);
      const c = this.openedFolder(key, rows, version) ?? this.describeFolder(key, rows);
      const recent = rows.length - uidPosition(rows, c.firstRecent);
      return { kind: 'ok', folder: key, messages: rows.length, recent, unseen: c.unseen, uidNext: c.uidNext, uidValidity: c.uidValidity };
    });
  }

  async read(folder: string, uid: number): Promise<Buffer | null> {
    if (!isValidFolderName(folder)) return null;
    const key = this.folderKey(folder);
    for (let attempt = 0; attempt < 2; attempt++) {
      const row = this.index().message(key, uid);
      if (!row) return null;
      try {
        return fromMaildirBytes(await readFile(this.messagePath(key, row)));
      } catch (err) {
        if (fsErrorCode(err) !== 'ENOENT') throw ioError('read maildir file', this.messagePath(key, row), err);
      }
      // Renamed (a flag change by another reader) or deleted since it was indexed.
      await this.exclusive(() => this.syncFolder(key));
    }
    return null;
  }

  async readMany(folder: string, uids: readonly number[], part: ReadPart = 'all'): Promise<Array<Buffer | null>> {
    if (!isValidFolderName(folder)) return uids.map(() => null);
    const key = this.folderKey(folder);
    const byUid = this.hints(key);
    const out: Array<Buffer | null> = [];
    for (const uid of uids) {
      const row = byUid?.get(uid);
      // Synchronous on purpose: one open and one read per file, against four thread-pool
      // round trips for fs.promises.readFile (10x slower here); the caller bounds the batch.
      let buf = row ? this.readNow(this.messagePath(key, row), row.size, part) : null;
      buf ??= await this.read(folder, uid);
      out.push(buf);
    }
    return out;
  }

  /**
   * PATH in read()'s form (LF -> CRLF), or with PART 'header' a prefix of it that holds the
   * header and its blank line; null when the file is not there (renamed or deleted).
   * SIZE (the indexed size) only sizes the first read.
   */
  private readNow(path: string, size: number, part: ReadPart): Buffer | null {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      if (fsErrorCode(err) === 'ENOENT') return null;
      throw ioError('read maildir file', path, err);
    }
    try {
      let len = 0;
      let headerEnd = -1;
      for (;;) {
        const want = part === 'header' ? HEADER_CHUNK : Math.max(size + 1 - len, HEADER_CHUNK);
        if (this.readBuffer.length < len + want) this.growReadBuffer(len + want, len);
        const n = readSync(fd, this.readBuffer, len, want, null);
        const from = Math.max(0, len - 1);
        len += n;
        if (part === 'header' && headerEnd < 0) {
          const i = this.readBuffer.subarray(0, len).indexOf(LF_LF, from);
          if (i >= 0) {
            headerEnd = i + 2;
            // A CR in the file makes LF -> CRLF ambiguous for the header's end: take it all.
            if (this.readBuffer.subarray(0, headerEnd).includes(CR)) part = 'all';
            else break;
          }
        }
        // A short read of a regular file is its end: no second read() to see 0.
        if (n < want) break;
      }
      const data = this.readBuffer.subarray(0, headerEnd >= 0 && part === 'header' ? headerEnd : len);
      const out = fromMaildirBytes(data);
      if (this.readBuffer.length > MAX_KEPT_READ_BUFFER) this.readBuffer = Buffer.allocUnsafeSlow(64 * 1024);
      return out;
    } catch (err) {
      throw ioError('read maildir file', path, err);
    } finally {
      closeSync(fd);
    }
  }

  private growReadBuffer(need: number, keep: number): void {
    let size = this.readBuffer.length;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.readBuffer.copy(next, 0, 0, keep);
    this.readBuffer = next;
  }

  async setFlags(folder: string, uids: readonly number[], flags: readonly string[], mode: FlagMode, origin?: ChangeOrigin): Promise<FlagUpdate[]> {
    if (!isValidFolderName(folder)) return [];
    const key = this.folderKey(folder);
    const { letters, keywords } = parseImapFlags(flags);
    return this.exclusive(async () => {
      if (!(await this.folderExists(key))) return [];
      const out: FlagUpdate[] = [];
      const changed: FlagUpdate[] = [];
      const updates: MessageUpdate[] = [];
      let rows = this.rowsOf(key, uids);
      for (let attempt = 0; attempt < 2 && rows.length > 0; attempt++) {
        const missed: number[] = [];
        for (const r of rows) {
          const letterSet = new Set(r.flags);
          const managed = [...letterSet].filter((l) => MANAGED_LETTERS.has(l));
          const others = [...letterSet].filter((l) => !MANAGED_LETTERS.has(l));
          let nextManaged: string[];
          if (mode === 'replace') nextManaged = [...letters];
          else if (mode === 'add') nextManaged = [...managed, ...letters];
          else nextManaged = managed.filter((l) => !letters.has(l));
          const nextLetters = sortedLetters([...others, ...nextManaged]);
          const current = r.keywords === '' ? [] : r.keywords.split(' ');
          const nextKeywords = combineKeywords(current, keywords, mode).join(' ');
          const update: { uid: number; entry?: MessageEntry; keywords?: string } = { uid: r.uid };
          if (nextLetters !== r.flags || r.dir === 'new') {
            const entry: MessageEntry = { name: r.name, dir: 'cur', file: `${r.name}:2,${nextLetters}`, flags: nextLetters };
            const dir = this.folderPath(key);
            try {
              await rename(join(dir, r.dir, r.file), join(dir, 'cur', entry.file));
            } catch (err) {
              if (fsErrorCode(err) !== 'ENOENT') throw ioError('rename maildir file', join(dir, r.dir, r.file), err);
              missed.push(r.uid);
              continue;
            }
            update.entry = entry;
          }
          if (nextKeywords !== r.keywords) update.keywords = nextKeywords;
          const result = { uid: r.uid, flags: imapFlags(nextLetters, nextKeywords) };
          out.push(result);
          if (update.entry !== undefined || update.keywords !== undefined) updates.push(update);
          if (nextLetters !== r.flags || nextKeywords !== r.keywords) changed.push(result);
        }
        // A STORE that changes nothing (flags already set) leaves the index and the listing as they were.
        if (updates.length > 0) {
          const base = this.knownRows(key);
          this.touched(key);
          this.index().update(key, updates);
          this.relocated(key, updates);
          this.patched(key, base, updates);
          updates.length = 0;
        }
        if (missed.length === 0) break;
        // Renamed by another reader since the last sync: find where they went, once.
        await this.syncFolder(key);
        rows = this.rowsOf(key, missed);
      }
      out.sort((a, b) => a.uid - b.uid);
      if (changed.length > 0) this.notify(key, { kind: 'flags', updates: changed }, origin);
      return out;
    });
  }

  /** The index rows of UIDS in FOLDER that exist, in UID order. */
  private rowsOf(key: string, uids: readonly number[]): IndexedMessage[] {
    const index = this.index();
    // One query for a large set (STORE 1:*), point lookups for a few.
    if (uids.length > 32) {
      const want = new Set(uids);
      return index.messages(key).filter((m) => want.has(m.uid));
    }
    const out: IndexedMessage[] = [];
    for (const uid of [...new Set(uids)].sort((a, b) => a - b)) {
      const m = index.message(key, uid);
      if (m) out.push(m);
    }
    return out;
  }

  async expunge(folder: string, uids?: readonly number[], origin?: ChangeOrigin): Promise<number[]> {
    if (!isValidFolderName(folder)) return [];
    const key = this.folderKey(folder);
    return this.exclusive(async () => {
      if (!(await this.folderExists(key))) return [];
      // Synced first: \Deleted may have been set by another reader (mutt's "d" is a T flag).
      const rows = (await this.syncFolder(key)).rows;
      const limit = uids === undefined ? null : new Set(uids);
      const doomed = rows.filter((r) => r.flags.includes('T') && (limit === null || limit.has(r.uid)));
      return this.removeFiles(key, doomed, origin);
    });
  }

  /** Unlink ROWS' files, forget them, announce it: the UIDs removed, ascending. */
  private async removeFiles(key: string, rows: readonly IndexedMessage[], origin: ChangeOrigin): Promise<number[]> {
    const gone: number[] = [];
    for (const r of rows) {
      const path = this.messagePath(key, r);
      try {
        await unlink(path);
      } catch (err) {
        // Already removed by another reader: expunged all the same.
        if (fsErrorCode(err) !== 'ENOENT') {
          this.forgetAndNotify(key, gone, origin);
          throw ioError('remove maildir file', path, err);
        }
      }
      gone.push(r.uid);
    }
    this.forgetAndNotify(key, gone, origin);
    return gone;
  }

  private forgetAndNotify(key: string, uids: number[], origin: ChangeOrigin): void {
    if (uids.length === 0) return;
    uids.sort((a, b) => a - b);
    this.touched(key);
    this.index().remove(key, uids);
    this.notify(key, { kind: 'expunge', uids }, origin);
  }

  async append(folder: string, message: Uint8Array, options: AppendOptions = {}, origin?: ChangeOrigin): Promise<AppendResult> {
    const key = this.checkName(folder);
    if (typeof key !== 'string') return key;
    if (!(await this.folderExists(key))) return nonexistent(key);
    await this.ensure(key);
    const { letters, keywords } = parseImapFlags(options.flags ?? []);
    const data = toMaildirBytes(message);
    const vsize = data.length + countLf(data);
    // Dovecot's choice: a message saved with flags goes to cur/ with them, else to new/.
    const info = letters.size === 0 ? null : sortedLetters(letters);
    const file = await this.writeNew(key, data, vsize, options.internalDate, info);
    let uid: number;
    let uidValidity: number;
    this.touched(key);
    try {
      uid = this.index().add(key, { ...file, keywords: keywords.join(' ') });
      uidValidity = this.index().folderState(key).uidValidity;
    } catch (err) {
      // The client is told it failed: it must not find the message there after all.
      await unlink(file.path).catch(() => undefined);
      throw err;
    }
    this.notify(key, { kind: 'exists', uids: [uid] }, origin);
    return { kind: 'ok', uidValidity, uid };
  }

  copy(from: string, uids: readonly number[], to: string, origin?: ChangeOrigin): Promise<CopyResult> {
    return this.copyOrMove(from, uids, to, 'copy', origin);
  }

  move(from: string, uids: readonly number[], to: string, origin?: ChangeOrigin): Promise<CopyResult> {
    return this.copyOrMove(from, uids, to, 'move', origin);
  }

  private async copyOrMove(from: string, uids: readonly number[], to: string, how: 'copy' | 'move', origin: ChangeOrigin): Promise<CopyResult> {
    const src = this.checkName(from);
    if (typeof src !== 'string') return src;
    const dst = this.checkName(to);
    if (typeof dst !== 'string') return dst;
    return this.exclusive(async () => {
      if (!(await this.folderExists(src))) return nonexistent(src);
      if (!(await this.folderExists(dst))) return nonexistent(dst);
      await this.ensure(dst);
      const pairs = await this.transfer(src, this.rowsOf(src, uids), dst, how, origin);
      return { kind: 'ok', uidValidity: this.index().folderState(dst).uidValidity, pairs };
    });
  }

  /**
   * Give each of ROWS (of SRC) a new file in DST under a new unique name, keeping its
   * subdirectory, flags, keywords and mtime (= INTERNALDATE): a hard link for a copy (the
   * bytes are shared, as Dovecot's maildir_copy_with_hardlinks), a rename for a move.
   * Returns [old UID, new UID] pairs; sources that vanished meanwhile are skipped.
   */
  private async transfer(src: string, rows: readonly IndexedMessage[], dst: string, how: 'copy' | 'move', origin: ChangeOrigin): Promise<Array<[number, number]>> {
    const srcDir = this.folderPath(src);
    const dstDir = this.folderPath(dst);
    const done: Array<{ row: IndexedMessage; file: NewMessage; path: string }> = [];
    for (const r of rows) {
      const sizes = sizesFromName(r.name);
      const unique = `${this.uniqueName()},S=${sizes.size ?? r.size},W=${sizes.vsize ?? r.vsize}`;
      const fileName = r.dir === 'cur' ? `${unique}:2,${r.flags}` : unique;
      const from = join(srcDir, r.dir, r.file);
      const target = join(dstDir, r.dir, fileName);
      try {
        if (how === 'move') await rename(from, target);
        else await this.linkOrCopy(from, target, join(dstDir, 'tmp', unique), r.internalDate);
      } catch (err) {
        if (fsErrorCode(err) === 'ENOENT' && (await this.gone(from))) continue;
        await this.recordTransfer(src, dst, done, how, origin);
        throw ioError(how === 'move' ? 'move maildir file' : 'copy maildir file', from, err);
      }
      done.push({ row: r, path: target, file: { name: unique, dir: r.dir, file: fileName, flags: r.flags, size: r.size, vsize: r.vsize, internalDate: r.internalDate, keywords: r.keywords } });
    }
    try {
      for (const sub of new Set(done.map((d) => d.row.dir))) await fsyncDir(join(dstDir, sub));
    } catch (err) {
      await this.recordTransfer(src, dst, done, how, origin);
      throw ioError('sync maildir', dstDir, err);
    }
    return this.recordTransfer(src, dst, done, how, origin);
  }

  /** Index what transfer() put in DST (and took from SRC for a move), and announce it. */
  private async recordTransfer(
    src: string,
    dst: string,
    done: ReadonlyArray<{ row: IndexedMessage; file: NewMessage }>,
    how: 'copy' | 'move',
    origin: ChangeOrigin,
  ): Promise<Array<[number, number]>> {
    if (done.length === 0) return [];
    this.touched(dst);
    const newUids = this.index().addMany(
      dst,
      done.map((d) => d.file),
    );
    const pairs = done.map((d, i): [number, number] => [d.row.uid, newUids[i]!]);
    this.notify(dst, { kind: 'exists', uids: newUids }, origin);
    if (how === 'move') this.forgetAndNotify(src, done.map((d) => d.row.uid), origin);
    return pairs;
  }

  /** Whether PATH is really gone (rather than a directory missing, which is an error). */
  private async gone(path: string): Promise<boolean> {
    try {
      await stat(path);
      return false;
    } catch (err) {
      return fsErrorCode(err) === 'ENOENT' && (await stat(dirname(path)).then(() => true, () => false));
    }
  }

  private async linkOrCopy(from: string, target: string, tmp: string, mtimeMs: number): Promise<void> {
    try {
      await link(from, target);
      return;
    } catch (err) {
      const code = fsErrorCode(err);
      if (code === undefined || !NO_LINK.has(code)) throw err;
    }
    // No hard links here: a full copy, written in tmp/ first as every Maildir writer must.
    await copyFile(from, tmp, fsConstants.COPYFILE_EXCL);
    try {
      const fh = await open(tmp, 'r+');
      await fh.sync().finally(() => fh.close());
      await utimes(tmp, mtimeMs / 1000, mtimeMs / 1000);
      await rename(tmp, target);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
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

  /**
   * Write DATA as a new message of FOLDER: into new/, or with INFO (flag letters, even '')
   * into cur/ as NAME:2,INFO.
   */
  private async writeNew(folder: string, data: Buffer, vsize: number, internalDate: number | undefined, info: string | null = null): Promise<MessageFile & { path: string }> {
    const dir = this.folderPath(folder);
    const sub = info === null ? 'new' : 'cur';
    const suffix = info === null ? '' : `:2,${info}`;
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
    let path = join(dir, sub, name + suffix);
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
            path = join(dir, sub, name + suffix);
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
      await fsyncDir(join(dir, sub));
      mtime = (await stat(path)).mtimeMs;
    } catch (err) {
      // Not known to be durable: take it back, so that a retry does not leave two copies.
      await unlink(path).catch(() => undefined);
      throw ioError('sync maildir', join(dir, sub), err);
    }
    return { name, dir: sub, file: name + suffix, flags: info ?? '', size: data.length, vsize, internalDate: Math.floor(mtime), path };
  }
}

function renameSyncQuiet(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch {
    // -wal and -shm exist only while some connection has the database open.
  }
}

/**
 * DATA_DIRECTORY/mail: one Maildir per user, opened once and shared by every caller (local
 * delivery, POP3, IMAP): changes made through it reach every onChange() listener. Changes
 * made by other processes or tools are not announced; sessions see them at their next
 * open() (IMAP NOOP/IDLE refresh).
 */
export class MaildirStore implements MailStore {
  readonly dataDir: string;
  readonly mailDir: string;
  private readonly options: MaildirOptions;
  private readonly boxes = new Map<string, Maildir>();
  private readonly listeners = new Set<ChangeListener>();
  private readonly pop3Locks = new Set<string>();

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
    const box = this.boxes.get(name) ?? new Maildir(join(this.mailDir, name), this.options, (folder, change, origin) => this.emit(name, folder, change, origin));
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

  /**
   * announce - tell this store's listeners about a change another MaildirStore made (the
   * gateway's delivery thread delivers with its own instance; IMAP sessions listen here)
   */
  announce(user: string, folder: string, change: MailboxChange): void {
    this.emit(user, folder, change, undefined);
  }

  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * In-process only, as the gateway runs every POP3 session (Dovecot also takes a lock in
   * the Maildir for other processes; greygate has no second POP3 server to exclude).
   */
  lockPop3(user: string): (() => void) | null {
    const name = normalizeUserName(user);
    if (name === null) throw new UserError(`invalid user name ${JSON.stringify(user)}`);
    if (this.pop3Locks.has(name)) return null;
    this.pop3Locks.add(name);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.pop3Locks.delete(name);
    };
  }

  private emit(user: string, folder: string, change: MailboxChange, origin: ChangeOrigin): void {
    for (const l of this.listeners) {
      try {
        l(user, folder, change, origin);
      } catch (err) {
        // A listener's bug must not turn a change that is already on disk into a failure.
        this.options.warn?.(`mailbox change listener failed: ${(err as Error).message}`);
      }
    }
  }

  /** Close every index database. */
  close(): void {
    for (const box of this.boxes.values()) box.close();
    this.boxes.clear();
  }
}
