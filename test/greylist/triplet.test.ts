/**
 * Triplet keys as postgrey 1.37 builds them. The sender cases' expected values were produced
 * by running postgrey 1.37's own do_sender_substitutions() (Debian's /usr/sbin/postgrey)
 * under perl, followed by its `lc`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import ipaddr from 'ipaddr.js';
import { clientIp, clientNetwork, dottedQuad, formatTripletKey, normalizeSender, tripletKey } from '../../src/greylist/triplet.js';
import { looksIpDerived, orgDomain } from '../../src/greylist/org-domain.js';

const SENDERS: Array<[string, string]> = [
  ['user@example.com', 'user@example.com'],
  ['prvs=1234567890=user@example.com', 'user@example.com'],
  ['prvs=user=0123456789@example.com', 'user@example.com'],
  ['prvs=abcdefghij=klmnopqrst@example.com', 'klmnopqrst@example.com'],
  ['prvs=abc@example.com', 'prvs=abc@example.com'],
  ['prvs=abc=@example.com', 'prvs=abc=@example.com'],
  ['prvs=a=b=c@example.com', 'prvs=a=b=c@example.com'],
  ['user+ext@example.com', 'user@example.com'],
  ['bounce-12345-678@lists.example.com', 'bounce-#-#@lists.example.com'],
  ['a1b2@example.com', 'a1b2@example.com'],
  ['user.123@example.com', 'user.#@example.com'],
  ['', ''],
  ['no-at-sign', 'no-at-sign'],
  ['PRVS=1234567890=User@Example.COM', 'prvs=#=user@example.com'],
  ['prvs=1234567890=user+tag-99@example.com', 'user@example.com'],
  ['12345@example.com', '#@example.com'],
  ['msprvs1=19123abcde=bounce-42@example.com', 'msprvs1=19123abcde=bounce-#@example.com'],
  ['user@123.example.com', 'user@123.example.com'],
  ['a_1@example.com', 'a_1@example.com'],
  ['x-2024-01-05-abc@example.com', 'x-#-#-#-abc@example.com'],
  ['user@@example.com', 'user@@example.com'],
  ['@example.com', '@example.com'],
  ['prvs=0123456789=@example.com', 'prvs=#=@example.com'],
];

describe('normalizeSender (postgrey do_sender_substitutions + lc)', () => {
  for (const [input, expected] of SENDERS) {
    it(JSON.stringify(input), () => assert.equal(normalizeSender(input).toLowerCase(), expected));
  }
});

describe('clientNetwork', () => {
  const cases: Array<[string, number, number, string]> = [
    ['192.0.2.77', 24, 64, '192.0.2.0'],
    ['192.0.2.200', 25, 64, '192.0.2.128'],
    ['192.0.2.77', 16, 64, '192.0.0.0'],
    ['192.0.2.77', 32, 64, '192.0.2.77'],
    ['192.0.2.77', 0, 64, '0.0.0.0'],
    ['::ffff:192.0.2.77', 24, 64, '192.0.2.0'],
    ['2001:db8:1:2:3:4:5:6', 24, 64, '2001:db8:1:2::'],
    ['2001:DB8:1:2:3:4:5:6', 24, 48, '2001:db8:1::'],
    ['2001:db8:1:2:3:4:5:6', 24, 128, '2001:db8:1:2:3:4:5:6'],
    ['2001:db8::1', 24, 60, '2001:db8::'],
    ['not-an-ip', 24, 64, 'not-an-ip'],
  ];
  for (const [addr, v4, v6, expected] of cases) {
    it(`${addr} /${addr.includes(':') && !addr.startsWith('::ffff') ? v6 : v4}`, () => assert.equal(clientNetwork(addr, v4, v6), expected));
  }
  it('the AWL key is the full address, IPv4-mapped IPv6 as IPv4', () => {
    assert.equal(clientIp('::ffff:192.0.2.77'), '192.0.2.77');
    assert.equal(clientIp('2001:DB8:0:0::1'), '2001:db8::1');
  });
});

describe('the dotted-quad fast path', () => {
  // Exactly what ipaddr.js calls a four-part decimal address; everything else takes its path.
  const texts = ['1.2.3.4', '0.0.0.0', '255.255.255.255', '256.1.1.1', '1.2.3.256', '01.2.3.4', '1.2.3.04', '00.1.2.3', '0.1.2.3',
    '1.2.3', '1.2.3.4.5', '1..2.3', '.1.2.3', '1.2.3.', '', 'a.b.c.d', '0x1.2.3.4', '1.2.3.-4', ' 1.2.3.4', '1.2.3.4 ', '999.1.1.1',
    '1.2.3.1000', '192.168.100.200', '::ffff:1.2.3.4', '1.2.3.4%eth0', '１.2.3.4'];
  for (const t of texts) {
    it(JSON.stringify(t), () => {
      const expected = ipaddr.IPv4.isValidFourPartDecimal(t) ? ipaddr.IPv4.parse(t).toByteArray().reduce((n, b) => n * 256 + b, 0) : -1;
      assert.equal(dottedQuad(t), expected);
    });
  }
  it('networks and AWL keys agree with ipaddr.js for random addresses at every prefix', () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 256;
    for (let i = 0; i < 300; i++) {
      const addr = `${rnd()}.${rnd()}.${rnd()}.${rnd()}`;
      assert.equal(clientIp(addr), ipaddr.IPv4.parse(addr).toString());
      for (const prefix of [0, 1, 7, 8, 13, 16, 23, 24, 25, 31, 32]) {
        const bytes = ipaddr.IPv4.parse(addr).toByteArray();
        for (let bit = prefix; bit < 32; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
        assert.equal(clientNetwork(addr, prefix, 64), ipaddr.fromByteArray(bytes).toString(), `${addr}/${prefix}`);
      }
    }
  });
});

describe('tripletKey', () => {
  it('is lc "<client_net>/<sender\'>/<recipient>", the recipient kept with its +ext', () => {
    const k = tripletKey('192.0.2.77', 'Bounce-123+x@Lists.Example.ORG', 'User+Tag@Example.NET', { ipv4Prefix: 24, ipv6Prefix: 64 });
    assert.deepEqual(k, { net: '192.0.2.0', sender: 'bounce-#@lists.example.org', recipient: 'user+tag@example.net' });
    assert.equal(formatTripletKey(k), '192.0.2.0/bounce-#@lists.example.org/user+tag@example.net');
  });
});

describe('orgDomain', () => {
  const cases: Array<[string, string, string | null]> = [
    ['mail-am6eur05on2072.outbound.protection.outlook.com', '40.107.22.72', 'outlook.com'],
    ['mail-sor-f41.google.com', '209.85.220.41', 'google.com'],
    ['a8-30.smtp-out.amazonses.com', '54.240.8.30', 'amazonses.com'],
    ['mx.example.co.uk', '192.0.2.1', 'example.co.uk'],
    ['MX1.Example.COM.', '192.0.2.1', 'example.com'],
    ['unknown', '192.0.2.1', null],
    ['localhost', '127.0.0.1', null],
    ['co.uk', '192.0.2.1', null],
    // Dynamic / pool names spell the address out: no grouping.
    ['c-73-1-2-3.hsd1.ma.comcast.net', '73.1.2.3', null],
    ['3.2.1.73.dyn.example.net', '73.1.2.3', null],
    ['host-1226911747.example.net', '73.33.48.3', null],
    ['ip-49210203.example.net', '73.33.2.3', null],
    // Per-host private suffixes (PSL private section): no registrable domain.
    ['ec2-54-1-2-3.compute-1.amazonaws.com', '54.1.2.3', null],
  ];
  for (const [name, addr, expected] of cases) {
    it(`${name} [${addr}] -> ${expected ?? 'none'}`, () => {
      const o = orgDomain(name, addr);
      if (expected === null) assert.ok('skip' in o, JSON.stringify(o));
      else assert.deepEqual(o, { domain: expected });
    });
  }
  it('looksIpDerived only for the whole address', () => {
    assert.equal(looksIpDerived('a8-30.smtp-out.amazonses.com', '54.240.8.30'), false);
    assert.equal(looksIpDerived('dsl-54-240-8-30.example.net', '54.240.8.30'), true);
    assert.equal(looksIpDerived('host.example.net', '2001:db8::1'), false);
  });
});
