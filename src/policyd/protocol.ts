/**
 * @module policyd/protocol
 * SUMMARY: the server side of the Postfix policy delegation protocol's framing. A
 * PolicyRequestReader is fed the bytes of one connection and calls back with each request:
 * the "name=value" lines up to the empty line that ends it, "\n" or "\r\n", each name and
 * each value cut to 512 bytes (as postgrey does), the last value winning for a repeated
 * name. Memory stays bounded whatever the peer sends (a line is never held in full).
 * formatPolicyReply() is the one writer of "action=...\n\n".
 * DIAGNOSTICS: a line that is not name=value (no "=", or an empty name) is reported through
 * onGarbage (its first 100 bytes) and skipped; a request with more than MAX_ATTRIBUTES names
 * keeps the first ones and reports the rest once, as garbage.
 * SEE ALSO: SMTPD_POLICY_README "Protocol description"; postgrey 1.37 mux_input().
 */
import { isAscii } from 'node:buffer';

/** Longest name, and longest value, kept (postgrey: substr($1, 0, 512)). */
export const ATTRIBUTE_LIMIT = 512;
/** Distinct names kept per request: Postfix sends about 30. */
export const MAX_ATTRIBUTES = 256;

export type PolicyAttributes = ReadonlyMap<string, string>;

export interface PolicyReaderEvents {
  /** One complete request (the empty line was seen); attrs is empty for a lone empty line. */
  onRequest(attrs: PolicyAttributes): void;
  /** A line that is not name=value, as (at most) its first 100 bytes. */
  onGarbage(line: string): void;
}

const HIGH_BYTE = /[\x80-\xff]/;

/** Names and values are read as bytes (latin1) and decoded as UTF-8 only when needed. */
function decode(s: string): string {
  return HIGH_BYTE.test(s) ? Buffer.from(s, 'latin1').toString('utf8') : s;
}

const same = (s: string): string => s;

export class PolicyRequestReader {
  private readonly ev: PolicyReaderEvents;
  private attrs = new Map<string, string>();
  private overflowReported = false;
  // A line split across chunks: what is kept of it so far (bounded, see append()).
  private partial = false;
  private pName = '';
  private pNameLen = 0;
  private pValue = '';
  private pInValue = false;
  private pRawLen = 0;
  private pLastCr = false;

  constructor(events: PolicyReaderEvents) {
    this.ev = events;
  }

  /** How this chunk's names and values become strings: as they are when it is all ASCII. */
  private decode: (s: string) => string = decode;

  /** Feed the next bytes of the connection. */
  push(chunk: Buffer): void {
    // Postfix sends ASCII (SMTPUTF8 aside): one check per chunk instead of one per value.
    this.decode = isAscii(chunk) ? same : decode;
    const text = chunk.toString('latin1');
    let pos = 0;
    const n = text.length;
    while (pos < n) {
      const nl = text.indexOf('\n', pos);
      if (nl < 0) {
        this.append(text, pos, n);
        return;
      }
      if (this.partial) {
        this.append(text, pos, nl);
        this.endPartialLine();
      } else {
        let end = nl;
        if (end > pos && text.charCodeAt(end - 1) === 13) end--;
        this.line(text, pos, end);
      }
      pos = nl + 1;
    }
  }

  /** A complete line TEXT[start, end) without its line ending. */
  private line(text: string, start: number, end: number): void {
    if (end === start) {
      this.endRequest();
      return;
    }
    const eq = text.indexOf('=', start);
    if (eq < 0 || eq >= end || eq === start) {
      this.ev.onGarbage(decode(text.slice(start, Math.min(end, start + 100))));
      return;
    }
    const name = text.slice(start, Math.min(eq, start + ATTRIBUTE_LIMIT));
    const value = text.slice(eq + 1, Math.min(end, eq + 1 + ATTRIBUTE_LIMIT));
    this.set(this.decode(name), this.decode(value));
  }

  /** Keep what matters of TEXT[start, end), the next piece of a line not yet ended. */
  private append(text: string, start: number, end: number): void {
    if (end <= start) return;
    this.partial = true;
    this.pRawLen += end - start;
    this.pLastCr = text.charCodeAt(end - 1) === 13;
    let from = start;
    if (!this.pInValue) {
      const eq = text.indexOf('=', from);
      const nameEnd = eq < 0 || eq >= end ? end : eq;
      const room = ATTRIBUTE_LIMIT - this.pName.length;
      if (room > 0) this.pName += text.slice(from, Math.min(nameEnd, from + room));
      this.pNameLen += nameEnd - from;
      if (nameEnd === end) return;
      this.pInValue = true;
      from = nameEnd + 1;
    }
    // One byte more than the limit: a trailing "\r" may still have to be dropped.
    const room = ATTRIBUTE_LIMIT + 1 - this.pValue.length;
    if (room > 0 && from < end) this.pValue += text.slice(from, Math.min(end, from + room));
  }

  private endPartialLine(): void {
    const { pName: name, pNameLen: nameLen, pValue: value, pInValue: inValue, pRawLen: rawLen, pLastCr: cr } = this;
    this.partial = false;
    this.pName = '';
    this.pNameLen = 0;
    this.pValue = '';
    this.pInValue = false;
    this.pRawLen = 0;
    this.pLastCr = false;
    if (rawLen - (cr ? 1 : 0) === 0) {
      this.endRequest();
      return;
    }
    if (!inValue || nameLen === 0) {
      const shown = inValue ? `=${value}` : cr && name.length === nameLen ? name.slice(0, -1) : name;
      this.ev.onGarbage(decode(shown.slice(0, 100)));
      return;
    }
    // The "\r" of "\r\n" ends the value only if it was kept (the value fit in the limit + 1).
    const valueRawLen = rawLen - nameLen - 1;
    const kept = cr && value.length === valueRawLen ? value.slice(0, -1) : value;
    this.set(decode(name), decode(kept.slice(0, ATTRIBUTE_LIMIT)));
  }

  private set(name: string, value: string): void {
    if (this.attrs.size >= MAX_ATTRIBUTES && !this.attrs.has(name)) {
      if (!this.overflowReported) this.ev.onGarbage(`more than ${MAX_ATTRIBUTES} attributes in one request; ignoring ${name.slice(0, 60)}...`);
      this.overflowReported = true;
      return;
    }
    this.attrs.set(name, value);
  }

  private endRequest(): void {
    const attrs = this.attrs;
    this.attrs = new Map();
    this.overflowReported = false;
    this.ev.onRequest(attrs);
  }
}

/** The reply to one request: "action=ACTION" and the empty line. */
export function formatPolicyReply(action: string): string {
  // The protocol has no quoting: a value must stay on its line.
  return `action=${action.replace(/[\r\n]+/g, ' ')}\n\n`;
}
