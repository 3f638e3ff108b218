/**
 * The import rule of style.md, enforced: a folder imports only from the folders listed
 * before it (errors, util -> config -> log -> tables -> mail -> dns -> greylist, checks,
 * restrictions -> queue, mailbox -> delivery -> smtpd, policyd, pop3, imap -> gateway ->
 * cli), and listeners never import each other.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, dirname, relative, resolve } from 'node:path';
import { ROOT } from './helpers/gateway.js';

const RANK: Record<string, number> = {
  'errors.ts': 0,
  util: 0,
  config: 1,
  log: 2,
  tables: 3,
  mail: 4,
  dns: 5,
  greylist: 6,
  checks: 6,
  restrictions: 6,
  queue: 7,
  mailbox: 7,
  delivery: 8,
  smtpd: 9,
  policyd: 9,
  pop3: 9,
  imap: 9,
  'runtime.ts': 10,
  'gateway.ts': 10,
  cli: 11,
  'main.ts': 12,
};
const LISTENERS = new Set(['smtpd', 'policyd', 'pop3', 'imap']);

function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => join(dir, f));
}

const SRC = join(ROOT, 'src');

function unit(file: string): string {
  return relative(SRC, file).split('/')[0]!.replace(/\.js$/, '.ts');
}

test('every src/ import respects the layer order', () => {
  const violations: string[] = [];
  for (const file of files(SRC)) {
    const from = unit(file);
    const rank = RANK[from];
    assert.notEqual(rank, undefined, `unplaced module ${relative(ROOT, file)}: add it to the layer table`);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'|import\('(\.[^']+)'\)/g)) {
      const spec = m[1] ?? m[2]!;
      const target = unit(resolve(dirname(file), spec));
      if (target === from) continue;
      const trank = RANK[target];
      const ok = trank !== undefined && (trank < rank! || (trank === rank && !LISTENERS.has(from) && from !== 'errors.ts'));
      if (!ok) violations.push(`${relative(ROOT, file)} imports ${spec}`);
      if (from === 'cli' && target === 'gateway.ts' && !file.endsWith('cli/start.ts')) violations.push(`${relative(ROOT, file)}: only cli/start.ts may import gateway.ts`);
    }
  }
  assert.deepEqual(violations, []);
});

test('smtp-server is used only by the smtpd listener', () => {
  const users = files(SRC).filter((f) => /from 'smtp-server/.test(readFileSync(f, 'utf8')));
  assert.deepEqual(users.map((f) => relative(SRC, f)).sort(), ['smtpd/server.ts', 'smtpd/smtp-server-patch.ts']);
});
