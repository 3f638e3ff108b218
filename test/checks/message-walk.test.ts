/**
 * @module test/checks/message-walk
 * SUMMARY: the walker's classification, case by case, against what Postfix's mime_state.c
 * does: header classes, the MIME flag, folding, the obsolete "Name :" form, garbage in a
 * header block, boundaries (prefixes, trailing cruft, the whole stack, digest defaults),
 * body offsets per segment, smtpd's 2048-byte records, header_size_limit, nesting limit.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_WALK_LIMITS,
  MessageWalker,
  collectKeys,
  headerNameLength,
  isHeaderText,
  type WalkKey,
  type WalkLimits,
} from '../../src/checks/message-walk.js';
import { crlf } from './helpers.js';

/** One key as a short string: "primary Subject: x", "multipart+mime Content-Type: ...", "body@12 text". */
function show(k: WalkKey): string {
  if (k.kind === 'header') return `${k.headerClass}${k.mime ? '+mime' : ''} ${k.text}`;
  return `body@${k.offset}${k.continued ? '+' : ''} ${k.text}`;
}

function walk(text: string | Buffer, limits: Partial<WalkLimits> = {}): string[] {
  const buf = typeof text === 'string' ? crlf(text) : text;
  return collectKeys(buf, { ...DEFAULT_WALK_LIMITS, ...limits }).map(show);
}

interface Case {
  readonly name: string;
  readonly message: string;
  readonly keys: readonly string[];
  readonly limits?: Partial<WalkLimits>;
}

const CASES: readonly Case[] = [
  {
    name: 'primary headers, the empty line and body lines with their offsets',
    message: 'From: a@b\nSubject: hi\n\nline one\n\nline three\n',
    keys: ['primary From: a@b', 'primary Subject: hi', 'body@0 ', 'body@1 line one', 'body@10 ', 'body@11 line three'],
  },
  {
    name: 'a folded header is one key with its newlines; white space kept',
    message: 'Subject: one\n two\n\tthree\nX: y\n\nb\n',
    keys: ['primary Subject: one\n two\n\tthree', 'primary X: y', 'body@0 ', 'body@1 b'],
  },
  {
    name: 'the obsolete "Name :" form is normalised, a name may hold punctuation',
    message: 'Subject :  x\nWeird(n)!: y\n\n',
    keys: ['primary Subject:  x', 'primary Weird(n)!: y', 'body@0 '],
  },
  {
    name: 'MIME headers in the primary section carry the MIME flag',
    message: 'MIME-Version: 1.0\nContent-Type: text/plain\nContent-Length: 3\ncontent-id: <x>\n\nb\n',
    keys: ['primary+mime MIME-Version: 1.0', 'primary+mime Content-Type: text/plain', 'primary Content-Length: 3', 'primary+mime content-id: <x>', 'body@0 ', 'body@1 b'],
  },
  {
    name: 'a non-header line ends the primary headers (Postfix adds an empty line of its own)',
    message: 'From: a\nnot a header\nX: y\n\nb\n',
    keys: ['primary From: a', 'body@0 ', 'body@0 not a header', 'body@13 X: y', 'body@18 ', 'body@19 b'],
  },
  {
    name: 'a first line starting with white space is not a header',
    message: ' x: y\nSubject: s\n\n',
    keys: ['body@0 ', 'body@0  x: y', 'body@6 Subject: s', 'body@17 '],
  },
  {
    name: 'multipart: part headers are multipart class; boundary lines are body lines',
    message: 'Content-Type: multipart/mixed; boundary=b\n\npre\n--b\nX-A: 1\nContent-Type: text/plain\n\ntext\n--b--\nepi\n',
    keys: [
      'primary+mime Content-Type: multipart/mixed; boundary=b',
      'body@0 ',
      'body@1 pre',
      'body@5 --b',
      'multipart X-A: 1',
      'multipart+mime Content-Type: text/plain',
      'body@0 ',
      'body@1 text',
      'body@0 --b--',
      'body@6 epi',
    ],
  },
  {
    name: 'message/rfc822: the attached message headers are nested, its MIME headers flagged',
    message:
      'Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: multipart/alternative; boundary=i\n\n--i\nX-P: p\n\nx\n--i--\n--o--\n',
    keys: [
      'primary+mime Content-Type: multipart/mixed; boundary=o',
      'body@0 ',
      'body@1 --o',
      'multipart+mime Content-Type: message/rfc822',
      'body@0 ',
      'nested Subject: inner',
      'nested+mime Content-Type: multipart/alternative; boundary=i',
      'body@0 ',
      'body@1 --i',
      'multipart X-P: p',
      'body@0 ',
      'body@1 x',
      'body@0 --i--',
      'body@0 --o--',
    ],
  },
  {
    name: 'a top-level message/rfc822 body is parsed as nested headers too',
    message: 'Content-Type: message/rfc822\n\nFrom: x\n\ninner\n',
    keys: ['primary+mime Content-Type: message/rfc822', 'body@0 ', 'nested From: x', 'body@0 ', 'body@1 inner'],
  },
  {
    name: 'message/partial and external-body bodies are not parsed; message/global is',
    message:
      'Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/partial; id=1\n\nSubject: p\n--b\nContent-Type: message/global\n\nSubject: g\n--b--\n',
    keys: [
      'primary+mime Content-Type: multipart/mixed; boundary=b',
      'body@0 ',
      'body@1 --b',
      'multipart+mime Content-Type: message/partial; id=1',
      'body@0 ',
      'body@1 Subject: p',
      'body@12 --b',
      'multipart+mime Content-Type: message/global',
      'body@0 ',
      'nested Subject: g',
      'body@0 --b--',
    ],
  },
  {
    name: 'multipart/digest parts default to message/rfc822, even with an unknown type',
    message: 'Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n--d\nContent-Type: application/pdf\n\nSubject: two\n--d\nContent-Type: text/plain\n\nSubject: three\n--d--\n',
    keys: [
      'primary+mime Content-Type: multipart/digest; boundary=d',
      'body@0 ',
      'body@1 --d',
      'body@0 ',
      'nested Subject: one',
      'body@0 --d',
      'multipart+mime Content-Type: application/pdf',
      'body@0 ',
      'nested Subject: two',
      'body@0 --d',
      'multipart+mime Content-Type: text/plain',
      'body@0 ',
      'body@1 Subject: three',
      'body@0 --d--',
    ],
  },
  {
    name: 'boundaries: trailing cruft, prefix matches and closing with cruft',
    message: 'Content-Type: multipart/mixed; boundary="b"\n\n--b junk\nX-1: a\n\n--bcd\nX-2: b\n\n--b--cruft\n--b\nX-3: c\n',
    keys: [
      'primary+mime Content-Type: multipart/mixed; boundary="b"',
      'body@0 ',
      'body@1 --b junk',
      'multipart X-1: a',
      'body@0 ',
      'body@1 --bcd',
      'multipart X-2: b',
      'body@0 ',
      'body@0 --b--cruft',
      'body@11 --b',
      'body@15 X-3: c',
    ],
  },
  {
    name: 'an outer boundary inside an inner part pops the inner one',
    message:
      'Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\nX-I: 1\n\n--o\nX-O: 2\n\n--i\nX-Gone: 3\n',
    keys: [
      'primary+mime Content-Type: multipart/mixed; boundary=o',
      'body@0 ',
      'body@1 --o',
      'multipart+mime Content-Type: multipart/alternative; boundary=i',
      'body@0 ',
      'body@1 --i',
      'multipart X-I: 1',
      'body@0 ',
      'body@1 --o',
      'multipart X-O: 2',
      'body@0 ',
      'body@1 --i',
      'body@5 X-Gone: 3',
    ],
  },
  {
    name: 'Content-Type parameters: comments, quoted strings, folding, case; several boundaries, and matching a lower one pops the higher',
    message: 'Content-Type: MULTIPART/Mixed (c) ;\n\tBOUNDARY = "a b" ; boundary=second\n\n--second\nX-1: 1\n\n--a b\nX-2: 2\n\n--second\nX-3: 3\n',
    keys: [
      'primary+mime Content-Type: MULTIPART/Mixed (c) ;\n\tBOUNDARY = "a b" ; boundary=second',
      'body@0 ',
      'body@1 --second',
      'multipart X-1: 1',
      'body@0 ',
      'body@1 --a b',
      'multipart X-2: 2',
      'body@0 ',
      'body@1 --second',
      'body@10 X-3: 3',
    ],
  },
  {
    name: 'a part header block ended by a boundary line (no empty line)',
    message: 'Content-Type: multipart/mixed; boundary=b\n\n--b\nX-1: 1\n--b\nX-2: 2\n\nx\n',
    keys: [
      'primary+mime Content-Type: multipart/mixed; boundary=b',
      'body@0 ',
      'body@1 --b',
      'multipart X-1: 1',
      'body@0 --b',
      'multipart X-2: 2',
      'body@0 ',
      'body@1 x',
    ],
  },
  {
    name: 'disable_mime_input_processing: all after the primary headers is body',
    message: 'Content-Type: multipart/mixed; boundary=b\n\n--b\nX-A: 1\n\nx\n',
    limits: { disableMime: true },
    keys: ['primary+mime Content-Type: multipart/mixed; boundary=b', 'body@0 ', 'body@1 --b', 'body@5 X-A: 1', 'body@12 ', 'body@13 x'],
  },
  {
    name: 'headers only, no empty line, no final newline',
    message: 'From: a\nSubject: b',
    keys: ['primary From: a', 'primary Subject: b'],
  },
  {
    name: 'an empty message has no keys',
    message: '',
    keys: [],
  },
  {
    name: 'long header: folded text stops growing at header_size_limit',
    message: 'X-Big: 0123456789\n abcdefghij\n KLMNOPQRST\nNext: 1\n',
    limits: { headerSizeLimit: 20 },
    keys: ['primary X-Big: 0123456789\n abcdefghij', 'primary Next: 1'],
  },
  {
    name: 'long lines come in line_length_limit records; a boundary is not sought after a chunk',
    message: 'Content-Type: multipart/mixed; boundary=b\n\n01234567890123456789012345678901234567890123456789--b\n--b\n',
    limits: { lineLengthLimit: 50 },
    keys: [
      'primary+mime Content-Type: multipart/mixed; boundary=b',
      'body@0 ',
      'body@1+ 01234567890123456789012345678901234567890123456789',
      'body@52 --b',
      'body@56 --b',
    ],
  },
];

describe('MessageWalker classifies as mime_state does', () => {
  for (const c of CASES) {
    it(c.name, () => {
      assert.deepEqual(walk(c.message, c.limits), [...c.keys]);
    });
  }
});

describe('record cutting (smtp_get with line_length_limit)', () => {
  const L = 2048;
  const cases: Array<{ name: string; body: string; keys: string[] }> = [
    { name: 'a line of exactly 2047 bytes is one record', body: 'a'.repeat(2047), keys: ['a'.repeat(2047)] },
    { name: 'a line of 2048 bytes is a full chunk then an empty record', body: 'b'.repeat(2048), keys: ['b'.repeat(2048) + '+', ''] },
    { name: 'a line of 5000 bytes is 2048 + 2048 + 904', body: 'c'.repeat(5000), keys: ['c'.repeat(2048) + '+', 'c'.repeat(2048) + '+', 'c'.repeat(904)] },
  ];
  for (const c of cases) {
    for (const chunk of [1, 7, 2047, 2048, 2049, 100000]) {
      it(`${c.name} (written in ${chunk}-byte pieces)`, () => {
        const msg = crlf(`X: y\n\n${c.body}\nend\n`);
        const seen: string[] = [];
        const w = new MessageWalker({
          header() {},
          headerTail() {},
          body(type, buf, s, e) {
            seen.push(buf.toString('latin1', s, e) + (type === 2 ? '+' : ''));
          },
        });
        for (let i = 0; i < msg.length; i += chunk) w.write(msg.subarray(i, i + chunk));
        w.end();
        assert.deepEqual(seen, ['', ...c.keys, 'end']);
        assert.equal(L, DEFAULT_WALK_LIMITS.lineLengthLimit);
      });
    }
  }
  it('a CR in the 2048th place with LF next ends the line there', () => {
    const msg = Buffer.from(`X: y\r\n\r\n${'d'.repeat(2047)}\r\nend\r\n`, 'latin1');
    assert.deepEqual(
      collectKeys(msg).filter((k) => k.kind === 'body').map((k) => [k.text.length, k.continued]),
      [[0, false], [2047, false], [3, false]],
    );
  });
  it('a message ending inside a long line gets the empty record mime_state adds', () => {
    const msg = Buffer.from(`X: y\r\n\r\n${'e'.repeat(2048)}`, 'latin1');
    assert.deepEqual(
      collectKeys(msg).filter((k) => k.kind === 'body').map((k) => [k.text.length, k.continued]),
      [[0, false], [2048, true], [0, false]],
    );
  });
  it('bare LF line endings work as well as CRLF', () => {
    assert.deepEqual(collectKeys(Buffer.from('A: 1\n b\n\nx\n')).map(show), ['primary A: 1\n b', 'body@0 ', 'body@1 x']);
  });
});

describe('MIME nesting limit', () => {
  function nested(depth: number): Buffer {
    let text = '';
    for (let i = 0; i < depth; i++) text += `Content-Type: multipart/mixed; boundary=b${i}\n\n--b${i}\n`;
    return crlf(`${text}X: deepest\n\nbody\n`);
  }
  for (const [depth, reported] of [
    [102, false],
    [103, true],
  ] as const) {
    it(`${depth} levels ${reported ? 'exceed' : 'stay within'} mime_nesting_limit = 100`, () => {
      const errors: string[] = [];
      const w = new MessageWalker(
        { header() {}, headerTail() {}, body() {}, nestingError: (t) => errors.push(t) },
        { ...DEFAULT_WALK_LIMITS, reportNesting: true },
      );
      w.write(nested(depth));
      w.end();
      assert.equal(errors.length, reported ? 1 : 0);
      if (reported) assert.match(errors[0]!, /^Content-Type: multipart\/mixed; boundary=b102$/);
    });
  }
});

describe('is_header()', () => {
  const cases: Array<[string, number]> = [
    ['Subject: x', 7],
    ['Subject : x', 7],
    ['Sub ject: x', 0],
    [': x', 0],
    [' Subject: x', 0],
    ['Subject', 0],
    ['X-\u00e9: x', 0],
    ['a:', 1],
  ];
  for (const [text, len] of cases) {
    it(JSON.stringify(text), () => {
      const b = Buffer.from(text, 'utf8');
      assert.equal(headerNameLength(b, 0, b.length), len);
      assert.equal(isHeaderText(text), len > 0);
    });
  }
});

describe('holdFrom: what the walker has not decided yet', () => {
  it('holds a header until the next line shows it is complete, and a partial line', () => {
    const w = new MessageWalker({ header() {}, headerTail() {}, body() {} });
    w.write(Buffer.from('Subject: a\r\n'));
    assert.equal(w.holdFrom, 0);
    w.write(Buffer.from(' b\r\nX'));
    assert.equal(w.holdFrom, 0);
    w.write(Buffer.from(': 1\r\n\r\nbody'));
    assert.equal(w.holdFrom, w.position - 4);
    w.write(Buffer.from('\r\n'));
    assert.equal(w.holdFrom, w.position);
  });
});
