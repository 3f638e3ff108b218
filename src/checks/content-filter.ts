/**
 * @module checks/content-filter
 * SUMMARY: header_checks and body_checks over a message as it streams in, as Postfix's
 * cleanup applies them. ContentFilter.write(chunk) returns the bytes to store now (a pending
 * header or a partial line is held back until its fate is known; everything else passes
 * through as views of the input), end() returns the rest and the ContentOutcome: reject,
 * discard, hold, redirect, filter, bcc, the decisions to log and a failed lookup. The output
 * is byte-identical to the input except where an action (PREPEND, REPLACE, IGNORE, STRIP)
 * changed it. Memory stays bounded: at most one header (header_size_limit) and one record.
 * DIAGNOSTICS: never throws on content; a table failure becomes `outcome.error` (451 4.3.0).
 * SEE ALSO: header_checks(5), cleanup(8), cleanup_message.c, smtpd.c (end-of-data replies).
 */
import type { Reply } from '../mail/reply.js';
import type { TableError } from '../errors.js';
import {
  ActionState,
  WRITE_ERROR_REPLY,
  rejectReply,
  type ActResult,
  type CheckDecision,
  type CheckTable,
  type CheckWarning,
  type CheckWhere,
} from './actions.js';
import { bodyChecked, checkBody } from './body.js';
import type { CompiledChecks } from './compile.js';
import { checkHeader } from './headers.js';
import { MessageWalker, type HeaderEvent, type WalkerSink } from './message-walk.js';

export interface ContentOutcome {
  /**
   * REJECT (or a MIME nesting error): refuse the message at end of DATA with `reply`,
   * "550 5.7.1 text" or, for a 4.x.x text, "451 4.x.x text".
   */
  reject?: { reply: Reply; rule: string; matched: string; where: CheckWhere | 'mime'; text: string };
  /** DISCARD: answer 250 and drop the message for all recipients. */
  discard?: { text: string; rule: string; matched: string; where: CheckWhere };
  /** HOLD (the first one): queue the message in the hold queue. */
  hold?: { text: string; rule: string; matched: string; where: CheckWhere };
  /** REDIRECT (the last one): replaces all recipients. */
  redirect?: { address: string; rule: string };
  /** FILTER (the last one): the content filter next hop, "transport:destination". */
  filter?: { nexthop: string; rule: string };
  /** BCC recipients to add with NOTIFY=NONE, without duplicates. */
  bcc: Array<{ address: string; rule: string }>;
  /** Every action taken, in order; log each `logged` one once. */
  decisions: CheckDecision[];
  /** Postfix's msg_warn()s: bad action arguments, unknown commands, failed lookups. */
  warnings: CheckWarning[];
  /**
   * A table lookup failed: tempfail with `reply` (451 4.3.0 Error: queue file write error).
   * Set only when it decides the result: a DISCARD or a REJECT takes precedence, as in
   * cleanup_flush() and smtpd's end-of-data reply.
   */
  error?: { reply: Reply; table: CheckTable; error: TableError };
}

export interface ContentFilterOptions {
  /** Also record matches Postfix does not log (DUNNO, OK, IGNORE), for `greygate trace`. */
  readonly trace?: boolean;
}

const CRLF = Buffer.from('\r\n');
const LF_ONLY = Buffer.from('\n');

/**
 * The output side: input chunks are kept as views until released (passed through), skipped
 * (deleted) or preceded by inserted bytes. Positions are absolute offsets in the input.
 */
class Splicer {
  private views: Buffer[] = [];
  private head = 0;
  /** Absolute offset of views[head]. */
  private viewStart = 0;
  /** Absolute offset up to which input has been released or skipped. */
  private done = 0;
  private out: Buffer[] = [];

  append(chunk: Buffer): void {
    if (chunk.length > 0) this.views.push(chunk);
  }

  /** Release input up to P. */
  releaseTo(p: number): void {
    this.advance(p, true);
  }

  /** Drop input up to P. */
  skipTo(p: number): void {
    this.advance(p, false);
  }

  insert(bytes: Buffer): void {
    this.out.push(bytes);
  }

  private advance(p: number, keep: boolean): void {
    while (this.done < p && this.head < this.views.length) {
      const v = this.views[this.head]!;
      const vEnd = this.viewStart + v.length;
      const from = this.done - this.viewStart;
      const to = Math.min(p, vEnd) - this.viewStart;
      if (keep) this.out.push(from === 0 && to === v.length ? v : v.subarray(from, to));
      this.done = this.viewStart + to;
      if (this.done === vEnd) {
        this.head++;
        this.viewStart = vEnd;
      }
    }
    if (this.head > 32 && this.head * 2 > this.views.length) {
      this.views = this.views.slice(this.head);
      this.head = 0;
    }
  }

  take(): Buffer[] {
    const out = this.out;
    this.out = [];
    return out;
  }
}

export class ContentFilter implements WalkerSink {
  private readonly checks: CompiledChecks;
  private readonly state: ActionState;
  private readonly splicer = new Splicer();
  private readonly walker: MessageWalker | null;
  /** The walk can still change something: false once no check or MIME error can apply. */
  private walking: boolean;
  /** The fate of the rest of a truncated header: dropped after REPLACE, IGNORE or STRIP. */
  private dropTail = false;
  private nesting: { text: string } | null = null;
  private ended = false;

  constructor(checks: CompiledChecks, options: ContentFilterOptions = {}) {
    this.checks = checks;
    this.state = new ActionState(options);
    this.walker = checks.active ? new MessageWalker(this, checks.walk) : null;
    this.walking = this.walker !== null;
  }

  write(chunk: Buffer): Buffer[] {
    if (this.ended) throw new Error('ContentFilter.write() after end()');
    if (!this.walking) return chunk.length === 0 ? [] : [chunk];
    this.splicer.append(chunk);
    this.walker!.write(chunk);
    if (this.stillWalking()) this.splicer.releaseTo(this.walker!.holdFrom);
    else {
      // Nothing can change any more: what was held back passes as it is.
      this.walking = false;
      this.splicer.releaseTo(this.walker!.position);
    }
    return this.splicer.take();
  }

  end(): { tail: Buffer[]; outcome: ContentOutcome } {
    if (this.ended) throw new Error('ContentFilter.end() called twice');
    this.ended = true;
    if (this.walker !== null) {
      if (this.walking) this.walker.end();
      this.splicer.releaseTo(this.walker.position);
    }
    return { tail: this.splicer.take(), outcome: this.outcome() };
  }

  private stillWalking(): boolean {
    const s = this.state;
    if (s.discard !== null || s.reject !== null) return false;
    return s.filtering || (this.checks.walk.reportNesting && this.nesting === null);
  }

  /** WalkerSink: a complete logical header. */
  header(h: HeaderEvent): void {
    const r = checkHeader(this.state, this.checks, h);
    this.dropTail = false;
    if (r.kind === 'keep') return;
    const eol = h.bareLf ? LF_ONLY : CRLF;
    this.edit(r, h.rawStart, h.rawEnd, eol, eol);
    this.dropTail = r.kind === 'drop' || r.kind === 'replace';
  }

  /** WalkerSink: more of a header that was decided early (header_size_limit). */
  headerTail(rawStart: number, rawEnd: number): void {
    if (!this.dropTail) return;
    this.splicer.releaseTo(rawStart);
    this.splicer.skipTo(rawEnd);
  }

  /** WalkerSink: one body record. */
  body(_type: number, buf: Buffer, start: number, end: number, offset: number, rawStart: number, rawEnd: number): void {
    if (end === start || !bodyChecked(this.state, this.checks, offset)) return;
    const r = checkBody(this.state, this.checks, buf, start, end, offset);
    if (r.kind === 'keep') return;
    // A replaced record keeps its own line ending (none for a chunk of a longer line).
    const ending = rawEnd - rawStart - (end - start);
    const own = ending === 2 ? CRLF : ending === 1 ? LF_ONLY : Buffer.alloc(0);
    this.edit(r, rawStart, rawEnd, own, ending === 1 ? LF_ONLY : CRLF);
  }

  /** WalkerSink: MIME_ERR_NESTING. */
  nestingError(text: string): void {
    this.nesting = { text };
    const shown = text.length > 100 ? text.slice(0, 100) : text;
    this.state.decisions.push({
      event: 'reject',
      action: 'reject',
      logged: true,
      rule: 'mime_nesting_limit',
      table: 'mime_nesting_limit',
      where: 'mime',
      context: 'mime-error',
      matched: shown,
      text: 'MIME nesting exceeds safety limit',
    });
  }

  /**
   * Apply a header or body result to the raw bytes [rawStart, rawEnd). Inserted lines end
   * like the line they stand before (CRLF unless it ended in a bare LF); Postfix writes a
   * "\n" inside a replacement as a line break, so it becomes one here too.
   */
  private edit(r: ActResult, rawStart: number, rawEnd: number, replacedEnding: Buffer, lineEnding: Buffer): void {
    const sp = this.splicer;
    sp.releaseTo(rawStart);
    if (r.kind === 'prepend') {
      sp.insert(lineBytes(r.text, lineEnding));
      return;
    }
    if (r.kind === 'replace') sp.insert(Buffer.concat([textBytes(r.text, lineEnding), replacedEnding]));
    sp.skipTo(rawEnd);
  }

  private outcome(): ContentOutcome {
    const s = this.state;
    const o: ContentOutcome = { bcc: s.bcc, decisions: s.decisions, warnings: s.warnings };
    // cleanup_flush(): a DISCARD makes every error go away.
    if (s.discard !== null) {
      o.discard = s.discard;
      return o;
    }
    if (s.reject !== null) o.reject = s.reject;
    else if (this.nesting !== null) {
      o.reject = {
        reply: rejectReply('5.6.0', 'MIME nesting exceeds safety limit'),
        rule: 'mime_nesting_limit',
        matched: this.nesting.text.slice(0, 100),
        where: 'mime',
        text: '5.6.0 MIME nesting exceeds safety limit',
      };
    } else if (s.error !== null) {
      o.error = { reply: WRITE_ERROR_REPLY, table: s.error.table, error: s.error.error };
    }
    if (s.hold !== null) o.hold = s.hold;
    if (s.redirect !== null) o.redirect = s.redirect;
    if (s.filter !== null) o.filter = s.filter;
    return o;
  }
}

function textBytes(text: string, eol: Buffer): Buffer {
  const b = Buffer.from(text, 'utf8');
  if (!text.includes('\n')) return b;
  return Buffer.from(text.split('\n').join(eol.toString('latin1')), 'utf8');
}

function lineBytes(text: string, eol: Buffer): Buffer {
  return Buffer.concat([textBytes(text, eol), eol]);
}
