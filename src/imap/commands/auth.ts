/**
 * @module imap/commands/auth
 * SUMMARY: the commands of any state and of login: CAPABILITY, NOOP, LOGOUT, STARTTLS,
 * LOGIN, AUTHENTICATE PLAIN (SASL-IR or a continuation), ID and ENABLE. Exports
 * AUTH_COMMANDS (entries of imap/command-table's Map).
 * DIAGNOSTICS: every login attempt is one 'auth' event (user, client_ip, status ok/failed/
 * refused, method); the replies are Dovecot's (AUTHENTICATIONFAILED, PRIVACYREQUIRED).
 * SEE ALSO: RFC 3501 6.1-6.2, RFC 4616 (PLAIN), RFC 4959 (SASL-IR), RFC 2971 (ID), RFC 5161
 * (ENABLE); Dovecot disable_plaintext_auth.
 */
import { atom, compileContinuation, compileStatus, compileTagged, compileUntagged, type ImapValue } from '../compiler.js';
import { nodeText, type ImapCommand } from '../parser.js';
import type { CommandSpec, Completion, ImapSession } from '../command-table.js';
import { ANY_ARGS, bad, badArgs, no, ok, SERVER_BUG } from './completion.js';

const PRIVACY_REQUIRED: Completion = no('Plaintext authentication disallowed on non-secure (SSL/TLS) connections.', { name: 'PRIVACYREQUIRED' });
const AUTH_FAILED: Completion = no('Authentication failed.', { name: 'AUTHENTICATIONFAILED' });
/** Dovecot's limit on the SASL exchange, far above what PLAIN needs. */
const MAX_SASL_LINE = 8192;

function capability(s: ImapSession): Promise<Completion> {
  s.write(compileUntagged([atom('CAPABILITY'), ...s.capabilities().map(atom)]));
  return Promise.resolve(
    s.state === 'not-authenticated' ? ok('Pre-login capabilities listed, post-login capabilities have more.') : ok('Capability completed.'),
  );
}

async function noop(s: ImapSession): Promise<Completion> {
  if (s.selected) await s.refresh(true);
  return ok('NOOP completed.');
}

function logout(s: ImapSession): Promise<Completion> {
  s.write(compileStatus('BYE', 'Logging out'));
  return Promise.resolve({ status: 'OK', text: 'Logout completed.', close: true });
}

function starttls(s: ImapSession, cmd: ImapCommand): Promise<Completion | 'answered'> {
  if (s.secure) return Promise.resolve(bad('TLS is already active.'));
  // Anything the client pipelined after STARTTLS was sent in clear text and could have been
  // injected by a man in the middle (CVE-2011-0411 and its IMAP cousins): refuse.
  if (s.pendingInput > 0) return Promise.resolve(bad('STARTTLS can\'t be pipelined with other commands.'));
  return Promise.resolve(s.startTls(compileTagged(cmd.tag, 'OK', 'Begin TLS negotiation now.')) ? 'answered' : no('TLS not available.'));
}

async function login(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const user = nodeText(cmd.args[0]);
  const password = nodeText(cmd.args[1]);
  if (user === undefined || password === undefined) return badArgs(cmd);
  if (!s.ctx.plaintextAllowed(s.clientIp, s.secure)) {
    logAuth(s, user ?? 'NIL', 'LOGIN', 'refused', 'plaintext authentication disallowed');
    return PRIVACY_REQUIRED;
  }
  return verify(s, user ?? 'NIL', password ?? 'NIL', 'LOGIN');
}

async function authenticate(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const mech = nodeText(cmd.args[0]);
  if (typeof mech !== 'string' || cmd.args[0]?.type !== 'atom') return badArgs(cmd);
  if (mech.toUpperCase() !== 'PLAIN') return no('Unsupported authentication mechanism.');
  if (!s.ctx.plaintextAllowed(s.clientIp, s.secure)) {
    logAuth(s, '', 'PLAIN', 'refused', 'plaintext authentication disallowed');
    return PRIVACY_REQUIRED;
  }
  let response: string;
  if (cmd.args.length > 1) {
    const ir = nodeText(cmd.args[1]);
    if (typeof ir !== 'string') return badArgs(cmd);
    // RFC 4959: "=" is an empty initial response.
    response = ir === '=' ? '' : ir;
  } else {
    // RFC 3501 6.2.2: "+ " and the client answers with one base64 line.
    s.write(compileContinuation(''));
    const line = await s.readLine();
    if (line === null) return bad('Authentication aborted by client.');
    if (line.length > MAX_SASL_LINE) return bad('Authentication response too long.');
    response = line.toString('latin1');
  }
  if (response.trim() === '*') return bad('Authentication aborted by client.');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(response) || response.length % 4 === 1) return bad('Invalid base64 data in continued response');
  const parts = Buffer.from(response, 'base64').toString('utf8').split('\0');
  if (parts.length !== 3) {
    logAuth(s, '', 'PLAIN', 'failed', 'malformed PLAIN response');
    return AUTH_FAILED;
  }
  const [authzid = '', authcid = '', password = ''] = parts;
  // Logging in as someone else (a master user) is not offered.
  if (authzid !== '' && authzid.toLowerCase() !== authcid.toLowerCase()) {
    logAuth(s, authcid, 'PLAIN', 'failed', `authorization as ${authzid} refused`);
    return AUTH_FAILED;
  }
  return verify(s, authcid, password, 'PLAIN');
}

async function verify(s: ImapSession, rawUser: string, password: string, method: string): Promise<Completion> {
  let user = rawUser.toLowerCase();
  if (user === '' || password === '') {
    logAuth(s, user, method, 'failed', 'empty user name or password');
    return AUTH_FAILED;
  }
  let outcome;
  try {
    outcome = await s.ctx.checkLogin(user, password, s.clientIp);
  } catch (err) {
    s.ctx.log.error(`imap: user database: ${(err as Error).message}`, { service: s.ctx.service, session: s.id, client_ip: s.clientIp });
    return no('Temporary authentication failure.', { name: 'UNAVAILABLE' });
  }
  if (outcome.kind === 'refused') {
    logAuth(s, user, method, 'refused', `too many failed logins from this ${outcome.by === 'client' ? 'client' : 'user name'}`);
    return AUTH_FAILED;
  }
  if (outcome.kind === 'failed') {
    logAuth(s, user, method, 'failed', 'authentication failed');
    return AUTH_FAILED;
  }
  user = outcome.user;
  try {
    s.login(user);
  } catch (err) {
    s.ctx.log.error(`imap: cannot open the mailbox of ${user}: ${(err as Error).message}`, { service: s.ctx.service, session: s.id, user });
    return SERVER_BUG;
  }
  logAuth(s, user, method, 'ok', 'logged in');
  return ok('Logged in', { name: 'CAPABILITY', args: s.capabilities().map(atom) });
}

function logAuth(s: ImapSession, user: string, method: string, status: 'ok' | 'failed' | 'refused', why: string): void {
  const tls = s.secure ? ', TLS' : '';
  const what = status === 'ok' ? 'Login' : `Aborted login (${why})`;
  s.ctx.log.event({
    event: 'auth',
    stage: 'auth',
    service: s.ctx.service,
    session: s.id,
    client_ip: s.clientIp,
    user,
    sasl_method: method,
    status,
    tls: s.secure,
    msg: `imap-login: ${what}: user=<${user}>, method=${method}, rip=${s.clientIp}${tls}`,
  });
}

function id(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  const arg = cmd.args[0];
  if (!arg || (arg.type !== 'nil' && arg.type !== 'list')) return Promise.resolve(badArgs(cmd));
  // RFC 2971: at most 30 pairs of strings.
  if (arg.type === 'list' && (arg.items.length % 2 !== 0 || arg.items.length > 60 || arg.items.some((n) => nodeText(n) === undefined))) {
    return Promise.resolve(badArgs(cmd));
  }
  const fields: ImapValue[] = ['name', 'greygate'];
  s.write(compileUntagged([atom('ID'), fields]));
  return Promise.resolve(ok('ID completed.'));
}

function enable(s: ImapSession, cmd: ImapCommand): Promise<Completion> {
  if (cmd.args.some((a) => a.type !== 'atom')) return Promise.resolve(badArgs(cmd));
  // No extension greygate has needs enabling (CONDSTORE, QRESYNC, UTF8=ACCEPT are not offered).
  s.write(compileUntagged([atom('ENABLED')]));
  return Promise.resolve(ok('Enabled.'));
}

const ANY_STATE = ['not-authenticated', 'authenticated', 'selected', 'logout'] as const;

export const AUTH_COMMANDS: ReadonlyArray<readonly [string, CommandSpec]> = [
  ['CAPABILITY', { states: ANY_STATE, args: [0, 0], handler: capability }],
  ['NOOP', { states: ANY_STATE, args: [0, 0], handler: noop }],
  ['LOGOUT', { states: ANY_STATE, args: [0, 0], handler: logout }],
  ['STARTTLS', { states: ['not-authenticated'], args: [0, 0], handler: starttls }],
  ['LOGIN', { states: ['not-authenticated'], args: [2, 2], handler: login }],
  ['AUTHENTICATE', { states: ['not-authenticated'], args: [1, 2], handler: authenticate }],
  ['ID', { states: ANY_STATE, args: [1, 1], handler: id }],
  ['ENABLE', { states: ['authenticated', 'selected'], args: [1, ANY_ARGS], handler: enable }],
];
