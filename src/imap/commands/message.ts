/**
 * @module imap/commands/message
 * SUMMARY: the message commands: FETCH, STORE, COPY, MOVE, EXPUNGE (and their UID forms)
 * and APPEND. Exports MESSAGE_COMMANDS and resolveTargets() (a sequence set -> the
 * messages of the selected view). FETCH reads each message once, in batches (only the
 * header when that is all the items need), answers BODY[...] byte-exact from what the store
 * returns and sends ~64 KB per write; a non-PEEK body fetch sets \Seen first so that the
 * same response carries the new FLAGS.
 * DIAGNOSTICS: APPEND, COPY, MOVE, EXPUNGE and STORE are logged (info, with user, folder and
 * count). A message expunged by another session meanwhile is skipped and the command
 * answers `NO [EXPUNGEISSUED]` (RFC 5530), as Dovecot does.
 * SEE ALSO: RFC 3501 6.3.11, 6.4.3-6.4.8; RFC 4315 (UIDPLUS: APPENDUID, COPYUID, UID
 * EXPUNGE); RFC 6851 (MOVE); RFC 2180 4.1 (expunged messages).
 */
import { atom, compileFetch, compileFetchInto, compileStatus, flagList, formatInternalDate, literal, type ImapValue, type ResponseCode } from '../compiler.js';
import {
  expandSequenceSet,
  formatSequenceSet,
  parseAppend,
  parseFetchItems,
  parseSequenceSet,
  parseStoreAction,
  type FetchItem,
  type FetchPartial,
  type ImapCommand,
  type ImapNode,
} from '../parser.js';
import { parseMessage, type MessageStructure } from '../message-structure.js';
import type { FlagMode, ReadPart } from '../../mailbox/mail-store.js';
import type { CommandSpec, Completion, ImapSession } from '../command-table.js';
import type { MailboxView, ViewMessage } from '../connection.js';
import { ANY_ARGS, bad, badArgs, no, ok } from './completion.js';
import { mailboxArg } from './mailbox-name.js';
import { envelopeKey, type EnvelopeCache } from '../envelope-cache.js';

export interface Target {
  readonly seq: number;
  readonly message: ViewMessage;
}

/**
 * How many messages FETCH reads and answers between two turns of the event loop: the store
 * may read them synchronously (see UserMailbox.readMany), so this bounds how long other
 * sessions and SMTP wait (about a millisecond for 64 typical messages).
 */
const READ_BATCH = 64;
/** FETCH responses are sent in writes of about this size rather than one write each. */
const WRITE_BATCH = 64 * 1024;
const EXPUNGE_ISSUED: Completion = no('Some of the requested messages no longer exist.', { name: 'EXPUNGEISSUED' });

/**
 * The messages NODE (a sequence set, of UIDs when BY_UID) names in the selected view, in
 * ascending order. An explicit sequence number beyond EXISTS is BAD, as in Dovecot; UIDs
 * that do not exist are simply not there (RFC 3501 6.4.8).
 */
export function resolveTargets(view: MailboxView, cmd: ImapCommand, node: ImapNode | undefined, byUid: boolean): Target[] | Completion {
  if (!node || node.type !== 'atom') return badArgs(cmd);
  const parsed = parseSequenceSet(node.value);
  if (!parsed.ok) return bad(parsed.error.message);
  const out: Target[] = [];
  if (byUid) {
    for (const uid of expandSequenceSet(parsed.value, view.uids())) {
      const seq = view.seqOf(uid);
      if (seq > 0) out.push({ seq, message: view.at(seq)! });
    }
    return out;
  }
  const exists = view.exists;
  for (const r of parsed.value) {
    // A range with "*" always names something that exists (or nothing, in an empty
    // mailbox: "1:*" there is not worth a BAD to clients that sync with it).
    if (r.start !== '*' && r.end !== '*' && Math.max(r.start, r.end) > exists) return badArgs(cmd, 'Invalid messageset');
  }
  const seqs = Array.from({ length: exists }, (_, i) => i + 1);
  for (const seq of expandSequenceSet(parsed.value, seqs)) out.push({ seq, message: view.at(seq)! });
  return out;
}

function logChange(s: ImapSession, action: string, folder: string, extra: Record<string, unknown>): void {
  const detail = Object.entries(extra)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(', ');
  s.ctx.log.info(`imap(${s.user}): ${action}: box=${folder}${detail ? `, ${detail}` : ''}`, { service: s.ctx.service, session: s.id, user: s.user, action, folder, ...extra });
}

const CONTENT_ITEMS = new Set(['ENVELOPE', 'BODYSTRUCTURE', 'BODY']);

function needsContent(item: FetchItem): boolean {
  return item.kind === 'section' || CONTENT_ITEMS.has(item.name);
}

/** Items that the header alone answers: ENVELOPE and the top-level HEADER sections. */
function headerOnly(item: FetchItem): boolean {
  if (item.kind === 'simple') return item.name === 'ENVELOPE';
  const { path, text } = item.section;
  return path.length === 0 && (text === 'HEADER' || text === 'HEADER.FIELDS' || text === 'HEADER.FIELDS.NOT') && !item.partial;
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** BODY[] / RFC822 need no MIME walk: the whole buffer, or a slice of it. */
function isWhole(item: FetchItem): boolean {
  return item.kind === 'section' && item.section.path.length === 0 && item.section.text === null;
}

function slicePartial(buf: Buffer, partial: FetchPartial | undefined): Buffer {
  if (!partial) return buf;
  const start = Math.min(partial.origin, buf.length);
  const end = partial.count === undefined ? buf.length : Math.min(buf.length, start + partial.count);
  return buf.subarray(start, end);
}

/** One message's FETCH items; BUF is what the store read (null when no item needs content). */
function responseItems(
  view: MailboxView,
  items: readonly FetchItem[],
  m: ViewMessage,
  buf: Buffer | null,
  structured: boolean,
  addFlags: boolean,
  envelope: (structure: () => MessageStructure) => ImapValue,
): Array<readonly [string, ImapValue]> {
  let struct: MessageStructure | null = null;
  const structure = (): MessageStructure => (struct ??= parseMessage(buf!));
  if (structured && buf) structure();
  const out: Array<readonly [string, ImapValue]> = [];
  for (const item of items) {
    if (item.kind === 'section') {
      const bytes = isWhole(item) ? slicePartial(buf!, item.partial) : structure().section(item.section, item.partial);
      out.push([item.responseName, literal(bytes)]);
      continue;
    }
    switch (item.name) {
      case 'UID':
        out.push(['UID', m.uid]);
        break;
      case 'FLAGS':
        out.push(['FLAGS', flagList(view.flagsOf(m))]);
        break;
      case 'INTERNALDATE':
        out.push(['INTERNALDATE', formatInternalDate(new Date(m.internalDate))]);
        break;
      case 'RFC822.SIZE':
        // The size of what BODY[] returns, whatever the index says.
        out.push(['RFC822.SIZE', buf ? buf.length : m.size]);
        break;
      case 'ENVELOPE':
        out.push(['ENVELOPE', envelope(structure)]);
        break;
      case 'BODYSTRUCTURE':
        out.push(['BODYSTRUCTURE', structure().bodyStructure(true)]);
        break;
      case 'BODY':
        out.push(['BODY', structure().bodyStructure(false)]);
        break;
    }
  }
  if (addFlags) out.push(['FLAGS', flagList(view.flagsOf(m))]);
  return out;
}

async function fetch(s: ImapSession, cmd: ImapCommand, byUid: boolean): Promise<Completion> {
  const parsedItems = parseFetchItems(cmd.args[1]);
  if (!parsedItems.ok) return bad(parsedItems.error.message);
  const items = parsedItems.value.slice();
  if (byUid && !items.some((i) => i.kind === 'simple' && i.name === 'UID')) items.unshift({ kind: 'simple', name: 'UID' });
  const view = s.view;
  const targets = resolveTargets(view, cmd, cmd.args[0], byUid);
  if (!Array.isArray(targets)) return targets;
  const folder = view.folder;
  const content = items.some(needsContent);
  const structured = items.some((i) => needsContent(i) && !isWhole(i));
  const flagsAsked = items.some((i) => i.kind === 'simple' && i.name === 'FLAGS');

  // \Seen is set before anything is sent, so each response already shows it (RFC 3501 6.4.5).
  const seenNow = new Set<number>();
  if (!view.readOnly && items.some((i) => i.kind === 'section' && i.setsSeen)) {
    const unseen = targets.filter((t) => !view.isGone(t.message.uid) && !view.storedFlags(t.message).includes('\\Seen')).map((t) => t.message.uid);
    if (unseen.length > 0) {
      const updates = await s.mailbox.setFlags(folder, unseen, ['\\Seen'], 'add', s.origin);
      view.applyOwnFlags(updates);
      for (const u of updates) seenNow.add(u.uid);
    }
  }

  // RFC822.SIZE reports the length of what was read, so it needs the whole message.
  const part: ReadPart = items.every((i) => !needsContent(i) || headerOnly(i)) && !items.some((i) => i.kind === 'simple' && i.name === 'RFC822.SIZE') ? 'header' : 'all';

  // ENVELOPE from the cache needs no file (as Dovecot's dovecot.index.cache); only when it
  // is the one item that needs content, so that every other item still sees the file.
  const cache: EnvelopeCache = s.ctx.envelopes;
  const envelopeOnly = items.every((i) => !needsContent(i) || (i.kind === 'simple' && i.name === 'ENVELOPE'));
  const keyOf = (uid: number): string => envelopeKey(s.user ?? '', folder, view.uidValidity, uid);

  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const send = (): void => {
    if (pending.length === 0) return;
    s.write(pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes));
    pending = [];
    pendingBytes = 0;
  };

  let missing = 0;
  try {
    for (let first = 0; first < targets.length; first += READ_BATCH) {
      const batch = targets.slice(first, first + READ_BATCH);
      const bodies = new Map<number, Buffer | null>();
      if (content) {
        const uids = batch.filter((t) => !view.isGone(t.message.uid) && !(envelopeOnly && cache.get(keyOf(t.message.uid)))).map((t) => t.message.uid);
        const read = uids.length > 0 ? await s.mailbox.readMany(folder, uids, part) : [];
        uids.forEach((uid, i) => bodies.set(uid, read[i] ?? null));
      }
      for (const t of batch) {
        const m = t.message;
        let buf: Buffer | null = null;
        const cached = envelopeOnly && !view.isGone(m.uid) ? cache.get(keyOf(m.uid)) : undefined;
        if (content && !cached) {
          buf = bodies.get(m.uid) ?? null;
          if (buf === null) {
            missing++;
            continue;
          }
        }
        const envelope = (structure: () => MessageStructure): ImapValue => cached ?? cache.set(keyOf(m.uid), structure().envelope());
        pendingBytes += compileFetchInto(pending, t.seq, responseItems(view, items, m, buf, structured, seenNow.has(m.uid) && !flagsAsked, envelope));
        if (pendingBytes >= WRITE_BATCH) {
          send();
          await s.drained();
        }
      }
      if (first + READ_BATCH < targets.length) await yieldToLoop();
    }
  } finally {
    // Whatever was answered goes out, also when a read failed half-way.
    send();
  }
  return missing > 0 ? EXPUNGE_ISSUED : ok('Fetch completed.');
}

const STORE_MODES: Readonly<Record<'set' | 'add' | 'remove', FlagMode>> = { set: 'replace', add: 'add', remove: 'remove' };

async function store(s: ImapSession, cmd: ImapCommand, byUid: boolean): Promise<Completion> {
  const action = parseStoreAction(cmd.args.slice(1));
  if (!action.ok) return bad(action.error.message);
  const view = s.view;
  const targets = resolveTargets(view, cmd, cmd.args[0], byUid);
  if (!Array.isArray(targets)) return targets;
  if (view.readOnly) return no('Mailbox is read-only.');
  const live = targets.filter((t) => !view.isGone(t.message.uid));
  const uids = live.map((t) => t.message.uid);
  const updates = uids.length > 0 ? await s.mailbox.setFlags(view.folder, uids, action.value.flags, STORE_MODES[action.value.operation], s.origin) : [];
  view.applyOwnFlags(updates);
  if (!action.value.silent) {
    for (const u of updates) {
      const seq = view.seqOf(u.uid);
      const m = view.at(seq);
      if (!m) continue;
      const out: Array<readonly [string, ImapValue]> = [['FLAGS', flagList(view.flagsOf(m))]];
      if (byUid) out.push(['UID', m.uid]);
      s.write(compileFetch(seq, out));
    }
  }
  if (updates.length > 0) {
    const op = action.value.operation === 'set' ? '' : action.value.operation === 'add' ? '+' : '-';
    logChange(s, 'flag_change', view.folder, { count: updates.length, flags: `${op}(${action.value.flags.join(' ')})` });
  }
  return updates.length < targets.length ? EXPUNGE_ISSUED : ok('Store completed.');
}

function copyUidCode(uidValidity: number, pairs: ReadonlyArray<readonly [number, number]>): ResponseCode {
  return {
    name: 'COPYUID',
    args: [uidValidity, atom(formatSequenceSet(pairs.map((p) => p[0]))), atom(formatSequenceSet(pairs.map((p) => p[1])))],
  };
}

async function copyOrMove(s: ImapSession, cmd: ImapCommand, byUid: boolean, move: boolean): Promise<Completion> {
  const dest = mailboxArg(cmd.args[1]);
  if (dest === undefined) return badArgs(cmd);
  const view = s.view;
  const targets = resolveTargets(view, cmd, cmd.args[0], byUid);
  if (!Array.isArray(targets)) return targets;
  if (move && view.readOnly) return no('Mailbox is read-only.');
  const uids = targets.filter((t) => !view.isGone(t.message.uid)).map((t) => t.message.uid);
  const res = move ? await s.mailbox.move(view.folder, uids, dest, s.origin) : await s.mailbox.copy(view.folder, uids, dest, s.origin);
  if (res.kind === 'nonexistent') return no(`Mailbox doesn't exist: ${dest}`, { name: 'TRYCREATE' });
  if (res.kind === 'invalid-name') return no(`Invalid mailbox name: ${dest}`, { name: 'CANNOT' });
  const verb = move ? 'Move' : 'Copy';
  if (res.pairs.length > 0) logChange(s, move ? 'move' : 'copy', view.folder, { dest, count: res.pairs.length });
  const complete = res.pairs.length < targets.length ? EXPUNGE_ISSUED : null;
  if (!move) {
    if (complete) return complete;
    return res.pairs.length > 0 ? ok(`${verb} completed.`, copyUidCode(res.uidValidity, res.pairs)) : ok(`${verb} completed.`);
  }
  // RFC 6851 3.3: COPYUID comes in an untagged OK before the EXPUNGEs.
  if (res.pairs.length > 0) {
    s.write(compileStatus('OK', 'Moved UIDs.', copyUidCode(res.uidValidity, res.pairs)));
    for (const line of view.expungeNow(res.pairs.map((p) => p[0]))) s.write(line);
  }
  return complete ?? ok(`${verb} completed.`);
}

async function expunge(s: ImapSession, cmd: ImapCommand, byUid: boolean): Promise<Completion> {
  const view = s.view;
  let only: number[] | undefined;
  if (byUid) {
    const targets = resolveTargets(view, cmd, cmd.args[0], true);
    if (!Array.isArray(targets)) return targets;
    only = targets.map((t) => t.message.uid);
  }
  if (view.readOnly) return no('Mailbox is read-only.');
  const removed = only && only.length === 0 ? [] : await s.mailbox.expunge(view.folder, only, s.origin);
  for (const line of view.expungeNow(removed)) s.write(line);
  if (removed.length > 0) logChange(s, 'expunge', view.folder, { count: removed.length });
  return ok('Expunge completed.');
}

async function append(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const req = parseAppend(cmd.args);
  if (!req.ok) return bad(req.error.message);
  const folder = mailboxArg({ type: 'string', value: req.value.mailbox })!;
  if (req.value.message.length === 0) return no('Can\'t save a zero byte message.');
  const options = req.value.date ? { flags: req.value.flags, internalDate: req.value.date.getTime() } : { flags: req.value.flags };
  const res = await s.mailbox.append(folder, req.value.message, options, s.origin);
  if (res.kind === 'nonexistent') return no(`Mailbox doesn't exist: ${folder}`, { name: 'TRYCREATE' });
  if (res.kind === 'invalid-name') return no(`Invalid mailbox name: ${folder}`, { name: 'CANNOT' });
  logChange(s, 'append', folder, { uid: res.uid, size: req.value.message.length });
  return ok('Append completed.', { name: 'APPENDUID', args: [res.uidValidity, res.uid] });
}

const SELECTED = ['selected'] as const;

export const MESSAGE_COMMANDS: ReadonlyArray<readonly [string, CommandSpec]> = [
  ['FETCH', { states: SELECTED, args: [2, 2], expungeAfter: false, handler: (s, c) => fetch(s, c, false) }],
  ['UID FETCH', { states: SELECTED, args: [2, 2], handler: (s, c) => fetch(s, c, true) }],
  ['STORE', { states: SELECTED, args: [3, ANY_ARGS], expungeAfter: false, handler: (s, c) => store(s, c, false) }],
  ['UID STORE', { states: SELECTED, args: [3, ANY_ARGS], handler: (s, c) => store(s, c, true) }],
  ['COPY', { states: SELECTED, args: [2, 2], handler: (s, c) => copyOrMove(s, c, false, false) }],
  ['UID COPY', { states: SELECTED, args: [2, 2], handler: (s, c) => copyOrMove(s, c, true, false) }],
  ['MOVE', { states: SELECTED, args: [2, 2], handler: (s, c) => copyOrMove(s, c, false, true) }],
  ['UID MOVE', { states: SELECTED, args: [2, 2], handler: (s, c) => copyOrMove(s, c, true, true) }],
  ['EXPUNGE', { states: SELECTED, args: [0, 0], handler: (s, c) => expunge(s, c, false) }],
  ['UID EXPUNGE', { states: SELECTED, args: [1, 1], handler: (s, c) => expunge(s, c, true) }],
  ['APPEND', { states: ['authenticated', 'selected'], args: [2, ANY_ARGS], handler: append }],
];
