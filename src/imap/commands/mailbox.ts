/**
 * @module imap/commands/mailbox
 * SUMMARY: the folder commands of the authenticated state: LIST, LSUB, CREATE, DELETE,
 * RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS and NAMESPACE over the store's Maildir++ folders
 * (hierarchy separator HIERARCHY_SEPARATOR; a level that exists only as a parent of deeper
 * folders is listed \Noselect; \HasChildren/\HasNoChildren as RFC 3348). Exports
 * MAILBOX_COMMANDS and listMatcher().
 * DIAGNOSTICS: CREATE, DELETE and RENAME are logged (info, with user and folder); the
 * replies are Dovecot's texts and response codes (NONEXISTENT, ALREADYEXISTS, CANNOT).
 * SEE ALSO: RFC 3501 6.3.3-6.3.10; RFC 2342 (NAMESPACE); RFC 3348 (CHILDREN); RFC 5530.
 */
import { HIERARCHY_SEPARATOR } from '../../mailbox/mail-store.js';
import { astring, atom, compileUntagged, flagList, type ImapValue } from '../compiler.js';
import { nodeText, type ImapCommand } from '../parser.js';
import type { CommandSpec, Completion, ImapSession } from '../command-table.js';
import { badArgs, no, ok } from './completion.js';
import { mailboxArg } from './mailbox-name.js';

const SEP = HIERARCHY_SEPARATOR;
const BOTH = ['authenticated', 'selected'] as const;

/**
 * A LIST pattern -> a test of folder names: `*` matches anything, `%` anything but the
 * separator. INBOX matches case-insensitively, every other name exactly (RFC 3501 6.3.8).
 */
export function listMatcher(pattern: string): (name: string) => boolean {
  let re = '';
  for (const ch of pattern) {
    if (ch === '*') re += '.*';
    else if (ch === '%') re += `[^${escapeRegExp(SEP)}]*`;
    else re += escapeRegExp(ch);
  }
  const exact = new RegExp(`^${re}$`, 's');
  const folded = new RegExp(`^${re}$`, 'si');
  return (name) => (name.toUpperCase() === 'INBOX' || name.toUpperCase().startsWith(`INBOX${SEP}`) ? folded : exact).test(name);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Every name to consider: the folders, and the levels above them that are not folders. */
function withParents(folders: readonly string[]): Map<string, { exists: boolean; children: boolean }> {
  const out = new Map<string, { exists: boolean; children: boolean }>();
  for (const f of folders) out.set(f, { exists: true, children: false });
  for (const f of folders) {
    const levels = f.split(SEP);
    for (let i = 1; i < levels.length; i++) {
      const parent = levels.slice(0, i).join(SEP);
      const entry = out.get(parent);
      if (entry) entry.children = true;
      else out.set(parent, { exists: false, children: true });
    }
  }
  return out;
}

function sortNames(names: Iterable<string>): string[] {
  return [...names].sort((a, b) => (a === 'INBOX' ? -1 : b === 'INBOX' ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

/** The pattern LIST matches: the reference name, then the mailbox pattern (RFC 3501 6.3.8). */
function listArgs(cmd: ImapCommand): { ref: string; pattern: string } | null {
  const ref = nodeText(cmd.args[0]);
  const pat = nodeText(cmd.args[1]);
  if (ref === undefined || pat === undefined) return null;
  return { ref: ref ?? '', pattern: pat ?? '' };
}

async function list(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const a = listArgs(cmd);
  if (!a) return badArgs(cmd);
  if (a.pattern === '') {
    // The hierarchy delimiter and root, as RFC 3501 asks for an empty pattern.
    s.write(compileUntagged([atom('LIST'), [atom('\\Noselect')], SEP, '']));
    return ok('List completed.');
  }
  const match = listMatcher(a.ref + a.pattern);
  const names = withParents(await s.mailbox.folders());
  for (const name of sortNames(names.keys())) {
    if (!match(name)) continue;
    const e = names.get(name)!;
    const attrs: string[] = [];
    if (!e.exists) attrs.push('\\Noselect');
    attrs.push(e.children ? '\\HasChildren' : '\\HasNoChildren');
    s.write(listLine('LIST', attrs, name));
  }
  return ok('List completed.');
}

async function lsub(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const a = listArgs(cmd);
  if (!a) return badArgs(cmd);
  if (a.pattern === '') return ok('Lsub completed.');
  const match = listMatcher(a.ref + a.pattern);
  const subscribed = new Set(await s.mailbox.subscriptions());
  const names = withParents([...subscribed]);
  for (const name of sortNames(names.keys())) {
    if (!match(name)) continue;
    if (subscribed.has(name)) {
      s.write(listLine('LSUB', [], name));
      continue;
    }
    // RFC 3501 6.3.9: a level that is not subscribed itself is listed (\Noselect) only to
    // stand for subscribed folders below it that the pattern ("%") does not reach.
    const prefix = name + SEP;
    if ([...subscribed].some((sub) => sub.startsWith(prefix) && !match(sub))) s.write(listLine('LSUB', ['\\Noselect'], name));
  }
  return ok('Lsub completed.');
}

function listLine(kind: 'LIST' | 'LSUB', attrs: readonly string[], name: string): Buffer {
  return compileUntagged([atom(kind), flagList(attrs), SEP, astring(name)]);
}

function logChange(s: ImapSession, action: string, folder: string, extra: Record<string, unknown> = {}): void {
  s.ctx.log.info(`imap(${s.user}): ${action}: box=${folder}`, { service: s.ctx.service, session: s.id, user: s.user, action, folder, ...extra });
}

async function create(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  let name = mailboxArg(cmd.args[0]);
  if (name === undefined) return badArgs(cmd);
  // RFC 3501 6.3.3: a trailing separator only says the client means to create children.
  if (name.endsWith(SEP)) name = name.slice(0, -SEP.length);
  if (name.toUpperCase() === 'INBOX') return no('Mailbox already exists', { name: 'ALREADYEXISTS' });
  const res = await s.mailbox.createFolder(name, s.origin);
  switch (res.kind) {
    case 'ok':
      logChange(s, 'create', res.folder);
      return ok('Create completed.');
    case 'exists':
      return no('Mailbox already exists', { name: 'ALREADYEXISTS' });
    case 'invalid-name':
      return no(`Invalid mailbox name: ${name}`, { name: 'CANNOT' });
  }
}

async function remove(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const name = mailboxArg(cmd.args[0]);
  if (name === undefined) return badArgs(cmd);
  // Dovecot closes the selected mailbox before deleting it, rather than refusing.
  if (s.selected && s.selected.folder === name && name !== 'INBOX') s.unselect();
  const res = await s.mailbox.deleteFolder(name, s.origin);
  switch (res.kind) {
    case 'ok':
      logChange(s, 'delete', res.folder);
      return ok('Delete completed.');
    case 'inbox':
      return no('INBOX can\'t be deleted.');
    case 'has-children':
      return no('Mailbox has children, delete them first', { name: 'INUSE' });
    case 'nonexistent':
      return no(`Mailbox doesn't exist: ${name}`, { name: 'NONEXISTENT' });
    case 'invalid-name':
      return no(`Invalid mailbox name: ${name}`, { name: 'CANNOT' });
  }
}

async function rename(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const from = mailboxArg(cmd.args[0]);
  const to = mailboxArg(cmd.args[1]);
  if (from === undefined || to === undefined) return badArgs(cmd);
  const sel = s.selected?.folder;
  if (sel !== undefined && (sel === from || sel.startsWith(from + SEP))) s.unselect();
  const res = await s.mailbox.renameFolder(from, to, s.origin);
  switch (res.kind) {
    case 'ok':
      logChange(s, 'rename', res.from, { to: res.to });
      return ok('Rename completed.');
    case 'exists':
      return no('Target mailbox already exists', { name: 'ALREADYEXISTS' });
    case 'nonexistent':
      return no(`Mailbox doesn't exist: ${from}`, { name: 'NONEXISTENT' });
    case 'invalid-name':
      return no(`Invalid mailbox name: ${res.folder}`, { name: 'CANNOT' });
  }
}

async function subscribe(s: ImapSession, cmd: ImapCommand, on: boolean): Promise<Completion> {
  const name = mailboxArg(cmd.args[0]);
  if (name === undefined) return badArgs(cmd);
  await s.mailbox.subscribe(name, on);
  return ok(on ? 'Subscribe completed.' : 'Unsubscribe completed.');
}

const STATUS_ITEMS = ['MESSAGES', 'RECENT', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN'] as const;
type StatusItem = (typeof STATUS_ITEMS)[number];

async function status(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const name = mailboxArg(cmd.args[0]);
  const items = cmd.args[1];
  if (name === undefined || !items || items.type !== 'list' || items.items.length === 0) return badArgs(cmd);
  const wanted: StatusItem[] = [];
  for (const n of items.items) {
    const item = n.type === 'atom' ? n.value.toUpperCase() : '';
    if (!(STATUS_ITEMS as readonly string[]).includes(item)) return badArgs(cmd, `Invalid status item ${n.type === 'atom' ? n.value : ''}`.trim());
    if (!wanted.includes(item as StatusItem)) wanted.push(item as StatusItem);
  }
  const res = await s.mailbox.status(name);
  if (res.kind === 'nonexistent') return no(`Mailbox doesn't exist: ${name}`, { name: 'NONEXISTENT' });
  if (res.kind === 'invalid-name') return no(`Invalid mailbox name: ${name}`, { name: 'CANNOT' });
  const values: ImapValue[] = [];
  const of: Record<StatusItem, number> = {
    MESSAGES: res.messages,
    RECENT: res.recent,
    UIDNEXT: res.uidNext,
    UIDVALIDITY: res.uidValidity,
    UNSEEN: res.unseen,
  };
  for (const w of wanted) values.push(atom(w), of[w]);
  s.write(compileUntagged([atom('STATUS'), astring(res.folder), values]));
  return ok('Status completed.');
}

function namespace(s: ImapSession): Promise<Completion> {
  // One personal namespace with no prefix; no other users' or shared folders.
  s.write(compileUntagged([atom('NAMESPACE'), [['', SEP]], null, null]));
  return Promise.resolve(ok('Namespace completed.'));
}

export const MAILBOX_COMMANDS: ReadonlyArray<readonly [string, CommandSpec]> = [
  ['LIST', { states: BOTH, args: [2, 2], handler: list }],
  ['LSUB', { states: BOTH, args: [2, 2], handler: lsub }],
  ['CREATE', { states: BOTH, args: [1, 1], handler: create }],
  ['DELETE', { states: BOTH, args: [1, 1], handler: remove }],
  ['RENAME', { states: BOTH, args: [2, 2], handler: rename }],
  ['SUBSCRIBE', { states: BOTH, args: [1, 1], handler: (s, c) => subscribe(s, c, true) }],
  ['UNSUBSCRIBE', { states: BOTH, args: [1, 1], handler: (s, c) => subscribe(s, c, false) }],
  ['STATUS', { states: BOTH, args: [2, 2], handler: status }],
  ['NAMESPACE', { states: BOTH, args: [0, 0], handler: namespace }],
];
