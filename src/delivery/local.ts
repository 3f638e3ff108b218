/**
 * @module delivery/local
 * SUMMARY: the `local` delivery agent (Postfix local(8)). Exports LocalAgent, a DeliveryAgent:
 * each recipient's local-part is looked up in alias_maps (in full, then without its
 * recipient_delimiter extension) and expanded recursively (local addresses through aliases
 * again, `:include:` files, other domains to the `forward` callback), ending in the Maildir of
 * a `greygate user` with Return-Path, X-Original-To and Delivered-To prepended. Postfix's
 * rules: an alias naming itself means the user's mailbox; duplicates are dropped per
 * recipient; a Delivered-To: naming an address being delivered, or nesting deeper than
 * MAX_NESTING, is a loop; postmaster without alias or user is discarded with a warning.
 * DIAGNOSTICS: outcomes, never throws. Bounce: unknown user 5.1.1, loop 5.4.6, `|command` or
 * `/file` 5.7.1 (greygate runs no commands). Defer: alias, user or include file unreadable,
 * forward failed 4.3.0; Maildir write 4.2.0 (quota 4.2.2). A recipient with a deferred branch
 * delivers nothing, so a retry does not duplicate; bounced branches do not stop the others.
 * SEE ALSO: Postfix local(8), aliases(5); local/recipient.c, alias.c, include.c, token.c.
 */
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { quoteLocal, splitAddress, splitExtension, unquoteLocal } from '../mail/address.js';
import { fsErrorCode, fsErrorText, type MaildirStore } from '../mailbox/maildir.js';
import type { DsnResult } from '../queue/envelope.js';
import type { Maps } from '../tables/maps.js';
import type { DeliveryAgent, DeliveryJob, JobRecipient, RecipientOutcome } from './agent.js';

/** What the agent hands back to the queue for targets in other domains. */
export interface ForwardInput {
  /** The original envelope sender (kept, as Postfix does without owner- aliases). */
  readonly sender: string;
  /** The remote targets of one recipient's expansion, de-duplicated. */
  readonly recipients: string[];
  /** The message with "Delivered-To: RECIPIENT" prepended (CRLF lines). */
  readonly message: Buffer;
  /** The recipient whose aliases produced these targets (the new copies' original recipient). */
  readonly origin: string;
}

/** The part of mailbox/users.ts UserStore the agent needs. */
export interface LocalUserDirectory {
  /** Whether NAME is a mailbox user; may throw when the database fails. */
  exists(name: string): boolean;
}

export interface LocalAgentOptions {
  readonly users: LocalUserDirectory;
  /** Shared with POP3/IMAP; the agent does not close it. */
  readonly mailboxes: MaildirStore;
  /** alias_maps, opened in aliases(5) format (openTable(..., { aliases: true })). */
  readonly aliases: Maps;
  /** recipient_delimiter: the characters that start an address extension; '' for none. */
  readonly recipientDelimiter: string;
  /** Whether DOMAIN is a final destination here (mydestination). */
  readonly isLocalDomain: (domain: string) => boolean;
  /** Queue a copy for remote targets; resolves to the new queue ID. */
  readonly forward: (input: ForwardInput) => Promise<string>;
  /** The domain of alias targets written without one; default: the expanded address's domain. */
  readonly myorigin?: string;
  /** Where relative `:include:` paths are taken from (the config directory); without it they bounce. */
  readonly configDir?: string;
  /** Milliseconds to wait for `forward` before deferring; default 60 s. */
  readonly forwardTimeout?: number;
  /** Told about problems that do not change an outcome (a missing postmaster alias). */
  readonly warn?: (message: string) => void;
}

/**
 * Alias/include nesting limit. Postfix stops at 100 recursion steps, about 30 aliases deep
 * (it counts three steps per alias); no real alias chain comes near 20.
 */
export const MAX_NESTING = 20;
const DEFAULT_FORWARD_TIMEOUT = 60_000;
const INCLUDE = ':include:';
/** Without an alias, these are tossed with a warning rather than bounced (unknown.c). */
const REQUIRED_ALIASES = new Set(['postmaster', 'mailer-daemon']);

type Failure = { readonly kind: 'deferred' | 'bounced'; readonly status: string; readonly reason: string };

/** The state of one top-level recipient's expansion (Postfix's dup_filter and loop_info). */
interface Expansion {
  /** Delivered-To: values of the message, lowercased. */
  readonly loopInfo: ReadonlySet<string>;
  /** "DEPTH address", "include PATH", "mailbox USER": what was handled already. */
  readonly seen: Set<string>;
  /** Mailbox users to write a copy for, in expansion order. */
  readonly mailboxes: Set<string>;
  /** Lowercased remote address -> as written. */
  readonly remote: Map<string, string>;
  readonly failures: Failure[];
  discarded: boolean;
}

/** The Delivered-To: form of ADDR: quoted local-part, lowercased (delivered.c). */
function deliveredForm(addr: string): string {
  return quoteLocal(addr).toLowerCase();
}

/** Header-field values never carry a line break, whatever an address contains. */
function headerSafe(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

/** Delivered-To: values of the primary header of MESSAGE (CRLF or LF lines), lowercased. */
export function deliveredToHeaders(message: Buffer): Set<string> {
  const out = new Set<string>();
  let end = message.indexOf('\r\n\r\n');
  const lfEnd = message.indexOf('\n\n');
  if (end < 0 || (lfEnd >= 0 && lfEnd < end)) end = lfEnd;
  const header = message.subarray(0, end < 0 ? message.length : end).toString('utf8');
  let current: string | null = null;
  const flush = (): void => {
    if (current !== null) {
      const value = current.trim().toLowerCase();
      if (value !== '') out.add(value);
    }
    current = null;
  };
  for (const line of header.split(/\r?\n/)) {
    if (/^[ \t]/.test(line)) {
      if (current !== null) current += ` ${line.trim()}`;
      continue;
    }
    flush();
    const m = /^delivered-to[ \t]*:(.*)$/i.exec(line);
    if (m) current = m[1]!;
  }
  flush();
  return out;
}

/** Split an alias value or an :include: line at commas outside quotes and <>. */
export function splitTargets(value: string): string[] {
  const out: string[] = [];
  let inQuotes = false;
  let angle = 0;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\') i++;
    else if (c === '"') inQuotes = !inQuotes;
    else if (!inQuotes && c === '<') angle++;
    else if (!inQuotes && c === '>' && angle > 0) angle--;
    else if (!inQuotes && angle === 0 && c === ',') {
      out.push(value.slice(start, i));
      start = i + 1;
    }
  }
  out.push(value.slice(start));
  return out.map((t) => t.trim()).filter((t) => t !== '');
}

/** A whole-token quoted string ("|cmd args") without its quotes, else null. */
function wholeQuoted(token: string): string | null {
  if (token.length < 2 || token[0] !== '"' || token[token.length - 1] !== '"') return null;
  let out = '';
  for (let i = 1; i < token.length - 1; i++) {
    const c = token[i]!;
    if (c === '"') return null;
    if (c === '\\' && i + 1 < token.length - 1) out += token[++i];
    else out += c;
  }
  return out;
}

/** An address as written in an alias (quoted, in <>, with a display name) -> internal form. */
function targetAddress(token: string): string {
  let t = token;
  const lt = t.lastIndexOf('<');
  if (t.endsWith('>') && lt >= 0) t = t.slice(lt + 1, -1);
  return unquoteLocal(t.trim());
}

function timeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${Math.round(ms / 1000)}s`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

export class LocalAgent implements DeliveryAgent {
  private readonly options: LocalAgentOptions;
  private readonly warn: (message: string) => void;

  constructor(options: LocalAgentOptions) {
    this.options = options;
    this.warn = options.warn ?? (() => undefined);
  }

  async deliver(job: DeliveryJob): Promise<RecipientOutcome[]> {
    const loopInfo = deliveredToHeaders(job.message);
    const out: RecipientOutcome[] = [];
    for (const rcpt of job.recipients) {
      try {
        out.push(await this.deliverRecipient(job, rcpt, loopInfo));
      } catch (err) {
        // A bug, not an outcome; the message stays queued.
        out.push(deferred('4.3.0', `local delivery failed: ${(err as Error).message}`));
      }
    }
    return out;
  }

  async close(): Promise<void> {
    // The Maildir store belongs to the caller (POP3 and IMAP share it).
  }

  private async deliverRecipient(job: DeliveryJob, rcpt: JobRecipient, loopInfo: ReadonlySet<string>): Promise<RecipientOutcome> {
    const x: Expansion = { loopInfo, seen: new Set(), mailboxes: new Set(), remote: new Map(), failures: [], discarded: false };
    await this.recipient(x, rcpt.address, 0, null, false);
    const defer = x.failures.find((f) => f.kind === 'deferred');
    if (defer) return deferred(defer.status, defer.reason);

    const delivered = headerSafe(deliveredForm(rcpt.address));
    const sender = job.envelope.sender === '' ? '' : headerSafe(quoteLocal(job.envelope.sender));
    const prepend = [`Return-Path: <${sender}>`];
    if (rcpt.originalAddress !== '') prepend.push(`X-Original-To: ${headerSafe(quoteLocal(rcpt.originalAddress))}`);
    prepend.push(`Delivered-To: ${delivered}`);

    const done: string[] = [];
    const users = [...x.mailboxes];
    for (const user of users) {
      try {
        await this.options.mailboxes.deliver(user, job.message, { prepend });
      } catch (err) {
        const code = fsErrorCode(err);
        return deferred(code === 'EDQUOT' || code === 'EFBIG' ? '4.2.2' : '4.2.0', `maildir delivery failed: ${(err as Error).message}`);
      }
    }
    if (users.length > 0) {
      const own = splitExtension(splitAddress(rcpt.address).local.toLowerCase(), this.options.recipientDelimiter).base;
      done.push(users.length === 1 && users[0] === own ? 'delivered to maildir' : `delivered to maildir (${users.join(', ')})`);
    }
    if (x.remote.size > 0) {
      const recipients = [...x.remote.values()];
      try {
        const id = await timeout(
          this.options.forward({
            sender: job.envelope.sender,
            recipients,
            message: Buffer.concat([Buffer.from(`Delivered-To: ${delivered}\r\n`, 'utf8'), job.message]),
            origin: rcpt.address,
          }),
          this.options.forwardTimeout ?? DEFAULT_FORWARD_TIMEOUT,
          'forwarding',
        );
        done.push(`forwarded as ${id}`);
      } catch (err) {
        return deferred('4.3.0', `cannot forward to ${recipients.join(', ')}: ${(err as Error).message}`);
      }
    }
    const bounce = x.failures.find((f) => f.kind === 'bounced');
    if (bounce) return { kind: 'bounced', relay: 'local', dsn: { status: bounce.status, diagnostic: bounce.reason }, reason: bounce.reason };
    if (x.discarded) done.push('discarded');
    const reply = done.length > 0 ? done.join('; ') : 'alias expanded to no recipients';
    return { kind: 'delivered', relay: 'local', dsn: { status: '2.0.0', diagnostic: reply }, reply };
  }

  /** deliver_recipient + deliver_switch: loop checks, aliases, then the mailbox. */
  private async recipient(x: Expansion, address: string, depth: number, expFrom: string | null, direct: boolean): Promise<void> {
    if (depth > MAX_NESTING) {
      x.failures.push({ kind: 'bounced', status: '5.4.6', reason: `mail forwarding loop for ${address}` });
      return;
    }
    const key = `${depth} ${address.toLowerCase()}`;
    if (x.seen.has(key)) return;
    x.seen.add(key);
    // A copy of this message was already delivered to this address once: it came back.
    if (x.loopInfo.has(deliveredForm(address))) {
      x.failures.push({ kind: 'bounced', status: '5.4.6', reason: `mail forwarding loop for ${address}` });
      return;
    }
    const { local: rawLocal, domain } = splitAddress(address);
    const local = rawLocal.toLowerCase();
    const { base: user, ext } = splitExtension(local, this.options.recipientDelimiter);
    if (user === '') {
      x.failures.push({ kind: 'bounced', status: '5.1.3', reason: `null username in "${address}"` });
      return;
    }
    if (!direct) {
      const context: TargetContext = { address, domain: domain ?? this.options.myorigin ?? '', depth };
      if (await this.alias(x, local, context, expFrom)) return;
      if (ext !== null && (await this.alias(x, user, context, expFrom))) return;
    }
    this.mailbox(x, user);
  }

  /** deliver_alias: true when NAME is an alias (expanded, or failed), false for the user. */
  private async alias(x: Expansion, name: string, at: TargetContext, expFrom: string | null): Promise<boolean> {
    // An alias that lists its own name means "and the user's mailbox too" (sendmail).
    if (expFrom !== null && expFrom === name) return false;
    const r = this.options.aliases.lookup(name);
    if (r.kind === 'miss') return false;
    if (r.kind === 'error') {
      x.failures.push({ kind: 'deferred', status: '4.3.0', reason: `alias database unavailable: ${r.error.message}` });
      return true;
    }
    const targets = splitTargets(r.value);
    if (targets.length === 0) {
      x.failures.push({ kind: 'deferred', status: '4.3.0', reason: `alias database unavailable: no recipient in alias lookup result for ${name}` });
      return true;
    }
    for (const t of targets) await this.target(x, t, at, name, `alias ${name} (${r.source})`);
    return true;
  }

  /** deliver_token: one alias or :include: entry. */
  private async target(x: Expansion, token: string, at: TargetContext, expFrom: string, source: string): Promise<void> {
    const special = wholeQuoted(token) ?? token;
    if (special.startsWith('|')) {
      x.failures.push({ kind: 'bounced', status: '5.7.1', reason: `mail to command is not supported: "${special}" in ${source}` });
      return;
    }
    if (special.startsWith('/') || special.startsWith('~')) {
      x.failures.push({ kind: 'bounced', status: '5.7.1', reason: `mail to file is not supported: "${special}" in ${source}` });
      return;
    }
    if (special.slice(0, INCLUDE.length).toLowerCase() === INCLUDE) {
      await this.include(x, special.slice(INCLUDE.length).trim(), at, expFrom);
      return;
    }
    // \user: the mailbox itself, no further alias expansion.
    const direct = token.startsWith('\\');
    let addr = targetAddress(direct ? token.slice(1) : token);
    if (addr === '') return;
    if (!addr.includes('@')) addr = `${addr}@${this.options.myorigin ?? at.domain}`;
    const domain = splitAddress(addr).domain ?? '';
    let local: boolean;
    try {
      local = domain === '' || this.options.isLocalDomain(domain.toLowerCase());
    } catch (err) {
      x.failures.push({ kind: 'deferred', status: '4.3.0', reason: `cannot resolve ${addr}: ${(err as Error).message}` });
      return;
    }
    if (local) {
      await this.recipient(x, addr, at.depth + 1, expFrom, direct);
      return;
    }
    const folded = addr.toLowerCase();
    if (!x.remote.has(folded)) x.remote.set(folded, addr);
  }

  /** deliver_include: the file's addresses, one per line or comma-separated, # comments. */
  private async include(x: Expansion, rawPath: string, at: TargetContext, expFrom: string): Promise<void> {
    if (rawPath === '' || (!isAbsolute(rawPath) && this.options.configDir === undefined)) {
      x.failures.push({ kind: 'bounced', status: '5.3.5', reason: `mail system configuration error: :include:${rawPath} uses a relative path` });
      return;
    }
    const path = isAbsolute(rawPath) ? rawPath : resolve(this.options.configDir!, rawPath);
    if (x.seen.has(`include ${path}`)) return;
    x.seen.add(`include ${path}`);
    if (at.depth + 1 > MAX_NESTING) {
      x.failures.push({ kind: 'bounced', status: '5.4.6', reason: `mail forwarding loop for ${at.address}` });
      return;
    }
    let text: string;
    try {
      const st = await stat(path);
      // Anyone could add themselves to the list: refused as local(8) refuses it.
      if (!st.isFile() || (st.mode & 0o002) !== 0) {
        const why = st.isFile() ? 'is world writable' : 'is not a regular file';
        x.failures.push({ kind: 'bounced', status: '5.3.5', reason: `mail system configuration error: :include: file ${path} ${why}` });
        return;
      }
      text = await readFile(path, 'utf8');
    } catch (err) {
      x.failures.push({ kind: 'deferred', status: '4.3.0', reason: `cannot open include file ${path}: ${fsErrorText(err)}` });
      return;
    }
    const next = { ...at, depth: at.depth + 1 };
    for (const line of text.split(/\r?\n/)) {
      if (line.trimStart().startsWith('#')) continue;
      for (const t of splitTargets(line)) await this.target(x, t, next, expFrom, `include file ${path}`);
    }
  }

  /** deliver_mailbox / deliver_unknown. */
  private mailbox(x: Expansion, user: string): void {
    if (x.seen.has(`mailbox ${user}`)) return;
    x.seen.add(`mailbox ${user}`);
    let exists: boolean;
    try {
      exists = this.options.users.exists(user);
    } catch (err) {
      x.failures.push({ kind: 'deferred', status: '4.3.0', reason: `user database unavailable: ${(err as Error).message}` });
      return;
    }
    if (exists) {
      x.mailboxes.add(user);
      return;
    }
    if (REQUIRED_ALIASES.has(user)) {
      this.warn(`required alias not found: ${user}`);
      x.discarded = true;
      return;
    }
    x.failures.push({ kind: 'bounced', status: '5.1.1', reason: `unknown user: "${user}"` });
  }
}

interface TargetContext {
  /** The address whose alias is being expanded. */
  readonly address: string;
  /** Its domain: where targets without one go when myorigin is not set. */
  readonly domain: string;
  readonly depth: number;
}

function deferred(status: string, reason: string): RecipientOutcome {
  const dsn: DsnResult = { status, diagnostic: reason };
  return { kind: 'deferred', relay: 'local', dsn, reason };
}
