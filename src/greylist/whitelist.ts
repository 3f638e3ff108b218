/**
 * @module greylist/whitelist
 * SUMMARY: postgrey's whitelist_clients and whitelist_recipients files, read as postgrey
 * 1.37 reads them (read_clients_whitelists, read_recipients_whitelists): "#" starts a
 * comment anywhere on a line, blanks are trimmed. loadWhitelists() returns a Whitelists
 * whose matchClient(name, ip) / matchRecipient(rcpt) give the first matching entry as
 * { list, rule: FILE:LINE, entry }, or null.
 * Client lines: /regex/ (no whitespace inside; RE2, case-insensitive, Perl syntax through
 * the pcre translator), a.b.c.d[/n], a.b.c (= /24), a.b (= a.b.0.0/24: postgrey's code
 * passes 24 where its comment says /16; reproduced, with a warning), anything with two ":"
 * (IPv6 address or prefix), otherwise a host name matching itself and its subdomains.
 * Name entries (regex and host names) match only a forward-confirmed client name: a client
 * whose name is "unknown" never matches them, not even a pattern that would match the word.
 * Recipient lines: /regex/, user@domain (user+ext@domain too), user@ (any domain),
 * domain (the domain and its subdomains).
 * DIAGNOSTICS: a line postgrey warns about ("doesn't look like a hostname/an address"), a
 * regex RE2 cannot run, an address that does not parse: a Problem at FILE:LINE, line
 * skipped; an unreadable file: an error Problem (none for a missing "*.local" file, as
 * postgrey), and on reload the file's previous entries stay in force.
 * SEE ALSO: postgrey(8) WHITELISTING; shared semantics.md 1.4.
 */
import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import RE2 from 're2';
import type { Problem } from '../errors.js';
import { translatePcre } from '../tables/pcre-syntax.js';
import { normalizeClientAddress } from '../mail/mynetworks.js';
import { dottedQuad } from './triplet.js';

export interface WhitelistHit {
  readonly list: 'client' | 'recipient';
  /** FILE:LINE of the entry. */
  readonly rule: string;
  /** The entry as written. */
  readonly entry: string;
}

interface Entry {
  readonly rule: string;
  readonly line: number;
  /** Order across files: earlier files and lines win. */
  readonly order: number;
  readonly entry: string;
}

interface RegexEntry extends Entry {
  readonly re: RE2;
  /** The RE2 source (case-insensitivity inline), for the RE2.Set prefilter. */
  readonly source: string;
}

interface NetEntry extends Entry {
  readonly v6: boolean;
  readonly bytes: readonly number[];
  readonly prefix: number;
}

interface RecipientEntry extends Entry {
  test(rcpt: string): boolean;
}

/** What one file contributed. */
interface FileEntries {
  readonly names: ReadonlyMap<string, Entry>;
  readonly regexes: readonly RegexEntry[];
  readonly nets: readonly NetEntry[];
  readonly recipients: readonly RecipientEntry[];
}

const PERL_FLAGS = { caseless: true, dotall: false, multiline: false, extended: false, anchored: false, dollarEndOnly: false, ungreedy: false } as const;

function compileRegex(pattern: string): { re: RE2; source: string } | string {
  const t = translatePcre(pattern, PERL_FLAGS);
  if ('error' in t) return t.error;
  try {
    return { re: new RE2(t.source, 'u'), source: t.source };
  } catch (e) {
    return `RE2 cannot compile this pattern: ${(e as Error).message}`;
  }
}

/** Postfix-style text of a file line: "#" comment anywhere, blanks trimmed (s/#.*$//). */
function clean(raw: string): string {
  const hash = raw.indexOf('#');
  return (hash >= 0 ? raw.slice(0, hash) : raw).trim();
}

function v4Bytes(text: string): number[] | null {
  const parts = text.split('.').map(Number);
  return parts.every((n) => n <= 255) ? parts : null;
}

function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

class FileParser {
  private readonly names = new Map<string, Entry>();
  private readonly regexes: RegexEntry[] = [];
  private readonly nets: NetEntry[] = [];
  private readonly recipients: RecipientEntry[] = [];

  constructor(
    private readonly file: string,
    private readonly problems: Problem[],
    private readonly orderBase: number,
  ) {}

  private base(line: number, entry: string): Entry {
    return { rule: `${this.file}:${line}`, line, order: this.orderBase + line, entry };
  }

  private problem(line: number, message: string, severity: 'error' | 'warning' = 'warning'): void {
    this.problems.push({ file: this.file, line, severity, message });
  }

  private regex(line: number, text: string, pattern: string): void {
    const c = compileRegex(pattern);
    if (typeof c === 'string') this.problem(line, `${text}: ${c}: skipping this entry`, 'error');
    else this.regexes.push({ ...this.base(line, text), ...c });
  }

  private net(line: number, text: string, v6: boolean, bytes: readonly number[], prefix: number): void {
    this.nets.push({ ...this.base(line, text), v6, bytes, prefix });
  }

  client(line: number, text: string): void {
    let m: RegExpExecArray | null;
    if ((m = /^\/(\S+)\/$/.exec(text))) {
      this.regex(line, text, m[1]!);
    } else if ((m = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?:\/(\d{1,2}))?$/.exec(text))) {
      const bytes = v4Bytes(m[1]!);
      const prefix = m[2] === undefined ? 32 : Number(m[2]);
      if (!bytes || prefix > 32) this.problem(line, `${text}: not a valid IPv4 address or network: skipping this entry`);
      else this.net(line, text, false, bytes, prefix);
    } else if (/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(text)) {
      const bytes = v4Bytes(`${text}.0`);
      if (!bytes) this.problem(line, `${text}: not a valid partial IPv4 address: skipping this entry`);
      else this.net(line, text, false, bytes, 24);
    } else if (/^\d{1,3}\.\d{1,3}$/.test(text)) {
      const bytes = v4Bytes(`${text}.0.0`);
      if (!bytes) this.problem(line, `${text}: not a valid partial IPv4 address: skipping this entry`);
      else {
        // postgrey 1.37 passes 24 here (its comment says /16): 1.2 covers 1.2.0.0/24 only.
        this.problem(line, `${text}: as in postgrey, this matches ${text}.0.0/24 only, not ${text}.0.0/16; write ${text}.0.0/16 for the whole network`);
        this.net(line, text, false, bytes, 24);
      }
    } else if (/^.*:.*:.*$/.test(text)) {
      const slash = text.lastIndexOf('/');
      const addr = slash >= 0 ? text.slice(0, slash) : text;
      const len = slash >= 0 ? text.slice(slash + 1) : '128';
      if (!/^\d{1,3}$/.test(len) || Number(len) > 128 || !ipaddr.IPv6.isValid(addr)) {
        this.problem(line, `${text}: not a valid IPv6 address or network: skipping this entry`);
      } else {
        const v6 = ipaddr.IPv6.parse(addr);
        if (v6.isIPv4MappedAddress() && Number(len) >= 96) this.net(line, text, false, v6.toIPv4Address().toByteArray(), Number(len) - 96);
        else this.net(line, text, true, v6.toByteArray(), Number(len));
      }
    } else if (/^\S+$/.test(text)) {
      const key = text.toLowerCase();
      if (!this.names.has(key)) this.names.set(key, this.base(line, text));
    } else {
      this.problem(line, `${text}: doesn't look like a hostname: skipping this entry`);
    }
  }

  recipient(line: number, text: string): void {
    const m = /^\/(\S+)\/$/.exec(text);
    if (m) {
      this.regex(line, text, m[1]!);
      return;
    }
    if (!/^\S+$/.test(text)) {
      this.problem(line, `${text}: doesn't look like an address: skipping this entry`);
      return;
    }
    const at = text.indexOf('@');
    const user = at >= 0 ? text.slice(0, at) : text;
    const domain = at >= 0 ? text.slice(at + 1) : undefined;
    let re: RegExp;
    if (domain !== undefined && domain !== '') re = new RegExp(`^${escapeRe(user)}(?:\\+[^@]+)?@${escapeRe(domain)}$`, 'i');
    else if (domain !== undefined) re = new RegExp(`^${escapeRe(user)}(?:\\+[^@]+)?@`, 'i');
    else re = new RegExp(`(?:@|\\.)${escapeRe(user)}$`, 'i');
    this.recipients.push({ ...this.base(line, text), test: (r) => re.test(r) });
  }

  done(): FileEntries {
    return { names: this.names, regexes: this.regexes, nets: this.nets, recipients: this.recipients };
  }
}

function parseFile(kind: 'client' | 'recipient', file: string, text: string, problems: Problem[], orderBase: number): FileEntries {
  const p = new FileParser(file, problems, orderBase);
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const t = clean(lines[i]!);
    if (t === '') continue;
    if (kind === 'client') p.client(i + 1, t);
    else p.recipient(i + 1, t);
  }
  const e = p.done();
  if (kind === 'client') return e;
  // Recipient regexes are tested against the recipient, in file order with the others.
  const recipients: RecipientEntry[] = [...e.recipients, ...e.regexes.map((r) => ({ ...r, test: (s: string) => r.re.test(s) }))].sort((a, b) => a.order - b.order);
  return { names: new Map(), regexes: [], nets: [], recipients };
}

/** Client names whose name-entry match is remembered. */
const NAME_MEMO_SIZE = 10_000;

function bitsMatch(a: readonly number[], b: readonly number[], prefix: number): boolean {
  const full = prefix >> 3;
  for (let i = 0; i < full; i++) if (a[i] !== b[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((a[full]! ^ b[full]!) & mask) === 0;
}

export interface WhitelistFiles {
  readonly clients: readonly string[];
  readonly recipients: readonly string[];
}

/** The loaded whitelists (immutable; a reload builds a new one). */
export class Whitelists {
  private readonly names: ReadonlyMap<string, Entry>;
  private readonly regexes: readonly RegexEntry[];
  /** All client regexes in one automaton: one pass over the name finds which match. */
  private readonly regexSet: InstanceType<typeof RE2.Set> | null;
  private readonly nets: readonly NetEntry[];
  /** matchName() by client name (null: none matches). */
  private readonly nameMemo = new Map<string, Entry | null>();
  /** The IPv4 entries of nets as numbers, in the same order: the dotted-quad fast path. */
  private readonly v4: ReadonlyArray<{ readonly net: number; readonly mask: number; readonly entry: NetEntry }>;
  private readonly recipientEntries: readonly RecipientEntry[];

  constructor(
    readonly files: WhitelistFiles,
    /** Per file, what it contributed (kept so a reload can fall back to it). */
    readonly perFile: ReadonlyMap<string, FileEntries>,
  ) {
    const names = new Map<string, Entry>();
    const regexes: RegexEntry[] = [];
    const nets: NetEntry[] = [];
    const recipients: RecipientEntry[] = [];
    for (const f of files.clients) {
      const e = perFile.get(`client:${f}`);
      if (!e) continue;
      for (const [k, v] of e.names) if (!names.has(k)) names.set(k, v);
      regexes.push(...e.regexes);
      nets.push(...e.nets);
    }
    for (const f of files.recipients) {
      const e = perFile.get(`recipient:${f}`);
      if (e) recipients.push(...e.recipients);
    }
    this.names = names;
    this.regexes = regexes;
    this.regexSet = regexes.length > 1 ? new RE2.Set(regexes.map((r) => r.source), 'u') : null;
    this.nets = nets;
    this.v4 = nets
      .filter((n) => !n.v6)
      .map((n) => {
        const mask = n.prefix <= 0 ? 0 : (0xffffffff << (32 - Math.min(32, n.prefix))) >>> 0;
        const value = ((n.bytes[0]! << 24) | (n.bytes[1]! << 16) | (n.bytes[2]! << 8) | n.bytes[3]!) >>> 0;
        return { net: (value & mask) >>> 0, mask, entry: n };
      });
    this.recipientEntries = recipients;
  }

  /** Number of usable entries (client, recipient). */
  get size(): { clients: number; recipients: number } {
    return { clients: this.names.size + this.regexes.length + this.nets.length, recipients: this.recipientEntries.length };
  }

  /**
   * postgrey steps 2 and 3: name entries against the verified client name (the first
   * in file order), then address entries against the client IP.
   */
  matchClient(clientName: string, clientAddress: string): WhitelistHit | null {
    if (clientName !== '') {
      // The name part depends on the name alone, and one regex-set run costs more than the
      // rest of a lookup: remembered per name (these whitelists never change; a reload
      // builds new ones).
      let best = this.nameMemo.get(clientName);
      if (best === undefined) {
        const name = clientName.toLowerCase();
        best = name === 'unknown' ? null : this.matchName(clientName, name);
        if (this.nameMemo.size >= NAME_MEMO_SIZE) this.nameMemo.clear();
        // A copy: the name is a slice of the request, which the key would keep alive.
        this.nameMemo.set(` ${clientName}`.slice(1), best);
      }
      if (best) return { list: 'client', rule: best.rule, entry: best.entry };
    }
    if (this.nets.length) {
      const quad = dottedQuad(clientAddress);
      if (quad >= 0) {
        for (const n of this.v4) if (((quad & n.mask) >>> 0) === n.net) return { list: 'client', rule: n.entry.rule, entry: n.entry.entry };
        return null;
      }
      const addr = normalizeClientAddress(clientAddress);
      let ip: ipaddr.IPv4 | ipaddr.IPv6 | null = null;
      if (ipaddr.IPv4.isValidFourPartDecimal(addr)) ip = ipaddr.IPv4.parse(addr);
      else if (ipaddr.IPv6.isValid(addr)) ip = ipaddr.IPv6.parse(addr);
      if (ip) {
        const v6 = ip.kind() === 'ipv6';
        const bytes = ip.toByteArray();
        for (const n of this.nets) {
          if (n.v6 === v6 && bitsMatch(bytes, n.bytes, n.prefix)) return { list: 'client', rule: n.rule, entry: n.entry };
        }
      }
    }
    return null;
  }

  /** The first name entry (host name or regex) matching a verified client name, or null. */
  private matchName(clientName: string, name: string): Entry | null {
    let best: Entry | null = null;
    // A host-name entry matches the name or any subdomain: look up every dot suffix.
    for (let i = 0; ; ) {
      const e = this.names.get(i === 0 ? name : name.slice(i));
      if (e && (!best || e.order < best.order)) best = e;
      const dot = name.indexOf('.', i);
      if (dot < 0) break;
      i = dot + 1;
    }
    if (this.regexSet) {
      // Set indices follow this.regexes, which is in file order: the lowest is the first.
      const ids = this.regexSet.match(clientName);
      if (ids.length) {
        const r = this.regexes[Math.min(...ids)]!;
        if (!best || r.order < best.order) best = r;
      }
    } else {
      const r = this.regexes[0];
      if (r && (!best || r.order < best.order) && r.re.test(clientName)) best = r;
    }
    return best;
  }

  /** postgrey step 4: the recipient as given (case-insensitive). */
  matchRecipient(recipient: string): WhitelistHit | null {
    for (const r of this.recipientEntries) if (r.test(recipient)) return { list: 'recipient', rule: r.rule, entry: r.entry };
    return null;
  }
}

export interface LoadOptions {
  /** Resolve a file name from main.cf (relative names are under the config directory). */
  resolvePath?(path: string): string;
  /** The whitelists in force before a reload: a file that cannot be read keeps its entries. */
  previous?: Whitelists;
}

/** Read every file; never throws. */
export function loadWhitelists(files: WhitelistFiles, opts: LoadOptions = {}): { whitelists: Whitelists; problems: Problem[] } {
  const problems: Problem[] = [];
  const resolve = opts.resolvePath ?? ((p: string) => p);
  const perFile = new Map<string, FileEntries>();
  const resolved = { clients: files.clients.map(resolve), recipients: files.recipients.map(resolve) };
  let fileIndex = 0;
  // FILE:LINE in problems and rules use the name as written in main.cf, as tables do.
  const load = (kind: 'client' | 'recipient', shown: string): void => {
    const file = resolve(shown);
    const key = `${kind}:${file}`;
    fileIndex++;
    if (perFile.has(key)) return;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const old = opts.previous?.perFile.get(key);
      if (old) perFile.set(key, old);
      // postgrey does not warn about a missing .local file: the user may not have one.
      if (code === 'ENOENT' && file.endsWith('.local')) return;
      const why = code === 'ENOENT' ? 'no such file' : (err as Error).message;
      problems.push({ file: shown, line: 0, severity: 'error', message: `cannot read greylist whitelist: ${why}${old ? '; keeping its previous entries' : ''}` });
      return;
    }
    perFile.set(key, parseFile(kind, shown, text, problems, fileIndex * 10_000_000));
  };
  for (const f of files.clients) load('client', f);
  for (const f of files.recipients) load('recipient', f);
  return { whitelists: new Whitelists(resolved, perFile), problems };
}
