/**
 * @module bench/lib/imap-client
 * SUMMARY: the benchmark's own IMAP4rev1 client on a raw socket, the same code path for
 * every server: ImapClient.connect(port, label) waits for the greeting; command(text,
 * literals) sends one tagged command and resolves with its untagged responses, the tagged
 * status and the milliseconds from the write to the tagged line. Responses are split into
 * text parts and literals ({N} CRLF N octets); `literals: 'count'` keeps only their sizes, so
 * a 100 MB FETCH BODY[] costs the client a byte count, not a copy. parseResponse() turns a
 * response into nested lists (untimed: the benchmark parses after the clock has stopped).
 * tryLogin(port, label, user, password) -> ok | refused | unreachable, for readiness probes.
 * DIAGNOSTICS: BenchError for a refused or closed connection, a greeting other than `* OK`,
 * a command without a tagged reply within its time limit, and unparsable responses.
 * SEE ALSO: RFC 3501 sections 2.2 (framing), 4.3 (literals), 7 (responses), 9 (grammar).
 */
import { createConnection, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { BenchError } from './bench-error.js';
import { LOOPBACK } from './net.js';

/** One untagged response: parts[0] {lit 0} parts[1] {lit 1} ... parts[n]; each part but the last ends with its {N}. */
export interface ImapResponse {
  readonly parts: readonly string[];
  /** The literals' octets ('keep'), or none ('count'). */
  readonly literals: readonly Buffer[];
  readonly literalSizes: readonly number[];
}

export interface CommandResult {
  readonly status: 'OK' | 'NO' | 'BAD';
  /** The tagged line after the tag. */
  readonly text: string;
  readonly responses: readonly ImapResponse[];
  /** From the write of the command to the tagged reply having been read. */
  readonly ms: number;
  /** Octets read for this command: lines (with CRLF) and literals. */
  readonly bytes: number;
  /** CPU time (user + system) the client process itself used meanwhile: is the client the limit? */
  readonly clientCpuMs: number;
  /**
   * The same interval on CLOCK_MONOTONIC in µs, which is the clock of the timestamps in a
   * V8 .cpuprofile: a server profile can be cut to exactly the timed commands.
   */
  readonly monotonicUs: readonly [number, number];
}

export type LiteralMode = 'keep' | 'count';

interface Pending {
  readonly tag: string;
  readonly literals: LiteralMode;
  readonly responses: ImapResponse[];
  readonly started: number;
  readonly startedNs: bigint;
  readonly cpu: NodeJS.CpuUsage;
  readonly resolve: (r: CommandResult) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  bytes: number;
}

const LF = 0x0a;
const LITERAL_AT_END = /\{(\d+)\+?\}$/;

export class ImapClient {
  private carry: Buffer | null = null;
  private parts: string[] = [];
  private literals: Buffer[] = [];
  private literalSizes: number[] = [];
  private literalLeft = 0;
  private literalChunks: Buffer[] = [];
  private pending: Pending | null = null;
  private greeting: ((line: string) => void) | null = null;
  private nextTag = 0;
  private closed: string | null = null;

  private constructor(
    private readonly socket: Socket,
    readonly label: string,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e: NodeJS.ErrnoException) => this.fail(`${e.code ?? e.message}`));
    socket.on('close', () => this.fail('connection closed by the server'));
  }

  /** Connect to 127.0.0.1:PORT and wait (TIMEOUT_MS) for the `* OK` greeting. */
  static connect(port: number, label: string, timeoutMs = 10_000): Promise<ImapClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: LOOPBACK, port });
      const client = new ImapClient(socket, label);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new BenchError(`${label}: no IMAP greeting on ${LOOPBACK}:${port} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const onError = (e: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        reject(new BenchError(`${label}: cannot connect to IMAP on ${LOOPBACK}:${port}: ${e.code ?? e.message}`));
      };
      socket.once('error', onError);
      client.greeting = (line) => {
        clearTimeout(timer);
        socket.off('error', onError);
        if (line.startsWith('* OK')) resolve(client);
        else {
          socket.destroy();
          reject(new BenchError(`${label}: IMAP greeting on ${LOOPBACK}:${port} is "${line.slice(0, 200)}", not "* OK"`));
        }
      };
    });
  }

  /**
   * Send `TAG TEXT` and collect everything up to the tagged reply. TEXT must not contain
   * literals (the benchmark's commands never need one).
   */
  command(text: string, literals: LiteralMode = 'keep', timeoutMs = 300_000): Promise<CommandResult> {
    if (this.closed !== null) return Promise.reject(new BenchError(`${this.label}: ${this.closed}`));
    if (this.pending) return Promise.reject(new Error('ImapClient: one command at a time'));
    const tag = `b${(++this.nextTag).toString(36)}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = null;
        this.socket.destroy();
        reject(new BenchError(`${this.label}: no tagged reply to "${text.slice(0, 60)}" within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending = { tag, literals, responses: [], started: performance.now(), startedNs: process.hrtime.bigint(), cpu: process.cpuUsage(), resolve, reject, timer, bytes: 0 };
      this.socket.write(`${tag} ${text}\r\n`);
    });
  }

  /** LOGOUT, then wait for the server to close (a bounded wait: it may linger). */
  async logout(): Promise<void> {
    const r = await this.command('LOGOUT');
    if (r.status !== 'OK') throw new BenchError(`${this.label}: LOGOUT answered ${r.status} ${r.text}`);
    this.close();
  }

  close(): void {
    this.closed ??= 'closed by the client';
    this.socket.destroy();
  }

  private fail(reason: string): void {
    if (this.closed === null) this.closed = reason;
    const p = this.pending;
    if (p) {
      this.pending = null;
      clearTimeout(p.timer);
      p.reject(new BenchError(`${this.label}: ${reason} while waiting for ${p.tag}'s reply`));
    }
  }

  private onData(chunk: Buffer): void {
    if (this.pending) this.pending.bytes += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      if (this.literalLeft > 0) {
        const take = Math.min(this.literalLeft, chunk.length - off);
        if (this.pending?.literals !== 'count') this.literalChunks.push(chunk.subarray(off, off + take));
        off += take;
        this.literalLeft -= take;
        if (this.literalLeft === 0) this.endLiteral();
        continue;
      }
      const nl = chunk.indexOf(LF, off);
      if (nl < 0) {
        const rest = chunk.subarray(off);
        this.carry = this.carry ? Buffer.concat([this.carry, rest]) : Buffer.from(rest);
        return;
      }
      let line = chunk.subarray(off, nl + 1);
      if (this.carry) {
        line = Buffer.concat([this.carry, line]);
        this.carry = null;
      }
      off = nl + 1;
      this.onLine(line.toString('latin1', 0, line.length - (line.length >= 2 && line[line.length - 2] === 0x0d ? 2 : 1)));
    }
  }

  private onLine(text: string): void {
    this.parts.push(text);
    if (text.endsWith('}')) {
      const m = LITERAL_AT_END.exec(text);
      if (m) {
        this.literalLeft = Number(m[1]);
        this.literalSizes.push(this.literalLeft);
        if (this.literalLeft === 0) this.endLiteral();
        return;
      }
    }
    const parts = this.parts;
    const literals = this.literals;
    const literalSizes = this.literalSizes;
    this.parts = [];
    this.literals = [];
    this.literalSizes = [];
    this.onResponse(parts, literals, literalSizes);
  }

  private endLiteral(): void {
    if (this.pending?.literals !== 'count') {
      this.literals.push(this.literalChunks.length === 1 ? this.literalChunks[0]! : Buffer.concat(this.literalChunks));
    }
    this.literalChunks = [];
  }

  private onResponse(parts: string[], literals: Buffer[], literalSizes: number[]): void {
    const first = parts[0]!;
    if (this.greeting) {
      const g = this.greeting;
      this.greeting = null;
      g(first);
      return;
    }
    const p = this.pending;
    if (!p) return; // unsolicited (e.g. a BYE after LOGOUT's OK): nothing waits for it
    if (first.startsWith(p.tag + ' ')) {
      this.pending = null;
      clearTimeout(p.timer);
      const ms = performance.now() - p.started;
      const cpu = process.cpuUsage(p.cpu);
      const monotonicUs = [Number(p.startedNs / 1000n), Number(process.hrtime.bigint() / 1000n)] as const;
      const rest = first.slice(p.tag.length + 1);
      const status = rest.slice(0, rest.indexOf(' ') < 0 ? rest.length : rest.indexOf(' '));
      if (status !== 'OK' && status !== 'NO' && status !== 'BAD') {
        p.reject(new BenchError(`${this.label}: unparsable tagged reply "${first.slice(0, 200)}"`));
        return;
      }
      p.resolve({ status, text: rest.slice(status.length + 1), responses: p.responses, ms, bytes: p.bytes, clientCpuMs: (cpu.user + cpu.system) / 1000, monotonicUs });
      return;
    }
    p.responses.push({ parts, literals, literalSizes });
  }
}

export type LoginProbe = { kind: 'ok' } | { kind: 'refused'; reply: string } | { kind: 'unreachable'; reason: string };

/**
 * Connect, LOGIN and LOGOUT once: `refused` is a server that works but does not take the
 * credentials (a configuration error: waiting longer will not help), `unreachable` one
 * that is not (yet) listening or answering.
 */
export async function tryLogin(port: number, label: string, user: string, password: string): Promise<LoginProbe> {
  let client: ImapClient | undefined;
  try {
    client = await ImapClient.connect(port, label, 2000);
    const r = await client.command(`LOGIN ${user} ${password}`, 'keep', 10_000);
    if (r.status !== 'OK') return { kind: 'refused', reply: `${r.status} ${r.text}` };
    await client.logout();
    return { kind: 'ok' };
  } catch (e) {
    return { kind: 'unreachable', reason: e instanceof Error ? e.message : String(e) };
  } finally {
    client?.close();
  }
}

/** A parsed IMAP value: NIL is null, strings/atoms are strings, lists are arrays. */
export type ImapValue = string | null | Buffer | ImapValue[];

/**
 * Parse one untagged response into its tokens: `* 12 FETCH (FLAGS (\Seen) ENVELOPE (...))`
 * -> ['*', '12', 'FETCH', [...]]. Quoted strings are unescaped; literals are Buffers (or
 * null in 'count' mode); `BODY[]`-style atoms with brackets stay one atom.
 */
export function parseResponse(r: ImapResponse): ImapValue[] {
  const root: ImapValue[] = [];
  const stack: ImapValue[][] = [root];
  const top = (): ImapValue[] => stack[stack.length - 1]!;
  for (let p = 0; p < r.parts.length; p++) {
    const s = r.parts[p]!;
    const hasLiteral = p < r.parts.length - 1;
    const end = hasLiteral ? s.lastIndexOf('{') : s.length;
    let i = 0;
    while (i < end) {
      const c = s[i]!;
      if (c === ' ') {
        i++;
      } else if (c === '(') {
        const list: ImapValue[] = [];
        top().push(list);
        stack.push(list);
        i++;
      } else if (c === ')') {
        if (stack.length === 1) throw new BenchError(`unbalanced ")" in "${s.slice(0, 200)}"`);
        stack.pop();
        i++;
      } else if (c === '"') {
        let out = '';
        i++;
        for (;;) {
          if (i >= end) throw new BenchError(`unterminated quoted string in "${s.slice(0, 200)}"`);
          const d = s[i]!;
          if (d === '\\') {
            out += s[i + 1] ?? '';
            i += 2;
          } else if (d === '"') {
            i++;
            break;
          } else {
            out += d;
            i++;
          }
        }
        top().push(out);
      } else {
        // An atom runs to a space or a paren, except inside [...] (BODY[HEADER.FIELDS (A B)]).
        let j = i;
        let depth = 0;
        while (j < end) {
          const d = s[j]!;
          if (d === '[') depth++;
          else if (d === ']') depth--;
          else if (depth === 0 && (d === ' ' || d === '(' || d === ')')) break;
          j++;
        }
        const atom = s.slice(i, j);
        top().push(atom === 'NIL' ? null : atom);
        i = j;
      }
    }
    if (hasLiteral) top().push(r.literals[p] ?? null);
  }
  if (stack.length !== 1) throw new BenchError(`unbalanced "(" in "${r.parts.join(' ').slice(0, 200)}"`);
  return root;
}
