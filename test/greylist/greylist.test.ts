/**
 * The postgrey algorithm through Greylist.check(), with the time of each attempt given as
 * the query's `now` (the decision function's input, not a clock inside the product), on a
 * real SQLite store; then state across reopen, two gateways sharing one real redis-server,
 * and failures that must reject (451), never pass.
 */
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StoreError } from '../../src/errors.js';
import { configFromText } from '../../src/config/config.js';
import {
  Greylist,
  formatGreylistLog,
  formatGreylistText,
  nextTriplet,
  openGreylist,
  parseDatabase,
  type GreylistQuery,
  type GreylistResult,
  type GreylistSettings,
} from '../../src/greylist/greylist.js';
import { failingStore, type GreylistStore } from '../../src/greylist/store.js';
import { openSqliteStore } from '../../src/greylist/sqlite-store.js';
import { openRedisStore } from '../../src/greylist/redis-store.js';
import { loadWhitelists } from '../../src/greylist/whitelist.js';
import { startRedis } from './redis-server.js';

const S = 1000;
const H = 3600 * S;
const D = 24 * H;
const T0 = Date.UTC(2025, 0, 6, 12, 0, 0);

const SETTINGS: GreylistSettings = {
  delayMs: 300 * S,
  maxAgeMs: 35 * D,
  retryWindowMs: 2 * D,
  awlClients: 5,
  ipv4Prefix: 24,
  ipv6Prefix: 64,
  orgGrouping: true,
  hostname: 'mx.greygate.test',
};

const NO_WHITELISTS = loadWhitelists({ clients: [], recipients: [] }).whitelists;
const dir = mkdtempSync(join(tmpdir(), 'gg-greylist-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function make(settings: Partial<GreylistSettings> = {}, store: GreylistStore = openSqliteStore(':memory:')): { g: Greylist; store: GreylistStore } {
  const g = new Greylist(store, { ...SETTINGS, ...settings }, NO_WHITELISTS, { cleanupIntervalMs: 0 });
  return { g, store };
}

function q(now: number, over: Partial<GreylistQuery> = {}): GreylistQuery {
  // No verified name by default: organisation grouping stays out of the postgrey cases.
  return { clientAddress: '192.0.2.1', clientName: 'unknown', sender: 'test@example.com', recipient: 'test@example.org', now, ...over };
}

/** postgrey's answer for a result, as its policy server would send it. */
function answer(r: GreylistResult): string {
  if (r.kind === 'greylist') return 'DEFER_IF_PERMIT';
  return r.header ? `PREPEND ${r.header}` : 'DUNNO';
}

describe('nextTriplet (postgrey steps 7-8)', () => {
  const delay = 300 * S;
  const win = 2 * D;
  it('a new triplet starts now', () => assert.deepEqual(nextTriplet(null, T0, delay, win), { first: T0, lastWasSuccessful: false, passed: false, record: { first: T0, last: T0, passes: 0 } }));
  it('a successful triplet stays successful', () => {
    const s = nextTriplet({ first: T0, last: T0 + 400 * S, passes: 1 }, T0 + 10 * D, delay, win);
    assert.deepEqual(s, { first: T0, lastWasSuccessful: true, passed: true, record: { first: T0, last: T0 + 10 * D, passes: 2 } });
  });
  it('a retry after the retry window starts over; at the window exactly it does not', () => {
    assert.equal(nextTriplet({ first: T0, last: T0, passes: 0 }, T0 + win + 1, delay, win).first, T0 + win + 1);
    assert.equal(nextTriplet({ first: T0, last: T0, passes: 0 }, T0 + win, delay, win).first, T0);
  });
  it('a first in the future is corrected to now', () => {
    const s = nextTriplet({ first: T0 + H, last: T0 + H, passes: 0 }, T0, delay, win);
    assert.equal(s.first, T0);
    assert.equal(s.passed, false);
  });
});

describe('Greylist.check: postgrey 1.37 decisions', () => {
  it("postgrey's own test sequence (test/Test_Greylist.pm)", async () => {
    for (const orgGrouping of [false, true]) {
      const { g } = make({ orgGrouping });
      const at = (now: number, addr: string): GreylistQuery => q(now, { clientAddress: addr, clientName: 'test1.example.com' });
      assert.equal((await g.check(at(T0, '192.168.0.1'))).kind, 'greylist');
      assert.match(answer(await g.check(at(T0 + 310 * S, '192.168.0.1'))), /^PREPEND X-Greylist: delayed 310 seconds/);
      assert.equal(answer(await g.check(at(T0 + 311 * S, '192.168.0.2'))), 'DUNNO', 'same /24');
      const other = await g.check(at(T0 + 312 * S, '10.1.50.2'));
      // postgrey greylists the other network; with organisation grouping the same verified
      // name (organisation example.com) that waited the delay passes.
      if (orgGrouping) assert.deepEqual([other.kind, other.kind === 'pass' && other.grouping], ['pass', 'rdns:example.com']);
      else assert.equal(answer(other), 'DEFER_IF_PERMIT');
      await g.close();
    }
  });

  it('first attempt, retry after the delay, same network, other network', async () => {
    const { g } = make();
    const first = await g.check(q(T0));
    assert.deepEqual(first, { kind: 'greylist', reason: 'new', remainingSeconds: 300, key: '192.0.2.0/test@example.com/test@example.org' });
    const pass = await g.check(q(T0 + 310 * S));
    assert.match(answer(pass), /^PREPEND X-Greylist: delayed 310 seconds by greygate at mx\.greygate\.test; Mon, 06 Jan 2025 \d\d:\d\d:\d\d \S+$/);
    assert.equal(answer(await g.check(q(T0 + 311 * S, { clientAddress: '192.0.2.2' }))), 'DUNNO', 'same /24');
    assert.equal(answer(await g.check(q(T0 + 312 * S, { clientAddress: '10.1.50.2' }))), 'DEFER_IF_PERMIT', 'other network');
    await g.close();
  });

  it('an early retry is greylisted with the time still missing, and refreshes last', async () => {
    const { g, store } = make();
    await g.check(q(T0));
    const r = await g.check(q(T0 + 100 * S));
    assert.deepEqual(r, { kind: 'greylist', reason: 'early-retry', remainingSeconds: 200, key: '192.0.2.0/test@example.com/test@example.org' });
    const rec = (await store.load(null, [{ net: '192.0.2.0', sender: 'test@example.com', recipient: 'test@example.org' }])).triplets[0];
    assert.deepEqual(rec, { first: T0, last: T0 + 100 * S, passes: 0 });
    await g.close();
  });

  it('a retry after the retry window starts over ("new"); a passed triplet never expires that way', async () => {
    const { g } = make();
    await g.check(q(T0));
    const late = await g.check(q(T0 + 2 * D + S));
    assert.equal(late.kind, 'greylist');
    assert.equal(late.kind === 'greylist' && late.reason, 'new');
    const pass = await g.check(q(T0 + 2 * D + 301 * S));
    assert.equal(pass.kind === 'pass' && pass.delaySeconds, 300);
    const much = await g.check(q(T0 + 30 * D));
    assert.deepEqual(much, { kind: 'pass', reason: 'triplet found', key: '192.0.2.0/test@example.com/test@example.org' });
    await g.close();
  });

  it('the sender is normalised, the recipient is not; /64 for IPv6', async () => {
    const { g } = make();
    await g.check(q(T0, { sender: 'prvs=1234567890=bounce-17@lists.example.com', clientAddress: '2001:db8:1:2::25' }));
    const r = await g.check(q(T0 + 301 * S, { sender: 'bounce-4242+x@LISTS.example.com', clientAddress: '2001:db8:1:2:ffff::1' }));
    assert.equal(r.kind, 'pass');
    assert.equal(r.kind === 'pass' && r.key, '2001:db8:1:2::/bounce-#@lists.example.com/test@example.org');
    const other = await g.check(q(T0 + 302 * S, { recipient: 'test+ext@example.org', clientAddress: '2001:db8:1:2::25' }));
    assert.equal(other.kind, 'greylist');
    const v6 = await g.check(q(T0 + 303 * S, { sender: 'bounce-1@lists.example.com', clientAddress: '2001:db8:1:3::25' }));
    assert.equal(v6.kind, 'greylist', 'another /64');
    await g.close();
  });

  it('lookup by host with prefix 32', async () => {
    const { g } = make({ ipv4Prefix: 32 });
    await g.check(q(T0));
    assert.equal((await g.check(q(T0 + 301 * S, { clientAddress: '192.0.2.2' }))).kind, 'greylist');
    assert.equal((await g.check(q(T0 + 302 * S))).kind, 'pass');
    await g.close();
  });

  it('the X-Greylist header goes once per message instance (postgrey remembers 10)', async () => {
    const { g } = make();
    for (const rcpt of ['a@example.org', 'b@example.org']) await g.check(q(T0, { recipient: rcpt, instance: 'i1' }));
    const a = await g.check(q(T0 + 301 * S, { recipient: 'a@example.org', instance: 'msg1' }));
    const b = await g.check(q(T0 + 301 * S, { recipient: 'b@example.org', instance: 'msg1' }));
    assert.ok(a.kind === 'pass' && a.header);
    assert.ok(b.kind === 'pass' && !b.header && b.delaySeconds === 301, 'first pass, same instance: no second header');
    // Ten other messages later, the instance is forgotten (postgrey's 10-slot memory).
    for (let i = 0; i < 10; i++) {
      await g.check(q(T0, { recipient: `r${i}@example.org`, instance: 'x' }));
      await g.check(q(T0 + 301 * S, { recipient: `r${i}@example.org`, instance: `other${i}` }));
    }
    await g.check(q(T0, { recipient: 'c@example.org' }));
    const c = await g.check(q(T0 + 301 * S, { recipient: 'c@example.org', instance: 'msg1' }));
    assert.ok(c.kind === 'pass' && c.header);
    await g.close();
  });

  it('a first date in the future is corrected (greylisted anew)', async () => {
    const { g, store } = make();
    await store.casTriplet({ net: '192.0.2.0', sender: 'test@example.com', recipient: 'test@example.org' }, null, { first: T0 + D, last: T0 + D, passes: 0 }, D);
    const r = await g.check(q(T0));
    assert.equal(r.kind === 'greylist' && r.reason, 'new');
    assert.equal((await g.check(q(T0 + 300 * S))).kind, 'pass');
    await g.close();
  });
});

describe('auto-whitelist (postgrey counting)', () => {
  const pass = async (g: Greylist, at: number, rcpt: string, addr = '192.0.2.1'): Promise<GreylistResult> => {
    const first = await g.check(q(at, { recipient: rcpt, clientAddress: addr }));
    assert.equal(first.kind, 'greylist');
    return g.check(q(at + 301 * S, { recipient: rcpt, clientAddress: addr }));
  };

  it('counts first passes of distinct triplets per full IP, at most once an hour; whitelists at N', async () => {
    const { g, store } = make();
    let t = T0;
    for (let i = 1; i <= 4; i++) {
      const r = await pass(g, t, `r${i}@example.org`);
      assert.equal(r.kind === 'pass' && r.awlCount, i);
      assert.equal(r.kind === 'pass' && r.awlWhitelisted, undefined);
      t += 2 * H;
    }
    // A second pass within the hour is not counted.
    const same = await pass(g, t - 2 * H + 10 * 60 * S, 'hour@example.org');
    assert.equal(same.kind === 'pass' && same.awlCount, 4);
    // Passes of an already passed triplet are not counted.
    assert.equal((await g.check(q(t, { recipient: 'r1@example.org' }))).kind, 'pass');
    assert.equal((await store.load('192.0.2.1', [])).awl?.count, 4);
    const fifth = await pass(g, t, 'r5@example.org');
    assert.ok(fifth.kind === 'pass' && fifth.awlCount === 5 && fifth.awlWhitelisted === true);
    // Whitelisted: a new triplet from that IP passes at once, without a header.
    const awl = await g.check(q(t + 400 * S, { recipient: 'new@example.org' }));
    assert.deepEqual(awl, { kind: 'pass', reason: 'client AWL', awlCount: 5 });
    // Another IP of the same /24 is not whitelisted (AWL is per full IP).
    // (and the AWL pass wrote no triplet: from there it is a new one).
    assert.equal((await g.check(q(t + 400 * S, { recipient: 'new@example.org', clientAddress: '192.0.2.2' }))).kind, 'greylist');
    // The AWL entry is refreshed (count+1, last) at most once an hour.
    assert.deepEqual((await store.load('192.0.2.1', [])).awl, { count: 5, last: t + 301 * S });
    await g.check(q(t + 30 * 60 * S, { recipient: 'x@example.org' }));
    assert.deepEqual((await store.load('192.0.2.1', [])).awl, { count: 5, last: t + 301 * S });
    await g.check(q(t + 2 * H, { recipient: 'y@example.org' }));
    assert.deepEqual((await store.load('192.0.2.1', [])).awl, { count: 6, last: t + 2 * H });
    await g.close();
  });

  it('greylist_auto_whitelist_clients = 0 disables it', async () => {
    const { g, store } = make({ awlClients: 0 });
    const r = await pass(g, T0, 'a@example.org');
    assert.ok(r.kind === 'pass' && r.awlCount === undefined);
    assert.equal((await store.load('192.0.2.1', [])).awl, null);
    await g.close();
  });
});

describe('organisation grouping (big senders retrying from another network)', () => {
  const outlook = (host: string, addr: string, now: number, over: Partial<GreylistQuery> = {}): GreylistQuery =>
    q(now, { clientName: `${host}.outbound.protection.outlook.com`, clientAddress: addr, sender: 'alice@contoso.example', recipient: 'bob@example.org', ...over });

  it('a retry from another network of the same verified organisation passes after the delay', async () => {
    const { g, store } = make();
    assert.equal((await g.check(outlook('mail-am6eur05on2072', '40.107.22.72', T0))).kind, 'greylist');
    const early = await g.check(outlook('mail-db8eur05on2101', '52.100.1.1', T0 + 60 * S));
    assert.deepEqual(early, { kind: 'greylist', reason: 'new', remainingSeconds: 240, key: '52.100.1.0/alice@contoso.example/bob@example.org' });
    const r = await g.check(outlook('mail-he1eur04on0610', '104.47.1.1', T0 + 301 * S, { instance: 'm1' }));
    assert.equal(r.kind, 'pass');
    if (r.kind !== 'pass') return;
    assert.equal(r.reason, 'organisation retry');
    assert.equal(r.grouping, 'rdns:outlook.com');
    assert.equal(r.key, 'org:outlook.com/alice@contoso.example/bob@example.org');
    assert.equal(r.delaySeconds, 301);
    assert.match(r.header ?? '', /^X-Greylist: delayed 301 seconds by greygate at mx\.greygate\.test; /);
    assert.equal(r.awlCount, 1, 'the organisation triplet\'s first pass counts for this IP');
    // Later retries from yet another network of the organisation pass without a header.
    const again = await g.check(outlook('mail-x', '13.1.1.1', T0 + 400 * S));
    assert.deepEqual(again, { kind: 'pass', reason: 'organisation retry', key: 'org:outlook.com/alice@contoso.example/bob@example.org', grouping: 'rdns:outlook.com' });
    const rows = (await store.load(null, [{ net: 'org:outlook.com', sender: 'alice@contoso.example', recipient: 'bob@example.org' }])).triplets[0];
    assert.equal(rows?.first, T0);
    await g.close();
  });

  it('no grouping for another sender, an unverified name, another organisation, an IP-derived name, or when off', async () => {
    const { g } = make();
    await g.check(outlook('mail-a', '40.107.22.72', T0));
    const later = T0 + 400 * S;
    assert.equal((await g.check(outlook('mail-b', '52.100.1.1', later, { sender: 'carol@contoso.example' }))).kind, 'greylist', 'other sender');
    assert.equal((await g.check(outlook('mail-b', '52.100.2.1', later, { clientName: 'unknown' }))).kind, 'greylist', 'unverified');
    assert.equal((await g.check(outlook('mail-b', '52.100.3.1', later, { clientName: 'mail-b.outbound.protection.outlook.de' }))).kind, 'greylist', 'other organisation');
    assert.equal((await g.check(outlook('x', '52.100.4.1', later, { clientName: 'c-52-100-4-1.outlook.com' }))).kind, 'greylist', 'IP-derived name');
    await g.close();
    const off = make({ orgGrouping: false }).g;
    await off.check(outlook('mail-a', '40.107.22.72', T0));
    assert.equal((await off.check(outlook('mail-b', '52.100.1.1', later))).kind, 'greylist', 'grouping off');
    await off.close();
  });

  it('the organisation triplet follows the retry window too', async () => {
    const { g } = make();
    await g.check(outlook('mail-a', '40.107.22.72', T0));
    assert.equal((await g.check(outlook('mail-b', '52.100.1.1', T0 + 3 * D))).kind, 'greylist', 'too late: starts over');
    assert.equal((await g.check(outlook('mail-c', '104.47.1.1', T0 + 3 * D + 301 * S))).kind, 'pass');
    await g.close();
  });
});

describe('whitelists in check()', () => {
  const clients = join(dir, 'wl_clients');
  const recipients = join(dir, 'wl_recipients');
  before(() => {
    writeFileSync(clients, '# test\nexample.net\n192.0.2.128/25\n');
    writeFileSync(recipients, 'postmaster@\n');
  });

  it('client and recipient whitelists pass with the entry\'s FILE:LINE and touch no state', async () => {
    const store = openSqliteStore(':memory:');
    const w = loadWhitelists({ clients: [clients], recipients: [recipients] }).whitelists;
    const g = new Greylist(store, SETTINGS, w, { cleanupIntervalMs: 0 });
    assert.deepEqual(await g.check(q(T0, { clientName: 'mx.example.net' })), { kind: 'pass', reason: 'client whitelist', rule: `${clients}:2`, entry: 'example.net' });
    assert.deepEqual(await g.check(q(T0, { clientAddress: '192.0.2.200' })), { kind: 'pass', reason: 'client whitelist', rule: `${clients}:3`, entry: '192.0.2.128/25' });
    assert.deepEqual(await g.check(q(T0, { recipient: 'PostMaster@example.org' })), { kind: 'pass', reason: 'recipient whitelist', rule: `${recipients}:1`, entry: 'postmaster@' });
    assert.deepEqual((await store.load('192.0.2.1', [{ net: '192.0.2.0', sender: 'test@example.com', recipient: 'test@example.org' }])), { awl: null, triplets: [null] });
    await g.close();
  });
});

describe('explain and read-only views', () => {
  it('explain tells the AWL count, the triplet age and the time left, and writes nothing', async () => {
    const { g, store } = make();
    await g.check(q(T0));
    const e = await g.explain(q(T0 + 120 * S));
    assert.deepEqual(e.result, { kind: 'greylist', reason: 'early-retry', remainingSeconds: 180, key: '192.0.2.0/test@example.com/test@example.org' });
    assert.equal(e.triplet.ageSeconds, 120);
    assert.equal(e.triplet.remainingSeconds, 180);
    assert.deepEqual(e.awl, { ip: '192.0.2.1', count: 0, threshold: 5, lastSeenSeconds: null, whitelisted: false });
    assert.deepEqual(e.organisation, { skip: 'client name not verified' });
    assert.ok(e.lines.some((l) => /^triplet 192\.0\.2\.0\/test@example\.com\/test@example\.org: first seen 120s ago, last 120s ago, 0 pass\(es\); 180s left$/.test(l)), e.lines.join('\n'));
    assert.ok(e.lines.includes('verdict: greylist (early-retry), 180s left'));
    // Nothing written: last is still T0.
    assert.deepEqual((await store.load(null, [{ net: '192.0.2.0', sender: 'test@example.com', recipient: 'test@example.org' }])).triplets[0], { first: T0, last: T0, passes: 0 });
    const passNow = await g.explain(q(T0 + 400 * S));
    assert.equal(passNow.result.kind, 'pass');
    assert.ok(passNow.lines.includes('verdict: pass (triplet found)'));
    await g.close();
  });

  it('readOnly() decides the same but leaves the store alone', async () => {
    const { g, store } = make();
    const ro = g.readOnly();
    assert.equal((await ro.check(q(T0))).kind, 'greylist');
    assert.equal((await ro.check(q(T0 + 301 * S))).kind, 'pass', 'the view remembers its own attempts');
    assert.deepEqual((await store.load('192.0.2.1', [{ net: '192.0.2.0', sender: 'test@example.com', recipient: 'test@example.org' }])), { awl: null, triplets: [null] });
    await ro.close();
    assert.equal((await g.check(q(T0))).kind, 'greylist', 'closing the view leaves the store open');
    await g.close();
  });
});

describe('log and reply texts', () => {
  it("postgrey's log line", () => {
    const query = q(T0, { sender: '', clientName: 'test1.example.com' });
    assert.equal(
      formatGreylistLog(query, { kind: 'greylist', reason: 'early-retry', remainingSeconds: 42, key: 'k' }, 'ABC123'),
      'ABC123: action=greylist, reason=early-retry (42s missing), client_name=test1.example.com, client_address=192.0.2.1, recipient=test@example.org',
    );
    assert.equal(
      formatGreylistLog(q(T0, { clientName: 'test1.example.com' }), { kind: 'pass', reason: 'organisation retry', grouping: 'rdns:outlook.com', header: 'X-Greylist: x', delaySeconds: 301 }),
      'action=pass, reason=organisation retry, grouping=rdns:outlook.com, delay=301, client_name=test1.example.com, client_address=192.0.2.1, sender=test@example.com, recipient=test@example.org',
    );
  });
  it('greylist_text substitutions %s and %r', () => {
    assert.equal(formatGreylistText('Greylisted for %s seconds, see https://x/%r.html', 42, 'u@Example.ORG'), 'Greylisted for 42 seconds, see https://x/Example.ORG.html');
  });
});

describe('stores and failures', () => {
  it('state survives a restart (SQLite under data_directory)', async () => {
    const data = join(dir, 'data-reopen');
    const config = configFromText(dir, join(dir, 'main.cf'), `data_directory = ${data}\nmyhostname = mx.greygate.test\ngreylist_delay = 2s\n`);
    const a = await openGreylist(config, { cleanupIntervalMs: 0 });
    assert.deepEqual(a.problems, []);
    assert.equal(a.greylist.storeDescription, `sqlite:${join(data, 'greylist.db')}`);
    assert.equal((await a.greylist.check(q(T0))).kind, 'greylist');
    await a.greylist.close();
    const b = await openGreylist(config, { cleanupIntervalMs: 0 });
    const r = await b.greylist.check(q(T0 + 2 * S));
    assert.ok(r.kind === 'pass' && r.header?.startsWith('X-Greylist: delayed 2 seconds by greygate at mx.greygate.test; '));
    await b.greylist.close();
  });

  it('a store failure rejects with StoreError, never a pass', async () => {
    const { g } = make({}, failingStore('test:', 'disk on fire'));
    await assert.rejects(g.check(q(T0)), (e: unknown) => e instanceof StoreError && /disk on fire/.test(e.message));
    await g.close();
    const { g: g2, store } = make();
    await store.close();
    await assert.rejects(g2.check(q(T0)), StoreError);
  });

  it('checkNow: the same decisions, at once with the write-behind cache, as promises otherwise', async () => {
    const config = configFromText(dir, join(dir, 'main.cf'), `data_directory = ${join(dir, 'data-now')}\nmyhostname = mx.greygate.test\ngreylist_delay = 2s\n`);
    const { greylist } = await openGreylist(config, { cleanupIntervalMs: 0 });
    const named = (now: number) => q(now, { clientName: 'mx1.mail.example.net', clientAddress: '198.51.100.7', instance: `i${now}` });
    const steps = [T0, T0 + S, T0 + 3 * S, T0 + 4 * S];
    const now: GreylistResult[] = [];
    for (const t of steps) {
      const r = greylist.checkNow(named(t));
      assert.ok(!(r instanceof Promise), 'answered at once');
      now.push(r);
    }
    assert.deepEqual(now.map((r) => `${r.kind} ${r.reason}`), ['greylist new', 'greylist early-retry', 'pass triplet found', 'pass triplet found']);
    // The same sequence on a store without immediate operations (SQLite without the cache).
    const { g } = make({ delayMs: 2 * S });
    for (let i = 0; i < steps.length; i++) {
      const p = g.checkNow(named(steps[i]!));
      assert.ok(p instanceof Promise, 'a store without immediate operations answers later');
      assert.deepEqual(await p, now[i]);
    }
    await greylist.close();
    await g.close();
    // A failure is thrown by checkNow (at once), rejected by check.
    const { g: failing } = make({}, failingStore('test:', 'disk on fire'));
    await assert.rejects(Promise.resolve().then(() => failing.checkNow(q(T0))), StoreError);
    await failing.close();
    assert.throws(() => failing.checkNow(q(T0)), StoreError);
  });

  it('openGreylist: a bad greylist_database is a Problem and a store that fails every lookup', async () => {
    const config = configFromText(dir, join(dir, 'main.cf'), 'greylist_database = mysql://x\ngreylist_ipv4_prefix = 33\ngreylist_delay = soon\n');
    const { greylist, problems } = await openGreylist(config, { cleanupIntervalMs: 0 });
    assert.deepEqual(
      problems.map((p) => p.message.replace(/:.*/, '')),
      ['bad value for greylist_delay', 'bad value for greylist_ipv4_prefix', 'unsupported greylist_database "mysql'],
    );
    assert.equal(greylist.settings.ipv4Prefix, 24);
    await assert.rejects(greylist.check(q(T0)), StoreError);
    await greylist.close();
  });

  it('parseDatabase', () => {
    assert.deepEqual(parseDatabase('sqlite:', '/var/greygate'), { kind: 'sqlite', path: '/var/greygate/greylist.db' });
    assert.deepEqual(parseDatabase('sqlite:grey/g.db', '/var/greygate'), { kind: 'sqlite', path: '/var/greygate/grey/g.db' });
    assert.deepEqual(parseDatabase('sqlite:/tmp/g.db', '/var/greygate'), { kind: 'sqlite', path: '/tmp/g.db' });
    assert.deepEqual(parseDatabase('redis://10.0.0.1:6379/2', '/x'), { kind: 'redis', url: 'redis://10.0.0.1:6379/2' });
    assert.equal(parseDatabase('bdb:/x', '/x').kind, 'error');
  });

  it('cleanup() sweeps out expired triplets and AWL entries in batches', async () => {
    const { g, store } = make({}, openSqliteStore(':memory:'));
    for (let i = 0; i < 30; i++) await g.check(q(T0, { recipient: `r${i}@example.org` }));
    await g.check(q(T0 + 400 * S, { recipient: 'r0@example.org' }));
    const g2 = new Greylist(store, SETTINGS, NO_WHITELISTS, { cleanupIntervalMs: 0, cleanupBatch: 7 });
    // 3 days later: the 29 never-passed triplets are past the retry window; r0 passed.
    assert.equal(await g2.cleanup(T0 + 3 * D), 29);
    assert.notEqual((await store.load(null, [{ net: '192.0.2.0', sender: 'test@example.com', recipient: 'r0@example.org' }])).triplets[0], null);
    // 40 days later: everything is past max age.
    assert.equal(await g2.cleanup(T0 + 40 * D), 2, 'the passed triplet and the AWL entry');
    await g2.close();
    await g.close().catch(() => undefined);
  });
});

describe('reload', () => {
  it('re-reads the greylist parameters and whitelists; a new greylist_database waits for a restart', async () => {
    const data = join(dir, 'data-reload');
    const wl = join(dir, 'reload_clients');
    writeFileSync(wl, 'old.example\n');
    const main = join(dir, 'main.cf');
    const text = (extra: string): string => `data_directory = ${data}\ngreylist_whitelist_clients = ${wl}\n${extra}`;
    const { greylist } = await openGreylist(configFromText(dir, main, text('')), { cleanupIntervalMs: 0 });
    assert.equal((await greylist.check(q(T0, { clientName: 'mx.old.example' }))).kind, 'pass');
    writeFileSync(wl, 'new.example\n');
    const problems = greylist.reload(configFromText(dir, main, text('greylist_delay = 10s\ngreylist_database = sqlite:other.db\n')));
    assert.deepEqual(problems.map((p) => p.message), [`greylist_database changed: still using sqlite:${join(data, 'greylist.db')} until the next restart`]);
    assert.equal(greylist.settings.delayMs, 10 * S);
    assert.equal((await greylist.check(q(T0, { clientName: 'mx.old.example' }))).kind, 'greylist');
    assert.equal((await greylist.check(q(T0, { clientName: 'mx.new.example' }))).kind, 'pass');
    assert.deepEqual(greylist.files(), [wl]);
    await greylist.close();
  });
});

describe('two gateways sharing one redis-server', async () => {
  const started = await startRedis();
  const skip = 'skip' in started ? started.skip : false;
  const server = 'server' in started ? started.server : null;
  after(async () => server?.stop());

  const node = async (prefix: string): Promise<Greylist> => {
    const { store, error } = await openRedisStore(server!.url, { prefix });
    assert.equal(error, null);
    return new Greylist(store, SETTINGS, NO_WHITELISTS, { cleanupIntervalMs: 0 });
  };

  it('share triplets and the auto-whitelist; one first pass is counted once', { skip }, async () => {
    const a = await node('shared:');
    const b = await node('shared:');
    assert.equal((await a.check(q(T0))).kind, 'greylist');
    assert.equal((await b.check(q(T0 + 100 * S))).kind, 'greylist', 'node B sees node A\'s triplet: early retry');
    const [ra, rb] = await Promise.all([a.check(q(T0 + 301 * S, { instance: 'ia' })), b.check(q(T0 + 301 * S, { instance: 'ib' }))]);
    assert.equal(ra.kind, 'pass');
    assert.equal(rb.kind, 'pass');
    const headers = [ra, rb].filter((r) => r.kind === 'pass' && r.header);
    assert.equal(headers.length, 1, 'exactly one node saw the first pass');
    const counted = [ra, rb].filter((r) => r.kind === 'pass' && r.awlCount !== undefined);
    assert.equal(counted.length, 1);
    const e = await b.explain(q(T0 + 302 * S));
    assert.equal(e.awl?.count, 1);
    await a.close();
    await b.close();
  });

  it('Redis down: check() rejects with StoreError (451), never passes', { skip }, async () => {
    const a = await node('down:');
    await server!.stop();
    await assert.rejects(a.check(q(T0)), StoreError);
    await server!.restart();
    await a.close();
  });

  it('openGreylist with greylist_database = redis://', { skip }, async () => {
    const config = configFromText(dir, join(dir, 'main.cf'), `greylist_database = ${server!.url}\n`);
    const { greylist, problems } = await openGreylist(config, { cleanupIntervalMs: 0 });
    assert.deepEqual(problems, []);
    assert.equal(greylist.storeDescription, server!.url);
    assert.equal((await greylist.check(q(T0, { recipient: 'redis@example.org' }))).kind, 'greylist');
    await greylist.close();
  });
});
