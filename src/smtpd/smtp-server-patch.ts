/**
 * @module smtpd/smtp-server-patch
 * SUMMARY: the documented patch of smtp-server's connection class. smtp-server is a good
 * protocol core but differs from Postfix where greygate must not, so these methods of
 * SMTPConnection.prototype are wrapped, once, at import:
 *   - init(): no fixed 100 ms early-talker wait before every greeting (it caps one message
 *     per connection at ~10 msg/s per concurrent client): onConnect runs at once. What the
 *     client sends before its greeting is recorded (preGreetingOf(session): the pregreet
 *     test of smtpd/postscreen.ts, which also writes its "220-" teaser through it), and its
 *     first command waits for the greeting instead of getting "421 You talk too soon", as
 *     Postfix's smtpd reads it after its banner (_onCommand(), _sendGreeting()).
 *   - _sendGreeting(): the greeting is `220 <smtpd_banner>` verbatim (option `greetingText`).
 *   - send(): a reply text that already starts with an RFC 3463 code keeps it instead of
 *     getting a second one; smtp-server's own texts become Postfix's ("250 2.1.0 Ok",
 *     "552 5.3.4 Message size exceeds fixed limit", ...).
 *   - handler_HELO/EHLO(): run the async option `onHeloCommand(session, name)` first
 *     (smtpd_helo_restrictions when smtpd_delay_reject = no).
 *   - handler_DATA(): runs the async option `onDataCommand(session)` before the 354, which
 *     smtp-server has no hook for (smtpd_data_restrictions).
 *   - _proxyCommandAllowed(): XCLIENT is allowed by the option `xclientAllowed(ip)`
 *     (smtpd_authorized_xclient_hosts); smtp-server alone lets any client use it.
 *   - init() also taps the socket to record commands sent while the client should be
 *     waiting for a reply (reject_unauth_pipelining), in session.unauthPipelining.
 *   - send()/_onCommand(): smtpd's error tarpit, with the ErrorLimits that onConnect puts
 *     in session.errorLimits: every 4xx/5xx reply counts (unknown commands, syntax errors,
 *     rejects), HELO/EHLO/RSET/NOOP/VRFY/ETRN beyond smtpd_junk_command_limit count, a
 *     delivered message forgets them; from smtpd_soft_error_limit on each command waits
 *     smtpd_error_sleep_time, at smtpd_hard_error_limit "421 4.7.0 HOST Error: too many
 *     errors" and hang up. smtp-server's own cap of 10 unrecognised commands gives way to it.
 *     session.errorCountExempt = true exempts the next error reply (Postfix's recipient
 *     overshoot).
 *   - _onTimeout(): the idle 421 is Postfix's "421 4.4.2 HOST Error: timeout exceeded".
 *   Both limits are reported through the option `onSessionLimit(session, hit)` for the log.
 * Checked against smtp-server 3.21.6 (pinned); test/smtpd covers each behaviour.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { ErrorLimits } from './limits.js';

/** A session limit the patch enforced, for the caller's log record. */
export interface SessionLimitHit {
  readonly rule: 'smtpd_hard_error_limit' | 'smtpd_timeout';
  readonly code: number;
  readonly status: string;
  readonly text: string;
  /** The last command verb, or CONNECT before the first one (Postfix's "after CMD"). */
  readonly command: string;
}

interface PatchedOptions {
  onSessionLimit?: (session: unknown, hit: SessionLimitHit) => void;
  greetingText?: string;
  onDataCommand?: (session: unknown) => Promise<{ responseCode: number; message: string; disconnect?: boolean } | null>;
  onHeloCommand?: (session: unknown, helo: string, esmtp: boolean) => Promise<{ responseCode: number; message: string } | null>;
  xclientAllowed?: (ip: string) => boolean;
}

interface ConnectionInternals {
  _server: { options: PatchedOptions & Record<string, unknown> };
  _socket: import('node:net').Socket & { readableLength: number };
  _parser: { _remainder?: string } | false;
  _ready: boolean;
  _closing: boolean;
  _closed: boolean;
  _xClient: Map<string, unknown>;
  _originalRemoteAddress: string;
  _upgrading: boolean;
  _handlerPending: boolean;
  _nextHandler: unknown;
  _unrecognizedCommands: number;
  name: string;
  /** Error tarpit state (ours). */
  _ggErrors?: number;
  _ggJunk?: number;
  _ggTimingOut?: boolean;
  _ggCommand?: string;
  session: Record<string, unknown> & { envelope: { rcptTo: unknown[] }; errorLimits?: ErrorLimits; errorCountExempt?: boolean };
  openingCommand: string | false;
  send(code: number, data?: string | string[], context?: string | false): void;
  close(): void;
  connectionReady(next?: () => void): void;
  _setListeners(cb: () => void): void;
  _isSupported(command: string): boolean;
  /** The first command of a client that talked before its greeting, run after it. */
  _heldCommand?: (() => void) | null;
}

/** What the client sent before its greeting: postscreen's pregreet evidence. */
export interface PreGreetingTalk {
  /** The first bytes received (at most PREGREET_PEEK of them), as postscreen peeks them. */
  readonly bytes: Buffer;
  /** Milliseconds after the connection was accepted. */
  readonly afterMs: number;
}

/** The connection before its greeting, for the connect-time tests (smtpd/postscreen.ts). */
export interface PreGreeting {
  /** Milliseconds since the connection was accepted. */
  elapsed(): number;
  /** Write raw protocol text before the greeting (postscreen's "220-" teaser). */
  write(text: string): void;
  /** What the client sent before its greeting so far, or null. */
  talk(): PreGreetingTalk | null;
  /** Resolves when the client talks, hangs up, or MS pass, whichever comes first. */
  waitTalk(ms: number): Promise<void>;
  /** The client has hung up (or the connection is being closed). */
  closed(): boolean;
}

// Postfix's PSC_READ_BUF_SIZE - 1: what one recv(MSG_PEEK) shows postscreen.
const PREGREET_PEEK = 1023;

/** Keyed by the smtp-server session object, which lives exactly as long as its connection. */
const PRE_GREETING = new WeakMap<object, PreGreeting>();

/** The pre-greeting view of SESSION's connection (undefined for a session not made here). */
export function preGreetingOf(session: object): PreGreeting | undefined {
  return PRE_GREETING.get(session);
}

type Proto = ConnectionInternals & Record<string, unknown>;
const proto = SMTPConnection.prototype as unknown as Proto;

const DSN_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;

// smtp-server's stock success texts, by reply context, and Postfix's words for them.
const POSTFIX_TEXTS: Record<string, string> = {
  MAIL_FROM_OK: 'Ok',
  RCPT_TO_OK: 'Ok',
  MESSAGE_TOO_BIG: 'Message size exceeds fixed limit',
};

let applied = false;
/** smtp-server's own send(), for replies the patched one must not count. */
let unpatchedSend: ConnectionInternals['send'] | null = null;

export function applySmtpServerPatch(): void {
  if (applied) return;
  applied = true;

  proto.init = function init(this: ConnectionInternals): void {
    tapPipelining(this);
    trackPreGreeting(this);
    this._setListeners(() => {
      const opts = this._server.options;
      const max = Number(opts.maxClients) || 0;
      const conns = (this._server as unknown as { connections: Set<unknown> }).connections;
      if (max && conns.size > max) {
        this.send(421, `${String(opts.name)} Error: too many connections`, false);
        return;
      }
      this.connectionReady();
    });
  };

  proto._sendGreeting = function sendGreeting(this: ConnectionInternals): void {
    const opts = this._server.options;
    this.send(220, opts.greetingText ?? `${String(opts.name)} ESMTP`, false);
    const held = this._heldCommand;
    if (held) {
      this._heldCommand = null;
      setImmediate(held);
    }
  };

  const origSend = proto.send;
  unpatchedSend = origSend;
  proto.send = function send(this: ConnectionInternals, code: number, data?: string | string[], context?: string | false): void {
    let text = data;
    let ctx = context;
    if (code === 421 && this._ggTimingOut) {
      const hit = limitHit(this, 'smtpd_timeout', 421, '4.4.2', `${hostnameOf(this)} Error: timeout exceeded`);
      text = `${hit.status} ${hit.text}`;
      this._server.options.onSessionLimit?.(this.session, hit);
    }
    if (typeof text === 'string') {
      if (DSN_PREFIX.test(text)) ctx = false;
      else if (typeof context === 'string' && POSTFIX_TEXTS[context] && (text === 'Accepted' || context === 'MESSAGE_TOO_BIG')) text = POSTFIX_TEXTS[context];
      else if (code === 250 && (text === 'Flushed' || text === 'OK')) text = 'Ok';
    }
    origSend.call(this, code, text, ctx);
    // smtp-server closes after 421 only; Postfix also hangs up after 521 (access(5)) and
    // after some refusals (bare <LF>), which a handler marks with session.closeAfterReply.
    if (code === 521 || (code >= 400 && this.session.closeAfterReply)) this.close();
    countReply(this, code, context);
  };

  // smtpd's tarpit delays every reply once the client has made smtpd_soft_error_limit
  // errors; holding the command back delays its reply and keeps the replies in order.
  const origOnCommand = proto._onCommand as (this: ConnectionInternals, c: Buffer, cb?: () => void) => void;
  proto._onCommand = function onCommand(this: ConnectionInternals, command: Buffer, callback?: () => void): void {
    const lim = this.session.errorLimits;
    if (!lim || !this._ready || this._upgrading || this._closing || this._closed) return origOnCommand.call(this, command, callback);
    // Postfix has no separate cap on unknown commands: they count toward the hard limit.
    this._unrecognizedCommands = 0;
    const verb = this._nextHandler ? (this._ggCommand ?? 'AUTH') : (command.toString('latin1', 0, 16).trim().split(' ')[0] ?? '').toUpperCase();
    this._ggCommand = verb;
    const run = (): void => {
      if (this._closing || this._closed) return;
      origOnCommand.call(this, command, callback);
      if (JUNK_COMMANDS.has(verb) && (this._ggJunk = (this._ggJunk ?? 0) + 1) > lim.junkCommandLimit) addError(this);
    };
    if (lim.errorSleepMs > 0 && (this._ggErrors ?? 0) >= lim.softErrorLimit) {
      // The client is waiting for us, not idle: smtp-server's idle timer must not fire.
      this._handlerPending = true;
      setTimeout(() => {
        this._handlerPending = false;
        run();
      }, lim.errorSleepMs);
      return;
    }
    run();
  };

  const origTimeout = proto._onTimeout as (this: ConnectionInternals) => void;
  proto._onTimeout = function onTimeout(this: ConnectionInternals): void {
    // smtp-server decides whether the client is really idle; send() rewords its 421.
    this._ggTimingOut = true;
    try {
      origTimeout.call(this);
    } finally {
      this._ggTimingOut = false;
    }
  };

  const origData = proto.handler_DATA as (this: ConnectionInternals, c: Buffer, cb: () => void) => void;
  proto.handler_DATA = function handlerData(this: ConnectionInternals, command: Buffer, callback: () => void): void {
    const hook = this._server.options.onDataCommand;
    if (!hook || !this.session.envelope.rcptTo.length) return origData.call(this, command, callback);
    hook(this.session).then(
      (err) => {
        if (this._closing || this._closed) return callback();
        if (err) {
          this.send(err.responseCode, err.message);
          if (err.disconnect) this.close();
          return callback();
        }
        origData.call(this, command, callback);
      },
      () => {
        this.send(451, '4.3.0 Error: internal error');
        callback();
      },
    );
  };

  // smtp-server has no HELO hook; smtpd_helo_restrictions without smtpd_delay_reject need one.
  for (const verb of ['handler_HELO', 'handler_EHLO'] as const) {
    const orig = proto[verb] as (this: ConnectionInternals, c: Buffer, cb: () => void) => void;
    proto[verb] = function heloHook(this: ConnectionInternals, command: Buffer, callback: () => void): void {
      const hook = this._server.options.onHeloCommand;
      const parts = command.toString().trim().split(/\s+/);
      if (!hook || parts.length !== 2) return orig.call(this, command, callback);
      hook(this.session, parts[1]!, verb === 'handler_EHLO').then(
        (err) => {
          if (this._closing || this._closed) return callback();
          if (err) {
            this.send(err.responseCode, err.message);
            return callback();
          }
          orig.call(this, command, callback);
        },
        () => {
          this.send(451, '4.3.0 Error: internal error');
          callback();
        },
      );
    };
  }

  const origProxyAllowed = proto._proxyCommandAllowed as (this: ConnectionInternals, c: string, o: string) => boolean;
  proto._proxyCommandAllowed = function proxyAllowed(this: ConnectionInternals, command: string, option: string): boolean {
    const check = this._server.options.xclientAllowed;
    if (command === 'XCLIENT' && check) {
      return !this._xClient.has('ADDR') && this._isSupported('XCLIENT') && check(this._originalRemoteAddress);
    }
    return origProxyAllowed.call(this, command, option);
  };

  // Installed last, so that it runs before the other _onCommand wrappers. The parser hands
  // over one command at a time and waits for its callback, so holding the first early
  // command holds everything behind it until the greeting is out.
  const greetOnCommand = proto._onCommand as (this: ConnectionInternals, c: Buffer, cb?: () => void) => void;
  proto._onCommand = function holdUntilGreeted(this: ConnectionInternals, command: Buffer, callback?: () => void): void {
    if (!this._ready && !this._upgrading && !this._closing && !this._closed) {
      this._heldCommand = () => greetOnCommand.call(this, command, callback);
      return;
    }
    greetOnCommand.call(this, command, callback);
  };

}

// smtpd.c's SMTPD_CMD_FLAG_LIMIT commands: harmless alone, a tarpit signal in bulk.
const JUNK_COMMANDS = new Set(['HELO', 'EHLO', 'RSET', 'NOOP', 'VRFY', 'ETRN']);

function hostnameOf(conn: ConnectionInternals): string {
  return conn.session.errorLimits?.hostname ?? conn.name;
}

function limitHit(conn: ConnectionInternals, rule: SessionLimitHit['rule'], code: number, status: string, text: string): SessionLimitHit {
  return { rule, code, status, text, command: conn._ggCommand ?? 'CONNECT' };
}

/** smtpd_proto()'s error accounting, applied to each reply as it is sent. */
function countReply(conn: ConnectionInternals, code: number, context: string | false | undefined): void {
  const lim = conn.session.errorLimits;
  const exempt = conn.session.errorCountExempt === true;
  if (exempt) conn.session.errorCountExempt = false;
  if (!lim || !conn._ready) return;
  if (code === 250 && context === 'DATA_OK') {
    // "Forgive any previous client errors when a message was received successfully."
    conn._ggErrors = 0;
    conn._ggJunk = 0;
    return;
  }
  if (code < 400 || code > 599 || code === 421 || exempt) return;
  addError(conn);
}

function addError(conn: ConnectionInternals): void {
  const lim = conn.session.errorLimits;
  if (!lim || conn._closing || conn._closed) return;
  conn._ggErrors = (conn._ggErrors ?? 0) + 1;
  if (conn._ggErrors < lim.hardErrorLimit) return;
  const hit = limitHit(conn, 'smtpd_hard_error_limit', 421, '4.7.0', `${hostnameOf(conn)} Error: too many errors`);
  conn._server.options.onSessionLimit?.(conn.session, hit);
  // Not through send(): this 421 is not itself an error to count. smtp-server hangs up after it.
  unpatchedSend?.call(conn, 421, `${hit.status} ${hit.text}`, false);
}

/** Record what the client sends before its greeting, and when (postscreen_early.c's peek). */
function trackPreGreeting(conn: ConnectionInternals): void {
  const start = Date.now();
  const socket = conn._socket;
  let talk: PreGreetingTalk | null = null;
  let hungUp = false;
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  const onData = (chunk: Buffer): void => {
    socket.off('data', onData);
    if (conn._ready) return;
    talk = { bytes: Buffer.from(chunk.subarray(0, PREGREET_PEEK)), afterMs: Date.now() - start };
    wake();
  };
  const onGone = (): void => {
    hungUp = true;
    wake();
  };
  socket.on('data', onData);
  socket.once('end', onGone);
  socket.once('close', onGone);
  PRE_GREETING.set(conn.session, {
    elapsed: () => Date.now() - start,
    write(text) {
      if (!socket.destroyed && socket.writable) socket.write(text);
    },
    talk: () => talk,
    waitTalk(ms) {
      if (talk || hungUp || ms <= 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        waiters.add(done);
      });
    },
    closed: () => hungUp || conn._closing || conn._closed,
  });
}

// Commands after which even a PIPELINING client must wait for the reply (RFC 2920 3.1).
const SYNC_COMMANDS = new Set(['EHLO', 'HELO', 'DATA', 'STARTTLS', 'AUTH', 'NOOP', 'XCLIENT']);

/**
 * Postfix peeks at its input buffer after such commands; here every chunk is inspected
 * before the parser sees it: a complete command line followed by more bytes in the same
 * chunk means the client did not wait.
 */
function tapPipelining(conn: ConnectionInternals): void {
  conn._socket.on('data', (chunk: Buffer) => {
    if (conn.session.unauthPipelining || !conn._parser || (conn._parser as { _dataMode?: boolean })._dataMode) return;
    const nl = chunk.indexOf(10);
    if (nl < 0 || nl === chunk.length - 1) return;
    const name = chunk.toString('latin1', 0, Math.min(nl, 16)).trim().split(' ')[0]!.toUpperCase();
    if (name === 'QUIT') return;
    if (!conn._ready || conn.openingCommand !== 'EHLO' || SYNC_COMMANDS.has(name)) conn.session.unauthPipelining = true;
  });
}
