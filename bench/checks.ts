/**
 * @module bench/checks
 * SUMMARY: `npm run bench:checks` — what header_checks and body_checks cost, in two parts.
 * micro: headers/s through `regexp:` tables opened with openTable() (RE2 + RE2.Set
 * prefilter, exactly the tables the content filter uses) for header_checks files of 10, 1,000
 * and 10,000 non-matching rules, every logical header of the realistic message looked up in
 * a timed loop; body lines/s through body_checks_100; and the ratio cost(10,000)/cost(10)
 * (target ≤ 1.5). e2e: accepted msg/s with smtp-source -F realistic-message.eml for greygate
 * and a private Postfix, each without checks and with header_checks_1000 + body_checks_100,
 * side by side in one run; the greygate/Postfix ratio with the rules (target ≥ 2) and each
 * server's slowdown from its rules. Markdown tables on stdout, progress on stderr.
 * Environment: see readOptions() and bench/README.md.
 * DIAGNOSTICS: one line on stderr and exit status 1 for a missing tool, a rule file that
 * loads with problems, a lookup or postmap query that matches (the rules must all miss), a
 * server that accepts a probe message a REJECT rule should refuse (its checks are not
 * active), or any load-run error; daemons and temp dirs are removed on every exit path.
 * SEE ALSO: /work/shared/peers.md, bench/README.md, bench/accept.ts, header_checks(5).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { openTable } from '../src/tables/open.js';
import type { Table } from '../src/tables/table.js';
import { BenchError } from './lib/bench-error.js';
import { runBench, teardown } from './lib/bench-main.js';
import { oneOf, positiveInts } from './lib/options.js';
import { generateHeaderChecks, messageKeys, type MessageKeys } from './lib/checks-fixtures.js';
import { findExecutable } from './lib/executables.js';
import { installExitHandlers, benchRoot } from './lib/exit-cleanup.js';
import { GreygateRunner } from './lib/greygate-runner.js';
import { freeLoopbackPorts } from './lib/net.js';
import { PostfixPeer } from './lib/postfix-peer.js';
import { SmtpSink } from './lib/smtp-sink.js';
import { sendProbe } from './lib/smtp-probe.js';
import { describeCommand, runSmtpSource, type LoadResult, type MessageBody } from './lib/smtp-source.js';
import { formatRate, formatRatio, median, renderTable } from './lib/table.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RELAY_DOMAIN = 'example.com';
const DEFAULT_FIXTURES = '/work/shared/bench-fixtures';
const MESSAGE_FILE = 'realistic-message.eml';
/** The rule files of the end-to-end part, in both servers' config directories. */
const E2E_HEADER_CHECKS = 'header_checks_1000';
const E2E_BODY_CHECKS = 'body_checks_100';
const MICRO_RULE_COUNTS = [10, 1000, 10000] as const;
const COST_TARGET = 1.5;
const SPEED_TARGET = 2;

// Probe messages: one header and one body line that the first REJECT rules of the e2e rule
// files match (header_checks_1000 line 2: /^Subject:...forex100.../ REJECT spam (rule 100);
// body_checks_100: /\benlarge501\b/ REJECT ...). A server that accepts them is not applying
// its checks, and its "with rules" figure would measure nothing.
const PROBES = [
  { what: 'header', file: E2E_HEADER_CHECKS, needle: 'forex100', text: 'Subject: forex100' },
  { what: 'body line', file: E2E_BODY_CHECKS, needle: 'enlarge501', text: 'Get the enlarge501 offer' },
] as const;

type Part = 'micro' | 'e2e';
type Server = 'greygate' | 'postfix';

interface Options {
  readonly parts: ReadonlySet<Part>;
  readonly runs: number;
  readonly fixtures: string;
  readonly microSeconds: number;
  readonly concurrencies: readonly number[];
  readonly messages: ReadonlyMap<number, number>;
  readonly warmup: number;
  readonly servers: ReadonlySet<Server>;
  readonly probe: boolean;
  readonly keep: boolean;
  readonly jsonFile: string | undefined;
}

/**
 * BENCH_QUICK=1 smoke run; BENCH_RUNS (3); BENCH_PARTS (micro,e2e); BENCH_FIXTURES (the
 * shared rule files and message); BENCH_MICRO_SECONDS (timed seconds per micro measurement);
 * BENCH_CONCURRENCY (1,20,100); BENCH_MESSAGES (N, or one N per concurrency); BENCH_WARMUP
 * (messages per server before measuring); BENCH_TARGETS (greygate,postfix);
 * BENCH_GREYGATE_MAIN; BENCH_PROBE=0 skips the probes; BENCH_KEEP=1; BENCH_JSON=FILE.
 */
function readOptions(env: NodeJS.ProcessEnv): Options {
  const quick = env.BENCH_QUICK === '1';
  const concurrencies = positiveInts('BENCH_CONCURRENCY', env.BENCH_CONCURRENCY ?? (quick ? '20' : '1,20,100'));
  // Postfix with 1,000 rules accepts 120-200 msg/s here: 2,000 messages is a 10-15 s run.
  const perConcurrency = (c: number): number => (quick ? (c === 1 ? 100 : 300) : c === 1 ? 500 : 2000);
  const messages = new Map<number, number>();
  if (env.BENCH_MESSAGES) {
    const given = positiveInts('BENCH_MESSAGES', env.BENCH_MESSAGES);
    if (given.length !== 1 && given.length !== concurrencies.length) {
      throw new BenchError(`BENCH_MESSAGES=${env.BENCH_MESSAGES}: give one count, or one per concurrency (${concurrencies.join(',')})`);
    }
    concurrencies.forEach((c, i) => messages.set(c, given.length === 1 ? given[0]! : given[i]!));
  } else {
    for (const c of concurrencies) messages.set(c, perConcurrency(c));
  }
  const microSeconds = env.BENCH_MICRO_SECONDS ? Number(env.BENCH_MICRO_SECONDS) : quick ? 0.25 : 1;
  if (!(microSeconds > 0)) throw new BenchError(`BENCH_MICRO_SECONDS=${env.BENCH_MICRO_SECONDS}: expected a positive number`);
  return {
    parts: oneOf<Part>('BENCH_PARTS', env.BENCH_PARTS ?? 'micro,e2e', ['micro', 'e2e']),
    runs: env.BENCH_RUNS ? positiveInts('BENCH_RUNS', env.BENCH_RUNS)[0]! : quick ? 1 : 3,
    fixtures: resolve(env.BENCH_FIXTURES ?? DEFAULT_FIXTURES),
    microSeconds,
    concurrencies,
    messages,
    warmup: env.BENCH_WARMUP ? positiveInts('BENCH_WARMUP', env.BENCH_WARMUP)[0]! : quick ? 100 : 2000,
    servers: oneOf<Server>('BENCH_TARGETS', env.BENCH_TARGETS ?? 'greygate,postfix', ['greygate', 'postfix']),
    probe: env.BENCH_PROBE !== '0',
    keep: env.BENCH_KEEP === '1',
    jsonFile: env.BENCH_JSON,
  };
}

const log = (s: string): void => {
  process.stderr.write(s + '\n');
};

/** The commit of the tree being measured, noting uncommitted changes under src/. */
function gitRevision(): string {
  const git = (args: string[]): string =>
    execFileSync('git', ['-C', PROJECT_ROOT, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const rev = git(['rev-parse', '--short', 'HEAD']);
    return git(['status', '--porcelain', '--', 'src']) === '' ? rev : `${rev} + uncommitted changes in src/`;
  } catch {
    return ''; // not a git checkout: the version alone identifies the build
  }
}

/** Taken once at start: the lead may commit while a run is in progress. */
const REVISION = gitRevision();

function describeEnvironment(pfVersion: string | undefined): string {
  const git = REVISION;
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version?: string };
  const cpu = cpus();
  return [
    `${cpu.length} CPU(s) (${cpu[0]?.model.trim() ?? 'unknown'})`,
    `Node ${process.version}`,
    `greygate ${pkg.version ?? '?'}${git ? ` (${git})` : ''}`,
    pfVersion ? `Postfix ${pfVersion}` : undefined,
  ]
    .filter((s) => s !== undefined)
    .join(', ');
}

function fixture(opts: Options, name: string): string {
  const path = join(opts.fixtures, name);
  if (!existsSync(path)) throw new BenchError(`${path} not found (set BENCH_FIXTURES to the directory of the shared rule files)`);
  return path;
}

// ---------------------------------------------------------------------------------------
// micro: the table layer alone

interface MicroSubject {
  readonly key: string;
  readonly title: string;
  readonly rules: number;
  readonly table: Table;
  readonly loadMs: number;
  readonly sets: number;
  /** The strings looked up once per message. */
  readonly keys: readonly string[];
  readonly rates: number[];
}

/** Open FILE as the content filter does; it must load every rule without a problem. */
function openRules(file: string, expectRules: number): { table: Table; loadMs: number; sets: number } {
  const t0 = performance.now();
  const table = openTable(`regexp:${file}`, dirname(file));
  const loadMs = performance.now() - t0;
  if (table.problems.length > 0) {
    const p = table.problems[0]!;
    throw new BenchError(`regexp:${file}: ${table.problems.length} problem(s) on load, first ${p.file}:${p.line}: ${p.message}`);
  }
  const stats = (table as Table & { program?: { stats?: { rules: number; sets: number } } }).program?.stats;
  if (stats && stats.rules !== expectRules) throw new BenchError(`regexp:${file}: loaded ${stats.rules} rules, expected ${expectRules}`);
  return { table, loadMs, sets: stats?.sets ?? Number.NaN };
}

/** Look every key up, repeatedly, for about SECONDS; every lookup must miss. Lookups/s. */
function timeLookups(table: Table, keys: readonly string[], seconds: number): number {
  const batch = Math.max(1, Math.ceil(1000 / keys.length));
  let passes = 0;
  let misses = 0;
  const t0 = performance.now();
  let elapsed = 0;
  do {
    for (let b = 0; b < batch; b++) {
      for (const key of keys) if (table.lookup(key).kind === 'miss') misses++;
    }
    passes += batch;
    elapsed = performance.now() - t0;
  } while (elapsed < seconds * 1000);
  const lookups = passes * keys.length;
  if (misses !== lookups) {
    const hit = keys.map((k) => [k, table.lookup(k)] as const).find(([, r]) => r.kind !== 'miss');
    throw new BenchError(`${table.spec}: a lookup did not miss: ${JSON.stringify(hit?.[0]?.slice(0, 80))} -> ${JSON.stringify(hit?.[1])}`);
  }
  return lookups / (elapsed / 1000);
}

/** Real Postfix agrees that nothing in the message matches FILE (postmap -q - -h -b). */
function postmapAgrees(file: string, message: string, confDir: string): void {
  const postmap = findExecutable('postmap');
  const r = spawnSync(postmap, ['-c', confDir, '-h', '-b', '-q', '-', `regexp:${file}`], { input: readFileSync(message), encoding: 'utf8' });
  const stderr = (r.stderr ?? '').trim();
  if (r.status !== 1 && r.status !== 0) throw new BenchError(`postmap -q - -h -b regexp:${file}: status ${r.status}: ${stderr.split('\n')[0] ?? ''}`);
  if (stderr !== '') throw new BenchError(`postmap -q - -h -b regexp:${file}: ${stderr.split('\n')[0]}`);
  if ((r.stdout ?? '').trim() !== '') throw new BenchError(`postmap says regexp:${file} matches the message: ${(r.stdout ?? '').split('\n')[0]}`);
}

interface MicroResult {
  readonly keys: MessageKeys;
  readonly subjects: readonly MicroSubject[];
}

async function runMicro(opts: Options, root: string): Promise<MicroResult> {
  const message = fixture(opts, MESSAGE_FILE);
  const keys = messageKeys(readFileSync(message, 'utf8'));
  const headerKeys = [...keys.primaryHeaders, ...keys.mimeHeaders];
  const dir = join(root, 'micro');
  mkdirSync(dir, { recursive: true });
  const files = new Map<number, string>();
  for (const n of MICRO_RULE_COUNTS) {
    const shared = join(opts.fixtures, `header_checks_${n}`);
    if (existsSync(shared)) {
      files.set(n, shared);
    } else {
      // 10,000: generated from header_checks_1000 (same patterns and flags, fresh tokens).
      const path = join(dir, `header_checks_${n}`);
      writeFileSync(path, generateHeaderChecks(readFileSync(fixture(opts, E2E_HEADER_CHECKS), 'utf8'), n));
      files.set(n, path);
    }
  }
  const bodyFile = fixture(opts, E2E_BODY_CHECKS);

  // Postfix's own reading of the same files: nothing may match (also checks the 10,000).
  let postmapChecked = false;
  try {
    findExecutable('postmap');
    const conf = join(dir, 'postfix-conf');
    mkdirSync(conf);
    writeFileSync(join(conf, 'main.cf'), 'compatibility_level = 3.6\n');
    for (const f of [...files.values(), bodyFile]) postmapAgrees(f, message, conf);
    postmapChecked = true;
  } catch (e) {
    if (!(e instanceof BenchError) || !/not found|not installed|no such/i.test(e.message)) throw e;
    log(`  (postmap not available: the rule files are not cross-checked with Postfix: ${e.message})`);
  }

  const subjects: MicroSubject[] = [];
  for (const n of MICRO_RULE_COUNTS) {
    const o = openRules(files.get(n)!, n);
    subjects.push({ key: `header_checks_${n}`, title: `header_checks, ${n.toLocaleString('en-US')} rules`, rules: n, ...o, keys: headerKeys, rates: [] });
  }
  const body = openRules(bodyFile, 100);
  subjects.push({ key: 'body_checks_100', title: 'body_checks, 100 rules', rules: 100, ...body, keys: keys.bodyLines, rates: [] });

  log(
    `  micro: ${keys.primaryHeaders.length} primary + ${keys.mimeHeaders.length} MIME headers and ${keys.bodyLines.length} non-empty body lines per message` +
      `; loaded ${subjects.map((s) => `${s.key} (${s.sets} Set(s), ${s.loadMs.toFixed(0)} ms)`).join(', ')}` +
      (postmapChecked ? '; postmap agrees nothing matches' : ''),
  );
  // JIT and each Set's lazily built DFA warm up outside the measurement.
  for (const s of subjects) timeLookups(s.table, s.keys, Math.min(0.3, opts.microSeconds));
  for (let r = 0; r < opts.runs; r++) {
    const order = subjects.map((_, i) => subjects[(i + r) % subjects.length]!);
    for (const s of order) {
      const rate = timeLookups(s.table, s.keys, opts.microSeconds);
      s.rates.push(rate);
      log(`  micro run ${r + 1}/${opts.runs}  ${s.key.padEnd(20)} ${formatRate(rate).padStart(9)} lookups/s (${(1e6 / rate).toFixed(2)} µs each)`);
    }
  }
  return { keys, subjects };
}

function renderMicro(opts: Options, m: MicroResult): { text: string; ratio: number } {
  const headers = m.subjects.filter((s) => s.key.startsWith('header_checks'));
  const body = m.subjects.find((s) => s.key === 'body_checks_100')!;
  const base = headers[0]!;
  // Cost ratios pair the measurements of the same run (neighbours' load drifts between
  // runs on shared cores), then take the median of those ratios.
  const costVsBase = (x: MicroSubject): number => median(x.rates.map((r, i) => base.rates[i]! / r));
  const perMsgHeaders = m.keys.primaryHeaders.length + m.keys.mimeHeaders.length;
  const bodyRate = median(body.rates);
  const rows = headers.map((s) => {
    const rate = median(s.rates);
    const usPerMsg = (perMsgHeaders / rate + m.keys.bodyLines.length / bodyRate) * 1e6;
    return [
      s.title,
      String(s.sets),
      formatRate(s.loadMs),
      formatRate(rate),
      (1e6 / rate).toFixed(2),
      `${costVsBase(s).toFixed(2)}×`,
      usPerMsg.toFixed(0),
    ];
  });
  const last = headers[headers.length - 1]!;
  const ratio = costVsBase(last);
  const text = [
    `### Table layer: lookups/s through \`regexp:\` tables (openTable, RE2 + RE2.Set prefilter), median of ${opts.runs}`,
    '',
    `Keys per message (${MESSAGE_FILE}): ${m.keys.primaryHeaders.length} primary headers + ${m.keys.mimeHeaders.length} MIME part headers ` +
      `(header_checks and mime_header_checks = $header_checks), ${m.keys.bodyLines.length} non-empty body lines (body_checks). ` +
      `No rule matches; every lookup is a miss, so every rule is in play. ${opts.microSeconds} s timed per measurement.`,
    '',
    renderTable(
      ['header_checks file', 'RE2.Sets', 'load ms', 'headers/s', 'µs/header', 'cost vs 10 rules', `µs/message incl. body_checks_100`],
      rows,
    ),
    '',
    `body_checks_100: ${formatRate(bodyRate)} body lines/s (${(1e6 / bodyRate).toFixed(2)} µs/line, ${body.sets} RE2.Set(s)).`,
    '',
    `cost(${last.rules.toLocaleString('en-US')} rules) / cost(${base.rules} rules) = **${ratio.toFixed(2)}** (median of the per-run ratios) ` +
      `(target ≤ ${COST_TARGET}: ${ratio <= COST_TARGET ? 'met' : 'NOT met'})`,
    '',
  ].join('\n');
  return { text, ratio };
}

// ---------------------------------------------------------------------------------------
// e2e: accepted msg/s through the SMTP path

type TargetKey = 'greygate-none' | 'greygate-rules' | 'postfix-none' | 'postfix-rules';

interface Target {
  readonly key: TargetKey;
  readonly label: string;
  readonly port: number;
  /** Checks run after the warm-up, e.g. that the server loaded its rule files cleanly. */
  verify?(): void;
  measure(messages: number, sessions: number, body: MessageBody): Promise<LoadResult & { note?: string }>;
}

function greygateTarget(key: TargetKey, label: string, gg: GreygateRunner): Target {
  return {
    key,
    label,
    port: gg.port,
    async measure(messages, sessions, body) {
      // greygate now delivers what it accepts (as Postfix does), so queue files come and go:
      // count the accept records in the decision log instead.
      const from = gg.logSize();
      let result: LoadResult;
      try {
        result = await runSmtpSource({ port: gg.port, messages, sessions, body, label });
      } catch (e) {
        if (e instanceof BenchError && !gg.running()) throw new BenchError(`${e.message} (greygate died)${gg.tail()}`);
        throw e;
      }
      let added = gg.countEvents(from, ['accept']).accept ?? 0;
      for (let i = 0; i < 20 && added !== messages; i++) {
        await sleep(100);
        added = gg.countEvents(from, ['accept']).accept ?? 0;
      }
      if (added !== messages) {
        throw new BenchError(`${label} answered 250 to ${messages} messages but the log has ${added} accept record(s)`);
      }
      return result;
    },
  };
}

function postfixTarget(key: TargetKey, label: string, pf: PostfixPeer): Target {
  return {
    key,
    label,
    port: pf.port,
    verify: () => postfixLoadedCleanly(label, pf.maillog),
    async measure(messages, sessions, body) {
      const result = await runSmtpSource({ port: pf.port, messages, sessions, body, label });
      const drain = await pf.waitForEmptyQueue(60_000 + messages * 50);
      return { ...result, note: `delivered end to end ${formatRate(messages / (result.seconds + drain))} msg/s` };
    },
  };
}

/** The realistic message with one extra header or body line that a REJECT rule matches. */
function probeMessage(base: string, probe: (typeof PROBES)[number]): string {
  const text = base.replace(/\r\n/g, '\n');
  const end = text.indexOf('\n\n');
  if (probe.what === 'header') return text.replace(/^Subject:.*$/m, probe.text);
  return `${text.slice(0, end)}\n\n${probe.text}\n${text.slice(end + 2)}`;
}

async function checkProbes(t: Target, base: string, expectReject: boolean): Promise<void> {
  for (const p of PROBES) {
    const r = await sendProbe(t.port, probeMessage(base, p), t.label);
    const rejected = r.stage === 'end of DATA' && /^5\d\d/.test(r.reply);
    if (r.stage !== 'end of DATA') throw new BenchError(`probe to ${t.label}: ${r.stage} answered "${r.reply}"`);
    if (rejected !== expectReject) {
      throw new BenchError(
        expectReject
          ? `${t.label} accepted a message whose ${p.what} "${p.text}" a REJECT rule in ${p.file} matches ("${r.reply}"): ` +
              `its ${p.what === 'header' ? 'header_checks' : 'body_checks'} are not applied to SMTP mail, so its "with rules" figure would measure nothing ` +
              `(greygate: is the content filter wired into src/smtpd/data.ts?). BENCH_PROBE=0 measures anyway.`
          : `${t.label} refused a message with ${p.what} "${p.text}" although it has no checks: "${r.reply}"`,
      );
    }
    log(`  probe ${t.label.padEnd(28)} ${p.what.padEnd(9)} "${p.text}" -> ${r.reply}`);
  }
}

interface Cell {
  readonly concurrency: number;
  readonly target: TargetKey;
  readonly messages: number;
  readonly rates: number[];
}

interface E2eResult {
  readonly cells: readonly Cell[];
  readonly labels: ReadonlyMap<TargetKey, string>;
  readonly postfixVersion: string | undefined;
  readonly body: MessageBody;
}

async function runE2e(opts: Options, root: string, stops: Array<() => Promise<void>>): Promise<E2eResult> {
  findExecutable('smtp-source');
  findExecutable('smtp-sink');
  if (opts.servers.has('postfix')) {
    findExecutable('postfix');
    findExecutable('postconf');
  }
  const message = fixture(opts, MESSAGE_FILE);
  const rules = [
    { name: E2E_HEADER_CHECKS, source: fixture(opts, E2E_HEADER_CHECKS) },
    { name: E2E_BODY_CHECKS, source: fixture(opts, E2E_BODY_CHECKS) },
  ];
  for (const p of PROBES) {
    if (!readFileSync(fixture(opts, p.file), 'utf8').includes(p.needle)) throw new BenchError(`${p.file} has no rule for the probe ${p.needle}`);
  }
  const body: MessageBody = { kind: 'file', path: message };
  const [sinkPort, ...ports] = (await freeLoopbackPorts(5)) as [number, number, number, number, number];
  const sink = await SmtpSink.start(sinkPort);
  stops.push(() => sink.stop());

  const targets: Target[] = [];
  let postfixVersion: string | undefined;
  if (opts.servers.has('greygate')) {
    const entry = process.env.BENCH_GREYGATE_MAIN ? { entry: resolve(process.env.BENCH_GREYGATE_MAIN) } : {};
    for (const withRules of [false, true]) {
      const gg = await GreygateRunner.start({
        projectRoot: PROJECT_ROOT,
        ...entry,
        root: join(root, withRules ? 'greygate-rules' : 'greygate-none'),
        port: ports.shift()!,
        relayPort: sinkPort,
        relayDomain: RELAY_DOMAIN,
        ...(withRules
          ? { configFiles: rules, extraMainCf: `header_checks = regexp:${E2E_HEADER_CHECKS}\nbody_checks = regexp:${E2E_BODY_CHECKS}\n` }
          : {}),
      });
      stops.push(() => gg.stop());
      if (withRules) greygateCheck(gg);
      targets.push(greygateTarget(withRules ? 'greygate-rules' : 'greygate-none', withRules ? 'greygate + rules' : 'greygate', gg));
    }
  }
  if (opts.servers.has('postfix')) {
    for (const withRules of [false, true]) {
      const pfRoot = join(root, withRules ? 'postfix-rules' : 'postfix-none');
      mkdirSync(pfRoot);
      const pf = await PostfixPeer.start({
        root: pfRoot,
        port: ports.shift()!,
        relayPort: sinkPort,
        relayDomain: RELAY_DOMAIN,
        ...(withRules
          ? {
              configFiles: rules,
              extraMainCf:
                `header_checks = regexp:$config_directory/${E2E_HEADER_CHECKS}\n` + `body_checks = regexp:$config_directory/${E2E_BODY_CHECKS}\n`,
            }
          : {}),
      });
      stops.push(() => pf.stop());
      postfixVersion = pf.version;
      targets.push(postfixTarget(withRules ? 'postfix-rules' : 'postfix-none', withRules ? `Postfix ${pf.version} + rules` : `Postfix ${pf.version}`, pf));
    }
  }
  log(`  e2e: ${targets.map((t) => `${t.label} on ${t.port}`).join(', ')}; smtp-sink on ${sinkPort}`);

  if (opts.probe) {
    const base = readFileSync(message, 'utf8');
    for (const t of targets) if (t.key.endsWith('-rules')) await checkProbes(t, base, true);
  }
  for (const t of targets) await t.measure(opts.warmup, 20, body);
  log(`  warm-up done (${opts.warmup} messages each at c=20, ${MESSAGE_FILE})`);
  for (const t of targets) t.verify?.();

  const cells: Cell[] = [];
  for (const c of opts.concurrencies) {
    const messages = opts.messages.get(c)!;
    const row = new Map<TargetKey, Cell>();
    for (const t of targets) {
      const cell: Cell = { concurrency: c, target: t.key, messages, rates: [] };
      row.set(t.key, cell);
      cells.push(cell);
    }
    for (let r = 0; r < opts.runs; r++) {
      // Rotate the order each run: on shared cores, neighbours' load drifts over time.
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      for (const t of order) {
        const res = await t.measure(messages, c, body);
        row.get(t.key)!.rates.push(res.rate);
        log(
          `  c=${String(c).padEnd(3)} run ${r + 1}/${opts.runs}  ${t.label.padEnd(28)} ${messages} msgs in ${res.seconds.toFixed(2).padStart(6)} s = ${formatRate(res.rate).padStart(6)} msg/s${res.note ? `  (${res.note})` : ''}`,
        );
      }
    }
  }
  return { cells, labels: new Map(targets.map((t) => [t.key, t.label] as const)), postfixVersion, body };
}

/** `greygate check` on the instance's config: the rule files must load without an error. */
function greygateCheck(gg: GreygateRunner): void {
  const entry = process.env.BENCH_GREYGATE_MAIN ? resolve(process.env.BENCH_GREYGATE_MAIN) : join(PROJECT_ROOT, 'dist', 'main.js');
  const r = spawnSync(process.execPath, [entry, 'check', '-c', gg.confDir], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.status !== 0) throw new BenchError(`greygate check -c ${gg.confDir} failed (status ${r.status}): ${out.split('\n').slice(0, 3).join(' / ')}`);
  // check prints nothing for a clean config; any word about the rule files is a problem.
  if (out.includes(E2E_HEADER_CHECKS) || out.includes(E2E_BODY_CHECKS)) throw new BenchError(`greygate check reports a problem with the rule files: ${out.split('\n')[0]}`);
}

/** Postfix's maillog must show no regexp map warning: every rule was loaded and evaluated. */
function postfixLoadedCleanly(label: string, maillog: string): void {
  let text = '';
  try {
    text = readFileSync(maillog, 'utf8');
  } catch {
    return;
  }
  const bad = text.split('\n').find((l) => /regexp map|header_checks|body_checks/.test(l) && /warning|fatal|error/.test(l));
  if (bad) throw new BenchError(`${label} had a problem with its rule files: ${bad}`);
}

function renderE2e(opts: Options, e: E2eResult): { text: string; ratioAt: Map<number, number> } {
  const rate = (c: number, t: TargetKey): number => median(e.cells.find((x) => x.concurrency === c && x.target === t)?.rates ?? []);
  const gg = opts.servers.has('greygate');
  const pf = opts.servers.has('postfix');
  const pfName = e.postfixVersion ? `Postfix ${e.postfixVersion}` : 'Postfix';
  const headers = ['concurrency'];
  if (gg) headers.push('greygate, no checks', 'greygate + rules', 'greygate slowdown');
  if (pf) headers.push(`${pfName}, no checks`, `${pfName} + rules`, 'Postfix slowdown');
  if (gg && pf) headers.push('greygate/Postfix, no checks', '**greygate/Postfix + rules**');
  const ratioAt = new Map<number, number>();
  const rows = opts.concurrencies.map((c) => {
    const row = [`c=${c} (${opts.messages.get(c)} msgs)`];
    if (gg) row.push(formatRate(rate(c, 'greygate-none')), formatRate(rate(c, 'greygate-rules')), formatRatio(rate(c, 'greygate-none'), rate(c, 'greygate-rules')));
    if (pf) row.push(formatRate(rate(c, 'postfix-none')), formatRate(rate(c, 'postfix-rules')), formatRatio(rate(c, 'postfix-none'), rate(c, 'postfix-rules')));
    if (gg && pf) {
      row.push(formatRatio(rate(c, 'greygate-none'), rate(c, 'postfix-none')), `**${formatRatio(rate(c, 'greygate-rules'), rate(c, 'postfix-rules'))}**`);
      ratioAt.set(c, rate(c, 'greygate-rules') / rate(c, 'postfix-rules'));
    }
    return row;
  });
  const lines = [
    `### End to end: accepted msg/s, realistic 4 KB MIME message, median of ${opts.runs}`,
    '',
    `\`${describeCommand(e.body)}\``,
    '',
    `"+ rules" = \`header_checks = regexp:${E2E_HEADER_CHECKS}\` and \`body_checks = regexp:${E2E_BODY_CHECKS}\` ` +
      `(mime_header_checks and nested_header_checks default to $header_checks on both). ` +
      `slowdown = msg/s without rules / msg/s with them.`,
    '',
    renderTable(headers, rows),
    '',
  ];
  if (!opts.probe) {
    lines.push('**BENCH_PROBE=0: the probes were skipped, so nothing shows that the "+ rules" servers applied their rules.**', '');
  }
  const at20 = ratioAt.get(20);
  if (at20 !== undefined) {
    lines.push(`greygate/Postfix with 1,000 + 100 rules at c=20 = **${at20.toFixed(2)}×** (target ≥ ${SPEED_TARGET}×: ${at20 >= SPEED_TARGET ? 'met' : 'NOT met'})`, '');
  }
  return { text: lines.join('\n'), ratioAt };
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = readOptions(process.env);
  installExitHandlers();
  if (opts.parts.has('e2e')) {
    findExecutable('smtp-source');
    findExecutable('smtp-sink');
    if (opts.servers.has('postfix')) findExecutable('postfix');
  }
  // Registered first, so it runs last: after every daemon using the directory has stopped.
  const { root, disarm: disarmRoot } = benchRoot('greygate-bench-checks-', opts.keep);
  const stops: Array<() => Promise<void>> = [];
  const out: string[] = [];
  const json: Record<string, unknown> = { runs: opts.runs };
  try {
    log(`bench:checks: ${describeEnvironment(undefined)}`);
    log(`  temp dir ${root}${opts.keep ? ' (kept: BENCH_KEEP=1)' : ''}`);
    let micro: string | undefined;
    if (opts.parts.has('micro')) {
      const m = await runMicro(opts, root);
      const r = renderMicro(opts, m);
      micro = r.text;
      json.micro = {
        keys: { primaryHeaders: m.keys.primaryHeaders.length, mimeHeaders: m.keys.mimeHeaders.length, bodyLines: m.keys.bodyLines.length },
        tables: m.subjects.map((s) => ({ table: s.key, rules: s.rules, sets: s.sets, loadMs: s.loadMs, lookupsPerSecond: s.rates })),
        costRatio: r.ratio,
      };
    }
    let e2e: E2eResult | undefined;
    let e2eText: string | undefined;
    if (opts.parts.has('e2e')) {
      e2e = await runE2e(opts, root, stops);
      const r = renderE2e(opts, e2e);
      e2eText = r.text;
      json.e2e = { cells: e2e.cells, ratioWithRules: Object.fromEntries(r.ratioAt) };
    }
    const env = describeEnvironment(e2e?.postfixVersion);
    out.push(`## bench:checks — ${env}`, '');
    if (micro) out.push(micro);
    if (e2eText) out.push(e2eText);
    process.stdout.write('\n' + out.join('\n'));
    if (opts.jsonFile) writeFileSync(opts.jsonFile, JSON.stringify({ environment: env, ...json }, null, 2) + '\n');
  } finally {
    await teardown(stops, root, opts.keep, disarmRoot);
  }
}

runBench('bench:checks', main);
