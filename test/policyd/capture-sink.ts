/**
 * @module test/policyd/capture-sink
 * A minimal SMTP server on 127.0.0.1 that accepts everything and keeps each message
 * (envelope and raw text), so that a test can see what Postfix relayed: for example the
 * header a policy server's PREPEND added. No PIPELINING, no ESMTP extensions.
 */
import { createServer, type Server, type Socket } from 'node:net';

export interface CapturedMessage {
  readonly from: string;
  readonly to: string[];
  readonly data: string;
}

export class CaptureSink {
  readonly messages: CapturedMessage[] = [];
  private readonly server: Server;
  private waiters: Array<() => void> = [];

  private constructor() {
    this.server = createServer((s) => this.serve(s));
  }

  static async start(): Promise<CaptureSink> {
    const sink = new CaptureSink();
    await new Promise<void>((resolve) => sink.server.listen(0, '127.0.0.1', resolve));
    return sink;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  /** The first message for RCPT, waiting for it up to timeoutMs. */
  async messageTo(rcpt: string, timeoutMs = 15_000): Promise<CapturedMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.find((x) => x.to.some((t) => t.toLowerCase() === rcpt.toLowerCase()));
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`no message to ${rcpt} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private serve(sock: Socket): void {
    sock.setEncoding('latin1');
    sock.on('error', () => undefined);
    let buf = '';
    let inData = false;
    let from = '';
    let to: string[] = [];
    sock.write('220 capture.test ESMTP\r\n');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          const data = buf.slice(0, end + 2).replace(/^\.\./gm, '.');
          buf = buf.slice(end + 5);
          inData = false;
          this.messages.push({ from, to, data });
          for (const w of this.waiters.splice(0)) w();
          sock.write('250 2.0.0 Ok: captured\r\n');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') sock.write('250 capture.test\r\n');
        else if (verb === 'MAIL') {
          from = /<([^>]*)>/.exec(line)?.[1] ?? '';
          to = [];
          sock.write('250 2.1.0 Ok\r\n');
        } else if (verb === 'RCPT') {
          to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          sock.write('250 2.1.5 Ok\r\n');
        } else if (verb === 'DATA') {
          inData = true;
          sock.write('354 End data with <CR><LF>.<CR><LF>\r\n');
          // The message may begin right after the command's line ending, in this chunk.
          if (buf.startsWith('.\r\n')) buf = '\r\n' + buf;
        } else if (verb === 'QUIT') {
          sock.end('221 2.0.0 Bye\r\n');
          return;
        } else sock.write('250 2.0.0 Ok\r\n');
      }
    });
  }
}
