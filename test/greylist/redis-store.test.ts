/**
 * RedisStore against a real redis-server started here: the shared conformance suite, the
 * TTLs it sets, and failures (server gone -> StoreError; back -> works again).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { StoreError } from '../../src/errors.js';
import { openRedisStore, RedisStore } from '../../src/greylist/redis-store.js';
import { runStoreConformance } from './store.case.js';
import { freePort, startRedis, type RedisServer } from './redis-server.js';

const started = await startRedis();
const server: RedisServer | null = 'server' in started ? started.server : null;
const skip = 'skip' in started ? started.skip : undefined;
let n = 0;

after(async () => {
  await server?.stop();
});

runStoreConformance({
  name: 'redis',
  expiresByItself: true,
  ...(skip ? { skip } : {}),
  open: async () => {
    const r = await openRedisStore(server!.url, { prefix: `conf${++n}:` });
    if (r.error) throw new Error(r.error);
    return r.store;
  },
});

describe('RedisStore', { skip: skip ?? false }, () => {
  it('writes hashes whose TTL is the one given (max age, or the retry window)', async () => {
    const { store } = await openRedisStore(server!.url, { prefix: 'ttl:' });
    await store.casTriplet({ net: '192.0.2.0', sender: 's@x', recipient: 'r@y' }, null, { first: 1, last: 2, passes: 0 }, 172_800_000);
    await store.casAwl('192.0.2.1', null, { count: 1, last: 2 }, 3_024_000_000);
    const raw = new Redis(server!.url);
    assert.deepEqual(await raw.hgetall('ttl:t:192.0.2.0/s@x/r@y'), { first: '1', last: '2', passes: '0' });
    const ttl = await raw.pttl('ttl:t:192.0.2.0/s@x/r@y');
    assert.ok(ttl > 172_700_000 && ttl <= 172_800_000, `ttl ${ttl}`);
    const awlTtl = await raw.pttl('ttl:a:192.0.2.1');
    assert.ok(awlTtl > 3_023_000_000 && awlTtl <= 3_024_000_000, `awl ttl ${awlTtl}`);
    await raw.quit();
    await store.close();
  });

  it('an unreachable Redis: open reports it, every operation rejects with StoreError', async () => {
    const port = await freePort();
    const { store, error } = await openRedisStore(`redis://127.0.0.1:${port}/0`, { connectTimeoutMs: 500 });
    assert.ok(error, 'open reports the failure');
    await assert.rejects(store.load('192.0.2.1', []), StoreError);
    await assert.rejects(store.casTriplet({ net: 'n', sender: 's', recipient: 'r' }, null, { first: 1, last: 1, passes: 0 }, 1000), StoreError);
    await store.close();
  });

  it('Redis going away rejects with StoreError; the store works again when it is back', async () => {
    const { store } = await openRedisStore(server!.url, { prefix: 'down:' });
    assert.ok(store instanceof RedisStore);
    await store.casAwl('192.0.2.1', null, { count: 1, last: 1 }, 60_000);
    await server!.stop();
    await assert.rejects(store.load('192.0.2.1', []), StoreError);
    await server!.restart();
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      try {
        await store.load('192.0.2.1', []);
        ok = true;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(ok, 'reconnected');
    // The restarted server has no persistence: the entry is gone, and that is a miss, not an error.
    assert.equal((await store.load('192.0.2.1', [])).awl, null);
    await store.close();
  });
});
