/**
 * @module checks/body
 * SUMMARY: body_checks on one body record (cleanup_body_callback()): a line, or a
 * line_length_limit chunk of a longer one, looked up only while it starts within the first
 * body_checks_size_limit bytes of its body segment; empty lines are never looked up.
 * checkBody() returns what becomes of the record (ActResult).
 * DIAGNOSTICS: a failed lookup is recorded on the ActionState; after it no body record is
 * checked (cleanup stops writing the message). SEE ALSO: body_checks(5), cleanup_message.c.
 */
import { KEEP, type ActResult, type ActionState } from './actions.js';
import type { CompiledChecks } from './compile.js';

/** Whether a record at OFFSET would be looked up at all: lets callers skip decoding. */
export function bodyChecked(state: ActionState, checks: CompiledChecks, offset: number): boolean {
  return (
    checks.body !== null &&
    state.filtering &&
    state.error === null &&
    (checks.bodySizeLimit === 0 || offset < checks.bodySizeLimit)
  );
}

export function checkBody(state: ActionState, checks: CompiledChecks, buf: Buffer, start: number, end: number, offset: number): ActResult {
  if (end === start || !bodyChecked(state, checks, offset)) return KEEP;
  let key = buf.toString('utf8', start, end);
  const nul = key.indexOf('\0');
  if (nul !== -1) key = key.slice(0, nul);
  const r = checks.body!.lookup(key);
  if (r.kind === 'miss') return KEEP;
  if (r.kind === 'error') {
    state.lookupFailed('body_checks', r.error);
    return KEEP;
  }
  return state.act({ where: 'body', table: 'body_checks', rule: r.source, content: key }, r.value);
}
