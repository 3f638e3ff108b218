/**
 * @module test/policyd/policy-client
 * A raw policy-protocol client for tests: writes exactly the bytes it is given and reads
 * "action=...\n\n" replies one at a time, so that pipelining, CRLF, truncation and garbage
 * can be exercised. Also builds the attribute block Postfix 3.7 sends at RCPT time.
 */
import { connect, type Socket } from 'node:net';

export class RawPolicyClient {
  private readonly socket: Socket;
  private buf = '';
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
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

  static async connect(port: number, host = '127.0.0.1'): Promise<RawPolicyClient> {
    const s = connect({ port, host });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('error', reject);
    });
    return new RawPolicyClient(s);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(raw: string | Buffer): void {
    this.socket.write(raw);
  }

  /** The next reply's lines (without the empty line); throws on close or timeout. */
  async reply(timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.buf.indexOf('\n\n');
      if (end >= 0) {
        const block = this.buf.slice(0, end);
        this.buf = this.buf.slice(end + 2);
        return block.split('\n');
      }
      if (this.closed) throw new Error(`connection closed; pending ${JSON.stringify(this.buf)}`);
      if (Date.now() > deadline) throw new Error(`timeout; pending ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The action of the next reply. */
  async action(timeoutMs?: number): Promise<string> {
    const lines = await this.reply(timeoutMs);
    const a = lines.find((l) => l.startsWith('action='));
    if (a === undefined) throw new Error(`reply without action: ${JSON.stringify(lines)}`);
    return a.slice('action='.length);
  }

  async ask(attrs: Record<string, string>): Promise<string> {
    this.write(encodeRequest(attrs));
    return this.action();
  }

  /** Whether the server closed the connection within timeoutMs, with nothing more sent. */
  async closedWithoutReply(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed && this.buf === '';
  }

  pending(): string {
    return this.buf;
  }

  close(): void {
    this.socket.destroy();
  }
}

export function encodeRequest(attrs: Record<string, string>, eol = '\n'): string {
  return Object.entries(attrs).map(([k, v]) => `${k}=${v}${eol}`).join('') + eol;
}

let instanceSeq = 0;

/** The attributes Postfix 3.7's smtpd sends for RCPT TO (SMTPD_POLICY_README). */
export function postfixRcptRequest(o: { client: string; name?: string; helo?: string; sender: string; recipient: string; instance?: string; queueId?: string }): Record<string, string> {
  return {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    client_address: o.client,
    client_name: o.name ?? 'unknown',
    client_port: '40000',
    reverse_client_name: o.name ?? 'unknown',
    server_address: '127.0.0.1',
    server_port: '25',
    helo_name: o.helo ?? 'client.example',
    sender: o.sender,
    recipient: o.recipient,
    recipient_count: '0',
    queue_id: o.queueId ?? '',
    instance: o.instance ?? `${(++instanceSeq).toString(16)}.6566b1c2.1a2b3.0`,
    size: '0',
    etrn_domain: '',
    stress: '',
    sasl_method: '',
    sasl_username: '',
    sasl_sender: '',
    ccert_subject: '',
    ccert_issuer: '',
    ccert_fingerprint: '',
    ccert_pubkey_fingerprint: '',
    encryption_protocol: '',
    encryption_cipher: '',
    encryption_keysize: '0',
    policy_context: '',
  };
}
