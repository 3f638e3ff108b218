/**
 * @module checks/headers
 * SUMMARY: header_checks, mime_header_checks and nested_header_checks on one logical header
 * (cleanup_header_callback()): a MIME header (Content-*, MIME-Version) is looked up in
 * mime_header_checks wherever it is; other headers by their class: primary ->
 * header_checks, MIME part -> mime_header_checks, attached message -> nested_header_checks.
 * Each header is looked up in exactly one list, even when two lists name the same tables.
 * checkHeader() returns what becomes of the header (ActResult).
 * DIAGNOSTICS: a failed lookup is recorded on the ActionState (the message will be
 * tempfailed); the header is kept. SEE ALSO: header_checks(5), cleanup_message.c.
 */
import type { Maps } from '../tables/maps.js';
import { KEEP, type ActResult, type ActionState, type CheckTable, type CheckWhere } from './actions.js';
import type { CompiledChecks } from './compile.js';
import type { HeaderEvent } from './message-walk.js';

interface HeaderList {
  readonly maps: Maps | null;
  readonly table: CheckTable;
  readonly where: CheckWhere;
}

/** The list a header is looked up in, or null when that list is empty. */
export function headerList(checks: CompiledChecks, h: Pick<HeaderEvent, 'headerClass' | 'mime'>): HeaderList {
  if (h.mime || h.headerClass === 'multipart') return { maps: checks.mimeHeader, table: 'mime_header_checks', where: 'mime header' };
  if (h.headerClass === 'nested') return { maps: checks.nestedHeader, table: 'nested_header_checks', where: 'nested header' };
  return { maps: checks.header, table: 'header_checks', where: 'header' };
}

/** The lookup key: the header's text, cut at a NUL as Postfix's C strings are. */
export function headerKey(h: HeaderEvent): string {
  const key = h.key.toString('utf8', 0, h.keyLength);
  const nul = key.indexOf('\0');
  return nul === -1 ? key : key.slice(0, nul);
}

export function checkHeader(state: ActionState, checks: CompiledChecks, h: HeaderEvent): ActResult {
  if (!state.filtering) return KEEP;
  const list = headerList(checks, h);
  if (list.maps === null) return KEEP;
  const key = headerKey(h);
  const r = list.maps.lookup(key);
  if (r.kind === 'miss') return KEEP;
  if (r.kind === 'error') {
    state.lookupFailed(list.table, r.error);
    return KEEP;
  }
  return state.act({ where: list.where, table: list.table, rule: r.source, content: key }, r.value);
}
