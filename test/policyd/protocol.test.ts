/**
 * The policy protocol's framing, without sockets: name=value lines, "\n" and "\r\n",
 * 512-byte truncation of names and values, garbage lines, requests split at every byte,
 * several requests in one chunk, UTF-8 values, and the reply writer.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ATTRIBUTE_LIMIT, MAX_ATTRIBUTES, PolicyRequestReader, formatPolicyReply } from '../../src/policyd/protocol.js';

function read(chunks: Array<string | Buffer>): { requests: Array<Record<string, string>>; garbage: string[] } {
  const requests: Array<Record<string, string>> = [];
  const garbage: string[] = [];
  const r = new PolicyRequestReader({
    onRequest: (a) => requests.push(Object.fromEntries(a)),
    onGarbage: (l) => garbage.push(l),
  });
  for (const c of chunks) r.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
  return { requests, garbage };
}

/** Every way of cutting TEXT into pieces of N bytes. */
function pieces(text: string, n: number): Buffer[] {
  const b = Buffer.from(text, 'utf8');
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += n) out.push(b.subarray(i, i + n));
  return out;
}

const long = (c: string, n: number) => c.repeat(n);

const cases: Array<{ name: string; input: string; requests: Array<Record<string, string>>; garbage?: string[] }> = [
  {
    name: 'one request, LF',
    input: 'request=smtpd_access_policy\nsender=a@b\n\n',
    requests: [{ request: 'smtpd_access_policy', sender: 'a@b' }],
  },
  {
    name: 'one request, CRLF',
    input: 'request=smtpd_access_policy\r\nsender=a@b\r\n\r\n',
    requests: [{ request: 'smtpd_access_policy', sender: 'a@b' }],
  },
  {
    name: 'mixed line endings, two requests in one chunk',
    input: 'a=1\r\nb=2\n\nc=3\n\r\n',
    requests: [{ a: '1', b: '2' }, { c: '3' }],
  },
  {
    name: 'empty value, value with "=", last value wins',
    input: 'sender=\nx=y=z\nx=last\n\n',
    requests: [{ sender: '', x: 'last' }],
  },
  {
    name: 'a lone CR inside a value is kept',
    input: 'a=b\rc\n\n',
    requests: [{ a: 'b\rc' }],
  },
  {
    name: 'garbage lines are reported and skipped',
    input: 'junk line\n=novalue\nsender=s@x\n\n',
    requests: [{ sender: 's@x' }],
    garbage: ['junk line', '=novalue'],
  },
  {
    name: 'names and values are cut to 512 bytes',
    input: `${long('n', 600)}=v\nsender=${long('s', 700)}\nrecipient=${long('r', 512)}\n\n`,
    requests: [{ [long('n', ATTRIBUTE_LIMIT)]: 'v', sender: long('s', ATTRIBUTE_LIMIT), recipient: long('r', 512) }],
  },
  {
    name: 'value of exactly 512 bytes before CRLF keeps all 512',
    input: `v=${long('x', 512)}\r\nw=${long('y', 513)}\r\n\r\n`,
    requests: [{ v: long('x', 512), w: long('y', 512) }],
  },
  {
    name: 'UTF-8 values (SMTPUTF8 addresses)',
    input: 'sender=jörg@bücher.example\n\n',
    requests: [{ sender: 'jörg@bücher.example' }],
  },
  {
    name: 'a lone empty line is an empty request',
    input: '\nsender=a\n\n',
    requests: [{}, { sender: 'a' }],
  },
];

describe('PolicyRequestReader', () => {
  for (const c of cases) {
    it(c.name, () => {
      const whole = read([c.input]);
      assert.deepEqual(whole.requests, c.requests);
      assert.deepEqual(whole.garbage, c.garbage ?? []);
      // The same bytes in pieces of every small size give the same requests.
      for (const n of [1, 2, 3, 7, 64, 511, 513]) {
        const split = read(pieces(c.input, n));
        assert.deepEqual(split.requests, c.requests, `pieces of ${n}`);
        assert.deepEqual(split.garbage, c.garbage ?? [], `garbage, pieces of ${n}`);
      }
    });
  }

  it('a megabyte-long line is cut, not held', () => {
    const r = read([`sender=${long('a', 1 << 20)}`, '\n\n']);
    assert.equal(r.requests[0]!.sender, long('a', ATTRIBUTE_LIMIT));
  });

  it(`keeps at most ${MAX_ATTRIBUTES} names per request and says so once`, () => {
    const lines = Array.from({ length: MAX_ATTRIBUTES + 5 }, (_, i) => `a${i}=${i}`).join('\n');
    const r = read([`${lines}\na0=again\n\n`]);
    assert.equal(Object.keys(r.requests[0]!).length, MAX_ATTRIBUTES);
    assert.equal(r.requests[0]!.a0, 'again');
    assert.equal(r.garbage.length, 1);
  });

  it('writes one action and the empty line; a newline in the action cannot split the reply', () => {
    assert.equal(formatPolicyReply('DUNNO'), 'action=DUNNO\n\n');
    assert.equal(formatPolicyReply('450 4.7.1 a\r\nb'), 'action=450 4.7.1 a b\n\n');
  });
});
