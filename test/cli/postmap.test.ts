/**
 * @module test/cli/postmap
 * SUMMARY: `greygate postmap` run in-process through run(args, io): -q KEY and -q - with
 * their exit statuses, the first table with the key answering, lazy opening, -j, problems on
 * stderr as FILE:LINE, a surrogate or a lookup failure as TableError (exit 1 through main),
 * usage errors, the no -q "check" mode, and -h/-b/-hb on a message — compared with the real
 * Postfix postmap when it is installed (required under CI=true).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { TableError, UsageError } from '../../src/errors.js';
import { main } from '../../src/cli/main.js';
import { messageKeys, headerNameLength } from '../../src/cli/postmap.js';
import { FIXTURES, postmapUnavailable, realPostmap, runOurPostmap } from '../tables/golden-format.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-cli-postmap-'));
  writeFileSync(join(dir, 'access'), 'example.com REJECT spam source\nfriend.example OK\nkeyonly\n');
  writeFileSync(join(dir, 'more'), 'example.com OK second table\nother.example DUNNO\n');
  writeFileSync(join(dir, 'checks'), '/^Subject: (.*)/ REJECT subject $1\n/(unclosed/ broken\n');
  for (const f of ['regexp-hb.map', 'postmap-message.eml', 'postmap-message-crlf.eml']) copyFileSync(join(FIXTURES, f), join(dir, f));
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(dir, 'regexp-hb.map'), past, past);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const ours = (args: string[], stdin = '') => runOurPostmap(args, dir, stdin);

describe('greygate postmap -q', () => {
  it('prints the value and exits 0 on a hit, exits 1 silently on a miss', async () => {
    assert.deepEqual(await ours(['-q', 'EXAMPLE.COM', 'hash:access']), {
      status: 0,
      stdout: 'REJECT spam source\n',
      stderr: 'access:3: expected format: key whitespace value -- ignoring this line\n',
    });
    const miss = await ours(['-q', 'nowhere.example', 'hash:access']);
    assert.equal(miss.status, 1);
    assert.equal(miss.stdout, '');
  });

  it('a name without TYPE: is hash:, as default_database_type', async () => {
    assert.equal((await ours(['-q', 'friend.example', 'access'])).stdout, 'OK\n');
  });

  it('several tables: the first that has the key answers; later ones open only when needed', async () => {
    assert.equal((await ours(['-q', 'example.com', 'hash:more', 'hash:access'])).stdout, 'OK second table\n');
    assert.equal((await ours(['-q', 'friend.example', 'hash:more', 'hash:access'])).stdout, 'OK\n');
    const lazy = await ours(['-q', 'example.com', 'hash:more', 'regexp:missing']);
    assert.equal(lazy.status, 0);
  });

  it('-q - reads keys from stdin and prints key<TAB>value per hit', async () => {
    const r = await ours(['-q', '-', 'hash:access', 'hash:more'], 'example.com\nnone\nother.example\nFriend.Example\n');
    assert.equal(r.stdout, 'example.com\tREJECT spam source\nother.example\tDUNNO\nFriend.Example\tOK\n');
    assert.equal(r.status, 0);
    assert.equal((await ours(['-q', '-', 'hash:access'], 'none\n')).status, 1);
  });

  it('-j prints JSON', async () => {
    assert.equal((await ours(['-j', '-q', 'example.com', 'hash:access'])).stdout, '{"example.com": "REJECT spam source"}\n');
  });

  it('load problems go to stderr as FILE:LINE and the query goes on', async () => {
    const r = await ours(['-q', 'Subject: hi', 'regexp:checks']);
    assert.equal(r.stdout, 'REJECT subject hi\n');
    assert.equal(r.stderr, 'checks:2: Unmatched ( or \\(: skipping this rule\n');
  });

  it('an empty result is printed with Postfix’s warning', async () => {
    const r = await ours(['-q', 'a', 'inline:{ a= }']);
    assert.equal(r.stdout, '\n');
    assert.match(r.stderr, /empty string result is not allowed/);
  });

  it('a table that cannot be opened is a TableError (exit 1)', async () => {
    const r = await ours(['-q', 'x', 'regexp:missing']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^regexp:missing: open missing: No such file or directory$/m);
    const io = { configDir: dir, stdin: Readable.from([]), out: () => {}, err: () => {} };
    const { run } = await import('../../src/cli/postmap.js');
    await assert.rejects(run(['-q', 'x', 'nosuchtype:x'], io), (e: unknown) => e instanceof TableError && /unsupported dictionary type: nosuchtype/.test(e.message));
  });

  it('through main: -c anywhere, exit 1 with one line for a broken table', async () => {
    let out = '';
    let err = '';
    const io = { stdin: Readable.from([]), out: (t: string) => (out += t), err: (t: string) => (err += t) };
    assert.equal(await main(['postmap', '-q', 'example.com', 'hash:access', '-c', dir], io), 0);
    assert.equal(out, 'REJECT spam source\n');
    assert.equal(await main(['postmap', '-q', 'x', 'cidr:nothere', '-c', dir], io), 1);
    assert.match(err, /^greygate: cidr:nothere: open nothere: No such file or directory$/m);
  });

  const usage: Array<[string[], RegExp]> = [
    [[], /usage/],
    [['-q', 'x'], /usage/],
    [['-h', '-q', 'x', 'regexp:checks'], /only with "-q -"/],
    [['-q', 'x', '-q', 'y', 'hash:access'], /only one of/],
    [['-s', 'hash:access'], /not supported/],
    [['-j', 'hash:access'], /-j requires -q/],
    [['-Z', 'hash:access'], /unknown option -Z/],
    [['-q'], /requires a KEY/],
  ];
  for (const [args, re] of usage) {
    it(`usage error: postmap ${args.join(' ')}`, async () => {
      const io = { configDir: dir, stdin: Readable.from([]), out: () => {}, err: () => {} };
      const { run } = await import('../../src/cli/postmap.js');
      await assert.rejects(run(args, io), (e: unknown) => e instanceof UsageError && re.test(e.message) && !e.message.includes('\n'));
    });
  }

  it('without -q: reports each table’s problems, exit 1 on an error', async () => {
    const bad = await ours(['regexp:checks']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /checks:2:/);
    writeFileSync(join(dir, 'clean'), '/a/ b\n');
    assert.deepEqual(await ours(['regexp:clean', 'static:x']), { status: 0, stdout: '', stderr: '' });
  });
});

describe('greygate postmap -h / -b', () => {
  it('splits a message as Postfix does', () => {
    const lines = ['Subject: a', ' b', 'X : y', 'From y', 'X: body', '', 'end'];
    assert.deepEqual(
      [...messageKeys(lines, { headers: true, body: true })],
      [
        { kind: 'header', text: 'Subject: a\n b' },
        { kind: 'header', text: 'X: y' },
        { kind: 'body', text: '' },
        { kind: 'body', text: 'From y' },
        { kind: 'body', text: 'X: body' },
        { kind: 'body', text: '' },
        { kind: 'body', text: 'end' },
      ],
    );
    assert.deepEqual([...messageKeys(['A: 1', '', 'b'], { headers: true, body: false })], [{ kind: 'header', text: 'A: 1' }]);
    assert.equal(headerNameLength('Subject: x'), 7);
    assert.equal(headerNameLength('Sub ject: x'), 0);
    assert.equal(headerNameLength(' Subject: x'), 0);
    assert.equal(headerNameLength('Subject  : x'), 7);
    assert.equal(headerNameLength(': x'), 0);
  });

  const unavailable = postmapUnavailable('regexp');
  const skip = process.env.CI !== 'true' && unavailable ? unavailable : false;
  for (const flags of ['-h', '-b', '-hb', '-bh']) {
    for (const message of ['postmap-message.eml', 'postmap-message-crlf.eml']) {
      it(`postmap ${flags} -q - regexp:regexp-hb.map < ${message}: same as Postfix`, { skip }, async () => {
        assert.equal(unavailable, null, `Postfix postmap is required under CI: ${unavailable}`);
        const input = readFileSync(join(dir, message), 'utf8');
        const real = realPostmap([flags, '-q', '-', 'regexp:regexp-hb.map'], { cwd: dir, input });
        const mine = await ours([flags, '-q', '-', 'regexp:regexp-hb.map'], input);
        assert.deepEqual({ status: mine.status, stdout: mine.stdout }, { status: real.status, stdout: real.stdout });
        assert.notEqual(mine.stdout, '');
      });
    }
  }
});
