/**
 * @module bench/lib/gen-log
 * SUMMARY: a reproducible decision log (mail.log) for `npm run bench:log`: generateLog(file,
 * opts) -> GeneratedLog {lines, bytes, events, first, last} writes exactly opts.lines pino
 * JSON lines in the gateway's real field layout (the order smtpd/session.ts, delivery/
 * scheduler.ts and the greylist notes write): SMTP sessions of connect, reject / defer /
 * greylist / accept, disconnect, then qmgr deliver / defer / bounce and "removed" records,
 * spread evenly over opts.hours ending at opts.end. About 15% of the lines are rejects (DNSBL,
 * access maps, unknown users, relay denied, HELO checks, header/body checks). The returned
 * per-event counts let the benchmark check the answers it times.
 * DIAGNOSTICS: none beyond a failed write (thrown). Same seed, same options: same bytes.
 * SEE ALSO: design.md "Log", src/log/events.ts, bench/log.ts.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { mulberry32 } from './mail-corpus.js';

export interface GenerateOptions {
  readonly lines: number;
  /** Span of the time stamps. */
  readonly hours: number;
  /** Time of the last line, epoch ms (default: now). */
  readonly end?: number;
  readonly seed?: number;
}

export interface GeneratedLog {
  readonly lines: number;
  readonly bytes: number;
  /** Lines per event value. */
  readonly events: ReadonlyMap<string, number>;
  /** Time stamps of the first and last line (epoch ms). */
  readonly first: number;
  readonly last: number;
}

const CLIENT_NAMES = ['mail.example.com', 'mx1.example.net', 'smtp.partner.example', 'out.mailer.example', 'unknown', 'relay.isp.example', 'mta7.bulk.example'];
const HELOS = ['mail.example.com', 'mx1.example.net', 'localhost', '[192.0.2.1]', 'smtp.partner.example', 'ylmf-pc', 'out.mailer.example'];
const SENDER_DOMAINS = ['example.com', 'example.net', 'partner.example', 'bulk.example', 'news.example.org', 'spam.example', 'shop.example'];
const LOCALS = ['alice', 'bob', 'carol', 'dave', 'eve', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'news', 'info', 'billing', 'noreply'];
const RCPT_DOMAINS = ['greygate.test', 'relay.test', 'corp.greygate.test'];

interface RejectKind {
  readonly weight: number;
  readonly stage: 'connect' | 'helo' | 'mail' | 'rcpt' | 'end-of-data';
  readonly rule: string;
  readonly code: number;
  readonly status: string;
  /** The reply text; C = client "name[ip]", S = sender, R = recipient, H = helo. */
  readonly text: string;
}

const REJECTS: readonly RejectKind[] = [
  { weight: 30, stage: 'rcpt', rule: 'reject_rbl_client zen.spamhaus.org', code: 554, status: '5.7.1', text: 'Service unavailable; Client host [I] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/I' },
  { weight: 8, stage: 'rcpt', rule: 'reject_rbl_client bl.spamcop.net', code: 554, status: '5.7.1', text: 'Service unavailable; Client host [I] blocked using bl.spamcop.net' },
  { weight: 15, stage: 'rcpt', rule: 'reject_unlisted_recipient', code: 550, status: '5.1.1', text: '<R>: Recipient address rejected: User unknown in local recipient table' },
  { weight: 12, stage: 'rcpt', rule: 'reject_unauth_destination', code: 554, status: '5.7.1', text: '<R>: Relay access denied' },
  { weight: 8, stage: 'rcpt', rule: 'client_access:14', code: 554, status: '5.7.1', text: '<C>: Client host rejected: Access denied' },
  { weight: 8, stage: 'rcpt', rule: 'sender_access:3', code: 554, status: '5.7.1', text: '<S>: Sender address rejected: no spammers' },
  { weight: 6, stage: 'rcpt', rule: 'reject_invalid_helo_hostname', code: 501, status: '5.5.2', text: '<H>: Helo command rejected: Invalid name' },
  { weight: 5, stage: 'rcpt', rule: 'reject_non_fqdn_sender', code: 504, status: '5.5.2', text: '<S>: Sender address rejected: need fully-qualified address' },
  { weight: 5, stage: 'end-of-data', rule: 'header_checks:12', code: 550, status: '5.7.1', text: 'Message content rejected: spam subject' },
  { weight: 3, stage: 'end-of-data', rule: 'body_checks:4', code: 550, status: '5.7.1', text: 'Message content rejected: phishing link' },
];
const REJECT_TOTAL = REJECTS.reduce((n, r) => n + r.weight, 0);

/** Session shapes and their weights; tuned so that rejects are ~15% of the lines. */
const SHAPES = [
  ['accept', 20],
  ['reject', 67],
  ['greylist', 12],
  ['greylist-pass', 10],
  ['relay-defer', 4],
  ['bounce', 2],
  ['connect-only', 6],
] as const;
type Shape = (typeof SHAPES)[number][0];
const SHAPE_TOTAL = SHAPES.reduce((n, s) => n + s[1], 0);

const CHUNK = 4 * 1024 * 1024;

/** A buffered appender of whole lines; one writeSync per CHUNK. */
class Out {
  private parts: string[] = [];
  private pending = 0;
  bytes = 0;
  constructor(private readonly fd: number) {}
  line(s: string): void {
    this.parts.push(s);
    this.pending += s.length + 1;
    if (this.pending >= CHUNK) this.flush();
  }
  flush(): void {
    if (this.parts.length === 0) return;
    const buf = Buffer.from(this.parts.join('\n') + '\n', 'latin1');
    for (let off = 0; off < buf.length; ) off += writeSync(this.fd, buf, off);
    this.bytes += buf.length;
    this.parts = [];
    this.pending = 0;
  }
}

export function generateLog(file: string, opts: GenerateOptions): GeneratedLog {
  const rnd = mulberry32(opts.seed ?? 7);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const end = opts.end ?? Date.now();
  const span = opts.hours * 3_600_000;
  const start = end - span;
  const total = opts.lines;
  const events = new Map<string, number>();
  const fd = openSync(file, 'w');
  const out = new Out(fd);
  let n = 0;
  let sessionNo = 0;
  let queueNo = 0;
  // One ISO string per millisecond, as the logger does.
  let lastMs = -1;
  let lastIso = '';
  const emit = (event: string, body: string): boolean => {
    if (n >= total) return false;
    const ms = Math.floor(start + (span * n) / Math.max(1, total - 1));
    if (ms !== lastMs) {
      lastMs = ms;
      lastIso = new Date(ms).toISOString();
    }
    out.line(`{"level":30,"time":"${lastIso}","event":"${event}",${body}}`);
    events.set(event, (events.get(event) ?? 0) + 1);
    n++;
    return true;
  };
  const pickShape = (): Shape => {
    let r = rnd() * SHAPE_TOTAL;
    for (const [s, w] of SHAPES) if ((r -= w) < 0) return s;
    return 'accept';
  };
  const pickReject = (): RejectKind => {
    let r = rnd() * REJECT_TOTAL;
    for (const k of REJECTS) if ((r -= k.weight) < 0) return k;
    return REJECTS[0]!;
  };
  try {
    while (n < total) {
      const shape = pickShape();
      const session = (++sessionNo).toString(36).padStart(16, 'q');
      const ip = shape === 'reject' || rnd() < 0.7 ? `${pick([198, 203, 192])}.${Math.floor(rnd() * 256)}.${Math.floor(rnd() * 256)}.${1 + Math.floor(rnd() * 254)}` : `192.0.2.${1 + Math.floor(rnd() * 20)}`;
      const name = pick(CLIENT_NAMES);
      const helo = pick(HELOS);
      const from = shape === 'bounce' && rnd() < 0.3 ? '' : `${pick(LOCALS)}@${pick(SENDER_DOMAINS)}`;
      const to = `${pick(LOCALS)}@${pick(RCPT_DOMAINS)}`;
      const label = `${name}[${ip}]`;
      const head = `"session":"${session}","client_ip":"${ip}","client_name":"${name}"`;
      const env = `from=<${from}> to=<${to}> proto=ESMTP helo=<${helo}>`;
      if (!emit('connect', `"stage":"connect",${head},"service":"smtpd","msg":"connect from ${label}"`)) break;
      const qid = (0x1000000000 + ++queueNo * 7919).toString(16).toUpperCase().slice(-11);
      const size = 1500 + Math.floor(rnd() * 60_000);
      const delivered = (status: 'sent' | 'deferred' | 'bounced'): void => {
        const delay = (rnd() * 3).toFixed(2);
        // Local mailboxes take what they are given; only the next hop defers and bounces.
        const relay = status !== 'sent' || to.endsWith('@relay.test') ? 'mail.relay.test[192.0.2.25]:25' : 'local';
        const dsn = status === 'sent' ? '2.0.0' : status === 'deferred' ? '4.4.1' : '5.1.1';
        const reply = status === 'sent' ? (relay === 'local' ? 'delivered to maildir' : '250 2.0.0 Ok: queued as 4Xy7') : status === 'deferred' ? 'connect to mail.relay.test[192.0.2.25]:25: Connection refused' : 'host mail.relay.test[192.0.2.25] said: 550 5.1.1 <' + to + '>: User unknown';
        const ev = status === 'sent' ? 'deliver' : status === 'deferred' ? 'defer' : 'bounce';
        emit(ev, `"stage":"qmgr","queue_id":"${qid}","from":"${from}","to":"${to}","relay":"${relay}","delay":${delay},"dsn":"${dsn}","status":"${status}","reply":"${reply}","msg":"${qid}: to=<${to}>, relay=${relay}, delay=${delay}, dsn=${dsn}, status=${status} (${reply})"`);
        if (status !== 'deferred') emit('info', `"stage":"qmgr","queue_id":"${qid}","msg":"${qid}: removed"`);
      };
      const accept = (): void => {
        emit('accept', `"stage":"end-of-data",${head},"queue_id":"${qid}","helo":"${helo}","from":"${from}","to":["${to}"],"size":${size},"code":250,"status":"2.0.0","reply":"250 2.0.0 Ok: queued as ${qid}","msg":"${qid}: from=<${from}>, size=${size}, nrcpt=1 (queue incoming)"`);
      };
      const greylistRec = (action: 'greylist' | 'pass'): void => {
        const key = `${ip.replace(/\.\d+$/, '.0')}/${from}/${to}`;
        const extra = action === 'greylist' ? `"action":"greylist","reason":"new","key":"${key}","remaining":300` : `"action":"pass","reason":"triplet found","key":"${key}","delay":${300 + Math.floor(rnd() * 900)},"awl_count":1`;
        emit('greylist', `"stage":"rcpt",${head},"helo":"${helo}","from":"${from}","to":"${to}",${extra},"rule":"check_greylist","msg":"action=${action}, reason=${action === 'pass' ? 'triplet found' : 'new'}, client_name=${name}, client_address=${ip}, sender=${from}, recipient=${to}"`);
      };
      switch (shape) {
        case 'connect-only':
          break;
        case 'reject': {
          const k = pickReject();
          const text = k.text.replace(/\bI\b/g, ip).replace('<C>', `<${label}>`).replace('<S>', `<${from}>`).replace('<R>', `<${to}>`).replace('<H>', `<${helo}>`);
          const reply = `${k.code} ${k.status} ${text}`;
          const eod = k.stage === 'end-of-data';
          const where = eod ? `${qid}: reject: header Subject: cheap meds from ${label}; ${env}: ${k.status} ${text}` : `NOQUEUE: reject: RCPT from ${label}: ${reply}; ${env}`;
          emit('reject', `"stage":"${k.stage}",${head},${eod ? `"queue_id":"${qid}",` : ''}"helo":"${helo}","from":"${from}","to":"${to}","code":${k.code},"status":"${k.status}","reply":"${reply}","rule":"${k.rule}",${eod ? `"size":${size},` : ''}"msg":"${where}"`);
          break;
        }
        case 'greylist':
          greylistRec('greylist');
          emit('defer', `"stage":"rcpt",${head},"helo":"${helo}","from":"${from}","to":"${to}","code":450,"status":"4.2.0","reply":"450 4.2.0 <${to}>: Recipient address rejected: Greylisted, see RFC 6647","rule":"check_greylist","msg":"NOQUEUE: reject: RCPT from ${label}: 450 4.2.0 <${to}>: Recipient address rejected: Greylisted, see RFC 6647; ${env}"`);
          break;
        case 'greylist-pass':
          greylistRec('pass');
          accept();
          break;
        case 'accept':
        case 'relay-defer':
        case 'bounce':
          accept();
          break;
      }
      emit('disconnect', `"stage":"disconnect",${head},"helo":"${helo}","from":"${from}","msg":"disconnect from ${label}"`);
      if (shape === 'accept' || shape === 'greylist-pass') delivered('sent');
      else if (shape === 'relay-defer') delivered('deferred');
      else if (shape === 'bounce') delivered('bounced');
    }
    out.flush();
  } finally {
    closeSync(fd);
  }
  return { lines: n, bytes: out.bytes, events, first: start, last: Math.floor(start + span) };
}
