/**
 * @module mail/address
 * SUMMARY: RFC 5321/822 address handling as Postfix does it: tokenize (tok822), quote and
 * unquote the local-part (quote_822_local), split local-part and domain, strip the
 * recipient_delimiter extension (strip_addr), syntax checks for host names and address
 * literals (valid_hostname, valid_mailhost_addr), and resolveAddress(), the part of
 * trivial-rewrite that decides where an address really goes: local, relay or elsewhere, and
 * whether it carries sender-specified routing (user%host@dom, host!user@dom, "u@h"@dom).
 * All functions are pure; resolveAddress() asks its ResolveContext which domains are local.
 * DIAGNOSTICS: none; a domain-list lookup failure comes back as `fail: true`.
 * SEE ALSO: Postfix trivial-rewrite/resolve.c, rewrite.c, global/tok822_parse.c,
 * quote_822_local.c, strip_addr.c, util/valid_hostname.c.
 */
import { isIPv6 } from 'node:net';

/** One RFC 822 token: operators are single characters ("@", "%", "!", ":", "." ...). */
export interface Token {
  readonly type: 'atom' | 'qstring' | 'domlit' | 'op';
  readonly text: string;
}

// tok822_opchar: RFC 822 specials plus the routing operators % ! and |.
const OPCHARS = '|%!()<>@,;:\\".[]';

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

/** Tokenize an external-form (quoted) address the way tok822_scan() does. */
export function scanAddress(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = s.length;
  while (i < n) {
    const c = s[i]!;
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === '(') {
      // Comments carry no routing information; skip them, nesting included.
      let level = 1;
      i++;
      while (i < n && level > 0) {
        const d = s[i]!;
        if (d === '\\') i++;
        else if (d === '(') level++;
        else if (d === ')') level--;
        i++;
      }
      continue;
    }
    if (c === '[' || c === '"') {
      const close = c === '[' ? ']' : '"';
      let text = '';
      i++;
      while (i < n) {
        let d = s[i]!;
        if (d === '\\') {
          if (i + 1 >= n) {
            i++;
            break;
          }
          d = s[++i]!;
        } else if (d === close) break;
        text += isSpace(d) ? ' ' : d;
        i++;
      }
      if (i < n) i++;
      out.push({ type: c === '[' ? 'domlit' : 'qstring', text });
      continue;
    }
    if (c !== '\\' && OPCHARS.includes(c)) {
      out.push({ type: 'op', text: c });
      i++;
      continue;
    }
    let text = '';
    let special = false;
    while (i < n) {
      let d = s[i]!;
      if (d === '\\') {
        if (i + 1 >= n) {
          i++;
          break;
        }
        d = s[++i]!;
        // An escaped special inside an atom makes it a quoted string (tok822_quote_atom).
        if (OPCHARS.includes(d) || d === ' ') special = true;
      } else if (isSpace(d) || OPCHARS.includes(d)) break;
      text += d;
      i++;
    }
    out.push({ type: special ? 'qstring' : 'atom', text });
  }
  return out;
}

function isOperand(t: Token): boolean {
  return t.type !== 'op';
}

/** Tokens back to internal (unquoted) string form, as tok822_internalize() does. */
export function internalize(tokens: readonly Token[]): string {
  let out = '';
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    out += t.type === 'domlit' ? `[${t.text}]` : t.text;
    const next = tokens[i + 1];
    if (next && (t.type === 'op' ? t.text === ',' : isOperand(next))) out += ' ';
  }
  return out;
}

/** True when LOCAL can be written without quotes (is_822_dot_string). */
export function isDotString(local: string): boolean {
  if (local === '' || local[0] === '.' || local[local.length - 1] === '.') return false;
  for (let i = 0; i < local.length; i++) {
    const c = local.charCodeAt(i);
    const ch = local[i]!;
    if (ch === '.' && local[i + 1] === '.') return false;
    if (c === 32 || c < 32 || c === 127) return false;
    if ('()<>@,;:\\"[]'.includes(ch)) return false;
  }
  return true;
}

/** Start of the local-part after an "@a,@b:" source route, if any. */
function localStart(mbox: string): number {
  if (mbox[0] === '@') {
    const colon = mbox.indexOf(':');
    if (colon >= 0) return colon + 1;
  }
  return 0;
}

/** Internal form to external form: quote the local-part when it is not a dot-string. */
export function quoteLocal(mbox: string): string {
  const start = localStart(mbox);
  const at = mbox.lastIndexOf('@');
  const end = at >= start ? at : mbox.length;
  const local = mbox.slice(start, end);
  if (isDotString(local)) return mbox;
  let q = '"';
  for (const ch of local) q += ch === '"' || ch === '\\' || ch === '\r' ? `\\${ch}` : ch;
  return `${mbox.slice(0, start)}${q}"${mbox.slice(end)}`;
}

/** External form to internal form: drop the quoting of the local-part (unquote_822_local). */
export function unquoteLocal(mbox: string): string {
  return internalize(scanAddress(mbox));
}

/** Split at the last "@": { local, domain } (domain null when there is no "@"). */
export function splitAddress(addr: string): { local: string; domain: string | null } {
  const at = addr.lastIndexOf('@');
  return at < 0 ? { local: addr, domain: null } : { local: addr.slice(0, at), domain: addr.slice(at + 1) };
}

const NEVER_SPLIT = new Set(['postmaster', 'mailer-daemon', 'double-bounce']);

/**
 * Split LOCAL at the first recipient_delimiter character (split_addr): { base, ext } where
 * ext includes the delimiter, or null when the local-part must not be split.
 */
export function splitExtension(local: string, delimiters: string): { base: string; ext: string | null } {
  if (delimiters === '') return { base: local, ext: null };
  const lower = local.toLowerCase();
  if (NEVER_SPLIT.has(lower)) return { base: local, ext: null };
  // Backwards compatibility: owner-foo and foo-request are mailing-list names, not extensions.
  if (delimiters.includes('-') && (lower.startsWith('owner-') || (lower.length > 8 && lower.endsWith('-request')))) {
    return { base: local, ext: null };
  }
  let pos = -1;
  for (let i = 0; i < local.length; i++) {
    if (delimiters.includes(local[i]!)) {
      pos = i;
      break;
    }
  }
  if (pos <= 0) return { base: local, ext: null };
  return { base: local.slice(0, pos), ext: local.slice(pos) };
}

/** ADDR without its extension (strip_addr), or null when it has none. */
export function stripExtension(addr: string, delimiters: string): string | null {
  const { local, domain } = splitAddress(addr);
  const { base, ext } = splitExtension(local, delimiters);
  if (ext === null) return null;
  return domain === null ? base : `${base}@${domain}`;
}

/** Postfix valid_hostname(): letters, digits, "_", "-" (not at a label edge), not all-numeric. */
export function isValidHostname(name: string): boolean {
  if (name === '' || name.length > 255) return false;
  let labelLength = 0;
  let nonNumeric = false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const isDigit = c >= 48 && c <= 57;
    const isAlpha = (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
    if (isDigit || isAlpha || c === 95) {
      if (++labelLength > 63) return false;
      if (!isDigit) nonNumeric = true;
    } else if (c === 46) {
      if (labelLength === 0 || i === name.length - 1) return false;
      labelLength = 0;
    } else if (c === 45) {
      nonNumeric = true;
      labelLength++;
      if (labelLength === 1 || i === name.length - 1 || name[i + 1] === '.') return false;
    } else return false;
  }
  return nonNumeric;
}

/** Postfix valid_ipv4_hostaddr(): a strict dotted quad (0.0.0.0 allowed, 0.1.2.3 not). */
export function isValidIPv4(addr: string): boolean {
  const parts = addr.split('.');
  if (parts.length !== 4) return false;
  for (const p of parts) {
    if (p === '' || p.length > 3 || !/^\d+$/.test(p) || Number(p) > 255) return false;
  }
  if (Number(parts[0]) === 0 && !/^[0.]+$/.test(addr)) return false;
  return true;
}

/** Postfix valid_ipv6_hostaddr(): hex fields with at most one "::", optional IPv4 tail. */
export function isValidIPv6(addr: string): boolean {
  return isIPv6(addr);
}

/** valid_hostaddr(): an IPv4 dotted quad or an IPv6 address. */
export function isValidHostAddr(addr: string): boolean {
  return addr.includes(':') ? isValidIPv6(addr) : isValidIPv4(addr);
}

/**
 * valid_mailhost_addr(): the inside of an RFC 5321 address literal, "1.2.3.4" or
 * "IPv6:2001:db8::1". Returns the bare address, or null when invalid.
 */
export function mailhostAddr(inner: string): string | null {
  if (inner.slice(0, 5).toLowerCase() === 'ipv6:') {
    const bare = inner.slice(5);
    return isValidIPv6(bare) ? bare : null;
  }
  return isValidIPv4(inner) ? inner : null;
}

/** valid_mailhost_literal(): "[1.2.3.4]" or "[IPv6:...]" exactly. */
export function isMailhostLiteral(domain: string): boolean {
  if (domain[0] !== '[') return false;
  const close = domain.indexOf(']');
  if (close !== domain.length - 1) return false;
  return mailhostAddr(domain.slice(1, close)) !== null;
}

/** Drop one trailing dot, but not from "x.." (dup_if_truncate). */
export function stripTrailingDot(name: string): string {
  return name.length > 1 && name.endsWith('.') && name[name.length - 2] !== '.' ? name.slice(0, -1) : name;
}

/** What resolveAddress() needs to know about domains. Lookups may fail ('error'). */
export interface ResolveContext {
  /** mydestination, or an [address] literal of inet_interfaces / proxy_interfaces. */
  isLocal(domain: string): boolean | 'error';
  /** relay_domains (with parent-domain matching as configured). */
  isRelay(domain: string): boolean | 'error';
  readonly myorigin: string;
  readonly myhostname: string;
  /** allow_percent_hack, swap_bangpath, resolve_dequoted_address: all "yes" by default. */
  readonly percentHack?: boolean;
  readonly swapBangpath?: boolean;
  readonly resolveDequoted?: boolean;
}

export type AddressClass = 'local' | 'relay' | 'default';

export interface ResolvedAddress {
  /** Final recipient in internal form, lowercased (what access maps are searched with). */
  readonly recipient: string;
  /** The part after the last "@" of `recipient`. */
  readonly domain: string;
  readonly class: AddressClass;
  /** Sender-specified routing: an "@", "!" or "%" before the final domain. */
  readonly routed: boolean;
  /** A syntactically invalid destination (bad literal or host name). */
  readonly error: boolean;
  /** A domain-list lookup failed: the caller answers 451 4.3.0. */
  readonly fail: boolean;
}

function lastIndexOfOp(tokens: readonly Token[], op: string): number {
  for (let i = tokens.length - 1; i >= 0; i--) if (tokens[i]!.type === 'op' && tokens[i]!.text === op) return i;
  return -1;
}

function indexOfOp(tokens: readonly Token[], op: string, from = 0): number {
  for (let i = from; i < tokens.length; i++) if (tokens[i]!.type === 'op' && tokens[i]!.text === op) return i;
  return -1;
}

function isOp(t: Token | undefined, op: string): boolean {
  return t !== undefined && t.type === 'op' && t.text === op;
}

/** rewrite_tree() in the "local" context: source routes, bang paths, % hack, @myorigin. */
function rewriteTree(tokens: Token[], ctx: ResolveContext): Token[] {
  if (tokens.length === 1 && tokens[0]!.type === 'qstring' && tokens[0]!.text === '') return tokens;
  if (tokens.length === 1 && isOp(tokens[0], '@')) return [{ type: 'qstring', text: '' }];
  let t = tokens;
  // Source routes (@a,@b:user@c) are stripped: only the final address counts.
  if (isOp(t[0], '@')) {
    const colon = indexOfOp(t, ':');
    if (colon >= 0 && colon !== t.length - 1) t = t.slice(colon + 1);
  }
  if (lastIndexOfOp(t, '@') < 0) {
    const bang = ctx.swapBangpath === false ? -1 : indexOfOp(t, '!');
    const pct = ctx.percentHack === false ? -1 : lastIndexOfOp(t, '%');
    if (bang >= 0) {
      t = [...t.slice(bang + 1), { type: 'op', text: '@' }, ...t.slice(0, bang)];
    } else if (pct >= 0) {
      t = [...t.slice(0, pct), { type: 'op', text: '@' }, ...t.slice(pct + 1)];
    } else if (ctx.myorigin) {
      t = [...t, { type: 'op', text: '@' }, ...scanAddress(ctx.myorigin)];
    }
  }
  // append_dot_mydomain is "no" at compatibility_level >= 1, so nothing is appended here.
  const last = t[t.length - 1];
  const prev = t[t.length - 2];
  if (isOp(last, '.') && prev && !isOp(prev, '.') && !isOp(prev, '@')) t = t.slice(0, -1);
  return t;
}

const MAX_EXTRA_ROUNDS = 100;

/**
 * Resolve ADDR (internal form) as trivial-rewrite does for smtpd: rewrite in the local
 * context, then strip every local @domain and re-rewrite what is left, until a remote
 * domain or a plain local user remains. The routing flag is set when the final address
 * still has an "@", "!" or "%" in front of its domain: such an address is never an
 * authorized destination unless allow_untrusted_routing says so.
 */
export function resolveAddress(addr: string, ctx: ResolveContext): ResolvedAddress {
  let tokens = rewriteTree(scanAddress(quoteLocal(addr)), ctx);
  tokens = scanAddress(quoteLocal(internalize(tokens)));
  let savedDomain: Token[] | null = null;
  let remote = false;
  const loopMax = addr.length + MAX_EXTRA_ROUNDS;
  for (let loop = 0; ; loop++) {
    if (loop > loopMax) return failed(addr);
    // Strip a trailing dot at the end of the domain, but not dot-dot or at-dot.
    const last = tokens[tokens.length - 1];
    const prev = tokens[tokens.length - 2];
    if (isOp(last, '.') && lastIndexOfOp(tokens, '@') >= 0 && prev && !isOp(prev, '.') && !isOp(prev, '@')) {
      tokens = tokens.slice(0, -1);
    }
    const at = lastIndexOfOp(tokens, '@');
    if (at >= 0) {
      if (at + 1 < tokens.length) {
        const local = ctx.isLocal(internalize(tokens.slice(at + 1)));
        if (local === 'error') return failed(addr);
        if (!local) {
          remote = true;
          break;
        }
      }
      savedDomain = tokens.slice(at);
      tokens = tokens.slice(0, at);
    }
    if (
      lastIndexOfOp(tokens, '@') >= 0 ||
      (ctx.swapBangpath !== false && lastIndexOfOp(tokens, '!') >= 0) ||
      (ctx.percentHack !== false && lastIndexOfOp(tokens, '%') >= 0)
    ) {
      tokens = tokens.length === 0 ? tokens : rewriteTree(tokens, ctx);
      continue;
    }
    // A quoted local-part is cracked open to look for routing operators: technically
    // wrong, but "user@evil"@here must not become a relay through a Sendmail MX.
    if (ctx.resolveDequoted !== false && tokens.length === 1 && tokens[0]!.type === 'qstring') {
      const local = tokens[0]!.text;
      let oper = local.lastIndexOf('@');
      let opChar = '@';
      if (oper < 0 && ctx.percentHack !== false && (oper = local.lastIndexOf('%')) >= 0) opChar = '%';
      if (oper < 0 && ctx.swapBangpath !== false && (oper = local.lastIndexOf('!')) >= 0) opChar = '!';
      if (oper >= 0) {
        let text = local;
        if (opChar === '%') text = `${local.slice(0, oper)}@${local.slice(oper + 1)}`;
        if (opChar === '%' || opChar === '@') text = quoteLocal(text);
        tokens = rewriteTree(scanAddress(text), ctx);
        continue;
      }
    }
    if (tokens.length === 1 && tokens[0]!.type === 'qstring' && tokens[0]!.text === '') tokens = [];
    if (tokens.length === 0) {
      // An empty local-part becomes the local MAILER-DAEMON.
      tokens = scanAddress('MAILER-DAEMON');
      continue;
    }
    if (savedDomain === null) {
      tokens = [...tokens, { type: 'op', text: '@' }, ...scanAddress(ctx.myhostname)];
      continue;
    }
    break;
  }
  if (!remote) tokens = savedDomain ? [...tokens, ...savedDomain] : [...tokens, { type: 'op', text: '@' }, ...scanAddress(ctx.myhostname)];
  const recipient = internalize(tokens).toLowerCase();
  const at = recipient.lastIndexOf('@');
  const domain = at >= 0 ? recipient.slice(at + 1) : '';
  let error = false;
  if (domain.startsWith('[')) error = !isMailhostLiteral(domain);
  else if (!isValidHostname(domain)) error = true;
  // An operator before the final domain means the next hop decides: never trusted.
  const firstOp = firstRoutingOp(recipient);
  const routed = firstOp >= 0 && recipient.slice(firstOp + 1) !== domain;
  if (error) return { recipient, domain, class: 'default', routed, error: true, fail: false };
  let cls: AddressClass = 'local';
  if (remote) {
    const relay = ctx.isRelay(domain);
    if (relay === 'error') return failed(addr);
    cls = relay ? 'relay' : 'default';
  }
  return { recipient, domain, class: cls, routed, error: false, fail: false };
}

function firstRoutingOp(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '@' || c === '!' || c === '%') return i;
  }
  return -1;
}

function failed(addr: string): ResolvedAddress {
  return { recipient: addr.toLowerCase(), domain: '', class: 'default', routed: false, error: false, fail: true };
}

/**
 * Parse what a client wrote between < and > in MAIL FROM / RCPT TO into internal form:
 * an optional source route is kept (resolution strips it), quotes are removed.
 */
export function toInternal(external: string): string {
  let s = external.trim();
  if (s.startsWith('<') && s.endsWith('>')) s = s.slice(1, -1);
  return internalize(scanAddress(s));
}
