/**
 * @module policyd/policy
 * SUMMARY: the restriction engine as the policy service uses it. compilePolicyServicePolicy
 * (deps) compiles `policy_service_restrictions` as the only list of a Policy whose
 * checkRcpt() answers each policy request: a snapshot of the configuration in which
 * smtpd_recipient_restrictions is that list and every other smtpd_*_restrictions list is
 * empty (Postfix runs its own), with no implicit reject_unlisted_recipient/sender (the
 * recipients are the Postfix host's, not greygate's) and a relay list that always permits
 * (relay control is the Postfix host's job; see RELAY_GUARD).
 * DIAGNOSTICS: returns only the Problems of policy_service_restrictions itself, placed at
 * its main.cf line; the rest of the snapshot is reported by the main smtpd policy.
 * SEE ALSO: restrictions/policy.ts compilePolicy(); SMTPD_POLICY_README.
 */
import type { Problem } from '../errors.js';
import type { Config } from '../config/config.js';
import { compilePolicy, type Policy, type PolicyDeps } from '../restrictions/policy.js';

export const POLICY_SERVICE_RESTRICTIONS = 'policy_service_restrictions';

/** A restriction class whose only entry is `permit` (see RELAY_GUARD). */
export const RELAY_GUARD_CLASS = 'greygate_policy_service_relay_ok';

/**
 * compilePolicy() refuses a Policy with no working reject_unauth_destination-like entry
 * (the open-relay safety net). The policy service relays nothing, so its relay list is an
 * entry that always permits followed by a `reject` that is never reached: the check is
 * satisfied. The entry is a restriction class holding `permit` (a bare `permit` would end
 * the check; a table such as static:OK would cost a client-name lookup per request).
 */
export const RELAY_GUARD = `${RELAY_GUARD_CLASS}, reject`;

/** The configuration snapshot the policy service's Policy is compiled from. */
export function policyServiceConfig(config: Config): Config {
  const classes = config.raw('smtpd_restriction_classes') ?? '';
  return config.withOverrides({
    smtpd_restriction_classes: classes.trim() === '' ? RELAY_GUARD_CLASS : `${classes}, ${RELAY_GUARD_CLASS}`,
    [RELAY_GUARD_CLASS]: 'permit',
    smtpd_client_restrictions: '',
    smtpd_helo_restrictions: '',
    smtpd_sender_restrictions: '',
    smtpd_relay_restrictions: RELAY_GUARD,
    smtpd_recipient_restrictions: config.get(POLICY_SERVICE_RESTRICTIONS),
    smtpd_data_restrictions: '',
    smtpd_end_of_data_restrictions: '',
    smtpd_relay_before_recipient_restrictions: 'yes',
    smtpd_reject_unlisted_recipient: 'no',
    smtpd_reject_unlisted_sender: 'no',
  });
}

export function compilePolicyServicePolicy(deps: PolicyDeps): { policy: Policy; problems: Problem[] } {
  const base = deps.config;
  const { policy, problems } = compilePolicy({ ...deps, config: policyServiceConfig(base) });
  const line = base.lineOf(POLICY_SERVICE_RESTRICTIONS);
  // Overridden parameters have line 0: those problems are the service list's own.
  const own = problems
    .filter((p) => p.file === base.file && p.line === 0)
    .map((p) => ({ ...p, line, message: p.message.replaceAll('smtpd_recipient_restrictions', POLICY_SERVICE_RESTRICTIONS) }));
  const tables = problems.filter((p) => p.file !== base.file);
  return { policy, problems: [...own, ...tables] };
}
