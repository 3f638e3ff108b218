/**
 * @module test/imap/imap-client
 * A raw IMAP client for exact assertions: it sends what it is told and splits what comes
 * back into responses (a response is one line plus any literals it announces, kept as
 * bytes). cmd() tags a command and resolves with the untagged responses and the tagged
 * completion; STARTTLS and implicit TLS are supported.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface Response {
  /** The whole response, literals included, without the final CRLF. */
  readonly raw: Buffer;
  /** raw as latin1 text. */
  readonly text: string;
}

export interface Reply {
  readonly untagged: string[];
  readonly responses: Response[];
  /** The tagged line, e.g. "A1 OK Logged in". */
  readonly tagged: string;
  /** The tagged line without its tag, e.g. "OK Logged in". */
  readonly line: string;
  /** "OK", "NO" or "BAD". */
  readonly status: string;
}

export class ImapClient {
  private socket: Socket;
  private buf = Buffer.alloc(0);
  private readonly queue: Response[] = [];
  private waiters: Array<() => void> = [];
  private tagNo = 0;
  closed = false;
  greeting = '';

  private constructor(socket: Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  static async connect(port: number, opts: { tls?: boolean } = {}): Promise<ImapClient> {
    const socket: Socket = opts.tls
      ? await new Promise<TLSSocket>((resolve, reject) => {
          const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(s));
          s.once('error', reject);
        })
      : await new Promise<Socket>((resolve, reject) => {
          const s = netConnect({ host: '127.0.0.1', port }, () => resolve(s));
          s.once('error', reject);
        });
    const c = new ImapClient(socket);
    c.greeting = (await c.next()).text;
    return c;
  }

  private attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      this.parse();
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

  private parse(): void {
    let pos = 0;
    for (;;) {
      let end = pos;
      let complete = false;
      for (;;) {
        const crlf = this.buf.indexOf('\r\n', end);
        if (crlf < 0) break;
        const line = this.buf.subarray(end, crlf).toString('latin1');
        const m = /\{(\d+)\}$/.exec(line);
        if (m) {
          const n = Number(m[1]);
          if (this.buf.length < crlf + 2 + n) break;
          end = crlf + 2 + n;
          continue;
        }
        end = crlf + 2;
        complete = true;
        break;
      }
      if (!complete) break;
      const raw = this.buf.subarray(pos, end - 2);
      this.queue.push({ raw: Buffer.from(raw), text: raw.toString('latin1') });
      pos = end;
    }
    if (pos > 0) {
      this.buf = this.buf.subarray(pos);
      this.wake();
    }
  }

  /** The next response, waiting up to TIMEOUT_MS. */
  async next(timeoutMs = 10_000): Promise<Response> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no response within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.queue.shift()!;
  }

  /** Responses until one matches PRED (returned last). */
  async until(pred: (r: Response) => boolean, timeoutMs = 10_000): Promise<Response[]> {
    const out: Response[] = [];
    for (;;) {
      const r = await this.next(timeoutMs);
      out.push(r);
      if (pred(r)) return out;
    }
  }

  /** Responses already received and not read. */
  drain(): Response[] {
    return this.queue.splice(0);
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  newTag(): string {
    return `A${++this.tagNo}`;
  }

  /** Send TAG COMMAND CRLF and collect everything up to the tagged reply. */
  async cmd(command: string | Buffer, timeoutMs = 10_000): Promise<Reply> {
    const tag = this.newTag();
    this.send(Buffer.concat([Buffer.from(`${tag} `), Buffer.from(command), Buffer.from('\r\n')]));
    return this.reply(tag, timeoutMs);
  }

  async reply(tag: string, timeoutMs = 10_000): Promise<Reply> {
    const rs = await this.until((r) => r.text.startsWith(`${tag} `), timeoutMs);
    const tagged = rs.pop()!.text;
    const line = tagged.slice(tag.length + 1);
    return { untagged: rs.map((r) => r.text), responses: rs, tagged, line, status: line.split(' ')[0] ?? '' };
  }

  async login(user: string, password: string): Promise<Reply> {
    const r = await this.cmd(`LOGIN ${user} ${password}`);
    if (r.status !== 'OK') throw new Error(`login failed: ${r.tagged}`);
    return r;
  }

  /** STARTTLS, then the TLS handshake on the same socket. */
  async starttls(): Promise<Reply> {
    const r = await this.cmd('STARTTLS');
    if (r.status !== 'OK') return r;
    const raw = this.socket;
    raw.removeAllListeners('data');
    const secured = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({ socket: raw, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secured;
    this.attach(secured);
    return r;
  }

  get encrypted(): boolean {
    return (this.socket as TLSSocket).encrypted === true;
  }

  /** Wait for the server to close the connection. */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('still open');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
