/**
 * @module pop3/commands
 * SUMMARY: the POP3 verbs as a Map verb -> { states, handler } (WildDuck's declared states,
 * not a state test in every handler): CAPA USER PASS AUTH STLS STAT LIST UIDL RETR TOP DELE
 * RSET NOOP QUIT. Reply texts are Dovecot's where it has one, so clients and scripts that
 * know Dovecot see the same; the greeting is "+OK greygate ready.".
 * UIDL is Dovecot's default pop3_uidl_format %08Xu%08Xv (UID and UIDVALIDITY in hex), so a
 * message keeps its UIDL across sessions and restarts, and after an IMAP session moved or
 * flagged it. Deletions are applied only by QUIT (the UPDATE state): \Deleted, then expunge;
 * retrieved messages are marked \Seen at the same time, as Dovecot does.
 * DIAGNOSTICS: every login is an 'auth' record (service, session, client_ip, user, method,
 * status ok|failed|refused|in-use|disallowed, tls); every deleted message an 'info' record
 * (user, uid, size). A failing user database or mailbox answers "-ERR [SYS/TEMP] ...".
 * SEE ALSO: RFC 1939, RFC 2449 (CAPA, RESP-CODES), RFC 2595 (STLS), RFC 3206 (SYS, AUTH
 * codes), RFC 5034 (SASL), RFC 4616 (PLAIN); Dovecot src/pop3/pop3-commands.c.
 */
import { INBOX } from '../mailbox/maildir.js';
import type { Pop3Message, Pop3Session } from './session.js';
import { INTERNAL_ERROR, printable } from './session.js';

export type Pop3State = 'AUTHORIZATION' | 'TRANSACTION' | 'UPDATE';

export interface Pop3Command {
  /** The states the verb is valid in; anything else is "-ERR Command not allowed in this state". */
  readonly states: readonly Pop3State[];
  /** ARGS is the rest of the line after the verb and one space, as sent. */
  handler(s: Pop3Session, args: string): Promise<void>;
}

const AUTH_STATE: readonly Pop3State[] = ['AUTHORIZATION'];
const TRANSACTION: readonly Pop3State[] = ['TRANSACTION'];
const ANY: readonly Pop3State[] = ['AUTHORIZATION', 'TRANSACTION'];

const PLAINTEXT_DISALLOWED = '-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.';
const AUTH_FAILED = '-ERR [AUTH] Authentication failed.';
const CRLF = Buffer.from('\r\n');
const DOT_END = Buffer.from('.\r\n');
const DOT = Buffer.from('.');
const CRLF_DOT = Buffer.from('\r\n.');

/** Dovecot's %08Xu%08Xv. */
export function uidl(uid: number, uidValidity: number): string {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(uid) + hex(uidValidity);
}

/**
 * MESSAGE (CRLF lines) as a multi-line response body: a leading "." doubled on every line
 * (RFC 1939 section 3), a final CRLF added when the message lacks one, then ".".
 */
export function dotStuff(message: Buffer): Buffer {
  const parts: Buffer[] = [];
  let copied = 0;
  if (message.length > 0 && message[0] === 0x2e) parts.push(DOT);
  for (let i = message.indexOf(CRLF_DOT); i >= 0; i = message.indexOf(CRLF_DOT, i + 2)) {
    parts.push(message.subarray(copied, i + 2), DOT);
    copied = i + 2;
  }
  parts.push(message.subarray(copied));
  const ends = message.length >= 2 && message[message.length - 2] === 0x0d && message[message.length - 1] === 0x0a;
  if (!ends) parts.push(CRLF);
  parts.push(DOT_END);
  return Buffer.concat(parts);
}

/**
 * The header of MESSAGE, its empty separator line, and the first LINES lines of the body
 * (RFC 1939 TOP); all of it when the body is shorter.
 */
export function topOf(message: Buffer, lines: number): Buffer {
  let sep = message.indexOf('\r\n\r\n');
  let bodyStart: number;
  if (message.subarray(0, 2).equals(CRLF)) bodyStart = 2;
  else if (sep < 0) return message;
  else bodyStart = sep + 4;
  let end = bodyStart;
  for (let n = 0; n < lines; n++) {
    if (end >= message.length) return message;
    sep = message.indexOf(CRLF, end);
    if (sep < 0) return message;
    end = sep + 2;
  }
  return message.subarray(0, end);
}

/** The message numbered by ARG, or a reply already sent (null). */
async function messageArg(s: Pop3Session, arg: string): Promise<{ n: number; m: Pop3Message } | null> {
  if (!/^\d{1,10}$/.test(arg)) {
    await s.bad(`-ERR Invalid message number: ${printable(arg)}`);
    return null;
  }
  const n = Number(arg);
  const m = s.messages[n - 1];
  if (n < 1 || m === undefined) {
    await s.write(`-ERR There's no message ${n}.`);
    return null;
  }
  if (s.deleted.has(n)) {
    await s.write('-ERR Message is deleted.');
    return null;
  }
  return { n, m };
}

/** Split ARGS into at most MAX words; null when there are more (or empty words). */
function words(args: string, max: number): string[] | null {
  if (args === '') return [];
  const w = args.split(' ');
  if (w.length > max || w.some((x) => x === '')) return null;
  return w;
}

async function capa(s: Pop3Session): Promise<void> {
  const lines = ['+OK', 'CAPA', 'TOP', 'UIDL', 'RESP-CODES', 'PIPELINING', 'AUTH-RESP-CODE'];
  if (s.canStartTls()) lines.push('STLS');
  // RFC 2595 section 6: where plaintext logins are refused, they are not advertised.
  if (s.state === 'AUTHORIZATION' && s.plaintextAllowed()) lines.push('USER', 'SASL PLAIN');
  lines.push('.');
  await s.write(lines.join('\r\n'));
}

async function user(s: Pop3Session, args: string): Promise<void> {
  if (!s.plaintextAllowed()) {
    await s.write(PLAINTEXT_DISALLOWED);
    logAuth(s, args, 'USER', 'disallowed');
    return;
  }
  if (args === '' || args.includes(' ')) {
    await s.bad('-ERR Invalid arguments.');
    return;
  }
  s.pendingUser = args;
  await s.write('+OK');
}

async function pass(s: Pop3Session, args: string): Promise<void> {
  const name = s.pendingUser;
  if (name === null) {
    await s.bad('-ERR No username given.');
    return;
  }
  s.pendingUser = null;
  if (!s.plaintextAllowed()) {
    await s.write(PLAINTEXT_DISALLOWED);
    logAuth(s, name, 'USER', 'disallowed');
    return;
  }
  await login(s, name, args, 'USER');
}

async function auth(s: Pop3Session, args: string): Promise<void> {
  if (args === '') {
    // Not in RFC 5034 but what clients probe with (and Dovecot answers): the mechanisms.
    await s.write(s.plaintextAllowed() ? '+OK\r\nPLAIN\r\n.' : '+OK\r\n.');
    return;
  }
  const [mechanism = '', initial, extra] = args.split(' ');
  if (extra !== undefined || mechanism.toUpperCase() !== 'PLAIN') {
    await s.bad('-ERR Unsupported authentication mechanism.');
    return;
  }
  if (!s.plaintextAllowed()) {
    await s.write(PLAINTEXT_DISALLOWED);
    logAuth(s, '', 'PLAIN', 'disallowed');
    return;
  }
  if (initial !== undefined) {
    await plainResponse(s, initial === '=' ? '' : initial);
    return;
  }
  s.continuation = async (line) => {
    if (line === '*') {
      await s.write('-ERR Authentication aborted by client.');
      return;
    }
    await plainResponse(s, line);
  };
  await s.write('+ ');
}

/** RFC 4616: [authzid] NUL authcid NUL passwd, base64. */
async function plainResponse(s: Pop3Session, b64: string): Promise<void> {
  if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) {
    await s.bad('-ERR Invalid base64 data in continued response.');
    return;
  }
  const parts = Buffer.from(b64, 'base64').toString('utf8').split('\0');
  const [authz = '', authc = '', password = ''] = parts;
  if (parts.length !== 3 || authc === '') {
    await s.write(AUTH_FAILED);
    logAuth(s, authc, 'PLAIN', 'failed');
    return;
  }
  // No master users: logging in as somebody else is never allowed.
  if (authz !== '' && authz.toLowerCase() !== authc.toLowerCase()) {
    await s.write(AUTH_FAILED);
    logAuth(s, authc, 'PLAIN', 'failed', `authorization identity ${authz} refused`);
    return;
  }
  await login(s, authc, password, 'PLAIN');
}

/** Check the password, take the maildrop lock, number the messages: TRANSACTION. */
async function login(s: Pop3Session, name: string, password: string, method: string): Promise<void> {
  let outcome;
  try {
    outcome = await s.deps.guard.login(name, password, s.peer);
  } catch (err) {
    logAuth(s, name, method, 'error', (err as Error).message);
    await s.write('-ERR [SYS/TEMP] Temporary authentication failure.');
    return;
  }
  if (outcome.kind === 'failed') {
    logAuth(s, name, method, 'failed');
    await s.write(AUTH_FAILED);
    return;
  }
  if (outcome.kind === 'refused') {
    logAuth(s, name, method, 'refused', `too many failures from this ${outcome.by}`);
    await s.write('-ERR [SYS/TEMP] Too many authentication failures, try again later.');
    return;
  }
  const release = s.deps.mailboxes.lockPop3(outcome.user);
  if (release === null) {
    logAuth(s, outcome.user, method, 'in-use');
    await s.write('-ERR [IN-USE] Mailbox is locked by another POP3 session.');
    return;
  }
  try {
    const mailbox = s.deps.mailboxes.mailbox(outcome.user);
    const box = await mailbox.open(INBOX);
    if (box.kind !== 'ok') throw new Error(`cannot open INBOX: ${box.kind}`);
    const messages = box.messages.map((m) => ({ uid: m.uid, size: m.size }));
    s.enterTransaction(outcome.user, mailbox, box.uidValidity, messages, release);
  } catch (err) {
    release();
    logAuth(s, outcome.user, method, 'error', (err as Error).message);
    throw err;
  }
  logAuth(s, outcome.user, method, 'ok', `${s.messages.length} messages`);
  await s.write('+OK Logged in.');
}

function logAuth(s: Pop3Session, name: string, method: string, status: string, detail?: string): void {
  const who = name === '' ? 'unknown user' : `user=<${name.slice(0, 100)}>`;
  s.deps.log.event({
    event: 'auth',
    service: s.service,
    session: s.id,
    client_ip: s.peer,
    user: name.slice(0, 100),
    method,
    status,
    tls: s.tls,
    msg: `${s.service}: login ${status}: ${who}, method=${method}, rip=${s.peer}${s.tls ? ', TLS' : ''}${detail ? `: ${detail}` : ''}`,
  });
}

async function stls(s: Pop3Session): Promise<void> {
  if (s.tls) {
    await s.bad('-ERR TLS is already active.');
    return;
  }
  if (!s.canStartTls()) {
    await s.bad('-ERR TLS support isn\'t enabled.');
    return;
  }
  await s.write('+OK Begin TLS negotiation now.');
  await s.startTls();
}

async function stat(s: Pop3Session): Promise<void> {
  let count = 0;
  let size = 0;
  s.messages.forEach((m, i) => {
    if (s.deleted.has(i + 1)) return;
    count++;
    size += m.size;
  });
  await s.write(`+OK ${count} ${size}`);
}

/** LIST and UIDL: one message, or all that are not deleted. */
function listing(column: (s: Pop3Session, m: Pop3Message) => string): (s: Pop3Session, args: string) => Promise<void> {
  return async (s, args) => {
    const w = words(args, 1);
    if (w === null) {
      await s.bad('-ERR Invalid arguments.');
      return;
    }
    if (w.length === 1) {
      const hit = await messageArg(s, w[0]!);
      if (hit) await s.write(`+OK ${hit.n} ${column(s, hit.m)}`);
      return;
    }
    const lines: string[] = [];
    s.messages.forEach((m, i) => {
      if (!s.deleted.has(i + 1)) lines.push(`${i + 1} ${column(s, m)}`);
    });
    await s.write(`+OK ${lines.length} messages:`);
    await s.send(Buffer.from(lines.map((l) => `${l}\r\n`).join('') + '.\r\n'));
  };
}

async function retr(s: Pop3Session, args: string): Promise<void> {
  const w = words(args, 1);
  if (w === null || w.length !== 1) {
    await s.bad('-ERR Invalid arguments.');
    return;
  }
  const hit = await messageArg(s, w[0]!);
  if (!hit) return;
  const data = await s.mailbox!.read(INBOX, hit.m.uid);
  if (data === null) {
    await s.write('-ERR Message was expunged by another session.');
    return;
  }
  s.retrieved.add(hit.n);
  await s.write(`+OK ${data.length} octets`);
  await s.send(dotStuff(data));
}

async function top(s: Pop3Session, args: string): Promise<void> {
  const w = words(args, 2);
  if (w === null || w.length !== 2 || !/^\d{1,10}$/.test(w[1]!)) {
    await s.bad('-ERR Invalid arguments.');
    return;
  }
  const hit = await messageArg(s, w[0]!);
  if (!hit) return;
  const data = await s.mailbox!.read(INBOX, hit.m.uid);
  if (data === null) {
    await s.write('-ERR Message was expunged by another session.');
    return;
  }
  await s.write('+OK');
  await s.send(dotStuff(topOf(data, Number(w[1]))));
}

async function dele(s: Pop3Session, args: string): Promise<void> {
  const w = words(args, 1);
  if (w === null || w.length !== 1) {
    await s.bad('-ERR Invalid arguments.');
    return;
  }
  const hit = await messageArg(s, w[0]!);
  if (!hit) return;
  s.deleted.add(hit.n);
  await s.write('+OK Marked to be deleted.');
}

async function rset(s: Pop3Session): Promise<void> {
  s.deleted.clear();
  await s.write('+OK');
}

async function noop(s: Pop3Session): Promise<void> {
  await s.write('+OK');
}

async function quit(s: Pop3Session): Promise<void> {
  if (s.state !== 'TRANSACTION') {
    await s.end('+OK Logging out.');
    return;
  }
  s.state = 'UPDATE';
  const mailbox = s.mailbox!;
  const doomed = [...s.deleted].sort((a, b) => a - b).map((n) => s.messages[n - 1]!);
  const seen = [...s.retrieved].filter((n) => !s.deleted.has(n)).map((n) => s.messages[n - 1]!.uid);
  try {
    if (seen.length > 0) await mailbox.setFlags(INBOX, seen, ['\\Seen'], 'add', s);
    let removed: number[] = [];
    if (doomed.length > 0) {
      const uids = doomed.map((m) => m.uid);
      await mailbox.setFlags(INBOX, uids, ['\\Deleted'], 'add', s);
      removed = await mailbox.expunge(INBOX, uids, s);
    }
    const gone = new Set(removed);
    for (const m of doomed) {
      if (!gone.has(m.uid)) continue;
      s.deps.log.info(`${s.service}: ${s.user}: deleted uid=${m.uid} size=${m.size}`, {
        service: s.service,
        session: s.id,
        client_ip: s.peer,
        user: s.user,
        folder: INBOX,
        uid: m.uid,
        size: m.size,
      });
    }
    s.unlock();
    // RFC 1939: -ERR when some deleted messages could not be removed. One expunged meanwhile
    // by another session is gone all the same.
    await s.end(doomed.length > 0 ? '+OK Logging out, messages deleted.' : '+OK Logging out.');
  } catch (err) {
    s.unlock();
    s.deps.log.error(`${s.service}: ${s.user}: cannot apply deletions: ${(err as Error).message}`, {
      service: s.service,
      session: s.id,
      client_ip: s.peer,
      user: s.user,
    });
    await s.end('-ERR [SYS/TEMP] Some deleted messages were not removed. Refer to server log for more information.');
  }
}

export const COMMANDS: ReadonlyMap<string, Pop3Command> = new Map<string, Pop3Command>([
  ['CAPA', { states: ANY, handler: capa }],
  ['USER', { states: AUTH_STATE, handler: user }],
  ['PASS', { states: AUTH_STATE, handler: pass }],
  ['AUTH', { states: AUTH_STATE, handler: auth }],
  ['STLS', { states: AUTH_STATE, handler: stls }],
  ['STAT', { states: TRANSACTION, handler: stat }],
  ['LIST', { states: TRANSACTION, handler: listing((_s, m) => String(m.size)) }],
  ['UIDL', { states: TRANSACTION, handler: listing((s, m) => uidl(m.uid, s.uidValidity)) }],
  ['RETR', { states: TRANSACTION, handler: retr }],
  ['TOP', { states: TRANSACTION, handler: top }],
  ['DELE', { states: TRANSACTION, handler: dele }],
  ['RSET', { states: TRANSACTION, handler: rset }],
  ['NOOP', { states: TRANSACTION, handler: noop }],
  ['QUIT', { states: ANY, handler: quit }],
]);
