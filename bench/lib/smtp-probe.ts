/**
 * @module bench/lib/smtp-probe
 * SUMMARY: one plain SMTP transaction on loopback (EHLO, MAIL, RCPT, DATA, QUIT), to check
 * a server's behaviour before it is measured, e.g. that a message matching a header_checks
 * REJECT rule really is refused. Exports sendProbe(port, message) -> ProbeResult {stage,
 * reply}: the first reply that was not the expected 2xx/354, or the reply to the end of
 * DATA. The message text has LF or CRLF lines; it is sent with CRLF and dot-stuffed.
 * DIAGNOSTICS: BenchError on a connection failure, a server that closes mid-dialogue or
 * 30 s without a reply.
 * SEE ALSO: RFC 5321 sections 3.3 and 4.5.2.
 */
import { createConnection } from 'node:net';
import { BenchError } from './bench-error.js';
import { LOOPBACK } from './net.js';
import { RECIPIENT, SENDER } from './smtp-source.js';

export interface ProbeResult {
  /** The command the reply answers: 'greeting' | 'EHLO' | 'MAIL' | 'RCPT' | 'DATA' | 'end of DATA'. */
  readonly stage: string;
  /** The reply's last line, e.g. "550 5.7.1 spam (rule 100)". */
  readonly reply: string;
}

export function sendProbe(port: number, message: string, label: string): Promise<ProbeResult> {
  const body = message
    .replace(/\r\n/g, '\n')
    .replace(/\n$/, '')
    .split('\n')
    .map((l) => (l.startsWith('.') ? '.' + l : l))
    .join('\r\n');
  const steps: Array<{ stage: string; send: string | null; expect: string }> = [
    { stage: 'greeting', send: null, expect: '2' },
    { stage: 'EHLO', send: 'EHLO probe.bench.test', expect: '2' },
    { stage: 'MAIL', send: `MAIL FROM:<${SENDER}>`, expect: '2' },
    { stage: 'RCPT', send: `RCPT TO:<${RECIPIENT}>`, expect: '2' },
    { stage: 'DATA', send: 'DATA', expect: '3' },
    { stage: 'end of DATA', send: `${body}\r\n.`, expect: '' },
  ];
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: LOOPBACK, port });
    let buf = '';
    let step = 0;
    let settled = false;
    const done = (r: ProbeResult | Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (r instanceof Error) {
        sock.destroy();
        reject(r);
      } else {
        sock.end('QUIT\r\n');
        resolve(r);
      }
    };
    const timer = setTimeout(() => done(new BenchError(`probe to ${label} (${LOOPBACK}:${port}): no reply within 30 s`)), 30_000);
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (/^\d{3}-/.test(line)) continue; // a multi-line reply: wait for its last line
        const s = steps[step]!;
        if (s.expect === '' || !line.startsWith(s.expect)) {
          done({ stage: s.stage, reply: line });
          return;
        }
        const next = steps[++step]!;
        sock.write(`${next.send}\r\n`);
      }
    });
    sock.on('error', (e) => done(new BenchError(`probe to ${label} (${LOOPBACK}:${port}): ${e.message}`)));
    sock.on('close', () => done(new BenchError(`probe to ${label} (${LOOPBACK}:${port}): connection closed during ${steps[step]?.stage}`)));
  });
}
