/**
 * @module restrictions/greylist
 * SUMMARY: check_greylist, greygate's built-in greylisting restriction (postgrey's answers,
 * without the policy-protocol hop). With the Greylist of the snapshot (PolicyDeps.greylist,
 * bound to the Env by bindGreylist()) it asks greylist/greylist.ts about (client address,
 * verified client name, sender, recipient, instance) (Greylist.checkNow(): with the
 * write-behind cache the restriction returns its status at once, without a promise) and
 * answers as Postfix treats postgrey's replies:
 *   greylisted   DEFER_IF_PERMIT "450 4.2.0 <rcpt>: Recipient address rejected: greylist_text"
 *                (greylist_text may use postgrey's %s = seconds left and %r = recipient
 *                domain; a later hard reject still wins, a later permit still gets the 450)
 *   first pass   DUNNO, and the X-Greylist header is prepended (once per message)
 *   other pass   DUNNO (whitelist entry, auto-whitelist, known triplet, organisation retry)
 * Every answer is noted in fx.notes as an 'info' note whose text is postgrey's log line
 * ("action=greylist, reason=new, client_name=..."), with a structured `greylist` field for
 * the listener's 'greylist' log event; a whitelist pass carries the entry's FILE:LINE as
 * its rule. Under `greygate trace` (SessionState.onStep set) the explanation lines of
 * Greylist.explain() are noted first.
 * DIAGNOSTICS: no greylist configured: 451 4.3.5 Server configuration error (fail closed,
 * with a warning note). A store failure: "451 4.3.0 <rcpt>: Recipient address rejected:
 * Temporary lookup failure" with a warning note: never a pass. No sender or recipient at
 * this stage: DUNNO with a warning, as postgrey answers a request missing them.
 * SEE ALSO: design.md (check_greylist), postgrey(8), RFC 6647, access(5) DEFER_IF_PERMIT.
 */
import { StoreError } from '../errors.js';
import { formatGreylistLog, formatGreylistText, type Greylist, type GreylistQuery, type GreylistResult } from '../greylist/greylist.js';
import { DUNNO, deferIfPermitOrReject, dsnFix, dsnSplit, reject, serverError, type Eval, type Frame, type RunResult, type Status } from './evaluate.js';
import type { Env, RestrictionDef } from './registry.js';
import type { GreylistNote } from './state.js';

/** The Greylist of each policy snapshot (set by compilePolicy from PolicyDeps.greylist). */
const BOUND = new WeakMap<Env, Greylist>();

/** Make GREYLIST the one check_greylist uses in the policy whose Env is ENV. */
export function bindGreylist(env: Env, greylist: Greylist | undefined): void {
  if (greylist) BOUND.set(env, greylist);
  else BOUND.delete(env);
}

function noteOf(r: GreylistResult): GreylistNote {
  if (r.kind === 'greylist') return { action: 'greylist', reason: r.reason, key: r.key, remaining: r.remainingSeconds };
  const n: { -readonly [K in keyof GreylistNote]: GreylistNote[K] } = { action: 'pass', reason: r.reason };
  if (r.key) n.key = r.key;
  if (r.rule) n.rule = r.rule;
  if (r.header && r.delaySeconds !== undefined) n.delay = r.delaySeconds;
  if (r.grouping) n.grouping = r.grouping;
  if (r.awlCount !== undefined) n.awl_count = r.awlCount;
  return n;
}

const X_GREYLIST = /^X-Greylist:/i;

/** A store failure: 451 4.3.0, never a pass. */
function lookupFailure(ev: Eval, fr: Frame, rule: string, err: unknown): Status {
  ev.note('warning', err instanceof StoreError ? err.message : `check_greylist: ${(err as Error).message}`, rule);
  return reject(ev, 'data', 451, '4.3.0', `<${fr.replyName}>: ${fr.replyClass} rejected: Temporary lookup failure`, rule);
}

/** What the greylist answered, as the restriction's result and notes. */
function answer(ev: Eval, fr: Frame, env: Env, q: GreylistQuery, rule: string, r: GreylistResult): Status {
  ev.fx.notes.push({ event: 'info', text: formatGreylistLog(q, r, ev.s.queueId), rule: r.kind === 'pass' && r.rule ? r.rule : rule, stage: ev.stage, greylist: noteOf(r) });
  if (r.kind === 'greylist') {
    const d = dsnSplit('4.2.0', formatGreylistText(env.config.get('greylist_text'), r.remainingSeconds, q.recipient));
    return deferIfPermitOrReject(ev, true, 'policy', env.codes.access_map_defer_code ?? 450, dsnFix(d.dsn, fr.replyClass), `<${fr.replyName}>: ${fr.replyClass} rejected: ${d.text}`);
  }
  if (r.awlWhitelisted) ev.note('info', `whitelisted: ${ev.client.namaddr}`, rule);
  // One X-Greylist header per message; a PREPEND cannot be done at end of data.
  if (r.header && ev.where !== 'END-OF-MESSAGE' && !ev.fx.prepend.some((p) => X_GREYLIST.test(p.header))) {
    ev.fx.prepend.push({ header: r.header, rule });
  }
  return DUNNO;
}

/** `greygate trace`: the explanation lines first, then the check itself. */
async function explainAndCheck(ev: Eval, fr: Frame, env: Env, greylist: Greylist, q: GreylistQuery, rule: string): Promise<Status> {
  let r: GreylistResult;
  try {
    for (const line of (await greylist.explain(q)).lines) ev.note('info', `greylist: ${line}`, rule);
    r = await greylist.check(q);
  } catch (err) {
    return lookupFailure(ev, fr, rule, err);
  }
  return answer(ev, fr, env, q, rule, r);
}

/**
 * The restriction. With the write-behind cache the greylist answers at once, and so does
 * this (no promise on the policy service's hot path); other stores answer later.
 */
function checkGreylist(ev: Eval, fr: Frame, env: Env, greylist: Greylist): RunResult {
  const sender = ev.sender;
  const recipient = ev.recipient;
  if (sender === undefined || recipient === undefined) {
    ev.note('warning', `check_greylist: no ${sender === undefined ? 'sender' : 'recipient'} at the ${ev.stage} stage; not greylisting`);
    return DUNNO;
  }
  const q: GreylistQuery = {
    clientAddress: ev.client.addr,
    // Only a forward-confirmed name may match name whitelists or group by organisation.
    clientName: ev.client.nameStatus === 'ok' ? ev.client.name : 'unknown',
    sender,
    recipient,
    instance: ev.s.instance,
    now: env.now(),
  };
  const rule = ev.rule;
  if (ev.s.onStep) return explainAndCheck(ev, fr, env, greylist, q, rule);
  let r: GreylistResult | Promise<GreylistResult>;
  try {
    r = greylist.checkNow(q);
  } catch (err) {
    return lookupFailure(ev, fr, rule, err);
  }
  if (r instanceof Promise) {
    return r.then(
      (res) => answer(ev, fr, env, q, rule, res),
      (err: unknown) => lookupFailure(ev, fr, rule, err),
    );
  }
  return answer(ev, fr, env, q, rule, r);
}

export const GREYLIST_RESTRICTIONS: readonly RestrictionDef[] = [
  {
    name: 'check_greylist',
    args: 0,
    compile: (_arg, cx) => {
      const env = cx.env;
      return (ev, fr) => {
        const greylist = BOUND.get(env);
        if (!greylist) return serverError(ev, 'check_greylist: no greylist database is open (greylist_database); failing closed');
        return checkGreylist(ev, fr, env, greylist);
      };
    },
  },
];
