/**
 * The Bloom filter the write-behind cache keeps of its database's keys: never a false
 * "absent" (that would greylist a passed triplet anew), and false "present" answers (a
 * database read each) rare while no more keys than its capacity were added.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeyFilter } from '../../src/greylist/key-filter.js';

const tripletId = (i: number, tag = 'r'): string => `172.16.${(i >> 8) & 255}.0\0bulk@x${i % 13}.spam.example\0${tag}${i}@example.com`;

describe('KeyFilter', () => {
  const cases = [
    { name: 'triplet texts', key: (i: number) => tripletId(i) },
    { name: 'client IPs', key: (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` },
    { name: 'IPv6 and non-ASCII', key: (i: number) => `2001:db8::${i.toString(16)}\0ü${i}@exämple.org` },
  ];
  for (const c of cases) {
    it(`${c.name}: every key added is found, and about 1% of others are (at capacity)`, () => {
      const n = 50_000;
      const f = new KeyFilter(n);
      for (let i = 0; i < n; i++) f.add(c.key(i));
      assert.equal(f.count, n);
      for (let i = 0; i < n; i++) assert.ok(f.has(c.key(i)), `key ${i} added but not found`);
      let false_ = 0;
      for (let i = n; i < 3 * n; i++) if (f.has(c.key(i))) false_++;
      assert.ok(false_ / (2 * n) < 0.02, `false positives ${((100 * false_) / (2 * n)).toFixed(2)}%`);
    });
  }

  it('an empty filter finds nothing; a tiny one still finds what it holds', () => {
    const f = new KeyFilter(1);
    assert.equal(f.has(''), false);
    assert.equal(f.has(tripletId(1)), false);
    f.add('');
    f.add(tripletId(1));
    assert.ok(f.has(''));
    assert.ok(f.has(tripletId(1)));
    assert.equal(f.count, 2);
  });
});
