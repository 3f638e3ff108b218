/**
 * @module bench/accept
 * SUMMARY: `npm run bench:accept` — messages/s accepted (250 to DATA, i.e. fsynced into the
 * queue) by greygate and by a private Postfix relay gateway, side by side in one run, at
 * concurrency 1, 20 and 100, driven by smtp-source with one connection per message and one
 * recipient each (inbound MX traffic). smtp-sink alone is measured too: the loopback ceiling.
 * Prints one Markdown table per message body on stdout (progress on stderr): median of
 * BENCH_RUNS runs per cell, and greygate/Postfix ratio. Environment: see readOptions() and
 * bench/README.md.
 * DIAGNOSTICS: a missing tool, a daemon that will not start, a load run with any SMTP error
 * or a queue count that differs from the messages sent ends the benchmark with one line on
 * stderr and exit status 1; daemons and temp dirs are removed on every exit path.
 * SEE ALSO: /work/shared/peers.md, bench/README.md, smtp-source(1).
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
import { PostfixPeer } from './lib/postfix-peer.js';
import { SmtpSink } from './lib/smtp-sink.js';
import { describeCommand, runSmtpSource, type LoadResult, type LoadSpec, type MessageBody } from './lib/smtp-source.js';
import { formatRate, formatRatio, median, renderTable } from './lib/table.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RELAY_DOMAIN = 'example.com';
const DEFAULT_REALISTIC = '/work/shared/bench-fixtures/realistic-message.eml';

type TargetKey = 'greygate' | 'postfix' | 'sink';
const TARGET_KEYS: readonly TargetKey[] = ['greygate', 'postfix', 'sink'];

interface BodyVariant {
  readonly key: 'synthetic' | 'realistic';
  readonly title: string;
  readonly body: MessageBody;
}

interface Options {
  readonly concurrencies: readonly number[];
  readonly messages: ReadonlyMap<number, number>;
  readonly runs: number;
  readonly warmup: number;
  readonly bodies: readonly BodyVariant[];
  readonly targets: ReadonlySet<TargetKey>;
  readonly keep: boolean;
  readonly jsonFile: string | undefined;
}

/**
 * BENCH_QUICK=1 smoke run; BENCH_RUNS (3); BENCH_MESSAGES (N, or one N per concurrency);
 * BENCH_CONCURRENCY (1,20,100); BENCH_BODY (both | synthetic | realistic);
 * BENCH_REALISTIC_FILE; BENCH_TARGETS (greygate,postfix,sink); BENCH_GREYGATE_MAIN (another
 * build's main.js); BENCH_WARMUP (messages per server before measuring); BENCH_KEEP=1 keeps the temp dir; BENCH_JSON=FILE also writes raw results.
 */
function readOptions(env: NodeJS.ProcessEnv): Options {
  const quick = env.BENCH_QUICK === '1';
  const concurrencies = positiveInts('BENCH_CONCURRENCY', env.BENCH_CONCURRENCY ?? '1,20,100');
  const runs = env.BENCH_RUNS ? positiveInts('BENCH_RUNS', env.BENCH_RUNS)[0]! : quick ? 1 : 3;
  // Sized so that each run lasts a few seconds at Postfix-like rates (500-800 msg/s): long
  // enough to swamp start-up noise, short enough for three runs of everything in minutes.
  const perConcurrency = (c: number): number => (quick ? (c === 1 ? 200 : 500) : c === 1 ? 1000 : 3000);
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

  const which = env.BENCH_BODY ?? 'both';
  if (!['both', 'synthetic', 'realistic'].includes(which)) {
    throw new BenchError(`BENCH_BODY=${which}: expected both, synthetic or realistic`);
  }
  const bodies: BodyVariant[] = [];
  if (which !== 'realistic') {
    bodies.push({ key: 'synthetic', title: '1 KB generated body (`-l 1024`)', body: { kind: 'generated', bytes: 1024 } });
  }
  if (which !== 'synthetic') {
    const path = env.BENCH_REALISTIC_FILE ?? DEFAULT_REALISTIC;
    if (existsSync(path)) {
      bodies.push({ key: 'realistic', title: `realistic 4 KB MIME newsletter (\`-F ${path}\`)`, body: { kind: 'file', path } });
    } else if (which === 'realistic' || env.BENCH_REALISTIC_FILE) {
      throw new BenchError(`realistic message ${path} not found (set BENCH_REALISTIC_FILE)`);
    } else {
      process.stderr.write(`bench: ${path} not found; skipping the realistic-message variant\n`);
    }
  }

  const targets = new Set<TargetKey>();
  for (const t of (env.BENCH_TARGETS ?? TARGET_KEYS.join(',')).split(',').map((s) => s.trim())) {
    if (!(TARGET_KEYS as readonly string[]).includes(t)) {
      throw new BenchError(`BENCH_TARGETS: unknown target "${t}" (known: ${TARGET_KEYS.join(', ')})`);
    }
    targets.add(t as TargetKey);
  }
  return {
    concurrencies,
    messages,
    runs,
    warmup: env.BENCH_WARMUP ? positiveInts('BENCH_WARMUP', env.BENCH_WARMUP)[0]! : quick ? 100 : 2000,
    bodies,
    targets,
    keep: env.BENCH_KEEP === '1',
    jsonFile: env.BENCH_JSON,
  };
}

/** One server under load; measure() also checks that every message really was accepted. */
interface Target {
  readonly key: TargetKey;
  readonly label: string;
  measure(spec: Omit<LoadSpec, 'port' | 'label'>): Promise<LoadResult & { note?: string }>;
}

function greygateTarget(gg: GreygateRunner): Target {
  return {
    key: 'greygate',
    label: 'greygate',
    async measure(spec) {
      // greygate now delivers what it accepts (as Postfix does), so queue files come and go:
      // count the accept records in the decision log instead.
      const from = gg.logSize();
      let result: LoadResult;
      try {
        result = await runSmtpSource({ ...spec, port: gg.port, label: 'greygate' });
      } catch (e) {
        if (e instanceof BenchError && !gg.running()) throw new BenchError(`${e.message} (greygate died)${gg.tail()}`);
        throw e;
      }
      let added = gg.countEvents(from, ['accept']).accept ?? 0;
      for (let i = 0; i < 20 && added !== spec.messages; i++) {
        await sleep(100);
        added = gg.countEvents(from, ['accept']).accept ?? 0;
      }
      if (added !== spec.messages) {
        throw new BenchError(`greygate answered 250 to ${spec.messages} messages but the log has ${added} accept record(s)`);
      }
      return result;
    },
  };
}

function postfixTarget(pf: PostfixPeer): Target {
  return {
    key: 'postfix',
    label: `Postfix ${pf.version}`,
    async measure(spec) {
      const result = await runSmtpSource({ ...spec, port: pf.port, label: 'Postfix' });
      // Drain before the next run so that this run's deliveries do not slow the next one.
      const drain = await pf.waitForEmptyQueue(60_000 + spec.messages * 50);
      const e2e = spec.messages / (result.seconds + drain);
      return { ...result, note: `delivered end to end ${formatRate(e2e)} msg/s` };
    },
  };
}

function sinkTarget(sink: SmtpSink): Target {
  return {
    key: 'sink',
    label: 'smtp-sink',
    measure: (spec) => runSmtpSource({ ...spec, port: sink.port, label: 'smtp-sink' }),
  };
}

interface Cell {
  readonly body: BodyVariant['key'];
  readonly concurrency: number;
  readonly target: TargetKey;
  readonly messages: number;
  readonly rates: number[];
}

function describeEnvironment(pf: PostfixPeer | undefined): string {
  let git = '';
  try {
    git = execFileSync('git', ['-C', PROJECT_ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout: the version alone identifies the build
  }
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version?: string };
  const cpu = cpus();
  return [
    `${cpu.length} CPU(s) (${cpu[0]?.model.trim() ?? 'unknown'})`,
    `Node ${process.version}`,
    `greygate ${pkg.version ?? '?'}${git ? ` (${git})` : ''}`,
    pf ? `Postfix ${pf.version}` : undefined,
  ]
    .filter((s) => s !== undefined)
    .join(', ');
}

function renderResults(opts: Options, cells: readonly Cell[], body: BodyVariant, labels: ReadonlyMap<TargetKey, string>): string {
  const find = (c: number, t: TargetKey): number => median(cells.find((x) => x.body === body.key && x.concurrency === c && x.target === t)?.rates ?? []);
  const headers = ['concurrency'];
  const has = (t: TargetKey): boolean => opts.targets.has(t);
  if (has('greygate')) headers.push('greygate msg/s');
  if (has('postfix')) headers.push(`${labels.get('postfix') ?? 'Postfix'} msg/s`);
  if (has('greygate') && has('postfix')) headers.push('ratio greygate/Postfix');
  if (has('sink')) headers.push('smtp-sink ceiling');
  const rows = opts.concurrencies.map((c) => {
    const row = [`c=${c} (${opts.messages.get(c)} msgs)`];
    if (has('greygate')) row.push(formatRate(find(c, 'greygate')));
    if (has('postfix')) row.push(formatRate(find(c, 'postfix')));
    if (has('greygate') && has('postfix')) row.push(formatRatio(find(c, 'greygate'), find(c, 'postfix')));
    if (has('sink')) row.push(formatRate(find(c, 'sink')));
    return row;
  });
  return `### Accepted msg/s, ${body.title}, median of ${opts.runs}\n\n\`${describeCommand(body.body)}\`\n\n${renderTable(headers, rows)}\n`;
}

async function main(): Promise<void> {
  const opts = readOptions(process.env);
  installExitHandlers();
  // Fail on a missing tool before anything is started.
  findExecutable('smtp-source');
  findExecutable('smtp-sink');
  if (opts.targets.has('postfix')) {
    findExecutable('postfix');
    findExecutable('postconf');
  }

  // Registered first, so it runs last: after every daemon using the directory has stopped.
  const { root, disarm: disarmRoot } = benchRoot('greygate-bench-', opts.keep);

  const stops: Array<() => Promise<void>> = [];
  try {
    const [ggPort, pfPort, sinkPort] = (await freeLoopbackPorts(3)) as [number, number, number];
    const sink = await SmtpSink.start(sinkPort);
    stops.push(() => sink.stop());
    let pf: PostfixPeer | undefined;
    if (opts.targets.has('postfix')) {
      const pfRoot = join(root, 'postfix');
      mkdirSync(pfRoot);
      pf = await PostfixPeer.start({ root: pfRoot, port: pfPort, relayPort: sinkPort, relayDomain: RELAY_DOMAIN });
      stops.push(() => pf!.stop());
    }
    let gg: GreygateRunner | undefined;
    if (opts.targets.has('greygate')) {
      gg = await GreygateRunner.start({
        projectRoot: PROJECT_ROOT,
        ...(process.env.BENCH_GREYGATE_MAIN ? { entry: resolve(process.env.BENCH_GREYGATE_MAIN) } : {}),
        root: join(root, 'greygate'),
        port: ggPort,
        relayPort: sinkPort,
        relayDomain: RELAY_DOMAIN,
      });
      stops.push(() => gg!.stop());
    }

    const targets: Target[] = [];
    if (gg) targets.push(greygateTarget(gg));
    if (pf) targets.push(postfixTarget(pf));
    if (opts.targets.has('sink')) targets.push(sinkTarget(sink));
    const labels = new Map(targets.map((t) => [t.key, t.label] as const));

    const log = (s: string): void => {
      process.stderr.write(s + '\n');
    };
    log(`bench:accept: ${describeEnvironment(pf)}`);
    log(`  temp dir ${root}${opts.keep ? ' (kept: BENCH_KEEP=1)' : ''}; ports greygate ${ggPort}, Postfix ${pfPort}, smtp-sink ${sinkPort}`);

    // JIT, page cache and Postfix's process pool warm up outside the measurement.
    for (const t of targets) {
      await t.measure({ messages: opts.warmup, sessions: 20, body: { kind: 'generated', bytes: 1024 } });
    }
    log(`  warm-up done (${opts.warmup} messages each at c=20)`);

    const cells: Cell[] = [];
    for (const body of opts.bodies) {
      log(`\n  ${body.title}`);
      for (const c of opts.concurrencies) {
        const messages = opts.messages.get(c)!;
        const row = new Map<TargetKey, Cell>();
        for (const t of targets) {
          const cell: Cell = { body: body.key, concurrency: c, target: t.key, messages, rates: [] };
          row.set(t.key, cell);
          cells.push(cell);
        }
        for (let r = 0; r < opts.runs; r++) {
          // Rotate the order each run: on shared cores, neighbours' load drifts over time.
          const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
          for (const t of order) {
            const res = await t.measure({ messages, sessions: c, body: body.body });
            row.get(t.key)!.rates.push(res.rate);
            log(
              `  c=${String(c).padEnd(3)} run ${r + 1}/${opts.runs}  ${t.label.padEnd(14)} ${messages} msgs in ${res.seconds.toFixed(2).padStart(6)} s = ${formatRate(res.rate).padStart(6)} msg/s${res.note ? `  (${res.note})` : ''}`,
            );
          }
        }
      }
    }

    const out: string[] = [
      `## bench:accept — ${describeEnvironment(pf)}`,
      '',
      'One connection per message, one recipient; rate = messages / wall-clock time of the whole',
      'smtp-source run, in which every message got 250 to its DATA.',
      '',
      ...opts.bodies.map((b) => renderResults(opts, cells, b, labels)),
    ];
    process.stdout.write('\n' + out.join('\n'));
    if (opts.jsonFile) {
      writeFileSync(opts.jsonFile, JSON.stringify({ environment: describeEnvironment(pf), runs: opts.runs, cells }, null, 2) + '\n');
    }
  } finally {
    await teardown(stops, root, opts.keep, disarmRoot);
  }
}

runBench('bench:accept', main);
