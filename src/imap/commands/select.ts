/**
 * @module imap/commands/select
 * SUMMARY: entering and leaving the selected state, and waiting in it: SELECT, EXAMINE,
 * CLOSE (expunges silently), UNSELECT (RFC 3691), CHECK and IDLE (RFC 2177: updates are
 * sent as they happen, "* OK Still here" every imap_idle_notify_interval, the disk looked
 * at every idlePollMs for other processes' changes). Exports SELECT_COMMANDS.
 * DIAGNOSTICS: the replies are Dovecot's ("NO [NONEXISTENT] Mailbox doesn't exist: X");
 * CLOSE's expunge is logged (info) when it removed something.
 * SEE ALSO: RFC 3501 6.3.1, 6.3.2, 6.4.1, 6.4.2; RFC 2177; RFC 3691; RFC 7162 3.2.11 ([CLOSED]).
 */
import { atom, compileContinuation, compileStatus, compileUntagged, flagList } from '../compiler.js';
import type { ImapCommand } from '../parser.js';
import type { CommandSpec, Completion, ImapSession } from '../command-table.js';
import { bad, badArgs, no, ok } from './completion.js';
import { mailboxArg } from './mailbox-name.js';

async function select(s: ImapSession, cmd: ImapCommand, readOnly: boolean): Promise<Completion> {
  const name = mailboxArg(cmd.args[0]);
  if (name === undefined) return badArgs(cmd);
  if (s.selected) {
    // RFC 3501 6.3.1: a SELECT closes the previous mailbox first, even when it then fails.
    s.unselect();
    s.write(compileStatus('OK', 'Previous mailbox closed.', { name: 'CLOSED' }));
  }
  const res = await s.mailbox.open(name, { claimRecent: !readOnly });
  if (res.kind === 'nonexistent') return no(`Mailbox doesn't exist: ${name}`, { name: 'NONEXISTENT' });
  if (res.kind === 'invalid-name') return no(`Invalid mailbox name: ${name}`, { name: 'CANNOT' });
  const view = s.select(res, readOnly);
  // One buffer for the lot: a SELECT of a quiet folder is a few hundred microseconds of work,
  // and a write per line would cost as much again.
  const lines = [
    compileUntagged([atom('FLAGS'), flagList(view.flagNames())]),
    compileStatus('OK', readOnly ? 'Read-only mailbox.' : 'Flags permitted.', { name: 'PERMANENTFLAGS', args: [flagList(view.permanentFlags())] }),
    compileUntagged([view.exists, atom('EXISTS')]),
    compileUntagged([view.recentCount, atom('RECENT')]),
  ];
  const unseen = view.firstUnseen();
  if (unseen > 0) lines.push(compileStatus('OK', `First unseen.`, { name: 'UNSEEN', args: [unseen] }));
  lines.push(compileStatus('OK', 'UIDs valid', { name: 'UIDVALIDITY', args: [view.uidValidity] }));
  lines.push(compileStatus('OK', 'Predicted next UID', { name: 'UIDNEXT', args: [view.uidNext] }));
  s.write(Buffer.concat(lines));
  return readOnly ? ok('Examine completed.', { name: 'READ-ONLY' }) : ok('Select completed.', { name: 'READ-WRITE' });
}

async function close(s: ImapSession): Promise<Completion> {
  const view = s.view;
  s.unselect();
  if (!view.readOnly) {
    // RFC 3501 6.4.2: expunge, but send no EXPUNGE responses.
    const removed = await s.mailbox.expunge(view.folder, undefined, s.origin);
    if (removed.length > 0) {
      s.ctx.log.info(`imap(${s.user}): expunge: box=${view.folder}, uids=${removed.length}`, {
        service: s.ctx.service,
        session: s.id,
        user: s.user,
        folder: view.folder,
        action: 'expunge',
        count: removed.length,
      });
    }
  }
  return ok('Close completed.');
}

function unselect(s: ImapSession): Promise<Completion> {
  s.unselect();
  return Promise.resolve(ok('Unselect completed.'));
}

async function check(s: ImapSession): Promise<Completion> {
  await s.refresh(true);
  return ok('Check completed.');
}

async function idle(s: ImapSession): Promise<Completion> {
  s.write(compileContinuation('idling'));
  let line: Buffer | null | undefined;
  const reading = s.readLine().then((l) => {
    line = l;
  });
  const { notifyMs, pollMs } = s.idleTimings;
  let lastNotify = Date.now();
  let lastPoll = Date.now();
  if (s.selected) {
    await s.refresh(true);
    s.flushUpdates(true);
  }
  while (line === undefined && !s.isClosed) {
    const now = Date.now();
    const wait = Math.max(10, Math.min(notifyMs - (now - lastNotify), pollMs - (now - lastPoll)));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, wait);
    });
    await Promise.race([reading, s.changed(), timeout]);
    clearTimeout(timer);
    if (line !== undefined || s.isClosed) break;
    if (s.selected) {
      const poll = Date.now() - lastPoll >= pollMs;
      if (poll) lastPoll = Date.now();
      await s.refresh(poll);
      s.flushUpdates(true);
    }
    if (Date.now() - lastNotify >= notifyMs) {
      lastNotify = Date.now();
      s.write(compileStatus('OK', 'Still here'));
    }
  }
  if (line === null || line === undefined) return ok('Idle completed.');
  if (line.toString('latin1').trim().toUpperCase() !== 'DONE') return bad('Expected DONE.');
  return ok('Idle completed.');
}

export const SELECT_COMMANDS: ReadonlyArray<readonly [string, CommandSpec]> = [
  ['SELECT', { states: ['authenticated', 'selected'], args: [1, 1], handler: (s, c) => select(s, c, false) }],
  ['EXAMINE', { states: ['authenticated', 'selected'], args: [1, 1], handler: (s, c) => select(s, c, true) }],
  ['CLOSE', { states: ['selected'], args: [0, 0], handler: close }],
  ['UNSELECT', { states: ['selected'], args: [0, 0], handler: unselect }],
  ['CHECK', { states: ['selected'], args: [0, 0], handler: check }],
  ['IDLE', { states: ['authenticated', 'selected'], args: [0, 0], handler: idle }],
];
