/**
 * @module test/helpers/gateway
 * Starts the real gateway (`node dist/main.js start -c DIR`) in a child process with a
 * temporary config directory, on free loopback ports, and reads its decision log.
 * `npm test` builds dist/ first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MAIN = join(ROOT, 'dist', 'main.js');

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

export interface GatewayOptions {
  /** main.cf parameters (merged over the test defaults). */
  params?: Record<string, string>;
  /** Extra files in the config directory (tables). */
  files?: Record<string, string>;
  /** Reuse an existing directory (restart after kill). */
  dir?: string;
  env?: Record<string, string>;
}

export class TestGateway {
  readonly dir: string;
  readonly configDir: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly ports: { smtpd: number; submission: number; smtps: number };
  proc: ChildProcess | null = null;
  stdout = '';
  stderr = '';
  private readonly params: Record<string, string>;

  constructor(dir: string, ports: TestGateway['ports'], params: Record<string, string>) {
    this.dir = dir;
    this.configDir = join(dir, 'conf');
    this.dataDir = join(dir, 'data');
    this.logFile = join(dir, 'mail.log');
    this.ports = ports;
    this.params = params;
  }

  get port(): number {
    return this.ports.smtpd;
  }

  writeMainCf(extra: Record<string, string> = {}): void {
    const all = { ...this.params, ...extra };
    writeFileSync(join(this.configDir, 'main.cf'), Object.entries(all).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  }

  writeFile(name: string, text: string): void {
    writeFileSync(join(this.configDir, name), text);
  }

  async start(): Promise<void> {
    this.stdout = '';
    this.stderr = '';
    const proc = spawn(process.execPath, [MAIN, 'start', '-c', this.configDir], {
      cwd: this.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env },
    });
    this.proc = proc;
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (this.stdout.includes('"event":"start"')) return;
      if (proc.exitCode !== null) throw new Error(`gateway exited ${proc.exitCode}: ${this.stderr}${this.stdout}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`gateway did not start: ${this.stderr}${this.stdout}`);
  }

  /** Every JSON record of the decision log so far. */
  log(): Array<Record<string, unknown>> {
    if (!existsSync(this.logFile)) return [];
    return readFileSync(this.logFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Wait until a log record matching PRED appears (the log is written asynchronously). */
  async waitLog(pred: (r: Record<string, unknown>) => boolean, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.log().find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no matching log record; log:\n${readFileSafe(this.logFile)}`);
      await new Promise((r) => setTimeout(r, 30));
    }
  }

  /** Run the CLI against this gateway's config. */
  cli(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return runCli([...args, '-c', this.configDir], { cwd: this.dir, input });
  }

  signal(sig: NodeJS.Signals): void {
    this.proc?.kill(sig);
  }

  async stop(): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return p?.exitCode ?? null;
    const done = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
    const code = await done;
    clearTimeout(t);
    return code;
  }

  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const done = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await done;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function readFileSafe(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '(no log file)';
  }
}

/** Write a config for a gateway on free loopback ports and start it. */
export async function startGateway(opts: GatewayOptions = {}): Promise<TestGateway> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'greygate-test-'));
  const ports = { smtpd: await freePort(), submission: await freePort(), smtps: await freePort() };
  const params: Record<string, string> = {
    myhostname: 'mx.greygate.test',
    mydomain: 'greygate.test',
    mydestination: '$myhostname, localhost.$mydomain, localhost, greygate.test',
    inet_interfaces: '127.0.0.1',
    mynetworks: '127.0.0.0/8',
    relay_domains: 'relay.test',
    data_directory: join(dir, 'data'),
    maillog_file: join(dir, 'mail.log'),
    smtpd_port: String(ports.smtpd),
    submission_port: String(ports.submission),
    smtps_port: String(ports.smtps),
    pop3_port: '0',
    pop3s_port: '0',
    imap_port: '0',
    imaps_port: '0',
    smtpd_authorized_xclient_hosts: '127.0.0.1',
    // Tests about acceptance inspect the queue: no deliveries unless a test turns them on
    // (master_service_disable = '' with relayhost/transport_maps pointing at a loopback sink).
    master_service_disable: 'qmgr',
    ...opts.params,
  };
  const gw = new TestGateway(dir, ports, params);
  mkdirSync(gw.configDir, { recursive: true });
  gw.writeMainCf();
  for (const [name, text] of Object.entries(opts.files ?? {})) gw.writeFile(name, text);
  await gw.start();
  return gw;
}

export function runCli(args: string[], opts: { cwd?: string; input?: string; env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [MAIN, ...args], { cwd: opts.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('close', (code) => res({ code: code ?? -1, stdout, stderr }));
    p.stdin.end(opts.input ?? '');
  });
}

/** Fail under CI when a required external tool is missing; otherwise report it as a skip. */
export function requireTool(path: string): string | null {
  if (existsSync(path)) return null;
  if (process.env.CI === 'true') throw new Error(`required tool missing under CI: ${path}`);
  return `${path} not installed`;
}
