/**
 * @module mailbox/users
 * SUMMARY: the mailbox users that SMTP AUTH, POP3, IMAP and local delivery share (Dovecot's
 * passdb/userdb). Exports UserStore: open(dataDir), add, delete, setPassword, list, exists
 * (sync, cached, sees other processes' changes) and verify (async scrypt, constant time).
 * Stored in DATA_DIRECTORY/users.db (better-sqlite3, WAL) rather than a passwd-file: the CLI
 * and a running gateway write and read it concurrently with transactional safety, and
 * `PRAGMA data_version` tells the gateway cheaply that another process changed it.
 * DIAGNOSTICS: UserError (one line) for a bad name, an empty password, a duplicate or
 * unknown user; StoreError (with cause) when SQLite fails. Nothing is logged here.
 * SEE ALSO: Dovecot passwd-file and password schemes; RFC 7914 (scrypt); RFC 8265 section 4.
 */
import { scrypt as scryptCallback, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, UserError } from '../errors.js';

/** The file under data_directory. */
export const USERS_DB = 'users.db';

/**
 * A user name is the localpart that local delivery receives mail for and the directory
 * name under data/mail/. Starting with a letter or digit rules out ".", "..", dot-files and
 * names that a shell tool would read as an option; 64 is RFC 5321's localpart limit.
 */
const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** RFC 7914 / OWASP interactive-login parameters: about 50 ms and 16 MiB per hash. */
const SCRYPT_DEFAULT: ScryptParams = { N: 16384, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Parameters read back from the database are bounded, so a tampered row cannot exhaust memory. */
const SCRYPT_MAX_MEM = 256 * 1024 * 1024;

function scrypt(password: string, salt: Buffer, keylen: number, params: ScryptParams): Promise<Buffer> {
  // Node's default maxmem (32 MiB) is below 128*N*r for stronger parameters.
  const maxmem = 256 * params.N * params.r + 1024 * 1024;
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, keylen, { N: params.N, r: params.r, p: params.p, maxmem }, (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

/**
 * RFC 8265 (OpaqueString) normalises passwords to NFC, so a password typed on systems that
 * compose accents differently still matches.
 */
function preparePassword(password: string): string {
  return password.normalize('NFC');
}

function b64(buf: Buffer): string {
  return buf.toString('base64').replace(/=+$/, '');
}

/** Hash PASSWORD as `$scrypt$N=16384,r=8,p=1$SALT$HASH` (unpadded base64). */
export async function hashPassword(password: string, params: ScryptParams = SCRYPT_DEFAULT): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await scrypt(preparePassword(password), salt, HASH_BYTES, params);
  return `$scrypt$N=${params.N},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

interface ParsedHash {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

function parseHash(stored: string): ParsedHash | null {
  const m = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(stored);
  if (!m) return null;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N < 2 || (N & (N - 1)) !== 0 || r < 1 || p < 1 || p > 16 || 128 * N * r > SCRYPT_MAX_MEM) return null;
  const salt = Buffer.from(m[4] ?? '', 'base64');
  const hash = Buffer.from(m[5] ?? '', 'base64');
  if (salt.length < 8 || hash.length < 16 || hash.length > 128) return null;
  return { params: { N, r, p }, salt, hash };
}

/**
 * The canonical form of NAME (lowercase, as Postfix folds localparts for table lookups), or
 * null when it is not an acceptable user name.
 */
export function normalizeUserName(name: string): string | null {
  const lower = name.toLowerCase();
  return USER_NAME.test(lower) ? lower : null;
}

function requireName(name: string): string {
  const n = normalizeUserName(name);
  if (n === null) {
    throw new UserError(
      `invalid user name ${JSON.stringify(name)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return n;
}

function requirePassword(password: string): void {
  if (password.length === 0) throw new UserError('empty password refused');
  // A newline or NUL could never be typed through SASL PLAIN, POP3 PASS or IMAP LOGIN.
  if (/[\0\r\n]/.test(password)) throw new UserError('password must not contain NUL, CR or LF');
}

function isConstraintError(err: unknown): boolean {
  return typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('SQLITE_CONSTRAINT');
}

export class UserStore {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly stmts: {
    readonly insert: Database.Statement<[string, string, number, number]>;
    readonly update: Database.Statement<[string, number, string]>;
    readonly remove: Database.Statement<[string]>;
    readonly hashOf: Database.Statement<[string], { password: string }>;
    readonly names: Database.Statement<[], { name: string }>;
    readonly dataVersion: Database.Statement<[], number>;
  };
  /** Names as of `cachedVersion`; undefined when this connection changed the table itself. */
  private cache: Set<string> | undefined;
  private cachedVersion = -1;

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
    this.stmts = {
      insert: db.prepare('INSERT INTO users (name, password, created, updated) VALUES (?, ?, ?, ?)'),
      update: db.prepare('UPDATE users SET password = ?, updated = ? WHERE name = ?'),
      remove: db.prepare('DELETE FROM users WHERE name = ?'),
      hashOf: db.prepare('SELECT password FROM users WHERE name = ?'),
      names: db.prepare('SELECT name FROM users ORDER BY name'),
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    };
  }

  /** Open (creating if needed) DATA_DIR/users.db. */
  static open(dataDir: string): UserStore {
    const file = join(dataDir, USERS_DB);
    let db: Database.Database | undefined;
    try {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      // The file holds password hashes: create it private; SQLite gives -wal/-shm the same mode.
      closeSync(openSync(file, 'a', 0o600));
      db = new Database(file);
      // `greygate user add` writes while the gateway reads; wait instead of failing at once.
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      // A user added or a password changed must survive a crash once the command returned.
      db.pragma('synchronous = FULL');
      db.exec(
        'CREATE TABLE IF NOT EXISTS users (' +
          'name TEXT PRIMARY KEY NOT NULL, password TEXT NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL' +
          ') WITHOUT ROWID',
      );
      return new UserStore(file, db);
    } catch (err) {
      db?.close();
      throw new StoreError(`cannot open user database ${file}: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Create user NAME. Throws UserError if it exists or NAME/PASSWORD is unacceptable. */
  async add(name: string, password: string): Promise<void> {
    const user = requireName(name);
    requirePassword(password);
    // Checked before hashing only to answer fast; the primary key settles a race with another process.
    if (this.lookupHash(user) !== undefined) throw new UserError(`user ${user} already exists`);
    const hash = await hashPassword(password);
    try {
      const now = Date.now();
      this.stmts.insert.run(user, hash, now, now);
    } catch (err) {
      if (isConstraintError(err)) throw new UserError(`user ${user} already exists`);
      throw this.storeError('add user', err);
    }
    this.cache = undefined;
  }

  /** Remove user NAME (the mailbox under data/mail/ is left alone, as userdel without -r). */
  delete(name: string): void {
    const user = requireName(name);
    let changes: number;
    try {
      changes = this.stmts.remove.run(user).changes;
    } catch (err) {
      throw this.storeError('delete user', err);
    }
    if (changes === 0) throw new UserError(`no such user: ${user}`);
    this.cache = undefined;
  }

  async setPassword(name: string, password: string): Promise<void> {
    const user = requireName(name);
    requirePassword(password);
    if (this.lookupHash(user) === undefined) throw new UserError(`no such user: ${user}`);
    const hash = await hashPassword(password);
    let changes: number;
    try {
      changes = this.stmts.update.run(hash, Date.now(), user).changes;
    } catch (err) {
      throw this.storeError('change password', err);
    }
    if (changes === 0) throw new UserError(`no such user: ${user}`);
  }

  /** Every user name, sorted. */
  list(): string[] {
    try {
      return this.stmts.names.all().map((row) => row.name);
    } catch (err) {
      throw this.storeError('list users', err);
    }
  }

  /**
   * Whether NAME is a user (case-insensitive; an invalid name is simply not one). Cheap
   * enough for every RCPT: the names are cached and reloaded only when `PRAGMA data_version`
   * says another connection (the CLI, another gateway process) committed a change.
   * Throws StoreError if SQLite fails; the caller must answer 4xx, never "User unknown".
   */
  exists(name: string): boolean {
    const user = normalizeUserName(name);
    if (user === null) return false;
    return this.names().has(user);
  }

  /**
   * Whether PASSWORD is NAME's. An unknown or invalid name, or an unreadable stored hash,
   * costs one scrypt like a real check, so timing does not reveal which names exist.
   * Throws StoreError if SQLite fails (answer "454 4.7.0 Temporary authentication failure").
   */
  async verify(name: string, password: string): Promise<boolean> {
    const user = normalizeUserName(name);
    const stored = user === null ? undefined : this.lookupHash(user);
    const parsed = stored === undefined ? null : parseHash(stored);
    if (parsed === null) {
      await scrypt(preparePassword(password), randomBytes(SALT_BYTES), HASH_BYTES, SCRYPT_DEFAULT);
      return false;
    }
    const candidate = await scrypt(preparePassword(password), parsed.salt, parsed.hash.length, parsed.params);
    return timingSafeEqual(candidate, parsed.hash);
  }

  private lookupHash(user: string): string | undefined {
    try {
      return this.stmts.hashOf.get(user)?.password;
    } catch (err) {
      throw this.storeError('read user', err);
    }
  }

  private names(): Set<string> {
    try {
      const version = this.stmts.dataVersion.get() ?? 0;
      if (this.cache === undefined || version !== this.cachedVersion) {
        this.cache = new Set(this.stmts.names.all().map((row) => row.name));
        this.cachedVersion = version;
      }
      return this.cache;
    } catch (err) {
      throw this.storeError('read users', err);
    }
  }

  private storeError(what: string, err: unknown): StoreError {
    return new StoreError(`${this.file}: cannot ${what}: ${(err as Error).message}`, { cause: err });
  }
}
