/**
 * @module imap/envelope-cache
 * SUMMARY: the compiled ENVELOPE of messages already fetched, so that a later FETCH ENVELOPE
 * (a client resyncing its message list) reads no file, as Dovecot answers it from
 * dovecot.index.cache. Exports EnvelopeCache (get, set; one per IMAP listener, bounded in
 * bytes, oldest entries dropped first) and envelopeKey(). A key names user, folder,
 * UIDVALIDITY and UID, which together name one message's content for good (RFC 3501
 * 2.3.1.1: a UID is never reused within a UIDVALIDITY; Maildir files are never rewritten).
 * DIAGNOSTICS: none; pure memory.
 * SEE ALSO: RFC 3501 2.3.1.1, 7.4.2 (ENVELOPE); Dovecot's mail_cache_fields.
 */
import { atom, compileValue, type ImapAtom, type ImapValue } from './compiler.js';

/** Default bound: about 60,000 typical ENVELOPEs. */
export const DEFAULT_ENVELOPE_CACHE_BYTES = 32 * 1024 * 1024;

/** The cache key of one message's content. */
export function envelopeKey(user: string, folder: string, uidValidity: number, uid: number): string {
  return `${uidValidity}/${uid}/${user}/${folder}`;
}

export class EnvelopeCache {
  private readonly entries = new Map<string, ImapAtom>();
  private bytes = 0;

  constructor(private readonly maxBytes: number = DEFAULT_ENVELOPE_CACHE_BYTES) {}

  /** The ENVELOPE as its exact response bytes (an atom is written verbatim), or undefined. */
  get(key: string): ImapAtom | undefined {
    return this.entries.get(key);
  }

  /** Remember ENVELOPE (as envelope() built it) under KEY; returns what to send. */
  set(key: string, envelope: ImapValue): ImapAtom {
    // latin1 keeps the compiled bytes (literals with 8-bit text included) byte for byte.
    const value = atom(compileValue(envelope).toString('latin1'));
    const size = value.atom.length + key.length;
    if (size > this.maxBytes) return value;
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.atom.length + key.length;
      this.entries.delete(key);
    }
    this.entries.set(key, value);
    this.bytes += size;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.atom.length + k.length;
    }
    return value;
  }
}
