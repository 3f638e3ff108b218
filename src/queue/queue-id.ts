/**
 * @module queue/queue-id
 * SUMMARY: Postfix queue IDs. makeQueueId(inode, style) returns the ID of a queue file from
 * the wall-clock microseconds and the file's inode number: short `%05X usec + %X inode`
 * (the default, e.g. `8A3B61C0E2F`) or, with enable_long_queue_ids, the long non-repeating
 * `base52(sec) base52(usec) z base51(inode)` (e.g. `4VgG2x0GQqz9rxK`). The inode is what
 * makes an ID unique among live queue files, across processes and restarts, as in Postfix.
 * isQueueId(s) is mail_queue_id_ok(): the syntax check for names taken from users and dirs.
 * DIAGNOSTICS: none; pure apart from reading the clock.
 * SEE ALSO: Postfix mail_queue.c mail_queue_enter(), mail_queue.h MQID_*, postconf(5)
 * enable_long_queue_ids.
 */

export type QueueIdStyle = 'short' | 'long';

/* Postfix's "safe" alphabet: digits, then upper and lower case without vowels, so an ID
 * never spells a word; ASCII order keeps long IDs sortable by time. */
const SAFE_ALPHABET = '0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz';
const LG_INUM_SEP = 'z';

function encode(value: bigint, base: number, pad: number): string {
  const b = BigInt(base);
  let out = '';
  let v = value;
  do {
    out = SAFE_ALPHABET[Number(v % b)]! + out;
    v /= b;
  } while (v > 0n);
  return out.padStart(pad, '0');
}

/** Wall-clock time as whole seconds and microseconds (gettimeofday()). */
export function clockNow(): { sec: number; usec: number } {
  const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  return { sec: Math.floor(us / 1e6), usec: us % 1e6 };
}

/** makeQueueId - the queue ID for a file with this inode, taken now */
export function makeQueueId(inode: bigint, style: QueueIdStyle, now = clockNow()): string {
  if (style === 'long') {
    return encode(BigInt(now.sec), 52, 6) + encode(BigInt(now.usec), 52, 4) + LG_INUM_SEP + encode(inode, 51, 0);
  }
  return now.usec.toString(16).toUpperCase().padStart(5, '0') + inode.toString(16).toUpperCase();
}

/**
 * isQueueId - true for a string that may name a queue file
 * Postfix accepts any alphanumeric name (a file restored from another host keeps its ID);
 * the length cap and the character set keep every name a safe, plain file name.
 */
export function isQueueId(s: string): boolean {
  return /^[0-9A-Za-z]{1,64}$/.test(s);
}
