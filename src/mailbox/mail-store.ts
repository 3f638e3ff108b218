/**
 * @module mailbox/mail-store
 * SUMMARY: the mailbox API that POP3 and IMAP are written against (storage injected, as
 * WildDuck's imap-core does): MailStore (one per process: user -> UserMailbox, change
 * notification, the POP3 lock) and UserMailbox (one user's folders and messages). Only
 * types and the flag constants live here; mailbox/maildir.ts implements them over
 * Maildir++ (MaildirStore implements MailStore, Maildir implements UserMailbox).
 * Expected outcomes (no such folder, name taken, ...) are returned as `{ kind }` unions;
 * a UID that no longer exists is silently skipped, as RFC 3501 UID commands do.
 * DIAGNOSTICS: every method may throw StoreError (failed I/O, SQLite): the caller answers
 * `NO [SERVERBUG]`/`-ERR` and logs it; nothing here is a user mistake.
 * SEE ALSO: RFC 3501 (2.3.1 UIDs, 2.3.2 flags, 6.3 mailbox commands, 7.4.1 EXPUNGE),
 * RFC 4315 (UIDPLUS), RFC 6851 (MOVE), RFC 1939; Dovecot Maildir++ layout.
 */

/**
 * Hierarchy separator of folder names: "." as in Dovecot's Maildir++ default layout, where
 * folder "a.b" is the directory `.a.b` in the Maildir root (so a level cannot contain ".").
 * INBOX is the root itself and is matched case-insensitively; every other name is kept
 * exactly as given (IMAP's modified UTF-7 is passed through untouched).
 */
export const HIERARCHY_SEPARATOR = '.';

/** The five RFC 3501 flags a client may set, with their Maildir info letters. */
export const SYSTEM_FLAGS = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'] as const;
export type SystemFlag = (typeof SYSTEM_FLAGS)[number];

/**
 * IMAP flag <-> Maildir info letter (the `:2,LETTERS` file-name suffix). D F R S T as
 * Dovecot, mutt and Courier use them; P ("passed", set by mutt when bouncing/forwarding)
 * is exposed as the $Forwarded keyword (RFC 5788). Every other keyword is kept in the index.
 */
export const FLAG_LETTERS: Readonly<Record<string, string>> = {
  '\\Draft': 'D',
  '\\Flagged': 'F',
  $Forwarded: 'P',
  '\\Answered': 'R',
  '\\Seen': 'S',
  '\\Deleted': 'T',
};

/** What readMany() returns of each message: all of it, or the header and the blank line. */
export type ReadPart = 'all' | 'header';

/** How setFlags() combines the given flags with the current ones (STORE +FLAGS, -FLAGS, FLAGS). */
export type FlagMode = 'add' | 'remove' | 'replace';

/** One message of a folder snapshot. Sequence number = position in `messages` + 1. */
export interface MessageInfo {
  readonly uid: number;
  /**
   * Every IMAP flag of the message, ready for FETCH FLAGS: system flags (\Seen, ...), then
   * keywords ($Forwarded, $Junk, user atoms). Never \Recent: see `recent`.
   */
  readonly flags: readonly string[];
  /** RFC822.SIZE / POP3 LIST: the size with CRLF line ends (what read() returns). */
  readonly size: number;
  /** INTERNALDATE, ms since the epoch (the file's mtime, as Dovecot). */
  readonly internalDate: number;
  /** \Recent for the session that opened the snapshot (see OpenOptions.claimRecent). */
  readonly recent: boolean;
}

/**
 * What SELECT/EXAMINE and POP3's login need; `open()` syncs the folder with disk first.
 * A store may hand the same `messages` array (and MessageInfo objects) to every open() of
 * an unchanged folder: callers must treat them as immutable.
 */
export interface FolderSnapshot {
  readonly folder: string;
  readonly uidValidity: number;
  readonly uidNext: number;
  /** Ascending UIDs. */
  readonly messages: readonly MessageInfo[];
  /** Keywords in use in the folder (for the FLAGS and PERMANENTFLAGS responses). */
  readonly keywords: readonly string[];
  /** The sequence number of the first message without \\Seen (0: none), when the store knows it. */
  readonly firstUnseen?: number;
}

export interface OpenOptions {
  /**
   * SELECT (not EXAMINE): this session takes the \Recent messages, i.e. those that arrived
   * since the last claiming open; no later session sees them as recent (RFC 3501 2.3.2).
   * Like Dovecot, a claiming open also moves the files from new/ to cur/. Default false.
   */
  readonly claimRecent?: boolean;
}

/** STATUS (RFC 3501 6.3.10). */
export interface FolderStatusInfo {
  readonly folder: string;
  readonly messages: number;
  readonly recent: number;
  readonly unseen: number;
  readonly uidNext: number;
  readonly uidValidity: number;
}

/** A folder name that can never exist (empty level, "/", control characters, > 255). */
export interface InvalidName {
  readonly kind: 'invalid-name';
  readonly folder: string;
}
/** The folder does not exist (IMAP: NO [NONEXISTENT], or [TRYCREATE] for APPEND/COPY/MOVE). */
export interface Nonexistent {
  readonly kind: 'nonexistent';
  readonly folder: string;
}
export interface FolderExists {
  readonly kind: 'exists';
  readonly folder: string;
}

export type CreateResult = { readonly kind: 'ok'; readonly folder: string } | FolderExists | InvalidName;
/**
 * 'inbox': INBOX cannot be deleted. 'has-children': for a store that must refuse to delete
 * a folder with children (RFC 3501 6.3.4); the Maildir++ store never returns it: its folders
 * are flat directories, so "a" is deleted and "a.b" stays (LIST then shows "a" as a
 * \Noselect parent, as Dovecot's Maildir++ layout does).
 */
export type DeleteResult =
  | { readonly kind: 'ok'; readonly folder: string }
  | { readonly kind: 'inbox'; readonly folder: string }
  | { readonly kind: 'has-children'; readonly folder: string }
  | Nonexistent
  | InvalidName;
/**
 * Renaming moves the children too ("a" -> "b" renames "a.x" to "b.x") and keeps
 * UIDVALIDITY and UIDs. Renaming INBOX moves its messages to a new folder and leaves INBOX
 * empty (RFC 3501 6.3.5). 'exists' names the target (or a child's target) that is taken.
 */
export type RenameResult = { readonly kind: 'ok'; readonly from: string; readonly to: string } | Nonexistent | FolderExists | InvalidName;

export type OpenResult = ({ readonly kind: 'ok' } & FolderSnapshot) | Nonexistent | InvalidName;
export type StatusResult = ({ readonly kind: 'ok' } & FolderStatusInfo) | Nonexistent | InvalidName;

export interface AppendOptions {
  /** IMAP flags to store with it (\Recent and unknown \System flags are ignored). */
  readonly flags?: readonly string[];
  /** INTERNALDATE in ms; default now. */
  readonly internalDate?: number;
}
/** APPENDUID (RFC 4315). */
export type AppendResult = { readonly kind: 'ok'; readonly uidValidity: number; readonly uid: number } | Nonexistent | InvalidName;

/**
 * COPYUID (RFC 4315): `pairs` are [source UID, new UID] in ascending source order, for the
 * UIDs that existed; UIDs that did not are skipped (an empty `pairs` is still 'ok').
 */
export type CopyResult =
  | { readonly kind: 'ok'; readonly uidValidity: number; readonly pairs: ReadonlyArray<readonly [number, number]> }
  | Nonexistent
  | InvalidName;

/** A message's flags after setFlags(). */
export interface FlagUpdate {
  readonly uid: number;
  readonly flags: readonly string[];
}

/**
 * Who made a change, as passed to a mutating method: the store hands it back to the
 * listeners unchanged, so that a session can tell its own changes from others' (e.g. pass
 * the session object). Never looked into.
 */
export type ChangeOrigin = unknown;

/**
 * A change to one folder, for IDLE and for other sessions on the same folder.
 * 'exists': new messages (delivery, APPEND, COPY/MOVE into it); 'expunge': messages gone
 * (EXPUNGE, MOVE out, POP3 DELE+QUIT); 'flags': flags changed; 'folder': the folder was
 * created, deleted or renamed (`to` for a rename).
 */
export type MailboxChange =
  | { readonly kind: 'exists'; readonly uids: readonly number[] }
  | { readonly kind: 'expunge'; readonly uids: readonly number[] }
  | { readonly kind: 'flags'; readonly updates: readonly FlagUpdate[] }
  | { readonly kind: 'folder'; readonly action: 'create' | 'delete' | 'rename'; readonly to?: string };

/** Called synchronously after the change is on disk and in the index; must not throw. */
export type ChangeListener = (user: string, folder: string, change: MailboxChange, origin: ChangeOrigin) => void;

/**
 * One user's mailbox. Folder names: see HIERARCHY_SEPARATOR. Messages go in and come out
 * in SMTP form (CRLF line ends); on disk they are LF files, as every Maildir reader expects.
 */
export interface UserMailbox {
  /** INBOX first, then every Maildir++ folder, sorted. A parent level need not exist ("a.b" without "a"). */
  folders(): Promise<string[]>;
  createFolder(name: string, origin?: ChangeOrigin): Promise<CreateResult>;
  deleteFolder(name: string, origin?: ChangeOrigin): Promise<DeleteResult>;
  renameFolder(from: string, to: string, origin?: ChangeOrigin): Promise<RenameResult>;
  /** The subscribed names (the Maildir++ `subscriptions` file, as Dovecot and Courier keep it). */
  subscriptions(): Promise<string[]>;
  /** Subscribe (ON true) or unsubscribe NAME; the folder need not exist (RFC 3501 6.3.6). */
  subscribe(name: string, on: boolean): Promise<void>;

  /** Sync FOLDER with the disk and describe it. Call again to refresh (NOOP, IDLE, after a change event). */
  open(folder: string, options?: OpenOptions): Promise<OpenResult>;
  status(folder: string): Promise<StatusResult>;
  /**
   * The message as delivered, with CRLF line ends (byte-exact with the SMTP DATA plus the
   * prepended Return-Path/Delivered-To), or null when UID is not (or no longer) in FOLDER.
   */
  read(folder: string, uid: number): Promise<Buffer | null>;
  /**
   * read() for UIDS at once, in the same order: what IMAP FETCH uses. With PART 'header' a
   * store may return only a prefix of read()'s buffer that holds the whole header and the
   * blank line after it (or the whole message): enough for ENVELOPE at a fraction of the I/O. The caller keeps UIDS small (tens): a store may do the I/O synchronously, so a
   * large batch would hold up every other session.
   */
  readMany(folder: string, uids: readonly number[], part?: ReadPart): Promise<Array<Buffer | null>>;

  /**
   * Change the flags of UIDS (missing ones skipped); returns the new flags of each message
   * that exists, changed or not (STORE answers with them). System flags go to the file
   * name, keywords to the index; a message in new/ moves to cur/.
   */
  setFlags(folder: string, uids: readonly number[], flags: readonly string[], mode: FlagMode, origin?: ChangeOrigin): Promise<FlagUpdate[]>;
  /**
   * Remove the messages flagged \Deleted (only those among UIDS when given: UID EXPUNGE);
   * returns the UIDs removed, ascending.
   */
  expunge(folder: string, uids?: readonly number[], origin?: ChangeOrigin): Promise<number[]>;
  append(folder: string, message: Uint8Array, options?: AppendOptions, origin?: ChangeOrigin): Promise<AppendResult>;
  /** Copy UIDS of FROM into TO (flags and keywords kept; the copies are \Recent). */
  copy(from: string, uids: readonly number[], to: string, origin?: ChangeOrigin): Promise<CopyResult>;
  /** As copy(), then the sources are expunged (whatever their flags): RFC 6851. */
  move(from: string, uids: readonly number[], to: string, origin?: ChangeOrigin): Promise<CopyResult>;
}

/** The process-wide store (the gateway holds one for local delivery, POP3 and IMAP). */
export interface MailStore {
  /** USER's mailbox (case-folded); throws UserError for a name that cannot be a user. */
  mailbox(user: string): UserMailbox;
  /** Listen to every change made through this store; returns the function that stops listening. */
  onChange(listener: ChangeListener): () => void;
  /**
   * Take USER's POP3 lock: the release function, or null when another POP3 session of
   * this process holds it (Dovecot answers `-ERR [IN-USE] ...`). Release is idempotent.
   */
  lockPop3(user: string): (() => void) | null;
}
