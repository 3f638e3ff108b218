/**
 * Router: trivial-rewrite's class defaults and transport(5) overrides, table-driven.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { TableCache } from '../../src/tables/open.js';
import { Router, parseTransport } from '../../src/delivery/router.js';
import type { Problem } from '../../src/errors.js';

let dir: string;

function router(mainCf: string, files: Record<string, string> = {}): { router: Router; problems: Problem[] } {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const base = 'myhostname = gw.example.net\nmydomain = example.net\nmydestination = $myhostname, localhost, example.net\n';
  const config = configFromText(dir, join(dir, 'main.cf'), base + mainCf);
  const tables = new TableCache(dir);
  const problems: Problem[] = [];
  const r = new Router(config, (spec) => tables.open(spec), problems);
  return { router: r, problems };
}

function routeOf(r: Router, addr: string): string {
  const res = r.route(addr);
  if (res.kind === 'fail') return `FAIL ${res.reason}`;
  return `${res.route.transport}:${res.route.nexthop}`;
}

describe('delivery router', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gg-router-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('parses transport:nexthop as transport.c does', () => {
    assert.deepEqual(parseTransport('smtp:[10.0.0.5]:25'), { transport: 'smtp', nexthop: '[10.0.0.5]:25' });
    assert.deepEqual(parseTransport('relay:'), { transport: 'relay', nexthop: '' });
    assert.deepEqual(parseTransport(':[gw.example]'), { transport: '', nexthop: '[gw.example]' });
    assert.deepEqual(parseTransport('local'), { transport: 'local', nexthop: '' });
    assert.deepEqual(parseTransport('error:5.1.1 mailbox unavailable'), { transport: 'error', nexthop: '5.1.1 mailbox unavailable' });
  });

  it('uses the class defaults without transport_maps', () => {
    const { router: r } = router('relay_domains = protected.example\n');
    const cases: Array<[string, string]> = [
      ['alice@gw.example.net', 'local:gw.example.net'],
      ['alice@example.net', 'local:gw.example.net'],
      ['bob@protected.example', 'relay:protected.example'],
      ['carol@elsewhere.example', 'smtp:elsewhere.example'],
      ['carol@ELSEWHERE.example', 'smtp:elsewhere.example'],
    ];
    for (const [a, want] of cases) assert.equal(routeOf(r, a), want, a);
  });

  it('sends relay and default classes to relayhost, never local mail', () => {
    const { router: r } = router('relay_domains = protected.example\nrelayhost = [127.0.0.1]:2526\n');
    assert.equal(routeOf(r, 'bob@protected.example'), 'relay:[127.0.0.1]:2526');
    assert.equal(routeOf(r, 'carol@elsewhere.example'), 'smtp:[127.0.0.1]:2526');
    assert.equal(routeOf(r, 'alice@example.net'), 'local:gw.example.net');
    const res = r.route('carol@elsewhere.example');
    assert.equal(res.kind === 'route' && res.route.rule, 'relayhost');
  });

  it('applies transport_maps with the transport(5) search order and result rules', () => {
    const { router: r, problems } = router('relay_domains = protected.example\nrelayhost = [127.0.0.9]:25\ntransport_maps = hash:transport\nrecipient_delimiter = +\n', {
      transport: [
        'protected.example   smtp:[10.0.0.5]:25',
        'vip@protected.example  relay:[10.0.0.6]',
        '.sub.example        :[10.0.0.7]',
        'slow.example        slow:',
        'kept.example        :',
        'dead.example        error:5.1.2 this domain is gone',
        'later.example       retry:4.4.0 maintenance',
        'drop.example        discard:silently',
        'mine.example        local:',
        '',
      ].join('\n'),
    });
    assert.deepEqual(problems, []);
    const cases: Array<[string, string]> = [
      ['bob@protected.example', 'smtp:[10.0.0.5]:25'],
      ['vip@protected.example', 'relay:[10.0.0.6]'],
      ['vip+tag@protected.example', 'relay:[10.0.0.6]'],
      ['a@x.sub.example', 'smtp:[10.0.0.7]'],
      // ".sub.example" matches subdomains only (transport_maps is not in parent_domain_matches_subdomains)
      ['a@sub.example', 'smtp:[127.0.0.9]:25'],
      // a transport with an empty nexthop resets the nexthop to the recipient domain
      ['a@slow.example', 'slow:slow.example'],
      // an empty result changes nothing
      ['a@kept.example', 'smtp:[127.0.0.9]:25'],
      ['a@dead.example', 'error:5.1.2 this domain is gone'],
      ['a@later.example', 'retry:4.4.0 maintenance'],
      ['a@drop.example', 'discard:silently'],
      ['a@mine.example', 'local:mine.example'],
    ];
    for (const [a, want] of cases) assert.equal(routeOf(r, a), want, a);
    const res = r.route('bob@protected.example');
    assert.match(res.kind === 'route' ? res.route.rule : '', /^transport_maps .*transport:1$/);
  });

  it('honours the * wildcard last, and regexp tables see the full address only', () => {
    const { router: r } = router('transport_maps = hash:wild, regexp:re\n', {
      wild: 'example.org smtp:[10.1.1.1]\n* smtp:[10.9.9.9]:2525\n',
      re: '/^postmaster@/ error:5.7.1 no\n/example\\.com$/ smtp:[10.2.2.2]\n',
    });
    assert.equal(routeOf(r, 'a@example.org'), 'smtp:[10.1.1.1]');
    assert.equal(routeOf(r, 'a@example.com'), 'smtp:[10.2.2.2]');
    assert.equal(routeOf(r, 'postmaster@any.example'), 'error:5.7.1 no');
    assert.equal(routeOf(r, 'a@any.example'), 'smtp:[10.9.9.9]:2525');
  });

  it('tells local domains, and refuses to guess when a table fails', () => {
    const { router: r } = router('transport_maps = hash:missing-file\n');
    assert.equal(r.isLocalDomain('example.net'), true);
    assert.equal(r.isLocalDomain('elsewhere.example'), false);
    assert.match(routeOf(r, 'a@elsewhere.example'), /^FAIL transport_maps lookup/);
  });
});
