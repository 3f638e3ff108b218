/**
 * @module bench/imap
 * SUMMARY: `npm run bench:imap` (issue 6) — how long greygate's IMAP server takes to SELECT a
 * 10,000-message INBOX, to FETCH FLAGS and ENVELOPE of every message and to FETCH every body,
 * side by side with a private Dovecot serving a copy of the same Maildir. The corpus is
 * generated from a seed (bench/lib/mail-corpus.ts) and delivered once with greygate's own
 * Maildir store, so greygate's index exists as after real deliveries; Dovecot gets the files
 * without that index. One client (bench/lib/imap-client.ts) for both; a verified warm-up
 * session per server, then BENCH_RUNS sessions in rotating order; the table shows medians and
 * the greygate/Dovecot ratio against the ≤ 2× target. Progress on stderr, tables on stdout.
 * DIAGNOSTICS: a missing tool, a server that will not start or answer IMAP, or a wrong
 * answer (EXISTS, FETCH count, a body that differs from the delivered message, body totals
 * that differ) ends the run with one line on stderr and exit status 1; ENVELOPEs that differ
 * between the servers are reported (not fatal). Servers and the temp dir are removed on
 * every exit path.
 * SEE ALSO: bench/README.md, RFC 3501, /work/shared/peers.md "Dovecot".
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BenchError } from './lib/bench-error.js';
import { runBench, teardown } from './lib/bench-main.js';
import { DOVECOT_HINT, DovecotPeer } from './lib/dovecot-peer.js';
import { describeEnvironment } from './lib/environment.js';
import { findExecutable } from './lib/executables.js';
import { installExitHandlers, benchRoot } from './lib/exit-cleanup.js';
import { GreygateRunner } from './lib/greygate-runner.js';
import { tryLogin } from './lib/imap-client.js';
import { IMAP_OPERATIONS, runImapSession, type OperationKey, type SessionResult } from './lib/imap-load.js';
import { generateCorpus } from './lib/mail-corpus.js';
import { copyMaildir, deliverCorpus } from './lib/maildir-fixture.js';
import { freeLoopbackPorts } from './lib/net.js';
import { oneOf, positiveInts } from './lib/options.js';
import { formatRatio, median, renderTable } from './lib/table.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Issue 6: greygate within 2× of Dovecot's time for each operation. */
const TARGET_RATIO = 2;
const USER = 'bench';
/** The corpus seed (any fixed number would do; this is issue 6's). */
const DEFAULT_SEED = 6;

type TargetKey = 'greygate' | 'dovecot';
const TARGET_KEYS: readonly TargetKey[] = ['greygate', 'dovecot'];

interface Options {
  readonly messages: number;
  readonly runs: number;
  readonly seed: number;
  readonly targets: ReadonlySet<TargetKey>;
  readonly entry: string;
  readonly nodeArgs: readonly string[];
  readonly keep: boolean;
  readonly jsonFile: string | undefined;
}

/**
 * BENCH_QUICK=1 smoke run (1,000 messages, 1 run); BENCH_MESSAGES (10000); BENCH_RUNS (3);
 * BENCH_SEED (6); BENCH_TARGETS (greygate,dovecot); BENCH_GREYGATE_MAIN (dist/main.js);
 * BENCH_GREYGATE_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=DIR"); BENCH_KEEP=1; BENCH_JSON=FILE.
 */
function readOptions(env: NodeJS.ProcessEnv): Options {
  const quick = env.BENCH_QUICK === '1';
  const one = (name: string, fallback: number): number => (env[name] ? positiveInts(name, env[name]!)[0]! : fallback);
  return {
    messages: one('BENCH_MESSAGES', quick ? 1000 : 10_000),
    runs: one('BENCH_RUNS', quick ? 1 : 3),
    seed: one('BENCH_SEED', DEFAULT_SEED),
    targets: oneOf('BENCH_TARGETS', env.BENCH_TARGETS ?? TARGET_KEYS.join(','), TARGET_KEYS),
    entry: resolve(env.BENCH_GREYGATE_MAIN ?? join(PROJECT_ROOT, 'dist', 'main.js')),
    nodeArgs: (env.BENCH_GREYGATE_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== ''),
    keep: env.BENCH_KEEP === '1',
    jsonFile: env.BENCH_JSON,
  };
}

interface Target {
  readonly key: TargetKey;
  readonly label: string;
  readonly port: number;
  /** Why the server may have failed a session, appended to the error (its log's tail). */
  readonly diagnose: () => string;
}

const log = (s: string): void => {
  process.stderr.write(s + '\n');
};

/**
 * The built gateway with imap_port on PORT (greygate-runner writes `imap_port = 0` first; the
 * later line wins, as in Postfix, with a warning in the gateway's log), and USER created with
 * the CLI, as an administrator would.
 */
async function startGreygate(opts: Options, root: string, smtpPort: number, imapPort: number, unusedPort: number, password: string): Promise<GreygateRunner> {
  const gg = await GreygateRunner.start({
    projectRoot: PROJECT_ROOT,
    entry: opts.entry,
    ...(opts.nodeArgs.length > 0 ? { nodeArgs: opts.nodeArgs } : {}),
    root,
    port: smtpPort,
    // Nothing is relayed in this benchmark; the transport entry points at a closed port.
    relayPort: unusedPort,
    relayDomain: 'example.com',
    extraMainCf: `imap_port = ${imapPort}`,
  });
  try {
    const add = spawnSync(process.execPath, [opts.entry, 'user', 'add', USER, '--password-stdin', '-c', gg.confDir], {
      cwd: PROJECT_ROOT,
      input: `${password}\n`,
      encoding: 'utf8',
    });
    if (add.status !== 0) throw new BenchError(`greygate user add ${USER} failed (status ${add.status}): ${(add.stderr || add.stdout).trim()}`);
    await waitForImap(gg, imapPort, password);
  } catch (e) {
    await gg.stop();
    throw e;
  }
  return gg;
}

/** Until LOGIN works on imap_port: a build whose gateway does not start IMAP fails here, in seconds. */
async function waitForImap(gg: GreygateRunner, port: number, password: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = '';
  while (Date.now() < deadline) {
    if (!gg.running()) throw new BenchError(`greygate exited${gg.tail()}`);
    const probe = await tryLogin(port, 'greygate', USER, password);
    if (probe.kind === 'ok') return;
    if (probe.kind === 'refused') throw new BenchError(`greygate refused LOGIN ${USER}: ${probe.reply}${gg.tail()}`);
    last = probe.reason;
    await sleep(200);
  }
  throw new BenchError(
    `greygate answers SMTP but not IMAP on imap_port ${port} (${last}): does this build start src/imap from src/gateway.ts?` +
      ` (BENCH_TARGETS=dovecot measures Dovecot alone)${gg.tail()}`,
  );
}

/** ENVELOPEs that differ between the two servers, for the same Message-ID. */
function compareEnvelopes(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): { differ: number; example?: string } {
  let differ = 0;
  let example: string | undefined;
  for (const [id, env] of a) {
    const other = b.get(id);
    if (other === env) continue;
    differ++;
    example ??= `${id}:\n    greygate: ${env}\n    Dovecot:  ${other ?? '(missing)'}`;
  }
  for (const id of b.keys()) if (!a.has(id)) differ++;
  return example === undefined ? { differ } : { differ, example };
}

function renderResults(
  opts: Options,
  targets: readonly Target[],
  runs: ReadonlyMap<TargetKey, SessionResult[]>,
): { text: string; verdict: string } {
  const med = (t: TargetKey, f: (r: SessionResult) => number): number => median((runs.get(t) ?? []).map(f));
  const ms = (v: number): string => (Number.isFinite(v) ? (v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1)) : '—');
  const both = targets.length === 2;
  const headers = ['operation', ...targets.map((t) => `${t.label} ms`)];
  if (both) headers.push('ratio greygate/Dovecot', `target ≤ ${TARGET_RATIO}×`);
  const ops: Array<{ label: string; short?: string; f: (r: SessionResult) => number }> = [
    ...IMAP_OPERATIONS.map((op) => ({ label: op.label, short: op.short, f: (r: SessionResult) => r[op.key as OperationKey] })),
    { label: 'all three', f: (r: SessionResult) => r.selectMs + r.envelopeMs + r.bodyMs },
  ];
  const verdicts: string[] = [];
  let allMet = true;
  const rows = ops.map((op) => {
    const row = [op.label, ...targets.map((t) => ms(med(t.key, op.f)))];
    if (both) {
      const g = med('greygate', op.f);
      const d = med('dovecot', op.f);
      const met = g / d <= TARGET_RATIO;
      // The target is per operation; the sum is shown for the overall picture only.
      if (op.short !== undefined) {
        allMet &&= met;
        verdicts.push(`${op.short} ${formatRatio(g, d)}`);
      }
      row.push(formatRatio(g, d), Number.isFinite(g / d) ? (met ? 'met' : 'not met') : '—');
    }
    return row;
  });
  // Throughput of the body fetch, to compare with the loopback and the client's own ceiling.
  const mb = (t: TargetKey): string => {
    const r = runs.get(t)?.[0];
    const v = r ? r.bodyBytes / 1e6 / (med(t, (x) => x.bodyMs) / 1000) : Number.NaN;
    return Number.isFinite(v) ? v.toFixed(0) : '—';
  };
  const verdict = both
    ? `Target (issue 6): greygate within ${TARGET_RATIO}× of Dovecot — ${allMet ? 'MET' : 'NOT MET'} (${verdicts.join(', ')}).`
    : '';
  const first = runs.get(targets[0]!.key)?.[0];
  const text = [
    `### ${opts.messages.toLocaleString('en-US')}-message INBOX, ms per operation (median of ${opts.runs})`,
    '',
    renderTable(headers, rows),
    '',
    ...(verdict ? [`**${verdict}**`, ''] : []),
    `Bodies: ${first ? (first.bodyBytes / 1e6).toFixed(1) : '?'} MB of BODY[] literals per FETCH; ${targets.map((t) => `${t.label} ${mb(t.key)} MB/s`).join(', ')}.`,
    `Octets on the wire per FETCH (FLAGS ENVELOPE): ${targets.map((t) => `${t.label} ${runs.get(t.key)?.[0]?.envelopeWireBytes.toLocaleString('en-US') ?? '—'}`).join(', ')}.`,
    '',
  ].join('\n');
  return { text, verdict };
}

async function main(): Promise<void> {
  const opts = readOptions(process.env);
  installExitHandlers();
  if (opts.targets.has('dovecot')) {
    findExecutable('dovecot', DOVECOT_HINT);
    if (process.getuid?.() !== 0) throw new BenchError('Dovecot needs root (its processes switch users): run with sudo, or BENCH_TARGETS=greygate');
  }
  if (opts.targets.has('greygate') && !existsSync(opts.entry)) throw new BenchError(`${opts.entry} not found: run \`npm run build\` first`);

  // Registered first, so it runs last: after every daemon using the directory has stopped.
  const { root, disarm: disarmRoot } = benchRoot('greygate-bench-imap-', opts.keep);
  const stops: Array<() => Promise<void>> = [];
  try {
    const [smtpPort, ggImapPort, dovecotPort, unusedPort] = (await freeLoopbackPorts(4)) as [number, number, number, number];
    // A throwaway password with nothing a passwd-file or an IMAP atom would mind.
    const password = randomBytes(12).toString('hex');

    let t0 = performance.now();
    const corpus = generateCorpus(opts.messages, opts.seed);
    const totalBytes = corpus.reduce((n, m) => n + m.bytes.length, 0);
    log(`bench:imap: ${opts.messages} messages generated (seed ${opts.seed}, ${(totalBytes / 1e6).toFixed(1)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    t0 = performance.now();
    const ggRoot = join(root, 'greygate');
    // greygate-runner's data_directory is ROOT/greygate/data; the Maildir is its mail/USER.
    // A progress counter only on a terminal; a log file gets the summary line alone.
    const progress = process.stderr.isTTY ? (n: number): void => void process.stderr.write(`\r  delivering with greygate's MaildirStore: ${n}/${opts.messages}`) : undefined;
    const delivered = await deliverCorpus(join(ggRoot, 'data'), USER, corpus, progress);
    if (progress) process.stderr.write('\n');
    log(`  delivered to ${delivered.path} in ${delivered.seconds.toFixed(1)} s (tmp -> fsync -> new, one UID each in greygate's index)`);

    const targets: Target[] = [];
    let dovecot: DovecotPeer | undefined;
    if (opts.targets.has('dovecot')) {
      const dvRoot = join(root, 'dovecot');
      mkdirSync(dvRoot);
      chmodSync(dvRoot, 0o755);
      const maildir = join(dvRoot, 'Maildir');
      const copied = copyMaildir(delivered.path, maildir);
      if (copied !== opts.messages) throw new BenchError(`copied ${copied} message files for Dovecot, expected ${opts.messages}`);
      dovecot = await DovecotPeer.start({ root: dvRoot, port: dovecotPort, user: USER, password, maildir });
      stops.push(() => dovecot!.stop());
      const dv = dovecot;
      targets.push({ key: 'dovecot', label: dv.version, port: dovecotPort, diagnose: () => dv.tail() });
    }
    let gg: GreygateRunner | undefined;
    if (opts.targets.has('greygate')) {
      gg = await startGreygate(opts, ggRoot, smtpPort, ggImapPort, unusedPort, password);
      stops.push(() => gg!.stop());
      const g = gg;
      targets.unshift({ key: 'greygate', label: 'greygate', port: ggImapPort, diagnose: () => g.tail() });
    }

    const environment = describeEnvironment(PROJECT_ROOT, dovecot ? [dovecot.version] : []);
    log(`bench:imap: ${environment}`);
    log(`  temp dir ${root}${opts.keep ? ' (kept: BENCH_KEEP=1)' : ''}; IMAP ports ${targets.map((t) => `${t.label} ${t.port}`).join(', ')}`);

    const session = async (t: Target, verify: boolean): Promise<SessionResult> => {
      try {
        const r = await runImapSession({
          port: t.port,
          label: t.label,
          user: USER,
          password,
          expected: opts.messages,
          ...(verify ? { verify: { sha256: new Set(corpus.map((m) => m.sha256)) } } : {}),
        });
        if (r.bodyBytes !== totalBytes) {
          throw new BenchError(`${t.label}: FETCH BODY[] returned ${r.bodyBytes} octets in all, the delivered messages are ${totalBytes}`);
        }
        return r;
      } catch (e) {
        if (e instanceof BenchError) throw new BenchError(e.message + t.diagnose(), { cause: e });
        throw e;
      }
    };
    const line = (t: Target, what: string, r: SessionResult): void =>
      log(
        `  ${what.padEnd(10)} ${t.label.padEnd(16)} SELECT ${r.selectMs.toFixed(1).padStart(7)} ms  FLAGS+ENVELOPE ${r.envelopeMs.toFixed(1).padStart(8)} ms  BODY[] ${r.bodyMs.toFixed(1).padStart(8)} ms` +
          `  (client CPU ${r.envelopeClientCpuMs.toFixed(0)} / ${r.bodyClientCpuMs.toFixed(0)} ms)`,
      );

    // The first session builds what each server caches (Dovecot's index and cache, greygate's
    // move of new/ to cur/ and whatever it keeps in memory) and is checked message by message.
    const envelopes = new Map<TargetKey, ReadonlyMap<string, string>>();
    for (const t of targets) {
      const r = await session(t, true);
      envelopes.set(t.key, r.envelopes!);
      line(t, 'warm-up', r);
    }
    let envelopeNote = '';
    if (envelopes.size === 2) {
      const c = compareEnvelopes(envelopes.get('greygate')!, envelopes.get('dovecot')!);
      envelopeNote =
        c.differ === 0
          ? `Every ENVELOPE greygate returned is identical to Dovecot's (${opts.messages} compared by Message-ID).`
          : `${c.differ} of ${opts.messages} ENVELOPEs differ from Dovecot's; the first:\n    ${c.example ?? ''}`;
      log(`  ${envelopeNote}`);
    }

    const runs = new Map<TargetKey, SessionResult[]>(targets.map((t) => [t.key, []]));
    for (let i = 0; i < opts.runs; i++) {
      // Rotate the order each run: on shared cores, neighbours' load drifts over time.
      for (const t of targets.map((_, j) => targets[(i + j) % targets.length]!)) {
        const r = await session(t, false);
        runs.get(t.key)!.push(r);
        line(t, `run ${i + 1}/${opts.runs}`, r);
      }
    }

    const { text } = renderResults(opts, targets, runs);
    const out = [
      `## bench:imap — ${environment}`,
      '',
      `One session per run: LOGIN, SELECT INBOX, FETCH 1:* (FLAGS ENVELOPE), FETCH 1:* BODY.PEEK[], LOGOUT; each timed from`,
      `the command's write to its tagged OK, by the same raw-socket client for both servers. Corpus: seed ${opts.seed},`,
      `${(totalBytes / 1e6).toFixed(1)} MB, delivered by greygate's MaildirStore; Dovecot serves a copy without greygate's index.`,
      '',
      text,
      ...(envelopeNote ? [envelopeNote, ''] : []),
    ];
    process.stdout.write('\n' + out.join('\n'));
    if (opts.jsonFile) {
      const raw = Object.fromEntries(
        [...runs].map(([k, rs]) => [
          k,
          rs.map((r) => ({
            selectMs: r.selectMs,
            envelopeMs: r.envelopeMs,
            bodyMs: r.bodyMs,
            bodyBytes: r.bodyBytes,
            clientCpuMs: { envelope: r.envelopeClientCpuMs, body: r.bodyClientCpuMs },
            // CLOCK_MONOTONIC µs, the clock of a .cpuprofile's startTime and samples.
            monotonicUs: r.monotonicUs,
          })),
        ]),
      );
      writeFileSync(opts.jsonFile, JSON.stringify({ environment, messages: opts.messages, seed: opts.seed, runs: raw }, null, 2) + '\n');
    }
  } finally {
    await teardown(stops, root, opts.keep, disarmRoot);
  }
}

runBench('bench:imap', main);
