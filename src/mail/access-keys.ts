/**
 * @module mail/access-keys
 * SUMMARY: the access(5) search order, as lists of keys to try in turn. Each key says whether
 * it is partial: partial keys (parent domains, user@domain without extension, user@,
 * truncated IP addresses) are only tried against exact-key tables (Table.flags.fixed);
 * pattern tables (regexp, pcre, cidr) see the full key alone. The first key found ends the
 * search, whatever its value (that is how DUNNO stops the substring search).
 * Exports hostKeys(), addressKeys(), mailKeys() and lookupKey().
 * SEE ALSO: access(5) "EMAIL ADDRESS PATTERNS", "HOST NAME/ADDRESS PATTERNS"; Postfix
 * smtpd_check.c check_domain_access(), check_addr_access(); mail_addr_find.c.
 */
import type { LookupResult, Table } from '../tables/table.js';
import { isDotString, isValidHostAddr, splitAddress, splitExtension } from './address.js';

export interface AccessKey {
  readonly key: string;
  /** Only tried against tables with flags.fixed. */
  readonly partial: boolean;
}

/**
 * Host name, then its parent domains: "a.b.c", "b.c", "c" when parent domains match
 * subdomains (smtpd_access_maps in parent_domain_matches_subdomains), else "a.b.c",
 * ".b.c", ".c". A numeric address gets no parent-domain magic.
 */
export function hostKeys(name: string, parentMatches: boolean): AccessKey[] {
  const keys: AccessKey[] = [{ key: name, partial: false }];
  if (name === '' || isValidHostAddr(name)) return keys;
  let pos = 0;
  for (;;) {
    const next = name.indexOf('.', pos + 1);
    if (next < 0) break;
    pos = parentMatches ? next + 1 : next;
    if (pos >= name.length) break;
    keys.push({ key: name.slice(pos), partial: true });
  }
  return keys;
}

/**
 * A client address and its "parent networks" by string truncation: 1.2.3.4, 1.2.3, 1.2, 1;
 * IPv6 is cut at each ":" of its printed (compressed) form, as Postfix does.
 */
export function addressKeys(addr: string): AccessKey[] {
  const delim = addr.includes(':') ? ':' : '.';
  const keys: AccessKey[] = [{ key: addr, partial: false }];
  let cur = addr;
  for (;;) {
    const cut = cur.lastIndexOf(delim);
    if (cut < 0) break;
    cur = cur.slice(0, cut);
    keys.push({ key: cur, partial: true });
  }
  return keys;
}

function quotedLocalKey(local: string, rest: string): string[] {
  // Tables hold keys in external (quoted) form; try that first, then the internal form.
  if (isDotString(local)) return [local + rest];
  const q = `"${local.replace(/["\\\r]/g, (c) => `\\${c}`)}"${rest}`;
  return [q, local + rest];
}

/**
 * An email address (resolved, internal form): user+ext@domain, user@domain, domain and its
 * parents (or .parents), user+ext@, user@. RECIPIENT_DELIMITER is the delimiter set.
 */
export function mailKeys(address: string, delimiters: string, parentMatches: boolean): AccessKey[] {
  const keys: AccessKey[] = [];
  const { local, domain } = splitAddress(address);
  const { base, ext } = splitExtension(local, delimiters);
  const at = domain === null ? '' : `@${domain}`;
  for (const k of quotedLocalKey(local, at)) keys.push({ key: k, partial: false });
  if (ext !== null) for (const k of quotedLocalKey(base, at)) keys.push({ key: k, partial: true });
  if (domain !== null && domain !== '') {
    keys.push({ key: domain, partial: true });
    let pos = 0;
    for (;;) {
      const next = domain.indexOf('.', pos + 1);
      if (next < 0) break;
      pos = parentMatches ? next + 1 : next;
      if (pos >= domain.length) break;
      keys.push({ key: domain.slice(pos), partial: true });
    }
  }
  for (const k of quotedLocalKey(local, '@')) keys.push({ key: k, partial: true });
  if (ext !== null) for (const k of quotedLocalKey(base, '@')) keys.push({ key: k, partial: true });
  return keys;
}

const MISS: LookupResult = { kind: 'miss' };

/**
 * Look one key up: a partial key is a miss for a pattern table; an exact-key table that
 * does not fold case itself gets the key lowercased (DICT_FLAG_FOLD_FIX).
 */
export function lookupKey(table: Table, key: AccessKey): LookupResult {
  if (key.partial && !table.flags.fixed) return MISS;
  return table.lookup(table.flags.fixed && !table.flags.foldCase ? key.key.toLowerCase() : key.key);
}

/** Search KEYS in order; the first hit or error ends the search. */
export function searchKeys(table: Table, keys: readonly AccessKey[]): { result: LookupResult; key: string } | null {
  for (const k of keys) {
    const r = lookupKey(table, k);
    if (r.kind !== 'miss') return { result: r, key: k.key };
  }
  return null;
}
