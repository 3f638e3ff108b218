/**
 * @module cli/trace-message
 * SUMMARY: the message side of `greygate trace`: readMessage() reads FILE.eml as an SMTP
 * client would send it (a leading mbox "From " line dropped, LF line ends made CRLF) and
 * returns its bytes with the envelope addresses its headers suggest: the sender from
 * Return-Path, else the first From address; the recipients from To, Cc and Bcc (sendmail -t).
 * checkAddress() validates an envelope address given on the command line.
 * DIAGNOSTICS: an unreadable file or a bad address throws UsageError (one line, no stack).
 * SEE ALSO: sendmail(1) -t, RFC 5322 section 3.4 (address lists), RFC 5321 section 4.1.2.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { UsageError } from '../errors.js';
import { isValidHostname, isMailhostLiteral } from '../mail/address.js';

export interface TraceMessage {
  /** The message as sent after DATA: CRLF line ends, ending with CRLF. */
  readonly data: Buffer;
  /** Return-Path, else the first From address, else null (no sender found). */
  readonly sender: string | null;
  /** The header the sender came from. */
  readonly senderHeader: 'Return-Path' | 'From' | null;
  /** To, Cc and Bcc addresses in order, without duplicates. */
  readonly recipients: readonly string[];
}

const STRERROR: Readonly<Record<string, string>> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EISDIR: 'Is a directory',
};

export function readMessage(file: string): TraceMessage {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    throw new UsageError(`trace: cannot read ${file}: ${STRERROR[code] ?? (err as Error).message}`);
  }
  let text = raw.toString('latin1');
  // A message saved from an mbox starts with the "From " envelope line; sendmail skips it.
  if (text.startsWith('From ')) {
    const nl = text.indexOf('\n');
    text = nl < 0 ? '' : text.slice(nl + 1);
  }
  // What an SMTP client puts on the wire: every line ends with CRLF (bare CR is left alone).
  let wire = text.replace(/\r?\n/g, '\r\n');
  if (!wire.endsWith('\r\n')) wire += '\r\n';
  const headers = parseHeaders(text);
  const returnPath = headers.get('return-path')?.[0];
  let sender: string | null = null;
  let senderHeader: TraceMessage['senderHeader'] = null;
  if (returnPath !== undefined) sender = addressList(returnPath)[0] ?? (/<\s*>/.test(returnPath) ? '' : null);
  if (sender !== null) senderHeader = 'Return-Path';
  else {
    sender = addressList(headers.get('from')?.[0] ?? '')[0] ?? null;
    if (sender !== null) senderHeader = 'From';
  }
  const recipients: string[] = [];
  const seen = new Set<string>();
  for (const name of ['to', 'cc', 'bcc']) {
    for (const value of headers.get(name) ?? []) {
      for (const a of addressList(value)) {
        if (seen.has(a.toLowerCase())) continue;
        seen.add(a.toLowerCase());
        recipients.push(a);
      }
    }
  }
  return { data: Buffer.from(wire, 'latin1'), sender, senderHeader, recipients };
}

/** The header section as lowercase name -> unfolded values, in order. */
function parseHeaders(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: { name: string; value: string } | null = null;
  const done = (): void => {
    if (!current) return;
    const list = out.get(current.name) ?? [];
    list.push(current.value);
    out.set(current.name, list);
    current = null;
  };
  for (const line of text.split(/\r?\n/)) {
    if (line === '') break;
    if ((line[0] === ' ' || line[0] === '\t') && current) {
      (current as { value: string }).value += ' ' + line.trim();
      continue;
    }
    done();
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    current = { name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() };
  }
  done();
  return out;
}

/**
 * The addr-specs of an RFC 5322 address list: "Name <a@b>", "a@b (comment)", quoted
 * display names with commas, and groups ("team: a@b, c@d;") are understood.
 */
export function addressList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  /** The <addr-spec> of the element, once its angle brackets closed. */
  let spec: string | null = null;
  let inAngle = false;
  let inQuote = false;
  let comment = 0;
  const finish = (): void => {
    const a = (spec ?? cur).trim().replace(/^(?:@[^:,]+,?)+:/, '');
    if (a !== '') out.push(a);
    cur = '';
    spec = null;
    inAngle = false;
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (comment > 0) {
      if (c === '\\') i++;
      else if (c === '(') comment++;
      else if (c === ')') comment--;
      continue;
    }
    if (inQuote) {
      if (c === '\\') {
        cur += c + (value[i + 1] ?? '');
        i++;
        continue;
      }
      if (c === '"') inQuote = false;
      cur += c;
      continue;
    }
    if (c === '(') comment = 1;
    else if (c === '"') {
      inQuote = true;
      cur += c;
    } else if (c === '<' && !inAngle) {
      inAngle = true;
      cur = '';
    } else if (c === '>' && inAngle) {
      inAngle = false;
      spec = cur;
      cur = '';
    } else if (inAngle) cur += c;
    else if (c === ',' || c === ';') finish();
    // A group's display name ("team: a@b, c@d;").
    else if (c === ':') cur = '';
    else if (spec === null) cur += c;
  }
  finish();
  return out;
}

/**
 * An envelope address from the command line, without <>; "" (or "<>") is the null sender
 * where NULL_OK. Throws UsageError naming OPTION for anything an SMTP server would refuse.
 */
export function checkAddress(option: string, input: string, nullOk: boolean): string {
  let a = input.trim();
  if (a.startsWith('<') && a.endsWith('>')) a = a.slice(1, -1).trim();
  if (a === '') {
    if (nullOk) return '';
    throw new UsageError(`trace: ${option}: the null address <> is not a valid recipient`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f<>]/.test(a) || (/\s/.test(a) && !a.startsWith('"'))) {
    throw new UsageError(`trace: ${option}: bad address syntax: ${input}`);
  }
  const at = a.lastIndexOf('@');
  // RFC 5321 4.5.1: a bare "postmaster" recipient is allowed.
  if (at < 0) {
    if (a.toLowerCase() === 'postmaster' && !nullOk) return a;
    throw new UsageError(`trace: ${option}: address without a domain: ${input}`);
  }
  const local = a.slice(0, at);
  const domain = a.slice(at + 1);
  const localOk = local.startsWith('"') ? /^"(?:[^"\\]|\\.)*"$/.test(local) : /^[^\s"(),:;<>@[\\\]]+$/.test(local);
  if (!localOk || domain === '' || !(isValidHostname(domain) || isMailhostLiteral(domain))) {
    throw new UsageError(`trace: ${option}: bad address syntax: ${input}`);
  }
  return a;
}

/** The HELO an unnamed client would send: its address literal. */
export function addressLiteral(ip: string): string {
  return isIP(ip) === 6 ? `[IPv6:${ip}]` : `[${ip}]`;
}
