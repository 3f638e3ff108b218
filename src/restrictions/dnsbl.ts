/**
 * @module restrictions/dnsbl
 * SUMMARY: DNS list restrictions: reject_rbl_client SITE (reject_rbl), permit_dnswl_client,
 * reject_rhsbl_client, reject_rhsbl_reverse_client, reject_rhsbl_helo, reject_rhsbl_sender,
 * reject_rhsbl_recipient, permit_rhswl_client. SITE is "domain" or "domain=filter" with
 * Postfix's reply filter syntax (127.0.0.[2..11]). A listing is answered from
 * rbl_reply_maps (keyed by SITE, then by domain) or default_rbl_reply, whose $rbl_code,
 * $rbl_class, $rbl_what, $rbl_domain and $rbl_reason are expanded.
 * DIAGNOSTICS: a DNS failure, a 127.255.255.x "query refused" answer or an answer outside
 * 127/8 never rejects: the check is skipped (fail open, as Postfix does) and a warning note
 * says why; for an allow list the failure defers a later reject instead.
 * SEE ALSO: postconf(5) reject_rbl_client, default_rbl_reply, rbl_reply_maps; Postfix
 * smtpd_check.c reject_rbl_addr(), permit_dnswl_addr(), find_dnsxl_domain(),
 * rbl_reject_reply().
 */
import { expand } from '../config/expand.js';
import { clientQuery, parseDnsxlSite, type DnsxlResult, type DnsxlSite } from '../dns/dnsbl.js';
import { isValidHostname } from '../mail/address.js';
import {
  CLASS_CLIENT,
  CLASS_HELO,
  CLASS_RECIPIENT,
  CLASS_REV_CLIENT,
  CLASS_SENDER,
  DUNNO,
  OK,
  REJECT,
  deferIf,
  dsnFix,
  dsnSplit,
  reject,
  serverError,
  type Eval,
  type RunFn,
  type Status,
} from './evaluate.js';
import { failing, type CompileCtx, type Env, type RestrictionDef } from './registry.js';
import { permitAuthDestination } from './relay.js';

/** The reply for a listing: rbl_reply_maps or default_rbl_reply, expanded. */
function rblReply(ev: Eval, env: Env, site: DnsxlSite, txt: string | null, what: string, cls: string): Status {
  let template: string | null = null;
  for (const table of env.rblReplyMaps) {
    for (const key of site.spec.toLowerCase() === site.domain ? [site.spec] : [site.spec, site.domain]) {
      const r = table.lookup(table.flags.fixed && !table.flags.foldCase ? key.toLowerCase() : key);
      if (r.kind === 'hit') {
        template = r.value;
        break;
      }
      if (r.kind === 'error') return serverError(ev, `rbl_reply_maps: table lookup problem: ${r.error.message}`);
    }
    if (template !== null) break;
  }
  // Values are quoted so that a "$" in a TXT record stays text.
  const q = (v: string): string => v.replace(/\$/g, '$$$$');
  const vars: Record<string, string> = {
    rbl_code: String(env.codes.maps_rbl_reject_code),
    rbl_domain: q(site.domain),
    rbl_reason: q(txt ?? ''),
    rbl_txt: q(txt ?? ''),
    rbl_what: q(what),
    rbl_class: cls,
    client_address: q(ev.client.addr),
    client_name: q(ev.client.name),
    reverse_client_name: q(ev.client.reverseName),
    helo_name: q(ev.helo ?? ''),
    sender: q(ev.sender ?? ''),
    recipient: q(ev.recipient ?? ''),
  };
  let text: string;
  try {
    text = expand(template ?? env.defaultRblReply, (n) => vars[n]);
  } catch {
    ev.note('warning', `bad rbl reply template for domain ${site.spec}: ${template ?? env.defaultRblReply}`);
    text = expand(env.defaultRblReply, (n) => vars[n]);
  }
  if (!/^[45]\d\d /.test(text)) {
    ev.note('warning', `rbl response code configuration error: ${text}`);
    return reject(ev, 'policy', 450, '4.7.1', 'Service unavailable');
  }
  const code = Number(text.slice(0, 3));
  const d = dsnSplit('4.7.1', text.slice(4));
  return reject(ev, 'policy', code, dsnFix(d.dsn, cls), d.text || 'Service unavailable');
}

function warnFailure(ev: Eval, r: DnsxlResult): void {
  if (r.kind === 'error') ev.note('warning', r.reason);
}

/** The domain an RHS list is asked about, or null when Postfix skips the lookup. */
function rhsDomain(what: string): string | null {
  const at = what.lastIndexOf('@');
  let domain = at >= 0 ? what.slice(at + 1) : what;
  if (domain.startsWith('[')) return null;
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  if (domain === '') return null;
  // Some lists refuse "IP address" queries: skip names ending in a numeric label.
  const dot = domain.lastIndexOf('.');
  if (/^\d+$/.test(dot < 0 ? domain : domain.slice(dot + 1))) return null;
  return isValidHostname(domain) ? domain.toLowerCase() : null;
}

function siteArg(arg: string | undefined, cx: CompileCtx): DnsxlSite | null {
  const site = parseDnsxlSite(arg ?? '');
  if ('error' in site) {
    cx.problem(site.error);
    return null;
  }
  return site;
}

/** Which value an address list looks at, and how the reply names it. */
type Subject = (ev: Eval) => { what: string; cls: string } | null;

const SUBJECTS: Record<string, Subject> = {
  reject_rhsbl_client: (ev) => (ev.client.name.toLowerCase() !== 'unknown' ? { what: ev.client.name, cls: CLASS_CLIENT } : null),
  permit_rhswl_client: (ev) => (ev.client.name.toLowerCase() !== 'unknown' ? { what: ev.client.name, cls: CLASS_CLIENT } : null),
  reject_rhsbl_reverse_client: (ev) => (ev.client.reverseName.toLowerCase() !== 'unknown' ? { what: ev.client.reverseName, cls: CLASS_REV_CLIENT } : null),
  reject_rhsbl_helo: (ev) => (ev.helo !== undefined ? { what: ev.helo, cls: CLASS_HELO } : null),
  reject_rhsbl_sender: (ev) => (ev.sender ? { what: ev.sender, cls: CLASS_SENDER } : null),
  reject_rhsbl_recipient: (ev) => (ev.recipient !== undefined ? { what: ev.recipient, cls: CLASS_RECIPIENT } : null),
};

/** permit_dnswl_*: never allow-list a recipient we would not accept anyway (OK = go on). */
function dnswlSafety(ev: Eval, env: Env): Status {
  if (ev.where === 'RCPT' && ev.recipient !== undefined) return permitAuthDestination(ev, env, ev.recipient);
  return OK;
}

function rejectRblClient(site: DnsxlSite, env: Env): RunFn {
  return async (ev) => {
    const q = clientQuery(ev.client.addr);
    if (q === null) return DUNNO;
    const r = await env.dnsxl.query(`${q}.${site.domain}`, site.filter);
    if (r.kind !== 'listed') {
      warnFailure(ev, r);
      return DUNNO;
    }
    return rblReply(ev, env, site, r.txt, ev.client.addr, CLASS_CLIENT);
  };
}

function permitDnswlClient(site: DnsxlSite, env: Env): RunFn {
  return async (ev) => {
    const safe = dnswlSafety(ev, env);
    if (safe === REJECT) return REJECT;
    if (safe !== OK) return DUNNO;
    const q = clientQuery(ev.client.addr);
    if (q === null) return DUNNO;
    const r = await env.dnsxl.query(`${q}.${site.domain}`, site.filter);
    if (r.kind === 'listed') return ev.permit();
    if (r.kind === 'error') {
      warnFailure(ev, r);
      // Not knowing whether the client is allow-listed, do not let a later reject stand.
      return deferIf(ev, 'reject', 'policy', 450, '4.7.1', `<${ev.client.addr}>: ${CLASS_CLIENT} rejected: Service unavailable`);
    }
    return DUNNO;
  };
}

function rejectRhsbl(name: string, site: DnsxlSite, env: Env): RunFn {
  const subject = SUBJECTS[name]!;
  return async (ev) => {
    const s = subject(ev);
    if (!s) return DUNNO;
    const domain = rhsDomain(s.what);
    if (!domain) return DUNNO;
    const r = await env.dnsxl.query(`${domain}.${site.domain}`, site.filter);
    if (r.kind !== 'listed') {
      warnFailure(ev, r);
      return DUNNO;
    }
    return rblReply(ev, env, site, r.txt, s.what, s.cls);
  };
}

function permitRhswl(name: string, site: DnsxlSite, env: Env): RunFn {
  const subject = SUBJECTS[name]!;
  return async (ev) => {
    const s = subject(ev);
    if (!s) return DUNNO;
    const safe = dnswlSafety(ev, env);
    if (safe === REJECT) return REJECT;
    if (safe !== OK) return DUNNO;
    const domain = rhsDomain(s.what);
    if (!domain) return DUNNO;
    const r = await env.dnsxl.query(`${domain}.${site.domain}`, site.filter);
    if (r.kind === 'listed') return ev.permit();
    if (r.kind === 'error') {
      warnFailure(ev, r);
      return deferIf(ev, 'reject', 'policy', 450, '4.7.1', `<${s.what}>: ${s.cls} rejected: Service unavailable`);
    }
    return DUNNO;
  };
}

function def(name: string, make: (site: DnsxlSite, env: Env) => RunFn): RestrictionDef {
  return {
    name,
    args: 1,
    argKind: 'domain',
    compile: (arg, cx) => {
      const site = siteArg(arg, cx);
      return site ? make(site, cx.env) : failing(`restriction ${name}: bad DNS list "${arg}"`);
    },
  };
}

export const DNSBL_RESTRICTIONS: readonly RestrictionDef[] = [
  def('reject_rbl_client', rejectRblClient),
  def('reject_rbl', rejectRblClient),
  def('permit_dnswl_client', permitDnswlClient),
  def('reject_rhsbl_client', (s, e) => rejectRhsbl('reject_rhsbl_client', s, e)),
  def('reject_rhsbl_reverse_client', (s, e) => rejectRhsbl('reject_rhsbl_reverse_client', s, e)),
  def('reject_rhsbl_helo', (s, e) => rejectRhsbl('reject_rhsbl_helo', s, e)),
  def('reject_rhsbl_sender', (s, e) => rejectRhsbl('reject_rhsbl_sender', s, e)),
  def('reject_rhsbl_recipient', (s, e) => rejectRhsbl('reject_rhsbl_recipient', s, e)),
  def('permit_rhswl_client', (s, e) => permitRhswl('permit_rhswl_client', s, e)),
];
