/**
 * @module smtpd/received
 * SUMMARY: the Received: header greygate prepends to every message, in Postfix's layout:
 *   Received: from HELO (NAME [ADDR])
 *   	(using TLSv1.3 with cipher ...)
 *   	(Authenticated sender: USER)
 *   	by MYHOSTNAME (MAIL_NAME) with PROTO id QUEUEID
 *   	for <RCPT>; DATE
 * "for" appears only with exactly one recipient, as in Postfix (privacy). Header checks
 * never inspect this header (header_checks(5)).
 * SEE ALSO: Postfix smtpd.c data_cmd(), RFC 5321 section 4.4, RFC 5322 section 3.3.
 */
import { mailDate } from '../mail/mail-date.js';

export interface ReceivedInfo {
  helo: string | undefined;
  clientName: string;
  clientAddress: string;
  myhostname: string;
  mailName: string;
  protocol: string;
  queueId: string;
  recipients: readonly string[];
  tls?: { version: string; cipher: string; bits?: number } | undefined;
  saslUsername?: string | undefined;
  date?: Date;
}

// The HELO name is client-controlled: keep it printable and short so it cannot break the header.
function clean(s: string): string {
  return s.replace(/[^\x21-\x7e]/g, '?').slice(0, 255);
}

export function receivedHeader(r: ReceivedInfo): string {
  const helo = r.helo ? clean(r.helo) : clean(r.clientName === 'unknown' ? `[${r.clientAddress}]` : r.clientName);
  const lines = [`Received: from ${helo} (${clean(r.clientName)} [${r.clientAddress}])`];
  if (r.tls) {
    lines.push(`\t(using ${r.tls.version} with cipher ${r.tls.cipher}${r.tls.bits ? ` (${r.tls.bits}/${r.tls.bits} bits)` : ''})`);
  }
  if (r.saslUsername) lines.push(`\t(Authenticated sender: ${clean(r.saslUsername)})`);
  lines.push(`\tby ${r.myhostname} (${r.mailName}) with ${r.protocol} id ${r.queueId}`);
  const date = mailDate((r.date ?? new Date()).getTime());
  if (r.recipients.length === 1) lines.push(`\tfor <${clean(r.recipients[0]!)}>; ${date}`);
  else lines[lines.length - 1] += `; ${date}`;
  return lines.join('\r\n') + '\r\n';
}
