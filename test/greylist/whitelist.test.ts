/**
 * postgrey's whitelist formats. Debian's shipped files (copied unchanged from the postgrey
 * 1.37-2 package into test/fixtures/greylist/) must load without a single problem, and
 * match as postgrey does: the expected answers below were produced by postgrey 1.37's own
 * read_clients_whitelists / read_recipients_whitelists code and matching loops, run under
 * perl with NetAddr::IP on the same files.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadWhitelists } from '../../src/greylist/whitelist.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'greylist');
const CLIENTS = join(FIXTURES, 'whitelist_clients');
const RECIPIENTS = join(FIXTURES, 'whitelist_recipients');

describe("Debian's postgrey whitelists", () => {
  const { whitelists, problems } = loadWhitelists({ clients: [CLIENTS], recipients: [RECIPIENTS] });

  it('load unchanged with no problem at all', () => {
    assert.deepEqual(problems, []);
    assert.ok(whitelists.size.clients > 150, `clients: ${whitelists.size.clients}`);
    assert.equal(whitelists.size.recipients, 2);
  });

  // [client name, client address, matches (per postgrey), FILE:LINE we report]
  const clients: Array<[string, string, boolean, number?]> = [
    ['mail-xn1nam02ob0613.outbound.protection.outlook.com', '2a01:222:f400:fe44::613', true, 248],
    ['blabla.example.com', '195.235.39.10', true, 107],
    ['blabla.example.com', '195.235.40.10', false],
    ['mail12.telekom.de', '192.0.2.1', true, 58],
    ['mailx.telekom.de', '192.0.2.1', false],
    ['MAIL12.TELEKOM.DE', '192.0.2.1', true, 58],
    ['xgoogle.com', '192.0.2.1', false],
    ['mail-sor-f41.google.com', '209.85.220.41', true, 160],
    ['smtp12-g3.free.fr', '192.0.2.1', true, 176],
    ['unknown', '2a01:4180:4051:800::25', true, 280],
    ['unknown', '2a01:4180:4051:801::25', false],
    ['unknown', '148.105.200.1', true, 292],
    ['unknown', '148.106.0.1', false],
    ['unknown', '51.4.80.31', true, 278],
    ['unknown', '51.4.80.32', false],
    ['fallback-mx7.atl.registeredsite.com', '192.0.2.1', true, 196],
    // The shipped regex has unescaped dots: "x" matches "." as in postgrey.
    ['fallback-mx7xatl.registeredsite.com', '192.0.2.1', true, 196],
    ['a.b.amazonses.com', '192.0.2.1', true, 255],
    ['amazonses.com.evil.example', '192.0.2.1', false],
    ['unknown', '66.216.126.174', true],
    ['unknown', '::ffff:66.216.126.174', true],
  ];
  for (const [name, addr, match, line] of clients) {
    it(`client ${name}[${addr}] ${match ? 'matches' : 'does not match'}`, () => {
      const hit = whitelists.matchClient(name, addr);
      assert.equal(hit !== null, match, JSON.stringify(hit));
      if (hit && line !== undefined) assert.equal(hit.rule, `${CLIENTS}:${line}`);
    });
  }

  const recipients: Array<[string, boolean, number?]> = [
    ['postmaster@example.org', true, 6],
    ['Postmaster+x@example.org', true, 6],
    ['abuse@', true, 7],
    ['abuse2@example.org', false],
    ['xpostmaster@example.org', false],
  ];
  for (const [rcpt, match, line] of recipients) {
    it(`recipient ${rcpt} ${match ? 'matches' : 'does not match'}`, () => {
      const hit = whitelists.matchRecipient(rcpt);
      assert.equal(hit !== null, match);
      if (hit && line !== undefined) assert.deepEqual(hit, { list: 'recipient', rule: `${RECIPIENTS}:${line}`, entry: rcpt.replace(/\+x/, '').replace(/@.*/, '@').toLowerCase() });
    });
  }
});

describe('whitelist formats', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gg-whitelist-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  const clients = file(
    'clients',
    [
      '# comment line',
      '   example.com   # a comment after an entry',
      '/^mx\\d+\\.regex\\.test$/',
      '198.51.100.7',
      '198.51.100.128/25',
      '203.0.113',
      '10.20',
      '2001:db8:aa::/48',
      '2001:db8:bb::1',
      'bad entry with spaces',
      '/(?=lookahead)/',
      '300.1.2.3',
      '2001:db8::zz',
      '/has space/',
      'unknown',
      '',
    ].join('\n'),
  );
  const recipients = file('recipients', ['user@example.org', 'role@', 'example.net', '/^list-.*@example\\.com$/', 'a b@c', '# end'].join('\n'));
  const { whitelists, problems } = loadWhitelists({ clients: [clients, join(dir, 'clients.local')], recipients: [recipients] });

  it('reports each bad line at FILE:LINE and skips it', () => {
    const got = problems.map((p) => `${p.line} ${p.severity} ${p.message.replace(/: .*$/, '')}`);
    assert.deepEqual(got, [
      '7 warning 10.20',
      '10 warning bad entry with spaces',
      '11 error /(?=lookahead)/',
      '12 warning 300.1.2.3',
      '13 warning 2001:db8::zz',
      '14 warning /has space/',
      '5 warning a b@c',
    ]);
    assert.match(problems[0]!.message, /10\.20\.0\.0\/24 only, not 10\.20\.0\.0\/16/);
    assert.match(problems[2]!.message, /lookahead/);
    assert.deepEqual(problems.map((p) => p.file), [...Array<string>(6).fill(clients), recipients], 'no problem for the missing .local file');
    assert.match(problems[6]!.message, /doesn't look like an address/);
  });

  const cases: Array<[string, string, string | null]> = [
    ['example.com', '192.0.2.1', 'example.com'],
    ['MX.Sub.Example.COM', '192.0.2.1', 'example.com'],
    ['notexample.com', '192.0.2.1', null],
    ['mx12.regex.test', '192.0.2.1', '/^mx\\d+\\.regex\\.test$/'],
    ['MX12.REGEX.TEST', '192.0.2.1', '/^mx\\d+\\.regex\\.test$/'],
    ['other.test', '198.51.100.7', '198.51.100.7'],
    ['other.test', '198.51.100.8', null],
    ['other.test', '198.51.100.200', '198.51.100.128/25'],
    ['other.test', '203.0.113.99', '203.0.113'],
    // postgrey's bug, reproduced: "10.20" is 10.20.0.0/24, not /16.
    ['other.test', '10.20.0.9', '10.20'],
    ['other.test', '10.20.1.9', null],
    ['other.test', '2001:db8:aa:ffff::1', '2001:db8:aa::/48'],
    ['other.test', '2001:db8:bb::1', '2001:db8:bb::1'],
    ['other.test', '2001:db8:bb::2', null],
    // Name entries match only a verified name: "unknown" matches nothing, even the entry "unknown".
    ['unknown', '192.0.2.1', null],
    ['unknown', '198.51.100.7', '198.51.100.7'],
  ];
  for (const [name, addr, entry] of cases) {
    it(`client ${name}[${addr}] -> ${entry ?? 'no match'}`, () => {
      const hit = whitelists.matchClient(name, addr);
      assert.equal(hit?.entry ?? null, entry);
    });
  }

  const rcpts: Array<[string, string | null]> = [
    ['user@example.org', 'user@example.org'],
    ['USER+ext@Example.ORG', 'user@example.org'],
    ['user@sub.example.org', null],
    ['role@anywhere.test', 'role@'],
    ['role+x@anywhere.test', 'role@'],
    ['roles@anywhere.test', null],
    ['x@example.net', 'example.net'],
    ['x@mail.example.net', 'example.net'],
    ['x@notexample.net', null],
    ['list-announce@example.com', '/^list-.*@example\\.com$/'],
  ];
  for (const [rcpt, entry] of rcpts) {
    it(`recipient ${rcpt} -> ${entry ?? 'no match'}`, () => assert.equal(whitelists.matchRecipient(rcpt)?.entry ?? null, entry));
  }

  it('the first entry in file order is reported', () => {
    const p = file('order', ['/\\.example\\.com$/', 'example.com', 'mx.example.com'].join('\n'));
    const { whitelists: w } = loadWhitelists({ clients: [p], recipients: [] });
    assert.equal(w.matchClient('mx.example.com', '192.0.2.1')?.rule, `${p}:1`);
    const q = file('order2', ['mx.example.com', '/\\.example\\.com$/'].join('\n'));
    assert.equal(loadWhitelists({ clients: [q], recipients: [] }).whitelists.matchClient('mx.example.com', '192.0.2.1')?.rule, `${q}:1`);
  });

  it('a missing file is an error; on reload an unreadable file keeps its previous entries', () => {
    const p = file('reload', 'kept.example\n');
    const first = loadWhitelists({ clients: [p], recipients: [] });
    assert.deepEqual(first.problems, []);
    rmSync(p);
    const second = loadWhitelists({ clients: [p], recipients: [] }, { previous: first.whitelists });
    assert.equal(second.problems.length, 1);
    assert.equal(second.problems[0]!.severity, 'error');
    assert.match(second.problems[0]!.message, /no such file; keeping its previous entries/);
    assert.equal(second.whitelists.matchClient('kept.example', '192.0.2.1')?.entry, 'kept.example');
    const fresh = loadWhitelists({ clients: [p], recipients: [] });
    assert.equal(fresh.whitelists.matchClient('kept.example', '192.0.2.1'), null);
  });
});
