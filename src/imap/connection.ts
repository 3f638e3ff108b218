/**
 * @module imap/connection
 * SUMMARY: one IMAP client connection: framing through imap/parser's CommandReader, one
 * command at a time through imap/command-table, the state machine (not-authenticated ->
 * authenticated <-> selected -> logout), STARTTLS, the idle timeout, and MailboxView, this
 * session's view of the selected folder (sequence numbers <-> UIDs, its own \Recent, and
 * the EXISTS/EXPUNGE/FETCH updates other sessions' changes owe the client). Exports
 * ImapConnection and MailboxView.
 * DIAGNOSTICS: a handler that throws is answered `NO [SERVERBUG]` and logged (error), never
 * a crash; 20 BADs in a row end the connection as Dovecot does; a disconnect of a logged-in
 * user is one 'disconnect' event.
 * SEE ALSO: RFC 3501 sections 3, 5.2 (mailbox size updates), 5.5 (pipelining), 7.4.1 (when
 * EXPUNGE may be sent); RFC 2595 (STARTTLS); Dovecot imap_idle_notify_interval.
 */
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { FlagUpdate, FolderSnapshot, MailboxChange, UserMailbox } from '../mailbox/mail-store.js';
import { CommandReader, LITERAL_CONTINUATION_TEXT, type ImapCommand, type ImapParseError, type ReaderEvent, type ReaderLimits } from './parser.js';
import { atom, compileContinuation, compileFetch, compileStatus, compileTagged, compileUntagged, flagList, type ResponseCode } from './compiler.js';
import { checkCommand, type Completion, type ImapContext, type ImapSession, type ImapState } from './command-table.js';
import { SERVER_BUG } from './commands/completion.js';

/**
 * One message as the session knows it: the store's own MessageInfo object, shared with every
 * other session that opened the same snapshot, so it is never changed (see MailboxView).
 */
export interface ViewMessage {
  readonly uid: number;
  readonly flags: readonly string[];
  readonly size: number;
  readonly internalDate: number;
}

/** The system flags every folder offers (FLAGS, PERMANENTFLAGS), in Dovecot's order. */
export const SYSTEM_FLAG_LIST = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'] as const;

/**
 * This session's picture of the selected folder. Sequence numbers are positions in
 * `messages`; a message another session expunged stays there (listed in `gone`) until the
 * session may announce the EXPUNGE, so the client's numbering never shifts under it
 * (RFC 3501 7.4.1). SELECT of a large quiet folder must not cost a copy per message: the
 * view starts on the snapshot's own array and copies it only when it first adds or removes
 * a message; flag changes go to `flagOverrides`, never into the shared message objects.
 */
export class MailboxView {
  readonly folder: string;
  readonly readOnly: boolean;
  uidValidity: number;
  uidNext: number;
  /** A change event said new messages (or a folder change) arrived: reopen at the next sync point. */
  dirty = false;
  private messages: readonly ViewMessage[];
  /** Whether `messages` is this view's own array (else the snapshot's, shared). */
  private ownsMessages = false;
  /** Flags that differ from the shared message object's, by UID. */
  private readonly flagOverrides = new Map<number, readonly string[]>();
  /** The snapshot's first-unseen sequence number, while nothing has changed since. */
  private knownFirstUnseen: number | undefined;
  private readonly recent = new Set<number>();
  private readonly gone = new Set<number>();
  private readonly flagChanges = new Set<number>();
  private keywords: Set<string>;
  private keywordsChanged = false;
  /** The EXISTS the client was last told. */
  private announcedExists: number;

  constructor(snapshot: FolderSnapshot, readOnly: boolean) {
    this.folder = snapshot.folder;
    this.readOnly = readOnly;
    this.uidValidity = snapshot.uidValidity;
    this.uidNext = snapshot.uidNext;
    this.keywords = new Set(snapshot.keywords);
    this.messages = snapshot.messages;
    this.knownFirstUnseen = snapshot.firstUnseen;
    // \Recent messages are the newest ones (UID >= the folder's first recent UID): a suffix.
    for (let i = snapshot.messages.length - 1; i >= 0 && snapshot.messages[i]!.recent; i--) this.recent.add(snapshot.messages[i]!.uid);
    this.announcedExists = this.messages.length;
  }

  /** EXISTS as the client knows it after the pending updates: every message, gone ones included. */
  get exists(): number {
    return this.messages.length;
  }

  get recentCount(): number {
    return this.recent.size;
  }

  /** Sequence number SEQ (1-based), or undefined. Its `flags` may be stale: use flagsOf()/storedFlags(). */
  at(seq: number): ViewMessage | undefined {
    return this.messages[seq - 1];
  }

  /** Every UID in sequence order (ascending), gone ones included. */
  uids(): number[] {
    return this.messages.map((m) => m.uid);
  }

  /** The sequence number of UID, or 0. */
  seqOf(uid: number): number {
    let lo = 0;
    let hi = this.messages.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const u = this.messages[mid]!.uid;
      if (u === uid) return mid + 1;
      if (u < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }

  byUid(uid: number): ViewMessage | undefined {
    const seq = this.seqOf(uid);
    return seq === 0 ? undefined : this.messages[seq - 1];
  }

  /** Expunged by someone else and not yet announced. */
  isGone(uid: number): boolean {
    return this.gone.has(uid);
  }

  isRecent(uid: number): boolean {
    return this.recent.has(uid);
  }

  /** The flags of M as this session knows them now (without \Recent). */
  storedFlags(m: ViewMessage): readonly string[] {
    return this.flagOverrides.get(m.uid) ?? m.flags;
  }

  /** The flags FETCH FLAGS shows: the stored ones, plus \Recent when this session has it. */
  flagsOf(m: ViewMessage): string[] {
    const flags = this.storedFlags(m);
    return this.recent.has(m.uid) ? [...flags, '\\Recent'] : [...flags];
  }

  /** FLAGS: the system flags and every keyword in use. */
  flagNames(): string[] {
    return [...SYSTEM_FLAG_LIST, ...[...this.keywords].sort()];
  }

  /** PERMANENTFLAGS: none when read-only; \* says new keywords may be made. */
  permanentFlags(): string[] {
    return this.readOnly ? [] : [...this.flagNames(), '\\*'];
  }

  /** The sequence number of the first message without \Seen, or 0. */
  firstUnseen(): number {
    if (this.knownFirstUnseen !== undefined) return this.knownFirstUnseen;
    const i = this.messages.findIndex((m) => !this.storedFlags(m).includes('\\Seen'));
    return i + 1;
  }

  /** The messages array, made this view's own first (the snapshot's is shared). */
  private ownMessages(): ViewMessage[] {
    if (!this.ownsMessages) {
      this.messages = this.messages.slice();
      this.ownsMessages = true;
    }
    this.knownFirstUnseen = undefined;
    return this.messages as ViewMessage[];
  }

  /** Record that M's flags are FLAGS now. */
  private setFlags(m: ViewMessage, flags: readonly string[]): void {
    this.knownFirstUnseen = undefined;
    if (sameFlags(flags, m.flags)) this.flagOverrides.delete(m.uid);
    else this.flagOverrides.set(m.uid, flags);
  }

  /**
   * Merge a fresh snapshot: vanished messages become gone, new ones are appended, changed
   * flags are queued for FETCH. 'uidvalidity' when the folder was recreated: the client's
   * UIDs mean nothing any more and the session must end (Dovecot does the same).
   */
  merge(snapshot: FolderSnapshot): 'ok' | 'uidvalidity' {
    if (snapshot.uidValidity !== this.uidValidity) return 'uidvalidity';
    this.dirty = false;
    this.uidNext = snapshot.uidNext;
    for (const k of snapshot.keywords) this.addKeyword(k);
    // The same array as ours: nothing changed (a quiet folder's snapshot is reused).
    if (snapshot.messages === this.messages && this.flagOverrides.size === 0) return 'ok';
    const fresh = snapshot.messages;
    const last = this.messages.length > 0 ? this.messages[this.messages.length - 1]!.uid : 0;
    // Both lists ascend by UID: one merge walk, no map of 10,000 entries.
    let j = 0;
    for (const m of this.messages) {
      while (j < fresh.length && fresh[j]!.uid < m.uid) j++;
      const now = j < fresh.length && fresh[j]!.uid === m.uid ? fresh[j] : undefined;
      if (!now) {
        this.gone.add(m.uid);
        continue;
      }
      if (!sameFlags(now.flags, this.storedFlags(m))) {
        this.setFlags(m, now.flags);
        if (!this.gone.has(m.uid)) this.flagChanges.add(m.uid);
      }
    }
    for (; j < fresh.length; j++) {
      const m = fresh[j]!;
      // UIDs only grow (2.3.1.1): whatever is above the last one known is new.
      if (m.uid <= last) continue;
      this.ownMessages().push(m);
      if (m.recent) this.recent.add(m.uid);
      for (const f of m.flags) if (!f.startsWith('\\')) this.addKeyword(f);
    }
    return 'ok';
  }

  /** Another session's expunge. */
  markGone(uids: readonly number[]): void {
    for (const uid of uids) if (this.seqOf(uid) !== 0) this.gone.add(uid);
  }

  /** Another session's flag change. */
  noteFlags(updates: readonly FlagUpdate[]): void {
    for (const u of updates) {
      const m = this.byUid(u.uid);
      if (!m || this.gone.has(u.uid) || sameFlags(this.storedFlags(m), u.flags)) continue;
      this.setFlags(m, u.flags);
      this.flagChanges.add(u.uid);
      for (const f of u.flags) if (!f.startsWith('\\')) this.addKeyword(f);
    }
  }

  /** This session's own STORE: the handler answers for it, nothing is queued. */
  applyOwnFlags(updates: readonly FlagUpdate[]): void {
    for (const u of updates) {
      const m = this.byUid(u.uid);
      if (!m) continue;
      this.setFlags(m, u.flags);
      this.flagChanges.delete(u.uid);
      for (const f of u.flags) if (!f.startsWith('\\')) this.addKeyword(f);
    }
  }

  /**
   * Remove UIDS now and return the `* N EXPUNGE` lines for them, in the numbering of the
   * moment each is sent (RFC 3501 7.4.1's example: 3, 3, 5, 8 for 3, 4, 7, 11).
   */
  expungeNow(uids: Iterable<number>): Buffer[] {
    const seqs: number[] = [];
    for (const uid of uids) {
      const seq = this.seqOf(uid);
      if (seq !== 0) seqs.push(seq);
    }
    seqs.sort((a, b) => a - b);
    const out: Buffer[] = [];
    for (let i = 0; i < seqs.length; i++) out.push(compileUntagged([seqs[i]! - i, atom('EXPUNGE')]));
    const messages = seqs.length > 0 ? this.ownMessages() : [];
    for (let i = seqs.length - 1; i >= 0; i--) {
      const [m] = messages.splice(seqs[i]! - 1, 1);
      if (!m) continue;
      this.flagOverrides.delete(m.uid);
      this.gone.delete(m.uid);
      this.recent.delete(m.uid);
      this.flagChanges.delete(m.uid);
    }
    this.announcedExists -= seqs.length;
    return out;
  }

  /** The untagged updates owed to the client, in an order that keeps its numbering right. */
  updates(allowExpunge: boolean): Buffer[] {
    const out: Buffer[] = [];
    if (allowExpunge && this.gone.size > 0) out.push(...this.expungeNow([...this.gone]));
    if (this.keywordsChanged) {
      this.keywordsChanged = false;
      out.push(compileUntagged([atom('FLAGS'), flagList(this.flagNames())]));
      if (!this.readOnly) out.push(compileStatus('OK', 'Flags permitted.', { name: 'PERMANENTFLAGS', args: [flagList(this.permanentFlags())] }));
    }
    if (this.messages.length !== this.announcedExists) {
      out.push(compileUntagged([this.messages.length, atom('EXISTS')]));
      this.announcedExists = this.messages.length;
      // RECENT always goes with EXISTS, as Dovecot sends them.
      out.push(compileUntagged([this.recent.size, atom('RECENT')]));
    }
    if (this.flagChanges.size > 0) {
      const seqs = [...this.flagChanges].map((uid) => this.seqOf(uid)).filter((s) => s > 0).sort((a, b) => a - b);
      this.flagChanges.clear();
      for (const seq of seqs) {
        const m = this.messages[seq - 1]!;
        out.push(compileFetch(seq, [['UID', m.uid], ['FLAGS', flagList(this.flagsOf(m))]]));
      }
    }
    return out;
  }

  private addKeyword(k: string): void {
    if (this.keywords.has(k)) return;
    this.keywords.add(k);
    this.keywordsChanged = true;
  }
}

function sameFlags(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export interface ConnectionOptions {
  readonly id: string;
  /** Implicit TLS: the socket is a TLSSocket already. */
  readonly implicitTls: boolean;
  /** For STARTTLS; null disables it. */
  readonly secureContext: SecureContext | null;
  readonly idleTimeoutMs: number;
  readonly readerLimits: Partial<ReaderLimits>;
  /** IDLE's "* OK Still here" interval (Dovecot: 2 min). */
  readonly idleNotifyMs: number;
  /** How often IDLE looks at the disk for changes made by other processes. */
  readonly idlePollMs: number;
  /** Called once when the connection is gone. */
  readonly onClose: (c: ImapConnection) => void;
}

/** Dovecot closes a connection after this many BADs in a row. */
const MAX_BAD_COMMANDS = 20;
/** Stop reading from a client that pipelines this much while a command runs. */
const INPUT_HIGH_WATER = 1024 * 1024;

export class ImapConnection implements ImapSession {
  readonly id: string;
  readonly ctx: ImapContext;
  readonly clientIp: string;
  readonly origin: object = {};
  state: ImapState = 'not-authenticated';
  secure: boolean;
  user: string | null = null;
  selected: MailboxView | null = null;
  private socket: Socket;
  private readonly opts: ConnectionOptions;
  private readonly reader: CommandReader;
  private userMailbox: UserMailbox | null = null;
  /** The socket write() corked in this tick (see write()), or null. */
  private corked: Socket | null = null;
  private busy = false;
  private closed = false;
  private badInARow = 0;
  private lineWaiter: ((line: Buffer | null) => void) | null = null;
  /** Resolved (and dropped) by the next change event of the selected folder. */
  private changeSignal: { promise: Promise<void>; resolve: () => void } | null = null;
  private stopListening: (() => void) | null = null;
  private readonly onData = (chunk: Buffer): void => this.received(chunk);

  constructor(ctx: ImapContext, socket: Socket, opts: ConnectionOptions) {
    this.ctx = ctx;
    this.opts = opts;
    this.id = opts.id;
    this.socket = socket;
    this.secure = opts.implicitTls;
    this.clientIp = normalizeIp(socket.remoteAddress ?? '');
    this.reader = new CommandReader(opts.readerLimits);
    this.attach(socket);
  }

  /** Send the greeting and start reading. */
  start(): void {
    this.write(compileStatus('OK', 'greygate ready.', { name: 'CAPABILITY', args: this.capabilities().map(atom) }));
  }

  get mailbox(): UserMailbox {
    if (!this.userMailbox) throw new Error('imap: no mailbox before login');
    return this.userMailbox;
  }

  get view(): MailboxView {
    if (!this.selected) throw new Error('imap: no mailbox selected');
    return this.selected;
  }

  get pendingInput(): number {
    return this.reader.pending;
  }

  capabilities(): string[] {
    const caps = ['IMAP4rev1', 'SASL-IR', 'ID', 'ENABLE', 'IDLE', 'LITERAL+'];
    if (this.state === 'not-authenticated') {
      if (!this.secure && this.opts.secureContext) caps.push('STARTTLS');
      caps.push(this.ctx.plaintextAllowed(this.clientIp, this.secure) ? 'AUTH=PLAIN' : 'LOGINDISABLED');
      return caps;
    }
    caps.push('NAMESPACE', 'UNSELECT', 'UIDPLUS', 'MOVE', 'CHILDREN');
    return caps;
  }

  /**
   * Writes of one turn of the event loop go out together: a command's untagged responses and
   * its tagged reply (SELECT's eight lines) become one writev() and one TCP segment instead
   * of one each, and the client wakes up once. The socket is uncorked on the next tick, so
   * nothing waits longer than the code that wrote it runs (IDLE's continuation, say).
   */
  write(data: Buffer): void {
    if (this.closed || this.socket.destroyed) return;
    if (this.corked === null) {
      this.corked = this.socket;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(data);
  }

  /** Send what write() has gathered now. */
  private readonly uncork = (): void => {
    const sock = this.corked;
    this.corked = null;
    sock?.uncork();
  };

  drained(): Promise<void> {
    // A corked socket never drains: what is gathered must go out before waiting for room.
    this.uncork();
    const sock = this.socket;
    if (this.closed || !sock.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        sock.off('drain', done);
        sock.off('close', done);
        resolve();
      };
      sock.on('drain', done);
      sock.on('close', done);
    });
  }

  readLine(): Promise<Buffer | null> {
    if (this.closed) return Promise.resolve(null);
    this.reader.mode = 'line';
    const ev = this.reader.next();
    if (ev) return Promise.resolve(this.lineOf(ev));
    if (this.socket.isPaused()) this.socket.resume();
    return new Promise((resolve) => {
      this.lineWaiter = resolve;
    });
  }

  private lineOf(ev: ReaderEvent): Buffer | null {
    this.reader.mode = 'command';
    if (ev.kind === 'line') return ev.line;
    // Only an over-long line can come out of line mode: nothing sane can follow it.
    if (ev.kind === 'error') this.writeParseError(ev.error);
    this.end(compileStatus('BYE', 'Line too long.'));
    return null;
  }

  startTls(reply: Buffer): boolean {
    const context = this.opts.secureContext;
    if (this.secure || !context || this.closed) return false;
    const raw = this.socket;
    // The reply must leave in clear text, ahead of anything the TLS socket writes.
    this.uncork();
    raw.off('data', this.onData);
    // From now on the TLS socket keeps the time; the raw one only carries its bytes.
    raw.setTimeout(0);
    raw.write(reply);
    const secured = new TLSSocket(raw, { isServer: true, secureContext: context });
    this.socket = secured;
    this.attach(secured);
    secured.once('secure', () => {
      this.secure = true;
      this.ctx.log.event({ event: 'starttls', service: this.ctx.service, session: this.id, client_ip: this.clientIp, tls_version: secured.getProtocol() ?? '' });
    });
    return true;
  }

  login(user: string): void {
    this.userMailbox = this.ctx.mailboxes.mailbox(user);
    this.user = user;
    this.state = 'authenticated';
    this.stopListening = this.ctx.mailboxes.onChange((u, folder, change, origin) => this.changeEvent(u, folder, change, origin));
  }

  select(snapshot: FolderSnapshot, readOnly: boolean): MailboxView {
    this.selected = new MailboxView(snapshot, readOnly);
    this.state = 'selected';
    return this.selected;
  }

  unselect(): void {
    this.selected = null;
    if (this.state === 'selected') this.state = 'authenticated';
  }

  async refresh(disk: boolean): Promise<void> {
    const view = this.selected;
    if (!view || !this.userMailbox || (!disk && !view.dirty)) return;
    const res = await this.userMailbox.open(view.folder, { claimRecent: !view.readOnly });
    if (this.selected !== view) return;
    if (res.kind !== 'ok') {
      this.end(compileStatus('BYE', 'Selected mailbox was deleted, have to disconnect.'));
      return;
    }
    if (view.merge(res) === 'uidvalidity') this.end(compileStatus('BYE', 'Mailbox UIDVALIDITY changed, have to disconnect.'));
  }

  flushUpdates(allowExpunge: boolean): void {
    if (!this.selected || this.closed) return;
    for (const b of this.selected.updates(allowExpunge)) this.write(b);
  }

  changed(): Promise<void> {
    if (!this.changeSignal) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.changeSignal = { promise, resolve };
    }
    return this.changeSignal.promise;
  }

  private signalChange(): void {
    const signal = this.changeSignal;
    this.changeSignal = null;
    signal?.resolve();
  }

  private changeEvent(user: string, folder: string, change: MailboxChange, origin: unknown): void {
    const view = this.selected;
    if (!view || user !== this.user || folder !== view.folder) return;
    const own = origin === this.origin;
    switch (change.kind) {
      case 'exists':
        view.dirty = true;
        break;
      case 'expunge':
        if (!own) view.markGone(change.uids);
        break;
      case 'flags':
        if (!own) view.noteFlags(change.updates);
        break;
      case 'folder':
        view.dirty = true;
        break;
    }
    if (own && change.kind !== 'exists') return;
    this.signalChange();
  }

  /** Close at the server's initiative (shutdown), with a BYE. */
  shutdown(text = 'Server shutting down.'): void {
    this.end(compileStatus('BYE', text));
  }

  /** Drop the connection at once (the listener's close after its grace time). */
  destroy(): void {
    this.socket.destroy();
    this.cleanup();
  }

  private attach(socket: Socket): void {
    socket.setNoDelay(true);
    socket.setTimeout(this.opts.idleTimeoutMs);
    socket.on('data', this.onData);
    socket.on('timeout', () => {
      if (socket === this.socket) this.end(compileStatus('BYE', 'Disconnected for inactivity.'));
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (socket === this.socket) this.cleanup();
    });
  }

  private received(chunk: Buffer): void {
    if (this.closed) return;
    this.reader.push(chunk);
    if (this.lineWaiter) {
      const ev = this.reader.next();
      if (ev) {
        const w = this.lineWaiter;
        this.lineWaiter = null;
        w(this.lineOf(ev));
      }
      return;
    }
    if (!this.busy) {
      void this.pump();
      return;
    }
    if (this.reader.pending > INPUT_HIGH_WATER) this.socket.pause();
  }

  /** Run what the reader has framed, one command at a time. */
  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (!this.closed) {
        const ev = this.reader.next();
        if (ev === null) break;
        await this.handle(ev);
      }
    } catch (err) {
      this.ctx.log.error(`imap: connection failed: ${(err as Error).message}`, { service: this.ctx.service, session: this.id, stack: (err as Error).stack });
      this.end(compileStatus('BYE', 'Internal error occurred.'));
    } finally {
      this.busy = false;
    }
    if (!this.closed && this.socket.isPaused() && !this.lineWaiter) this.socket.resume();
  }

  private async handle(ev: ReaderEvent): Promise<void> {
    switch (ev.kind) {
      case 'continue':
        this.write(compileContinuation(LITERAL_CONTINUATION_TEXT));
        return;
      case 'line':
        return;
      case 'error':
        this.writeParseError(ev.error);
        if (ev.error.disconnect) this.end(compileStatus('BYE', 'Too long command.'));
        return;
      case 'command':
        if (!ev.result.ok) {
          this.writeParseError(ev.result.error);
          return;
        }
        await this.run(ev.result.value);
    }
  }

  private async run(cmd: ImapCommand): Promise<void> {
    const check = checkCommand(cmd, this.state);
    if (check.kind === 'refuse') {
      this.complete(cmd.tag, check.completion);
      return;
    }
    let result: Completion | 'answered';
    try {
      result = await check.spec.handler(this, cmd);
    } catch (err) {
      this.ctx.log.error(`imap: ${cmd.command} failed: ${(err as Error).message}`, {
        service: this.ctx.service,
        session: this.id,
        user: this.user ?? undefined,
        stack: (err as Error).stack,
      });
      result = SERVER_BUG;
    }
    if (this.closed) return;
    // Nothing more after LOGOUT's BYE but its tagged OK.
    if (this.selected && !(result !== 'answered' && result.close)) {
      try {
        await this.refresh(false);
      } catch (err) {
        this.ctx.log.error(`imap: cannot refresh ${this.selected?.folder ?? ''}: ${(err as Error).message}`, { service: this.ctx.service, session: this.id, user: this.user ?? undefined });
      }
      this.flushUpdates(check.spec.expungeAfter ?? true);
    }
    if (result === 'answered') return;
    this.complete(cmd.tag, result);
    if (result.close) {
      this.state = 'logout';
      this.end(null);
    }
  }

  private complete(tag: string, c: Completion): void {
    if (c.status === 'BAD') {
      if (++this.badInARow >= MAX_BAD_COMMANDS) {
        this.write(compileTagged(tag, c.status, c.text, c.code));
        this.end(compileStatus('BYE', 'Too many invalid IMAP commands.'));
        return;
      }
    } else {
      this.badInARow = 0;
    }
    this.write(compileTagged(tag, c.status, c.text, c.code));
  }

  private writeParseError(e: ImapParseError): void {
    let status: 'BAD' | 'NO' = 'BAD';
    let code: ResponseCode | undefined;
    if (e.code === 'TOOBIG') code = { name: 'TOOBIG' };
    if (e.code === 'BADCHARSET') {
      status = 'NO';
      code = { name: 'BADCHARSET', args: [[atom('US-ASCII'), atom('UTF-8')]] };
    }
    if (e.tag === null) {
      this.write(compileStatus(status, e.message, code));
      if (++this.badInARow >= MAX_BAD_COMMANDS) this.end(compileStatus('BYE', 'Too many invalid IMAP commands.'));
      return;
    }
    this.complete(e.tag, code ? { status, text: e.message, code } : { status, text: e.message });
  }

  /** Write LAST (a BYE) if given, then close gracefully. */
  private end(last: Buffer | null): void {
    if (this.closed) return;
    if (last) this.write(last);
    this.uncork();
    this.closed = true;
    const sock = this.socket;
    sock.end();
    // A client that never reads must not keep the socket (and its buffers) forever.
    setTimeout(() => sock.destroy(), 5000).unref();
    this.cleanup();
  }

  private cleanup(): void {
    if (this.stopListening) {
      this.stopListening();
      this.stopListening = null;
      this.ctx.log.event({
        event: 'disconnect',
        service: this.ctx.service,
        session: this.id,
        client_ip: this.clientIp,
        user: this.user ?? '',
        msg: `imap(${this.user ?? ''}): Disconnected: ${this.state === 'logout' ? 'Logged out' : 'Connection closed'}`,
      });
    }
    this.closed = true;
    this.selected = null;
    const w = this.lineWaiter;
    this.lineWaiter = null;
    w?.(null);
    this.signalChange();
    if (!this.closedNotified) {
      this.closedNotified = true;
      this.opts.onClose(this);
    }
  }

  private closedNotified = false;

  get isClosed(): boolean {
    return this.closed;
  }

  /** For IDLE: the interval settings. */
  get idleTimings(): { notifyMs: number; pollMs: number } {
    return { notifyMs: this.opts.idleNotifyMs, pollMs: this.opts.idlePollMs };
  }
}

/** "::ffff:127.0.0.1" -> "127.0.0.1", as the logs and the loopback test want it. */
function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
