/**
 * @module test/helpers/smtp-client
 * A raw-socket SMTP client for tests that must control every byte (pipelining, bare LF,
 * smuggling attempts, XCLIENT). Replies are parsed into {code, text, lines}.
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface SmtpReply {
  code: number;
  /** Text of the last line, without the code. */
  text: string;
  lines: string[];
  /** The whole reply as received, lines joined with \n. */
  raw: string;
}

export class SmtpClient {
  private socket: Socket | TLSSocket;
  private buf = '';
  private waiters: Array<() => void> = [];
  closed = false;
  greeting!: SmtpReply;

  private constructor(socket: Socket | TLSSocket) {
    this.socket = socket;
    this.attach(socket);
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** localAddress: the source address (127.0.0.x), to be another client than 127.0.0.1. */
  static async connect(port: number, opts: { host?: string; tls?: boolean; waitGreeting?: boolean; localAddress?: string } = {}): Promise<SmtpClient> {
    const host = opts.host ?? '127.0.0.1';
    const local = opts.localAddress ? { localAddress: opts.localAddress } : {};
    const socket: Socket | TLSSocket = opts.tls
      ? tlsConnect({ port, host, rejectUnauthorized: false, ...local })
      : connect({ port, host, ...local });
    await new Promise<void>((resolve, reject) => {
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    const c = new SmtpClient(socket);
    if (opts.waitGreeting !== false) c.greeting = await c.read();
    return c;
  }

  /** Read one complete (possibly multi-line) reply. */
  async read(timeoutMs = 10_000): Promise<SmtpReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.tryParse();
      if (r) return r;
      if (this.closed) throw new Error(`connection closed; pending: ${JSON.stringify(this.buf)}`);
      if (Date.now() > deadline) throw new Error(`timeout waiting for reply; pending: ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private tryParse(): SmtpReply | null {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const nl = this.buf.indexOf('\r\n', pos);
      if (nl < 0) return null;
      const line = this.buf.slice(pos, nl);
      lines.push(line);
      pos = nl + 2;
      if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
        this.buf = this.buf.slice(pos);
        const last = lines[lines.length - 1]!;
        return { code: Number(last.slice(0, 3)), text: last.slice(4), lines, raw: lines.join('\n') };
      }
    }
  }

  write(raw: string | Buffer): void {
    this.socket.write(raw);
  }

  async cmd(line: string): Promise<SmtpReply> {
    this.write(line + '\r\n');
    return this.read();
  }

  async starttls(): Promise<SmtpReply> {
    const r = await this.cmd('STARTTLS');
    if (r.code !== 220) return r;
    const plain = this.socket as Socket;
    plain.removeAllListeners('data');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.buf = '';
    this.attach(secure);
    return r;
  }

  /** DATA + message (dot-stuffed here) + end marker; returns the final reply. */
  async data(message: string): Promise<SmtpReply> {
    const r = await this.cmd('DATA');
    if (r.code !== 354) return r;
    let body = message.replace(/\r?\n/g, '\r\n');
    if (!body.endsWith('\r\n')) body += '\r\n';
    body = body.replace(/^\./gm, '..');
    this.write(body + '.\r\n');
    return this.read();
  }

  /** Whether the server has closed the connection (waits up to timeoutMs). */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}
