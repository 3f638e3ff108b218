/**
 * @module bench/relay
 * SUMMARY: `npm run bench:relay` (issue 5) — end-to-end msgs/s of a relay gateway: accepted
 * from smtp-source AND delivered to the same downstream smtp-sink, greygate against a private
 * Postfix in one run, at concurrency 20 and 100, one connection per message. The rate is
 * N / (time from the start of smtp-source until the last queue file has left the queue).
 * Prints a Markdown table on stdout (median of BENCH_RUNS; greygate/Postfix ratio against the
 * ≥ 1.5× target) and progress on stderr. Environment: see readOptions() and bench/README.md.
 * DIAGNOSTICS: a run counts only if smtp-source saw no error, the queue emptied with nothing
 * deferred or held, smtp-sink received exactly N more messages, and the server's log shows N
 * deliveries and no defer/bounce/expiry; anything else ends the benchmark with one line on
 * stderr (greygate's deferrals with `postqueue -j`'s delay reasons) and exit status 1.
 * SEE ALSO: bench/README.md, bench/accept.ts, smtp-source(1), smtp-sink(1), qmgr(8).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BenchError } from './lib/bench-error.js';
import { runBench, teardown } from './lib/bench-main.js';
import { describeEnvironment } from './lib/environment.js';
import { findExecutable } from './lib/executables.js';
import { installExitHandlers, benchRoot } from './lib/exit-cleanup.js';
import { GreygateRunner } from './lib/greygate-runner.js';
import { freeLoopbackPorts } from './lib/net.js';
import { oneOf, positiveInts } from './lib/options.js';
import { PostfixPeer } from './lib/postfix-peer.js';
import { SmtpSink } from './lib/smtp-sink.js';
import { describeCommand, runSmtpSource, type LoadResult, type MessageBody } from './lib/smtp-source.js';
import { formatRate, formatRatio, median, renderTable } from './lib/table.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RELAY_DOMAIN = 'example.com';
const BODY: MessageBody = { kind: 'generated', bytes: 1024 };
/** Issue 5: greygate must relay at least this many times as fast as Postfix. */
const TARGET_RATIO = 1.5;

type TargetKey = 'greygate' | 'postfix';
const TARGET_KEYS: readonly TargetKey[] = ['greygate', 'postfix'];

interface Options {
  readonly concurrencies: readonly number[];
  readonly messages: ReadonlyMap<number, number>;
  readonly runs: number;
  readonly warmup: number;
  readonly targets: ReadonlySet<TargetKey>;
  readonly stallMs: number;
  readonly keep: boolean;
  readonly jsonFile: string | undefined;
}

/**
 * BENCH_QUICK=1 smoke run; BENCH_RUNS (3); BENCH_MESSAGES (N, or one N per concurrency);
 * BENCH_CONCURRENCY (20,100); BENCH_WARMUP (messages per server before measuring);
 * BENCH_TARGETS (greygate,postfix); BENCH_STALL (seconds without delivery before a run is
 * declared stuck, 30); BENCH_GREYGATE_MAIN; BENCH_GREYGATE_NODE_ARGS (node flags for the
 * gateway, e.g. "--cpu-prof --cpu-prof-dir=DIR"); BENCH_KEEP=1; BENCH_JSON=FILE.
 */
function readOptions(env: NodeJS.ProcessEnv): Options {
  const quick = env.BENCH_QUICK === '1';
  const concurrencies = positiveInts('BENCH_CONCURRENCY', env.BENCH_CONCURRENCY ?? '20,100');
  const runs = env.BENCH_RUNS ? positiveInts('BENCH_RUNS', env.BENCH_RUNS)[0]! : quick ? 1 : 3;
  const messages = new Map<number, number>();
  if (env.BENCH_MESSAGES) {
    const given = positiveInts('BENCH_MESSAGES', env.BENCH_MESSAGES);
    if (given.length !== 1 && given.length !== concurrencies.length) {
      throw new BenchError(`BENCH_MESSAGES=${env.BENCH_MESSAGES}: give one count, or one per concurrency (${concurrencies.join(',')})`);
    }
    concurrencies.forEach((c, i) => messages.set(c, given.length === 1 ? given[0]! : given[i]!));
  } else {
    // A few seconds per run at Postfix's relay rate: the drain tail (the last messages
    // delivered after smtp-source ends) then weighs little against the whole run.
    for (const c of concurrencies) messages.set(c, quick ? 500 : 3000);
  }
  return {
    concurrencies,
    messages,
    runs,
    warmup: env.BENCH_WARMUP ? positiveInts('BENCH_WARMUP', env.BENCH_WARMUP)[0]! : quick ? 100 : 2000,
    targets: oneOf('BENCH_TARGETS', env.BENCH_TARGETS ?? TARGET_KEYS.join(','), TARGET_KEYS),
    stallMs: (env.BENCH_STALL ? positiveInts('BENCH_STALL', env.BENCH_STALL)[0]! : 30) * 1000,
    keep: env.BENCH_KEEP === '1',
    jsonFile: env.BENCH_JSON,
  };
}

/** One relay run: smtp-source's part, the drain after it, and the end-to-end rate. */
interface RelayResult {
  readonly load: LoadResult;
  readonly drainSeconds: number;
  readonly seconds: number;
  /** N / (smtp-source time + drain time): accepted and delivered to the sink. */
  readonly rate: number;
}

interface Target {
  readonly key: TargetKey;
  readonly label: string;
  relay(messages: number, sessions: number): Promise<RelayResult>;
}

/** Time limit for a drain: generous, a relay slower than 20 msg/s is broken. */
const drainLimitMs = (messages: number): number => 60_000 + messages * 50;

/** smtp-sink must have received exactly N more messages: none lost, none delivered twice. */
async function checkSink(sink: SmtpSink, before: number, messages: number, label: string): Promise<void> {
  // The sink counts at ".", before its 250, so by the time the queue is empty the count is
  // complete; the grace only covers the counter line still in the pipe.
  let got = sink.received()! - before;
  for (let i = 0; i < 50 && got < messages; i++) {
    await sleep(100);
    got = sink.received()! - before;
  }
  if (got !== messages) {
    throw new BenchError(`${label}: its queue is empty but smtp-sink received ${got} message(s), not ${messages}`);
  }
}

/**
 * Poll COUNT (the server's log after the run's start) until `sent` reaches N; then it must
 * be exactly N with no other outcome. Logs are written behind the deliveries, hence the wait.
 */
async function checkLog(label: string, messages: number, count: () => { sent: number; other: Record<string, number> }): Promise<void> {
  let c = count();
  for (let i = 0; i < 150 && c.sent < messages; i++) {
    await sleep(100);
    c = count();
  }
  const other = Object.entries(c.other).filter(([, n]) => n > 0);
  if (c.sent !== messages || other.length > 0) {
    const extra = other.map(([k, n]) => `, ${n} ${k}`).join('');
    throw new BenchError(`${label}: the log shows ${c.sent} deliveries for ${messages} messages${extra}`);
  }
}

function greygateTarget(gg: GreygateRunner, sink: SmtpSink, stallMs: number): Target {
  return {
    key: 'greygate',
    label: 'greygate',
    async relay(messages, sessions) {
      const sinkBefore = sink.received()!;
      const logFrom = gg.logSize();
      let load: LoadResult;
      try {
        load = await runSmtpSource({ messages, sessions, body: BODY, port: gg.port, label: 'greygate' });
      } catch (e) {
        if (e instanceof BenchError && !gg.running()) throw new BenchError(`${e.message} (greygate died)${gg.tail()}`);
        throw e;
      }
      const drainSeconds = await gg.waitForEmptyQueue({ timeoutMs: drainLimitMs(messages), stallMs });
      const seconds = load.seconds + drainSeconds;
      await checkSink(sink, sinkBefore, messages, 'greygate');
      await checkLog('greygate', messages, () => {
        const e = gg.countEvents(logFrom, ['deliver', 'defer', 'bounce', 'expire']);
        return { sent: e.deliver ?? 0, other: { deferred: e.defer ?? 0, bounced: e.bounce ?? 0, expired: e.expire ?? 0 } };
      });
      return { load, drainSeconds, seconds, rate: messages / seconds };
    },
  };
}

function postfixTarget(pf: PostfixPeer, sink: SmtpSink): Target {
  return {
    key: 'postfix',
    label: `Postfix ${pf.version}`,
    async relay(messages, sessions) {
      const sinkBefore = sink.received()!;
      const logFrom = pf.maillogSize();
      const load = await runSmtpSource({ messages, sessions, body: BODY, port: pf.port, label: 'Postfix' });
      const drainSeconds = await pf.waitForEmptyQueue(drainLimitMs(messages));
      const seconds = load.seconds + drainSeconds;
      await checkSink(sink, sinkBefore, messages, 'Postfix');
      await checkLog('Postfix', messages, () => {
        const { sent = 0, ...other } = pf.deliveryStatuses(logFrom);
        return { sent, other };
      });
      return { load, drainSeconds, seconds, rate: messages / seconds };
    },
  };
}

interface Cell {
  readonly concurrency: number;
  readonly target: TargetKey;
  readonly messages: number;
  readonly runs: RelayResult[];
}

function renderResults(opts: Options, cells: readonly Cell[], labels: ReadonlyMap<TargetKey, string>): { text: string; verdict: string } {
  const cellOf = (c: number, t: TargetKey): Cell | undefined => cells.find((x) => x.concurrency === c && x.target === t);
  const rate = (c: number, t: TargetKey): number => median(cellOf(c, t)?.runs.map((r) => r.rate) ?? []);
  const part = (c: number, t: TargetKey, f: (r: RelayResult) => number): string => {
    const m = median(cellOf(c, t)?.runs.map(f) ?? []);
    return Number.isFinite(m) ? m.toFixed(2) : '—';
  };
  const keys = TARGET_KEYS.filter((t) => opts.targets.has(t));
  const both = keys.length === 2;
  const name = (t: TargetKey): string => labels.get(t) ?? t;

  const headers = ['concurrency', ...keys.map((t) => `${name(t)} msg/s`)];
  if (both) headers.push('ratio greygate/Postfix', `target ≥ ${TARGET_RATIO}×`);
  const rows = opts.concurrencies.map((c) => {
    const row = [`c=${c} (${opts.messages.get(c)} msgs)`, ...keys.map((t) => formatRate(rate(c, t)))];
    if (both) {
      const ratio = rate(c, 'greygate') / rate(c, 'postfix');
      row.push(formatRatio(rate(c, 'greygate'), rate(c, 'postfix')), Number.isFinite(ratio) ? (ratio >= TARGET_RATIO ? 'met' : 'not met') : '—');
    }
    return row;
  });

  // Where each run's time went: smtp-source (accepting while delivering) and the tail after it.
  const splitHeaders = ['concurrency'];
  for (const t of keys) splitHeaders.push(`${name(t)}: smtp-source s`, `${name(t)}: drain s`, `${name(t)}: accept msg/s`);
  const splitRows = opts.concurrencies.map((c) => {
    const row = [`c=${c}`];
    for (const t of keys) row.push(part(c, t, (r) => r.load.seconds), part(c, t, (r) => r.drainSeconds), formatRate(median(cellOf(c, t)?.runs.map((r) => r.load.rate) ?? [])));
    return row;
  });

  let verdict = '';
  if (both) {
    const ratios = opts.concurrencies.map((c) => [c, rate(c, 'greygate') / rate(c, 'postfix')] as const);
    const met = ratios.every(([, r]) => r >= TARGET_RATIO);
    verdict = `Target (issue 5): greygate ≥ ${TARGET_RATIO}× Postfix end to end — ${met ? 'MET' : 'NOT MET'} (${ratios.map(([c, r]) => `c=${c}: ${Number.isFinite(r) ? r.toFixed(2) : '—'}×`).join(', ')}).`;
  }
  const text = [
    `### Relayed msg/s (accepted and delivered to smtp-sink), median of ${opts.runs}`,
    '',
    `\`${describeCommand(BODY)}\``,
    '',
    renderTable(headers, rows),
    '',
    ...(verdict ? [`**${verdict}**`, ''] : []),
    'Median seconds per run: smtp-source (every message accepted) and drain (after smtp-source, until the queue was empty); accept msg/s = N / smtp-source s.',
    '',
    renderTable(splitHeaders, splitRows),
    '',
  ].join('\n');
  return { text, verdict };
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
  const { root, disarm: disarmRoot } = benchRoot('greygate-bench-relay-', opts.keep);

  const stops: Array<() => Promise<void>> = [];
  try {
    const [ggPort, pfPort, sinkPort] = (await freeLoopbackPorts(3)) as [number, number, number];
    // The one downstream server both gateways relay to; its counter verifies every run.
    const sink = await SmtpSink.start(sinkPort, { counters: true });
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
      // greygate-runner's main.cf: relay_domains = example.com, transport_maps sending it
      // to [127.0.0.1]:SINKPORT, the default mydestination (not example.com), queue_fsync = yes.
      gg = await GreygateRunner.start({
        projectRoot: PROJECT_ROOT,
        ...(process.env.BENCH_GREYGATE_MAIN ? { entry: resolve(process.env.BENCH_GREYGATE_MAIN) } : {}),
        ...(process.env.BENCH_GREYGATE_NODE_ARGS ? { nodeArgs: process.env.BENCH_GREYGATE_NODE_ARGS.split(/\s+/).filter((a) => a !== '') } : {}),
        root: join(root, 'greygate'),
        port: ggPort,
        relayPort: sinkPort,
        relayDomain: RELAY_DOMAIN,
      });
      stops.push(() => gg!.stop());
    }

    const targets: Target[] = [];
    if (gg) targets.push(greygateTarget(gg, sink, opts.stallMs));
    if (pf) targets.push(postfixTarget(pf, sink));
    const labels = new Map(targets.map((t) => [t.key, t.label] as const));
    const environment = describeEnvironment(PROJECT_ROOT, pf ? [`Postfix ${pf.version}`] : []);

    const log = (s: string): void => {
      process.stderr.write(s + '\n');
    };
    log(`bench:relay: ${environment}`);
    log(`  temp dir ${root}${opts.keep ? ' (kept: BENCH_KEEP=1)' : ''}; ports greygate ${ggPort}, Postfix ${pfPort}, smtp-sink ${sinkPort}`);

    // JIT, page cache, Postfix's process pool and both sides' connections to the sink warm
    // up outside the measurement; a server that cannot relay at all fails here, early.
    for (const t of targets) {
      const r = await t.relay(opts.warmup, 20);
      log(`  warm-up ${t.label}: ${opts.warmup} msgs relayed in ${r.seconds.toFixed(2)} s`);
    }

    const cells: Cell[] = [];
    for (const c of opts.concurrencies) {
      const messages = opts.messages.get(c)!;
      const row = new Map<TargetKey, Cell>();
      for (const t of targets) {
        const cell: Cell = { concurrency: c, target: t.key, messages, runs: [] };
        row.set(t.key, cell);
        cells.push(cell);
      }
      for (let r = 0; r < opts.runs; r++) {
        // Rotate the order each run: on shared cores, neighbours' load drifts over time.
        const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
        for (const t of order) {
          const res = await t.relay(messages, c);
          row.get(t.key)!.runs.push(res);
          log(
            `  c=${String(c).padEnd(3)} run ${r + 1}/${opts.runs}  ${t.label.padEnd(14)} ${messages} msgs relayed in ${res.seconds.toFixed(2).padStart(6)} s = ${formatRate(res.rate).padStart(6)} msg/s` +
              `  (smtp-source ${res.load.seconds.toFixed(2)} s = ${formatRate(res.load.rate)} msg/s accepted, then drain ${res.drainSeconds.toFixed(2)} s)`,
          );
        }
      }
    }

    const { text } = renderResults(opts, cells, labels);
    const out = [
      `## bench:relay — ${environment}`,
      '',
      'One connection per message, one recipient, 1 KB body; both gateways fsync their queue files and',
      'relay to the same smtp-sink. Rate = N / (start of smtp-source .. last queue file removed).',
      '',
      text,
    ];
    process.stdout.write('\n' + out.join('\n'));
    if (opts.jsonFile) {
      const raw = cells.map((c) => ({
        concurrency: c.concurrency,
        target: c.target,
        messages: c.messages,
        runs: c.runs.map((r) => ({ rate: r.rate, seconds: r.seconds, smtpSourceSeconds: r.load.seconds, drainSeconds: r.drainSeconds })),
      }));
      writeFileSync(opts.jsonFile, JSON.stringify({ environment, runs: opts.runs, cells: raw }, null, 2) + '\n');
    }
  } finally {
    await teardown(stops, root, opts.keep, disarmRoot);
  }
}

runBench('bench:relay', main);
