/**
 * Tests for dns/dnsbl.ts: reply filters (Postfix ip_match syntax), list sites, reversed
 * query names, and DnsxlCache against the test DNS server: listed (with TXT), not listed,
 * filtered, "query refused" 127.255.255.x and non-127 answers as errors, timeouts as
 * errors, and caching within the TTL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TestDnsServer } from '../fixtures/dns-server.js';
import { createDnsClientFromOptions } from '../../src/dns/resolver.js';
import { DnsxlCache, clientQuery, parseDnsxlSite, parseReplyFilter } from '../../src/dns/dnsbl.js';

describe('reply filters', () => {
  const cases: Array<{ filter: string; yes: string[]; no: string[] }> = [
    { filter: '127.0.0.2', yes: ['127.0.0.2'], no: ['127.0.0.3'] },
    { filter: '127.0.0.[2..11]', yes: ['127.0.0.2', '127.0.0.11'], no: ['127.0.0.1', '127.0.0.12'] },
    { filter: '127.0.0.[2;4;8..10]', yes: ['127.0.0.2', '127.0.0.4', '127.0.0.9'], no: ['127.0.0.3', '127.0.0.11'] },
    { filter: '127.0.[0..255].[0..3]', yes: ['127.0.10.3'], no: ['127.0.10.4', '127.1.0.0'] },
  ];
  for (const c of cases) {
    it(c.filter, () => {
      const f = parseReplyFilter(c.filter);
      assert.ok(!('error' in f));
      for (const a of c.yes) assert.equal(f.test(a), true, a);
      for (const a of c.no) assert.equal(f.test(a), false, a);
    });
  }
  for (const bad of ['127.0.0', '127.0.0.[2..', '127.0.0.[5..2]', '127.0.0.256', '127.0.0.x', '127.0.0.[2-3]']) {
    it(`rejects ${bad}`, () => assert.ok('error' in parseReplyFilter(bad)));
  }
  it('splits a site into domain and filter', () => {
    const s = parseDnsxlSite('Zen.Example=127.0.0.[2..11]');
    assert.ok(!('error' in s));
    assert.equal(s.domain, 'zen.example');
    assert.equal(s.spec, 'Zen.Example=127.0.0.[2..11]');
    assert.ok('error' in parseDnsxlSite('zen.example=bogus'));
  });
});

describe('reversed query names', () => {
  const cases: Array<[string, string | null]> = [
    ['192.0.2.1', '1.2.0.192'],
    ['::ffff:192.0.2.1', '1.2.0.192'],
    ['2001:db8::1', '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2'],
    ['not-an-ip', null],
  ];
  for (const [ip, q] of cases) it(ip, () => assert.equal(clientQuery(ip), q));
});

describe('DnsxlCache', () => {
  let server: TestDnsServer;
  let now = 1_000_000;
  let cache: DnsxlCache;
  before(async () => {
    server = await TestDnsServer.start({
      '2.0.0.127.bl.example': { A: ['127.0.0.2'], TXT: ['see https://bl.example/2'], ttl: 120 },
      '3.0.0.127.bl.example': { A: ['127.0.0.3', '127.0.0.4'] },
      '4.0.0.127.bl.example': { A: ['127.255.255.254'] },
      '5.0.0.127.bl.example': { A: ['192.0.2.1'] },
      '6.0.0.127.bl.example': { behavior: 'timeout' },
      '7.0.0.127.bl.example': { behavior: 'servfail' },
    });
    cache = new DnsxlCache(createDnsClientFromOptions({ servers: [server.address], timeoutMs: 300 }), () => now);
  });
  after(() => server.close());

  it('reports a listing with its TXT text', async () => {
    assert.deepEqual(await cache.query('2.0.0.127.bl.example', null), { kind: 'listed', addresses: ['127.0.0.2'], txt: 'see https://bl.example/2' });
  });
  it('reports no listing', async () => {
    assert.deepEqual(await cache.query('9.0.0.127.bl.example', null), { kind: 'clean' });
  });
  it('applies the reply filter to any of the answers', async () => {
    const f = parseReplyFilter('127.0.0.[4..5]');
    assert.ok(!('error' in f));
    assert.equal((await cache.query('3.0.0.127.bl.example', f)).kind, 'listed');
    const g = parseReplyFilter('127.0.0.9');
    assert.ok(!('error' in g));
    assert.equal((await cache.query('3.0.0.127.bl.example', g)).kind, 'clean');
  });
  const errors: Array<[string, RegExp]> = [
    ['4.0.0.127.bl.example', /refused the query: 127\.255\.255\.254/],
    ['5.0.0.127.bl.example', /outside 127\.0\.0\.0\/8/],
    ['6.0.0.127.bl.example', /ETIMEOUT/],
    ['7.0.0.127.bl.example', /RBL lookup error/],
  ];
  for (const [name, why] of errors) {
    it(`${name} is an error, not a listing`, async () => {
      const r = await cache.query(name, null);
      assert.equal(r.kind, 'error');
      assert.match(r.kind === 'error' ? r.reason : '', why);
    });
  }
  it('caches answers for their TTL (at most 300 s), errors not at all', async () => {
    const count = (n: string) => server.queries.filter((q) => q.name === n && q.type === 'A').length;
    const before = count('2.0.0.127.bl.example');
    await cache.query('2.0.0.127.bl.example', null);
    assert.equal(count('2.0.0.127.bl.example'), before);
    now += 121_000;
    await cache.query('2.0.0.127.bl.example', null);
    assert.equal(count('2.0.0.127.bl.example'), before + 1);
    const errBefore = count('4.0.0.127.bl.example');
    await cache.query('4.0.0.127.bl.example', null);
    assert.equal(count('4.0.0.127.bl.example'), errBefore + 1);
  });
});
