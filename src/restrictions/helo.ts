/**
 * @module restrictions/helo
 * SUMMARY: HELO/EHLO restrictions: reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname,
 * reject_unknown_helo_hostname (and their pre-2.3 names reject_invalid_hostname,
 * reject_non_fqdn_hostname, reject_unknown_hostname). "[address]" literals are checked as
 * addresses ("IPv6:" prefix required for IPv6). Nothing is checked before HELO.
 * DIAGNOSTICS: a DNS timeout is not a reject: it defers only if the request would otherwise
 * be permitted (unknown_helo_hostname_tempfail_action, default defer_if_permit).
 * SEE ALSO: postconf(5); Postfix smtpd_check.c reject_invalid_hostname(),
 * reject_non_fqdn_hostname(), reject_unknown_hostname(), reject_invalid_hostaddr().
 */
import { isValidHostAddr, isValidHostname, mailhostAddr, stripTrailingDot } from '../mail/address.js';
import { lookupTypes } from '../dns/resolver.js';
import { CLASS_HELO, DUNNO, deferIfPermitOrReject, reject, type Eval, type RunResult } from './evaluate.js';
import type { Env, RestrictionDef } from './registry.js';

/** reject_invalid_hostaddr(): "[1.2.3.4]" or "[IPv6:...]". */
function invalidHostaddr(ev: Eval, env: Env, helo: string): RunResult {
  const inner = helo.length > 2 && helo.endsWith(']') ? helo.slice(1, -1) : helo;
  if (mailhostAddr(inner) !== null) return DUNNO;
  return reject(ev, 'policy', env.codes.invalid_hostname_reject_code!, '5.5.2', `<${helo}>: ${CLASS_HELO} rejected: invalid ip address`);
}

function invalidHelo(env: Env) {
  return (ev: Eval): RunResult => {
    const helo = ev.helo;
    if (helo === undefined) return DUNNO;
    if (helo.startsWith('[')) return invalidHostaddr(ev, env, helo);
    const name = stripTrailingDot(helo);
    if (isValidHostname(name) || isValidHostAddr(name)) return DUNNO;
    return reject(ev, 'policy', env.codes.invalid_hostname_reject_code!, '5.5.2', `<${helo}>: ${CLASS_HELO} rejected: Invalid name`);
  };
}

function nonFqdnHelo(env: Env) {
  return (ev: Eval): RunResult => {
    const helo = ev.helo;
    if (helo === undefined) return DUNNO;
    if (helo.startsWith('[')) return invalidHostaddr(ev, env, helo);
    const name = stripTrailingDot(helo);
    if (isValidHostname(name) && name.includes('.')) return DUNNO;
    return reject(ev, 'policy', env.codes.non_fqdn_reject_code!, '5.5.2', `<${helo}>: ${CLASS_HELO} rejected: need fully-qualified hostname`);
  };
}

function unknownHelo(env: Env) {
  return (ev: Eval): RunResult => {
    const helo = ev.helo;
    if (helo === undefined) return DUNNO;
    if (helo.startsWith('[')) return invalidHostaddr(ev, env, helo);
    return lookupTypes(env.dns, helo, ['A', 'AAAA', 'MX'], false).then((status) => {
      // A name with a null MX is still a name: MTAs may publish one.
      if (status === 'ok' || status === 'nullmx') return DUNNO;
      if (status !== 'retry') {
        return reject(ev, 'policy', env.codes.unknown_hostname_reject_code!, '4.7.1', `<${helo}>: ${CLASS_HELO} rejected: Host not found`);
      }
      return deferIfPermitOrReject(ev, env.tempfail.unknownHelo, 'policy', 450, '4.7.1', `<${helo}>: ${CLASS_HELO} rejected: Host not found`);
    });
  };
}

export const HELO_RESTRICTIONS: readonly RestrictionDef[] = [
  { name: 'reject_invalid_helo_hostname', args: 0, compile: (_a, cx) => invalidHelo(cx.env) },
  { name: 'reject_invalid_hostname', args: 0, compile: (_a, cx) => invalidHelo(cx.env) },
  { name: 'reject_non_fqdn_helo_hostname', args: 0, compile: (_a, cx) => nonFqdnHelo(cx.env) },
  { name: 'reject_non_fqdn_hostname', args: 0, compile: (_a, cx) => nonFqdnHelo(cx.env) },
  { name: 'reject_unknown_helo_hostname', args: 0, compile: (_a, cx) => unknownHelo(cx.env) },
  { name: 'reject_unknown_hostname', args: 0, compile: (_a, cx) => unknownHelo(cx.env) },
];
