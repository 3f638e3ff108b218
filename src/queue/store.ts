/**
 * @module queue/store
 * SUMMARY: the durable queue `<data_directory>/queue/{incoming,active,deferred,hold,corrupt}`:
 * one file per message, state = directory, a state change = rename(2).
 * Exports QueueStore (open; createWriter() -> QueueWriter whose commit() resolves only when
 * the message is durable; list, read, move, remove, touch, updateEnvelope, quarantine,
 * recover; the flush trigger) and queueStoreOptions(config).
 * DIAGNOSTICS: failed I/O throws QueueIOError (with cause); a file another process moved
 * away is a `false`/`missing` result; an unreadable one is `corrupt`, and quarantine()
 * moves it to corrupt/, never deleting it.
 * SEE ALSO: Postfix mail_queue.c, mail_stream.c, qmgr_active.c; fsync(2).
 */
import * as fs from 'node:fs';
import { mkdir, readdir, rename, unlink, utimes, writeFile, link, lstat, chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { threadId } from 'node:worker_threads';
import { QueueIOError } from '../errors.js';
import type { Config } from '../config/config.js';
import { isQueueId, makeQueueId, type QueueIdStyle } from './queue-id.js';
import {
  HEADER_SIZE,
  buildEnvelope,
  decodeHeader,
  encodeHeader,
  encodeRecord,
  parseEnvelope,
  scanRecords,
  type Envelope,
  type NewEnvelope,
} from './envelope.js';

export const QUEUE_NAMES = ['incoming', 'active', 'deferred', 'hold', 'corrupt'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];
/** The queues that hold deliverable (or held) mail; corrupt/ is only ever added to. */
export type MessageQueue = Exclude<QueueName, 'corrupt'>;
export const MESSAGE_QUEUES: readonly MessageQueue[] = ['incoming', 'active', 'deferred', 'hold'];

export function isQueueName(s: string): s is QueueName {
  return (QUEUE_NAMES as readonly string[]).includes(s);
}

/* Postfix's MAIL_QUEUE_STAT_EXPIRE: group-execute marks a message forced to expire
 * (postsuper -e/-f); a mode bit changes atomically without rewriting the file. */
export const FORCED_EXPIRE_BIT = 0o010;
const FILE_MODE = 0o600;
/* Writes are batched to this size so a 1 KB message costs one write(2). */
const FLUSH_THRESHOLD = 128 * 1024;
/* A damaged file must not make a reader allocate without bound. */
const MAX_ENVELOPE_AREA = 64 * 1024 * 1024;
const TEMP_PREFIX = '.tmp-';
const FLUSH_TRIGGER = 'flush';
/** Retired queue files kept open for reuse at most (QueueStore.adopt). */
const MAX_ADOPTED = 64;
/* Postfix's pickup: a message committed by another process (sendmail) is waiting in incoming. */
const PICKUP_TRIGGER = 'pickup';

export interface QueueStoreOptions {
  /** fsync data and directories before commit() resolves (main.cf queue_fsync). */
  readonly fsync: boolean;
  /** Postfix enable_long_queue_ids; default short IDs. */
  readonly longQueueIds?: boolean;
  /** Temporary files kept ready so createWriter() need not block on open(2); default 8. */
  readonly poolSize?: number;
}

/**
 * queueStoreOptions - the store options main.cf sets: queue_fsync, and Postfix's
 * enable_long_queue_ids when the parameter is known or set (default no, as in Postfix)
 */
export function queueStoreOptions(config: Config): QueueStoreOptions {
  const long = config.has('enable_long_queue_ids') && config.get('enable_long_queue_ids') !== '' ? config.bool('enable_long_queue_ids') : false;
  return { fsync: config.bool('queue_fsync'), longQueueIds: long };
}

/** One queue file found by a directory scan. */
export interface QueueFileInfo {
  readonly queue: QueueName;
  readonly id: string;
  readonly path: string;
  /** The next-attempt time (ms): scheduling state lives in the mtime. */
  readonly mtimeMs: number;
  readonly fileSize: number;
  readonly forcedExpire: boolean;
}

export interface QueueMessage extends QueueFileInfo {
  readonly envelope: Envelope;
  readonly bodyOffset: number;
  /** Stored message bytes, without the envelope's prepended headers. */
  readonly bodyLength: number;
}

export type ReadResult =
  | { kind: 'ok'; message: QueueMessage; /** with read(..., { withBody: true }) */ body?: Buffer }
  | { kind: 'missing' }
  | { kind: 'corrupt'; reason: string };

export interface RecoverReport {
  /** Temporary files of dead writers (or of an earlier boot) that were removed. */
  readonly purged: string[];
  /** Messages moved from active back to incoming (activeToIncoming only). */
  readonly requeued: string[];
  /** Files moved to corrupt/ (verify only). */
  readonly quarantined: Array<{ queue: QueueName; id: string; reason: string }>;
}

export interface QueueWriter {
  readonly queueId: string;
  /** Message bytes so far. */
  readonly size: number;
  /**
   * Append message bytes (CRLF already normalised). The chunk is kept until written: do not
   * reuse it. Await the result for back-pressure; it never rejects: errors surface in commit().
   */
  write(chunk: Buffer): void | Promise<void>;
  /** Durable when it resolves: data and envelope fdatasynced, file renamed into `target`, directory fsynced. */
  commit(envelope: NewEnvelope, target: 'incoming' | 'hold', opts?: { keepOpen?: boolean }): Promise<void>;
  /**
   * With commit(..., { keepOpen: true }): the committed file's descriptor, which is then the
   * caller's to close (another thread may close it: smtpd hands it to the delivery thread).
   */
  takeFd(): number | null;
  /** The envelope as stored, once commit() has resolved. */
  readonly envelope: Envelope | null;
  /** Remove the partial file; a no-op after commit() or a failed commit. */
  abort(): Promise<void>;
}

/* ---- fd-level fs calls as promises (FileHandle would add a GC-close hazard per message) */

function fdOpen(path: string, flags: string | number, mode?: number): Promise<number> {
  return new Promise((res, rej) => fs.open(path, flags, mode, (e, fd) => (e ? rej(e) : res(fd))));
}
function fdClose(fd: number): Promise<void> {
  return new Promise((res, rej) => fs.close(fd, (e) => (e ? rej(e) : res())));
}
function fdDatasync(fd: number): Promise<void> {
  return new Promise((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));
}
function fdFsync(fd: number): Promise<void> {
  return new Promise((res, rej) => fs.fsync(fd, (e) => (e ? rej(e) : res())));
}
function fdStat(fd: number): Promise<fs.BigIntStats> {
  return new Promise((res, rej) => fs.fstat(fd, { bigint: true }, (e, st) => (e ? rej(e) : res(st))));
}
function fdTruncate(fd: number, len: number): Promise<void> {
  return new Promise((res, rej) => fs.ftruncate(fd, len, (e) => (e ? rej(e) : res())));
}
function fdUtimes(fd: number, atime: number, mtime: number): Promise<void> {
  return new Promise((res, rej) => fs.futimes(fd, atime, mtime, (e) => (e ? rej(e) : res())));
}
async function fdWritevAll(fd: number, bufs: Buffer[], position: number): Promise<void> {
  let want = 0;
  for (const b of bufs) want += b.length;
  const n = await new Promise<number>((res, rej) => fs.writev(fd, bufs, position, (e, w) => (e ? rej(e) : res(w))));
  if (n !== want) {
    // A short write on a regular file means the disk is full; finish it the slow way.
    const rest = Buffer.concat(bufs).subarray(n);
    await fdWritevAll(fd, [rest], position + n);
  }
}
async function fdReadAt(fd: number, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = await new Promise<number>((res, rej) =>
      fs.read(fd, buf, got, length - got, position + got, (e, r) => (e ? rej(e) : res(r))),
    );
    if (n === 0) break;
    got += n;
  }
  return got === length ? buf : buf.subarray(0, got);
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

function ioError(what: string, e: unknown): QueueIOError {
  return new QueueIOError(`${what}: ${(e as Error).message ?? String(e)}`, { cause: e });
}

/**
 * DirSyncer - group commit for one directory
 * sync() resolves after an fsync of the directory that *started* after the call, so every
 * rename made before the call is durable. Callers that arrive while an fsync runs share the
 * next one: under load one fsync serves a whole batch.
 */
class DirSyncer {
  private fd: number | null = null;
  private inFlight = false;
  private waiting: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | null = null;
  /** Number of fsync(2) calls made, for the benchmark and tests. */
  rounds = 0;

  constructor(private readonly dir: string) {}

  sync(): Promise<void> {
    if (this.waiting) return this.waiting.promise;
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.waiting = { promise, resolve, reject };
    if (!this.inFlight) void this.run();
    return promise;
  }

  private async run(): Promise<void> {
    const batch = this.waiting;
    if (!batch) return;
    this.waiting = null;
    this.inFlight = true;
    try {
      if (this.fd === null) this.fd = await fdOpen(this.dir, 'r');
      this.rounds++;
      await fdFsync(this.fd);
      batch.resolve();
    } catch (e) {
      batch.reject(ioError(`fsync directory ${this.dir}`, e));
    } finally {
      this.inFlight = false;
      if (this.waiting) void this.run();
    }
  }

  async close(): Promise<void> {
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) await fdClose(fd).catch(() => undefined);
  }
}

/** A retired queue file opened for reuse: what one thread hands another (QueueStore.adopt). */
export type RetiredFile = TempFile;

interface TempFile {
  fd: number;
  path: string;
  ino: bigint;
  /** Opened O_DSYNC: every write is durable when it returns. */
  dsync: boolean;
}

/**
 * TempPool - temporary files opened ahead of need
 * A queue ID needs the file's inode, and the SMTP path wants the ID synchronously; the pool
 * hands out a ready file and refills in the background, falling back to a blocking open
 * only when a burst empties it. It starts filling on first use, so admin commands never
 * create files.
 */
class TempPool {
  private readonly ready: TempFile[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private seq = 0;
  private closed = false;

  /**
   * With queue_fsync the files are opened O_DSYNC: the commit's one writev is then durable
   * when it returns, a threadpool round trip less than write + fdatasync on the 250's path.
   */
  private readonly flags: number;

  constructor(
    private readonly dir: string,
    private readonly target: number,
    private readonly boot: string,
    readonly dsync: boolean,
  ) {
    const c = fs.constants;
    this.flags = c.O_WRONLY | c.O_CREAT | c.O_EXCL | c.O_TRUNC | (dsync ? c.O_DSYNC : 0);
  }

  nextPath(): string {
    // The thread ID keeps the delivery thread's names apart from smtpd's in the same process.
    return join(this.dir, `${TEMP_PREFIX}${this.boot}-${process.pid}-${Date.now().toString(36)}-${threadId.toString(36)}.${(this.seq++).toString(36)}`);
  }

  take(): TempFile {
    const t = this.ready.pop() ?? this.createSync();
    this.refill();
    return t;
  }

  private createSync(): TempFile {
    for (;;) {
      const path = this.nextPath();
      try {
        const fd = fs.openSync(path, this.flags, FILE_MODE);
        return { fd, path, ino: fs.fstatSync(fd, { bigint: true }).ino, dsync: this.dsync };
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw ioError(`create queue file in ${this.dir}`, e);
      }
    }
  }

  private async createAsync(): Promise<TempFile> {
    for (;;) {
      const path = this.nextPath();
      try {
        const fd = await fdOpen(path, this.flags, FILE_MODE);
        try {
          return { fd, path, ino: (await fdStat(fd)).ino, dsync: this.dsync };
        } catch (e) {
          await fdClose(fd).catch(() => undefined);
          await unlink(path).catch(() => undefined);
          throw e;
        }
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e;
      }
    }
  }

  /**
   * reopen - PATH, a retired queue file (QueueStore.retire), opened as a temporary file:
   * truncated, with this pool's flags. Opening an existing inode is far cheaper than
   * allocating one (on a crowded ext4 block group, 30 times cheaper). Null (and the file
   * removed) when that fails.
   */
  async reopen(path: string): Promise<TempFile | null> {
    let fd: number | null = null;
    try {
      fd = await fdOpen(path, this.flags & ~fs.constants.O_CREAT & ~fs.constants.O_EXCL, FILE_MODE);
      return { fd, path, ino: (await fdStat(fd)).ino, dsync: this.dsync };
    } catch {
      if (fd !== null) await fdClose(fd).catch(() => undefined);
      await unlink(path).catch(() => undefined);
      return null;
    }
  }

  /**
   * adopt - T (from reopen(), in any thread of this process: a descriptor is the process's)
   * becomes a ready temporary file; past MAX_ADOPTED ready, or once closed, it is discarded.
   */
  adopt(t: TempFile): void {
    if (this.closed || this.ready.length >= MAX_ADOPTED) void discardTemp(t);
    else this.ready.push(t);
  }

  private refill(): void {
    while (!this.closed && this.ready.length + this.inflight.size < this.target) {
      const p: Promise<void> = this.createAsync().then(
        (t) => {
          this.inflight.delete(p);
          if (this.closed) return discardTemp(t);
          this.ready.push(t);
        },
        () => {
          // take() falls back to a blocking open, which reports the error to its caller.
          this.inflight.delete(p);
        },
      );
      this.inflight.add(p);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.inflight]);
    await Promise.all(this.ready.splice(0).map(discardTemp));
  }
}

async function discardTemp(t: TempFile): Promise<void> {
  await fdClose(t.fd).catch(() => undefined);
  await unlink(t.path).catch(() => undefined);
}

type WriterState = 'open' | 'committing' | 'done' | 'aborted';

class Writer implements QueueWriter {
  readonly queueId: string;
  private readonly temp: TempFile;
  private readonly createdAt = Date.now();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private total = 0;
  /* Next file offset to write message bytes at; 0 until the header placeholder is out. */
  private filePos = 0;
  private chain: Promise<void> = Promise.resolve();
  private error: unknown = null;
  private state: WriterState = 'open';
  private fdOpen = true;
  envelope: Envelope | null = null;

  constructor(
    private readonly store: QueueStore,
    temp: TempFile,
    style: QueueIdStyle,
  ) {
    this.temp = temp;
    this.queueId = makeQueueId(temp.ino, style);
  }

  get size(): number {
    return this.total;
  }

  write(chunk: Buffer): void | Promise<void> {
    if (this.state !== 'open') throw new Error(`queue writer ${this.queueId}: write after ${this.state}`);
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.total += chunk.length;
    if (this.buffered >= FLUSH_THRESHOLD) return this.flush();
  }

  private flush(): Promise<void> {
    const bufs = this.chunks;
    this.chunks = [];
    this.buffered = 0;
    this.chain = this.chain.then(async () => {
      if (this.error) return;
      try {
        if (this.filePos === 0) {
          // Placeholder header: the real length is written over it at commit.
          bufs.unshift(encodeHeader(0));
        }
        let n = 0;
        for (const b of bufs) n += b.length;
        await fdWritevAll(this.temp.fd, bufs, this.filePos);
        this.filePos += n;
      } catch (e) {
        this.error = e;
      }
    });
    return this.chain;
  }

  private keptFd: number | null = null;

  takeFd(): number | null {
    const fd = this.keptFd;
    this.keptFd = null;
    return fd;
  }

  async commit(input: NewEnvelope, target: 'incoming' | 'hold', opts?: { keepOpen?: boolean }): Promise<void> {
    if (this.state !== 'open') throw new Error(`queue writer ${this.queueId}: commit after ${this.state}`);
    this.state = 'committing';
    const { fd, path } = this.temp;
    const final = this.store.pathOf(target, this.queueId);
    let renamed = false;
    try {
      await this.chain;
      if (this.error) throw this.error;
      const envelope = buildEnvelope(this.queueId, input, this.total, this.createdAt);
      const record = encodeRecord(envelope);
      const header = encodeHeader(this.total);
      if (this.filePos === 0) {
        await fdWritevAll(fd, [header, ...this.chunks, record], 0);
      } else {
        await fdWritevAll(fd, [...this.chunks, record], this.filePos);
        await fdWritevAll(fd, [header], 0);
      }
      this.chunks = [];
      // Data before name: a crash must never leave a named file without its content. The
      // writes above were O_DSYNC (TempPool) when queue_fsync is set; a file from a pool
      // made without it is synced here.
      if (this.store.fsync && !this.temp.dsync) await fdDatasync(fd);
      if (opts?.keepOpen) {
        await rename(path, final);
        renamed = true;
        this.fdOpen = false;
        this.keptFd = fd;
      } else {
        this.fdOpen = false;
        // Closing needs not wait for the name, nor the name for the close.
        const [closed, named] = await Promise.allSettled([fdClose(fd), rename(path, final)]);
        if (named.status === 'rejected') throw named.reason;
        renamed = true;
        if (closed.status === 'rejected') throw closed.reason;
      }
      if (this.store.fsync) await this.store.syncDir(target);
      this.state = 'done';
      this.envelope = envelope;
    } catch (e) {
      this.state = 'aborted';
      if (this.fdOpen || this.keptFd !== null) {
        this.fdOpen = false;
        this.keptFd = null;
        await fdClose(fd).catch(() => undefined);
      }
      // Not durable means not accepted: remove it so the client's retry is the only copy.
      await unlink(renamed ? final : path).catch(() => undefined);
      throw ioError(`${this.queueId}: cannot commit queue file`, e);
    }
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.chain;
    this.chunks = [];
    if (this.fdOpen) {
      this.fdOpen = false;
      await fdClose(this.temp.fd).catch(() => undefined);
    }
    await unlink(this.temp.path).catch(() => undefined);
  }
}

/**
 * bootTag - 8 characters that change at every boot (Linux boot_id), '0' where unknown
 * A temporary file names its writer's boot and pid: one from an earlier boot is stale even
 * when its pid has been reused since, and one of a live process is never removed, however
 * long a quiet gateway keeps it pooled.
 */
function bootTag(): string {
  try {
    const id = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').replace(/[^0-9a-f]/g, '');
    if (id.length >= 8) return id.slice(0, 8);
  } catch {
    // Not Linux: only dead writers' files are purged.
  }
  return '0';
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) === 'EPERM';
  }
}

/**
 * QueueStore - one queue directory tree, shared by every process that opens it
 * A commit follows util/atomic-file.ts's order (temp file, fdatasync, rename, fsync of the
 * directory) but is done here because directory fsyncs are group-committed: one serves
 * every rename made before it started. The file's mtime is the next-attempt time (Postfix
 * qmgr's convention), so a flush is a utimes() and a scan of deferred/ reads no files.
 */
export class QueueStore {
  /** `<data_directory>/queue`. */
  readonly root: string;
  readonly fsync: boolean;
  readonly idStyle: QueueIdStyle;
  private readonly syncers = new Map<QueueName, DirSyncer>();
  private readonly pool: TempPool;
  private readonly boot = bootTag();

  private constructor(root: string, opts: QueueStoreOptions) {
    this.root = root;
    this.fsync = opts.fsync;
    this.idStyle = opts.longQueueIds ? 'long' : 'short';
    this.pool = new TempPool(join(root, 'incoming'), opts.poolSize ?? 8, this.boot, opts.fsync);
    for (const q of QUEUE_NAMES) this.syncers.set(q, new DirSyncer(join(root, q)));
  }

  /** open - create the queue directories and discard partial files of dead writers */
  static async open(dataDir: string, opts: QueueStoreOptions): Promise<QueueStore> {
    const store = new QueueStore(join(dataDir, 'queue'), opts);
    try {
      for (const q of QUEUE_NAMES) await mkdir(join(store.root, q), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw ioError(`cannot create queue directories under ${store.root}`, e);
    }
    await store.purgeTemp();
    return store;
  }

  /** pathOf - the file of message ID in QUEUE; an ID that is not one is a bug, never a path */
  pathOf(queue: QueueName, id: string): string {
    if (!isQueueId(id)) throw new Error(`invalid queue id: ${JSON.stringify(id)}`);
    return join(this.root, queue, id);
  }

  /** createWriter - start a new message; its queue ID is known at once */
  createWriter(): QueueWriter {
    return new Writer(this, this.pool.take(), this.idStyle);
  }

  /** syncDir - make every rename into QUEUE made so far durable (group-committed) */
  syncDir(queue: QueueName): Promise<void> {
    return this.syncers.get(queue)!.sync();
  }

  /** Directory fsyncs performed so far (all queues). */
  get dirSyncRounds(): number {
    let n = 0;
    for (const s of this.syncers.values()) n += s.rounds;
    return n;
  }

  /** list - the queue files in QUEUE, sorted by ID; files that vanish meanwhile are skipped */
  async list(queue: QueueName): Promise<QueueFileInfo[]> {
    let names: string[];
    try {
      names = await readdir(join(this.root, queue));
    } catch (e) {
      if (errno(e) === 'ENOENT') return [];
      throw ioError(`cannot read queue ${queue}`, e);
    }
    names = names.filter(isQueueId).sort();
    const out: QueueFileInfo[] = [];
    for (let i = 0; i < names.length; i += 64) {
      const batch = await Promise.all(names.slice(i, i + 64).map((id) => this.statOne(queue, id)));
      for (const info of batch) if (info) out.push(info);
    }
    return out;
  }

  private async statOne(queue: QueueName, id: string): Promise<QueueFileInfo | null> {
    const path = join(this.root, queue, id);
    try {
      const st = await lstat(path);
      if (!st.isFile()) return null;
      return { queue, id, path, mtimeMs: st.mtimeMs, fileSize: st.size, forcedExpire: (st.mode & FORCED_EXPIRE_BIT) !== 0 };
    } catch (e) {
      if (errno(e) === 'ENOENT') return null;
      throw ioError(`cannot stat ${path}`, e);
    }
  }

  /** locate - which of QUEUES holds ID now (null: none) */
  async locate(id: string, queues: readonly QueueName[] = MESSAGE_QUEUES): Promise<QueueFileInfo | null> {
    if (!isQueueId(id)) return null;
    for (const q of queues) {
      const info = await this.statOne(q, id);
      if (info) return info;
    }
    return null;
  }

  /**
   * read - envelope and layout of one queue file; with withBody, also the message as
   * delivered (what readBody() returns), from the same open and a single read
   */
  async read(queue: QueueName, id: string, opts: { withBody?: boolean } = {}): Promise<ReadResult> {
    const path = this.pathOf(queue, id);
    let fd: number;
    try {
      fd = await fdOpen(path, 'r');
    } catch (e) {
      if (errno(e) === 'ENOENT') return { kind: 'missing' };
      throw ioError(`cannot open ${path}`, e);
    }
    try {
      const st = await fdStat(fd);
      const fileSize = Number(st.size);
      // The scheduler reads every byte anyway: one read(2) instead of three.
      const whole = opts.withBody && fileSize <= MAX_ENVELOPE_AREA ? await fdReadAt(fd, fileSize, 0) : null;
      const header = decodeHeader(whole ? whole.subarray(0, HEADER_SIZE) : await fdReadAt(fd, HEADER_SIZE, 0));
      if (!header.ok) return { kind: 'corrupt', reason: header.reason };
      const areaStart = HEADER_SIZE + header.value;
      if (fileSize < areaStart) return { kind: 'corrupt', reason: 'file shorter than its message (truncated)' };
      if (fileSize - areaStart > MAX_ENVELOPE_AREA) return { kind: 'corrupt', reason: 'envelope area too large' };
      const scan = scanRecords(whole ? whole.subarray(areaStart) : await fdReadAt(fd, fileSize - areaStart, areaStart));
      if (scan.last === null) return { kind: 'corrupt', reason: 'no intact envelope record (incomplete file)' };
      const env = parseEnvelope(scan.last);
      if (!env.ok) return { kind: 'corrupt', reason: env.reason };
      const message: QueueMessage = {
        queue,
        id,
        path,
        mtimeMs: Number(st.mtimeMs),
        fileSize,
        forcedExpire: (Number(st.mode) & FORCED_EXPIRE_BIT) !== 0,
        envelope: env.value,
        bodyOffset: HEADER_SIZE,
        bodyLength: header.value,
      };
      if (opts.withBody) {
        const stored = whole ? whole.subarray(HEADER_SIZE, areaStart) : await fdReadAt(fd, header.value, HEADER_SIZE);
        const pre = prependBytes(env.value);
        return { kind: 'ok', message, body: pre.length ? Buffer.concat([pre, stored]) : stored };
      }
      return { kind: 'ok', message };
    } catch (e) {
      throw ioError(`cannot read ${path}`, e);
    } finally {
      await fdClose(fd).catch(() => undefined);
    }
  }

  /** readBody - the whole message as delivered: prepended headers, then the stored bytes */
  async readBody(msg: QueueMessage): Promise<Buffer> {
    const pre = prependBytes(msg.envelope);
    let fd: number;
    try {
      fd = await fdOpen(this.pathOf(msg.queue, msg.id), 'r');
    } catch (e) {
      throw ioError(`cannot open ${msg.queue}/${msg.id}`, e);
    }
    try {
      const body = await fdReadAt(fd, msg.bodyLength, msg.bodyOffset);
      if (body.length !== msg.bodyLength) throw new Error('file shorter than its message');
      return pre.length ? Buffer.concat([pre, body]) : body;
    } catch (e) {
      throw ioError(`cannot read ${msg.queue}/${msg.id}`, e);
    } finally {
      await fdClose(fd).catch(() => undefined);
    }
  }

  /** bodyStream - readBody() as a stream, for large messages */
  bodyStream(msg: QueueMessage): Readable {
    const pre = prependBytes(msg.envelope);
    const file =
      msg.bodyLength > 0
        ? fs.createReadStream(this.pathOf(msg.queue, msg.id), { start: msg.bodyOffset, end: msg.bodyOffset + msg.bodyLength - 1 })
        : null;
    async function* gen(): AsyncGenerator<Buffer> {
      if (pre.length) yield pre;
      if (file) for await (const c of file) yield c as Buffer;
    }
    return Readable.from(gen(), { objectMode: false });
  }

  /**
   * move - rename ID from one queue to another; false when it is not there (lost a race)
   * resetTime sets the mtime (next attempt) to now, as postsuper -r does.
   */
  async move(id: string, from: QueueName, to: QueueName, opts: { resetTime?: boolean; sync?: boolean } = {}): Promise<boolean> {
    const src = this.pathOf(from, id);
    const dst = this.pathOf(to, id);
    try {
      if (src !== dst) await rename(src, dst);
      if (opts.resetTime) {
        const now = new Date();
        await utimes(dst, now, now);
      }
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw ioError(`cannot move ${from}/${id} to ${to}`, e);
    }
    if (this.fsync && opts.sync !== false) await this.syncDir(to);
    return true;
  }

  /** remove - delete ID from QUEUE; false when it is not there */
  /**
   * retire - take ID out of QUEUE for good, like remove(), but keep its file for reuse: it is
   * renamed to a temporary name in incoming/ (what a crash leaves is a stale temporary file,
   * purged at the next start) and that path is returned, for adopt() in the process's
   * smtpd-side store; null when the message was not there.
   */
  async retire(queue: MessageQueue, id: string): Promise<string | null> {
    const to = this.pool.nextPath();
    try {
      await rename(this.pathOf(queue, id), to);
      return to;
    } catch (e) {
      if (errno(e) === 'ENOENT') return null;
      throw ioError(`cannot remove ${queue}/${id}`, e);
    }
  }

  /**
   * reopenRetired - a file that retire() returned, opened for reuse (done by the thread that
   * retired it, so that smtpd's thread only adopts it); null when that failed
   */
  reopenRetired(path: string): Promise<RetiredFile | null> {
    return this.pool.reopen(path);
  }

  /** adopt - reuse a file that reopenRetired() opened as a later message's queue file */
  adopt(file: RetiredFile): void {
    this.pool.adopt(file);
  }

  async remove(queue: MessageQueue, id: string): Promise<boolean> {
    try {
      await unlink(this.pathOf(queue, id));
      return true;
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw ioError(`cannot remove ${queue}/${id}`, e);
    }
  }

  /** touch - set the next-attempt time (mtime) of ID; false when it is not there */
  async touch(queue: QueueName, id: string, timeMs: number): Promise<boolean> {
    try {
      await utimes(this.pathOf(queue, id), new Date(), new Date(timeMs));
      return true;
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw ioError(`cannot update time stamps of ${queue}/${id}`, e);
    }
  }

  /** setForcedExpire - mark ID for forced expiry (postsuper -e); false if missing or already marked */
  async setForcedExpire(queue: QueueName, id: string): Promise<boolean> {
    const path = this.pathOf(queue, id);
    try {
      const st = await lstat(path);
      if (!st.isFile() || (st.mode & FORCED_EXPIRE_BIT) !== 0) return false;
      await chmod(path, (st.mode & 0o7777) | FORCED_EXPIRE_BIT);
      return true;
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw ioError(`cannot expire ${queue}/${id}`, e);
    }
  }

  /**
   * updateEnvelope - record a new envelope state (after a delivery attempt) in place
   * Appends a record after the last intact one and sets the mtime to env.nextAttemptAt. The
   * inode, and so the queue ID, stays the same. One updater per file: the scheduler that
   * owns it. False when the file is gone (an admin moved or deleted it).
   */
  async updateEnvelope(queue: QueueName, id: string, env: Envelope): Promise<boolean> {
    const path = this.pathOf(queue, id);
    let fd: number;
    try {
      fd = await fdOpen(path, 'r+');
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw ioError(`cannot open ${path}`, e);
    }
    try {
      const size = Number((await fdStat(fd)).size);
      const header = decodeHeader(await fdReadAt(fd, HEADER_SIZE, 0));
      if (!header.ok) throw new Error(header.reason);
      const areaStart = HEADER_SIZE + header.value;
      if (size < areaStart || size - areaStart > MAX_ENVELOPE_AREA) throw new Error('damaged queue file');
      const scan = scanRecords(await fdReadAt(fd, size - areaStart, areaStart));
      if (scan.count === 0) throw new Error('no intact envelope record');
      const at = areaStart + scan.end;
      // A torn tail from a crash would hide every later record: cut it off first.
      if (at < size) await fdTruncate(fd, at);
      await fdWritevAll(fd, [encodeRecord(env)], at);
      await fdUtimes(fd, Date.now() / 1000, env.nextAttemptAt / 1000);
      if (this.fsync) await fdDatasync(fd);
      return true;
    } catch (e) {
      throw ioError(`cannot update envelope of ${queue}/${id}`, e);
    } finally {
      await fdClose(fd).catch(() => undefined);
    }
  }

  /** quarantine - move an unreadable file to corrupt/ under a name that never overwrites */
  async quarantine(queue: MessageQueue, id: string): Promise<string | null> {
    const src = this.pathOf(queue, id);
    for (let n = 0; n < 1000; n++) {
      const name = n === 0 ? id : `${id}.${n}`;
      const dst = join(this.root, 'corrupt', name);
      try {
        await link(src, dst);
      } catch (e) {
        if (errno(e) === 'EEXIST') continue;
        if (errno(e) === 'ENOENT') return null;
        throw ioError(`cannot move ${queue}/${id} to corrupt`, e);
      }
      await unlink(src).catch(() => undefined);
      if (this.fsync) await this.syncDir('corrupt');
      return name;
    }
    throw new QueueIOError(`cannot move ${queue}/${id} to corrupt: too many files of that name`);
  }

  /**
   * recover - startup scan: remove partial files of dead writers; with activeToIncoming
   * (the gateway at start only, as qmgr does) put mail a dead scheduler had taken back into
   * incoming; with verify, read every queue file and move the unreadable ones to corrupt/
   */
  async recover(opts: { verify?: boolean; activeToIncoming?: boolean } = {}): Promise<RecoverReport> {
    const purged = await this.purgeTemp();
    const requeued: string[] = [];
    if (opts.activeToIncoming) {
      for (const f of await this.list('active')) if (await this.move(f.id, 'active', 'incoming', { resetTime: true, sync: false })) requeued.push(f.id);
      if (requeued.length > 0 && this.fsync) await this.syncDir('incoming');
    }
    const quarantined: RecoverReport['quarantined'] = [];
    if (opts.verify) {
      for (const q of MESSAGE_QUEUES) {
        for (const f of await this.list(q)) {
          const r = await this.read(q, f.id);
          if (r.kind === 'corrupt' && (await this.quarantine(q, f.id)) !== null) quarantined.push({ queue: q, id: f.id, reason: r.reason });
        }
      }
    }
    return { purged, requeued, quarantined };
  }

  private async purgeTemp(): Promise<string[]> {
    const dir = join(this.root, 'incoming');
    const purged: string[] = [];
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      throw ioError(`cannot read ${dir}`, e);
    }
    for (const name of names) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      const [boot, pidText] = name.slice(TEMP_PREFIX.length).split('-');
      const pid = Number(pidText);
      const live = boot === this.boot && Number.isInteger(pid) && pid > 0 && (pid === process.pid || pidAlive(pid));
      if (live) continue;
      try {
        await unlink(join(dir, name));
        purged.push(name);
      } catch (e) {
        if (errno(e) !== 'ENOENT') throw ioError(`cannot remove ${join(dir, name)}`, e);
      }
    }
    return purged;
  }

  /** requestFlush - tell a running gateway to scan the queue now (postqueue -f) */
  async requestFlush(): Promise<void> {
    try {
      await writeFile(join(this.root, FLUSH_TRIGGER), `${Date.now()}\n`);
    } catch (e) {
      throw ioError('cannot write the flush trigger', e);
    }
  }

  /** flushRequestedAt - time of the last requestFlush() (ms), 0 if never */
  async flushRequestedAt(): Promise<number> {
    try {
      return Number((await readFile(join(this.root, FLUSH_TRIGGER), 'utf8')).trim()) || 0;
    } catch {
      return 0;
    }
  }

  /** requestPickup - tell a running gateway that incoming/ has a message from another process */
  async requestPickup(): Promise<void> {
    try {
      await writeFile(join(this.root, PICKUP_TRIGGER), `${Date.now()}\n`);
    } catch (e) {
      throw ioError('cannot write the pickup trigger', e);
    }
  }

  /**
   * watchFlush - call onFlush when another process requests a flush, and onPickup (when
   * given) when it requests a pickup; returns the unsubscribe
   */
  watchFlush(onFlush: () => void, onPickup?: () => void): () => void {
    const w = fs.watch(this.root, (_event, name) => {
      if (name === FLUSH_TRIGGER) onFlush();
      else if (name === PICKUP_TRIGGER) onPickup?.();
    });
    w.on('error', () => undefined);
    w.unref();
    return () => w.close();
  }

  /** close - release pooled files and directory handles */
  async close(): Promise<void> {
    await this.pool.close();
    await Promise.all([...this.syncers.values()].map((s) => s.close()));
  }
}

/** prependBytes - the prepended header lines a reader emits in front of the stored message */
export function prependBytes(env: Envelope): Buffer {
  if (!env.prependHeaders?.length) return Buffer.alloc(0);
  return Buffer.from(env.prependHeaders.map((h) => `${h}\r\n`).join(''), 'utf8');
}
