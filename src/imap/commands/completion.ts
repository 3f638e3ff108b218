/**
 * @module imap/commands/completion
 * SUMMARY: builders of the tagged replies (Completion) that command handlers return, and
 * the argument-count bound for commands without a maximum. Kept apart from command-table
 * so that the command modules it imports never need a value from it at load time.
 * SEE ALSO: RFC 3501 section 7.1 (status responses); imap/command-table.
 */
import type { ImapCommand } from '../parser.js';
import type { ResponseCode } from '../compiler.js';
import type { Completion } from '../command-table.js';

/** For CommandSpec.args: no upper bound. */
export const ANY_ARGS = Number.MAX_SAFE_INTEGER;

export function ok(text: string, code?: ResponseCode): Completion {
  return code ? { status: 'OK', text, code } : { status: 'OK', text };
}

export function no(text: string, code?: ResponseCode): Completion {
  return code ? { status: 'NO', text, code } : { status: 'NO', text };
}

export function bad(text: string, code?: ResponseCode): Completion {
  return code ? { status: 'BAD', text, code } : { status: 'BAD', text };
}

/** Dovecot's BAD for arguments a command cannot use. */
export function badArgs(command: ImapCommand, why = 'Invalid arguments.'): Completion {
  return bad(`Error in IMAP command ${command.command}: ${why}`);
}

/** Dovecot's reply to a store failure (the error itself goes to the log). */
export const SERVER_BUG: Completion = {
  status: 'NO',
  text: 'Internal error occurred. Refer to server log for more information.',
  code: { name: 'SERVERBUG' },
};
