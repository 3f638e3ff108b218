/**
 * @module mail/reply
 * SUMMARY: the SMTP reply as data ({code, status, text}) and its one formatter.
 * formatReply() gives the wire text without CRLF, e.g. "554 5.7.1 <a@b>: Relay access denied".
 * parseReplyText() splits "450 4.2.0 text" or "4.2.0 text" as access(5) results are written.
 * SEE ALSO: RFC 5321 section 4.2, RFC 3463 enhanced status codes.
 */

export interface Reply {
  readonly code: number;
  /** RFC 3463 enhanced status code, e.g. "5.7.1". */
  readonly status: string;
  readonly text: string;
}

export function formatReply(r: Reply): string {
  return `${r.code} ${r.status} ${r.text}`;
}

export function reply(code: number, status: string, text: string): Reply {
  return { code, status, text };
}

const DSN_RE = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/;

/** Leading "X.Y.Z " of TEXT, if any, and the rest. */
export function splitStatus(text: string): { status: string | null; rest: string } {
  const m = DSN_RE.exec(text);
  if (!m) return { status: null, rest: text };
  return { status: `${m[1]}.${m[2]}.${m[3]}`, rest: text.slice(m[0].length) };
}

/** Make STATUS agree with CODE's class (2/4/5), as Postfix does when a table says "450 5.7.1". */
export function alignStatus(code: number, status: string): string {
  const cls = String(code)[0]!;
  return status[0] === cls ? status : `${cls}${status.slice(1)}`;
}
