/**
 * @module greylist/triplet
 * SUMMARY: postgrey's triplet key, built exactly as postgrey 1.37 builds it: the client
 * network (the network address of the client IP under greylist_ipv4_prefix /
 * greylist_ipv6_prefix; 32 / 128 = the full address, postgrey's --lookup-by-host), the
 * normalised sender (do_sender_substitutions: BATV "prvs=" tag removed in either tag order,
 * "+ext" removed, every numeric word replaced by "#") and the recipient as given, all
 * lowercased. Exports normalizeSender(), clientNetwork(), clientIp(), tripletKey(),
 * formatTripletKey(), and dottedQuad() (the IPv4 fast path every lookup takes: a dotted
 * quad is read by hand, anything else through ipaddr.js).
 * DIAGNOSTICS: none; an address that is not an IP is keyed by its own text.
 * SEE ALSO: postgrey(8) do_sender_substitutions(), do_client_substitutions();
 * shared semantics.md 1.2 step 6.
 */
import ipaddr from 'ipaddr.js';
import { normalizeClientAddress } from '../mail/mynetworks.js';

/** One greylisting triplet, in the structured form the stores keep (all lowercase). */
export interface TripletKey {
  /** Client network address ("192.0.2.0", "2001:db8::"), the full IP, or "org:DOMAIN". */
  readonly net: string;
  readonly sender: string;
  readonly recipient: string;
}

/** "net/sender/recipient", postgrey's own key text (what the log and `explain` show). */
export function formatTripletKey(k: TripletKey): string {
  return `${k.net}/${k.sender}/${k.recipient}`;
}

// Perl's /^[0-9a-z]{10}/ on a BATV part: the 10-character tag-val (key number, day, hash).
const BATV_TAG = /^[0-9a-z]{10}/;

/** Perl split(/=/, $s): fields, with trailing empty fields removed. */
function perlSplitEq(s: string): string[] {
  const parts = s.split('=');
  while (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/**
 * do_sender_substitutions(): the sender as postgrey keys it. Case is kept here (the key is
 * lowercased as a whole, as postgrey's `lc` does); "prvs=" is recognised in lowercase only,
 * as in postgrey.
 */
export function normalizeSender(addr: string): string {
  const at = addr.indexOf('@');
  if (at < 0) return addr;
  let user = addr.slice(0, at);
  const domain = addr.slice(at + 1);
  // BATV is prvs=tag-val=loc-core@, but sometimes shows up as prvs=loc-core=tag-val@.
  if (user.startsWith('prvs=')) {
    const a = perlSplitEq(user);
    if (a.length === 3) {
      const t1 = BATV_TAG.test(a[1]!);
      const t2 = BATV_TAG.test(a[2]!);
      if (t1 && !t2) user = a[2]!;
      else if (t2 && !t1) user = a[1]!;
      else user = a[2]!;
    }
  }
  // The extension (mailing-list VERP) goes, and so does every number (one key per list).
  const plus = user.indexOf('+');
  if (plus >= 0) user = user.slice(0, plus);
  user = user.replace(/\b\d+\b/g, '#');
  return `${user}@${domain}`;
}

/**
 * A dotted quad as an unsigned 32-bit number, or -1: exactly the strings ipaddr.js's
 * IPv4.isValidFourPartDecimal() accepts (four decimal parts of 0-255, no leading zeros).
 */
export function dottedQuad(s: string): number {
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 255) return -1;
      value = value * 256 + part;
      parts++;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      // "0" alone is a part, "01" is not (ipaddr.js reads leading zeros as octal elsewhere).
      if (digits === 1 && part === 0) return -1;
      part = part * 10 + (c - 48);
      digits++;
    } else return -1;
  }
  return parts === 4 ? value : -1;
}

function quadText(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

function parseIp(addr: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const a = normalizeClientAddress(addr);
  if (ipaddr.IPv4.isValidFourPartDecimal(a)) return ipaddr.IPv4.parse(a);
  if (a.includes(':') && ipaddr.IPv6.isValid(a)) return ipaddr.IPv6.parse(a);
  return null;
}

/** The client IP in canonical form (IPv4-mapped IPv6 as IPv4): the auto-whitelist key. */
export function clientIp(addr: string): string {
  // A valid dotted quad is its own canonical form.
  if (dottedQuad(addr) >= 0) return addr;
  const ip = parseIp(addr);
  return ip ? ip.toString() : addr.toLowerCase();
}

/**
 * do_client_substitutions(): the network address of ADDR under the configured prefix
 * ("192.0.2.0" for 192.0.2.77 at /24). IPv6 is printed compressed ("2001:db8:1:2::"),
 * where postgrey prints NetAddr::IP's long upper-case form; keys are ours alone.
 */
export function clientNetwork(addr: string, ipv4Prefix: number, ipv6Prefix: number): string {
  const v4 = dottedQuad(addr);
  if (v4 >= 0) {
    if (ipv4Prefix >= 32) return addr;
    const mask = ipv4Prefix <= 0 ? 0 : (0xffffffff << (32 - ipv4Prefix)) >>> 0;
    return quadText((v4 & mask) >>> 0);
  }
  const ip = parseIp(addr);
  if (!ip) return addr.toLowerCase();
  const isV4 = ip.kind() === 'ipv4';
  const prefix = isV4 ? ipv4Prefix : ipv6Prefix;
  const max = isV4 ? 32 : 128;
  if (prefix >= max) return ip.toString();
  const bytes = ip.toByteArray();
  for (let bit = Math.max(0, prefix); bit < max; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return ipaddr.fromByteArray(bytes).toString();
}

export interface KeyOptions {
  readonly ipv4Prefix: number;
  readonly ipv6Prefix: number;
}

/** The postgrey triplet of one attempt: lc "<client_net>/<sender'>/<recipient>". */
export function tripletKey(clientAddress: string, sender: string, recipient: string, o: KeyOptions): TripletKey {
  return {
    net: clientNetwork(clientAddress, o.ipv4Prefix, o.ipv6Prefix).toLowerCase(),
    sender: normalizeSender(sender).toLowerCase(),
    recipient: recipient.toLowerCase(),
  };
}
