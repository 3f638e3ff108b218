/**
 * @module bench/lib/policy-load
 * SUMMARY: the policy-lookup load driver, the same client for greygate and postgrey:
 * C connections, each with one request in flight at a time (as Postfix's smtpd processes
 * use a policy server), the attributes Postfix 3.7 sends at RCPT time, every answer checked.
 * Exports runPolicyLoad(spec) -> PolicyLoadResult {requests, seconds, rate},
 * postfixRequest(fields) which writes one request as Postfix does,
 * waitForPolicyService(port) for a service that is still starting, and CeilingServer: a
 * server in a process of its own that answers DUNNO to every request without reading it
 * (node:net, no other work), whose rate is what this client and the loopback allow at all
 * (run as a script, `policy-load.ts --ceiling-server`, it prints its port and serves).
 * A run lasts spec.seconds (or spec.requests requests); the rate is the answers received
 * divided by the wall-clock time from the first request to the last answer.
 * DIAGNOSTICS: an answer that is not the expected action (by prefix), a closed connection,
 * a refused connection or 30 s without any answer is a BenchError naming the request.
 * SEE ALSO: SMTPD_POLICY_README; bench/greylist.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BenchError } from './bench-error.js';
import { onExit } from './exit-cleanup.js';
import { LOOPBACK } from './net.js';
import { stopChild } from './stop-child.js';

export interface PolicyFields {
  readonly client: string;
  readonly name: string;
  readonly sender: string;
  readonly recipient: string;
  readonly instance: string;
}

/** One request with the attributes (and order) of Postfix 3.7's smtpd at RCPT TO. */
export function postfixRequest(f: PolicyFields): string {
  return (
    'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n' +
    `client_address=${f.client}\nclient_name=${f.name}\nclient_port=41234\nreverse_client_name=${f.name}\n` +
    'server_address=127.0.0.1\nserver_port=25\nhelo_name=mail.sender.example\n' +
    `sender=${f.sender}\nrecipient=${f.recipient}\nrecipient_count=0\nqueue_id=\ninstance=${f.instance}\n` +
    'size=1024\netrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\n' +
    'ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n' +
    'encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\ncompatibility_level=3.6\n\n'
  );
}

export interface PolicyLoadSpec {
  readonly port: number;
  readonly connections: number;
  /** Stop issuing requests after this long ... */
  readonly seconds?: number;
  /** ... or after this many requests (one of the two). */
  readonly requests?: number;
  /** The I-th request of the run (I counts across all connections); a Buffer is sent as it is. */
  request(i: number): string | Buffer;
  /** Accepted answers: the action must start with one of these. */
  readonly expect: readonly string[];
  /** What is under test, for error messages. */
  readonly label: string;
}

export interface PolicyLoadResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rate: number;
  /** How many answers started with each expected prefix. */
  readonly answers: ReadonlyMap<string, number>;
}

const STALL_MS = 30_000;

/** Resolve once something accepts connections on PORT (a policy service starting up). */
export async function waitForPolicyService(port: number, label: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: LOOPBACK, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new BenchError(`${label} does not listen on ${LOOPBACK}:${port} after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function runPolicyLoad(spec: PolicyLoadSpec): Promise<PolicyLoadResult> {
  if ((spec.seconds === undefined) === (spec.requests === undefined)) throw new BenchError('runPolicyLoad: give seconds or requests');
  return new Promise((resolve, reject) => {
    const sockets: Socket[] = [];
    const answers = new Map<string, number>(spec.expect.map((e) => [e, 0]));
    let issued = 0;
    let done = 0;
    let open = 0;
    let failed = false;
    let lastAnswer = performance.now();
    const started = performance.now();
    const deadline = spec.seconds !== undefined ? started + spec.seconds * 1000 : Infinity;
    const limit = spec.requests ?? Infinity;

    const fail = (why: string): void => {
      if (failed) return;
      failed = true;
      clearInterval(watchdog);
      for (const s of sockets) s.destroy();
      reject(new BenchError(`${spec.label}: ${why}`));
    };
    const finishOne = (): void => {
      open--;
      if (open === 0 && !failed) {
        clearInterval(watchdog);
        const seconds = (lastAnswer - started) / 1000;
        resolve({ requests: done, seconds, rate: done / seconds, answers });
      }
    };
    const watchdog = setInterval(() => {
      if (performance.now() - lastAnswer > STALL_MS) fail(`no answer for ${STALL_MS / 1000} s after ${done} answers`);
    }, 1000);

    const n = Math.max(1, Math.min(spec.connections, limit));
    for (let c = 0; c < n; c++) {
      const sock = createConnection({ host: LOOPBACK, port: spec.port });
      sockets.push(sock);
      open++;
      sock.setNoDelay(true);
      let buf = '';
      let current = -1;
      let finished = false;
      const next = (): void => {
        if (issued >= limit || performance.now() >= deadline) {
          finished = true;
          sock.end();
          finishOne();
          return;
        }
        current = issued++;
        sock.write(spec.request(current));
      };
      sock.once('connect', next);
      sock.on('data', (chunk: Buffer) => {
        // Replies are short and come one per chunk: the common case costs one small string.
        buf = buf === '' ? chunk.toString('latin1') : buf + chunk.toString('latin1');
        let from = 0;
        for (;;) {
          const end = buf.indexOf('\n\n', from);
          if (end < 0) break;
          const reply = buf.slice(from, end);
          from = end + 2;
          lastAnswer = performance.now();
          const at = reply.indexOf('action=');
          const eol = at < 0 ? -1 : reply.indexOf('\n', at);
          const action = at < 0 ? '' : reply.slice(at + 7, eol < 0 ? undefined : eol);
          let hit: string | undefined;
          for (const e of spec.expect) {
            if (action.startsWith(e)) {
              hit = e;
              break;
            }
          }
          if (hit === undefined) {
            fail(`request ${current} answered "${action || reply}", expected ${spec.expect.map((e) => `"${e}..."`).join(' or ')}`);
            return;
          }
          answers.set(hit, answers.get(hit)! + 1);
          done++;
          next();
        }
        buf = from === buf.length ? '' : buf.slice(from);
      });
      sock.on('error', (e: NodeJS.ErrnoException) => fail(`connection ${c}: ${e.code ?? e.message}`));
      sock.on('close', () => {
        if (!finished) fail(`connection ${c} closed by the server after ${done} answers`);
      });
    }
  });
}

/** The ceiling: a policy server that does nothing but answer, in a process of its own. */
export class CeilingServer {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly disarm: () => void,
  ) {}

  static async start(): Promise<CeilingServer> {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--ceiling-server'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const disarm = onExit('ceiling server', () => {
      child.kill('SIGKILL');
    });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new BenchError('the ceiling server did not start in 20 s')), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^(\d+)\n/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new BenchError(`the ceiling server exited (status ${code})`));
      });
    });
    return new CeilingServer(port, child, disarm);
  }

  async stop(): Promise<void> {
    await stopChild(this.child, 'the ceiling server', 5000);
    this.disarm();
  }
}

const REPLY_DUNNO = Buffer.from('action=DUNNO\n\n');

/** The ceiling server's process: one DUNNO per "\n\n" received, written at once. */
function serveCeiling(): void {
  const server = createServer((s) => {
    s.setNoDelay(true);
    // The empty line that ends a request may come at the start of the next read.
    let prevNl = false;
    s.on('data', (b: Buffer) => {
      let n = 0;
      let from = 0;
      if (prevNl && b[0] === 10) {
        n++;
        from = 1;
      }
      const t = b.toString('latin1', from);
      let last = -2;
      for (let i = t.indexOf('\n\n'); i >= 0; i = t.indexOf('\n\n', i + 2)) {
        n++;
        last = i;
      }
      prevNl = t.length > 0 && t.charCodeAt(t.length - 1) === 10 && last !== t.length - 2;
      for (let k = 0; k < n; k++) s.write(REPLY_DUNNO);
    });
    s.on('error', () => undefined);
  });
  server.listen(0, LOOPBACK, () => {
    const a = server.address();
    process.stdout.write(`${typeof a === 'object' && a ? a.port : 0}\n`);
  });
  process.once('SIGTERM', () => process.exit(0));
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--ceiling-server') serveCeiling();

