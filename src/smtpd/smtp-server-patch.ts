/**
 * @module smtpd/smtp-server-patch
 * SUMMARY: the documented patch of smtp-server's connection class. smtp-server is a good
 * protocol core but differs from Postfix where greygate must not, so these methods of
 * SMTPConnection.prototype are wrapped, once, at import:
 *   - init(): the fixed 100 ms early-talker wait before every greeting (which caps one
 *     message per connection at ~10 msg/s per concurrent client) becomes the server option
 *     `greetWaitMs` (postscreen_greet_wait), 0 by default: greet at once.
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
 * Checked against smtp-server 3.21.6 (pinned); test/smtpd covers each behaviour.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

interface PatchedOptions {
  greetWaitMs?: number;
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
  session: Record<string, unknown> & { envelope: { rcptTo: unknown[] } };
  openingCommand: string | false;
  send(code: number, data?: string | string[], context?: string | false): void;
  close(): void;
  connectionReady(next?: () => void): void;
  _setListeners(cb: () => void): void;
  _isSupported(command: string): boolean;
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

export function applySmtpServerPatch(): void {
  if (applied) return;
  applied = true;

  proto.init = function init(this: ConnectionInternals): void {
    tapPipelining(this);
    this._setListeners(() => {
      const opts = this._server.options;
      const max = Number(opts.maxClients) || 0;
      const conns = (this._server as unknown as { connections: Set<unknown> }).connections;
      if (max && conns.size > max) {
        this.send(421, `${String(opts.name)} Error: too many connections`, false);
        return;
      }
      const wait = opts.greetWaitMs ?? 0;
      if (wait > 0) {
        const t = setTimeout(() => this.connectionReady(), wait);
        t.unref();
      } else {
        this.connectionReady();
      }
    });
  };

  proto._sendGreeting = function sendGreeting(this: ConnectionInternals): void {
    const opts = this._server.options;
    this.send(220, opts.greetingText ?? `${String(opts.name)} ESMTP`, false);
  };

  const origSend = proto.send;
  proto.send = function send(this: ConnectionInternals, code: number, data?: string | string[], context?: string | false): void {
    let text = data;
    let ctx = context;
    if (typeof data === 'string') {
      if (DSN_PREFIX.test(data)) ctx = false;
      else if (typeof context === 'string' && POSTFIX_TEXTS[context] && (data === 'Accepted' || context === 'MESSAGE_TOO_BIG')) text = POSTFIX_TEXTS[context];
      else if (code === 250 && (data === 'Flushed' || data === 'OK')) text = 'Ok';
    }
    origSend.call(this, code, text, ctx);
    // smtp-server closes after 421 only; Postfix also hangs up after 521 (access(5)) and
    // after some refusals (bare <LF>), which a handler marks with session.closeAfterReply.
    if (code === 521 || (code >= 400 && this.session.closeAfterReply)) this.close();
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
