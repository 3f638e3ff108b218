/**
 * Tests for mail/mynetworks.ts: mynetworks patterns (a.b.c.d/len, bare addresses,
 * [ipv6]/len, host names, !exceptions, /file/name, type:table), IPv4-mapped IPv6 clients,
 * and the Problems reported for unusable patterns.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { compileNetworkList, normalizeClientAddress } from '../../src/mail/mynetworks.js';
import { openTable } from '../../src/tables/open.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'restrictions');

function list(items: string[], parentMatches = true) {
  return compileNetworkList(items, { param: 'mynetworks', file: 'main.cf', line: 7, parentMatches, openTable: (s) => openTable(s, FIXTURES) });
}

describe('normalizeClientAddress', () => {
  const cases: Array<[string, string]> = [
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['::FFFF:192.0.2.1', '192.0.2.1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['192.0.2.1', '192.0.2.1'],
    ['fe80::1%eth0', 'fe80::1'],
  ];
  for (const [a, b] of cases) it(`${a} → ${b}`, () => assert.equal(normalizeClientAddress(a), b));
});

describe('mynetworks matching', () => {
  const networks = [
    '127.0.0.0/8',
    '192.0.2.7',
    '10.0.0.0/16',
    '!198.51.100.7',
    '198.51.100.0/24',
    '[2001:db8::]/32',
    '[::1]',
    'trusted.example',
    `${FIXTURES}/networks`,
    'inline:{ 203.0.113.9=ok, relay.example=ok }',
  ];
  const { list: nets, problems } = list(networks);
  it('compiles without problems', () => assert.deepEqual(problems, []));
  const cases: Array<{ addr: string; name?: string; want: boolean }> = [
    { addr: '127.0.0.1', want: true },
    { addr: '::ffff:127.0.0.1', want: true },
    { addr: '192.0.2.7', want: true },
    { addr: '192.0.2.8', want: true }, // from the /file/name: 192.0.2.0/24
    { addr: '10.0.255.1', want: true },
    { addr: '10.1.0.1', want: false },
    { addr: '198.51.100.7', want: false },
    { addr: '198.51.100.8', want: true },
    { addr: '2001:db8:ffff::1', want: true },
    { addr: '2001:db9::1', want: false },
    { addr: '::1', want: true },
    { addr: '0:0:0:0:0:0:0:1', want: true },
    { addr: '203.0.113.9', want: true },
    { addr: '203.0.113.10', want: false },
    { addr: '203.0.113.11', name: 'trusted.example', want: true },
    { addr: '203.0.113.12', name: 'host.trusted.example', want: true },
    { addr: '203.0.113.13', name: 'mail.relay.example', want: true },
    { addr: '203.0.113.14', name: 'untrusted.example', want: false },
  ];
  for (const c of cases) {
    it(`${c.addr}${c.name ? ` (${c.name})` : ''} → ${c.want}`, () => assert.equal(nets.match(c.addr, c.name ?? 'unknown'), c.want));
  }
  it('host names match subdomains only with parent-domain matching, else .domain', () => {
    const strict = list(['trusted.example', '.dot.example'], false).list;
    assert.equal(strict.match('192.0.2.1', 'host.trusted.example'), false);
    assert.equal(strict.match('192.0.2.1', 'trusted.example'), true);
    assert.equal(strict.match('192.0.2.1', 'a.dot.example'), true);
  });
});

describe('mynetworks problems', () => {
  it('reports host bits, bare IPv6, partial addresses and missing files', () => {
    const { list: nets, problems } = list(['10.1.2.3/8', '2001:db8::/32', '1.2.3', '/no/such/file', '192.0.2.0/24']);
    const msgs = problems.map((p) => `${p.severity}: ${p.message}`);
    assert.ok(msgs.some((m) => m.includes('non-null host address bits in "10.1.2.3/8", perhaps you should use "10.0.0.0/8" instead')), msgs.join('\n'));
    assert.ok(msgs.some((m) => m.includes('looks like an IPv6 address: write it as [2001:db8::]/32')), msgs.join('\n'));
    assert.ok(msgs.some((m) => m.startsWith('warning:') && m.includes('"1.2.3"')), msgs.join('\n'));
    assert.ok(msgs.some((m) => m.includes('open file /no/such/file')), msgs.join('\n'));
    for (const p of problems.filter((x) => x.message.startsWith('mynetworks:'))) assert.equal(p.line, 7);
    // Fail closed: a broken pattern reached before a match is an error, never a permit.
    assert.equal(nets.match('192.0.2.1', 'unknown'), 'error');
  });
});
