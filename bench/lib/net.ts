/**
 * @module bench/lib/net
 * SUMMARY: loopback plumbing for the benchmark: LOOPBACK (the only address it ever uses),
 * freeLoopbackPorts(n) -> distinct unused TCP ports, waitForSmtpGreeting(port, opts) which
 * resolves once a 220 greeting arrives.
 * DIAGNOSTICS: waitForSmtpGreeting throws a BenchError when the deadline passes, when the
 * server greets with anything but 220, or as soon as opts.exited() reports that the daemon
 * died (so a crash at start-up is reported at once, with its reason, not after a timeout).
 * SEE ALSO: RFC 5321 section 3.1 (the greeting), smtp-source(1).
 */
import { createConnection, createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { BenchError } from './bench-error.js';

export const LOOPBACK = '127.0.0.1';

/**
 * Ports are taken by binding port 0 and released at once; all n listeners are held open
 * together so the kernel cannot hand out the same port twice.
 */
export async function freeLoopbackPorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, LOOPBACK, () => resolve());
      });
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') throw new BenchError('could not read a bound port');
      ports.push(addr.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

type Probe = { kind: 'greeted' } | { kind: 'refused'; reason: string } | { kind: 'bad'; reply: string };

function probeGreeting(port: number, timeoutMs: number): Promise<Probe> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: LOOPBACK, port });
    let buf = '';
    let done = false;
    const finish = (p: Probe): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (p.kind === 'greeted') sock.end('QUIT\r\n');
      else sock.destroy();
      resolve(p);
    };
    const timer = setTimeout(() => finish({ kind: 'refused', reason: 'no greeting' }), timeoutMs);
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      // A multi-line greeting is "220-..." lines then "220 ..."; wait for the last one.
      const lines = buf.split('\r\n');
      for (const line of lines.slice(0, -1)) {
        if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
          finish(line.startsWith('220') ? { kind: 'greeted' } : { kind: 'bad', reply: line });
          return;
        }
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'refused', reason: e.code ?? e.message }));
    sock.on('close', () => finish({ kind: 'refused', reason: 'closed before greeting' }));
  });
}

export interface GreetingWait {
  /** Who is expected to answer, for messages ("greygate", "Postfix"). */
  readonly label: string;
  readonly timeoutMs: number;
  /** Returns a reason when the daemon has died, so waiting can stop early. */
  readonly exited?: () => string | undefined;
}

export async function waitForSmtpGreeting(port: number, opts: GreetingWait): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = 'not tried';
  while (Date.now() < deadline) {
    const dead = opts.exited?.();
    if (dead !== undefined) throw new BenchError(`${opts.label} exited before greeting on ${LOOPBACK}:${port}: ${dead}`);
    const p = await probeGreeting(port, Math.max(100, Math.min(2000, deadline - Date.now())));
    if (p.kind === 'greeted') return;
    if (p.kind === 'bad') throw new BenchError(`${opts.label} on ${LOOPBACK}:${port} greeted with "${p.reply}" instead of 220`);
    last = p.reason;
    await sleep(100);
  }
  const dead = opts.exited?.();
  throw new BenchError(
    `${opts.label} did not greet on ${LOOPBACK}:${port} within ${opts.timeoutMs / 1000} s (${dead ?? last})`,
  );
}
