/**
 * @module test/tables/golden-format
 * SUMMARY: shared helpers for the table tests: the golden-file format
 * (test/fixtures/tables/NAME.{map,in,ref}, after Postfix's dict_*.{map,in,ref}), key
 * escaping, and a runner for the real Postfix postmap(1) to compare against.
 * A .in file holds one key per line (C escapes \n \t \r \\ allowed); the .ref file holds the
 * load problems as `FILE:LINE: [warning: ]message`, then per key `get KEY` and either
 * `KEY=VALUE [SOURCE]`, `KEY: not found` or `KEY: error: REASON`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { formatProblem, GreygateError, UsageError } from '../../src/errors.js';
import type { CliIO } from '../../src/cli/io.js';
import { run as runPostmap } from '../../src/cli/postmap.js';
import type { Table } from '../../src/tables/table.js';
import { openTable } from '../../src/tables/open.js';

export const FIXTURES = new URL('../fixtures/tables/', import.meta.url).pathname;

export function unescapeKey(s: string): string {
  return s.replace(/\\(x[0-9a-fA-F]{2}|[ntr\\])/g, (_m, c: string) =>
    c.length === 3 ? String.fromCharCode(parseInt(c.slice(1), 16)) : ({ n: '\n', t: '\t', r: '\r', '\\': '\\' })[c]!,
  );
}

export function escapeText(s: string): string {
  return s
    .replace(/\\/g, '\\\\')
    .replace(/\n/g, '\\n')
    .replace(/\t/g, '\\t')
    .replace(/\r/g, '\\r')
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export function readKeys(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map(unescapeKey);
}

/** The golden text for TABLE: its problems, then one block per key. */
export function goldenOutput(table: Table, keys: readonly string[]): string {
  const out: string[] = table.problems.map(formatProblem);
  for (const key of keys) {
    const k = escapeText(key);
    out.push(`get ${k}`);
    const r = table.lookup(key);
    if (r.kind === 'hit') out.push(`${k}=${escapeText(r.value)} [${r.source}]`);
    else if (r.kind === 'miss') out.push(`${k}: not found`);
    else out.push(`${k}: error: ${r.error.message}`);
  }
  return out.join('\n') + '\n';
}

export interface PostmapResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const POSTMAP = '/usr/sbin/postmap';

/** Why the real postmap cannot be used here, or null when it can (pcre needs postfix-pcre). */
export function postmapUnavailable(type?: string): string | null {
  if (!existsSync(POSTMAP)) return `${POSTMAP} is not installed (Debian package postfix)`;
  if (type === 'pcre') {
    const m = spawnSync('/usr/sbin/postconf', ['-c', postfixConfigDir(), '-m'], { encoding: 'utf8' });
    if (!/^pcre$/m.test(m.stdout ?? '')) return 'postmap has no pcre support (Debian package postfix-pcre)';
  }
  return null;
}

let confDir: string | null = null;

/**
 * A private config directory: compatibility_level 3.6 as Debian installs (SMTPUTF8 on).
 * Its main.cf is dated in the past, and there is no master.cf: otherwise each run stalls.
 */
export function postfixConfigDir(): string {
  if (confDir) return confDir;
  confDir = mkdtempSync(join(tmpdir(), 'gg-postfix-conf-'));
  const made = confDir;
  process.once('exit', () => rmSync(made, { recursive: true, force: true }));
  writeFileSync(join(confDir, 'main.cf'), 'compatibility_level = 3.6\n');
  // Postfix re-reads a main.cf changed within the last second until it "cools down".
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(confDir, 'main.cf'), past, past);
  return confDir;
}

/** Postfix's postalias(1), for aliases(5) fixtures. */
export function realPostalias(args: readonly string[], opts: { cwd?: string } = {}): PostmapResult {
  const r = spawnSync('/usr/sbin/postalias', ['-c', postfixConfigDir(), ...args], { cwd: opts.cwd, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export function realPostmap(args: readonly string[], opts: { cwd?: string; input?: string } = {}): PostmapResult {
  const r = spawnSync(POSTMAP, ['-c', postfixConfigDir(), ...args], {
    cwd: opts.cwd,
    input: opts.input ?? '',
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** realPostmap() without blocking: Postfix sleeps 1 s after a fatal error, so run these in parallel. */
export function realPostmapAsync(args: readonly string[], opts: { cwd?: string; input?: string } = {}): Promise<PostmapResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(POSTMAP, ['-c', postfixConfigDir(), ...args], { cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolveRun({ status, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** Line numbers Postfix's warnings name ("regexp map F, line N:", "F, line N:"). */
export function postfixProblemLines(stderr: string): number[] {
  const lines = new Set<number>();
  for (const m of stderr.matchAll(/, line (\d+)(?:-\d+)?:/g)) lines.add(Number(m[1]));
  return [...lines].sort((a, b) => a - b);
}

/** Every fixture NAME (NAME.map present), sorted. */
export const FIXTURE_NAMES = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.map'))
  .map((f) => f.slice(0, -4))
  .sort();

/** The specs a fixture stands for: TYPE:NAME.map, or its lines for inline-/static-. */
export function specsOf(name: string): string[] {
  const type = name.split('-')[0]!;
  if (type !== 'inline' && type !== 'static') return [`${type}:${name}.map`];
  return readFileSync(join(FIXTURES, `${name}.map`), 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** The golden text of fixture NAME. */
export function render(name: string): string {
  const keys = readKeys(join(FIXTURES, `${name}.in`));
  if (name.startsWith('aliases')) return goldenOutput(openTable(`hash:${name}.map`, FIXTURES, { aliases: true }), keys);
  const specs = specsOf(name);
  if (specs.length === 1 && !name.startsWith('inline') && !name.startsWith('static')) {
    return goldenOutput(openTable(specs[0]!, FIXTURES), keys);
  }
  return specs.map((spec) => `## ${spec}\n${goldenOutput(openTable(spec, FIXTURES), keys)}`).join('');
}

/** greygate's `postmap` run in-process, with main.ts's exit statuses for thrown errors. */
export async function runOurPostmap(args: readonly string[], configDir: string, stdin = ''): Promise<PostmapResult> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    configDir,
    stdin: Readable.from([Buffer.from(stdin)]),
    out: (t) => {
      stdout += t;
    },
    err: (t) => {
      stderr += t;
    },
  };
  try {
    const status = await runPostmap([...args], io);
    return { status, stdout, stderr };
  } catch (e) {
    if (e instanceof UsageError) return { status: 2, stdout, stderr: `${stderr}${e.message}\n` };
    if (e instanceof GreygateError) return { status: 1, stdout, stderr: `${stderr}${e.message}\n` };
    throw e;
  }
}
