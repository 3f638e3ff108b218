/**
 * imap/compiler: the bytes of every response form, the string rules (atom, quoted, literal,
 * Dovecot's four-escape limit), response codes, FETCH with body literals, INTERNALDATE and
 * modified UTF-7 — and that what it writes parses back (imap/parser) to the same values.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  adjacent,
  astring,
  atom,
  compileContinuation,
  compileFetch,
  compileStatus,
  compileTagged,
  compileUntagged,
  compileValue,
  encodeMailboxName,
  flagList,
  formatInternalDate,
  literal,
  MAX_QUOTED_LENGTH,
  type ImapValue,
} from '../../src/imap/compiler.js';
import { decodeMailboxName, nodeText, parseCommand, parseDateTime } from '../../src/imap/parser.js';

const text = (b: Buffer): string => b.toString('latin1');

describe('values', () => {
  const cases: [string, ImapValue, string][] = [
    ['NIL', null, 'NIL'],
    ['number', 42, '42'],
    ['bigint', 18446744073709551615n, '18446744073709551615'],
    ['plain string', 'hello world', '"hello world"'],
    ['empty string', '', '""'],
    ['quotes and backslashes are escaped', 'a "b" \\c', '"a \\"b\\" \\\\c"'],
    ['more than four escapes: a literal, as Dovecot', '"""""', '{5}\r\n"""""'],
    ['CR or LF: a literal', 'a\r\nb', '{4}\r\na\r\nb'],
    ['NUL: a literal', 'a\0b', '{3}\r\na\0b'],
    ['8-bit: a literal of UTF-8 bytes', 'é', '{2}\r\n\xc3\xa9'],
    ['tab stays quoted', 'a\tb', '"a\tb"'],
    ['Buffer 7-bit', Buffer.from('raw'), '"raw"'],
    ['Buffer 8-bit: literal with the bytes as they are', Buffer.from([0x61, 0xe9]), '{2}\r\na\xe9'],
    ['long string: literal', 'x'.repeat(MAX_QUOTED_LENGTH + 1), `{${MAX_QUOTED_LENGTH + 1}}\r\n${'x'.repeat(MAX_QUOTED_LENGTH + 1)}`],
    ['atom', atom('\\Seen'), '\\Seen'],
    ['forced literal', literal(Buffer.from('abc')), '{3}\r\nabc'],
    ['empty literal', literal(''), '{0}\r\n'],
    ['astring atom', astring('INBOX'), 'INBOX'],
    ['astring with ]', astring('[Gmail]/Sent'), '[Gmail]/Sent'],
    ['astring with space', astring('Sent Items'), '"Sent Items"'],
    ['astring with wildcard', astring('a*b'), '"a*b"'],
    ['astring NIL must be quoted', astring('nil'), '"nil"'],
    ['astring empty', astring(''), '""'],
    ['list', [atom('A'), 'b', 1, null], '(A "b" 1 NIL)'],
    ['empty list', [], '()'],
    ['nested', [[atom('a')], [[]]], '((a) (()))'],
    ['adjacent items (1*body, address lists)', [adjacent([[1], [2]]), 'mixed'], '((1)(2) "mixed")'],
    ['flag list', flagList(['\\Seen', '$Junk']), '(\\Seen $Junk)'],
  ];
  for (const [name, value, want] of cases) {
    it(name, () => assert.equal(text(compileValue(value)), want));
  }

  it('strings round-trip through the parser', () => {
    const samples = ['', 'plain', 'a "quoted" \\ one', '"""""""', 'multi\r\nline', 'ünïcödé', 'x'.repeat(9000), 'NIL', '{5}'];
    for (const s of samples) {
      const wire = Buffer.concat([Buffer.from('t X '), compileValue(s)]);
      const r = parseCommand(wire);
      assert.ok(r.ok, `${JSON.stringify(s.slice(0, 20))}: ${r.ok ? '' : r.error.message}`);
      assert.equal(nodeText(r.value.args[0]), s);
    }
  });
});

describe('responses', () => {
  const cases: [string, Buffer, string][] = [
    ['tagged OK', compileTagged('a1', 'OK', 'NOOP completed.'), 'a1 OK NOOP completed.\r\n'],
    ['tagged NO with code', compileTagged('a2', 'NO', 'Mailbox is full.', { name: 'OVERQUOTA' }), 'a2 NO [OVERQUOTA] Mailbox is full.\r\n'],
    ['tagged BAD TOOBIG', compileTagged('a3', 'BAD', 'Literal size too large', { name: 'TOOBIG' }), 'a3 BAD [TOOBIG] Literal size too large\r\n'],
    ['text with newlines is one line', compileTagged('a4', 'OK', 'one\r\ntwo\nthree'), 'a4 OK one two three\r\n'],
    ['untagged OK with UIDVALIDITY', compileStatus('OK', 'UIDs valid', { name: 'UIDVALIDITY', args: [3857529045] }), '* OK [UIDVALIDITY 3857529045] UIDs valid\r\n'],
    [
      'PERMANENTFLAGS',
      compileStatus('OK', 'Flags permitted.', { name: 'PERMANENTFLAGS', args: [flagList(['\\Seen', '\\*'])] }),
      '* OK [PERMANENTFLAGS (\\Seen \\*)] Flags permitted.\r\n',
    ],
    ['COPYUID', compileTagged('a5', 'OK', 'Copy completed.', { name: 'COPYUID', args: [38505, atom('304,319:320'), atom('3956:3958')] }), 'a5 OK [COPYUID 38505 304,319:320 3956:3958] Copy completed.\r\n'],
    ['BADCHARSET', compileTagged('a6', 'NO', 'Unsupported charset', { name: 'BADCHARSET', args: [[atom('US-ASCII'), atom('UTF-8')]] }), 'a6 NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset\r\n'],
    ['BYE', compileStatus('BYE', 'Logging out'), '* BYE Logging out\r\n'],
    ['PREAUTH', compileStatus('PREAUTH', 'Logged in as x'), '* PREAUTH Logged in as x\r\n'],
    ['EXISTS', compileUntagged([23, atom('EXISTS')]), '* 23 EXISTS\r\n'],
    ['FLAGS', compileUntagged([atom('FLAGS'), flagList(['\\Answered', '\\Seen'])]), '* FLAGS (\\Answered \\Seen)\r\n'],
    ['LIST', compileUntagged([atom('LIST'), flagList(['\\HasNoChildren']), '/', astring('Sent Items')]), '* LIST (\\HasNoChildren) "/" "Sent Items"\r\n'],
    ['SEARCH', compileUntagged([atom('SEARCH'), 2, 84, 882]), '* SEARCH 2 84 882\r\n'],
    ['empty SEARCH', compileUntagged([atom('SEARCH')]), '* SEARCH\r\n'],
    ['continuation', compileContinuation('Ready for literal data'), '+ Ready for literal data\r\n'],
    ['empty continuation (AUTHENTICATE)', compileContinuation(''), '+ \r\n'],
    [
      'FETCH with flags, date and a body literal',
      compileFetch(12, [
        ['UID', 4827313],
        ['FLAGS', flagList(['\\Seen'])],
        ['INTERNALDATE', '17-Jul-1996 02:44:25 -0700'],
        ['BODY[HEADER]<0>', literal(Buffer.from('Subject: x\r\n\r\n'))],
      ]),
      '* 12 FETCH (UID 4827313 FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[HEADER]<0> {14}\r\nSubject: x\r\n\r\n)\r\n',
    ],
    ['FETCH with nothing', compileFetch(1, []), '* 1 FETCH ()\r\n'],
  ];
  for (const [name, got, want] of cases) {
    it(name, () => assert.equal(text(got), want));
  }

  it('binary body bytes pass through untouched', () => {
    const body = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a]);
    const out = compileFetch(1, [['BODY[]', literal(body)]]);
    assert.ok(out.subarray(out.indexOf('}\r\n') + 3, out.indexOf('}\r\n') + 3 + body.length).equals(body));
  });
});

describe('INTERNALDATE', () => {
  const d = new Date(Date.UTC(1996, 6, 17, 9, 44, 25));
  const cases: [number, string][] = [
    [-420, '17-Jul-1996 02:44:25 -0700'],
    [0, '17-Jul-1996 09:44:25 +0000'],
    [330, '17-Jul-1996 15:14:25 +0530'],
    [-600, '16-Jul-1996 23:44:25 -1000'],
  ];
  for (const [offset, want] of cases) {
    it(`offset ${offset}`, () => {
      assert.equal(formatInternalDate(d, offset), want);
      assert.equal(parseDateTime(want)?.getTime(), d.getTime());
    });
  }
  it('days below 10 are zero-padded, as Dovecot writes them', () => {
    assert.equal(formatInternalDate(new Date(Date.UTC(2020, 0, 5, 1, 2, 3)), 0), '05-Jan-2020 01:02:03 +0000');
  });
  it('defaults to the local zone and still names the same instant', () => {
    const s = formatInternalDate(d);
    assert.equal(parseDateTime(s)?.getTime(), d.getTime());
  });
});

describe('modified UTF-7 mailbox names', () => {
  const cases: [string, string][] = [
    ['INBOX', 'INBOX'],
    ['~peter/mail/台北/日本語', '~peter/mail/&U,BTFw-/&ZeVnLIqe-'],
    ['Tom & Jerry', 'Tom &- Jerry'],
    ['Entwürfe', 'Entw&APw-rfe'],
    ['😀', '&2D3eAA-'],
  ];
  for (const [name, encoded] of cases) {
    it(name, () => {
      assert.equal(encodeMailboxName(name), encoded);
      assert.equal(decodeMailboxName(encoded), name);
    });
  }
});
