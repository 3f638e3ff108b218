/**
 * @module bench/lib/mail-corpus
 * SUMMARY: a reproducible mailbox of realistic messages for the IMAP benchmark: a seeded PRNG
 * (mulberry32) drives generateCorpus(count, seed) -> CorpusMessage[] (CRLF bytes of 2–20 KB,
 * 1–4 Received lines, display names that need quoting, RFC 2047 encoded words, replies with
 * In-Reply-To/References, list and DKIM headers; plain, quoted-printable, multipart/
 * alternative and multipart/mixed with a base64 attachment). The same seed gives the same
 * bytes on every machine, so figures from two runs describe the same mailbox.
 * DIAGNOSTICS: none; the generator is pure. Every line is CRLF-terminated, at most 998
 * octets, 7-bit, with no bare CR or LF (RFC 5322 2.1.1), so that both servers store and
 * return it unchanged.
 * SEE ALSO: RFC 5322, RFC 2045–2047, RFC 2369 (List-*), RFC 6376 (DKIM-Signature).
 */
import { createHash } from 'node:crypto';

export interface CorpusMessage {
  /** The Message-ID with its angle brackets, as ENVELOPE returns it. */
  readonly messageId: string;
  /** The message in SMTP form (CRLF): what BODY[] must return byte for byte. */
  readonly bytes: Buffer;
  /** sha256 of bytes, hex. */
  readonly sha256: string;
}

/** mulberry32: 32-bit state, good enough spread for test data, and trivially reproducible. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIRST = ['Jane', 'John', 'Amélie', 'Søren', 'Zoë', 'Mohammed', 'Li', 'Olga', 'Pierre', 'Ana', 'Kenji', 'Fatima', 'Marco', 'Ingrid', 'Raj', 'Chloé'];
const LAST = ['Smith', 'Müller', 'Dubois', "O'Brien", 'García', 'Kowalski', 'Nakamura', 'Jensen', 'Rossi', 'Ivanova', 'Okafor', 'Lindqvist', 'Patel', 'Nguyen'];
const DOMAINS = ['example.com', 'example.org', 'example.net', 'mail.example.co.uk', 'lists.example.org', 'corp.example.com', 'partner.example.net'];
const WORDS = (
  'the of and to in is for that on with as this by be it are from at or an was which have not but all they their has were will one ' +
  'release build storage replication latency deploy rollback meeting agenda invoice quarterly report budget review draft proposal ' +
  'customer support ticket escalation schedule rota incident postmortem network partition cache cluster migration schema index ' +
  'newsletter update reminder thanks please attached document spreadsheet slides feedback deadline friday monday tomorrow'
).split(' ');
const SUBJECTS = [
  'Quarterly report',
  'Meeting notes from Tuesday',
  'Invoice #%N for November',
  'Your order %N has shipped',
  'Build %N failed on main',
  'Lunch on Friday?',
  'Draft: "storage replication" design',
  'Reminder: on-call rota for December',
  'Re: [ops] disk usage on db-%N',
  'Security advisory: update your client',
  'Weekly digest (%N new posts)',
  'Slides for the all-hands',
];
const ENCODED_SUBJECTS = ['Réunion de l’équipe – ordre du jour', 'Grüße aus München', 'Привет из офиса', '会議の議事録', 'Año nuevo, planes nuevos'];
const MAILERS = ['Mozilla Thunderbird 115.5.0', 'Apple Mail (2.3774.200.91.1.1)', 'Microsoft Outlook 16.0', 'ExampleMailer 4.2.1', 'Roundcube Webmail/1.6.5', 'mutt/2.2.12'];
const ATTACHMENTS: ReadonlyArray<readonly [string, string]> = [
  ['application/pdf', 'report.pdf'],
  ['image/png', 'screenshot.png'],
  ['application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', 'figures.xlsx'],
  ['text/calendar', 'invite.ics'],
];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

class Gen {
  constructor(readonly rnd: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rnd() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)]!;
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.int(0, 15)];
    return s;
  }
  b64chars(n: number): string {
    const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    let s = '';
    for (let i = 0; i < n; i++) s += A[this.int(0, 63)];
    return s;
  }
  words(n: number): string {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.pick(WORDS));
    return out.join(' ');
  }
}

/** RFC 2047 B-encoding, which every IMAP server returns undecoded in ENVELOPE. */
function encodedWord(text: string): string {
  return `=?UTF-8?B?${Buffer.from(text, 'utf8').toString('base64')}?=`;
}

interface Person {
  readonly header: string;
  readonly address: string;
}

function person(g: Gen): Person {
  const first = g.pick(FIRST);
  const last = g.pick(LAST);
  const address = `${first}.${last}`.normalize('NFKD').replace(/[^A-Za-z.]/g, '').toLowerCase() + `@${g.pick(DOMAINS)}`;
  const name = `${first} ${last}`;
  const r = g.rnd();
  let header: string;
  // Non-ASCII names are encoded words; "Last, First" and O'Brien need a quoted string,
  // and some senders give a bare address: each is a different path through ENVELOPE.
  if (/[^\x20-\x7e]/.test(name)) header = `${encodedWord(name)} <${address}>`;
  else if (r < 0.25) header = `"${last}, ${first}" <${address}>`;
  else if (r < 0.35) header = address;
  else if (r < 0.45) header = `"${name} (via list)" <${address}>`;
  else header = `${name} <${address}>`;
  return { header, address };
}

function rfc5322Date(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** Fold a long structured header at spaces, as mail user agents do (continuation = tab). */
function fold(name: string, value: string): string[] {
  const out: string[] = [];
  let line = `${name}: `;
  for (const word of value.split(' ')) {
    if (line.length + word.length > 76 && line.trim().length > name.length + 1) {
      out.push(line.trimEnd());
      line = '\t';
    }
    line += word + ' ';
  }
  out.push(line.trimEnd());
  return out;
}

/** Plain text lines of about WIDTH characters until BYTES are reached. */
function paragraphs(g: Gen, bytes: number): string[] {
  const lines: string[] = [];
  let n = 0;
  while (n < bytes) {
    const sentence = g.words(g.int(6, 14));
    const line = sentence.charAt(0).toUpperCase() + sentence.slice(1) + (g.chance(0.2) ? ',' : '.');
    lines.push(line);
    n += line.length + 2;
    if (g.chance(0.15)) {
      lines.push('');
      n += 2;
    }
  }
  return lines;
}

/** Quoted-printable of text with a few non-ASCII letters (RFC 2045 6.7: lines ≤ 76). */
function quotedPrintable(lines: readonly string[], g: Gen): string[] {
  const out: string[] = [];
  for (const l of lines) {
    const text = g.chance(0.3) ? `${l} Café, naïve façade – “quoted”.` : l;
    let enc = '';
    for (const byte of Buffer.from(text, 'utf8')) {
      enc += byte === 0x3d || byte > 0x7e ? `=${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
    }
    while (enc.length > 76) {
      // Never split an =XX escape.
      let cut = 75;
      if (enc[cut - 1] === '=') cut -= 1;
      else if (enc[cut - 2] === '=') cut -= 2;
      out.push(enc.slice(0, cut) + '=');
      enc = enc.slice(cut);
    }
    out.push(enc);
  }
  return out;
}

function html(lines: readonly string[]): string[] {
  return ['<html><head><meta charset="utf-8"></head><body>', ...lines.map((l) => (l === '' ? '<br>' : `<p style="margin:0 0 8px 0;font-family:Arial,sans-serif">${l}</p>`)), '</body></html>'];
}

function base64Lines(g: Gen, bytes: number): string[] {
  const out: string[] = [];
  for (let n = 0; n < bytes; n += 78) out.push(g.b64chars(76));
  return out;
}

function oneMessage(g: Gen, i: number, seed: number): CorpusMessage {
  // Aimed inside 2–20 KB with a margin: the body generators overshoot or undershoot by a line or two.
  const target = g.int(2300, 20000);
  const from = person(g);
  const to = Array.from({ length: g.int(1, 3) }, () => person(g));
  const cc = g.chance(0.2) ? Array.from({ length: g.int(1, 2) }, () => person(g)) : [];
  // Dates spread over 2026, in order of index, so date-ordered views look like a real inbox.
  const date = Date.UTC(2026, 0, 1) + i * 3000 * 1000 + g.int(0, 2999) * 1000;
  const host = g.pick(DOMAINS);
  const messageId = `<${date.toString(36)}.${g.hex(12)}.${seed}-${i}@${host}>`;
  const h: string[] = [];
  h.push(`Return-Path: <${from.address}>`, `Delivered-To: bench@example.com`);
  for (let r = g.int(1, 4); r > 0; r--) {
    const ip = `192.0.2.${g.int(1, 254)}`;
    h.push(
      `Received: from mx${g.int(1, 9)}.${host} (mx${g.int(1, 9)}.${host} [${ip}])`,
      `\tby mx.example.com (Postfix) with ESMTPS id ${g.hex(10).toUpperCase()}`,
      `\tfor <bench@example.com>; ${rfc5322Date(date + r * 1000)}`,
    );
  }
  if (g.chance(0.4)) {
    h.push(
      `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=${host}; s=s${g.int(1, 9)};`,
      `\tt=${Math.floor(date / 1000)}; bh=${g.b64chars(43)}=;`,
      '\th=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type;',
      `\tb=${g.b64chars(70)}`,
      `\t ${g.b64chars(70)}`,
      `\t ${g.b64chars(30)}=`,
    );
  }
  h.push(`From: ${from.header}`);
  if (g.chance(0.1)) h.push(`Reply-To: ${person(g).header}`);
  h.push(...fold('To', to.map((p) => p.header).join(', ')));
  if (cc.length > 0) h.push(...fold('Cc', cc.map((p) => p.header).join(', ')));
  let subject = g.pick(SUBJECTS).replace('%N', String(g.int(100, 99999)));
  if (g.chance(0.15)) subject = encodedWord(g.pick(ENCODED_SUBJECTS));
  else if (g.chance(0.25)) subject = `${g.pick(['Re: ', 'RE: ', 'Fwd: ', 'Re: Re: '])}${subject}`;
  h.push(...fold('Subject', subject));
  h.push(`Date: ${rfc5322Date(date)}`, `Message-ID: ${messageId}`);
  if (g.chance(0.3)) {
    const refs = Array.from({ length: g.int(1, 4) }, () => `<${g.hex(16)}@${g.pick(DOMAINS)}>`);
    h.push(`In-Reply-To: ${refs[refs.length - 1]}`, ...fold('References', refs.join(' ')));
  }
  if (g.chance(0.25)) {
    const list = `${g.pick(['ops', 'announce', 'dev', 'users'])}.${host}`;
    h.push(`List-Id: ${list.split('.')[0]} list <${list}>`, `List-Unsubscribe: <mailto:leave-${g.hex(8)}@${host}>, <https://${host}/u/${g.hex(16)}>`);
  }
  if (g.chance(0.4)) h.push(`X-Mailer: ${g.pick(MAILERS)}`);
  if (g.chance(0.3)) h.push(`X-Spam-Status: No, score=${(g.rnd() * 4 - 1).toFixed(1)} required=5.0 tests=BAYES_00,DKIM_SIGNED,DKIM_VALID autolearn=ham`);
  h.push('MIME-Version: 1.0');

  const headerBytes = h.reduce((n, l) => n + l.length + 2, 0);
  const room = Math.max(300, target - headerBytes - 200);
  const kind = g.rnd();
  let body: string[];
  if (kind < 0.45) {
    h.push('Content-Type: text/plain; charset=us-ascii; format=flowed', 'Content-Transfer-Encoding: 7bit');
    body = paragraphs(g, room);
  } else if (kind < 0.6) {
    h.push('Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable');
    // The accented sentence added to some lines and its =XX escapes grow the text by about a fifth.
    body = quotedPrintable(paragraphs(g, Math.floor(room * 0.65)), g);
  } else if (kind < 0.85) {
    const b = `=_alt_${g.hex(16)}`;
    h.push(`Content-Type: multipart/alternative; boundary="${b}"`);
    const text = paragraphs(g, Math.floor(room * 0.4));
    // The HTML markup about doubles the text it wraps.
    const markup = html(paragraphs(g, Math.floor(room * 0.27)));
    body = [
      'This is a multi-part message in MIME format.',
      '',
      `--${b}`,
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      ...text,
      '',
      `--${b}`,
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      ...markup,
      '',
      `--${b}--`,
      '',
    ];
  } else {
    const b = `=_mixed_${g.hex(16)}`;
    const [type, name] = g.pick(ATTACHMENTS);
    h.push(`Content-Type: multipart/mixed; boundary="${b}"`);
    body = [
      `--${b}`,
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      ...paragraphs(g, Math.floor(room * 0.3)),
      '',
      `--${b}`,
      `Content-Type: ${type}; name="${name}"`,
      `Content-Disposition: attachment; filename="${name}"`,
      'Content-Transfer-Encoding: base64',
      '',
      ...base64Lines(g, Math.floor(room * 0.65)),
      '',
      `--${b}--`,
      '',
    ];
  }
  const bytes = Buffer.from([...h, '', ...body].join('\r\n') + '\r\n', 'latin1');
  return { messageId, bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** COUNT messages from SEED; message i is the same whatever COUNT is. */
export function generateCorpus(count: number, seed: number): CorpusMessage[] {
  const out: CorpusMessage[] = [];
  for (let i = 0; i < count; i++) out.push(oneMessage(new Gen(mulberry32((seed * 1_000_003 + i) >>> 0)), i, seed));
  return out;
}
