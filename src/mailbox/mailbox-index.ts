/**
 * @module mailbox/mailbox-index
 * SUMMARY: the per-user index of a Maildir that POP3 and IMAP build on: for each folder its
 * UIDVALIDITY and UIDNEXT, and for each message its UID, file name, size, CRLF size,
 * internal date and Maildir flags. Exports MailboxIndex (open, status, add, messages, sync,
 * reset, folders, close) and the record types. One SQLite file per user (better-sqlite3,
 * WAL), next to the Maildir, so the CLI, the gateway and a second gateway process can share
 * it. The Maildir stays the truth: the index only remembers what the files cannot (UIDs),
 * and mailbox/maildir.ts re-syncs it from the directories (files dropped in by other tools
 * get UIDs, vanished files are removed). This module does no file-system work of its own.
 * DIAGNOSTICS: StoreError (with cause) when SQLite fails; nothing is logged here.
 * SEE ALSO: RFC 3501 section 2.3.1.1 (UIDs, UIDVALIDITY); Dovecot dovecot-uidlist.
 */
import Database from 'better-sqlite3';
import { StoreError } from '../errors.js';

/** The index file, in the user's Maildir root (DATA_DIRECTORY/mail/USER/). */
export const INDEX_FILE = 'greygate-index.sqlite';

const SCHEMA_VERSION = 1;

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
}

export interface FolderStatus {
  readonly folder: string;
  readonly uidValidity: number;
  readonly uidNext: number;
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
    readonly deleteFolder: Database.Statement<[string]>;
    readonly deleteFolderMessages: Database.Statement<[string]>;
    readonly folderNames: Database.Statement<[], { name: string }>;
    readonly lastValidity: Database.Statement<[], { value: number }>;
    readonly setLastValidity: Database.Statement<[number]>;
    readonly count: Database.Statement<[string], { n: number }>;
    readonly byName: Database.Statement<[string, string], MessageRow>;
    readonly list: Database.Statement<[string], MessageRow>;
    readonly insert: Database.Statement<[string, number, string, string, string, string, number, number, number]>;
    readonly relocate: Database.Statement<[string, string, string, string, number]>;
    readonly remove: Database.Statement<[string, number]>;
  };

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
    this.stmts = {
      folder: db.prepare('SELECT uidvalidity, uidnext FROM folders WHERE name = ?'),
      insertFolder: db.prepare('INSERT INTO folders (name, uidvalidity, uidnext) VALUES (?, ?, 1)'),
      setUidNext: db.prepare('UPDATE folders SET uidnext = ? WHERE name = ?'),
      deleteFolder: db.prepare('DELETE FROM folders WHERE name = ?'),
      deleteFolderMessages: db.prepare('DELETE FROM messages WHERE folder = ?'),
      folderNames: db.prepare('SELECT name FROM folders ORDER BY name'),
      lastValidity: db.prepare("SELECT value FROM meta WHERE key = 'last_uidvalidity'"),
      setLastValidity: db.prepare("INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
      count: db.prepare('SELECT count(*) AS n FROM messages WHERE folder = ?'),
      byName: db.prepare('SELECT * FROM messages WHERE folder = ? AND name = ?'),
      list: db.prepare('SELECT * FROM messages WHERE folder = ? ORDER BY uid'),
      insert: db.prepare(
        'INSERT INTO messages (folder, uid, name, dir, file, flags, size, vsize, internal_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      relocate: db.prepare('UPDATE messages SET dir = ?, file = ?, flags = ? WHERE folder = ? AND uid = ?'),
      remove: db.prepare('DELETE FROM messages WHERE folder = ? AND uid = ?'),
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
      db.exec(
        'CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;' +
          'CREATE TABLE IF NOT EXISTS folders (name TEXT PRIMARY KEY NOT NULL, uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL) WITHOUT ROWID;' +
          'CREATE TABLE IF NOT EXISTS messages (' +
          'folder TEXT NOT NULL, uid INTEGER NOT NULL, name TEXT NOT NULL, dir TEXT NOT NULL, file TEXT NOT NULL, flags TEXT NOT NULL, ' +
          'size INTEGER NOT NULL, vsize INTEGER NOT NULL, internal_date INTEGER NOT NULL, ' +
          'PRIMARY KEY (folder, uid), UNIQUE (folder, name)) WITHOUT ROWID;' +
          `PRAGMA user_version = ${SCHEMA_VERSION};`,
      );
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
      return { folder, uidValidity: f.uidvalidity, uidNext: f.uidnext, messages: this.stmts.count.get(folder)?.n ?? 0 };
    });
  }

  /**
   * Give the delivered FILE in FOLDER the next UID and return it. A name the index already
   * has (a sync got there first) keeps its UID, which is returned.
   */
  add(folder: string, file: MessageFile): number {
    return this.run('add message', () =>
      this.db
        .transaction(() => {
          const f = this.ensureFolder(folder);
          const known = this.stmts.byName.get(folder, file.name);
          if (known) return known.uid;
          this.insert(folder, f.uidnext, file);
          this.stmts.setUidNext.run(f.uidnext + 1, folder);
          return f.uidnext;
        })
        .immediate(),
    );
  }

  /** The indexed messages of FOLDER in UID order. */
  messages(folder: string): IndexedMessage[] {
    return this.run('list messages', () => this.stmts.list.all(folder).map(toMessage));
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
    return { uidvalidity: validity, uidnext: 1 };
  }

  private insert(folder: string, uid: number, m: MessageFile): void {
    this.stmts.insert.run(folder, uid, m.name, m.dir, m.file, m.flags, m.size, m.vsize, Math.round(m.internalDate));
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw new StoreError(`${this.file}: cannot ${what}: ${(err as Error).message}`, { cause: err });
    }
  }
}
