/**
 * @module bench/lib/imap-load
 * SUMMARY: one timed IMAP session of the benchmark, the same for every server: connect,
 * LOGIN, SELECT INBOX, `FETCH 1:* (FLAGS ENVELOPE)`, `FETCH 1:* BODY.PEEK[]`, LOGOUT, each
 * command timed from its write to its tagged OK (bench/lib/imap-client). Exports
 * runImapSession(opts) -> SessionResult {selectMs, envelopeMs, bodyMs, bodyBytes, envelopes?}
 * and IMAP_OPERATIONS (the timed operations, in order, with their labels).
 * The responses are checked after each clock has stopped, so checking costs neither server
 * anything: SELECT must report EXISTS = the expected count; each FETCH must answer exactly
 * one FETCH response per message (sequence numbers 1..N, each once) with FLAGS and a
 * 10-field ENVELOPE, or with one BODY[] literal. With `verify`, every body's sha256 must be
 * one of the corpus's and every corpus message must come back once, and the ENVELOPEs are
 * returned by Message-ID for comparing two servers.
 * DIAGNOSTICS: BenchError naming the server, the command and what was wrong.
 * SEE ALSO: RFC 3501 6.3.1 (SELECT), 6.4.5 (FETCH), 7.4.2 (ENVELOPE); bench/imap.ts.
 */
import { createHash } from 'node:crypto';
import { BenchError } from './bench-error.js';
import { ImapClient, parseResponse, type CommandResult, type ImapResponse, type ImapValue } from './imap-client.js';

export const IMAP_OPERATIONS = [
  { key: 'selectMs', label: 'SELECT INBOX', short: 'SELECT' },
  { key: 'envelopeMs', label: 'FETCH 1:* (FLAGS ENVELOPE)', short: 'ENVELOPE' },
  { key: 'bodyMs', label: 'FETCH 1:* BODY.PEEK[]', short: 'BODY[]' },
] as const;

export type OperationKey = (typeof IMAP_OPERATIONS)[number]['key'];

export interface SessionOptions {
  readonly port: number;
  /** Names the server in messages. */
  readonly label: string;
  readonly user: string;
  readonly password: string;
  /** Messages the INBOX must hold. */
  readonly expected: number;
  /** Check each body against these sha256s (hex) and return the ENVELOPEs; untimed work, for the warm-up run. */
  readonly verify?: { readonly sha256: ReadonlySet<string> };
}

export interface SessionResult extends Record<OperationKey, number> {
  /** Sum of the BODY[] literal sizes. */
  readonly bodyBytes: number;
  /** Octets the server sent for each FETCH (lines, literals and all). */
  readonly envelopeWireBytes: number;
  readonly bodyWireBytes: number;
  /** The client's own CPU time during the two FETCHes (it shares the machine with the server). */
  readonly envelopeClientCpuMs: number;
  readonly bodyClientCpuMs: number;
  /** Each timed command's interval on CLOCK_MONOTONIC (µs), for cutting a server's CPU profile. */
  readonly monotonicUs: Readonly<Record<OperationKey, readonly [number, number]>>;
  /** With verify: Message-ID -> the ENVELOPE, serialised (literals as latin1 text). */
  readonly envelopes?: ReadonlyMap<string, string>;
}

function expectOk(label: string, what: string, r: CommandResult): void {
  if (r.status !== 'OK') throw new BenchError(`${label}: ${what} answered ${r.status} ${r.text.slice(0, 200)}`);
}

/** `* N FETCH (...)` -> [N, the item list as key/value pairs]; anything else -> null. */
function fetchItems(r: ImapResponse): { seq: number; items: Map<string, ImapValue> } | null {
  if (!r.parts[0]!.includes(' FETCH ')) return null;
  const v = parseResponse(r);
  if (v[0] !== '*' || v[2] !== 'FETCH' || !Array.isArray(v[3])) return null;
  const list = v[3];
  const items = new Map<string, ImapValue>();
  for (let i = 0; i + 1 < list.length; i += 2) items.set(String(list[i]).toUpperCase(), list[i + 1]!);
  return { seq: Number(v[1]), items };
}

/** Each of 1..N answered exactly once; returns the items in sequence order. */
function checkFetches(label: string, what: string, r: CommandResult, expected: number, want: string): Array<Map<string, ImapValue>> {
  const bySeq = new Array<Map<string, ImapValue> | undefined>(expected + 1);
  let count = 0;
  for (const resp of r.responses) {
    const f = fetchItems(resp);
    if (f === null) continue;
    // Unsolicited FETCH FLAGS (another session's change) would carry no WANT item.
    if (!f.items.has(want)) continue;
    if (!Number.isInteger(f.seq) || f.seq < 1 || f.seq > expected) throw new BenchError(`${label}: ${what} answered for message ${f.seq} of ${expected}`);
    if (bySeq[f.seq] !== undefined) throw new BenchError(`${label}: ${what} answered twice for message ${f.seq}`);
    bySeq[f.seq] = f.items;
    count++;
  }
  if (count !== expected) throw new BenchError(`${label}: ${what} gave ${count} FETCH responses with ${want}, expected ${expected}`);
  return bySeq.slice(1) as Array<Map<string, ImapValue>>;
}

function serialise(v: ImapValue): unknown {
  if (Buffer.isBuffer(v)) return v.toString('latin1');
  if (Array.isArray(v)) return v.map(serialise);
  return v;
}

export async function runImapSession(o: SessionOptions): Promise<SessionResult> {
  const client = await ImapClient.connect(o.port, o.label);
  try {
    const login = await client.command(`LOGIN ${o.user} ${o.password}`);
    expectOk(o.label, 'LOGIN', login);

    const select = await client.command('SELECT INBOX');
    expectOk(o.label, 'SELECT INBOX', select);
    const exists = select.responses.map((r) => /^\* (\d+) EXISTS$/i.exec(r.parts[0]!)).find((m) => m !== null);
    if (!exists) throw new BenchError(`${o.label}: SELECT INBOX gave no EXISTS`);
    if (Number(exists[1]) !== o.expected) throw new BenchError(`${o.label}: SELECT INBOX says ${exists[1]} EXISTS, the mailbox has ${o.expected} messages`);

    const env = await client.command('FETCH 1:* (FLAGS ENVELOPE)');
    expectOk(o.label, 'FETCH (FLAGS ENVELOPE)', env);
    const envItems = checkFetches(o.label, 'FETCH 1:* (FLAGS ENVELOPE)', env, o.expected, 'ENVELOPE');
    const envelopes = o.verify ? new Map<string, string>() : undefined;
    for (let i = 0; i < envItems.length; i++) {
      const items = envItems[i]!;
      const e = items.get('ENVELOPE');
      if (!Array.isArray(items.get('FLAGS'))) throw new BenchError(`${o.label}: message ${i + 1}: FLAGS is not a list`);
      if (!Array.isArray(e) || e.length !== 10) throw new BenchError(`${o.label}: message ${i + 1}: ENVELOPE is not a list of 10 fields`);
      if (envelopes) {
        const id = serialise(e[9]!);
        if (typeof id !== 'string') throw new BenchError(`${o.label}: message ${i + 1}: ENVELOPE has no Message-ID`);
        if (envelopes.has(id)) throw new BenchError(`${o.label}: Message-ID ${id} came back twice`);
        envelopes.set(id, JSON.stringify(serialise(e)));
      }
    }

    // 'count' keeps the client's cost per octet the same whatever the server; verify keeps them to hash.
    const body = await client.command('FETCH 1:* BODY.PEEK[]', o.verify ? 'keep' : 'count');
    expectOk(o.label, 'FETCH BODY.PEEK[]', body);
    checkFetches(o.label, 'FETCH 1:* BODY.PEEK[]', body, o.expected, 'BODY[]');
    let bodyBytes = 0;
    const seen = new Set<string>();
    for (const r of body.responses) {
      if (r.literalSizes.length === 0) continue;
      if (r.literalSizes.length !== 1) throw new BenchError(`${o.label}: a BODY[] response has ${r.literalSizes.length} literals: ${r.parts[0]!.slice(0, 100)}`);
      bodyBytes += r.literalSizes[0]!;
      if (o.verify) {
        const h = createHash('sha256').update(r.literals[0]!).digest('hex');
        if (!o.verify.sha256.has(h)) throw new BenchError(`${o.label}: ${r.parts[0]!.slice(0, 60)}: the body differs from every message delivered`);
        if (seen.has(h)) throw new BenchError(`${o.label}: ${r.parts[0]!.slice(0, 60)}: the same body came back twice`);
        seen.add(h);
      }
    }

    await client.logout();
    return {
      selectMs: select.ms,
      envelopeMs: env.ms,
      bodyMs: body.ms,
      bodyBytes,
      envelopeWireBytes: env.bytes,
      bodyWireBytes: body.bytes,
      envelopeClientCpuMs: env.clientCpuMs,
      bodyClientCpuMs: body.clientCpuMs,
      monotonicUs: { selectMs: select.monotonicUs, envelopeMs: env.monotonicUs, bodyMs: body.monotonicUs },
      ...(envelopes ? { envelopes } : {}),
    };
  } finally {
    client.close();
  }
}
