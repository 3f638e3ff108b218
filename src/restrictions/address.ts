/**
 * @module restrictions/address
 * SUMMARY: sender and recipient address restrictions: reject_non_fqdn_sender/recipient,
 * reject_unknown_sender_domain / reject_unknown_recipient_domain (MX, A, AAAA; null MX is a
 * reject), reject_unlisted_sender / reject_unlisted_recipient (check_recipient_maps) and
 * reject_multi_recipient_bounce. checkRcptMaps() is also the implicit
 * reject_unlisted_recipient that ends every RCPT check (smtpd_reject_unlisted_recipient).
 * A local recipient is known when its local-part (with or without the recipient_delimiter
 * extension) is a mailbox user, or is found in local_recipient_maps.
 * DIAGNOSTICS: DNS timeouts defer only if the request would otherwise pass
 * (unknown_address_tempfail_action); local_recipient_maps failures answer 451 4.3.0
 * (retry) or 451 4.3.5 (configuration).
 * SEE ALSO: postconf(5); Postfix smtpd_check.c reject_non_fqdn_address(),
 * reject_unknown_address(), check_rcpt_maps(); mail_addr_find.c.
 */
import { isValidHostname, splitAddress, splitExtension, stripTrailingDot } from '../mail/address.js';
import { lookupKey, type AccessKey } from '../mail/access-keys.js';
import { lookupTypes } from '../dns/resolver.js';
import {
  CLASS_RECIPIENT,
  CLASS_SENDER,
  DUNNO,
  deferIfPermitOrReject,
  dictRetry,
  reject,
  serverError,
  type Eval,
  type RunResult,
  type Status,
} from './evaluate.js';
import type { Env, RestrictionDef } from './registry.js';

/** reject_non_fqdn_address(): the domain must be a dotted host name (literals pass). */
export function nonFqdnAddress(ev: Eval, env: Env, addr: string, cls: string): Status {
  const at = addr.lastIndexOf('@');
  const domain = at < 0 ? '' : addr.slice(at + 1);
  if (domain.startsWith('[') && domain.endsWith(']')) return DUNNO;
  const test = stripTrailingDot(domain);
  if (test !== '' && isValidHostname(test) && test.includes('.')) return DUNNO;
  return reject(ev, 'policy', env.codes.non_fqdn_reject_code!, '4.5.2', `<${addr}>: ${cls} rejected: need fully-qualified address`);
}

/** reject_unknown_address(): a non-local domain needs an MX, A or AAAA record. */
export function unknownAddress(ev: Eval, env: Env, addr: string, cls: string): RunResult {
  const r = env.resolve(addr);
  if (r.fail) return dictRetry(ev, addr);
  const at = r.recipient.lastIndexOf('@');
  if (at < 0) return DUNNO;
  if (r.class === 'local') return DUNNO;
  const domain = r.recipient.slice(at + 1);
  if (domain.startsWith('[') && domain.endsWith(']')) return DUNNO;
  const sender = cls === CLASS_SENDER;
  return lookupTypes(env.dns, domain, ['MX', 'A', 'AAAA'], true).then((status) => {
    if (status === 'ok') return DUNNO;
    if (status === 'nullmx') {
      return reject(ev, 'policy', sender ? 550 : 556, sender ? '4.7.27' : '4.1.10', `<${addr}>: ${cls} rejected: Domain ${domain} does not accept mail (nullMX)`);
    }
    const dsn = sender ? '4.1.8' : '4.1.2';
    if (status === 'retry') {
      return deferIfPermitOrReject(ev, env.tempfail.unknownAddress, 'policy', 450, dsn, `<${addr}>: ${cls} rejected: Domain not found`);
    }
    return reject(ev, 'policy', env.codes.unknown_address_reject_code!, dsn, `<${addr}>: ${cls} rejected: Domain not found`);
  });
}

/** Local-parts that always exist: the postmaster and our own bounce senders. */
const ALWAYS_LOCAL = ['postmaster@', 'mailer-daemon@', 'double-bounce@'];

/** local_recipient_maps keys, mail_addr_find() default order, external form first. */
function localRecipientKeys(resolved: string, delimiters: string): AccessKey[] {
  const { local, domain } = splitAddress(resolved);
  const { base, ext } = splitExtension(local, delimiters);
  const keys: AccessKey[] = [{ key: resolved, partial: false }];
  if (ext !== null) keys.push({ key: `${base}@${domain}`, partial: true });
  keys.push({ key: local, partial: true });
  if (ext !== null) keys.push({ key: base, partial: true });
  if (domain !== null) keys.push({ key: `@${domain}`, partial: true });
  return keys;
}

/**
 * check_rcpt_maps(): reject an address in a local domain whose user is unknown. ADDR is
 * what the client sent; CLS says whether it is the sender or a recipient.
 */
export function checkRcptMaps(ev: Eval, env: Env, addr: string, cls: string): Status {
  const r = env.resolve(addr);
  if (r.fail) return dictRetry(ev, addr);
  if (r.class !== 'local') return DUNNO;
  const rcpt = r.recipient;
  for (const prefix of ALWAYS_LOCAL) if (rcpt.startsWith(prefix)) return DUNNO;
  const { local } = splitAddress(rcpt);
  if (env.localUsers.exists(local)) return DUNNO;
  const { base, ext } = splitExtension(local, env.recipientDelimiter);
  if (ext !== null && env.localUsers.exists(base)) return DUNNO;
  for (const k of localRecipientKeys(rcpt, env.recipientDelimiter)) {
    for (const table of env.localRecipientMaps) {
      const res = lookupKey(table, k);
      if (res.kind === 'hit') return DUNNO;
      if (res.kind === 'error') {
        if (res.error.kind === 'retry') return dictRetry(ev, addr, `${table.spec}: table lookup problem: ${res.error.message}`);
        return serverError(ev, `${table.spec}: table lookup problem: ${res.error.message}`);
      }
    }
  }
  return reject(
    ev,
    'bounce',
    env.codes.unknown_local_recipient_reject_code!,
    cls === CLASS_SENDER ? '5.1.0' : '5.1.1',
    `<${addr}>: ${cls} rejected: User unknown${env.codes.show_user_unknown_table_name ? ' in local recipient table' : ''}`,
  );
}

/** check_recipient_rcpt_maps(): once per RCPT, unless only warning. */
export function checkRecipientRcptMaps(ev: Eval, env: Env, recipient: string): Status {
  if (ev.recipientRcptmapChecked) return DUNNO;
  if (ev.warnIfReject === 0) ev.recipientRcptmapChecked = true;
  return checkRcptMaps(ev, env, recipient, CLASS_RECIPIENT);
}

/** check_sender_rcpt_maps(): once per MAIL, unless only warning. */
export function checkSenderRcptMaps(ev: Eval, env: Env, sender: string): Status {
  if (ev.senderRcptmapChecked) return DUNNO;
  if (ev.warnIfReject === 0) ev.senderRcptmapChecked = true;
  return checkRcptMaps(ev, env, sender, CLASS_SENDER);
}

function unlistedRecipient(env: Env) {
  return (ev: Eval): Status => (ev.recipient ? checkRecipientRcptMaps(ev, env, ev.recipient) : DUNNO);
}

export const ADDRESS_RESTRICTIONS: readonly RestrictionDef[] = [
  {
    name: 'reject_non_fqdn_sender',
    args: 0,
    compile: (_a, cx) => (ev) => (ev.sender ? nonFqdnAddress(ev, cx.env, ev.sender, CLASS_SENDER) : DUNNO),
  },
  {
    name: 'reject_non_fqdn_recipient',
    args: 0,
    compile: (_a, cx) => (ev) => (ev.recipient !== undefined ? nonFqdnAddress(ev, cx.env, ev.recipient, CLASS_RECIPIENT) : DUNNO),
  },
  {
    name: 'reject_unknown_sender_domain',
    args: 0,
    compile: (_a, cx) => (ev) => (ev.sender ? unknownAddress(ev, cx.env, ev.sender, CLASS_SENDER) : DUNNO),
  },
  {
    name: 'reject_unknown_address',
    args: 0,
    compile: (_a, cx) => (ev) => (ev.sender ? unknownAddress(ev, cx.env, ev.sender, CLASS_SENDER) : DUNNO),
  },
  {
    name: 'reject_unknown_recipient_domain',
    args: 0,
    compile: (_a, cx) => (ev) => (ev.recipient !== undefined ? unknownAddress(ev, cx.env, ev.recipient, CLASS_RECIPIENT) : DUNNO),
  },
  {
    name: 'reject_unlisted_sender',
    args: 0,
    compile: (_a, cx) => (ev) => (ev.sender ? checkSenderRcptMaps(ev, cx.env, ev.sender) : DUNNO),
  },
  { name: 'reject_unlisted_recipient', args: 0, compile: (_a, cx) => unlistedRecipient(cx.env) },
  { name: 'check_recipient_maps', args: 0, compile: (_a, cx) => unlistedRecipient(cx.env) },
  {
    name: 'reject_multi_recipient_bounce',
    args: 0,
    compile: (_a, cx) => {
      const code = cx.env.codes.multi_recipient_bounce_reject_code!;
      return (ev, fr) =>
        ev.sender === '' && ev.s.recipients.length > (ev.where === 'RCPT' ? 0 : 1)
          ? reject(ev, 'policy', code, '5.5.3', `<${fr.replyName}>: ${fr.replyClass} rejected: Multi-recipient bounce`)
          : DUNNO;
    },
  },
];
