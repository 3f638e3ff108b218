/**
 * @module imap/commands/mailbox-name
 * SUMMARY: the mailbox-name argument of SELECT, CREATE, LIST, APPEND, COPY ...: an astring
 * (atom, quoted or literal; NIL is the name "NIL"), with INBOX in any case folded to
 * "INBOX" (RFC 3501 5.1). Names are otherwise passed to the store as sent: modified UTF-7
 * stays encoded, as Dovecot's Maildir++ layout keeps it on disk.
 * SEE ALSO: RFC 3501 sections 5.1, 5.1.3, 9 (mailbox).
 */
import { nodeText, type ImapNode } from '../parser.js';

/** The mailbox name NODE gives, or undefined when it is not a string (a list). */
export function mailboxArg(node: ImapNode | undefined): string | undefined {
  const text = nodeText(node);
  if (text === undefined) return undefined;
  const name = text ?? 'NIL';
  return name.toUpperCase() === 'INBOX' ? 'INBOX' : name;
}
