/**
 * @module greylist/key-filter
 * SUMMARY: a Bloom filter of strings. KeyFilter(capacity): add(key); has(key) false means
 * the key was never added (certain), true that it probably was (about 1% false positives
 * while no more than `capacity` keys were added; `count` says how many were). The
 * write-behind cache keeps one of the keys its database holds, so that a triplet or a
 * client IP never seen before is known to be absent without a database read.
 * DIAGNOSTICS: none (pure; memory is 10 bits per key of capacity, rounded up to a power of 2).
 * SEE ALSO: Kirsch and Mitzenmacher, "Less Hashing, Same Performance: Building a Better
 * Bloom Filter" (two hashes, k probes); greylist/write-behind.ts.
 */

/** 7 probes at 10 bits per key: the optimum (ln 2 * 10) for about 1% false positives. */
const PROBES = 7;
const BITS_PER_KEY = 10;
/** 2^30 bits (128 MiB): more than any greylist needs. */
const MAX_BITS = 2 ** 30;

export class KeyFilter {
  readonly capacity: number;
  private readonly words: Int32Array;
  private readonly mask: number;
  private added = 0;
  private h1 = 0;
  private h2 = 0;

  constructor(capacity: number) {
    this.capacity = Math.max(1, Math.floor(capacity));
    const want = Math.min(MAX_BITS, this.capacity * BITS_PER_KEY);
    let bits = 1024;
    while (bits < want) bits *= 2;
    this.words = new Int32Array(bits >>> 5);
    this.mask = bits - 1;
  }

  /** Keys added so far (with repeats). */
  get count(): number {
    return this.added;
  }

  add(key: string): void {
    this.hash(key);
    const w = this.words;
    for (let k = 0; k < PROBES; k++) {
      const b = (this.h1 + Math.imul(k, this.h2)) & this.mask;
      w[b >>> 5]! |= 1 << (b & 31);
    }
    this.added++;
  }

  has(key: string): boolean {
    this.hash(key);
    const w = this.words;
    for (let k = 0; k < PROBES; k++) {
      const b = (this.h1 + Math.imul(k, this.h2)) & this.mask;
      if ((w[b >>> 5]! & (1 << (b & 31))) === 0) return false;
    }
    return true;
  }

  /** Two 32-bit hashes in one pass (FNV-1a, and a multiply-xorshift one made odd for double hashing). */
  private hash(key: string): void {
    let h1 = 0x811c9dc5;
    let h2 = 0x9747b28c;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    this.h1 = h1;
    this.h2 = h2 | 1;
  }
}
