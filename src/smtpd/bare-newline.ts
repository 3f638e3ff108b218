/**
 * @module smtpd/bare-newline
 * SUMMARY: the DATA byte filter against SMTP smuggling (CVE-2023-51764). Whatever the
 * client sends, what reaches the queue has CRLF line endings only: a bare LF becomes CRLF
 * (Postfix 3.9 smtpd_forbid_bare_newline = normalize) and a stray CR becomes a space
 * (cleanup_replace_stray_cr_lf), so no downstream server ever sees a bare CR or LF.
 * In reject mode process() returns null at the first bare LF; the caller answers
 * "550 5.5.2 Error: bare <LF> received" and disconnects.
 * smtp-server already ends DATA only on CRLF.CRLF; this filter is about what is stored.
 * SEE ALSO: postconf(5) smtpd_forbid_bare_newline, RFC 5321 section 2.3.8.
 */

const CR = 13;
const LF = 10;
const CRLF = Buffer.from('\r\n');
const SPACE = Buffer.from(' ');

export class BareNewlineFilter {
  /** A bare LF or stray CR was seen (and repaired). */
  repaired = false;
  /** The output so far ends with CRLF (or nothing was output). */
  endsWithCrlf = true;
  private pendingCR = false;
  private readonly reject: boolean;

  constructor(reject: boolean) {
    this.reject = reject;
  }

  /** Normalised bytes of CHUNK, or null for a bare LF in reject mode. */
  process(chunk: Buffer): Buffer | null {
    let out: Buffer[] | null = null;
    let start = 0;
    let i = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (chunk[0] === LF) {
        out = [CRLF];
        start = i = 1;
      } else {
        this.repaired = true;
        out = [SPACE];
      }
    }
    const n = chunk.length;
    while (i < n) {
      // indexOf is native; most chunks have only CRLF pairs.
      const lf = chunk.indexOf(LF, i);
      const cr = chunk.indexOf(CR, i);
      if (lf < 0 && cr < 0) break;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        if (cr + 1 === n) {
          (out ??= []).push(chunk.subarray(start, cr));
          start = n;
          this.pendingCR = true;
          break;
        }
        if (chunk[cr + 1] === LF) {
          i = cr + 2;
          continue;
        }
        this.repaired = true;
        (out ??= []).push(chunk.subarray(start, cr), SPACE);
        start = i = cr + 1;
        continue;
      }
      if (this.reject) return null;
      this.repaired = true;
      (out ??= []).push(chunk.subarray(start, lf), CRLF);
      start = i = lf + 1;
    }
    let result: Buffer;
    if (out === null) result = chunk;
    else {
      if (start < n) out.push(chunk.subarray(start));
      result = Buffer.concat(out);
    }
    if (result.length >= 2) this.endsWithCrlf = result[result.length - 2] === CR && result[result.length - 1] === LF;
    else if (result.length === 1) this.endsWithCrlf = false;
    if (this.pendingCR) this.endsWithCrlf = false;
    return result;
  }

  /** Bytes still owed at the end of the message. */
  finish(): Buffer {
    if (this.pendingCR) {
      // A trailing CR: Postfix's record reader would take "...CR" + CRLF as stray CR.
      this.pendingCR = false;
      this.repaired = true;
      this.endsWithCrlf = false;
      return SPACE;
    }
    return Buffer.alloc(0);
  }
}
