/**
 * @module cli/user
 * SUMMARY: `greygate user add NAME --password-stdin | del NAME | passwd NAME --password-stdin
 * | list`: manage the mailbox users in DATA_DIRECTORY/users.db. Exports run(args, io).
 * The password is the first line of standard input, never an argument, so it stays out of
 * `ps` and shell history. Prints nothing on success except `list` (one name per line).
 * DIAGNOSTICS: UsageError for bad arguments; UserError for an unknown or duplicate user, a
 * bad name or an empty password; StoreError when the database fails. All are one line.
 * SEE ALSO: doveadm-pw(1), useradd(8), docker login --password-stdin.
 */
import type { Readable } from 'node:stream';
import { UsageError, UserError } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { UserStore } from '../mailbox/users.js';
import type { CliIO } from './io.js';

const USAGE = 'usage: greygate user add NAME --password-stdin | del NAME | passwd NAME --password-stdin | list';

/** A password longer than this is surely not a password but the wrong file on stdin. */
const MAX_PASSWORD_INPUT = 64 * 1024;

interface Parsed {
  readonly sub: 'add' | 'del' | 'passwd' | 'list';
  readonly name: string | undefined;
}

function parseArgs(args: readonly string[]): Parsed {
  const [sub, ...rest] = args;
  if (sub === undefined) throw new UsageError(USAGE);
  if (sub !== 'add' && sub !== 'del' && sub !== 'passwd' && sub !== 'list') {
    throw new UsageError(`user: unknown subcommand ${JSON.stringify(sub)}; ${USAGE}`);
  }
  const wantsPassword = sub === 'add' || sub === 'passwd';
  let passwordStdin = false;
  const positional: string[] = [];
  for (const arg of rest) {
    if (arg === '--password-stdin' && wantsPassword) passwordStdin = true;
    else if (arg.startsWith('-') && arg !== '-') throw new UsageError(`user ${sub}: unknown option ${JSON.stringify(arg)}`);
    else positional.push(arg);
  }
  if (sub === 'list') {
    if (positional.length > 0) throw new UsageError('usage: greygate user list');
    return { sub, name: undefined };
  }
  const synopsis = `usage: greygate user ${sub} NAME${wantsPassword ? ' --password-stdin' : ''}`;
  if (positional.length !== 1) throw new UsageError(synopsis);
  if (wantsPassword && !passwordStdin) {
    throw new UsageError(`user ${sub}: the password is read from standard input; ${synopsis}`);
  }
  return { sub, name: positional[0] };
}

/** The first line of STDIN without its line ending; reading stops there. */
async function readPasswordLine(stdin: Readable): Promise<string> {
  // Bytes, not strings, until the newline: a UTF-8 character may be split across chunks.
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk as Uint8Array);
    chunks.push(buf);
    size += buf.length;
    if (buf.includes(0x0a)) break;
    if (size > MAX_PASSWORD_INPUT) throw new UserError('password on standard input is too long');
  }
  const all = Buffer.concat(chunks);
  const nl = all.indexOf(0x0a);
  let line = (nl >= 0 ? all.subarray(0, nl) : all).toString('utf8');
  if (line.endsWith('\r')) line = line.slice(0, -1);
  if (line.length === 0) throw new UserError('empty password refused (give it as the first line of standard input)');
  return line;
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const { sub, name } = parseArgs(args);
  // Config and database first: a broken main.cf is reported before anyone types a password.
  const store = UserStore.open(loadConfig(io.configDir).dataDir());
  try {
    const password = sub === 'add' || sub === 'passwd' ? await readPasswordLine(io.stdin) : '';
    switch (sub) {
      case 'add':
        await store.add(name ?? '', password);
        break;
      case 'passwd':
        await store.setPassword(name ?? '', password);
        break;
      case 'del':
        store.delete(name ?? '');
        break;
      case 'list':
        for (const user of store.list()) io.out(`${user}\n`);
        break;
    }
  } finally {
    store.close();
  }
  return 0;
}
