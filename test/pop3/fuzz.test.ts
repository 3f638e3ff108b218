/**
 * @module test/pop3/fuzz
 * SUMMARY: thousands of random and mutated POP3 command lines (seeded, so a failure can be
 * replayed with FUZZ_SEED), pipelined over many connections in random chunks, logged in or
 * not, with random binary, NUL, CR, long and non-UTF-8 lines. The server must never log an
 * internal error, every connection must be greeted,
 * and afterwards it must still serve a normal session byte-exactly.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { harness, loginRaw, RawClient, type Harness } from './harness.js';
import { mulberry32 as rng } from '../helpers/prng.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x9e3779b9);
const LINES = Number(process.env.FUZZ_LINES ?? 6000);

const VALID = [
  'CAPA', 'USER bob', 'PASS hunter2', 'STAT', 'LIST', 'LIST 1', 'UIDL', 'UIDL 2', 'RETR 1', 'RETR 2', 'TOP 1 0', 'TOP 2 3',
  'DELE 1', 'RSET', 'NOOP', 'AUTH', 'AUTH PLAIN', 'AUTH PLAIN AGJvYgBodW50ZXIy', 'AUTH PLAIN =', 'USER alice', 'PASS wrong', '*',
];
const VERBS = ['CAPA', 'USER', 'PASS', 'AUTH', 'STAT', 'LIST', 'UIDL', 'RETR', 'TOP', 'DELE', 'RSET', 'NOOP', 'APOP', 'STLS', 'XTND', ''];
const ARGS = ['', '0', '1', '2', '-1', '4294967296', '99999999999999999999', '1 1', '1 -1', '1 x', ' ', '  1', '1 ', 'PLAIN', '=', '*', 'é', '\u0000', '\t1', '%s%n', '../../etc/passwd', '\uD800', '1\r2'];

function mutate(r: () => number, line: Buffer): Buffer {
  const b = Buffer.from(line);
  const kind = Math.floor(r() * 5);
  if (kind === 0 && b.length > 0) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
  if (kind === 1) return b.subarray(0, Math.floor(r() * b.length));
  if (kind === 2) return Buffer.concat([b.subarray(0, Math.floor(r() * b.length)), Buffer.from([Math.floor(r() * 256)]), b.subarray(Math.floor(r() * b.length))]);
  if (kind === 3) return Buffer.concat([b, b]);
  return b;
}

function fuzzLine(r: () => number): Buffer {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const x = r();
  let line: Buffer;
  if (x < 0.35) line = mutate(r, Buffer.from(pick(VALID)));
  else if (x < 0.7) line = Buffer.from(`${pick(VERBS)}${r() < 0.8 ? ' ' : ''}${pick(ARGS)}${r() < 0.2 ? ` ${pick(ARGS)}` : ''}`);
  else if (x < 0.85) line = Buffer.from(Array.from({ length: Math.floor(r() * 60) }, () => Math.floor(r() * 256)));
  else if (x < 0.95) line = Buffer.from(pick(VALID).toLowerCase());
  else line = Buffer.alloc(Math.floor(r() * 20_000), 0x41);
  // Never STLS from a fuzzed line: the next bytes are not a TLS handshake, and that only
  // tests that the connection is dropped (done once, on purpose, below).
  if (/^\s*stls/i.test(line.toString('latin1'))) line = Buffer.from('NOOP');
  return Buffer.concat([line, Buffer.from(r() < 0.9 ? '\r\n' : '\n')]);
}

describe('POP3 fuzz', () => {
  let h: Harness;
  before(async () => {
    h = await harness({ guard: { failureDelayMs: 1, maxFailuresPerClient: 0, maxFailuresPerUser: 0 } });
    await h.store.deliver('bob', Buffer.from('Subject: one\r\n\r\n.body\r\n'));
    await h.store.deliver('bob', Buffer.from('Subject: two\r\n\r\nline\r\n'));
    await h.store.deliver('alice', Buffer.from('Subject: keep\r\n\r\n..dots\r\n'));
  });
  after(async () => {
    await h.close();
  });

  it(`survives ${LINES} random and mutated lines (seed ${SEED}) and still answers`, async () => {
    const l = await h.listen({ deps: { idleTimeoutMs: 1500, maxLineLength: 4096 } });
    const r = rng(SEED);
    let sent = 0;
    let replies = 0;
    const session = async (): Promise<void> => {
      const lines: Buffer[] = [];
      if (r() < 0.6) lines.push(Buffer.from('USER bob\r\nPASS hunter2\r\n'));
      const n = 20 + Math.floor(r() * 200);
      for (let i = 0; i < n && sent < LINES; i++, sent++) lines.push(fuzzLine(r));
      // An empty line ends an AUTH continuation or an over-long line; QUIT then ends the session.
      lines.push(Buffer.from('\r\nQUIT\r\n'));
      const data = Buffer.concat(lines);
      const socket = connect(l.port(), '127.0.0.1');
      let received = '';
      socket.on('data', (d: Buffer) => {
        received += d.toString('latin1');
      });
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      // Random chunking: a line split across writes, several lines in one.
      for (let off = 0; off < data.length; ) {
        const size = 1 + Math.floor(r() * 700);
        socket.write(data.subarray(off, off + size));
        off += size;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          socket.destroy();
          resolve();
        }, 5000);
        socket.once('close', () => {
          clearTimeout(t);
          resolve();
        });
      });
      assert.ok(received.startsWith('+OK greygate ready.\r\n'), received.slice(0, 100));
      replies += received.split('\r\n').length;
    };
    while (sent < LINES) await Promise.all([session(), session(), session(), session()]);
    // STLS followed by garbage instead of a handshake: that connection is dropped, no more.
    const c = await RawClient.connect(l.port());
    await c.line();
    assert.equal(await c.command('STLS'), '+OK Begin TLS negotiation now.');
    c.write('this is not TLS\r\n'.repeat(100));
    await c.closedByServer();
    assert.ok(replies > LINES / 4, `${replies} reply lines`);
    const errors = h.log.of('error');
    assert.deepEqual(errors, [], 'no internal errors');
    // The server still serves a normal session, byte for byte.
    const ok = await RawClient.connect(l.port());
    try {
      assert.equal(await loginRaw(ok), '+OK Logged in.');
      assert.equal(await ok.command('RETR 1'), '+OK 25 octets');
      assert.equal((await ok.multiline()).toString(), 'Subject: keep\r\n\r\n...dots\r\n');
      assert.equal(await ok.command('QUIT'), '+OK Logging out.');
    } finally {
      ok.destroy();
    }
  });
});
