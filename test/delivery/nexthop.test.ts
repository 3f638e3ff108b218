/**
 * Tests for delivery/nexthop.ts: next-hop syntax ([host]:port, [ip], [ipv6:...], host,
 * host:port, service names, lists) and resolution against the loopback test DNS server:
 * MX preference order, implicit MX, null MX, NXDOMAIN versus SERVFAIL, MX hosts without
 * addresses, literals without DNS, loop detection (truncation at our own MX, 5.4.6, 4.4.4),
 * the address limit and next-hop lists.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TestDnsServer } from '../fixtures/dns-server.js';
import { createDnsClientFromOptions, type DnsClient } from '../../src/dns/resolver.js';
import { parseNexthop, resolveNexthop, type Destination, type ResolveOptions } from '../../src/delivery/nexthop.js';

describe('parseNexthop', () => {
  const cases: Array<{ text: string; want: Destination[] | string }> = [
    { text: '[127.0.0.1]:2525', want: [{ host: '127.0.0.1', port: 2525, mx: false }] },
    { text: '[192.0.2.1]', want: [{ host: '192.0.2.1', port: 25, mx: false }] },
    { text: '[relay.example.com]:587', want: [{ host: 'relay.example.com', port: 587, mx: false }] },
    { text: '[Relay.Example.COM.]', want: [{ host: 'relay.example.com', port: 25, mx: false }] },
    { text: '[::1]:2525', want: [{ host: '::1', port: 2525, mx: false }] },
    { text: '[ipv6:2001:db8::1]', want: [{ host: '2001:db8::1', port: 25, mx: false }] },
    { text: 'example.com', want: [{ host: 'example.com', port: 25, mx: true }] },
    { text: 'example.com:2525', want: [{ host: 'example.com', port: 2525, mx: true }] },
    { text: 'example.com:submission', want: [{ host: 'example.com', port: 587, mx: true }] },
    { text: '[relay.example.com]:smtp', want: [{ host: 'relay.example.com', port: 25, mx: false }] },
    { text: '192.0.2.7:26', want: [{ host: '192.0.2.7', port: 26, mx: false }] },
    { text: '[a.example]:25, b.example', want: [{ host: 'a.example', port: 25, mx: false }, { host: 'b.example', port: 25, mx: true }] },
    { text: '[127.0.0.1', want: 'missing "]" in next-hop destination "[127.0.0.1"' },
    { text: '[127.0.0.1]x', want: 'bad next-hop destination "[127.0.0.1]x"' },
    { text: 'example.com:99999', want: 'bad port in next-hop destination "example.com:99999"' },
    { text: 'exa mple', want: [{ host: 'exa', port: 25, mx: true }, { host: 'mple', port: 25, mx: true }] },
    { text: 'bad_host!', want: 'bad host name in next-hop destination "bad_host!"' },
    { text: '', want: 'empty next-hop destination' },
  ];
  for (const c of cases) {
    it(`parses ${JSON.stringify(c.text)}`, () => {
      const r = parseNexthop(c.text);
      if (typeof c.want === 'string') assert.deepEqual(r, { ok: false, reason: c.want });
      else assert.deepEqual(r, { ok: true, destinations: c.want });
    });
  }
});

describe('resolveNexthop', () => {
  let server: TestDnsServer;
  let dns: DnsClient;
  const opts = (over: Partial<ResolveOptions> = {}): ResolveOptions => ({ dns, isSelf: () => false, randomize: false, ...over });
  const dest = (text: string): Destination[] => {
    const p = parseNexthop(text);
    assert.ok(p.ok);
    return [...p.destinations];
  };
  const hostsOf = async (text: string, over: Partial<ResolveOptions> = {}): Promise<string[]> => {
    const r = await resolveNexthop(dest(text), opts(over));
    assert.equal(r.kind, 'ok', JSON.stringify(r));
    return r.kind === 'ok' ? r.hosts.map((h) => `${h.hostname}[${h.address}]:${h.port}/${h.preference}`) : [];
  };

  before(async () => {
    server = await TestDnsServer.start({
      'multi.test': {
        MX: [
          { exchange: 'mx20.multi.test', priority: 20 },
          { exchange: 'mx10.multi.test', priority: 10 },
          { exchange: 'mx30.multi.test', priority: 30 },
        ],
      },
      'mx10.multi.test': { A: ['192.0.2.10'], AAAA: ['2001:db8::10'] },
      'mx20.multi.test': { A: ['192.0.2.20'] },
      'mx30.multi.test': { A: ['192.0.2.30', '192.0.2.31'] },
      'implicit.test': { A: ['192.0.2.40'] },
      'nullmx.test': { MX: [{ exchange: '', priority: 0 }] },
      'servfail.test': { behavior: 'servfail' },
      'partial.test': {
        MX: [
          { exchange: 'gone.partial.test', priority: 5 },
          { exchange: 'ok.partial.test', priority: 10 },
        ],
      },
      'ok.partial.test': { A: ['192.0.2.50'] },
      'dangling.test': { MX: [{ exchange: 'gone.dangling.test', priority: 10 }] },
      'nodata.test': { TXT: ['no mail here'] },
      'relay.test': { A: ['192.0.2.60'], MX: [{ exchange: 'mx.elsewhere.test', priority: 10 }] },
      'self.test': {
        MX: [
          { exchange: 'primary.self.test', priority: 10 },
          { exchange: 'backup.self.test', priority: 20 },
          { exchange: 'worse.self.test', priority: 30 },
        ],
      },
      'primary.self.test': { A: ['192.0.2.70'] },
      'backup.self.test': { A: ['127.0.0.1'] },
      'worse.self.test': { A: ['192.0.2.72'] },
      'noprimary.test': {
        MX: [
          { exchange: 'gone.noprimary.test', priority: 10 },
          { exchange: 'backup.self.test', priority: 20 },
        ],
      },
      'onlyself.test': { MX: [{ exchange: 'backup.self.test', priority: 10 }] },
    });
    dns = createDnsClientFromOptions({ servers: [server.address], timeoutMs: 500 });
  });

  after(async () => {
    await server.close();
  });

  it('orders MX hosts by preference, IPv4 before IPv6, with the next-hop port', async () => {
    assert.deepEqual(await hostsOf('multi.test:2525'), [
      'mx10.multi.test[192.0.2.10]:2525/10',
      'mx10.multi.test[2001:db8::10]:2525/10',
      'mx20.multi.test[192.0.2.20]:2525/20',
      'mx30.multi.test[192.0.2.30]:2525/30',
      'mx30.multi.test[192.0.2.31]:2525/30',
    ]);
  });

  it('keeps at most addressLimit addresses', async () => {
    assert.deepEqual(await hostsOf('multi.test', { addressLimit: 2 }), ['mx10.multi.test[192.0.2.10]:25/10', 'mx10.multi.test[2001:db8::10]:25/10']);
  });

  it('shuffles only within one preference', async () => {
    for (let i = 0; i < 5; i++) {
      const hosts = await hostsOf('multi.test', { randomize: true });
      assert.deepEqual(hosts.slice(0, 3), ['mx10.multi.test[192.0.2.10]:25/10', 'mx10.multi.test[2001:db8::10]:25/10', 'mx20.multi.test[192.0.2.20]:25/20']);
    }
  });

  it('uses the domain itself when it has no MX records (implicit MX)', async () => {
    assert.deepEqual(await hostsOf('implicit.test'), ['implicit.test[192.0.2.40]:25/0']);
  });

  it('looks up only the address of [host], never its MX', async () => {
    const before = server.queries.length;
    assert.deepEqual(await hostsOf('[relay.test]:2525'), ['relay.test[192.0.2.60]:2525/0']);
    assert.deepEqual(
      server.queries.slice(before).map((q) => q.type).sort(),
      ['A', 'AAAA'],
    );
  });

  it('asks no DNS for an address literal', async () => {
    const before = server.queries.length;
    assert.deepEqual(await hostsOf('[127.0.0.1]:2525'), ['127.0.0.1[127.0.0.1]:2525/0']);
    assert.deepEqual(await hostsOf('[::1]:2525'), ['::1[::1]:2525/0']);
    assert.equal(server.queries.length, before);
  });

  it('skips an MX host without addresses', async () => {
    assert.deepEqual(await hostsOf('partial.test'), ['ok.partial.test[192.0.2.50]:25/10']);
  });

  it('joins the hosts of a next-hop list in order', async () => {
    assert.deepEqual(await hostsOf('[192.0.2.1]:26, implicit.test'), ['192.0.2.1[192.0.2.1]:26/0', 'implicit.test[192.0.2.40]:25/0']);
  });

  const failures: Array<{ name: string; text: string; status: string; reason: string; over?: Partial<ResolveOptions> }> = [
    { name: 'null MX', text: 'nullmx.test', status: '5.1.10', reason: 'Domain nullmx.test does not accept mail (nullMX)' },
    {
      name: 'a domain that does not exist',
      text: 'nosuch.test',
      status: '5.4.4',
      reason: 'Host or domain name not found. Name service error for name=nosuch.test type=AAAA: Host not found',
    },
    {
      name: 'a domain with neither MX nor address records',
      text: 'nodata.test',
      status: '5.4.4',
      reason: 'Host or domain name not found. Name service error for name=nodata.test type=AAAA: Host found but no data record of requested type',
    },
    {
      name: 'an MX lookup that fails temporarily',
      text: 'servfail.test',
      status: '4.4.3',
      reason: 'Host or domain name not found. Name service error for name=servfail.test type=MX: Host not found, try again',
    },
    {
      name: 'an MX host that does not exist',
      text: 'dangling.test',
      status: '5.4.4',
      reason: 'Host or domain name not found. Name service error for name=gone.dangling.test type=AAAA: Host not found',
    },
    { name: 'our own best MX', text: 'onlyself.test', status: '5.4.6', reason: 'mail for onlyself.test loops back to myself', over: { isSelf: (ip) => ip === '127.0.0.1' } },
    {
      name: 'our own MX when the better ones have no address',
      text: 'noprimary.test',
      status: '4.4.4',
      reason: 'unable to find primary relay for noprimary.test',
      over: { isSelf: (ip) => ip === '127.0.0.1' },
    },
    { name: 'a literal that is our own listener', text: '[127.0.0.1]:2525', status: '5.4.6', reason: 'mail for 127.0.0.1 loops back to myself', over: { isSelf: (ip, port) => ip === '127.0.0.1' && port === 2525 } },
  ];
  for (const c of failures) {
    it(`fails for ${c.name}`, async () => {
      assert.deepEqual(await resolveNexthop(dest(c.text), opts(c.over)), { kind: 'fail', status: c.status, reason: c.reason });
    });
  }

  it('cuts the MX list at our own preference (a backup MX relays to better ones only)', async () => {
    assert.deepEqual(await hostsOf('self.test', { isSelf: (ip, port) => ip === '127.0.0.1' && port === 25 }), ['primary.self.test[192.0.2.70]:25/10']);
  });

  it('is not fooled by 127.0.0.1 on another port', async () => {
    assert.deepEqual(await hostsOf('[127.0.0.1]:2526', { isSelf: (ip, port) => ip === '127.0.0.1' && port === 2525 }), ['127.0.0.1[127.0.0.1]:2526/0']);
  });
});
