/**
 * Tests for dns/resolver.ts against the test DNS server: plain lookups, NXDOMAIN versus
 * no-data versus SERVFAIL versus timeout, resolver address parsing, and forward-confirmed
 * reverse DNS (match, mismatch → unknown/forged, no PTR → unknown/perm, timeout → temp).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TestDnsServer } from '../fixtures/dns-server.js';
import { createDnsClientFromOptions, lookupTypes, parseResolverAddress, type DnsClient } from '../../src/dns/resolver.js';

let server: TestDnsServer;
let dns: DnsClient;

before(async () => {
  server = await TestDnsServer.start({
    'mail.example.com': { A: ['192.0.2.10'], AAAA: ['2001:db8::10'], MX: [{ exchange: 'mx.example.com', priority: 10 }], TXT: ['hello', 'v=spf1 -all'] },
    'nullmx.example': { MX: [{ exchange: '', priority: 0 }] },
    'slow.example': { behavior: 'timeout' },
    'broken.example': { behavior: 'servfail' },
    'empty.example': {},
    [TestDnsServer.ptrName('192.0.2.10')]: { PTR: ['mail.example.com'] },
    [TestDnsServer.ptrName('192.0.2.11')]: { PTR: ['mail.example.com'] },
    [TestDnsServer.ptrName('192.0.2.12')]: { PTR: ['nowhere.example'] },
    [TestDnsServer.ptrName('192.0.2.13')]: { behavior: 'timeout' },
    [TestDnsServer.ptrName('192.0.2.14')]: { PTR: ['1.2.3.4'] },
    [TestDnsServer.ptrName('2001:db8::10')]: { PTR: ['mail.example.com'] },
  });
  dns = createDnsClientFromOptions({ servers: [server.address], timeoutMs: 300 });
});

after(async () => {
  await server.close();
});

describe('DnsClient lookups', () => {
  it('answers A, AAAA, MX and TXT', async () => {
    assert.deepEqual(await dns.a('mail.example.com'), { status: 'ok', records: ['192.0.2.10'], ttl: 60 });
    const aaaa = await dns.aaaa('mail.example.com');
    assert.equal(aaaa.status, 'ok');
    assert.deepEqual(aaaa.status === 'ok' && aaaa.records, ['2001:db8::10']);
    const mx = await dns.mx('MAIL.example.com.');
    assert.deepEqual(mx.status === 'ok' && mx.records, [{ exchange: 'mx.example.com', priority: 10 }]);
    const txt = await dns.txt('mail.example.com');
    assert.deepEqual(txt.status === 'ok' && txt.records, ['hello', 'v=spf1 -all']);
  });

  const failures: Array<{ name: string; status: string }> = [
    { name: 'no.such.example', status: 'notfound' },
    { name: 'empty.example', status: 'notfound' },
    { name: 'broken.example', status: 'retry' },
    { name: 'slow.example', status: 'retry' },
  ];
  for (const c of failures) {
    it(`${c.name} → ${c.status}`, async () => {
      const r = await dns.a(c.name);
      assert.equal(r.status, c.status);
    });
  }

  it('summarizes several record types as dns_lookup_l does', async () => {
    assert.equal(await lookupTypes(dns, 'mail.example.com', ['MX', 'A', 'AAAA'], true), 'ok');
    assert.equal(await lookupTypes(dns, 'nullmx.example', ['MX', 'A', 'AAAA'], true), 'nullmx');
    assert.equal(await lookupTypes(dns, 'no.such.example', ['MX', 'A'], true), 'notfound');
    assert.equal(await lookupTypes(dns, 'broken.example', ['A', 'AAAA', 'MX'], false), 'retry');
  });
});

describe('verifiedClientName (FCrDNS)', () => {
  const cases: Array<{ ip: string; name: string; reverseName: string; nameStatus: string }> = [
    { ip: '192.0.2.10', name: 'mail.example.com', reverseName: 'mail.example.com', nameStatus: 'ok' },
    { ip: '::ffff:192.0.2.10', name: 'mail.example.com', reverseName: 'mail.example.com', nameStatus: 'ok' },
    { ip: '2001:db8::10', name: 'mail.example.com', reverseName: 'mail.example.com', nameStatus: 'ok' },
    { ip: '192.0.2.11', name: 'unknown', reverseName: 'mail.example.com', nameStatus: 'forged' },
    { ip: '192.0.2.12', name: 'unknown', reverseName: 'nowhere.example', nameStatus: 'forged' },
    { ip: '192.0.2.99', name: 'unknown', reverseName: 'unknown', nameStatus: 'perm' },
    { ip: '192.0.2.13', name: 'unknown', reverseName: 'unknown', nameStatus: 'temp' },
    { ip: '192.0.2.14', name: 'unknown', reverseName: 'unknown', nameStatus: 'perm' },
  ];
  for (const c of cases) {
    it(`${c.ip} → ${c.name} (${c.nameStatus})`, async () => {
      const r = await dns.verifiedClientName(c.ip);
      assert.equal(r.name, c.name);
      assert.equal(r.reverseName, c.reverseName);
      assert.equal(r.nameStatus, c.nameStatus);
    });
  }
});

describe('dns_resolvers entries', () => {
  const cases: Array<[string, string | null]> = [
    ['127.0.0.1', '127.0.0.1'],
    ['127.0.0.1:5353', '127.0.0.1:5353'],
    ['::1', '[::1]'],
    ['[::1]:5353', '[::1]:5353'],
    ['dns.example', null],
    ['1.2.3.4:99999', null],
  ];
  for (const [input, want] of cases) it(`${input}`, () => assert.equal(parseResolverAddress(input), want));
});
