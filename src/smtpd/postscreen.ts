/**
 * @module smtpd/postscreen
 * SUMMARY: postscreen's tests before the SMTP greeting, run by the smtpd listener (there is
 * no separate postscreen process): the weighted DNSBL score (postscreen_dnsbl_sites,
 * _threshold, _allowlist_threshold, _action, _reply_map, _timeout) and the pregreet test
 * (postscreen_greet_wait, _greet_banner, _greet_action). Postscreen.screen() runs both for
 * one connection and returns a PostscreenVerdict: pass, enforce (a reject Decision for every
 * RCPT) or drop (521, then hang up), with the log records (PostscreenNote) of what it found.
 * compilePostscreen() reads one Config snapshot; PostscreenCache keeps one per snapshot.
 * DIAGNOSTICS: a DNSBL that fails (timeout, SERVFAIL, 127.255.255.x, an answer outside
 * 127/8) or misses postscreen_dnsbl_timeout counts as "not listed" and gives a 'warn' note;
 * a bad postscreen_dnsbl_sites entry is a Problem and is skipped. Nothing is thrown.
 * SEE ALSO: postscreen(8), POSTSCREEN_README, postconf(5) postscreen_*; Postfix
 * postscreen_early.c, postscreen_dnsbl.c.
 */
import type { Config } from '../config/config.js';
import { ConfigError, type Problem } from '../errors.js';
import { DnsxlCache, clientQuery, parseWeightedDnsxlSite, type DnsxlResult, type WeightedDnsxlSite } from '../dns/dnsbl.js';
import { createDnsClient, type DnsClient } from '../dns/resolver.js';
import { formatReply, reply } from '../mail/reply.js';
import { openTable } from '../tables/open.js';
import type { Table } from '../tables/table.js';
import type { LogEvent } from '../log/events.js';
import type { Decision } from '../restrictions/state.js';
import type { PreGreeting } from './smtp-server-patch.js';

export type PostscreenAction = 'ignore' | 'enforce' | 'drop';

export interface PostscreenSite extends WeightedDnsxlSite {
  /** The entry as configured, e.g. "zen.example=127.0.0.[2..11]*3". */
  readonly entry: string;
}

export interface PostscreenSettings {
  readonly sites: readonly PostscreenSite[];
  readonly threshold: number;
  /** 0 = off; a client whose score is at or below it skips the pregreet test. */
  readonly allowlistThreshold: number;
  readonly dnsblAction: PostscreenAction;
  readonly dnsblTimeoutMs: number;
  /** 0 = no pregreet test. */
  readonly greetWaitMs: number;
  readonly greetAction: PostscreenAction;
  /** Text of the "220-" teaser line; empty = none. */
  readonly teaser: string;
  /** List domain -> the name a reject reply shows (postscreen_dnsbl_reply_map). */
  readonly replyNames: ReadonlyMap<string, string>;
}

/** One log record of the screening, without the session fields the caller adds. */
export interface PostscreenNote {
  readonly event: Extract<LogEvent, 'reject' | 'info' | 'warn'>;
  /** rule, msg and, for a reject, code/status/reply; plus dnsbl_score, dnsbl_sites, ... */
  readonly fields: Readonly<Record<string, unknown>>;
}

export type PostscreenReject = Extract<Decision, { kind: 'reject' }>;

export type PostscreenVerdict =
  | { readonly kind: 'pass'; readonly allowlisted: boolean; readonly notes: readonly PostscreenNote[] }
  /** Greet the client, then answer every RCPT with `decision` (postscreen's "enforce"). */
  | { readonly kind: 'enforce'; readonly decision: PostscreenReject; readonly notes: readonly PostscreenNote[] }
  /** Answer `decision` instead of the greeting and hang up. */
  | { readonly kind: 'drop'; readonly decision: PostscreenReject; readonly notes: readonly PostscreenNote[] }
  /** The client left during the tests. */
  | { readonly kind: 'hangup'; readonly notes: readonly PostscreenNote[] };

const ACTIONS: readonly PostscreenAction[] = ['ignore', 'enforce', 'drop'];
const RULE_DNSBL = 'postscreen_dnsbl_sites';
const RULE_ALLOWLIST = 'postscreen_dnsbl_allowlist_threshold';
const RULE_PREGREET = 'postscreen_greet_wait';

/** Read the postscreen_* parameters of CONFIG; bad entries become Problems and are left out. */
export function compilePostscreen(config: Config, open: (spec: string) => Table = (spec) => openTable(spec, config.configDir)): { settings: PostscreenSettings; problems: Problem[] } {
  const problems: Problem[] = [];
  const problem = (param: string, message: string, severity: Problem['severity'] = 'error'): void => {
    problems.push({ file: config.file, line: config.lineOf(param), severity, message });
  };
  // Config already reports a malformed value as a Problem; here it only falls back.
  const read = <T>(param: string, get: () => T, fallback: T): T => {
    try {
      return get();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problem(param, err.message.replace(/^[^:]*:\d+: /, ''));
      return fallback;
    }
  };
  const action = (param: string): PostscreenAction => {
    const v = read(param, () => config.get(param).toLowerCase(), 'ignore');
    if ((ACTIONS as readonly string[]).includes(v)) return v as PostscreenAction;
    problem(param, `bad value for ${param}: "${v}": expected ignore, enforce or drop`);
    return 'ignore';
  };
  const sites: PostscreenSite[] = [];
  for (const entry of read(RULE_DNSBL, () => config.list(RULE_DNSBL), [])) {
    const site = parseWeightedDnsxlSite(entry);
    if ('error' in site) problem(RULE_DNSBL, `${RULE_DNSBL}: ${site.error}`);
    else sites.push({ ...site, entry });
  }
  const replyNames = new Map<string, string>();
  const maps = read('postscreen_dnsbl_reply_map', () => config.list('postscreen_dnsbl_reply_map'), []);
  if (maps.length > 0) {
    const tables = maps.map((spec) => open(spec));
    for (const domain of new Set(sites.map((s) => s.domain))) {
      for (const t of tables) {
        const r = t.lookup(t.flags.fixed && !t.flags.foldCase ? domain.toLowerCase() : domain);
        if (r.kind === 'hit') {
          replyNames.set(domain, r.value.trim());
          break;
        }
        if (r.kind === 'error') {
          problem('postscreen_dnsbl_reply_map', `postscreen_dnsbl_reply_map: ${t.spec} lookup error: ${r.error.message}`);
          // Never show a key-bearing zone name because its alias could not be read.
          replyNames.set(domain, 'a DNS blocklist');
          break;
        }
      }
    }
  }
  const settings: PostscreenSettings = {
    sites,
    threshold: read('postscreen_dnsbl_threshold', () => config.int('postscreen_dnsbl_threshold'), 1),
    allowlistThreshold: read(RULE_ALLOWLIST, () => config.int(RULE_ALLOWLIST), 0),
    dnsblAction: action('postscreen_dnsbl_action'),
    dnsblTimeoutMs: read('postscreen_dnsbl_timeout', () => config.time('postscreen_dnsbl_timeout'), 10_000),
    greetWaitMs: read(RULE_PREGREET, () => config.time(RULE_PREGREET), 0),
    greetAction: action('postscreen_greet_action'),
    teaser: read('postscreen_greet_banner', () => config.get('postscreen_greet_banner'), ''),
    replyNames,
  };
  if (settings.allowlistThreshold > 0) {
    problem(RULE_ALLOWLIST, `${RULE_ALLOWLIST} = ${settings.allowlistThreshold}: only a negative value allowlists (0 = off)`, 'warning');
  }
  return { settings, problems };
}

/** Postfix's format_tv() with 2 significant digits and 10 ms resolution: 0.06, 1.2, 12. */
export function formatDelay(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s >= 10) return String(Math.round(s));
  if (s >= 1) return String(Math.round(s * 10) / 10);
  return String(Math.round(s * 100) / 100);
}

/** Postfix's escape(): what a client sent, printable and on one log line. */
export function escapeBytes(bytes: Buffer): string {
  const named: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r', 92: '\\\\' };
  let out = '';
  for (const b of bytes) {
    const n = named[b];
    if (n !== undefined) out += n;
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\${b.toString(8).padStart(3, '0')}`;
  }
  return out;
}

interface DnsblScore {
  readonly score: number;
  /** The entries that matched, in configuration order. */
  readonly matched: readonly PostscreenSite[];
  /** The domain of the highest-weight match: the one the reply names. */
  readonly top: string | null;
  readonly notes: readonly PostscreenNote[];
}

export class Postscreen {
  readonly settings: PostscreenSettings;
  private readonly dnsxl: DnsxlCache;

  constructor(settings: PostscreenSettings, dnsxl: DnsxlCache) {
    this.settings = settings;
    this.dnsxl = dnsxl;
  }

  /** Whether any test is configured at all. */
  get active(): boolean {
    return this.settings.sites.length > 0 || this.settings.greetWaitMs > 0;
  }

  /**
   * Screen one client before its greeting. PRE is the connection's pre-greeting view (the
   * pregreet test needs it); EXEMPT is postscreen_access_list's default permit_mynetworks.
   */
  async screen(client: { readonly address: string; readonly port: number }, pre: PreGreeting | undefined, exempt: boolean): Promise<PostscreenVerdict> {
    const s = this.settings;
    const notes: PostscreenNote[] = [];
    if (exempt || !this.active) return { kind: 'pass', allowlisted: false, notes };
    const label = `[${client.address}]:${client.port}`;
    const pregreetTest = s.greetWaitMs > 0 && pre !== undefined;
    if (pregreetTest && s.teaser !== '') pre.write(`220-${s.teaser}\r\n`);

    let dnsbl: DnsblScore | null = null;
    const dnsblDone = s.sites.length > 0 ? this.score(client.address).then((r) => (dnsbl = r)) : null;
    let pregreet: PostscreenReject | null = null;
    let judged = false;
    const allowlisted = (): boolean => {
      const d = dnsbl as DnsblScore | null;
      // "In either case, postscreen(8) will not allowlist" a client that talked first.
      return d !== null && !judged && s.allowlistThreshold < 0 && d.score <= s.allowlistThreshold && d.score < s.threshold;
    };
    // What the client sent before its greeting, judged once (postscreen_early.c PREGREET).
    const judgeTalk = (): PostscreenVerdict | null => {
      const talk = pre?.talk();
      if (!pregreetTest || judged || !talk) return null;
      judged = true;
      const dropped = s.greetAction === 'drop';
      const r = dropped ? reply(521, '5.5.1', 'Protocol error') : reply(550, '5.5.1', 'Protocol error');
      // Only a drop is a reject here; under enforce each refused RCPT is its own reject record
      // (as Postfix logs them), so the report does not count the client twice.
      notes.push({
        event: dropped ? 'reject' : 'info',
        fields: {
          rule: RULE_PREGREET,
          ...(dropped ? { code: r.code, status: r.status, reply: formatReply(r) } : {}),
          postscreen_action: s.greetAction,
          pregreet_bytes: talk.bytes.length,
          msg: `PREGREET ${talk.bytes.length} after ${formatDelay(talk.afterMs)} from ${label}: ${escapeBytes(talk.bytes).slice(0, 100)}`,
        },
      });
      if (s.greetAction === 'drop') return { kind: 'drop', decision: rejectDecision(r, RULE_PREGREET), notes };
      if (s.greetAction === 'enforce') pregreet = rejectDecision(r, RULE_PREGREET);
      return null;
    };

    if (pregreetTest) {
      // The greet wait ends early only when the client talks, hangs up, or the DNSBL score
      // allowlists it (psc_whitelist_non_dnsbl() marks the pregreet test passed).
      for (;;) {
        const dropped = judgeTalk();
        if (dropped) return dropped;
        if (judged) break;
        if (pre.closed()) return this.hangup(notes, pre, label, RULE_PREGREET);
        if (allowlisted()) break;
        const left = s.greetWaitMs - pre.elapsed();
        if (left <= 0) break;
        await Promise.race([pre.waitTalk(left), ...(dnsblDone && dnsbl === null ? [dnsblDone] : [])]);
      }
    }
    if (dnsblDone) await dnsblDone;
    if (pre?.closed()) return this.hangup(notes, pre, label, pregreetTest ? RULE_PREGREET : RULE_DNSBL);
    // Talking while the DNSBL answers were still awaited is talking before the greeting too.
    if (!allowlisted()) {
      const dropped = judgeTalk();
      if (dropped) return dropped;
    }
    const d = dnsbl as DnsblScore | null;
    const passed = (): PostscreenVerdict => (pregreet ? { kind: 'enforce', decision: pregreet, notes } : { kind: 'pass', allowlisted: false, notes });
    if (d === null) return passed();
    notes.push(...d.notes);
    // No listing at all never blocks, whatever the threshold (postscreen needs a name to show).
    if (d.score < s.threshold || d.top === null) {
      if (!allowlisted()) return passed();
      notes.push({
        event: 'info',
        fields: {
          rule: RULE_ALLOWLIST,
          dnsbl_score: d.score,
          dnsbl_sites: d.matched.map((m) => m.entry),
          msg: `DNSBL rank ${d.score} for ${label}: allowlisted (${RULE_ALLOWLIST} = ${s.allowlistThreshold})`,
        },
      });
      return { kind: 'pass', allowlisted: true, notes };
    }
    const name = s.replyNames.get(d.top) ?? d.top;
    const dropped = s.dnsblAction === 'drop';
    const r = reply(dropped ? 521 : 550, '5.7.1', `Service unavailable; client [${client.address}] blocked using ${name}`);
    notes.push({
      event: dropped ? 'reject' : 'info',
      fields: {
        rule: RULE_DNSBL,
        ...(dropped ? { code: r.code, status: r.status, reply: formatReply(r) } : {}),
        postscreen_action: s.dnsblAction,
        dnsbl_score: d.score,
        dnsbl_sites: d.matched.map((m) => m.entry),
        msg: `DNSBL rank ${d.score} for ${label}`,
      },
    });
    if (s.dnsblAction === 'drop') return { kind: 'drop', decision: rejectDecision(r, RULE_DNSBL), notes };
    // A DNSBL enforce replaces a pregreet enforce, as PSC_ENFORCE_SESSION_STATE does.
    if (s.dnsblAction === 'enforce') return { kind: 'enforce', decision: rejectDecision(r, RULE_DNSBL), notes };
    return passed();
  }

  private hangup(notes: PostscreenNote[], pre: PreGreeting, label: string, rule: string): PostscreenVerdict {
    notes.push({ event: 'info', fields: { rule, msg: `HANGUP after ${formatDelay(pre.elapsed())} from ${label} in tests before SMTP handshake` } });
    return { kind: 'hangup', notes };
  }

  /**
   * Ask every list once (a domain named by several entries is one query) within
   * postscreen_dnsbl_timeout, then add up the weights of the entries whose filter accepts
   * the answer. An answer that is late or an error counts as "not listed".
   */
  private async score(address: string): Promise<DnsblScore> {
    const s = this.settings;
    const notes: PostscreenNote[] = [];
    const q = clientQuery(address);
    if (q === null) return { score: 0, matched: [], top: null, notes };
    const domains = [...new Set(s.sites.map((x) => x.domain))];
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), s.dnsblTimeoutMs);
      timer.unref();
    });
    const answers = new Map<string, DnsxlResult | 'late'>();
    try {
      await Promise.all(
        domains.map(async (domain) => {
          // The query goes on after a timeout: its answer is cached for the next connection.
          answers.set(domain, await Promise.race([this.dnsxl.query(`${q}.${domain}`, null), late]));
        }),
      );
    } finally {
      clearTimeout(timer);
    }
    for (const domain of domains) {
      const a = answers.get(domain)!;
      if (a === 'late') {
        notes.push({ event: 'warn', fields: { rule: RULE_DNSBL, dnsbl_site: domain, reason: 'timeout', msg: `warning: dnsblog reply timeout ${formatDelay(s.dnsblTimeoutMs)}s for ${domain}` } });
      } else if (a.kind === 'error') {
        notes.push({ event: 'warn', fields: { rule: RULE_DNSBL, dnsbl_site: domain, reason: a.reason, msg: `warning: dnsblog_query: lookup error for DNS query ${a.reason}` } });
      }
    }
    let score = 0;
    let top: PostscreenSite | null = null;
    const matched: PostscreenSite[] = [];
    for (const site of s.sites) {
      const a = answers.get(site.domain);
      if (a === undefined || a === 'late' || a.kind !== 'listed') continue;
      if (site.filter && !a.addresses.some((x) => site.filter!.test(x))) continue;
      score += site.weight;
      matched.push(site);
      if (top === null || site.weight > top.weight) top = site;
    }
    return { score, matched, top: top?.domain ?? null, notes };
  }
}

function rejectDecision(r: ReturnType<typeof reply>, rule: string): PostscreenReject {
  return { kind: 'reject', reply: r, rule, disconnect: false };
}

/**
 * The Postscreen of the configuration snapshot in use, compiled when a snapshot is first
 * seen. The DNSBL answer cache survives a reload that keeps dns_resolvers and dns_timeout.
 */
export class PostscreenCache {
  private current: { config: Config; screen: Postscreen } | null = null;
  private dns: { key: string; cache: DnsxlCache } | null = null;
  private readonly onProblem: (p: Problem) => void;
  private readonly makeDns: (config: Config) => DnsClient;

  constructor(onProblem: (p: Problem) => void, makeDns: (config: Config) => DnsClient = createDnsClient) {
    this.onProblem = onProblem;
    this.makeDns = makeDns;
  }

  get(config: Config): Postscreen {
    if (this.current?.config === config) return this.current.screen;
    const { settings, problems } = compilePostscreen(config);
    for (const p of problems) this.onProblem(p);
    const key = `${config.get('dns_resolvers')}|${config.get('dns_timeout')}`;
    if (this.dns?.key !== key) this.dns = { key, cache: new DnsxlCache(this.makeDns(config)) };
    const screen = new Postscreen(settings, this.dns.cache);
    this.current = { config, screen };
    return screen;
  }
}

/** The Problems of CONFIG's postscreen_* parameters, for `greygate check` and reloads. */
export function postscreenProblems(config: Config, open?: (spec: string) => Table): Problem[] {
  return compilePostscreen(config, open).problems;
}
