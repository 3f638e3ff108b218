/**
 * @module imap/commands/search
 * SUMMARY: SEARCH and UID SEARCH over the selected view: imap/parser's parseSearch builds
 * the key tree, imap/search's matchSearch decides each message, loading the message from
 * the store only when a header or text key needs it. Exports SEARCH_COMMANDS.
 * DIAGNOSTICS: a CHARSET other than US-ASCII/UTF-8 is `NO [BADCHARSET (US-ASCII UTF-8)]`,
 * a malformed key BAD; messages expunged by another session and not yet announced are
 * left out of the result.
 * SEE ALSO: RFC 3501 6.4.4, 7.2.5; RFC 5530 (BADCHARSET).
 */
import { atom, compileUntagged } from '../compiler.js';
import { parseSearch, type ImapCommand } from '../parser.js';
import { matchSearch, searchNeedsContent, type SearchContext } from '../search.js';
import type { CommandSpec, Completion, ImapSession } from '../command-table.js';
import { ANY_ARGS, bad, no, ok } from './completion.js';

/** How many messages a content search reads ahead. */
const READ_AHEAD = 8;

async function search(s: ImapSession, cmd: ImapCommand, byUid: boolean): Promise<Completion> {
  const q = parseSearch(cmd.args);
  if (!q.ok) {
    const e = q.error;
    if (e.code === 'BADCHARSET') return no(e.message, { name: 'BADCHARSET', args: [[atom('US-ASCII'), atom('UTF-8')]] });
    return bad(e.message);
  }
  const view = s.view;
  const folder = view.folder;
  const uids = view.uids();
  const context: SearchContext = { maxSeq: view.exists, maxUid: uids.length > 0 ? uids[uids.length - 1]! : 0 };
  const content = searchNeedsContent(q.value.key);
  const found: number[] = [];
  // Reads are started a few messages ahead; matchSearch may not need them all (a cheap key
  // can decide first), which costs only a read.
  const reads = new Map<number, Promise<Buffer>>();
  const load = (uid: number): Promise<Buffer> => {
    let p = reads.get(uid);
    if (!p) {
      p = s.mailbox.read(folder, uid).then((b) => b ?? Buffer.alloc(0));
      p.catch(() => undefined);
      reads.set(uid, p);
    }
    return p;
  };
  for (let seq = 1; seq <= view.exists; seq++) {
    const m = view.at(seq)!;
    if (view.isGone(m.uid)) continue;
    if (content) {
      for (let k = seq; k < seq + READ_AHEAD && k <= view.exists; k++) {
        const ahead = view.at(k)!;
        if (!view.isGone(ahead.uid)) void load(ahead.uid);
      }
    }
    const hit = await matchSearch(
      q.value.key,
      { seq, uid: m.uid, flags: view.flagsOf(m), size: m.size, internalDate: new Date(m.internalDate), load: () => load(m.uid) },
      context,
    );
    reads.delete(m.uid);
    if (hit) found.push(byUid ? m.uid : seq);
  }
  s.write(compileUntagged([atom('SEARCH'), ...found]));
  return ok('Search completed.');
}

export const SEARCH_COMMANDS: ReadonlyArray<readonly [string, CommandSpec]> = [
  ['SEARCH', { states: ['selected'], args: [1, ANY_ARGS], expungeAfter: false, handler: (s, c) => search(s, c, false) }],
  ['UID SEARCH', { states: ['selected'], args: [1, ANY_ARGS], handler: (s, c) => search(s, c, true) }],
];
