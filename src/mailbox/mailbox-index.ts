/**
 * @module mailbox/mailbox-index
 * SUMMARY: the per-user index of a Maildir that POP3 and IMAP build on: for each folder its
 * UIDVALIDITY and UIDNEXT, and for each message its UID, file name, size, CRLF size,
 * internal date, Maildir flags and IMAP keywords, and the folder's first \Recent UID.
 * Exports MailboxIndex (open, status, folderState, uidNext, add, addMany, messages, message, sync, relocate,
 * setKeywords, remove, claimRecent, renameFolder, reset, folders, close) and the record
 * types. One SQLite file per user (better-sqlite3,
 * WAL), next to the Maildir, so the CLI, the gateway and a second gateway process can share
 * it. The Maildir stays the truth: the index only remembers what the files cannot (UIDs),
 * and mailbox/maildir.ts re-syncs it from the directories (files dropped in by other tools
 * get UIDs, vanished files are removed). Keywords other than the Maildir letters live only
 * here, so a rebuild loses them (as Dovecot's do without dovecot-keywords). This module does
 * no file-system work of its own.
 * DIAGNOSTICS: StoreError (with cause) when SQLite fails; nothing is logged here.
 * SEE ALSO: RFC 3501 section 2.3.1.1 (UIDs, UIDVALIDITY); Dovecot dovecot-uidlist.
 */
import Database from 'better-sqlite3';
import { StoreError } from '../errors.js';

/** The index file, in the user's Maildir root (DATA_DIRECTORY/mail/USER/). */
export const INDEX_FILE = 'greygate-index.sqlite';

/** 2 added messages.keywords and folders.first_recent (migrated in place from 1). */
const SCHEMA_VERSION = 2;

/** A message file as a directory listing shows it (no stat needed). */
export interface MessageEntry {
  /** The unique part of the file name, before ":"; what identifies a message for life. */
  readonly name: string;
  /** The subdirectory it is in. */
  readonly dir: 'new' | 'cur';
  /** The file name on disk: `name`, plus ":2,FLAGS" once a reader has seen it. */
  readonly file: string;
  /** Maildir flag letters (D F P R S T), sorted; '' for none. */
  readonly flags: string;
}

/** A message file with what it takes a stat (and for foreign files, a read) to know. */
export interface MessageFile extends MessageEntry {
  /** Bytes on disk (LF line ends). */
  readonly size: number;
  /** Bytes with CRLF line ends: IMAP RFC822.SIZE and POP3 LIST (Dovecot's W=). */
  readonly vsize: number;
  /** Milliseconds since the epoch: the file's mtime, as Dovecot takes INTERNALDATE. */
  readonly internalDate: number;
}

export interface IndexedMessage extends MessageFile {
  readonly folder: string;
  readonly uid: number;
  /** IMAP keywords that have no Maildir letter, space-separated ('' for none). */
  readonly keywords: string;
}

/** One message's change for MailboxIndex.update(). */
export interface MessageUpdate {
  readonly uid: number;
  readonly entry?: MessageEntry;
  readonly keywords?: string;
}

/** A message file to index with its keywords (APPEND, COPY). */
export interface NewMessage extends MessageFile {
  readonly keywords?: string;
}

/** A folder's own row: what folderState() reads. */
export interface FolderState {
  readonly folder: string;
  readonly uidValidity: number;
  readonly uidNext: number;
  /** Messages with this UID or above are \Recent (RFC 3501 2.3.2; Dovecot's first_recent_uid). */
  readonly firstRecentUid: number;
}

export interface FolderStatus extends FolderState {
  readonly messages: number;
}

export interface SyncResult {
  readonly added: number;
  readonly removed: number;
  /** Messages whose location or flags changed (moved new -> cur, flags renamed). */
  readonly updated: number;
}

export interface SyncOptions {
  /**
   * Only messages with a UID below this may be removed for missing from `present`. The
   * caller passes the UIDNEXT it read before listing the directories, so that a message
   * delivered (and indexed) while the listing ran is not taken for a vanished one.
   * Default: every indexed message.
   */
  readonly removeBelowUid?: number;
}

interface FolderRow {
  uidvalidity: number;
  uidnext: number;
  first_recent: number;
}

interface MessageRow {
  folder: string;
  uid: number;
  name: string;
  dir: 'new' | 'cur';
  file: string;
  flags: string;
  size: number;
  vsize: number;
  internal_date: number;
  keywords: string;
}

function toMessage(row: MessageRow): IndexedMessage {
  return {
    folder: row.folder,
    uid: row.uid,
    name: row.name,
    dir: row.dir,
    file: row.file,
    flags: row.flags,
    size: row.size,
    vsize: row.vsize,
    internalDate: row.internal_date,
    keywords: row.keywords,
  };
}

/** New UIDs go in delivery order: by internal date, then by name (time.unique.host sorts by time). */
function byArrival(a: MessageFile, b: MessageFile): number {
  return a.internalDate - b.internalDate || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export class MailboxIndex {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly stmts: {
    readonly folder: Database.Statement<[string], FolderRow>;
    readonly insertFolder: Database.Statement<[string, number]>;
    readonly setUidNext: Database.Statement<[number, string]>;
    readonly setFirstRecent: Database.Statement<[number, string]>;
    readonly renameFolder: Database.Statement<[string, string]>;
    readonly renameFolderMessages: Database.Statement<[string, string]>;
    readonly deleteFolder: Database.Statement<[string]>;
    readonly deleteFolderMessages: Database.Statement<[string]>;
    readonly folderNames: Database.Statement<[], { name: string }>;
    readonly lastValidity: Database.Statement<[], { value: number }>;
    readonly setLastValidity: Database.Statement<[number]>;
    readonly count: Database.Statement<[string], { n: number }>;
    readonly byName: Database.Statement<[string, string], MessageRow>;
    readonly byUid: Database.Statement<[string, number], MessageRow>;
    readonly list: Database.Statement<[string], MessageRow>;
    readonly insert: Database.Statement<[string, number, string, string, string, string, number, number, number, string]>;
    readonly relocate: Database.Statement<[string, string, string, string, number]>;
    readonly setKeywords: Database.Statement<[string, string, number]>;
    readonly remove: Database.Statement<[string, number]>;
    readonly dataVersion: Database.Statement<[], number>;
  };

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
    this.stmts = {
      folder: db.prepare('SELECT uidvalidity, uidnext, first_recent FROM folders WHERE name = ?'),
      insertFolder: db.prepare('INSERT INTO folders (name, uidvalidity, uidnext, first_recent) VALUES (?, ?, 1, 1)'),
      setUidNext: db.prepare('UPDATE folders SET uidnext = ? WHERE name = ?'),
      setFirstRecent: db.prepare('UPDATE folders SET first_recent = ? WHERE name = ?'),
      renameFolder: db.prepare('UPDATE folders SET name = ? WHERE name = ?'),
      renameFolderMessages: db.prepare('UPDATE messages SET folder = ? WHERE folder = ?'),
      deleteFolder: db.prepare('DELETE FROM folders WHERE name = ?'),
      deleteFolderMessages: db.prepare('DELETE FROM messages WHERE folder = ?'),
      folderNames: db.prepare('SELECT name FROM folders ORDER BY name'),
      lastValidity: db.prepare("SELECT value FROM meta WHERE key = 'last_uidvalidity'"),
      setLastValidity: db.prepare("INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
      count: db.prepare('SELECT count(*) AS n FROM messages WHERE folder = ?'),
      byName: db.prepare('SELECT * FROM messages WHERE folder = ? AND name = ?'),
      byUid: db.prepare('SELECT * FROM messages WHERE folder = ? AND uid = ?'),
      list: db.prepare('SELECT * FROM messages WHERE folder = ? ORDER BY uid'),
      insert: db.prepare(
        'INSERT INTO messages (folder, uid, name, dir, file, flags, size, vsize, internal_date, keywords) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      relocate: db.prepare('UPDATE messages SET dir = ?, file = ?, flags = ? WHERE folder = ? AND uid = ?'),
      setKeywords: db.prepare('UPDATE messages SET keywords = ? WHERE folder = ? AND uid = ?'),
      remove: db.prepare('DELETE FROM messages WHERE folder = ? AND uid = ?'),
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    };
  }

  /** Open (creating if needed) the index database FILE; its directory must exist. */
  static open(file: string): MailboxIndex {
    let db: Database.Database | undefined;
    try {
      db = new Database(file);
      // Deliveries, the CLI and POP3/IMAP sessions of other processes write concurrently.
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      // A UID handed to an IMAP client must never be handed out again after a crash.
      db.pragma('synchronous = FULL');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) throw new Error(`index schema version ${version} is newer than this greygate (${SCHEMA_VERSION})`);
      db.transaction(() => {
        const current = db!.pragma('user_version', { simple: true }) as number;
        if (current === 1) {
          // Schema 1 (before POP3/IMAP): the same data without keywords and \Recent tracking.
          db!.exec(
            "ALTER TABLE messages ADD COLUMN keywords TEXT NOT NULL DEFAULT '';" +
              'ALTER TABLE folders ADD COLUMN first_recent INTEGER NOT NULL DEFAULT 1;',
          );
        }
        db!.exec(
          'CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;' +
            'CREATE TABLE IF NOT EXISTS folders (name TEXT PRIMARY KEY NOT NULL, uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL, ' +
            'first_recent INTEGER NOT NULL DEFAULT 1) WITHOUT ROWID;' +
            'CREATE TABLE IF NOT EXISTS messages (' +
            'folder TEXT NOT NULL, uid INTEGER NOT NULL, name TEXT NOT NULL, dir TEXT NOT NULL, file TEXT NOT NULL, flags TEXT NOT NULL, ' +
            "size INTEGER NOT NULL, vsize INTEGER NOT NULL, internal_date INTEGER NOT NULL, keywords TEXT NOT NULL DEFAULT '', " +
            'PRIMARY KEY (folder, uid), UNIQUE (folder, name)) WITHOUT ROWID;' +
            `PRAGMA user_version = ${SCHEMA_VERSION};`,
        );
      }).immediate();
      return new MailboxIndex(file, db);
    } catch (err) {
      db?.close();
      throw new StoreError(`cannot open mailbox index ${file}: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** UIDVALIDITY, UIDNEXT and the message count of FOLDER (created on first use). */
  status(folder: string): FolderStatus {
    return this.run('read folder status', () => {
      // Only a folder seen for the first time needs the write lock.
      const f = this.stmts.folder.get(folder) ?? this.db.transaction(() => this.ensureFolder(folder)).immediate();
      return {
        folder,
        uidValidity: f.uidvalidity,
        uidNext: f.uidnext,
        messages: this.stmts.count.get(folder)?.n ?? 0,
        firstRecentUid: f.first_recent,
      };
    });
  }

  /**
   * UIDVALIDITY, UIDNEXT and the first \Recent UID of FOLDER (created on first use):
   * status() without counting the messages, which on 10,000 of them costs a millisecond.
   */
  folderState(folder: string): FolderState {
    return this.run('read folder status', () => {
      const f = this.stmts.folder.get(folder) ?? this.db.transaction(() => this.ensureFolder(folder)).immediate();
      return { folder, uidValidity: f.uidvalidity, uidNext: f.uidnext, firstRecentUid: f.first_recent };
    });
  }

  /** UIDNEXT of FOLDER (created on first use): status() without counting the messages. */
  uidNext(folder: string): number {
    return this.run('read folder status', () => (this.stmts.folder.get(folder) ?? this.db.transaction(() => this.ensureFolder(folder)).immediate()).uidnext);
  }

  /**
   * Give the delivered FILE in FOLDER the next UID and return it. A name the index already
   * has (a sync got there first) keeps its UID, which is returned.
   */
  add(folder: string, file: NewMessage): number {
    return this.addMany(folder, [file])[0]!;
  }

  /** add() for each of FILES in one transaction (COPY, MOVE): their UIDs, in order. */
  addMany(folder: string, files: readonly NewMessage[]): number[] {
    return this.run('add message', () =>
      this.db
        .transaction(() => {
          const f = this.ensureFolder(folder);
          let next = f.uidnext;
          const uids = files.map((file) => {
            const known = this.stmts.byName.get(folder, file.name);
            if (known) return known.uid;
            this.insert(folder, next, file);
            return next++;
          });
          if (next !== f.uidnext) this.stmts.setUidNext.run(next, folder);
          return uids;
        })
        .immediate(),
    );
  }

  /** The indexed messages of FOLDER in UID order. */
  messages(folder: string): IndexedMessage[] {
    return this.run('list messages', () => this.stmts.list.all(folder).map(toMessage));
  }

  /** The message UID of FOLDER, or undefined. */
  message(folder: string, uid: number): IndexedMessage | undefined {
    return this.run('read message', () => {
      const row = this.stmts.byUid.get(folder, uid);
      return row ? toMessage(row) : undefined;
    });
  }

  /**
   * Record, in one transaction, that messages' files were renamed (a flag change, a move
   * from new/ to cur/: `entry`) and/or their keywords replaced (`keywords`, space-separated).
   */
  update(folder: string, changes: readonly MessageUpdate[]): void {
    if (changes.length === 0) return;
    this.run('update messages', () =>
      this.db
        .transaction(() => {
          for (const c of changes) {
            if (c.entry) this.stmts.relocate.run(c.entry.dir, c.entry.file, c.entry.flags, folder, c.uid);
            if (c.keywords !== undefined) this.stmts.setKeywords.run(c.keywords, folder, c.uid);
          }
        })
        .immediate(),
    );
  }

  /** Forget the messages UIDS of FOLDER (their files are gone). */
  remove(folder: string, uids: readonly number[]): void {
    this.run('remove messages', () =>
      this.db
        .transaction(() => {
          for (const uid of uids) this.stmts.remove.run(folder, uid);
        })
        .immediate(),
    );
  }

  /**
   * Take FOLDER's \Recent messages below UID UPTO for one session (IMAP SELECT): returns
   * the first recent UID as it was, and moves it to UPTO (the UID after the last message the
   * session saw: one delivered meanwhile stays recent for the next session).
   */
  claimRecent(folder: string, upTo: number): number {
    return this.run('claim recent', () =>
      this.db
        .transaction(() => {
          const f = this.ensureFolder(folder);
          if (f.first_recent < upTo) this.stmts.setFirstRecent.run(Math.min(upTo, f.uidnext), folder);
          return f.first_recent;
        })
        .immediate(),
    );
  }

  /**
   * Give folder FROM's UIDVALIDITY, UIDs and messages to TO (IMAP RENAME keeps them, as
   * Dovecot does). Whatever TO had in the index (a stale entry) is dropped first.
   */
  renameFolder(from: string, to: string): void {
    this.run('rename folder', () =>
      this.db
        .transaction(() => {
          this.stmts.deleteFolderMessages.run(to);
          this.stmts.deleteFolder.run(to);
          this.stmts.renameFolder.run(to, from);
          this.stmts.renameFolderMessages.run(to, from);
        })
        .immediate(),
    );
  }

  /**
   * Make FOLDER's index match a directory listing: PRESENT is every message file now in
   * new/ and cur/; ADDED holds the full description of those the index may not know yet
   * (names it already knows are ignored there). Unknown names get UIDs in arrival order;
   * known ones take the listing's location and flags (the file name is the truth for
   * flags); indexed names missing from PRESENT are removed (see SyncOptions).
   */
  sync(folder: string, present: readonly MessageEntry[], added: readonly MessageFile[], options: SyncOptions = {}): SyncResult {
    return this.run('sync folder', () =>
      this.db
        .transaction(() => {
          const f = this.ensureFolder(folder);
          const rows = new Map(this.stmts.list.all(folder).map((r) => [r.name, r]));
          const limit = options.removeBelowUid ?? f.uidnext;
          let updated = 0;
          let removed = 0;
          const seen = new Set<string>();
          for (const e of present) {
            seen.add(e.name);
            const row = rows.get(e.name);
            if (row && (row.dir !== e.dir || row.file !== e.file || row.flags !== e.flags)) {
              this.stmts.relocate.run(e.dir, e.file, e.flags, folder, row.uid);
              updated++;
            }
          }
          for (const row of rows.values()) {
            if (!seen.has(row.name) && row.uid < limit) {
              this.stmts.remove.run(folder, row.uid);
              removed++;
            }
          }
          let uid = f.uidnext;
          const fresh = added.filter((m) => !rows.has(m.name) && seen.has(m.name));
          const unique = new Map(fresh.map((m) => [m.name, m]));
          for (const m of [...unique.values()].sort(byArrival)) this.insert(folder, uid++, m);
          if (uid !== f.uidnext) this.stmts.setUidNext.run(uid, folder);
          return { added: uid - f.uidnext, removed, updated };
        })
        .immediate(),
    );
  }

  /**
   * Forget FOLDER (every folder when omitted): its messages and UIDs. The next use gives it
   * a new, larger UIDVALIDITY, so IMAP clients drop their caches, as RFC 3501 requires
   * whenever UIDs are reassigned (a rebuild, a folder deleted and created again).
   */
  reset(folder?: string): void {
    this.run('reset folder', () =>
      this.db
        .transaction(() => {
          for (const name of folder === undefined ? this.folderNames() : [folder]) {
            this.stmts.deleteFolderMessages.run(name);
            this.stmts.deleteFolder.run(name);
          }
        })
        .immediate(),
    );
  }

  /**
   * SQLite's data_version: it changes when another connection (another process, another
   * MailboxIndex on the same file) commits, never for this connection's own commits.
   */
  dataVersion(): number {
    return this.run('read data version', () => this.stmts.dataVersion.get() ?? 0);
  }

  /** Folders the index has a UIDVALIDITY for. */
  folders(): string[] {
    return this.run('list folders', () => this.folderNames());
  }

  private folderNames(): string[] {
    return this.stmts.folderNames.all().map((r) => r.name);
  }

  private ensureFolder(folder: string): FolderRow {
    const row = this.stmts.folder.get(folder);
    if (row) return row;
    // Seconds since the epoch, as Dovecot does, but strictly increasing within this file:
    // a folder re-created in the same second must not get its old UIDVALIDITY back.
    const last = this.stmts.lastValidity.get()?.value ?? 0;
    const validity = Math.min(Math.max(Math.floor(Date.now() / 1000), last + 1), 0xffffffff);
    this.stmts.setLastValidity.run(validity);
    this.stmts.insertFolder.run(folder, validity);
    return { uidvalidity: validity, uidnext: 1, first_recent: 1 };
  }

  private insert(folder: string, uid: number, m: NewMessage): void {
    this.stmts.insert.run(folder, uid, m.name, m.dir, m.file, m.flags, m.size, m.vsize, Math.round(m.internalDate), m.keywords ?? '');
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw new StoreError(`${this.file}: cannot ${what}: ${(err as Error).message}`, { cause: err });
    }
  }
}
