/**
 * @module bench/lib/policy-load
 * SUMMARY: the policy-lookup load driver, the same client for greygate and postgrey:
 * C connections, each with one request in flight at a time (as Postfix's smtpd processes
 * use a policy server), the attributes Postfix 3.7 sends at RCPT time, every answer checked.
 * Exports runPolicyLoad(spec) -> PolicyLoadResult {requests, seconds, rate},
 * postfixRequest(fields) which writes one request as Postfix does, and
 * waitForPolicyService(port) for a service that is still starting.
 * A run lasts spec.seconds (or spec.requests requests); the rate is the answers received
 * divided by the wall-clock time from the first request to the last answer.
 * DIAGNOSTICS: an answer that is not the expected action (by prefix), a closed connection,
 * a refused connection or 30 s without any answer is a BenchError naming the request.
 * SEE ALSO: SMTPD_POLICY_README; bench/greylist.ts.
 */
import { createConnection, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { BenchError } from './bench-error.js';
import { LOOPBACK } from './net.js';

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
  /** The I-th request of the run (I counts across all connections). */
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
      sock.setEncoding('latin1');
      sock.once('connect', next);
      sock.on('data', (chunk: string) => {
        buf += chunk;
        for (;;) {
          const end = buf.indexOf('\n\n');
          if (end < 0) return;
          const reply = buf.slice(0, end);
          buf = buf.slice(end + 2);
          lastAnswer = performance.now();
          const at = reply.indexOf('action=');
          const action = at < 0 ? '' : reply.slice(at + 7, reply.indexOf('\n', at) < 0 ? undefined : reply.indexOf('\n', at));
          const hit = spec.expect.find((e) => action.startsWith(e));
          if (hit === undefined) {
            fail(`request ${current} answered "${action || reply}", expected ${spec.expect.map((e) => `"${e}..."`).join(' or ')}`);
            return;
          }
          answers.set(hit, answers.get(hit)! + 1);
          done++;
          next();
        }
      });
      sock.on('error', (e: NodeJS.ErrnoException) => fail(`connection ${c}: ${e.code ?? e.message}`));
      sock.on('close', () => {
        if (!finished) fail(`connection ${c} closed by the server after ${done} answers`);
      });
    }
  });
}
