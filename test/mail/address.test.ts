/**
 * Tests for mail/address.ts: tokenizing and quoting, extensions, host name syntax, and
 * resolveAddress() — including an open-relay battery of sender-specified routing tricks
 * that must never resolve to an authorized (local or relay) destination without routing.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  isMailhostLiteral,
  isValidHostname,
  quoteLocal,
  resolveAddress,
  splitExtension,
  stripExtension,
  toInternal,
  unquoteLocal,
  type ResolveContext,
} from '../../src/mail/address.js';

const LOCAL = new Set(['local.example', 'localhost']);
const RELAY = ['relay.example'];

const ctx: ResolveContext = {
  myorigin: 'local.example',
  myhostname: 'local.example',
  isLocal(d) {
    const x = d.toLowerCase().replace(/\.$/, '');
    if (LOCAL.has(x)) return true;
    return x === '[127.0.0.1]' || x === '[ipv6:::1]';
  },
  isRelay(d) {
    const x = d.toLowerCase();
    return RELAY.some((r) => x === r || x.endsWith(`.${r}`));
  },
};

/** Authorized as permit_auth_destination decides: local or relay, and not routed. */
function authorized(external: string): boolean {
  const r = resolveAddress(toInternal(external), ctx);
  return !r.fail && !r.routed && (r.class === 'local' || r.class === 'relay');
}

describe('quoting', () => {
  const cases: Array<[string, string]> = [
    ['user@example.com', 'user@example.com'],
    ['first last@example.com', '"first last"@example.com'],
    ['user@evil.com@local.example', '"user@evil.com"@local.example'],
    ['a"b@x', '"a\\"b"@x'],
    ['user%evil@x', 'user%evil@x'],
    ['.user@x', '".user"@x'],
  ];
  for (const [internal, external] of cases) {
    it(`${internal} ⇄ ${external}`, () => {
      assert.equal(quoteLocal(internal), external);
      assert.equal(unquoteLocal(external), internal);
    });
  }
  it('toInternal strips <> and quotes', () => {
    assert.equal(toInternal('<"user@evil"@local.example>'), 'user@evil@local.example');
    assert.equal(toInternal('<user@example.com>'), 'user@example.com');
  });
});

describe('recipient_delimiter', () => {
  const cases: Array<[string, string, string | null]> = [
    ['user+foo', '+', '+foo'],
    ['user-foo', '+-', '-foo'],
    ['user', '+', null],
    ['+foo', '+', null],
    ['owner-list', '-', null],
    ['list-request', '-', null],
    ['postmaster', '+', null],
    ['postmaster+x', '+', '+x'],
  ];
  for (const [local, delim, ext] of cases) {
    it(`${local} with "${delim}"`, () => assert.equal(splitExtension(local, delim).ext, ext));
  }
  it('strips the extension from a full address', () => {
    assert.equal(stripExtension('user+foo@example.com', '+'), 'user@example.com');
    assert.equal(stripExtension('user@example.com', '+'), null);
  });
});

describe('host name syntax', () => {
  const cases: Array<[string, boolean]> = [
    ['mail.example.com', true],
    ['a_b.example', true],
    ['-a.example', false],
    ['a-.example', false],
    ['1.2.3.4', false],
    ['a..b', false],
    ['a.b.', false],
    ['x'.repeat(64) + '.com', false],
  ];
  for (const [name, ok] of cases) it(`${name}`, () => assert.equal(isValidHostname(name), ok));
  it('address literals', () => {
    assert.equal(isMailhostLiteral('[1.2.3.4]'), true);
    assert.equal(isMailhostLiteral('[IPv6:2001:db8::1]'), true);
    assert.equal(isMailhostLiteral('[2001:db8::1]'), false);
    assert.equal(isMailhostLiteral('[1.2.3]'), false);
  });
});

describe('resolveAddress', () => {
  const cases: Array<{ addr: string; recipient: string; cls: string; routed: boolean }> = [
    { addr: 'user@local.example', recipient: 'user@local.example', cls: 'local', routed: false },
    { addr: 'USER@LOCAL.EXAMPLE', recipient: 'user@local.example', cls: 'local', routed: false },
    { addr: 'user@local.example.', recipient: 'user@local.example', cls: 'local', routed: false },
    { addr: 'user', recipient: 'user@local.example', cls: 'local', routed: false },
    { addr: 'user@relay.example', recipient: 'user@relay.example', cls: 'relay', routed: false },
    { addr: 'user@sub.relay.example', recipient: 'user@sub.relay.example', cls: 'relay', routed: false },
    { addr: 'user@remote.example', recipient: 'user@remote.example', cls: 'default', routed: false },
    { addr: 'user%evil.com@local.example', recipient: 'user@evil.com', cls: 'default', routed: false },
    { addr: 'evil.com!user@local.example', recipient: 'user@evil.com', cls: 'default', routed: false },
    { addr: 'user@evil.com@local.example', recipient: 'user@evil.com', cls: 'default', routed: false },
    { addr: '@local.example:user@evil.com', recipient: 'user@evil.com', cls: 'default', routed: false },
    { addr: '@evil.com:user@local.example', recipient: 'user@local.example', cls: 'local', routed: false },
    { addr: 'user%evil.com@relay.example', recipient: 'user%evil.com@relay.example', cls: 'relay', routed: true },
    { addr: 'user@[127.0.0.1]', recipient: 'user@[127.0.0.1]', cls: 'local', routed: false },
    { addr: '', recipient: 'mailer-daemon@local.example', cls: 'local', routed: false },
  ];
  for (const c of cases) {
    it(`${c.addr || '<>'} → ${c.recipient} (${c.cls}${c.routed ? ', routed' : ''})`, () => {
      const r = resolveAddress(c.addr, ctx);
      assert.equal(r.recipient, c.recipient);
      assert.equal(r.class, c.cls);
      assert.equal(r.routed, c.routed);
      assert.equal(r.fail, false);
    });
  }
  it('reports a failing domain lookup', () => {
    const r = resolveAddress('user@x.example', { ...ctx, isLocal: () => 'error' });
    assert.equal(r.fail, true);
  });
});

describe('open-relay battery: never an authorized destination', () => {
  const tricks = [
    'user%evil.com@local.example',
    'evil.com!user@local.example',
    '@local.example:user@evil.com',
    '@local.example,@local.example:user@evil.com',
    'user@evil.com@local.example',
    'user@evil.com@LOCAL.EXAMPLE.',
    '"user@evil.com"@local.example',
    '"user%evil.com"@local.example',
    '"evil.com!user"@local.example',
    'user%evil.com%local.example@local.example',
    'user@[1.2.3.4]',
    'user@[IPv6:2001:db8::1]',
    'user@evil.com',
    'user@evil.com.local.example.',
    'user@local.example.evil.com',
    'user%evil.com@relay.example',
    'evil.com!user@relay.example',
    'user@evil.com@relay.example',
    '"user@evil.com"@relay.example',
    'user@local.example@evil.com',
    'user\\@evil.com@local.example',
  ];
  for (const addr of tricks) {
    it(addr, () => assert.equal(authorized(addr), false));
  }
  const legit = ['user@local.example', 'USER@LOCAL.EXAMPLE', 'user@local.example.', 'user@[127.0.0.1]', 'user@relay.example', 'user@relay.example.', 'user+tag@local.example', '"first last"@local.example'];
  for (const addr of legit) {
    it(`legitimate: ${addr}`, () => assert.equal(authorized(addr), true));
  }
});
