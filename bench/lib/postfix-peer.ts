/**
 * @module bench/lib/postfix-peer
 * SUMMARY: a private Postfix instance on loopback, configured as the relay gateway greygate
 * replaces: accept from mynetworks for relay_domains, fsync into its queue, relay to an
 * smtp-sink. Exports PostfixPeer.start(opts) -> PostfixPeer {port, version, queued,
 * waitForEmptyQueue, maillogSize, deliveryStatuses, stop}. Everything (config dir, queue_directory, data_directory, maillog) lives under
 * opts.root; the system instance in /etc/postfix is never read for config nor written.
 * DIAGNOSTICS: BenchError for not running as root, `postfix check`/`start` failures (with the
 * tail of the private maillog, where Postfix writes its fatal errors), a queue that does not
 * drain, or deferred mail. `postfix stop` runs on every exit path (exit-cleanup).
 * SEE ALSO: postconf(5), master(5), MULTI_INSTANCE_README, /work/shared/peers.md.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { BenchError } from './bench-error.js';
import { findExecutable } from './executables.js';
import { onExit } from './exit-cleanup.js';
import { LOOPBACK, waitForSmtpGreeting } from './net.js';

const run = promisify(execFile);

export interface PostfixPeerOptions {
  /** Temp directory owned by the benchmark; everything of this instance goes below it. */
  readonly root: string;
  /** smtpd listener port on 127.0.0.1. */
  readonly port: number;
  /** smtp-sink port that example.com is relayed to. */
  readonly relayPort: number;
  /** The relay domain that smtp-source's recipient belongs to. */
  readonly relayDomain: string;
  /**
   * More main.cf lines, appended after the benchmark's own. `$config_directory` expands to
   * this instance's config dir, e.g. `header_checks = regexp:$config_directory/header_checks`.
   */
  readonly extraMainCf?: string;
  /** Files copied (mode 0644) into the config dir first, e.g. rule files named by extraMainCf. */
  readonly configFiles?: readonly { readonly name: string; readonly source: string }[];
}

// Queue directories that hold a message until it is delivered (maildrop: sendmail/postdrop).
const LIVE_QUEUES = ['maildrop', 'incoming', 'active', 'deferred', 'hold'];

function mainCf(o: PostfixPeerOptions, dirs: { queue: string; data: string; maillog: string; transport: string }): string {
  return `# Private Postfix written by greygate's bench/lib/postfix-peer.ts; removed after the run.
compatibility_level = 3.6
queue_directory = ${dirs.queue}
data_directory = ${dirs.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = bench-postfix.test
# smtp-sink greets with the machine's name; a different myhostname keeps the smtp client's
# "mail loops back to myself" check from firing on the relay to 127.0.0.1.
mydestination =
inet_interfaces = ${LOOPBACK}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = ${o.relayDomain}
transport_maps = texthash:${dirs.transport}
# Nothing may leave the loopback: no DNS, and every other destination is an error.
smtp_dns_support_level = disabled
default_transport = error:
local_transport = error:
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
# No flush service in master.cf; relay_domains would otherwise be fast-flush domains.
fast_flush_domains =
biff = no
maillog_file = ${dirs.maillog}
# postlogd only writes below an allowed prefix (default /var, /dev/stdout).
maillog_file_prefixes = ${o.root}
# The load comes from one IP at up to 100 parallel connections; anvil must not refuse it,
# and up to 150 smtpd processes may run so that c=100 is never queued behind a process limit.
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 150
${o.extraMainCf ? `# Added by the benchmark for this instance:\n${o.extraMainCf.trimEnd()}\n` : ''}`;
}

// Only the services the relay path needs, all unchrooted (the chroot would need a copy of
// /etc files inside the temp queue directory). smtpd's listener is the only inet service.
function masterCf(port: number): string {
  return `# service type  private unpriv  chroot  wakeup  maxproc command
${LOOPBACK}:${port} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;
}

async function countFiles(dir: string): Promise<number> {
  try {
    // deferred/ is hashed into subdirectories (hash_queue_names), hence recursive.
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).length;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
}

export class PostfixPeer {
  private stopped = false;

  private constructor(
    readonly port: number,
    readonly configDir: string,
    readonly queueDir: string,
    readonly maillog: string,
    readonly version: string,
    private readonly postfix: string,
    private readonly disarm: () => void,
  ) {}

  static async start(o: PostfixPeerOptions): Promise<PostfixPeer> {
    if (process.getuid?.() !== 0) {
      throw new BenchError('the Postfix peer needs root: its master starts daemons that switch to mail_owner=postfix');
    }
    const postfix = findExecutable('postfix');
    const postconf = findExecutable('postconf');
    const configDir = join(o.root, 'etc');
    const dirs = {
      queue: join(o.root, 'queue'),
      data: join(o.root, 'data'),
      maillog: join(o.root, 'maillog'),
      transport: join(configDir, 'transport'),
    };
    // Postfix daemons run as postfix and must traverse the (mkdtemp 0700) root; the queue
    // directory must be root-owned and not group/world writable (postfix check).
    chmodSync(o.root, 0o755);
    mkdirSync(configDir, { mode: 0o755 });
    mkdirSync(dirs.queue, { mode: 0o755 });
    writeFileSync(join(configDir, 'main.cf'), mainCf(o, dirs));
    writeFileSync(join(configDir, 'master.cf'), masterCf(o.port));
    writeFileSync(dirs.transport, `${o.relayDomain} smtp:[${LOOPBACK}]:${o.relayPort}\n`);
    // Read by cleanup, which runs as mail_owner: world-readable, like /etc/postfix's files.
    for (const f of o.configFiles ?? []) {
      const to = join(configDir, f.name);
      copyFileSync(f.source, to);
      chmodSync(to, 0o644);
    }

    const tail = (): string => PostfixPeer.tailOf(dirs.maillog);
    // `check` creates the queue subdirectories with their owners and modes, which is all
    // that `set-permissions`/`post-install` would do here.
    try {
      await run(postfix, ['-c', configDir, 'check']);
    } catch (e) {
      throw new BenchError(`postfix -c ${configDir} check failed: ${PostfixPeer.reason(e)}${tail()}`);
    }
    const version = (await run(postconf, ['-c', configDir, '-h', 'mail_version'])).stdout.trim();

    // Armed before `start`: a start that fails halfway can leave a master running.
    const disarm = onExit('Postfix', () => {
      PostfixPeer.stopSync(postfix, configDir);
    });
    const peer = new PostfixPeer(o.port, configDir, dirs.queue, dirs.maillog, version, postfix, disarm);
    try {
      await run(postfix, ['-c', configDir, 'start']);
    } catch (e) {
      await peer.stop();
      throw new BenchError(`postfix -c ${configDir} start failed: ${PostfixPeer.reason(e)}${tail()}`);
    }
    try {
      await waitForSmtpGreeting(o.port, { label: 'Postfix', timeoutMs: 20_000 });
    } catch (e) {
      await peer.stop();
      throw new BenchError(`${e instanceof Error ? e.message : String(e)}${tail()}`, { cause: e });
    }
    return peer;
  }

  /** Messages not yet delivered (maildrop, incoming, active, deferred, hold). */
  async queued(): Promise<{ total: number; deferred: number }> {
    let total = 0;
    let deferred = 0;
    for (const q of LIVE_QUEUES) {
      const n = await countFiles(join(this.queueDir, q));
      total += n;
      if (q === 'deferred' || q === 'hold') deferred += n;
    }
    return { total, deferred };
  }

  /**
   * Wait until every accepted message has been relayed, so that one run's delivery backlog
   * does not compete with the next measurement. Returns the seconds it took.
   */
  async waitForEmptyQueue(timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      const q = await this.queued();
      if (q.deferred > 0) {
        throw new BenchError(`Postfix deferred ${q.deferred} message(s): relay to smtp-sink failing?${PostfixPeer.tailOf(this.maillog)}`);
      }
      if (q.total === 0) return (Date.now() - t0) / 1000;
      if (Date.now() - t0 > timeoutMs) {
        throw new BenchError(`Postfix queue still holds ${q.total} message(s) after ${timeoutMs / 1000} s${PostfixPeer.tailOf(this.maillog)}`);
      }
      await sleep(50);
    }
  }

  /** Bytes in the private maillog so far: the start offset for deliveryStatuses(). */
  maillogSize(): number {
    try {
      return statSync(this.maillog).size;
    } catch {
      return 0;
    }
  }

  /**
   * Delivery records in the maillog after byte offset SINCE, by status (sent, deferred,
   * bounced, expired, ...). postlogd writes asynchronously: a caller that needs every record
   * of a run polls until `sent` reaches the count it expects.
   */
  deliveryStatuses(since: number): Record<string, number> {
    const counts: Record<string, number> = {};
    let text: string;
    try {
      const fd = openSync(this.maillog, 'r');
      try {
        const buf = Buffer.alloc(Math.max(0, statSync(this.maillog).size - since));
        let off = 0;
        while (off < buf.length) {
          const n = readSync(fd, buf, off, buf.length - off, since + off);
          if (n === 0) break;
          off += n;
        }
        text = buf.toString('utf8', 0, off);
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return counts;
      throw e;
    }
    // ", status=" ends only the delivery agents' per-recipient records and qmgr's expiry.
    for (const m of text.matchAll(/, status=([a-z]+)/g)) counts[m[1]!] = (counts[m[1]!] ?? 0) + 1;
    return counts;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    PostfixPeer.stopSync(this.postfix, this.configDir);
    // The master exits asynchronously after `postfix stop`; its pid file goes last. Wait so
    // that removing the temp dir does not pull the queue from under running daemons.
    const pidFile = join(this.queueDir, 'pid', 'master.pid');
    for (let i = 0; i < 100 && existsSync(pidFile); i++) await sleep(50);
    this.disarm();
  }

  private static stopSync(postfix: string, configDir: string): void {
    try {
      execFileSync(postfix, ['-c', configDir, 'stop'], { stdio: 'ignore', timeout: 20_000 });
    } catch {
      // "the Postfix mail system is not running" is the normal case after a failed start.
    }
  }

  private static reason(e: unknown): string {
    const x = e as { stderr?: string; message?: string };
    const text = (x.stderr ?? '').trim() || (x.message ?? String(e));
    return text.split('\n').filter((l) => l.trim() !== '').slice(-3).join(' / ') || 'no message';
  }

  private static tailOf(maillog: string): string {
    try {
      const lines = readFileSync(maillog, 'utf8').split('\n').filter((l) => /fatal|error|panic|warning/.test(l));
      return lines.length === 0 ? '' : `\n  last problems in ${maillog}:\n    ${lines.slice(-5).join('\n    ')}`;
    } catch {
      return '';
    }
  }
}
