/**
 * @module greylist/redis-store
 * SUMMARY: the shared greylist store (greylist_database = redis://HOST:PORT/DB, also
 * rediss:// and redis://:PASSWORD@HOST...), so several gateway nodes share triplets and the
 * auto-whitelist. Each record is a hash with a TTL (PEXPIRE, renewed on every write):
 *   PREFIX t:NET/SENDER/RECIPIENT  {first, last, passes}   ttl = max_age (retry_window
 *                                                           while the triplet never passed)
 *   PREFIX a:IP                    {count, last}           ttl = max_age
 * Writes are compare-and-set by one Lua script run atomically in Redis (EVALSHA): two nodes
 * deciding on the same triplet at once cannot both count its first pass. Expiry replaces
 * postgrey's nightly cleanup, so cleanup() has nothing to do. openRedisStore(url) connects
 * (ioredis, no offline queue, per-command timeout, reconnecting in the background).
 * DIAGNOSTICS: a refused connection, a timeout or a Redis error rejects with StoreError
 * (the caller answers 451 4.3.0); the store keeps reconnecting and works again when Redis
 * is back.
 * SEE ALSO: greylist/store.ts; redis.io EVAL, PEXPIRE; haraka-plugin-greylist.
 */
import { Redis } from 'ioredis';
import { StoreError } from '../errors.js';
import type { AwlRecord, CleanupBatch, GreylistStore, StoreSnapshot, TripletKey, TripletRecord } from './store.js';

// KEYS[1] record; ARGV: field1 field2 expected1 expected2 ttl, then field/value pairs.
// expected1 = "" means "only if the record does not exist".
const CAS_LUA = `
local cur = redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
elseif cur[1] ~= ARGV[3] or cur[2] ~= ARGV[4] then
  return 0
end
local kv = {}
for i = 6, #ARGV do kv[#kv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(kv))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`;

interface CasRedis extends Redis {
  ggcas(key: string, ...args: string[]): Promise<number>;
}

export interface RedisStoreOptions {
  /** Key prefix (default "greygate:"). */
  readonly prefix?: string;
  /** Per-command time limit (default 2000 ms). */
  readonly commandTimeoutMs?: number;
  /** How long openRedisStore() waits for the first connection (default 3000 ms). */
  readonly connectTimeoutMs?: number;
}

/** The URL without its password, for logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

const int = (n: number): string => String(Math.trunc(n));

function num(v: string | null | undefined): number | null {
  if (v === null || v === undefined) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

export class RedisStore implements GreylistStore {
  readonly description: string;
  private readonly redis: CasRedis;
  private readonly prefix: string;
  private lastError = '';
  private closed = false;

  constructor(readonly url: string, opts: RedisStoreOptions = {}) {
    this.description = redact(url);
    this.prefix = opts.prefix ?? 'greygate:';
    const redis = new Redis(url, {
      lazyConnect: true,
      // Fail now rather than queue: a greylist answer that waits is a stalled SMTP session.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs ?? 2000,
      connectTimeout: opts.connectTimeoutMs ?? 3000,
      retryStrategy: (times) => Math.min(100 * times, 1000),
    });
    redis.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    redis.defineCommand('ggcas', { numberOfKeys: 1, lua: CAS_LUA });
    this.redis = redis as CasRedis;
  }

  /** Resolves when connected; rejects (StoreError) after the connect timeout. */
  async connect(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.redis.connect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('connect timeout')), timeoutMs);
        }),
      ]);
    } catch (err) {
      throw this.fail('connect', err);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  private fail(what: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const msg = (err as Error)?.message ?? String(err);
    const detail = this.lastError && this.lastError !== msg ? `${msg} (${this.lastError})` : msg;
    return new StoreError(`greylist database ${this.description}: ${what}: ${detail}`, { cause: err });
  }

  private tkey(k: TripletKey): string {
    return `${this.prefix}t:${k.net}/${k.sender}/${k.recipient}`;
  }

  private akey(ip: string): string {
    return `${this.prefix}a:${ip}`;
  }

  private ready(): void {
    if (this.closed) throw new StoreError(`greylist database ${this.description}: closed`);
    if (this.redis.status !== 'ready') throw new StoreError(`greylist database ${this.description}: not connected (${this.redis.status}${this.lastError ? `: ${this.lastError}` : ''})`);
  }

  async load(ip: string | null, keys: readonly TripletKey[]): Promise<StoreSnapshot> {
    try {
      this.ready();
      const p = this.redis.pipeline();
      if (ip !== null) p.hmget(this.akey(ip), 'count', 'last');
      for (const k of keys) p.hmget(this.tkey(k), 'first', 'last', 'passes');
      const res = (await p.exec()) ?? [];
      const values = res.map(([err, v]) => {
        if (err) throw err;
        return v as Array<string | null>;
      });
      let awl: AwlRecord | null = null;
      if (ip !== null) {
        const a = values.shift()!;
        const count = num(a[0]);
        const last = num(a[1]);
        if (count !== null && last !== null) awl = { count, last };
      }
      const triplets = values.map((v) => {
        const first = num(v[0]);
        const last = num(v[1]);
        return first !== null && last !== null ? { first, last, passes: num(v[2]) ?? 0 } : null;
      });
      return { awl, triplets };
    } catch (err) {
      throw this.fail('read', err);
    }
  }

  async casTriplet(key: TripletKey, expected: TripletRecord | null, next: TripletRecord, ttlMs: number): Promise<boolean> {
    try {
      this.ready();
      const exp = expected === null ? ['', ''] : [int(expected.first), int(expected.last)];
      const r = await this.redis.ggcas(this.tkey(key), 'first', 'last', exp[0]!, exp[1]!, int(Math.max(1, ttlMs)), 'first', int(next.first), 'last', int(next.last), 'passes', int(next.passes));
      return r === 1;
    } catch (err) {
      throw this.fail('write', err);
    }
  }

  async casAwl(ip: string, expected: AwlRecord | null, next: AwlRecord, ttlMs: number): Promise<boolean> {
    try {
      this.ready();
      const exp = expected === null ? ['', ''] : [int(expected.count), int(expected.last)];
      const r = await this.redis.ggcas(this.akey(ip), 'count', 'last', exp[0]!, exp[1]!, int(Math.max(1, ttlMs)), 'count', int(next.count), 'last', int(next.last));
      return r === 1;
    } catch (err) {
      throw this.fail('write', err);
    }
  }

  cleanup(): Promise<CleanupBatch> {
    // Every key carries its own TTL.
    return Promise.resolve({ deleted: 0, done: true });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }
}

/**
 * Create the store and wait for the first connection. When Redis cannot be reached yet the
 * store is still returned (it keeps reconnecting; until then every operation fails with
 * StoreError) together with the reason.
 */
export async function openRedisStore(url: string, opts: RedisStoreOptions = {}): Promise<{ store: RedisStore; error: string | null }> {
  const store = new RedisStore(url, opts);
  try {
    await store.connect(opts.connectTimeoutMs ?? 3000);
    return { store, error: null };
  } catch (err) {
    return { store, error: (err as Error).message };
  }
}
