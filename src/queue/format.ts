/**
 * @module queue/format
 * SUMMARY: postqueue's two output formats, byte for byte as Postfix prints them:
 * formatShowq() is `postqueue -p` / mailq (showq_compat.c: the short- or long-queue-ID
 * column layout, `*` active, `!` hold, `#` forced expire, right-aligned `(reason)` lines,
 * the `-- N Kbytes in M Requests.` trailer or `Mail queue is empty`), formatJsonLine() is one
 * `postqueue -j` line (showq_json.c). Times are local time, as asctime(localtime()) gives.
 * DIAGNOSTICS: none; pure.
 * SEE ALSO: postqueue(1) "JSON OBJECT FORMAT", Postfix showq_compat.c, showq_json.c,
 * quote_822_local.c, quote_for_json.c.
 */
import type { ListedMessage } from './admin.js';

/** Postfix empty_address_recipient: how the null sender is shown. */
const EMPTY_ADDR = 'MAILER-DAEMON';

const WDAY = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTH = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const p2 = (n: number): string => String(n).padStart(2, '0');

/** asctime - `Www Mmm dd hh:mm:ss yyyy` in local time (without asctime's newline) */
export function asctime(ms: number): string {
  const d = new Date(ms);
  return `${WDAY[d.getDay()]} ${MONTH[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`;
}

/** printable - control characters become '?' (Postfix printable(s, '?'); UTF-8 is kept) */
export function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

/** quote822Local - quote a local part that is not a dot-string (Postfix quote_822_local) */
export function quote822Local(addr: string): string {
  let start = 0;
  if (addr.startsWith('@')) {
    const colon = addr.indexOf(':');
    if (colon >= 0) start = colon + 1;
  }
  const at = addr.lastIndexOf('@');
  const end = at >= start ? at : addr.length;
  const local = addr.slice(start, end);
  if (isDotString(local)) return addr;
  return addr.slice(0, start) + '"' + local.replace(/["\\\r]/g, (c) => '\\' + c) + '"' + addr.slice(end);
}

function isDotString(local: string): boolean {
  if (local === '' || local.startsWith('.') || local.endsWith('.') || local.includes('..')) return false;
  return !/[\x00-\x20\x7f()<>@,;:\\"[\]]/.test(local);
}

function showAddress(addr: string): string {
  return printable(quote822Local(addr === '' ? EMPTY_ADDR : addr));
}

const padEnd = (s: string, n: number): string => s.padEnd(n, ' ');
const padStart = (s: string, n: number): string => s.padStart(n, ' ');
/* printf's %N.Ns: at most N characters, right-aligned in N. */
const fixed = (s: string, n: number): string => padStart(s.slice(0, n), n);

interface Layout {
  id: number;
  size: number;
  time: number;
  headings: [string, string, string, string];
}

/* showq_compat.c S_* and L_* formats: the column widths depend on enable_long_queue_ids. */
const SHORT: Layout = { id: 11, size: 7, time: 20, headings: ['-Queue ID-', '--Size--', '----Arrival Time----', '-Sender/Recipient-------'] };
const LONG: Layout = { id: 17, size: 8, time: 19, headings: ['----Queue ID-----', '--Size--', '---Arrival Time----', '--Sender/Recipient------'] };

function stringLine(l: Layout, a: string, b: string, c: string, d: string): string {
  return `${padEnd(a, l.id)} ${padStart(b, l.size)} ${padEnd(c, l.time)} ${d}\n`;
}

export interface ShowqOptions {
  /** enable_long_queue_ids: selects Postfix's wider column layout. */
  readonly longQueueIds?: boolean;
}

/** formatShowq - the whole `postqueue -p` output */
export function formatShowq(messages: readonly ListedMessage[], opts: ShowqOptions = {}): string {
  const l = opts.longQueueIds ? LONG : SHORT;
  if (messages.length === 0) return 'Mail queue is empty\n';
  let out = stringLine(l, ...l.headings);
  let total = 0;
  messages.forEach((m, i) => {
    if (i > 0) out += '\n';
    let idStatus = m.id;
    if (m.queue === 'active') idStatus += '*';
    else if (m.queue === 'hold') idStatus += '!';
    if (m.forcedExpire) idStatus += '#';
    // asctime() ends in "yyyy\n"; %20.20s keeps "Www Mmm dd hh:mm:ss " and %19.19s drops the space.
    const when = fixed(asctime(m.arrivalTime) + '\n', l.time);
    out += `${padEnd(idStatus, l.id)} ${padStart(String(m.messageSize), l.size)} ${when} ${showAddress(m.sender)}\n`;
    let saved = '';
    for (const r of m.recipients) {
      const why = printable(r.delayReason ?? '');
      // A "(reason)" line only when the reason changes; an emptied reason is "reason unavailable".
      if (why !== saved) {
        saved = why;
        const show = why || 'reason unavailable';
        out += `${' '.repeat(Math.max(0, 76 - Buffer.byteLength(show)))}(${show})\n`;
      }
      out += stringLine(l, '', '', '', showAddress(r.address));
    }
    total += m.messageSize;
  });
  const n = messages.length;
  out += `\n-- ${Math.floor(total / 1024)} Kbytes in ${n} Request${n === 1 ? '' : 's'}.\n`;
  return out;
}

/** quoteForJson - Postfix quote_for_json(): short escapes, \\u00XX for other controls */
export function quoteForJson(s: string): string {
  return s.replace(/[\x00-\x1f\x7f"\\]/g, (c) => {
    switch (c) {
      case '\b':
        return '\\b';
      case '\f':
        return '\\f';
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      case '"':
        return '\\"';
      case '\\':
        return '\\\\';
      default:
        return `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
    }
  });
}

/**
 * formatJsonLine - one `postqueue -j` object and its newline
 * Strings are made printable first, as showq's ATTR_FLAG_PRINTABLE does, then JSON-quoted.
 * The members are the Postfix 3.5-3.10 set; 3.11's orig_address is not emitted.
 */
export function formatJsonLine(m: ListedMessage): string {
  const q = (s: string): string => `"${quoteForJson(s)}"`;
  const rcpts = m.recipients.map((r) => {
    let o = `{"address": ${q(showAddress(r.address))}`;
    if (r.delayReason) o += `, "delay_reason": ${q(printable(r.delayReason))}`;
    return o + '}';
  });
  return (
    `{"queue_name": ${q(m.queue)}, "queue_id": ${q(m.id)}, "arrival_time": ${Math.floor(m.arrivalTime / 1000)}, ` +
    `"message_size": ${m.messageSize}, "forced_expire": ${m.forcedExpire ? 'true' : 'false'}, ` +
    `"sender": ${q(showAddress(m.sender))}, "recipients": [${rcpts.join(', ')}]}\n`
  );
}
