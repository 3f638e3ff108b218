/**
 * @module restrictions/client
 * SUMMARY: client restrictions: permit_mynetworks, permit_inet_interfaces,
 * permit_sasl_authenticated, reject_unknown_client_hostname (reject_unknown_client),
 * reject_unknown_reverse_client_hostname. The client name is the forward-confirmed one
 * (ClientInfo.name, or "unknown"); reverseName is the bare PTR.
 * DIAGNOSTICS: a mynetworks table failure answers 451 4.3.0 <name>: Temporary lookup
 * failure (never a permit).
 * SEE ALSO: postconf(5); Postfix smtpd_check.c permit_mynetworks(), reject_unknown_client(),
 * reject_unknown_reverse_name().
 */
import { DUNNO, dictRetry, reject } from './evaluate.js';
import type { RestrictionDef } from './registry.js';

const unknownClient: RestrictionDef['compile'] = (_a, cx) => {
  const permCode = cx.env.codes.unknown_client_reject_code!;
  // RFC 7372: 4.7.25 "reverse DNS validation failed".
  return (ev) =>
    ev.client.nameStatus === 'ok'
      ? DUNNO
      : reject(
          ev,
          'policy',
          ev.client.nameStatus === 'temp' ? 450 : permCode,
          '4.7.25',
          `Client host rejected: cannot find your hostname, [${ev.client.addr}]`,
        );
};

export const CLIENT_RESTRICTIONS: readonly RestrictionDef[] = [
  {
    name: 'permit_mynetworks',
    args: 0,
    compile: (_a, cx) => {
      const list = cx.env.mynetworks;
      return (ev, fr) => {
        const m = list.match(ev.client.addr, ev.client.name);
        if (m === 'error') return dictRetry(ev, fr.replyName, 'mynetworks: table lookup problem');
        return m ? ev.permit() : DUNNO;
      };
    },
  },
  {
    name: 'permit_inet_interfaces',
    args: 0,
    compile: (_a, cx) => {
      const own = cx.env.ownAddresses;
      return (ev) => (own.has(ev.client.addr) ? ev.permit() : DUNNO);
    },
  },
  {
    name: 'permit_sasl_authenticated',
    args: 0,
    compile: () => (ev) => (ev.s.saslUsername ? ev.permit() : DUNNO),
  },
  { name: 'reject_unknown_client_hostname', args: 0, compile: unknownClient },
  { name: 'reject_unknown_client', args: 0, compile: unknownClient },
  {
    name: 'reject_unknown_reverse_client_hostname',
    args: 0,
    compile: (_a, cx) => {
      const permCode = cx.env.codes.unknown_client_reject_code!;
      return (ev) =>
        ev.client.reverseNameStatus === 'ok'
          ? DUNNO
          : reject(
              ev,
              'policy',
              ev.client.reverseNameStatus === 'perm' ? permCode : 450,
              '4.7.1',
              `Client host rejected: cannot find your reverse hostname, [${ev.client.addr}]`,
            );
    },
  },
];
