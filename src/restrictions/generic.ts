/**
 * @module restrictions/generic
 * SUMMARY: the restrictions that look at no address: permit, reject, defer,
 * defer_if_permit, defer_if_reject, sleep N, reject_unauth_pipelining,
 * reject_plaintext_session. (warn_if_reject is handled by the walker itself.)
 * Replies use the list's "<name>: Class rejected:" prefix, as Postfix does.
 * SEE ALSO: postconf(5) "Generic restrictions"; Postfix smtpd_check.c generic_checks().
 */
import { DUNNO, deferIf, deferIfPermitOrReject, reject, type Eval } from './evaluate.js';
import type { RestrictionDef } from './registry.js';

export const GENERIC_RESTRICTIONS: readonly RestrictionDef[] = [
  {
    name: 'permit',
    args: 0,
    compile: () => (ev) => ev.permit(),
  },
  {
    name: 'defer',
    args: 0,
    compile: (_a, cx) => {
      const code = cx.env.codes.defer_code!;
      return (ev, fr) => reject(ev, 'policy', code, '4.3.2', `<${fr.replyName}>: ${fr.replyClass} rejected: Try again later`);
    },
  },
  {
    name: 'reject',
    args: 0,
    compile: (_a, cx) => {
      const code = cx.env.codes.reject_code!;
      return (ev, fr) => reject(ev, 'policy', code, '5.7.1', `<${fr.replyName}>: ${fr.replyClass} rejected: Access denied`);
    },
  },
  {
    name: 'defer_if_permit',
    args: 0,
    compile: () => (ev, fr) => deferIfPermitOrReject(ev, true, 'policy', 450, '4.7.0', `<${fr.replyName}>: ${fr.replyClass} rejected: defer_if_permit requested`),
  },
  {
    name: 'defer_if_reject',
    args: 0,
    compile: () => (ev, fr) => deferIf(ev, 'reject', 'policy', 450, '4.7.0', `<${fr.replyName}>: ${fr.replyClass} rejected: defer_if_reject requested`),
  },
  {
    name: 'sleep',
    args: 1,
    argKind: 'number',
    compile: (arg) => {
      const ms = Number(arg) * 1000;
      return () =>
        new Promise((resolve) => {
          setTimeout(() => resolve(DUNNO), ms).unref();
        });
    },
  },
  {
    name: 'reject_unauth_pipelining',
    args: 0,
    compile: () => (ev, fr) =>
      ev.s.unauthPipelining ? reject(ev, 'protocol', 503, '5.5.0', `<${fr.replyName}>: ${fr.replyClass} rejected: Improper use of SMTP command pipelining`) : DUNNO,
  },
  {
    name: 'reject_plaintext_session',
    args: 0,
    compile: (_a, cx) => {
      const code = cx.env.codes.plaintext_reject_code!;
      return (ev: Eval) => (ev.s.tls ? DUNNO : reject(ev, 'policy', code, '4.7.1', 'Session encryption is required'));
    },
  },
];
