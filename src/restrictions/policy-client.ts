/**
 * @module restrictions/policy-client
 * SUMMARY: the client side of the Postfix policy delegation protocol: "name=value" lines
 * ended by an empty line, answered with "action=..." and an empty line. PolicyClient is
 * the interface check_policy_service uses; createPolicyClient("inet:host:port" or
 * "unix:/path") keeps one connection open and reuses it for later requests (requests are
 * sent one at a time), reconnecting once when a kept connection turns out to be closed.
 * Every request has a time limit; failures are returned, never thrown.
 * DIAGNOSTICS: { ok: false, reason } for a refused connection, a timeout, a closed
 * connection or a reply without "action=".
 * SEE ALSO: SMTPD_POLICY_README; Postfix attr_clnt.c, attr_print_plain.c.
 */
import { createConnection, type Socket } from 'node:net';

export type PolicyAnswer = { readonly ok: true; readonly action: string } | { readonly ok: false; readonly reason: string };

export interface PolicyClient {
  request(attrs: ReadonlyArray<readonly [string, string]>, timeoutMs: number): Promise<PolicyAnswer>;
  close(): void;
}

/** Parse "inet:host:port", "inet:[v6]:port", "host:port" or "unix:/path". */
export function parseEndpoint(endpoint: string): { host: string; port: number } | { path: string } | null {
  let rest = endpoint;
  if (rest.startsWith('unix:')) return rest.length > 5 ? { path: rest.slice(5) } : null;
  if (rest.startsWith('inet:')) rest = rest.slice(5);
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(rest);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** Values must stay on one line: the protocol has no quoting. */
function clean(v: string): string {
  return v.replace(/[\r\n]/g, ' ');
}

const IDLE_MS = 300_000;

export function createPolicyClient(endpoint: string): PolicyClient {
  const target = parseEndpoint(endpoint);
  let socket: Socket | null = null;
  let idle: NodeJS.Timeout | null = null;
  let chain: Promise<unknown> = Promise.resolve();
  let closed = false;

  const drop = (): void => {
    if (idle) clearTimeout(idle);
    idle = null;
    if (socket) socket.destroy();
    socket = null;
  };

  const connect = (timeoutMs: number): Promise<Socket | string> =>
    new Promise((resolve) => {
      if (!target) {
        resolve(`bad policy service endpoint "${endpoint}"`);
        return;
      }
      const s = 'path' in target ? createConnection(target.path) : createConnection(target.port, target.host);
      const timer = setTimeout(() => {
        s.destroy();
        resolve(`connect to ${endpoint}: timeout`);
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        s.unref();
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        resolve(`connect to ${endpoint}: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      });
    });

  const exchange = (s: Socket, payload: string, timeoutMs: number): Promise<PolicyAnswer | 'closed'> =>
    new Promise((resolve) => {
      let buf = '';
      let got = false;
      const finish = (r: PolicyAnswer | 'closed'): void => {
        clearTimeout(timer);
        s.off('data', onData);
        s.off('close', onClose);
        s.off('error', onError);
        resolve(r);
      };
      const onData = (chunk: Buffer): void => {
        got = true;
        buf += chunk.toString('utf8');
        const end = buf.search(/\r?\n\r?\n/);
        if (end < 0 && !/^\r?\n/.test(buf)) return;
        const lines = buf.slice(0, Math.max(end, 0)).split(/\r?\n/);
        let action: string | null = null;
        for (const l of lines) {
          const eq = l.indexOf('=');
          if (eq > 0 && l.slice(0, eq) === 'action') action = l.slice(eq + 1);
        }
        finish(action === null ? { ok: false, reason: `${endpoint}: reply without action attribute` } : { ok: true, action });
      };
      // A kept connection the server has closed meanwhile: reconnect (once) and resend.
      const onClose = (): void => finish(got ? { ok: false, reason: `${endpoint}: connection closed` } : 'closed');
      const onError = (): void => finish(got ? { ok: false, reason: `${endpoint}: connection error` } : 'closed');
      const timer = setTimeout(() => finish({ ok: false, reason: `${endpoint}: timeout after ${timeoutMs} ms` }), timeoutMs);
      s.on('data', onData);
      s.once('close', onClose);
      s.once('error', onError);
      s.write(payload);
    });

  const run = async (attrs: ReadonlyArray<readonly [string, string]>, timeoutMs: number): Promise<PolicyAnswer> => {
    if (closed) return { ok: false, reason: `${endpoint}: client closed` };
    const payload = attrs.map(([k, v]) => `${k}=${clean(v)}\n`).join('') + '\n';
    const started = Date.now();
    for (let attempt = 0; attempt < 2; attempt++) {
      const reused = socket !== null;
      if (!socket) {
        const c = await connect(Math.max(1, timeoutMs - (Date.now() - started)));
        if (typeof c === 'string') return { ok: false, reason: c };
        socket = c;
      }
      if (idle) clearTimeout(idle);
      const r = await exchange(socket, payload, Math.max(1, timeoutMs - (Date.now() - started)));
      if (r === 'closed') {
        drop();
        if (reused) continue;
        return { ok: false, reason: `${endpoint}: connection closed` };
      }
      if (!r.ok) {
        drop();
        return r;
      }
      idle = setTimeout(drop, IDLE_MS);
      idle.unref();
      return r;
    }
    return { ok: false, reason: `${endpoint}: connection closed` };
  };

  return {
    request(attrs, timeoutMs) {
      const p = chain.then(() => run(attrs, timeoutMs));
      chain = p.catch(() => undefined);
      return p;
    },
    close() {
      closed = true;
      drop();
    },
  };
}
