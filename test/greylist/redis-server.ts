/**
 * A real redis-server for the tests, started on a free loopback port with no persistence
 * (`redis-server --port P --bind 127.0.0.1 --save '' --appendonly no`) and stopped by pid.
 * startRedis() resolves { server } or { skip: reason } when redis-server is not installed;
 * under CI=true a missing redis-server is an error (CI installs it), never a skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, createConnection } from 'node:net';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(port, '127.0.0.1');
    let buf = '';
    const done = (ok: boolean): void => {
      c.destroy();
      resolve(ok);
    };
    c.setTimeout(500, () => done(false));
    c.once('error', () => done(false));
    c.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    c.once('connect', () => c.write('PING\r\n'));
  });
}

export class RedisServer {
  private child: ChildProcess | null = null;
  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  static async start(port?: number): Promise<RedisServer> {
    const s = new RedisServer(port ?? (await freePort()));
    await s.restart();
    return s;
  }

  /** (Re)start the server on the same port. */
  async restart(): Promise<void> {
    if (this.child) return;
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    for (let i = 0; i < 100; i++) {
      if (exited) throw new Error(`redis-server on port ${this.port} exited at start`);
      if (await ping(this.port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on port ${this.port} did not answer PING`);
  }

  /** Stop the server (SIGTERM to the pid we started) and wait for it to exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }
}

/** Start a redis-server, or say why the Redis tests are skipped (never under CI=true). */
export async function startRedis(): Promise<{ server: RedisServer } | { skip: string }> {
  const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (found.error || found.status !== 0) {
    const why = 'redis-server is not installed (apt-get install redis-server)';
    if (process.env.CI === 'true') throw new Error(`${why}: required under CI=true`);
    return { skip: why };
  }
  return { server: await RedisServer.start() };
}
