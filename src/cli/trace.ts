/**
 * @module cli/trace
 * SUMMARY: `greygate trace [options] FILE.eml`: run one message through the whole policy
 * pipeline offline, as the daemon would for one SMTP session (connect, EHLO, MAIL, each
 * RCPT, DATA, header/body checks, end of data), with the same compiled runtime as `start`,
 * and print every decision: the SMTP command, each restriction list and restriction with
 * its result and provenance (FILE:LINE of the table entry, or the restriction name), the
 * table keys tried, DNS queries, the daemon's own log records (reject, warn, hold ...) and
 * the final result. --json prints the same records as JSON lines. Exports run().
 * Exit status: 0 the message would be accepted (also held or discarded: the client gets
 * 250), 1 rejected or deferred, 2 the trace could not run (usage, unreadable file, bad
 * address, configuration errors in main.cf).
 * DIAGNOSTICS: one line on stderr for bad input; table and restriction problems are printed
 * as `FILE:LINE: message` on stderr and the trace goes on (the entry answers 4.3.5 as in
 * the daemon). No socket is opened except the DNS lookups the configuration asks for
 * (reject_rbl_client, reject_unknown_*); --no-dns answers those "not found" offline.
 * SEE ALSO: smtpd/server.ts and smtpd/data.ts (the session this mirrors), Postfix
 * smtpd_check.in/.ref, postmap(1) -q, design.md "CLI".
 */
import { isIP } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { existsSync } from 'node:fs';
import { formatProblem, GreygateError, UsageError, type Problem } from '../errors.js';
import { loadConfig, type Config } from '../config/config.js';
import { splitList } from '../config/expand.js';
import { TableCache } from '../tables/open.js';
import { createDnsClient, offlineDnsClient, verifyClientName, type DnsAnswer, type DnsClient, type PeerStatus } from '../dns/resolver.js';
import { createClientNameResolver } from '../dns/client-name.js';
import { formatReply, reply } from '../mail/reply.js';
import { isValidHostname } from '../mail/address.js';
import { REGISTRY, type Policy } from '../restrictions/policy.js';
import type { PolicyClient } from '../restrictions/policy-client.js';
import { newEffects, type Decision, type SessionState, type Stage, type TransactionEffects } from '../restrictions/state.js';
import { UserStore, USERS_DB } from '../mailbox/users.js';
import { compileRuntime, type LocalUsers } from '../runtime.js';
import type { CompiledChecks } from '../checks/compile.js';
import { openGreylist, parseDatabase, type Greylist } from '../greylist/greylist.js';
import { openSqliteStore } from '../greylist/sqlite-store.js';
import { ContentFilter, type ContentOutcome } from '../checks/content-filter.js';
import type { CheckDecision } from '../checks/actions.js';
import type { CliIO } from './io.js';
import { addressLiteral, checkAddress, readMessage } from './trace-message.js';
import { TraceReport, type TraceRecord } from './trace-report.js';

/** RFC 5737 TEST-NET-1: an outside client nobody has configured as trusted. */
export const DEFAULT_CLIENT = '192.0.2.1';

const USAGE =
  'usage: greygate trace [--client IP] [--client-name NAME] [--rdns] [--helo NAME] [--from ADDR] [--to ADDR]... ' +
  '[--sasl USER] [--tls] [--service smtpd|submission|smtps] [--no-dns] [--json] FILE.eml';

interface Options {
  client: string;
  clientName: string | null;
  rdns: boolean;
  helo: string | null;
  from: string | null;
  to: string[];
  sasl: string | null;
  tls: boolean;
  service: 'smtpd' | 'submission' | 'smtps';
  noDns: boolean;
  json: boolean;
  file: string;
}

const SERVICES = ['smtpd', 'submission', 'smtps'] as const;
const PORT_PARAM = { smtpd: 'smtpd_port', submission: 'submission_port', smtps: 'smtps_port' } as const;

function parseArgs(args: readonly string[]): Options {
  const o: Omit<Options, 'file'> & { file: string | null } = {
    client: DEFAULT_CLIENT,
    clientName: null,
    rdns: false,
    helo: null,
    from: null,
    to: [],
    sasl: null,
    tls: false,
    service: 'smtpd',
    noDns: false,
    json: false,
    file: null,
  };
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      files.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('--') || a === '-') {
      files.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = args[++i];
      if (v === undefined) throw new UsageError(`trace: option ${name} requires an argument`);
      return v;
    };
    switch (name) {
      case '--client':
        o.client = value();
        break;
      case '--client-name':
        o.clientName = value();
        break;
      case '--rdns':
        o.rdns = true;
        break;
      case '--helo':
        o.helo = value();
        break;
      case '--from':
        o.from = value();
        break;
      case '--to':
        o.to.push(value());
        break;
      case '--sasl':
        o.sasl = value();
        break;
      case '--tls':
        o.tls = true;
        break;
      case '--service': {
        const v = value();
        if (!(SERVICES as readonly string[]).includes(v)) throw new UsageError(`trace: --service must be one of ${SERVICES.join(', ')}`);
        o.service = v as Options['service'];
        break;
      }
      case '--no-dns':
        o.noDns = true;
        break;
      case '--json':
        o.json = true;
        break;
      default:
        throw new UsageError(`trace: unknown option ${name}; ${USAGE}`);
    }
  }
  if (files.length !== 1) throw new UsageError(files.length ? `trace: one message file only (got ${files.length})` : USAGE);
  if (isIP(o.client) === 0) throw new UsageError(`trace: --client: not an IP address: ${o.client}`);
  if (o.clientName !== null && o.clientName.toLowerCase() !== 'unknown' && !isValidHostname(o.clientName)) {
    throw new UsageError(`trace: --client-name: not a host name: ${o.clientName}`);
  }
  if (o.clientName !== null && o.rdns) throw new UsageError('trace: give either --client-name or --rdns');
  if (o.helo !== null && (o.helo.trim() === '' || /\s/.test(o.helo))) throw new UsageError(`trace: --helo: bad HELO argument: "${o.helo}"`);
  if (o.sasl !== null && o.sasl.trim() === '') throw new UsageError('trace: --sasl: empty user name');
  return { ...o, file: files[0]! };
}

const PEER_TEXT: Record<PeerStatus, string> = {
  ok: 'forward-confirmed',
  temp: 'temporary DNS failure',
  perm: 'no usable PTR record',
  forged: 'the PTR name does not resolve back to the address',
};

/** What the trace ends with; `exit` is the command's status. */
interface Outcome {
  readonly result: 'accepted' | 'rejected' | 'deferred' | 'discarded';
  readonly exit: 0 | 1;
}

export async function run(args: string[], io: CliIO): Promise<number> {
  if (args.includes('--help')) {
    io.out(USAGE + '\n');
    return 0;
  }
  const opts = parseArgs(args);
  try {
    return await trace(opts, io);
  } catch (err) {
    // A trace that could not run must not look like a rejected message (exit 1).
    if (err instanceof GreygateError && !(err instanceof UsageError)) {
      io.err(`greygate: trace: ${err.message.split('\n')[0]}\n`);
      return 2;
    }
    throw err;
  }
}

async function trace(opts: Options, io: CliIO): Promise<number> {
  const config = loadConfig(io.configDir);
  // Table files are named as in main.cf (relative to the config directory); show them from
  // where the admin ran the command, as `check` does. An inline: table has no file.
  const shown = (p: Problem): string => formatProblem(isAbsolute(p.file) || /^[a-z]+:/.test(p.file) ? p : { ...p, file: join(io.configDir, p.file) });
  const cfgErrors = config.problems.filter((p) => p.severity === 'error');
  if (cfgErrors.length) {
    for (const p of config.problems) io.err(shown(p) + '\n');
    io.err(`greygate: trace: ${config.file} has errors; the gateway would not start with it\n`);
    return 2;
  }
  const from = opts.from === null ? null : checkAddress('--from', opts.from, true);
  const to = opts.to.map((t) => checkAddress('--to', t, false));
  const message = readMessage(opts.file);
  const sender = from ?? (message.sender === null ? '' : checkAddress(`sender ${message.sender} from the ${message.senderHeader} header`, message.sender, true));
  const recipients = to.length ? to : message.recipients.map((r) => checkAddress(`recipient ${r} from the message headers`, r, false));
  if (recipients.length === 0) throw new UsageError(`trace: ${opts.file} has no To, Cc or Bcc address: give --to ADDR`);

  const state: SessionState = {
    client: { address: opts.client, port: 0, name: 'unknown', reverseName: 'unknown' },
    protocol: 'SMTP',
    recipients: [],
    tls: opts.service === 'smtps',
    instance: 'trace',
    unauthPipelining: false,
    localPort: Number(config.get(PORT_PARAM[opts.service])) || 0,
    service: opts.service,
  };
  const report = new TraceReport(() => state, { order: recipientLists(config) });
  state.onStep = report.onStep;
  const fromWhere = from !== null ? '--from' : message.senderHeader ? `${message.senderHeader}: header` : 'no Return-Path or From header';
  const toWhere = to.length ? '--to' : 'To/Cc/Bcc headers';
  report.add(
    {
      ...report.base('note', `trace ${opts.file} with ${config.file}: MAIL FROM:<${sender}> (${fromWhere}), RCPT TO: ${recipients.map((r) => `<${r}>`).join(' ')} (${toWhere})`),
      file: opts.file,
      config: config.file,
    },
    0,
  );

  const dns = recordingDns(opts.noDns ? offlineDnsClient('no DNS (--no-dns)') : createDnsClient(config), report, opts.noDns);
  const policyClient = (endpoint: string): PolicyClient => ({
    async request() {
      report.detail({ ...report.base('policy', `${endpoint}: not contacted (trace is offline): taken as DUNNO`), endpoint, result: 'DUNNO' });
      return { ok: true, action: 'DUNNO' };
    },
    close() {},
  });
  const tables = new TableCache(config.configDir);
  const gl = await openTraceGreylist(config);
  const built = compileRuntime(config, tables, dns, openUsers(config), { policyClient, greylist: gl.greylist });
  const checks = built.runtime.checks;
  const seen = new Set<string>();
  for (const p of [...config.problems, ...gl.problems, ...built.problems, ...checks.problems]) {
    const line = shown(p);
    if (!seen.has(line)) io.err(line + '\n');
    seen.add(line);
  }
  const policy = built.runtime.policies.get(opts.service) ?? built.runtime.policies.get('smtpd')!;

  // The client name: given, looked up as the daemon does (--rdns), or unknown.
  if (opts.clientName !== null) {
    const n = opts.clientName.toLowerCase();
    state.client = n === 'unknown' ? { ...state.client, name: n, reverseName: n } : { ...state.client, name: n, reverseName: n, nameStatus: 'ok', reverseNameStatus: 'ok' };
  } else if (opts.rdns) {
    report.command('connect', `client name lookup for ${opts.client} (--rdns)`);
    // As gateway.ts: without dns_resolvers the system's resolver library (and /etc/hosts) answers.
    const system = !opts.noDns && config.list('dns_resolvers').length === 0;
    const resolver = system ? createClientNameResolver(dns, { system, timeoutMs: config.time('dns_timeout') }) : dns;
    const n = await resolver.verifiedClientName(opts.client);
    state.client = { ...state.client, ...n };
    report.add({ ...report.base('note', `client name ${n.name}, reverse name ${n.reverseName} (${PEER_TEXT[n.nameStatus]})`), name_status: n.nameStatus });
  }
  const names = state.client;

  const outcome = await converse(policy, config, checks, state, report, {
    helo: opts.helo ?? (names.name !== 'unknown' ? names.name : addressLiteral(opts.client)),
    sender,
    recipients,
    data: message.data,
    sasl: opts.sasl,
    tls: opts.tls || opts.service === 'smtps',
  });
  policy.close();
  await gl.close();
  io.out(opts.json ? report.json() : report.text());
  return outcome.exit;
}

/**
 * The gateway's greylist, read-only: decisions and explanations as the daemon would make
 * them, nothing written. A SQLite database the gateway has not created yet is not created
 * here: an empty in-memory one stands in (every triplet is new).
 */
async function openTraceGreylist(config: Config): Promise<{ greylist: Greylist; problems: Problem[]; close(): Promise<void> }> {
  const spec = parseDatabase(config.get('greylist_database'), config.dataDir());
  const missing = spec.kind === 'sqlite' && spec.path !== ':memory:' && !existsSync(spec.path);
  const { greylist, problems } = await openGreylist(config, { cleanupIntervalMs: 0, ...(missing ? { store: openSqliteStore(':memory:') } : {}) });
  // The read-only view shares the store; closing the real one releases it.
  return { greylist: greylist.readOnly(), problems, close: () => greylist.close() };
}

interface Conversation {
  readonly helo: string;
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly data: Buffer;
  readonly sasl: string | null;
  readonly tls: boolean;
}

const VERB: Record<Stage, string> = {
  connect: 'CONNECT',
  helo: 'HELO',
  mail: 'MAIL',
  rcpt: 'RCPT',
  data: 'DATA',
  'end-of-data': 'END-OF-MESSAGE',
};

const LIST_PARAMS = new Set([
  'smtpd_client_restrictions',
  'smtpd_helo_restrictions',
  'smtpd_sender_restrictions',
  'smtpd_relay_restrictions',
  'smtpd_recipient_restrictions',
  'smtpd_data_restrictions',
  'smtpd_end_of_data_restrictions',
]);

const DELAYED: Partial<Record<Stage, string>> = {
  connect: 'smtpd_client_restrictions',
  helo: 'smtpd_helo_restrictions',
  mail: 'smtpd_sender_restrictions',
};

/** The SMTP session of smtpd/server.ts and smtpd/data.ts, one command after another. */
async function converse(policy: Policy, config: Config, checks: CompiledChecks, s: SessionState, report: TraceReport, c: Conversation): Promise<Outcome> {
  let fx: TransactionEffects = newEffects();
  const label = (): string => `${s.client.name}[${s.client.address}]`;
  const delayReject = config.bool('smtpd_delay_reject');

  /** flushNotes(): each WARN/INFO/reject_warning the engine collected, once. */
  const notes = (): void => {
    for (const n of fx.notes) {
      const rec = report.base(n.event, `${n.event}: ${VERB[n.stage]} from ${label()}: ${n.text} [${n.rule}]`);
      rec.stage = n.stage;
      rec.rule = n.rule;
      rec.reply = n.text;
      report.add(rec);
    }
    fx.notes.length = 0;
  };

  /** SessionContext.refuse(): the reject log line, with Postfix's log_whatsup() text. */
  const refused = (stage: Stage, d: Extract<Decision, { kind: 'reject' | 'defer' }>, to?: string): void => {
    const rec = report.base(d.kind, '');
    rec.code = d.reply.code;
    rec.status = d.reply.status;
    rec.reply = formatReply(d.reply);
    rec.rule = d.rule;
    const envelope = `from=<${s.sender ?? ''}> to=<${to ?? ''}> proto=${s.protocol} helo=<${s.helo ?? ''}>`;
    rec.msg = `${d.kind}: ${VERB[stage]} from ${label()}: ${rec.reply}; ${envelope} [${d.rule}]`;
    report.add(rec);
  };

  const permitted = (stage: Stage, d: Extract<Decision, { kind: 'permit' }>): void => {
    let why: string;
    if (d.rule !== null && LIST_PARAMS.has(d.rule)) {
      // The engine's implicit permit at the end of the stage's lists.
      why = report.walked.size ? `(no restriction decided: end of ${[...report.walked].join(', ')})` : `(${d.rule} is empty)`;
    } else if (d.rule !== null) why = `[${d.rule}]`;
    else if (delayReject && DELAYED[stage]) why = `(${DELAYED[stage]} run at RCPT: smtpd_delay_reject = yes)`;
    else why = '(no restriction decided)';
    const rec = report.base('permit', `permit ${why}`);
    if (d.rule !== null) rec.rule = d.rule;
    report.add(rec);
  };

  const result = (o: Outcome['result'], msg: string, extra: Partial<TraceRecord> = {}): Outcome => {
    report.to = undefined;
    report.add({ ...report.base('result', `result: ${msg}`), result: o, ...extra }, 0);
    return { result: o, exit: o === 'rejected' || o === 'deferred' ? 1 : 0 };
  };

  const refusedResult = (stage: Stage, d: Extract<Decision, { kind: 'reject' | 'defer' }>): Outcome => {
    const o = d.kind === 'reject' ? 'rejected' : 'deferred';
    return result(o, `${o} at ${VERB[stage]}: ${formatReply(d.reply)} [${d.rule}]`, {
      code: d.reply.code,
      status: d.reply.status,
      reply: formatReply(d.reply),
      rule: d.rule,
      rejected_stage: stage,
    });
  };

  // connect (onConnect)
  report.command('connect', `connect from ${label()} (service ${s.service}${s.tls ? ', TLS' : ''})`, { service: s.service }, 'connect');
  let d = await policy.checkConnect(s, fx);
  notes();
  if (d.kind !== 'permit') {
    // Postfix without smtpd_delay_reject: greet, then refuse every command with this reply.
    refused('connect', d);
    return refusedResult('connect', d);
  }
  permitted('connect', d);

  // EHLO (onHelo); STARTTLS happens after the first EHLO, so only later stages see TLS.
  s.helo = c.helo;
  s.protocol = 'ESMTP';
  s.tls = c.tls;
  report.command('helo', `EHLO ${c.helo}`);
  d = await policy.checkHelo(s, fx);
  notes();
  if (d.kind !== 'permit') {
    refused('helo', d);
    return refusedResult('helo', d);
  }
  permitted('helo', d);

  if (c.sasl !== null) {
    s.saslUsername = c.sasl.toLowerCase();
    s.saslMethod = 'PLAIN';
    report.add(
      { ...report.base('auth', `auth: client=${label()}, sasl_method=PLAIN, sasl_username=${s.saslUsername} (password not checked by trace)`), sasl_method: 'PLAIN', sasl_username: s.saslUsername },
      0,
    );
  }

  // MAIL (onMailFrom, SessionContext.resetTransaction)
  fx = newEffects();
  s.recipients = [];
  s.recipient = undefined;
  s.queueId = undefined;
  s.size = undefined;
  s.instance = `trace.${Date.now().toString(36)}`;
  s.sender = c.sender;
  report.command('mail', `MAIL FROM:<${c.sender}>`);
  d = await policy.checkMail(s, fx);
  notes();
  if (d.kind !== 'permit') {
    refused('mail', d);
    const o = refusedResult('mail', d);
    s.sender = undefined;
    return o;
  }
  permitted('mail', d);

  // RCPT (onRcptTo), each recipient in turn
  const refusals: Array<Extract<Decision, { kind: 'reject' | 'defer' }>> = [];
  const limit = config.int('smtpd_recipient_limit');
  for (const rcpt of c.recipients) {
    report.to = rcpt;
    report.command('rcpt', `RCPT TO:<${rcpt}>`);
    const known = s.recipients.some((r) => r.toLowerCase() === rcpt.toLowerCase());
    if (limit > 0 && s.recipients.length >= limit && !known) {
      const tooMany: Extract<Decision, { kind: 'defer' }> = { kind: 'defer', reply: reply(452, '4.5.3', 'Error: too many recipients'), rule: 'smtpd_recipient_limit', disconnect: false };
      refused('rcpt', tooMany, rcpt);
      refusals.push(tooMany);
      continue;
    }
    s.recipient = rcpt;
    d = await policy.checkRcpt(s, fx);
    notes();
    if (d.kind !== 'permit') {
      refused('rcpt', d, rcpt);
      refusals.push(d);
      continue;
    }
    permitted('rcpt', d);
    if (!known) s.recipients.push(rcpt);
  }
  report.to = undefined;
  if (s.recipients.length === 0) {
    const first = refusals[0]!;
    if (refusals.length === 1) return refusedResult('rcpt', first);
    const o = refusals.every((r) => r.kind === 'reject') ? 'rejected' : 'deferred';
    return result(o, `${o} at RCPT: no recipient accepted (first: ${formatReply(first.reply)} [${first.rule}])`, {
      code: first.reply.code,
      status: first.reply.status,
      reply: formatReply(first.reply),
      rule: first.rule,
      rejected_stage: 'rcpt',
    });
  }

  // DATA (onDataCommand)
  s.recipient = undefined;
  report.command('data', 'DATA', { to: [...s.recipients] });
  d = await policy.checkData(s, fx);
  notes();
  if (d.kind !== 'permit') {
    refused('data', d);
    return refusedResult('data', d);
  }
  permitted('data', d);
  for (const p of fx.prepend) {
    report.add({ ...report.base('prepend', `prepend: ${p.header} [${p.rule}]`), rule: p.rule, header: p.header });
  }

  // The message (receiveMessage): prepended headers, our Received:, then the client's
  // bytes through header_checks/body_checks (only the client's bytes are inspected).
  let size = 0;
  for (const p of fx.prepend) size += Buffer.byteLength(p.header.replace(/[\r\n]+/g, ' ') + '\r\n', 'latin1');
  const lists = CHECK_LISTS.filter((p) => config.list(p).length > 0);
  report.command('data', `message: ${c.data.length} bytes${checks.active ? `, ${lists.join(', ')}` : ', no header_checks or body_checks'}`, { size: c.data.length });
  const content = runChecks(checks, c.data);
  for (const dd of content.outcome.decisions) report.add(checkRecord(report, dd));
  for (const w of content.outcome.warnings) {
    const rec = report.base('warn', `warning: ${w.message}${w.rule ? ` [${w.rule}]` : ''}`);
    if (w.rule) rec.rule = w.rule;
    report.add(rec);
  }
  size += content.size;
  if (!c.data.subarray(-2).equals(CRLF)) size += 2;

  report.command('end-of-data', `END-OF-MESSAGE (${size} bytes as queued)`, { to: [...s.recipients], size });
  s.size = size;
  const sizeLimit = Number(config.get('message_size_limit')) || 0;
  if (sizeLimit > 0 && c.data.length > sizeLimit) {
    const big: Extract<Decision, { kind: 'reject' }> = { kind: 'reject', reply: reply(552, '5.3.4', 'Message size exceeds fixed limit'), rule: 'message_size_limit', disconnect: false };
    refused('end-of-data', big);
    return refusedResult('end-of-data', big);
  }

  // smtpd_end_of_data_restrictions are answered before cleanup's verdict (smtpd.c data_cmd()).
  d = await policy.checkEndOfData(s, fx);
  notes();
  if (d.kind !== 'permit') {
    refused('end-of-data', d);
    return refusedResult('end-of-data', d);
  }
  permitted('end-of-data', d);

  const o: ContentOutcome = content.outcome;
  const total = `${s.recipients.length === c.recipients.length ? '' : ` for ${s.recipients.length} of ${c.recipients.length} recipients`}`;
  // cleanup_flush(): a DISCARD wins over everything the content checks found.
  const discard = fx.discard ?? (o.discard ? { text: o.discard.text, rule: o.discard.rule } : undefined);
  if (discard) {
    report.add({ ...report.base('discard', `discard: ${discard.text || 'message discarded'} [${discard.rule}]`), to: [...s.recipients], size, rule: discard.rule, reply: discard.text });
    return result('discarded', `discarded${total}: the client is told 250 Ok, the message is dropped [${discard.rule}]`, { rule: discard.rule });
  }
  if (o.reject) {
    const r = o.reject;
    const kind = r.reply.code >= 500 ? 'reject' : 'defer';
    refused('end-of-data', { kind, reply: r.reply, rule: r.rule, disconnect: false });
    return refusedResult('end-of-data', { kind, reply: r.reply, rule: r.rule, disconnect: false });
  }
  if (o.error) {
    const dd: Extract<Decision, { kind: 'defer' }> = { kind: 'defer', reply: o.error.reply, rule: o.error.table, disconnect: false };
    refused('end-of-data', dd);
    return refusedResult('end-of-data', dd);
  }
  // Restriction actions came first; header/body checks may add to them (cleanup_act()).
  const hold = fx.hold ?? (o.hold ? { text: o.hold.text, rule: o.hold.rule } : undefined);
  // smtpd hands its own REDIRECT/FILTER to cleanup after the content: the access map wins.
  const redirect = fx.redirect ?? o.redirect;
  const filter = fx.filter ?? o.filter;
  const bcc = [...(fx.bcc ? [fx.bcc] : []), ...o.bcc.filter((b) => b.address !== fx.bcc?.address)];
  let rcpts = [...s.recipients];
  if (redirect) rcpts = [redirect.address];
  for (const b of bcc) if (!rcpts.includes(b.address)) rcpts.push(b.address);
  const queue = hold ? 'hold' : 'incoming';
  if (hold) {
    report.add({ ...report.base('hold', `hold: ${hold.text || 'message held'} [${hold.rule}]`), to: rcpts, size, rule: hold.rule, reply: hold.text });
  }
  const acc = report.base('accept', `accept: from=<${s.sender ?? ''}>, size=${size}, nrcpt=${rcpts.length} (queue ${queue})`);
  Object.assign(acc, { to: rcpts, size, code: 250, status: '2.0.0', reply: '250 2.0.0 Ok: queued' });
  if (redirect) acc.rule = redirect.rule;
  report.add(acc);
  const extras: string[] = [];
  if (redirect) extras.push(`redirected to ${redirect.address} [${redirect.rule}]`);
  for (const b of bcc) extras.push(`bcc ${b.address} [${b.rule}]`);
  if (filter) extras.push(`content filter ${filter.nexthop} [${filter.rule}]`);
  if (hold) extras.push(`held [${hold.rule}]`);
  const extra: Partial<TraceRecord> = { queue, to: rcpts, code: 250, status: '2.0.0' };
  if (filter) extra.filter = filter.nexthop;
  return result('accepted', `accepted${total} (queue: ${queue})${extras.length ? ': ' + extras.join(', ') : ''}`, extra);
}

const CRLF = Buffer.from('\r\n');
const CHECK_LISTS = ['header_checks', 'mime_header_checks', 'nested_header_checks', 'body_checks'];
/** The size of the pieces the message is fed in, as a socket would deliver it. */
const CHUNK = 64 * 1024;

/** Stream DATA through the content filter in trace mode; returns the outcome and the stored size. */
function runChecks(checks: CompiledChecks, data: Buffer): { outcome: ContentOutcome; size: number } {
  const filter = new ContentFilter(checks, { trace: true });
  let size = 0;
  for (let at = 0; at < data.length; at += CHUNK) {
    for (const b of filter.write(data.subarray(at, at + CHUNK))) size += b.length;
  }
  const { tail, outcome } = filter.end();
  for (const b of tail) size += b.length;
  return { outcome, size };
}

/** One header/body check decision: the matched text, the action and the rule's FILE:LINE. */
function checkRecord(report: TraceReport, d: CheckDecision): TraceRecord {
  const matched = oneLine(d.matched);
  const what = d.context === 'mime-error' ? `MIME structure ${matched}` : `${d.context} ${matched}`;
  const rec = report.base(d.event, `${d.table}: ${d.action}: ${what}${d.text ? `: ${d.text}` : ''} [${d.rule}]`);
  rec.stage = 'data';
  rec.rule = d.rule;
  rec.table = d.table;
  rec.where = d.where;
  rec.action = d.action;
  if (d.context === 'body') rec.line = d.matched;
  else rec.header = d.matched;
  if (d.text) rec.text = d.text;
  if (!d.logged) rec.logged = false;
  return rec;
}

/** Folded headers keep their line breaks in the record; the text line shows them escaped. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\r/g, '\\r').replace(/\n/g, '\\n').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The relay and recipient lists in walking order, named as compileList() names entries. */
function recipientLists(config: Config): Array<{ param: string; names: string[] }> {
  const relay = { param: 'smtpd_relay_restrictions', names: compiledNames(splitList(config.get('smtpd_relay_restrictions'))) };
  const rcpt = { param: 'smtpd_recipient_restrictions', names: compiledNames(splitList(config.get('smtpd_recipient_restrictions'))) };
  const relayFirst = config.bool('smtpd_relay_before_recipient_restrictions');
  const order = relayFirst ? [relay, rcpt] : [rcpt, relay];
  // An empty list is never walked.
  return order.filter((l) => l.names.length > 0);
}

function compiledNames(tokens: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const lower = t.toLowerCase();
    if (lower === 'warn_if_reject') out.push(lower);
    else if (t.includes(':') || t.startsWith('{')) out.push(t);
    else {
      const def = REGISTRY.get(lower);
      if (!def) out.push(t);
      else if (def.args === 1 && tokens[i + 1] !== undefined) out.push(`${lower} ${tokens[++i]}`);
      else out.push(lower);
    }
  }
  return out;
}

/** Mailbox users, read from data_directory if the gateway has created them; never created here. */
function openUsers(config: Config): LocalUsers {
  const dir = config.dataDir();
  if (!existsSync(join(dir, USERS_DB))) return { exists: () => false };
  const store = UserStore.open(dir);
  let names: Set<string>;
  try {
    names = new Set(store.list().map((u) => u.toLowerCase()));
  } finally {
    store.close();
  }
  return { exists: (n) => names.has(n.toLowerCase()) };
}

/** Every query and its answer becomes a `dns` record under the restriction that asked. */
function recordingDns(inner: DnsClient, report: TraceReport, offline: boolean): DnsClient {
  const wrap =
    <T>(type: string, q: (name: string) => Promise<DnsAnswer<T>>, show: (r: T) => string) =>
    async (name: string): Promise<DnsAnswer<T>> => {
      const r = await q(name);
      let answer: string;
      if (r.status === 'ok') answer = r.records.map(show).join(', ') || '(no records)';
      else if (r.status === 'notfound') answer = offline ? 'not found (--no-dns: not asked)' : `not found (${r.reason})`;
      else answer = `${r.status === 'retry' ? 'temporary failure' : 'failure'} (${r.reason})`;
      const rec = report.base('dns', `dns ${type} ${name}: ${answer}`);
      rec.query = type;
      rec.name = name;
      rec.result = r.status;
      if (r.status === 'ok') rec.answer = r.records.map(show);
      report.detail(rec);
      return r;
    };
  const str = (x: string): string => x;
  const client: DnsClient = {
    a: wrap('A', (n) => inner.a(n), str),
    aaaa: wrap('AAAA', (n) => inner.aaaa(n), str),
    txt: wrap('TXT', (n) => inner.txt(n), (x) => JSON.stringify(x)),
    mx: wrap('MX', (n) => inner.mx(n), (x) => `${x.priority} ${x.exchange || '.'}`),
    reverse: wrap('PTR', (n) => inner.reverse(n), str),
    verifiedClientName: (ip) => verifyClientName(client, ip),
  };
  return client;
}
