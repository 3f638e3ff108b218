/**
 * @module policyd/action
 * SUMMARY: turn the restriction engine's Decision for one policy request into the action
 * that Postfix's check_policy_service reads as an access(5) result, so that Postfix's final
 * SMTP reply is the one greygate's own smtpd would give. Exports policyAction(decision,
 * effects) -> PolicyVerdict {action, kind, rule, header?}.
 * Postfix's check_table_result() prefixes every REJECT / DEFER_IF_PERMIT / 4xx / 5xx text
 * with "<reply_name>: <reply_class> rejected: " itself, and takes a leading X.Y.Z as the
 * enhanced status, so the engine's own "<rcpt>: Recipient address rejected: " prefix is
 * taken off and the status is sent in front of the text:
 *   greylisted (check_greylist)       DEFER_IF_PERMIT 4.2.0 <greylist_text>   (postgrey's form)
 *   other reject or defer             <code> <status> <text>   (Postfix says "Recipient address"
 *                                     whatever class greygate's restriction had: its list decides)
 *   permit with DISCARD/HOLD/REDIRECT/FILTER/BCC/PREPEND effects   that action (one only)
 *   other permit                      DUNNO (never OK: Postfix's own list goes on, as with postgrey)
 * SEE ALSO: Postfix smtpd_check.c check_table_result(); SMTPD_POLICY_README; access(5).
 */
import type { Decision, TransactionEffects } from '../restrictions/state.js';

export type VerdictKind = 'greylist' | 'reject' | 'defer' | 'dunno' | 'prepend' | 'discard' | 'hold' | 'redirect' | 'filter' | 'bcc';

export interface PolicyVerdict {
  /** The text after "action=". */
  readonly action: string;
  readonly kind: VerdictKind;
  /** Provenance: the restriction name or the table's FILE:LINE that decided. */
  readonly rule: string | null;
  /** Effects that could not be sent with it (one action per reply). */
  readonly dropped: readonly string[];
}

/**
 * "<name>: Class rejected: " (the reply classes of smtpd_check.c), or the bare "<name>: " of
 * replies such as "<rcpt>: Relay access denied".
 */
const PREFIX = /^<[^\n]*?>: (?:(?:Client host|Unverified Client host|Helo command|Sender address|Recipient address|Data command|End-of-data) rejected: )?/;
const EFFECT_PREFIX = /^<[^\n]*?>: (?:Client host|Unverified Client host|Helo command|Sender address|Recipient address|Data command|End-of-data) /;

/** The text as Postfix will re-prefix it: without the engine's "<name>: [Class rejected: ]". */
export function bareText(text: string): string {
  const m = PREFIX.exec(text);
  return m ? text.slice(m[0].length) : text;
}

function bareEffectText(text: string): string {
  const m = EFFECT_PREFIX.exec(text);
  return m ? text.slice(m[0].length) : text;
}

/**
 * A greylisting deferral (check_greylist deferred and its note says "greylist"), as opposed
 * to check_greylist's own failures (451 4.3.0 / 4.3.5, which are sent as they are).
 */
export function isGreylisted(d: Decision, fx: TransactionEffects): boolean {
  return d.kind === 'defer' && d.rule === 'check_greylist' && fx.notes.some((n) => n.greylist?.action === 'greylist');
}

export function policyAction(d: Decision, fx: TransactionEffects): PolicyVerdict {
  if (d.kind !== 'permit') {
    const text = bareText(d.reply.text);
    if (isGreylisted(d, fx)) {
      // DEFER_IF_PERMIT keeps Postfix's semantics: a later hard reject in its list still wins.
      return { action: `DEFER_IF_PERMIT ${d.reply.status} ${text}`, kind: 'greylist', rule: d.rule, dropped: [] };
    }
    return { action: `${d.reply.code} ${d.reply.status} ${text}`, kind: d.kind, rule: d.rule, dropped: [] };
  }
  const candidates: Array<{ kind: VerdictKind; action: string; rule: string }> = [];
  if (fx.discard) candidates.push({ kind: 'discard', action: `DISCARD ${bareEffectText(fx.discard.text)}`, rule: fx.discard.rule });
  if (fx.hold) candidates.push({ kind: 'hold', action: `HOLD ${bareEffectText(fx.hold.text)}`, rule: fx.hold.rule });
  if (fx.redirect) candidates.push({ kind: 'redirect', action: `REDIRECT ${fx.redirect.address}`, rule: fx.redirect.rule });
  if (fx.filter) candidates.push({ kind: 'filter', action: `FILTER ${fx.filter.nexthop}`, rule: fx.filter.rule });
  if (fx.bcc) candidates.push({ kind: 'bcc', action: `BCC ${fx.bcc.address}`, rule: fx.bcc.rule });
  for (const p of fx.prepend) candidates.push({ kind: 'prepend', action: `PREPEND ${p.header}`, rule: p.rule });
  const first = candidates[0];
  if (!first) return { action: 'DUNNO', kind: 'dunno', rule: d.rule, dropped: [] };
  return { action: first.action, kind: first.kind, rule: first.rule, dropped: candidates.slice(1).map((c) => c.action) };
}
