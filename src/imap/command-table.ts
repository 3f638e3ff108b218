/**
 * @module imap/command-table
 * SUMMARY: every IMAP command greygate knows, as one Map name -> {states, args, handler},
 * and the single place where a command is checked against the session state and its
 * argument count before its handler runs (WildDuck imap-command.js). Exports COMMANDS,
 * checkCommand() and the types handlers are written against: ImapSession (what a handler
 * may do to its connection), Completion (the tagged reply a handler returns) and
 * CommandSpec.
 * DIAGNOSTICS: an unknown command, a command in the wrong state or with the wrong number of
 * arguments is answered BAD with Dovecot's texts; nothing is logged here.
 * SEE ALSO: RFC 3501 sections 3 (states), 6 (commands), 7.4.1 (when EXPUNGE may be sent).
 */
import type { Config } from '../config/config.js';
import type { MailLogger } from '../log/logger.js';
import type { MailStore, UserMailbox, FolderSnapshot } from '../mailbox/mail-store.js';
import type { EnvelopeCache } from './envelope-cache.js';
import type { LoginOutcome } from '../mailbox/login-guard.js';
import type { ImapCommand } from './parser.js';
import type { ResponseCode } from './compiler.js';
import type { MailboxView } from './connection.js';
import { AUTH_COMMANDS } from './commands/auth.js';
import { MAILBOX_COMMANDS } from './commands/mailbox.js';
import { SELECT_COMMANDS } from './commands/select.js';
import { MESSAGE_COMMANDS } from './commands/message.js';
import { SEARCH_COMMANDS } from './commands/search.js';

/** RFC 3501 section 3. */
export type ImapState = 'not-authenticated' | 'authenticated' | 'selected' | 'logout';

/** The tagged reply of a command. */
export interface Completion {
  readonly status: 'OK' | 'NO' | 'BAD';
  readonly text: string;
  readonly code?: ResponseCode;
  /** Close the connection once the reply is written (LOGOUT). */
  readonly close?: boolean;
}

/** A handler that wrote its own tagged reply (STARTTLS must, before the handshake) returns 'answered'. */
export type CommandResult = Completion | 'answered';

/** Users as IMAP needs them (mailbox/users UserStore satisfies it). */
export interface ImapUsers {
  verify(name: string, password: string): Promise<boolean>;
}

/** The login guard as IMAP uses it (mailbox/login-guard LoginGuard satisfies it). */
export interface ImapLoginGuard {
  login(user: string, password: string, clientIp: string): Promise<LoginOutcome>;
}

/** What every connection of one listener shares. */
export interface ImapContext {
  readonly mailboxes: MailStore;
  /** Check a password: through the login guard (delays, rate limits) when there is one. */
  readonly checkLogin: ImapLoginGuard['login'];
  readonly log: MailLogger;
  readonly config: Config;
  /** Whether plaintext LOGIN/AUTHENTICATE PLAIN are allowed from IP without TLS. */
  plaintextAllowed(ip: string, secure: boolean): boolean;
  /** 'imap' or 'imaps', for the log. */
  readonly service: string;
  /** ENVELOPEs already compiled, shared by the listener's sessions. */
  readonly envelopes: EnvelopeCache;
}

/** What a command handler may see and do. The connection implements it. */
export interface ImapSession {
  readonly id: string;
  readonly ctx: ImapContext;
  readonly clientIp: string;
  readonly state: ImapState;
  /** TLS is on (implicit, or after STARTTLS). */
  readonly secure: boolean;
  /** The logged-in user, null before. */
  readonly user: string | null;
  /** The logged-in user's mailbox (throws before login: a handler bug). */
  readonly mailbox: UserMailbox;
  /** The selected mailbox (throws when none: a handler bug; the state check prevents it). */
  readonly view: MailboxView;
  readonly selected: MailboxView | null;
  /** The capability list for the current state. */
  capabilities(): string[];
  /** Queue bytes for the client (an untagged response, a continuation). */
  write(data: Buffer): void;
  /** Resolves once the socket has room again (call between large FETCH responses). */
  drained(): Promise<void>;
  /** Read one raw line from the client (AUTHENTICATE, IDLE); null when the connection closed. */
  readLine(): Promise<Buffer | null>;
  /** Upgrade to TLS after writing DATA (STARTTLS's tagged OK); false if the upgrade was refused. */
  startTls(reply: Buffer): boolean;
  /** Bytes the client sent after the current command that are not yet framed. */
  readonly pendingInput: number;
  /** Enter the authenticated state as USER. */
  login(user: string): void;
  /** Select SNAPSHOT (already opened by the handler); replaces any selected mailbox. */
  select(snapshot: FolderSnapshot, readOnly: boolean): MailboxView;
  /** Back to the authenticated state. */
  unselect(): void;
  /**
   * Bring the selected view up to date: with DISK, reopen the folder (NOOP, CHECK, IDLE);
   * else only when a change event said it changed. Updates are sent at the end of the command.
   */
  refresh(disk: boolean): Promise<void>;
  /** Send pending EXISTS/EXPUNGE/FETCH updates now (IDLE). */
  flushUpdates(allowExpunge: boolean): void;
  /** Resolves when the next change event for the selected folder arrives (IDLE waits on it). */
  changed(): Promise<void>;
  /** IDLE's keepalive and disk-poll intervals. */
  readonly idleTimings: { readonly notifyMs: number; readonly pollMs: number };
  readonly isClosed: boolean;
  /** The change origin to pass to the store, so that this session's own changes are told apart. */
  readonly origin: object;
}

export type CommandHandler = (session: ImapSession, command: ImapCommand) => Promise<CommandResult>;

export interface CommandSpec {
  readonly states: readonly ImapState[];
  /** Minimum and maximum argument count (the parser's top-level nodes). */
  readonly args: readonly [min: number, max: number];
  /**
   * RFC 3501 7.4.1: no untagged EXPUNGE while answering FETCH, STORE or SEARCH, since the
   * client is using the sequence numbers they would shift. Default true.
   */
  readonly expungeAfter?: boolean;
  readonly handler: CommandHandler;
}

export const COMMANDS: ReadonlyMap<string, CommandSpec> = new Map<string, CommandSpec>([
  ...AUTH_COMMANDS,
  ...MAILBOX_COMMANDS,
  ...SELECT_COMMANDS,
  ...MESSAGE_COMMANDS,
  ...SEARCH_COMMANDS,
]);

/** Either the spec to run, or the BAD to answer. */
export type CheckResult = { readonly kind: 'run'; readonly spec: CommandSpec } | { readonly kind: 'refuse'; readonly completion: Completion };

/** The central state and arity check, with Dovecot's reply texts. */
export function checkCommand(command: ImapCommand, state: ImapState): CheckResult {
  const spec = COMMANDS.get(command.command);
  // Before login Dovecot's imap-login knows only the pre-login commands: anything else is
  // simply not a command there, so a client cannot probe what exists.
  if (!spec || (state === 'not-authenticated' && !spec.states.includes(state))) {
    return refuse('Error in IMAP command received by server.');
  }
  if (!spec.states.includes(state)) {
    if (state === 'authenticated' && spec.states.includes('selected')) return refuse('No mailbox selected.');
    return refuse(`Error in IMAP command ${command.command}: Command not permitted in this state.`);
  }
  const n = command.args.length;
  if (n < spec.args[0] || n > spec.args[1]) return refuse(`Error in IMAP command ${command.command}: Invalid arguments.`);
  return { kind: 'run', spec };
}

function refuse(text: string): CheckResult {
  return { kind: 'refuse', completion: { status: 'BAD', text } };
}
