/**
 * imap/parser: command framing (literals, LITERAL+, limits, line mode), the command grammar,
 * the per-command interpreters (sequence sets, FETCH/STORE items, SEARCH keys, APPEND), and a
 * seeded fuzz run that checks malformed input only ever comes back as an ImapParseError.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  CommandReader,
  decodeMailboxName,
  expandSequenceSet,
  formatSection,
  formatSequenceSet,
  isSequenceSet,
  nodeText,
  parseAppend,
  parseCommand,
  parseDateTime,
  parseFetchItems,
  parseFlagList,
  parseSearch,
  parseSearchDate,
  parseSequenceSet,
  parseStoreAction,
  sequenceSetHas,
  type ImapNode,
  type ReaderEvent,
  type ReaderLimits,
  type SearchKey,
} from '../../src/imap/parser.js';
import { mulberry32 as prng } from '../helpers/prng.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Feed `input` in the given chunk sizes and collect every event. */
function frame(input: string | Buffer, chunk = Infinity, limits?: Partial<ReaderLimits>): ReaderEvent[] {
  const bytes = typeof input === 'string' ? b(input) : input;
  const reader = new CommandReader(limits);
  const events: ReaderEvent[] = [];
  for (let i = 0; i < bytes.length; i += chunk === Infinity ? bytes.length : chunk) {
    reader.push(bytes.subarray(i, chunk === Infinity ? bytes.length : i + chunk));
    for (let e = reader.next(); e !== null; e = reader.next()) events.push(e);
  }
  return events;
}

/** A compact view of events for table comparisons. */
function summary(events: ReaderEvent[]): string[] {
  return events.map((e) => {
    switch (e.kind) {
      case 'command':
        return e.result.ok ? `cmd ${e.result.value.tag} ${e.result.value.command} ${show(e.result.value.args)}` : `bad ${e.result.error.tag} ${e.result.error.message}`;
      case 'continue':
        return `+ ${e.size}`;
      case 'line':
        return `line ${e.line.toString('latin1')}`;
      case 'error':
        return `error ${e.error.code} ${e.error.tag} ${e.error.message}${e.error.disconnect ? ' (disconnect)' : ''}`;
    }
  });
}

/** Nodes as compact text: atoms bare, strings "q", literals {bytes}, NIL, (lists), sections. */
function show(nodes: readonly ImapNode[]): string {
  return nodes
    .map((n): string => {
      switch (n.type) {
        case 'atom': {
          let s = n.value;
          if (n.section !== undefined) s += `[${show(n.section)}]`;
          if (n.partial !== undefined) s += `<${n.partial.origin}${n.partial.count === undefined ? '' : `.${n.partial.count}`}>`;
          return s;
        }
        case 'string':
          return `"${n.value}"`;
        case 'literal':
          return `{${n.value.toString('latin1')}}`;
        case 'nil':
          return 'NIL';
        case 'list':
          return `(${show(n.items)})`;
      }
    })
    .join(' ');
}

describe('CommandReader framing', () => {
  const cases: { name: string; input: string; limits?: Partial<ReaderLimits>; want: string[] }[] = [
    { name: 'one command', input: 'a1 NOOP\r\n', want: ['cmd a1 NOOP '] },
    { name: 'pipelined commands in one chunk', input: 'a1 NOOP\r\na2 CAPABILITY\r\n', want: ['cmd a1 NOOP ', 'cmd a2 CAPABILITY '] },
    { name: 'bare LF ends a line too', input: 'a1 NOOP\na2 NOOP\n', want: ['cmd a1 NOOP ', 'cmd a2 NOOP '] },
    { name: 'incomplete line waits', input: 'a1 NOO', want: [] },
    { name: 'empty lines are skipped', input: '\r\n\r\na1 NOOP\r\n', want: ['cmd a1 NOOP '] },
    {
      name: 'synchronizing literal asks for a continuation',
      input: 'a1 LOGIN {3}\r\nbob "pw"\r\n',
      want: ['+ 3', 'cmd a1 LOGIN {bob} "pw"'],
    },
    { name: 'LITERAL+ does not', input: 'a1 LOGIN {3+}\r\nbob {2+}\r\npw\r\n', want: ['cmd a1 LOGIN {bob} {pw}'] },
    {
      name: 'literal bytes may hold CRLF and literal markers',
      input: 'a1 APPEND INBOX {11}\r\nx {5}\r\ny\r\nz\r\n',
      want: ['+ 11', 'cmd a1 APPEND INBOX {x {5}\r\ny\r\nz}'],
    },
    { name: 'zero-length literal', input: 'a1 LOGIN {0}\r\n {0+}\r\n\r\n', want: ['+ 0', 'cmd a1 LOGIN {} {}'] },
    {
      name: 'line too long is refused and the next command still works',
      input: `a1 NOOP ${'x'.repeat(100)}\r\na2 NOOP\r\n`,
      limits: { maxLineLength: 50 },
      want: ['error TOOBIG a1 Command line too long', 'cmd a2 NOOP '],
    },
    {
      name: 'synchronizing literal over the limit: refused, stream stays in step',
      input: 'a1 APPEND INBOX {1000}\r\na2 NOOP\r\n',
      limits: { maxLiteralSize: 100 },
      want: ['error TOOBIG a1 Literal size too large', 'cmd a2 NOOP '],
    },
    {
      name: 'LITERAL+ over the limit: refused, connection must close',
      input: 'a1 APPEND INBOX {1000+}\r\n',
      limits: { maxLiteralSize: 100 },
      want: ['error TOOBIG a1 Literal size too large (disconnect)'],
    },
    {
      name: 'whole command over the limit',
      input: 'a1 X {40+}\r\n0123456789012345678901234567890123456789 {40+}\r\n',
      limits: { maxCommandSize: 70 },
      want: ['error TOOBIG a1 Literal size too large (disconnect)'],
    },
    { name: 'a bad command is answered and the next one read', input: 'a1 FETCH (1\r\na2 NOOP\r\n', want: ["bad a1 Error in IMAP command FETCH: Missing ')'", 'cmd a2 NOOP '] },
    { name: 'no tag: untagged BAD', input: '* NOOP\r\n', want: ['bad null Error in IMAP command received by server.'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(summary(frame(c.input, Infinity, c.limits)), c.want);
    });
    it(`${c.name} (fed byte by byte)`, () => {
      const got = summary(frame(c.input, 1, c.limits));
      // Byte-by-byte feeding reports an overlong line as soon as it is overlong; the result
      // is the same sequence of answers.
      assert.deepEqual(got, c.want);
    });
  }

  it('line mode yields raw lines (IDLE DONE, AUTHENTICATE data), then back to commands', () => {
    const reader = new CommandReader();
    reader.push(b('a1 IDLE\r\nDONE\r\na2 NOOP\r\n'));
    const first = reader.next();
    assert.equal(first?.kind, 'command');
    reader.mode = 'line';
    assert.deepEqual(summary([reader.next()!]), ['line DONE']);
    reader.mode = 'command';
    assert.deepEqual(summary([reader.next()!]), ['cmd a2 NOOP ']);
    assert.equal(reader.next(), null);
    assert.equal(reader.pending, 0);
  });

  it('a large literal arriving in many chunks is assembled exactly', () => {
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const input = Buffer.concat([b(`a1 APPEND INBOX {${body.length}+}\r\n`), body, b('\r\n')]);
    const events = frame(input, 4096);
    assert.equal(events.length, 1);
    const e = events[0]!;
    assert.ok(e.kind === 'command' && e.result.ok);
    const lit = e.result.value.args[1];
    assert.ok(lit?.type === 'literal');
    assert.ok(lit.value.equals(body));
    assert.equal(e.size, input.length);
  });

  it('pending counts unframed bytes (a STARTTLS injection check)', () => {
    const reader = new CommandReader();
    reader.push(b('a1 STARTTLS\r\na2 NOOP\r\n'));
    reader.next();
    assert.equal(reader.pending, 'a2 NOOP\r\n'.length);
  });
});

describe('parseCommand', () => {
  const ok: [string, string][] = [
    ['A1 NOOP', 'A1 NOOP '],
    ['a2 login "user" "pa\\"ss\\\\"', 'a2 LOGIN "user" "pa"ss\\"'],
    ['a3 select [Gmail]/Sent', 'a3 SELECT [Gmail]/Sent'],
    ['a4 LIST "" *', 'a4 LIST "" *'],
    ['a5 LIST "" %/foo', 'a5 LIST "" %/foo'],
    ['a6 STORE 1:3,5 +FLAGS.SILENT (\\Seen $Junk)', 'a6 STORE 1:3,5 +FLAGS.SILENT (\\Seen $Junk)'],
    ['a7 uid fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)', 'a7 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)'],
    ['a8 FETCH 1 (BODY[1.2.MIME] BODY[]<5> body[text])', 'a8 FETCH 1 (BODY[1.2.MIME] BODY[]<5> body[text])'],
    ['a9 X NIL nil "NIL" (NIL)', 'a9 X NIL NIL "NIL" (NIL)'],
    ['b1 X ((a b) (c (d)) ())', 'b1 X ((a b) (c (d)) ())'],
    ['b2 X "utf-8 é"', 'b2 X "utf-8 é"'],
    ['b3 NOOP ', 'b3 NOOP '],
    ['b5 APPEND INBOX (\\Seen) " 7-Feb-1994 21:52:25 -0800" {3}\r\nabc', 'b5 APPEND INBOX (\\Seen) " 7-Feb-1994 21:52:25 -0800" {abc}'],
    ['b6 UID SEARCH CHARSET UTF-8 TEXT {4+}\r\nnäh', 'b6 UID SEARCH CHARSET UTF-8 TEXT {nÃ¤h}'],
    ['b7 X ""', 'b7 X ""'],
  ];
  for (const [input, want] of ok) {
    it(`parses ${JSON.stringify(input)}`, () => {
      const r = parseCommand(b(input));
      assert.ok(r.ok, r.ok ? '' : r.error.message);
      assert.equal(`${r.value.tag} ${r.value.command} ${show(r.value.args)}`, want);
    });
  }
  const bad: [string, string | null, string][] = [
    ['', null, 'Error in IMAP command received by server.'],
    ['+ NOOP', null, 'Error in IMAP command received by server.'],
    ['a*b NOOP', null, 'Error in IMAP command received by server.'],
    ['a1', 'a1', 'Missing command.'],
    ['a1 NO(OP', 'a1', 'Error in IMAP command: Invalid command name.'],
    ['a1 FETCH (1', 'a1', "Error in IMAP command FETCH: Missing ')'"],
    ['a1 FETCH 1)', 'a1', "Error in IMAP command FETCH: Unexpected ')'"],
    ['a1 LOGIN "unterminated', 'a1', 'Error in IMAP command LOGIN: Missing closing quote'],
    ['a1 LOGIN "bad\\q"', 'a1', 'Error in IMAP command LOGIN: Invalid escape in a quoted string'],
    ['a1 X  Y', 'a1', "Error in IMAP command X: Unexpected ' '"],
    ['a1 X Y  Z', 'a1', 'Error in IMAP command X: Double space between arguments'],
    ['a1 X ( a)', 'a1', "Error in IMAP command X: Unexpected ' '"],
    ['a1 X a"b"', 'a1', 'Error in IMAP command X: Missing space between arguments'],
    ['a1 X "a"b', 'a1', 'Error in IMAP command X: Missing space between arguments'],
    ['a1 X caf\xe9', 'a1', 'Error in IMAP command X: 8-bit data outside a string'],
    ['a1 X \x01', 'a1', 'Error in IMAP command X: Control character in a command'],
    ['a1 X {3}\r\nab', 'a1', 'Error in IMAP command X: Literal data is truncated'],
    ['a1 X {3', 'a1', 'Error in IMAP command X: Invalid literal'],
    ['a1 X {}', 'a1', 'Error in IMAP command X: Invalid literal size'],
    ['a1 X {3} abc', 'a1', 'Error in IMAP command X: A literal must end its line'],
    ['a1 FETCH 1 BODY[HEADER', 'a1', "Error in IMAP command FETCH: Missing ']'"],
    ['a1 FETCH 1 BODY[]<1.0>', 'a1', 'Error in IMAP command FETCH: Invalid partial'],
    ['a1 FETCH 1 BODY[]<x>', 'a1', 'Error in IMAP command FETCH: Invalid partial'],
    ['a1 UID', 'a1', 'Error in IMAP command UID: Missing command.'],
    ['a1 UID (FETCH)', 'a1', 'Error in IMAP command UID: Missing command.'],
    ['a1 X ' + '('.repeat(200), 'a1', 'Error in IMAP command X: Too deeply nested lists'],
  ];
  for (const [input, tag, message] of bad) {
    it(`refuses ${JSON.stringify(input.slice(0, 40))}`, () => {
      const r = parseCommand(Buffer.from(input, 'latin1'));
      assert.ok(!r.ok);
      assert.equal(r.error.kind, 'parse-error');
      assert.equal(r.error.code, 'BAD');
      assert.equal(r.error.tag, tag);
      assert.equal(r.error.message, message);
    });
  }

  it('nodeText reads atoms, strings and literals; NIL is null; lists are undefined', () => {
    const r = parseCommand(b('a X atom "str" {3}\r\nlit NIL (l) BODY[]'));
    assert.ok(r.ok);
    assert.deepEqual(r.value.args.map(nodeText), ['atom', 'str', 'lit', null, undefined, undefined]);
    assert.equal(nodeText(undefined), undefined);
  });
});

describe('sequence sets', () => {
  const cases: [string, string | null][] = [
    ['1', '1:1'],
    ['1:*', '1:*'],
    ['*', '*:*'],
    ['*:4,7', '*:4 7:7'],
    ['1,3:5,10:8', '1:1 3:5 10:8'],
    ['4294967295', '4294967295:4294967295'],
    ['0', null],
    ['1:0', null],
    ['4294967296', null],
    ['1,', null],
    [',1', null],
    ['1::2', null],
    ['a', null],
    ['', null],
    ['$', null],
  ];
  for (const [text, want] of cases) {
    it(`parseSequenceSet ${JSON.stringify(text)}`, () => {
      const r = parseSequenceSet(text);
      if (want === null) {
        assert.ok(!r.ok);
        assert.equal(r.error.message, 'Invalid message sequence set');
      } else {
        assert.ok(r.ok);
        assert.equal(r.value.map((x) => `${x.start}:${x.end}`).join(' '), want);
        assert.equal(isSequenceSet(text), true);
      }
    });
  }

  const set = (t: string) => {
    const r = parseSequenceSet(t);
    assert.ok(r.ok);
    return r.value;
  };
  it('expands against the values in use, * being the last of them', () => {
    const uids = [3, 5, 9, 10, 20];
    assert.deepEqual(expandSequenceSet(set('1:*'), uids), uids);
    assert.deepEqual(expandSequenceSet(set('*'), uids), [20]);
    assert.deepEqual(expandSequenceSet(set('4:9'), uids), [5, 9]);
    assert.deepEqual(expandSequenceSet(set('9:4'), uids), [5, 9]);
    assert.deepEqual(expandSequenceSet(set('10,3,9:10,3'), uids), [3, 9, 10]);
    // RFC 3501 9: "559:*" includes the last UID even when 559 is above it.
    assert.deepEqual(expandSequenceSet(set('559:*'), uids), [20]);
    assert.deepEqual(expandSequenceSet(set('21:30'), uids), []);
    assert.deepEqual(expandSequenceSet(set('1:*'), []), []);
  });
  it('sequenceSetHas uses the same rules', () => {
    assert.equal(sequenceSetHas(set('559:*'), 20, 20), true);
    assert.equal(sequenceSetHas(set('559:*'), 19, 20), false);
    assert.equal(sequenceSetHas(set('2,4:6'), 5, 10), true);
    assert.equal(sequenceSetHas(set('2,4:6'), 3, 10), false);
  });
  it('formats ascending numbers compactly', () => {
    assert.equal(formatSequenceSet([1, 2, 3, 5, 7, 8]), '1:3,5,7:8');
    assert.equal(formatSequenceSet([4]), '4');
    assert.equal(formatSequenceSet([]), '');
  });
});

describe('parseFetchItems', () => {
  const items = (text: string) => {
    const r = parseCommand(b(`a FETCH 1 ${text}`));
    assert.ok(r.ok, r.ok ? '' : r.error.message);
    return parseFetchItems(r.value.args[1]);
  };
  const describeItems = (text: string): string => {
    const r = items(text);
    if (!r.ok) return `BAD ${r.error.message}`;
    return r.value
      .map((i) => (i.kind === 'simple' ? i.name : `${i.responseName}${i.partial?.count === undefined ? '' : `+${i.partial.count}`}${i.setsSeen ? ' seen' : ''}`))
      .join(', ');
  };
  const cases: [string, string][] = [
    ['ALL', 'FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE'],
    ['fast', 'FLAGS, INTERNALDATE, RFC822.SIZE'],
    ['FULL', 'FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY'],
    ['FLAGS', 'FLAGS'],
    ['(uid flags internaldate rfc822.size envelope bodystructure body)', 'UID, FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY'],
    ['(RFC822 RFC822.HEADER RFC822.TEXT)', 'RFC822 seen, RFC822.HEADER, RFC822.TEXT seen'],
    ['BODY[]', 'BODY[] seen'],
    ['BODY.PEEK[]', 'BODY[]'],
    ['(BODY.PEEK[HEADER] BODY[TEXT]<0.2048>)', 'BODY[HEADER], BODY[TEXT]<0>+2048 seen'],
    ['BODY.PEEK[1.2.3]', 'BODY[1.2.3]'],
    ['BODY.PEEK[1.MIME]', 'BODY[1.MIME]'],
    ['BODY.PEEK[2.header.fields (from "X-Spam" subject)]', 'BODY[2.HEADER.FIELDS (FROM X-SPAM SUBJECT)]'],
    ['BODY.PEEK[HEADER.FIELDS.NOT (Received)]<10.20>', 'BODY[HEADER.FIELDS.NOT (RECEIVED)]<10>+20'],
    ['(FLAGS FLAGS UID)', 'FLAGS, UID'],
    ['(ALL)', 'BAD Unknown fetch item ALL'],
    ['()', 'BAD Empty fetch item list'],
    ['FOO', 'BAD Unknown fetch item FOO'],
    ['"FLAGS"', 'BAD Invalid fetch item'],
    ['BINARY[1]', 'BAD Unsupported fetch item BINARY'],
    ['BODY[MIME]', 'BAD MIME needs a part number'],
    ['BODY[0]', 'BAD Invalid section part number'],
    ['BODY[1.HEADERX]', 'BAD Invalid section text HEADERX'],
    ['BODY[HEADER.FIELDS]', 'BAD HEADER.FIELDS needs a list of field names'],
    ['BODY[HEADER.FIELDS ()]', 'BAD HEADER.FIELDS needs a list of field names'],
    ['BODY[HEADER.FIELDS (a:b)]', 'BAD Invalid header field name'],
    ['BODY[TEXT (a)]', 'BAD Invalid section'],
    ['BODY[1 2]', 'BAD Invalid section'],
  ];
  for (const [text, want] of cases) {
    it(text, () => assert.equal(describeItems(text), want));
  }
  it('missing argument', () => {
    const r = parseFetchItems(undefined);
    assert.ok(!r.ok);
  });
  it('formatSection writes the response form', () => {
    assert.equal(formatSection({ path: [1, 2], text: 'HEADER.FIELDS', fields: ['from', 'To'] }), '1.2.HEADER.FIELDS (FROM TO)');
    assert.equal(formatSection({ path: [], text: null, fields: [] }), '');
  });
});

describe('STORE and flags', () => {
  const store = (text: string) => {
    const r = parseCommand(b(`a STORE 1 ${text}`));
    assert.ok(r.ok);
    return parseStoreAction(r.value.args.slice(1));
  };
  const cases: [string, string][] = [
    ['FLAGS (\\Seen)', 'set \\Seen'],
    ['+FLAGS (\\seen \\FLAGGED $Junk)', 'add \\Seen \\Flagged $Junk'],
    ['-flags.silent (\\Deleted)', 'remove silent \\Deleted'],
    ['FLAGS ()', 'set'],
    ['+FLAGS \\Answered \\Draft', 'add \\Answered \\Draft'],
    ['+FLAGS ($a $A \\seen \\Seen)', 'add $a \\Seen'],
    ['+FLAGS (\\Recent)', 'BAD Invalid system flag \\Recent'],
    ['+FLAGS (\\Foo)', 'BAD Invalid system flag \\Foo'],
    ['+FLAGS (a*b)', 'BAD Invalid keyword a*b'],
    ['+FLAGS', 'BAD Missing or invalid flags'],
    ['+FLAGS (a) (b)', 'BAD Missing or invalid flags'],
    ['FLAGS.LOUD (\\Seen)', 'BAD Invalid store item FLAGS.LOUD'],
    ['(FLAGS) (\\Seen)', 'BAD Missing store item'],
  ];
  for (const [text, want] of cases) {
    it(text, () => {
      const r = store(text);
      const got = r.ok ? [r.value.operation, ...(r.value.silent ? ['silent'] : []), ...r.value.flags].join(' ') : `BAD ${r.error.message}`;
      assert.equal(got, want);
    });
  }
  it('parseFlagList takes NIL as a keyword and refuses strings', () => {
    const r = parseCommand(b('a X NIL "x"'));
    assert.ok(r.ok);
    assert.deepEqual(parseFlagList(r.value.args.slice(0, 1)), { ok: true, value: ['NIL'] });
    assert.equal(parseFlagList(r.value.args.slice(1)).ok, false);
  });
});

describe('SEARCH', () => {
  const search = (text: string) => {
    const r = parseCommand(b(`a SEARCH ${text}`));
    assert.ok(r.ok, r.ok ? '' : r.error.message);
    return parseSearch(r.value.args);
  };
  const keyText = (k: SearchKey): string => {
    switch (k.kind) {
      case 'all':
        return 'ALL';
      case 'and':
        return `(${k.keys.map(keyText).join(' ')})`;
      case 'or':
        return `OR(${keyText(k.left)}, ${keyText(k.right)})`;
      case 'not':
        return `NOT(${keyText(k.key)})`;
      case 'flag':
        return `${k.set ? '' : '!'}${k.flag}`;
      case 'seq':
        return `seq ${k.set.map((r) => `${r.start}:${r.end}`).join(',')}`;
      case 'uid':
        return `uid ${k.set.map((r) => `${r.start}:${r.end}`).join(',')}`;
      case 'date':
        return `${k.field} ${k.op} ${k.date.year}-${k.date.month}-${k.date.day}`;
      case 'size':
        return `${k.op} ${k.size}`;
      case 'header':
        return `${k.field}:${JSON.stringify(k.value)}`;
      case 'text':
        return `${k.where}:${JSON.stringify(k.value)}`;
    }
  };
  const cases: [string, string][] = [
    ['ALL', 'ALL'],
    ['seen unseen answered unanswered deleted undeleted draft undraft flagged unflagged recent old', '(\\Seen !\\Seen \\Answered !\\Answered \\Deleted !\\Deleted \\Draft !\\Draft \\Flagged !\\Flagged \\Recent !\\Recent)'],
    ['NEW', '(\\Recent !\\Seen)'],
    ['KEYWORD $Junk UNKEYWORD foo', '($Junk !foo)'],
    ['FROM alice TO "bob smith" CC c BCC d SUBJECT {5}\r\nhello', '(From:"alice" To:"bob smith" Cc:"c" Bcc:"d" Subject:"hello")'],
    ['HEADER X-Spam-Flag YES', 'X-Spam-Flag:"YES"'],
    ['HEADER Received ""', 'Received:""'],
    ['BODY needle TEXT "two words"', '(body:"needle" text:"two words")'],
    ['BEFORE 1-Feb-1994 ON "01-feb-1994" SINCE 29-Feb-2020', '(internal before 1994-2-1 internal on 1994-2-1 internal since 2020-2-29)'],
    ['SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000', '(sent before 2000-1-1 sent on 2000-1-2 sent since 2000-1-3)'],
    ['LARGER 100 SMALLER 5', '(larger 100 smaller 5)'],
    ['1:5,*', 'seq 1:5,*:*'],
    ['UID 10:*', 'uid 10:*'],
    ['NOT SEEN', 'NOT(\\Seen)'],
    ['OR SEEN FLAGGED', 'OR(\\Seen, \\Flagged)'],
    ['OR OR DRAFT DELETED ANSWERED', 'OR(OR(\\Draft, \\Deleted), \\Answered)'],
    ['(SEEN FLAGGED) NOT (FROM a OR 1 2)', '((\\Seen \\Flagged) NOT((From:"a" OR(seq 1:1, seq 2:2))))'],
    ['((SEEN))', '\\Seen'],
    ['CHARSET UTF-8 BODY "straße"', 'body:"straße"'],
    ['charset us-ascii ALL', 'ALL'],
  ];
  for (const [text, want] of cases) {
    it(text.replace(/\r\n/g, ' '), () => {
      const r = search(text);
      assert.ok(r.ok, r.ok ? '' : r.error.message);
      assert.equal(keyText(r.value.key), want);
    });
  }
  it('remembers the charset', () => {
    const r = search('CHARSET utf-8 ALL');
    assert.ok(r.ok);
    assert.equal(r.value.charset, 'UTF-8');
  });
  const errors: [string, 'BAD' | 'BADCHARSET', string][] = [
    ['CHARSET ISO-8859-1 ALL', 'BADCHARSET', 'Unsupported charset ISO-8859-1'],
    ['CHARSET', 'BAD', 'CHARSET needs a name'],
    ['CHARSET UTF-8', 'BAD', 'Missing search parameters'],
    ['FOO', 'BAD', 'Unknown search key FOO'],
    ['FROM', 'BAD', 'FROM needs a string'],
    ['FROM (a)', 'BAD', 'FROM needs a string'],
    ['BEFORE 30-Feb-2020', 'BAD', 'BEFORE needs a date like 1-Feb-1994'],
    ['SINCE 2020-01-01', 'BAD', 'SINCE needs a date like 1-Feb-1994'],
    ['LARGER x', 'BAD', 'LARGER needs a number'],
    ['UID x', 'BAD', 'UID needs a sequence set'],
    ['NOT', 'BAD', 'Missing search key'],
    ['OR SEEN', 'BAD', 'Missing search key'],
    ['()', 'BAD', 'Empty search key list'],
    ['HEADER "a b" c', 'BAD', 'Invalid header field name'],
    ['BODY[]', 'BAD', 'Invalid search key'],
    [`${'NOT '.repeat(100)}SEEN`, 'BAD', 'Search keys nested too deeply'],
  ];
  for (const [text, code, message] of errors) {
    it(`refuses ${text.slice(0, 40)}`, () => {
      const r = search(text);
      assert.ok(!r.ok);
      assert.equal(r.error.code, code);
      assert.equal(r.error.message, message);
    });
  }
  it('no arguments at all', () => {
    const r = parseSearch([]);
    assert.ok(!r.ok);
    assert.equal(r.error.message, 'Missing search parameters');
  });
});

describe('dates', () => {
  const searchDates: [string, string | null][] = [
    ['1-Feb-1994', '1994-2-1'],
    ['01-FEB-1994', '1994-2-1'],
    ['29-Feb-2020', '2020-2-29'],
    ['29-Feb-2019', null],
    ['32-Jan-2020', null],
    ['0-Jan-2020', null],
    ['1-Foo-2020', null],
    ['1-Feb-94', null],
    ['1 Feb 1994', null],
  ];
  for (const [text, want] of searchDates) {
    it(`search date ${text}`, () => {
      const d = parseSearchDate(text);
      assert.equal(d === null ? null : `${d.year}-${d.month}-${d.day}`, want);
    });
  }
  const dateTimes: [string, string | null][] = [
    ['17-Jul-1996 02:44:25 -0700', '1996-07-17T09:44:25.000Z'],
    [' 7-Jul-1996 02:44:25 +0130', '1996-07-07T01:14:25.000Z'],
    ['7-Jul-1996 02:44:25 +0000', '1996-07-07T02:44:25.000Z'],
    ['31-Dec-1999 23:59:60 +0000', '1999-12-31T23:59:59.000Z'],
    ['17-Jul-1996 24:00:00 -0700', null],
    ['17-Jul-1996 02:44:25', null],
    ['17-Jul-1996 02:44:25 -0760', null],
    ['30-Feb-1996 02:44:25 -0700', null],
  ];
  for (const [text, want] of dateTimes) {
    it(`date-time ${JSON.stringify(text)}`, () => {
      const d = parseDateTime(text);
      assert.equal(d === null ? null : d.toISOString(), want);
    });
  }
});

describe('APPEND and mailbox names', () => {
  const append = (text: string) => {
    const r = parseCommand(b(`a APPEND ${text}`));
    assert.ok(r.ok, r.ok ? '' : r.error.message);
    return parseAppend(r.value.args);
  };
  it('mailbox and message only', () => {
    const r = append('INBOX {5+}\r\nhello');
    assert.ok(r.ok);
    assert.deepEqual({ ...r.value, message: r.value.message.toString() }, { mailbox: 'INBOX', flags: [], date: null, message: 'hello' });
  });
  it('flags and date', () => {
    const r = append('"Sent Items" (\\Seen \\draft) "17-Jul-1996 02:44:25 -0700" {2+}\r\nhi');
    assert.ok(r.ok);
    assert.equal(r.value.mailbox, 'Sent Items');
    assert.deepEqual(r.value.flags, ['\\Seen', '\\Draft']);
    assert.equal(r.value.date?.toISOString(), '1996-07-17T09:44:25.000Z');
  });
  const errors: [string, string][] = [
    ['', 'Missing mailbox name'],
    ['INBOX', 'Missing message literal'],
    ['INBOX (\\Recent) {1+}\r\nx', 'Invalid system flag \\Recent'],
    ['INBOX "yesterday" {1+}\r\nx', 'Invalid date-time'],
    ['INBOX {1+}\r\nx {1+}\r\ny', 'Too many arguments (MULTIAPPEND is not supported)'],
    ['INBOX (a) NIL', 'The message must be a literal'],
  ];
  for (const [text, message] of errors) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      const r = append(text);
      assert.ok(!r.ok);
      assert.equal(r.error.message, message);
    });
  }
  it('decodes modified UTF-7 (RFC 3501 5.1.3 example)', () => {
    assert.equal(decodeMailboxName('~peter/mail/&U,BTFw-/&ZeVnLIqe-'), '~peter/mail/台北/日本語');
    assert.equal(decodeMailboxName('Tom &- Jerry'), 'Tom & Jerry');
    assert.equal(decodeMailboxName('plain'), 'plain');
    assert.equal(decodeMailboxName('bad &U,BTFw'), 'bad &U,BTFw');
    assert.equal(decodeMailboxName('bad &!!-'), 'bad &!!-');
  });
});

// ---------------------------------------------------------------------------------------
// Fuzz
// ---------------------------------------------------------------------------------------

const SEEDS = [
  'a1 UID FETCH 1:*,3 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BODY[1.2.MIME])',
  'a2 SEARCH CHARSET UTF-8 OR (FROM "a b" SUBJECT {3+}\r\nxyz) NOT 1:5 SENTSINCE 1-Feb-1994 UID 4:*',
  'a3 STORE 2:4 +FLAGS.SILENT (\\Seen $Junk)',
  'a4 APPEND "Sent" (\\Seen) "17-Jul-1996 02:44:25 -0700" {10+}\r\n0123456789',
  'a5 LOGIN "user\\"name" {4+}\r\npass',
  'a6 LIST "" "%/*"',
  'a7 FETCH * (ALL)',
  'a8 SELECT [Gmail]/All',
  'a9 UID SEARCH HEADER X-Spam "" LARGER 10 (SEEN OR DRAFT DELETED)',
];
const PIECES = ['(', ')', '[', ']', '{', '}', '"', '\\', ' ', '  ', '\r\n', '\n', '*', '%', ':', ',', '<', '>', '.', '{5}\r\n', '{2+}\r\n', '{99999999999999999}', 'NIL', 'BODY[', 'UID ', '\x00', '\xff', 'é', '~{3}\r\n', '+'];

function mutate(rand: () => number, input: string): string {
  let s = input;
  const n = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(rand() * (s.length + 1));
    const op = rand();
    if (op < 0.3) s = s.slice(0, at) + PIECES[Math.floor(rand() * PIECES.length)] + s.slice(at);
    else if (op < 0.5) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 5));
    else if (op < 0.6) s = s.slice(0, at);
    else if (op < 0.8) s = s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 256)) + s.slice(at + 1);
    else {
      const other = SEEDS[Math.floor(rand() * SEEDS.length)]!;
      s = s.slice(0, at) + other.slice(Math.floor(rand() * other.length));
    }
  }
  return s;
}

function randomCommand(rand: () => number): string {
  let s = '';
  const len = Math.floor(rand() * 60);
  for (let i = 0; i < len; i++) s += rand() < 0.5 ? PIECES[Math.floor(rand() * PIECES.length)] : String.fromCharCode(32 + Math.floor(rand() * 95));
  return s;
}

/** Run every interpreter the server could apply to whatever parsed. */
function interpretAll(args: readonly ImapNode[]): void {
  for (const r of [parseSearch(args), parseAppend(args), parseStoreAction(args), parseStoreAction(args.slice(1)), parseFetchItems(args[1]), parseFetchItems(args[0]), parseFlagList(args)]) {
    if (!r.ok) {
      assert.equal(r.error.kind, 'parse-error');
      assert.equal(typeof r.error.message, 'string');
      assert.ok(!/[\r\n]/.test(r.error.message), 'reply text must be one line');
    }
  }
  for (const n of args) {
    const t = nodeText(n);
    if (typeof t === 'string') {
      parseSequenceSet(t);
      parseSearchDate(t);
      parseDateTime(t);
      decodeMailboxName(t);
    }
  }
}

describe('fuzz', () => {
  it('thousands of random and mutated commands: typed errors only, never a throw or a hang', () => {
    const rand = prng(0x1ee7);
    const started = Date.now();
    let parsed = 0;
    let refused = 0;
    for (let i = 0; i < 6000; i++) {
      const text = i % 3 === 0 ? randomCommand(rand) : mutate(rand, SEEDS[i % SEEDS.length]!);
      const bytes = Buffer.from(text, 'latin1');
      const r = parseCommand(bytes);
      if (r.ok) {
        parsed++;
        interpretAll(r.value.args);
      } else {
        refused++;
        assert.equal(r.error.kind, 'parse-error');
        assert.ok(r.error.code === 'BAD');
      }
      // The same bytes through the reader, in random chunks, with small limits so the
      // limit paths run too. Every next() either frames something or asks for more bytes.
      const reader = new CommandReader({ maxLineLength: 64 + Math.floor(rand() * 200), maxLiteralSize: 50, maxCommandSize: 400 });
      const stream = Buffer.concat([bytes, Buffer.from('\r\n')]);
      let events = 0;
      for (let at = 0; at < stream.length; ) {
        const size = 1 + Math.floor(rand() * 40);
        reader.push(stream.subarray(at, at + size));
        at += size;
        if (rand() < 0.1) reader.mode = reader.mode === 'line' ? 'command' : 'line';
        for (let e = reader.next(); e !== null; e = reader.next()) {
          events++;
          assert.ok(events < 10_000, 'reader loops');
          if (e.kind === 'command' && e.result.ok) interpretAll(e.result.value.args);
          if (e.kind === 'error') assert.equal(e.error.code, 'TOOBIG');
        }
      }
    }
    assert.ok(parsed > 500 && refused > 500, `both outcomes exercised (parsed ${parsed}, refused ${refused})`);
    assert.ok(Date.now() - started < 60_000, 'fuzz run took too long');
  });
});
