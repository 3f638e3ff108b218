/**
 * @module bench/greylist
 * SUMMARY: `npm run bench:greylist` — greylisting speed, greygate against postgrey 1.37 in
 * one run. (1) Policy lookups/s over the Postfix policy protocol at concurrency 1 and 20,
 * same client (bench/lib/policy-load.ts), same requests, for triplets that have already
 * passed and for new triplets, against greygate's policy service and against postgrey
 * started here with --delay=1; the greygate/postgrey ratio is printed (target >= 20x), and
 * the ceiling: the same client against a server that does no work (policy-load.ts
 * CeilingServer), with greygate's rate as a share of it.
 * (2) SMTP msgs/s with greylisting on, for a passed triplet (primed first: 450, wait, 250):
 * greygate's smtpd with check_greylist; and, with Postfix, a private Postfix asking postgrey,
 * and the same Postfix setup asking greygate's policy service.
 * greygate runs as the built gateway (dist/main.js) with policy_service_port set; with a
 * build whose gateway does not start the policy service, the service runs in a process of
 * its own (bench/lib/policyd-standalone.ts). Environment: readOptions() and bench/README.md.
 * DIAGNOSTICS: a missing tool, a daemon that will not start, a wrong answer (a lookup whose
 * action is not the expected one, an SMTP reply that is not 2xx) ends the run with one line
 * on stderr and exit status 1; daemons and temp dirs are removed on every exit path.
 * SEE ALSO: /work/shared/peers.md, bench/README.md, postgrey(8), SMTPD_POLICY_README.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BenchError } from './lib/bench-error.js';
import { runBench, teardown } from './lib/bench-main.js';
import { positiveInts } from './lib/options.js';
import { findExecutable } from './lib/executables.js';
import { installExitHandlers, benchRoot } from './lib/exit-cleanup.js';
import { GreygateRunner } from './lib/greygate-runner.js';
import { freeLoopbackPorts } from './lib/net.js';
import { PolicydStandalone } from './lib/policyd-standalone.js';
import { CeilingServer, postfixRequest, runPolicyLoad, waitForPolicyService, type PolicyLoadResult } from './lib/policy-load.js';
import { PostfixPeer } from './lib/postfix-peer.js';
import { POSTGREY_HINT, PostgreyPeer } from './lib/postgrey-peer.js';
import { sendProbe } from './lib/smtp-probe.js';
import { SmtpSink } from './lib/smtp-sink.js';
import { RECIPIENT, SENDER, runSmtpSource } from './lib/smtp-source.js';
import { formatRate, formatRatio, median, renderTable } from './lib/table.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RELAY_DOMAIN = 'example.com';
const WHITELIST_CLIENTS = '/etc/postgrey/whitelist_clients';
const WHITELIST_RECIPIENTS = '/etc/postgrey/whitelist_recipients';
/** Seconds to wait after a triplet's first attempt: delay 1 s, and postgrey counts whole seconds. */
const PRIME_WAIT_MS = 2100;

type Workload = 'passed' | 'new';
type LookupTarget = 'greygate' | 'postgrey';
type SmtpTarget = 'greygate' | 'postfix-postgrey' | 'postfix-greygate';
const SMTP_TARGETS: readonly SmtpTarget[] = ['greygate', 'postfix-postgrey', 'postfix-greygate'];

interface Options {
  readonly concurrencies: readonly number[];
  readonly smtpConcurrencies: readonly number[];
  readonly seconds: number;
  readonly runs: number;
  readonly triplets: number;
  readonly smtpMessages: ReadonlyMap<number, number>;
  readonly smtpTargets: ReadonlySet<SmtpTarget>;
  readonly smtp: boolean;
  readonly keep: boolean;
  readonly jsonFile: string | undefined;
}

/**
 * BENCH_QUICK=1 smoke run; BENCH_RUNS (3); BENCH_SECONDS per lookup run (3); BENCH_CONCURRENCY
 * (1,20) for lookups, BENCH_SMTP_CONCURRENCY (1,20); BENCH_TRIPLETS primed passed triplets
 * (1000); BENCH_SMTP_MESSAGES (1000,3000); BENCH_SMTP_TARGETS (greygate,postfix-postgrey,
 * postfix-greygate); BENCH_SMTP=0 skips SMTP; BENCH_KEEP=1; BENCH_JSON=FILE.
 */
function readOptions(env: NodeJS.ProcessEnv): Options {
  const quick = env.BENCH_QUICK === '1';
  const smtpTargets = new Set<SmtpTarget>();
  for (const t of (env.BENCH_SMTP_TARGETS ?? SMTP_TARGETS.join(',')).split(',').map((x) => x.trim())) {
    if (!(SMTP_TARGETS as readonly string[]).includes(t)) throw new BenchError(`BENCH_SMTP_TARGETS: unknown target "${t}" (known: ${SMTP_TARGETS.join(', ')})`);
    smtpTargets.add(t as SmtpTarget);
  }
  const concurrencies = positiveInts('BENCH_CONCURRENCY', env.BENCH_CONCURRENCY ?? '1,20');
  const smtpConcurrencies = positiveInts('BENCH_SMTP_CONCURRENCY', env.BENCH_SMTP_CONCURRENCY ?? '1,20');
  const smtpMessages = new Map<number, number>();
  const given = env.BENCH_SMTP_MESSAGES ? positiveInts('BENCH_SMTP_MESSAGES', env.BENCH_SMTP_MESSAGES) : null;
  if (given && given.length !== 1 && given.length !== smtpConcurrencies.length) {
    throw new BenchError(`BENCH_SMTP_MESSAGES=${env.BENCH_SMTP_MESSAGES}: give one count, or one per concurrency (${smtpConcurrencies.join(',')})`);
  }
  smtpConcurrencies.forEach((c, i) => smtpMessages.set(c, given ? (given.length === 1 ? given[0]! : given[i]!) : quick ? (c === 1 ? 200 : 500) : c === 1 ? 1000 : 3000));
  return {
    concurrencies,
    smtpConcurrencies,
    seconds: env.BENCH_SECONDS ? positiveInts('BENCH_SECONDS', env.BENCH_SECONDS)[0]! : quick ? 1 : 3,
    runs: env.BENCH_RUNS ? positiveInts('BENCH_RUNS', env.BENCH_RUNS)[0]! : quick ? 1 : 3,
    triplets: env.BENCH_TRIPLETS ? positiveInts('BENCH_TRIPLETS', env.BENCH_TRIPLETS)[0]! : quick ? 200 : 1000,
    smtpMessages,
    smtpTargets,
    smtp: env.BENCH_SMTP !== '0',
    keep: env.BENCH_KEEP === '1',
    jsonFile: env.BENCH_JSON,
  };
}

// ---------------------------------------------------------------------------------------
// The requests. Every passed triplet has a client of its own, in a /24 of its own, so that
// no client reaches the auto-whitelist (5 first passes): each lookup is a triplet lookup.
// Passed triplets come from hosts with a forward-confirmed name (legitimate senders); new
// triplets from "unknown" ones. Senders carry no digits (postgrey turns numbers into "#"):
// the new triplets differ by recipient, which both use as given.

const letters = (n: number): string => {
  let s = '';
  let x = n;
  do {
    s = String.fromCharCode(97 + (x % 26)) + s;
    x = Math.floor(x / 26);
  } while (x > 0);
  return s;
};

function passedRequest(i: number, instance: string): string {
  const t = letters(i);
  return postfixRequest({
    client: `10.${(i >> 8) & 255}.${i & 255}.25`,
    name: `mx.${t}.sender.example`,
    sender: `news-${t}@${t}.sender.example`,
    recipient: `user-${t}@${RELAY_DOMAIN}`,
    instance,
  });
}

function newRequest(run: string, i: number): string {
  return postfixRequest({
    client: `172.16.${(i >> 8) & 255}.${i & 255}`,
    name: 'unknown',
    sender: `bulk@${run}.spam.example`,
    recipient: `r${run}x${i}@${RELAY_DOMAIN}`,
    instance: `${run}.${i}`,
  });
}

const GREYLISTED = ['DEFER_IF_PERMIT '];
const PASSED = ['DUNNO'];

interface LookupServer {
  readonly key: LookupTarget;
  readonly label: string;
  readonly port: number;
}

/** First attempt of every passed triplet (greylisted), the delay, then its first pass. */
async function primeTriplets(s: LookupServer, n: number): Promise<void> {
  const triplets = Array.from({ length: n }, (_, i) => passedRequest(i, `prime1.${i}`));
  await runPolicyLoad({ port: s.port, connections: 20, requests: n, request: (i) => triplets[i]!, expect: GREYLISTED, label: `${s.label} priming` });
  await sleep(PRIME_WAIT_MS);
  const second = Array.from({ length: n }, (_, i) => passedRequest(i, `prime2.${i}`));
  const r = await runPolicyLoad({ port: s.port, connections: 20, requests: n, request: (i) => second[i]!, expect: ['PREPEND X-Greylist:'], label: `${s.label} priming (first pass)` });
  if (r.requests !== n) throw new BenchError(`${s.label}: priming answered ${r.requests} of ${n}`);
}

async function measureLookups(s: LookupServer, workload: Workload, c: number, seconds: number, run: string, passed: readonly Buffer[]): Promise<PolicyLoadResult> {
  if (workload === 'passed') {
    return runPolicyLoad({ port: s.port, connections: c, seconds, request: (i) => passed[i % passed.length]!, expect: PASSED, label: `${s.label} passed triplets c=${c}` });
  }
  return runPolicyLoad({ port: s.port, connections: c, seconds, request: (i) => newRequest(run, i), expect: GREYLISTED, label: `${s.label} new triplets c=${c}` });
}

// ---------------------------------------------------------------------------------------

interface SmtpServer {
  readonly key: SmtpTarget;
  readonly label: string;
  readonly port: number;
  /** After each run, e.g. wait for Postfix's queue to drain. */
  settle?(messages: number): Promise<string | undefined>;
}

/**
 * The triplet smtp-source sends (127.0.0.1, SENDER, RECIPIENT): 450 first, 250 after the
 * delay. A server whose greylist already passed it (Postfix asking the policy service of the
 * gateway whose smtpd was primed: one store) accepts the first attempt: that is fine too.
 * Returns what happened.
 */
async function primeSmtp(s: SmtpServer): Promise<'primed' | 'already passed'> {
  const first = await sendProbe(s.port, `Subject: greylist priming\n\nfirst attempt\n`, s.label);
  if (first.stage === 'end of DATA' && first.reply.startsWith('250 ')) return 'already passed';
  if (first.stage !== 'RCPT' || !first.reply.startsWith('450 ')) {
    throw new BenchError(`${s.label}: the first attempt of a new triplet got "${first.reply}" at ${first.stage}, expected a 450 greylisting reply at RCPT`);
  }
  await sleep(PRIME_WAIT_MS);
  const second = await sendProbe(s.port, `Subject: greylist priming\n\nretry after the delay\n`, s.label);
  if (second.stage !== 'end of DATA' || !second.reply.startsWith('250 ')) {
    throw new BenchError(`${s.label}: the retry after the delay got "${second.reply}" at ${second.stage}, expected 250 to DATA`);
  }
  return 'primed';
}

function describeEnvironment(versions: readonly string[]): string {
  let git = '';
  try {
    git = execFileSync('git', ['-C', PROJECT_ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version?: string };
  const cpu = cpus();
  return [`${cpu.length} CPU(s) (${cpu[0]?.model.trim() ?? 'unknown'})`, `Node ${process.version}`, `greygate ${pkg.version ?? '?'}${git ? ` (${git})` : ''}`, ...versions].join(', ');
}

/** Whether the built gateway starts the policy service itself. */
function gatewayServesPolicy(): boolean {
  const built = join(PROJECT_ROOT, 'dist', 'gateway.js');
  return existsSync(built) && readFileSync(built, 'utf8').includes('policyd');
}

interface Cell {
  readonly kind: 'lookup' | 'smtp';
  readonly workload: Workload | 'smtp' | 'ceiling';
  readonly concurrency: number;
  readonly target: string;
  readonly rates: number[];
}

async function main(): Promise<void> {
  const opts = readOptions(process.env);
  installExitHandlers();
  findExecutable('postgrey', POSTGREY_HINT);
  if (opts.smtp) findExecutable('smtp-source');
  const withPostfix = opts.smtp && (opts.smtpTargets.has('postfix-postgrey') || opts.smtpTargets.has('postfix-greygate'));
  if (withPostfix) {
    findExecutable('postfix');
    findExecutable('smtp-sink');
  }
  for (const f of [WHITELIST_CLIENTS, WHITELIST_RECIPIENTS]) if (!existsSync(f)) throw new BenchError(`${f} not found: ${POSTGREY_HINT}`);

  // Registered first, so it runs last: after every daemon using the directory has stopped.
  const { root, disarm: disarmRoot } = benchRoot('greygate-bench-greylist-', opts.keep);
  const log = (s: string): void => {
    process.stderr.write(s + '\n');
  };
  const stops: Array<() => Promise<void>> = [];
  try {
    const [ggSmtp, ggPolicy, pgPort, sinkPort, pfPgPort, pfGgPort] = (await freeLoopbackPorts(6)) as [number, number, number, number, number, number];
    const inGateway = gatewayServesPolicy();
    const greygateCf = [
      'greylist_delay = 1s',
      `greylist_whitelist_clients = ${WHITELIST_CLIENTS}`,
      `greylist_whitelist_recipients = ${WHITELIST_RECIPIENTS}`,
      'smtpd_recipient_restrictions = reject_unauth_destination, check_greylist',
      `policy_service_port = ${ggPolicy}`,
      'policy_service_restrictions = check_greylist',
    ].join('\n');
    const gg = await GreygateRunner.start({ projectRoot: PROJECT_ROOT, root: join(root, 'greygate'), port: ggSmtp, relayPort: sinkPort, relayDomain: RELAY_DOMAIN, extraMainCf: greygateCf });
    stops.push(() => gg.stop());
    if (inGateway) {
      await waitForPolicyService(ggPolicy, "greygate's policy service (policy_service_port)");
    } else {
      const sa = await PolicydStandalone.start({ projectRoot: PROJECT_ROOT, confDir: gg.confDir, dataDir: join(root, 'policyd-data'), port: ggPolicy, outputFile: join(root, 'policyd.out') });
      stops.push(() => sa.stop());
    }
    const pg = await PostgreyPeer.start({ dbdir: join(root, 'postgrey'), port: pgPort, delay: 1 });
    stops.push(() => pg.stop());
    const ceiling = await CeilingServer.start();
    stops.push(() => ceiling.stop());

    const versions = [pg.version];
    log(`bench:greylist: ${describeEnvironment(versions)}`);
    log(`  temp dir ${root}${opts.keep ? ' (kept)' : ''}; greygate smtpd ${ggSmtp}, policy service ${ggPolicy} (${inGateway ? 'in the gateway' : 'standalone process: this build\'s gateway does not start it'}), postgrey ${pgPort}, ceiling server ${ceiling.port}`);

    const servers: LookupServer[] = [
      { key: 'greygate', label: 'greygate', port: ggPolicy },
      { key: 'postgrey', label: pg.version, port: pgPort },
    ];
    // Encoded once: the client's own work per request stays small next to the servers'.
    const passed = Array.from({ length: opts.triplets }, (_, i) => Buffer.from(passedRequest(i, `m.${i}`), 'latin1'));
    for (const s of servers) await primeTriplets(s, opts.triplets);
    log(`  primed ${opts.triplets} passed triplets on each (first attempt, ${PRIME_WAIT_MS} ms, first pass)`);
    // Warm-up outside the measurement (JIT, page cache, database pages).
    for (const s of servers) {
      await measureLookups(s, 'passed', 20, Math.min(2, opts.seconds), 'warm', passed);
      await measureLookups(s, 'new', 20, 1, 'warmup', passed);
    }
    log('  warm-up done');

    const cells: Cell[] = [];
    let runSeq = 0;
    // The ceiling: the same client and requests against a server that does no work at all.
    for (const c of opts.concurrencies) {
      const cell: Cell = { kind: 'lookup', workload: 'ceiling', concurrency: c, target: 'ceiling', rates: [] };
      cells.push(cell);
      for (let r = 0; r < opts.runs; r++) {
        const res = await runPolicyLoad({ port: ceiling.port, connections: c, seconds: opts.seconds, request: (i) => passed[i % passed.length]!, expect: PASSED, label: `ceiling server c=${c}` });
        cell.rates.push(res.rate);
        log(`  ceiling c=${String(c).padEnd(3)} run ${r + 1}/${opts.runs}  ${'no-work server'.padEnd(14)} ${String(res.requests).padStart(7)} lookups in ${res.seconds.toFixed(2)} s = ${formatRate(res.rate).padStart(7)}/s`);
      }
    }
    for (const workload of ['passed', 'new'] as const) {
      for (const c of opts.concurrencies) {
        const row = servers.map((s) => {
          const cell: Cell = { kind: 'lookup', workload, concurrency: c, target: s.key, rates: [] };
          cells.push(cell);
          return cell;
        });
        for (let r = 0; r < opts.runs; r++) {
          // Alternate the order: on shared cores, neighbours' load drifts over time.
          const order = r % 2 === 0 ? [0, 1] : [1, 0];
          for (const k of order) {
            const s = servers[k]!;
            const res = await measureLookups(s, workload, c, opts.seconds, letters(++runSeq + 100), passed);
            row[k]!.rates.push(res.rate);
            log(`  ${workload.padEnd(6)} c=${String(c).padEnd(3)} run ${r + 1}/${opts.runs}  ${s.label.padEnd(14)} ${String(res.requests).padStart(7)} lookups in ${res.seconds.toFixed(2)} s = ${formatRate(res.rate).padStart(7)}/s`);
          }
        }
      }
    }

    const smtpLabels = new Map<SmtpTarget, string>();
    if (opts.smtp) {
      const smtpServers: SmtpServer[] = [];
      if (opts.smtpTargets.has('greygate')) smtpServers.push({ key: 'greygate', label: 'greygate smtpd + check_greylist', port: ggSmtp });
      if (withPostfix) {
        const sink = await SmtpSink.start(sinkPort);
        stops.push(() => sink.stop());
        const peers: Array<[SmtpTarget, number, number, string]> = [
          ['postfix-postgrey', pfPgPort, pgPort, 'postgrey'],
          ['postfix-greygate', pfGgPort, ggPolicy, 'greygate policyd'],
        ];
        for (const [key, port, policyPort, what] of peers) {
          if (!opts.smtpTargets.has(key)) continue;
          const pfRoot = join(root, key);
          mkdirSync(pfRoot);
          const pf = await PostfixPeer.start({
            root: pfRoot,
            port,
            relayPort: sinkPort,
            relayDomain: RELAY_DOMAIN,
            extraMainCf: `smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:127.0.0.1:${policyPort}`,
          });
          stops.push(() => pf.stop());
          if (!versions.includes(`Postfix ${pf.version}`)) versions.push(`Postfix ${pf.version}`);
          smtpServers.push({
            key,
            label: `Postfix ${pf.version} + ${what}`,
            port,
            settle: async (messages) => {
              const drain = await pf.waitForEmptyQueue(60_000 + messages * 50);
              return `queue drained in ${drain.toFixed(1)} s`;
            },
          });
        }
      }
      for (const s of smtpServers) smtpLabels.set(s.key, s.label);
      log(`\n  SMTP: priming ${SENDER} -> ${RECIPIENT} from 127.0.0.1`);
      for (const s of smtpServers) log(`    ${s.label}: ${await primeSmtp(s)}`);
      for (const s of smtpServers) await runSmtpSource({ port: s.port, messages: 200, sessions: 20, body: { kind: 'generated', bytes: 1024 }, label: s.label }).then(() => s.settle?.(200));
      for (const c of opts.smtpConcurrencies) {
        const messages = opts.smtpMessages.get(c)!;
        const row = smtpServers.map((s) => {
          const cell: Cell = { kind: 'smtp', workload: 'smtp', concurrency: c, target: s.key, rates: [] };
          cells.push(cell);
          return cell;
        });
        for (let r = 0; r < opts.runs; r++) {
          const order = smtpServers.map((_, i) => (i + r) % smtpServers.length);
          for (const k of order) {
            const s = smtpServers[k]!;
            const res = await runSmtpSource({ port: s.port, messages, sessions: c, body: { kind: 'generated', bytes: 1024 }, label: s.label });
            const note = await s.settle?.(messages);
            row[k]!.rates.push(res.rate);
            log(`  smtp c=${String(c).padEnd(3)} run ${r + 1}/${opts.runs}  ${s.label.padEnd(34)} ${messages} msgs in ${res.seconds.toFixed(2).padStart(6)} s = ${formatRate(res.rate).padStart(6)} msg/s${note ? `  (${note})` : ''}`);
          }
        }
      }
    }

    // -- results -----------------------------------------------------------------------
    const rate = (kind: Cell['kind'], workload: Cell['workload'], c: number, target: string): number =>
      median(cells.find((x) => x.kind === kind && x.workload === workload && x.concurrency === c && x.target === target)?.rates ?? []);
    const out: string[] = [`## bench:greylist — ${describeEnvironment(versions)}`, ''];
    out.push(
      `### Policy lookups/s, median of ${opts.runs} runs of ${opts.seconds} s`,
      '',
      'Same client for both (bench/lib/policy-load.ts): C connections, one request in flight on each, the',
      'attributes Postfix 3.7 sends at RCPT time; every answer checked (DUNNO for passed triplets,',
      'DEFER_IF_PERMIT for new ones). greylist delay 1 s, Debian\'s whitelist files on both;',
      `greygate's policy service ${inGateway ? 'inside the gateway process' : 'in a process of its own (bench/lib/policyd-standalone.ts)'}.`,
      '',
    );
    const headers = ['workload', 'concurrency', 'greygate lookups/s', `${pg.version} lookups/s`, 'ratio greygate/postgrey'];
    const rows: string[][] = [];
    for (const workload of ['passed', 'new'] as const) {
      for (const c of opts.concurrencies) {
        const g = rate('lookup', workload, c, 'greygate');
        const p = rate('lookup', workload, c, 'postgrey');
        rows.push([workload === 'passed' ? `passed triplets (${opts.triplets})` : 'new triplets', `c=${c}`, formatRate(g), formatRate(p), formatRatio(g, p)]);
      }
    }
    out.push(renderTable(headers, rows), '');
    out.push(
      'The ceiling: the same client and requests against a server in its own process that answers DUNNO',
      'to every request without reading it (node:net, no other work), and greygate\'s rate as a share of it.',
      '',
    );
    const ceilingRows = opts.concurrencies.map((c) => {
      const top = rate('lookup', 'ceiling', c, 'ceiling');
      const share = (w: Workload): string => `${Math.round((100 * rate('lookup', w, c, 'greygate')) / top)}%`;
      return [`c=${c}`, formatRate(top), share('passed'), share('new')];
    });
    out.push(renderTable(['concurrency', 'no-work server lookups/s', 'greygate passed / ceiling', 'greygate new / ceiling'], ceilingRows), '');
    if (opts.smtp) {
      out.push(
        `### SMTP msgs/s with greylisting on, triplet already passed, median of ${opts.runs}`,
        '',
        `\`smtp-source -l 1024 -m N -s C -f ${SENDER} -t ${RECIPIENT} 127.0.0.1:PORT\`; greygate: smtpd_recipient_restrictions = reject_unauth_destination, check_greylist;`,
        'Postfix: reject_unauth_destination, check_policy_service inet:127.0.0.1:PORT (its accepted rate includes relaying every message to smtp-sink).',
        '',
      );
      const keys = [...smtpLabels.keys()];
      const sh = ['concurrency', ...keys.map((k) => `${smtpLabels.get(k)} msg/s`)];
      const ratio = smtpLabels.has('postfix-postgrey') && smtpLabels.has('greygate');
      if (ratio) sh.push('ratio greygate smtpd / Postfix+postgrey');
      const srows = opts.smtpConcurrencies.map((c) => {
        const r = [`c=${c} (${opts.smtpMessages.get(c)} msgs)`, ...keys.map((k) => formatRate(rate('smtp', 'smtp', c, k)))];
        if (ratio) r.push(formatRatio(rate('smtp', 'smtp', c, 'greygate'), rate('smtp', 'smtp', c, 'postfix-postgrey')));
        return r;
      });
      out.push(renderTable(sh, srows), '');
    }
    process.stdout.write('\n' + out.join('\n'));
    if (opts.jsonFile) writeFileSync(opts.jsonFile, JSON.stringify({ environment: describeEnvironment(versions), runs: opts.runs, seconds: opts.seconds, cells }, null, 2) + '\n');
  } finally {
    await teardown(stops, root, opts.keep, disarmRoot);
  }
}

runBench('bench:greylist', main);
