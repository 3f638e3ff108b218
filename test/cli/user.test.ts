/**
 * @module test/cli/user
 * SUMMARY: `greygate user` run in-process through run(args, io) with a fake CliIO: the
 * password from the first line of stdin, list output, one-line UsageError/UserError for
 * bad input, and that the users land in DATA_DIRECTORY/users.db from main.cf.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ConfigError, UsageError, UserError } from '../../src/errors.js';
import type { CliIO } from '../../src/cli/io.js';
import { run } from '../../src/cli/user.js';
import { UserStore } from '../../src/mailbox/users.js';

let root: string;
let configDir: string;
let dataDir: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gg-cli-user-'));
  configDir = join(root, 'rules');
  dataDir = join(root, 'state');
  await mkdir(configDir);
  await writeFile(join(configDir, 'main.cf'), `data_directory = ${dataDir}\nmyhostname = mx.example.org\n`);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Captured {
  io: CliIO;
  out: () => string;
  err: () => string;
}

function fakeIO(stdin: string | string[] = ''): Captured {
  let out = '';
  let err = '';
  const chunks = Array.isArray(stdin) ? stdin : [stdin];
  return {
    io: {
      configDir,
      stdin: Readable.from(chunks.map((c) => Buffer.from(c))),
      out: (t) => {
        out += t;
      },
      err: (t) => {
        err += t;
      },
    },
    out: () => out,
    err: () => err,
  };
}

async function user(args: string[], stdin?: string | string[]): Promise<{ code: number; out: string }> {
  const c = fakeIO(stdin);
  const code = await run(args, c.io);
  assert.equal(c.err(), '');
  return { code, out: c.out() };
}

async function verify(name: string, password: string): Promise<boolean> {
  const store = UserStore.open(dataDir);
  try {
    return await store.verify(name, password);
  } finally {
    store.close();
  }
}

describe('greygate user', () => {
  it('add, list, passwd, del', async () => {
    assert.deepEqual(await user(['add', 'alice', '--password-stdin'], 'alice pw\n'), { code: 0, out: '' });
    assert.deepEqual(await user(['add', '--password-stdin', 'bob'], 'bob-pw\r\nignored second line\n'), { code: 0, out: '' });
    assert.deepEqual(await user(['list']), { code: 0, out: 'alice\nbob\n' });
    assert.equal(await verify('alice', 'alice pw'), true);
    assert.equal(await verify('bob', 'bob-pw'), true);

    assert.equal((await user(['passwd', 'alice', '--password-stdin'], ['new ', 'pass', 'word'])).code, 0);
    assert.equal(await verify('alice', 'alice pw'), false);
    assert.equal(await verify('alice', 'new password'), true);

    assert.deepEqual(await user(['del', 'bob']), { code: 0, out: '' });
    assert.deepEqual(await user(['list']), { code: 0, out: 'alice\n' });
  });

  const failures: Array<{ name: string; args: string[]; stdin?: string; error: typeof UsageError | typeof UserError; message: RegExp }> = [
    { name: 'no subcommand', args: [], error: UsageError, message: /^usage: greygate user add NAME/ },
    { name: 'unknown subcommand', args: ['rename', 'a'], error: UsageError, message: /^user: unknown subcommand "rename"/ },
    { name: 'add without --password-stdin', args: ['add', 'carol'], stdin: 'pw\n', error: UsageError, message: /password is read from standard input/ },
    { name: 'add without a name', args: ['add', '--password-stdin'], stdin: 'pw\n', error: UsageError, message: /^usage: greygate user add NAME --password-stdin$/ },
    { name: 'add with two names', args: ['add', 'a', 'b', '--password-stdin'], stdin: 'pw\n', error: UsageError, message: /^usage: / },
    { name: 'unknown option', args: ['add', 'carol', '--password', 'x'], error: UsageError, message: /^user add: unknown option "--password"$/ },
    { name: 'del takes no password', args: ['del', 'alice', '--password-stdin'], error: UsageError, message: /unknown option "--password-stdin"/ },
    { name: 'list takes no arguments', args: ['list', 'x'], error: UsageError, message: /^usage: greygate user list$/ },
    { name: 'empty password', args: ['add', 'carol', '--password-stdin'], stdin: '\n', error: UserError, message: /^empty password refused/ },
    { name: 'no stdin at all', args: ['add', 'carol', '--password-stdin'], stdin: '', error: UserError, message: /^empty password refused/ },
    { name: 'duplicate', args: ['add', 'alice', '--password-stdin'], stdin: 'pw\n', error: UserError, message: /^user alice already exists$/ },
    { name: 'del unknown', args: ['del', 'bob'], error: UserError, message: /^no such user: bob$/ },
    { name: 'passwd unknown', args: ['passwd', 'bob', '--password-stdin'], stdin: 'pw\n', error: UserError, message: /^no such user: bob$/ },
    { name: 'unsafe name', args: ['add', '../../etc', '--password-stdin'], stdin: 'pw\n', error: UserError, message: /^invalid user name "\.\.\/\.\.\/etc"/ },
  ];
  for (const f of failures) {
    it(`fails: ${f.name}`, async () => {
      await assert.rejects(run(f.args, fakeIO(f.stdin ?? '').io), (err: unknown) => {
        assert.ok(err instanceof f.error, `expected ${f.error.name}, got ${String(err)}`);
        assert.match(err.message, f.message);
        assert.ok(!err.message.includes('\n'), 'one line');
        return true;
      });
    });
  }

  it('decodes a UTF-8 password split across chunks', async () => {
    const bytes = Buffer.from('p\u00e4ss\n');
    const c = fakeIO();
    const io: CliIO = { ...c.io, stdin: Readable.from([bytes.subarray(0, 2), bytes.subarray(2)]) };
    assert.equal(await run(['add', 'utf', '--password-stdin'], io), 0);
    assert.equal(await verify('utf', 'p\u00e4ss'), true);
    assert.equal(await run(['del', 'utf'], fakeIO().io), 0);
  });

  it('reports a missing main.cf as a one-line ConfigError', async () => {
    const io: CliIO = { ...fakeIO().io, configDir: join(root, 'no-such-dir') };
    await assert.rejects(run(['list'], io), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, `${join(root, 'no-such-dir', 'main.cf')}: cannot read configuration: no such file`);
      return true;
    });
  });

  it('left the users as they were after the failures', async () => {
    assert.deepEqual(await user(['list']), { code: 0, out: 'alice\n' });
    assert.equal(await verify('alice', 'new password'), true);
  });
});
