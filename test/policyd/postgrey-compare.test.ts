/**
 * greygate's policy service against real postgrey 1.37 on the same request sequence, sent
 * to both in step (so both see the same clock): first attempt, early retry, retry from the
 * same /24, BATV / +extension / VERP sender forms, the retry after the delay (first pass,
 * one X-Greylist header per message), known triplets, another network, Debian's client and
 * recipient whitelists, the auto-whitelist (set to 1 on both, since postgrey counts one
 * pass per IP and hour), IPv6 /64 grouping, and missing attributes. The actions must be the
 * same modulo the texts: "DEFER_IF_PERMIT 4.2.0 <text>", "PREPEND X-Greylist: delayed N
 * seconds by <who>" (N within 1 s), "DUNNO".
 * postgrey runs as Debian's package starts it (bench/lib/postgrey-peer.ts): --delay=1, as the
 * postgrey user, so this needs root and the postgrey package; under CI=true their absence
 * fails the test, otherwise it is skipped with the reason.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { openTable } from '../../src/tables/open.js';
import { NULL_LOGGER } from '../../src/log/logger.js';
import { offlineDnsClient, type DnsClient } from '../../src/dns/resolver.js';
import { openGreylist, type Greylist } from '../../src/greylist/greylist.js';
import { compilePolicyServicePolicy } from '../../src/policyd/policy.js';
import { POLICYD_POLICY, PolicyServiceListener } from '../../src/policyd/server.js';
import { PostgreyPeer } from '../../bench/lib/postgrey-peer.js';
import { freeLoopbackPorts } from '../../bench/lib/net.js';
import { RawPolicyClient, postfixRcptRequest } from './policy-client.js';

const IN_CI = process.env.CI === 'true';
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'greylist');

function unavailable(): string | null {
  if (!existsSync('/usr/sbin/postgrey')) return 'postgrey is not installed (Debian package postgrey)';
  if (process.getuid?.() !== 0) return 'postgrey is started as Debian does, switching to the postgrey user: needs root';
  return null;
}
const SKIP: string | false = IN_CI ? false : (unavailable() ?? false);

const noDns = offlineDnsClient('test');

let root = '';
let postgrey: PostgreyPeer | null = null;
let listener: PolicyServiceListener | null = null;
let greylist: Greylist | null = null;
let gg: RawPolicyClient;
let pg: RawPolicyClient;

before(async () => {
  if (SKIP) return;
  const why = unavailable();
  if (why) throw new Error(`CI=true: ${why}`);
  root = mkdtempSync(join(tmpdir(), 'gg-postgrey-compare-'));
  chmodSync(root, 0o755);
  // Debian's shipped whitelist files, readable by the postgrey user, for both.
  for (const f of ['whitelist_clients', 'whitelist_recipients']) {
    copyFileSync(join(FIXTURES, f), join(root, f));
    chmodSync(join(root, f), 0o644);
  }
  const [port] = (await freeLoopbackPorts(1)) as [number];
  postgrey = await PostgreyPeer.start({
    dbdir: join(root, 'postgrey-db'),
    port,
    delay: 1,
    extraArgs: ['--auto-whitelist-clients=1', `--whitelist-clients=${join(root, 'whitelist_clients')}`, `--whitelist-recipients=${join(root, 'whitelist_recipients')}`],
  });
  const text = [
    `data_directory = ${join(root, 'greygate-data')}`,
    'myhostname = policy.greygate.test',
    'greylist_delay = 1s',
    'greylist_auto_whitelist_clients = 1',
    'greylist_whitelist_clients = whitelist_clients',
    'greylist_whitelist_recipients = whitelist_recipients',
  ].join('\n');
  writeFileSync(join(root, 'main.cf'), text);
  const config = configFromText(root, join(root, 'main.cf'), text);
  const opened = await openGreylist(config);
  assert.deepEqual(opened.problems, []);
  greylist = opened.greylist;
  const { policy, problems } = compilePolicyServicePolicy({ config, openTable: (s) => openTable(s, root), dns: noDns, localUsers: { exists: () => false }, greylist });
  assert.deepEqual(problems, []);
  listener = new PolicyServiceListener({ host: '127.0.0.1', port: 0 }, { runtime: () => ({ config, policies: new Map([[POLICYD_POLICY, policy]]) }), log: NULL_LOGGER });
  await listener.listen();
  gg = await RawPolicyClient.connect(listener.port());
  pg = await RawPolicyClient.connect(port);
});

after(async () => {
  gg?.close();
  pg?.close();
  await listener?.close(1000);
  await greylist?.close();
  await postgrey?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** An action without the parts that name the implementation. */
function shape(action: string): { kind: string; delay?: number } {
  if (action === 'DUNNO') return { kind: 'DUNNO' };
  const grey = /^DEFER_IF_PERMIT (\d\.\d\.\d) \S/.exec(action);
  if (grey) return { kind: `DEFER_IF_PERMIT ${grey[1]}` };
  const header = /^PREPEND X-Greylist: delayed (\d+) seconds by /.exec(action);
  if (header) return { kind: 'PREPEND X-Greylist', delay: Number(header[1]) };
  return { kind: `other: ${action}` };
}

interface Step {
  readonly name: string;
  readonly attrs: Record<string, string>;
  /** What both must answer. */
  readonly expect: string;
  /** Wait this long before the step (the greylist delay is 1 s; postgrey counts whole seconds). */
  readonly waitMs?: number;
}

const req = (client: string, sender: string, recipient: string, instance: string, name = 'unknown') => postfixRcptRequest({ client, name, sender, recipient, instance });

const STEPS: Step[] = [
  { name: 'new triplet', attrs: req('192.0.2.10', 'alice@example.org', 'bob@example.com', 'i1'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'second recipient of the message, new', attrs: req('192.0.2.10', 'alice@example.org', 'carol@example.com', 'i1'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'early retry', attrs: req('192.0.2.10', 'alice@example.org', 'bob@example.com', 'i2'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'early retry from another host of the /24', attrs: req('192.0.2.77', 'alice@example.org', 'bob@example.com', 'i3'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'BATV sender, new', attrs: req('192.0.2.20', 'prvs=0123abcdef=batv@example.org', 'bob@example.com', 'i4'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'VERP sender, new', attrs: req('192.0.2.30', 'bounce-12345-bob=example.com@lists.example.org', 'bob@example.com', 'i5'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'IPv6 client, new', attrs: req('2001:db8:1:2::5', 'six@example.org', 'bob@example.com', 'i6'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'another network, new', attrs: req('198.51.100.7', 'alice@example.org', 'bob@example.com', 'i7'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'whitelisted client name (debian.org)', attrs: req('192.0.2.40', 'list@debian.org', 'bob@example.com', 'i8', 'bendel.debian.org'), expect: 'DUNNO' },
  { name: 'whitelisted recipient (postmaster@)', attrs: req('192.0.2.41', 'x@spam.example', 'postmaster@example.com', 'i9'), expect: 'DUNNO' },
  { name: 'missing sender attribute', attrs: (() => { const a = req('192.0.2.42', 'x@spam.example', 'bob@example.com', 'i10'); delete (a as Record<string, string>).sender; return a; })(), expect: 'DUNNO' },
  { name: 'retry after the delay, another host of the /24, +extension', attrs: req('192.0.2.99', 'alice+news@example.org', 'bob@example.com', 'i11'), expect: 'PREPEND X-Greylist', waitMs: 2100 },
  { name: 'second recipient of that message: first pass, no second header', attrs: req('192.0.2.10', 'alice@example.org', 'carol@example.com', 'i11'), expect: 'DUNNO' },
  { name: 'known triplet', attrs: req('192.0.2.10', 'alice@example.org', 'bob@example.com', 'i12'), expect: 'DUNNO' },
  { name: 'BATV retry without the tag', attrs: req('192.0.2.20', 'batv@example.org', 'bob@example.com', 'i13'), expect: 'PREPEND X-Greylist' },
  { name: 'VERP retry with another number', attrs: req('192.0.2.30', 'bounce-67890-bob=example.com@lists.example.org', 'bob@example.com', 'i14'), expect: 'PREPEND X-Greylist' },
  { name: 'IPv6 retry from the same /64', attrs: req('2001:db8:1:2::99', 'six@example.org', 'bob@example.com', 'i15'), expect: 'PREPEND X-Greylist' },
  { name: 'auto-whitelisted IP (1 pass), new triplet', attrs: req('192.0.2.99', 'zed@example.net', 'dave@example.com', 'i16'), expect: 'DUNNO' },
  { name: 'same /24, other IP: not auto-whitelisted', attrs: req('192.0.2.98', 'zed@example.net', 'dave@example.com', 'i17'), expect: 'DEFER_IF_PERMIT 4.2.0' },
  { name: 'other network retried after the delay', attrs: req('198.51.100.7', 'alice@example.org', 'bob@example.com', 'i18'), expect: 'PREPEND X-Greylist' },
  { name: 'recipient +extension is a triplet of its own', attrs: req('192.0.2.50', 'alice@example.org', 'bob+tag@example.com', 'i19'), expect: 'DEFER_IF_PERMIT 4.2.0' },
];

describe('greygate policy service vs postgrey 1.37, same request sequence', { skip: SKIP }, () => {
  it('answers as postgrey does, step by step (modulo the texts)', async () => {
    const table: string[] = [];
    const mismatches: string[] = [];
    for (const step of STEPS) {
      if (step.waitMs) await new Promise((r) => setTimeout(r, step.waitMs));
      const [a, b] = await Promise.all([gg.ask(step.attrs), pg.ask(step.attrs)]);
      const sa = shape(a);
      const sb = shape(b);
      table.push(`${step.name}: greygate "${a}" | postgrey "${b}"`);
      if (sa.kind !== sb.kind) mismatches.push(`${step.name}: greygate ${sa.kind} vs postgrey ${sb.kind}`);
      else if (sa.kind !== step.expect) mismatches.push(`${step.name}: both ${sa.kind}, expected ${step.expect}`);
      else if (sa.delay !== undefined && Math.abs(sa.delay - (sb.delay ?? -9)) > 1) mismatches.push(`${step.name}: X-Greylist delay ${sa.delay} vs ${sb.delay}`);
    }
    assert.deepEqual(mismatches, [], table.join('\n'));
  });
});
