/**
 * @module greylist/org-domain
 * SUMMARY: the organisation a verified client name belongs to, for greylisting's
 * organisation grouping (big senders that retry from another network): its registrable
 * domain, public suffix + one label, from the Public Suffix List bundled with tldts (ICANN
 * and private sections, no network access). orgDomain() returns { domain } or { skip }
 * with the reason no grouping applies.
 * A name gives no organisation when it is "unknown" (not forward-confirmed), is not a valid
 * host name, has no registrable domain (a bare public suffix, an IP literal, a per-host
 * private suffix such as *.compute-1.amazonaws.com), or looks derived from the client IP
 * (dynamic/pool names such as c-73-1-2-3.hsd1.ma.comcast.net: all four IPv4 octets in
 * either order, or the address as one decimal or hex number), since grouping those would
 * let a whole ISP's customers stand in for one another.
 * SEE ALSO: https://publicsuffix.org; haraka-plugin-greylist craft_hostid(); semantics.md 1.8.
 */
import { parse } from 'tldts';
import ipaddr from 'ipaddr.js';
import { isValidHostname } from '../mail/address.js';
import { normalizeClientAddress } from '../mail/mynetworks.js';

export type OrgDomain = { readonly domain: string } | { readonly skip: string };

/** True when NAME spells out the IPv4 address ADDR (dynamic / generic rDNS). */
export function looksIpDerived(name: string, addr: string): boolean {
  const a = normalizeClientAddress(addr);
  if (!ipaddr.IPv4.isValidFourPartDecimal(a)) return false;
  const octets = a.split('.');
  const tokens = name.toLowerCase().split(/[^0-9a-z]+/);
  const numbers = name.split(/[^0-9]+/).filter((t) => t !== '').map((t) => String(Number(t)));
  const joined = ',' + numbers.join(',') + ',';
  if (joined.includes(',' + octets.join(',') + ',') || joined.includes(',' + [...octets].reverse().join(',') + ',')) return true;
  const value = ipaddr.IPv4.parse(a).toByteArray().reduce((n, b) => n * 256 + b, 0);
  const hex = value.toString(16).padStart(8, '0');
  return numbers.includes(String(value)) || tokens.some((t) => t.includes(hex));
}

export function orgDomain(clientName: string, clientAddress: string): OrgDomain {
  const name = clientName.toLowerCase().replace(/\.$/, '');
  if (name === '' || name === 'unknown') return { skip: 'client name not verified' };
  if (!isValidHostname(name) || !name.includes('.')) return { skip: `client name ${name} is not a domain name` };
  if (looksIpDerived(name, clientAddress)) return { skip: `client name ${name} looks derived from the IP address` };
  const p = parse(name, { allowPrivateDomains: true });
  if (p.isIp || !p.domain) return { skip: `client name ${name} has no registrable domain` };
  return { domain: p.domain };
}
