/**
 * @module test/mailbox/login-guard
 * SUMMARY: LoginGuard over a real UserStore: a failure answered only after the delay, a
 * success at once; per-client refusal after N failures (IPv4 per address, IPv6 per /64,
 * ::ffff: mapped addresses as IPv4) that lifts when the window passes; per-user refusal
 * across clients; parallel guesses counted while in flight; a success clearing the user's
 * count but not the client's; a failing user database thrown to the caller.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientKey, LoginGuard } from '../../src/mailbox/login-guard.js';
import { UserStore } from '../../src/mailbox/users.js';

let dir: string;
let users: UserStore;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gg-guard-'));
  users = UserStore.open(dir);
  await users.add('alice', 'secret');
  await users.add('bob', 'hunter2');
});
after(async () => {
  users.close();
  await rm(dir, { recursive: true, force: true });
});

describe('clientKey', () => {
  const cases: Array<[string, string]> = [
    ['192.0.2.7', '192.0.2.7'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:0000:0000:0000:0001', '2001:db8:1:2::/64'],
    ['::1', '0:0:0:0::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
  ];
  for (const [ip, key] of cases) it(`${ip} counts as ${key}`, () => assert.equal(clientKey(ip), key));
});

describe('LoginGuard', () => {
  it('answers a success at once and a failure after the delay', async () => {
    const g = new LoginGuard(users, { failureDelayMs: 300 });
    let t0 = Date.now();
    assert.deepEqual(await g.login('Alice', 'secret', '192.0.2.1'), { kind: 'ok', user: 'alice' });
    const fast = Date.now() - t0;
    t0 = Date.now();
    assert.deepEqual(await g.login('alice', 'wrong', '192.0.2.1'), { kind: 'failed' });
    assert.ok(Date.now() - t0 >= 290, `failure answered after ${Date.now() - t0} ms`);
    assert.ok(fast < 1000, `success took ${fast} ms`);
    assert.deepEqual(await g.login('nobody', 'x', '192.0.2.1'), { kind: 'failed' });
    assert.equal(g.failuresOf('192.0.2.1'), 2);
  });

  it('refuses a client network after too many failures, until the window has passed', async () => {
    const g = new LoginGuard(users, { failureDelayMs: 0, maxFailuresPerClient: 3, windowMs: 600 });
    for (let i = 0; i < 3; i++) assert.equal((await g.login('alice', `bad${i}`, '2001:db8:1:2::1')).kind, 'failed');
    const refused = await g.login('alice', 'secret', '2001:db8:1:2::ffff');
    assert.equal(refused.kind, 'refused');
    assert.ok(refused.kind === 'refused' && refused.by === 'client' && refused.retryAfterMs > 0 && refused.retryAfterMs <= 600);
    assert.equal((await g.login('alice', 'secret', '2001:db8:1:3::1')).kind, 'ok', 'another /64 is not refused');
    assert.equal((await g.login('alice', 'secret', '192.0.2.9')).kind, 'ok');
    await new Promise((r) => setTimeout(r, 650));
    assert.equal((await g.login('alice', 'secret', '2001:db8:1:2::1')).kind, 'ok');
  });

  it('refuses a user name guessed at from many clients; a success clears the user count only', async () => {
    const g = new LoginGuard(users, { failureDelayMs: 0, maxFailuresPerClient: 3, maxFailuresPerUser: 4 });
    for (let i = 0; i < 4; i++) assert.equal((await g.login('bob', 'bad', `198.51.100.${i}`)).kind, 'failed');
    const r = await g.login('bob', 'hunter2', '198.51.100.200');
    assert.ok(r.kind === 'refused' && r.by === 'user');
    assert.equal((await g.login('alice', 'secret', '198.51.100.200')).kind, 'ok');

    const h = new LoginGuard(users, { failureDelayMs: 0, maxFailuresPerClient: 3, maxFailuresPerUser: 3 });
    await h.login('alice', 'bad', '203.0.113.1');
    await h.login('alice', 'bad', '203.0.113.1');
    assert.equal((await h.login('alice', 'secret', '203.0.113.2')).kind, 'ok');
    assert.equal((await h.login('alice', 'bad', '203.0.113.3')).kind, 'failed');
    assert.equal((await h.login('alice', 'bad', '203.0.113.3')).kind, 'failed');
    assert.equal((await h.login('alice', 'secret', '203.0.113.4')).kind, 'ok', 'the user count restarted at the success');
    await h.login('bob', 'bad', '203.0.113.1');
    assert.equal((await h.login('bob', 'hunter2', '203.0.113.1')).kind, 'refused', 'the client count did not');
  });

  it('counts guesses still being checked, so parallel attempts cannot pass the limit', async () => {
    const g = new LoginGuard(users, { failureDelayMs: 0, maxFailuresPerClient: 3 });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => g.login('alice', `guess${i}`, '192.0.2.50')));
    const kinds = results.map((r) => r.kind).sort();
    assert.deepEqual(kinds, [...Array(3).fill('failed'), ...Array(7).fill('refused')]);
  });

  it('throws what the user database throws', async () => {
    const broken = new LoginGuard({ verify: () => Promise.reject(new Error('database is locked')) }, { failureDelayMs: 0 });
    await assert.rejects(broken.login('alice', 'x', '192.0.2.1'), /database is locked/);
    const g = new LoginGuard({ verify: () => Promise.reject(new Error('x')) }, { failureDelayMs: 0, maxFailuresPerClient: 1 });
    await assert.rejects(g.login('alice', 'x', '192.0.2.1'));
    await assert.rejects(g.login('alice', 'x', '192.0.2.1'), 'a database failure is not a failed guess');
  });
});
