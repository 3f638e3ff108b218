/**
 * @module test/mailbox/users
 * SUMMARY: UserStore against a real users.db in a temporary data directory: add/del/passwd/
 * list, one-line UserErrors, exists() seeing another connection's changes (as the CLI makes
 * them while the gateway runs), verify right/wrong/unknown, and the stored hash format.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { UserError } from '../../src/errors.js';
import { UserStore, hashPassword, normalizeUserName, USERS_DB } from '../../src/mailbox/users.js';

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gg-users-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function freshStore(name: string): UserStore {
  return UserStore.open(join(dir, name));
}

describe('user names', () => {
  const cases: Array<{ name: string; input: string; want: string | null }> = [
    { name: 'plain', input: 'alice', want: 'alice' },
    { name: 'folded to lowercase', input: 'Alice.Smith', want: 'alice.smith' },
    { name: 'digits, dot, underscore, dash', input: 'a1_b-c.d', want: 'a1_b-c.d' },
    { name: 'dot-dot', input: '..', want: null },
    { name: 'leading dot', input: '.hidden', want: null },
    { name: 'leading dash', input: '-rf', want: null },
    { name: 'slash', input: 'a/b', want: null },
    { name: 'at sign', input: 'alice@example.org', want: null },
    { name: 'plus', input: 'alice+tag', want: null },
    { name: 'space', input: 'a b', want: null },
    { name: 'empty', input: '', want: null },
    { name: 'non-ASCII', input: 'jürgen', want: null },
    { name: '64 characters', input: 'a'.repeat(64), want: 'a'.repeat(64) },
    { name: '65 characters', input: 'a'.repeat(65), want: null },
  ];
  for (const c of cases) it(c.name, () => assert.equal(normalizeUserName(c.input), c.want));
});

describe('UserStore', () => {
  it('adds, lists, changes passwords and deletes', async () => {
    const store = freshStore('crud');
    try {
      assert.deepEqual(store.list(), []);
      await store.add('bob', 'b-secret');
      await store.add('Alice', 'a-secret');
      assert.deepEqual(store.list(), ['alice', 'bob']);
      assert.equal(store.exists('alice'), true);
      assert.equal(store.exists('ALICE'), true);
      assert.equal(store.exists('carol'), false);
      assert.equal(store.exists('../etc'), false);

      assert.equal(await store.verify('alice', 'a-secret'), true);
      await store.setPassword('alice', 'new-secret');
      assert.equal(await store.verify('alice', 'a-secret'), false);
      assert.equal(await store.verify('alice', 'new-secret'), true);

      store.delete('bob');
      assert.deepEqual(store.list(), ['alice']);
      assert.equal(store.exists('bob'), false);
      assert.equal(await store.verify('bob', 'b-secret'), false);
    } finally {
      store.close();
    }
  });

  it('creates users.db private to its owner', async () => {
    const store = freshStore('mode');
    store.close();
    const st = await stat(join(dir, 'mode', USERS_DB));
    assert.equal(st.mode & 0o777, 0o600);
  });

  const errorCases: Array<{ name: string; act: (s: UserStore) => unknown; message: string | RegExp }> = [
    { name: 'duplicate add', act: (s) => s.add('alice', 'x'), message: 'user alice already exists' },
    { name: 'duplicate add, other case', act: (s) => s.add('ALICE', 'x'), message: 'user alice already exists' },
    { name: 'delete unknown', act: (s) => s.delete('bob'), message: 'no such user: bob' },
    { name: 'passwd unknown', act: (s) => s.setPassword('bob', 'x'), message: 'no such user: bob' },
    { name: 'empty password', act: (s) => s.add('carol', ''), message: 'empty password refused' },
    { name: 'empty new password', act: (s) => s.setPassword('alice', ''), message: 'empty password refused' },
    { name: 'newline in password', act: (s) => s.add('carol', 'a\nb'), message: 'password must not contain NUL, CR or LF' },
    { name: 'unsafe name', act: (s) => s.add('../x', 'pw'), message: /^invalid user name "\.\.\/x": / },
    { name: 'name with newline', act: (s) => s.delete('a\nb'), message: /^invalid user name "a\\nb": [^\n]*$/ },
  ];
  for (const c of errorCases) {
    it(`refuses: ${c.name}`, async () => {
      const store = freshStore(`err-${c.name.replace(/\W+/g, '-')}`);
      try {
        await store.add('alice', 'secret');
        await assert.rejects(
          async () => c.act(store),
          (err: unknown) => {
            assert.ok(err instanceof UserError, `expected UserError, got ${String(err)}`);
            if (typeof c.message === 'string') assert.equal(err.message, c.message);
            else assert.match(err.message, c.message);
            assert.ok(!err.message.includes('\n'));
            return true;
          },
        );
        assert.deepEqual(store.list(), ['alice']);
      } finally {
        store.close();
      }
    });
  }

  it('exists() notices users added and removed by another process', async () => {
    const gateway = freshStore('shared');
    const cli = UserStore.open(join(dir, 'shared'));
    try {
      assert.equal(gateway.exists('dave'), false);
      await cli.add('dave', 'pw');
      assert.equal(gateway.exists('dave'), true);
      cli.delete('dave');
      assert.equal(gateway.exists('dave'), false);
      // A raw write, as an older or foreign tool might make it, is seen too.
      const raw = new Database(join(dir, 'shared', USERS_DB));
      raw.prepare('INSERT INTO users VALUES (?, ?, 0, 0)').run('erin', await hashPassword('pw'));
      raw.close();
      assert.equal(gateway.exists('erin'), true);
      assert.equal(await gateway.verify('erin', 'pw'), true);
    } finally {
      gateway.close();
      cli.close();
    }
  });

  it('survives reopening', async () => {
    const a = freshStore('reopen');
    await a.add('frank', 'pw');
    a.close();
    const b = UserStore.open(join(dir, 'reopen'));
    try {
      assert.deepEqual(b.list(), ['frank']);
      assert.equal(await b.verify('Frank', 'pw'), true);
    } finally {
      b.close();
    }
  });

  it('verify: right, wrong, unknown, invalid, corrupt hash', async () => {
    const store = freshStore('verify');
    try {
      await store.add('gina', 'correct horse');
      const cases: Array<{ name: string; user: string; pw: string; want: boolean }> = [
        { name: 'right', user: 'gina', pw: 'correct horse', want: true },
        { name: 'wrong', user: 'gina', pw: 'correct horsE', want: false },
        { name: 'prefix', user: 'gina', pw: 'correct', want: false },
        { name: 'empty', user: 'gina', pw: '', want: false },
        { name: 'unknown', user: 'nobody', pw: 'correct horse', want: false },
        { name: 'invalid name', user: 'gina@example.org', pw: 'correct horse', want: false },
      ];
      for (const c of cases) assert.equal(await store.verify(c.user, c.pw), c.want, c.name);

      const raw = new Database(join(dir, 'verify', USERS_DB));
      raw.prepare('INSERT INTO users VALUES (?, ?, 0, 0)').run('hank', '$scrypt$N=3,r=8,p=1$xx$yy');
      raw.close();
      assert.equal(await store.verify('hank', 'anything'), false);
    } finally {
      store.close();
    }
  });

  it('normalises passwords to NFC (RFC 8265)', async () => {
    const store = freshStore('nfc');
    try {
      await store.add('ida', 'caf\u00e9');
      assert.equal(await store.verify('ida', 'cafe\u0301'), true);
    } finally {
      store.close();
    }
  });

  it('an unknown user costs about as much as a known one', async () => {
    const store = freshStore('timing');
    try {
      await store.add('jack', 'pw');
      const time = async (user: string): Promise<number> => {
        const t = process.hrtime.bigint();
        for (let i = 0; i < 3; i++) await store.verify(user, 'wrong');
        return Number(process.hrtime.bigint() - t) / 3e6;
      };
      await time('jack');
      const known = await time('jack');
      const unknown = await time('nobody');
      // Generous bounds: only an early return (orders of magnitude faster) must fail this.
      assert.ok(unknown > known / 4, `unknown ${unknown.toFixed(1)} ms vs known ${known.toFixed(1)} ms`);
    } finally {
      store.close();
    }
  });
});

describe('hashPassword', () => {
  it('writes a self-describing scrypt string with a fresh salt', async () => {
    const a = await hashPassword('pw');
    const b = await hashPassword('pw');
    assert.match(a, /^\$scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.notEqual(a, b);
  });
});
