/**
 * imap/search: every SEARCH query of dovecot-search.json run against the corpus (with the
 * flags and internal dates capture-dovecot.ts gave Dovecot) must select the same messages,
 * plus unit cases for lazy loading, three-valued AND/OR/NOT, dates, zones and text rules.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseMessage } from '../../src/imap/message-structure.js';
import { parseCommand, parseSearch, type SearchKey } from '../../src/imap/parser.js';
import { decodeEncodedWords, matchSearch, searchNeedsContent, sentDayOf, type SearchContext, type SearchMessage } from '../../src/imap/search.js';
import { corpusFlags, corpusInternalDate } from '../fixtures/imap/corpus.js';
import { mulberry32 } from '../helpers/prng.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'imap');
const FILES = readdirSync(join(FIXTURES, 'messages')).filter((f) => f.endsWith('.eml')).sort();
const DOVECOT = JSON.parse(readFileSync(join(FIXTURES, 'dovecot-search.json'), 'utf8')) as { query: string; result: number[] }[];

function key(text: string): SearchKey {
  const r = parseCommand(Buffer.from(`t SEARCH ${text}`, 'utf8'));
  assert.ok(r.ok, text);
  const q = parseSearch(r.value.args);
  assert.ok(q.ok, `${text}: ${q.ok ? '' : q.error.message}`);
  return q.value.key;
}

/**
 * Where Dovecot's answer is not ours, and why. Message 3 is dated 13 Feb 1969: Dovecot cannot
 * represent a date before 1970 and files it after every date; we compare the calendar day.
 */
const KNOWN: Record<string, { add?: number[]; remove?: number[]; reason: string }> = {
  'SENTBEFORE 1-Jan-2000': { add: [3], reason: '1969 is before 2000' },
  'SENTSINCE 1-Mar-2020': { remove: [3], reason: '1969 is not since 2020' },
};

describe('same results as Dovecot', () => {
  const corpus = FILES.map((file, i) => ({ file, seq: i + 1, buf: readFileSync(join(FIXTURES, 'messages', file)) }));
  const context: SearchContext = { maxSeq: corpus.length, maxUid: corpus.length, zoneOffsetMinutes: 0 };
  for (const { query, result } of DOVECOT) {
    it(query, async () => {
      const k = key(query);
      const got: number[] = [];
      for (const m of corpus) {
        const message: SearchMessage = {
          seq: m.seq,
          uid: m.seq,
          flags: corpusFlags(m.seq).imap,
          size: m.buf.length,
          internalDate: new Date(corpusInternalDate(m.seq)),
          load: () => m.buf,
        };
        if (await matchSearch(k, message, context)) got.push(m.seq);
      }
      const known = KNOWN[query];
      const want = result.filter((n) => !(known?.remove ?? []).includes(n)).concat(known?.add ?? []).sort((a, b) => a - b);
      assert.deepEqual(got, want);
    });
  }
});

describe('evaluation', () => {
  const body = Buffer.from(
    [
      'From: "Doe, John" <john@example.com>',
      'To: =?UTF-8?B?SsO8cmdlbg==?= <j@example.de>',
      'Subject: =?ISO-8859-1?Q?caf=E9?= =?ISO-8859-1?Q?_au_lait?=',
      'Date: Mon, 31 Dec 2018 23:30:00 -1100',
      'X-Tag: alpha',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary=z',
      '',
      '--z',
      'Content-Type: text/plain; charset=iso-8859-1',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Stra=DFe und Caf=E9',
      '--z',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from('Grüße aus Köln').toString('base64'),
      '--z',
      'Content-Type: text/plain',
      '',
      'Plain PART with Mixed Case',
      '--z--',
      '',
    ].join('\r\n'),
  );
  let loads = 0;
  const message = (over: Partial<SearchMessage> = {}): SearchMessage => ({
    seq: 3,
    uid: 30,
    flags: ['\\Seen', '$Junk'],
    size: body.length,
    internalDate: new Date(Date.UTC(2020, 5, 15, 23, 30)),
    load: () => {
      loads++;
      return body;
    },
    ...over,
  });
  const ctx: SearchContext = { maxSeq: 10, maxUid: 100, zoneOffsetMinutes: 0 };
  const match = (text: string, over: Partial<SearchMessage> = {}, c: SearchContext = ctx) => matchSearch(key(text), message(over), c);

  const cases: [string, boolean][] = [
    ['ALL', true],
    ['SEEN', true],
    ['seen unseen', false],
    ['KEYWORD $junk', true],
    ['UNKEYWORD $Junk', false],
    ['KEYWORD $Other', false],
    ['RECENT', false],
    ['NEW', false],
    ['OLD', true],
    ['3', true],
    ['*', false],
    ['1:2,4:*', false],
    ['UID 30', true],
    ['UID *', false],
    ['UID 101:*', false],
    ['UID 25:*', true],
    ['NOT SEEN', false],
    ['OR UNSEEN UID 30', true],
    ['LARGER 100', true],
    [`SMALLER ${body.length}`, false],
    [`SMALLER ${body.length + 1}`, true],
    ['ON 15-Jun-2020', true],
    ['SINCE 16-Jun-2020', false],
    ['BEFORE 16-Jun-2020', true],
    ['SENTON 31-Dec-2018', true],
    ['SENTON 1-Jan-2019', false],
    ['SENTSINCE 31-Dec-2018', true],
    ['SENTBEFORE 31-Dec-2018', false],
    ['FROM "doe, john"', true],
    ['FROM "Doe, John <john"', true],
    ['TO "jürgen"', true],
    ['SUBJECT "café au lait"', true],
    ['SUBJECT "CAFÉ"', true],
    ['SUBJECT "=?ISO-8859-1?Q?caf"', true],
    ['HEADER X-Tag ALPHA', true],
    ['HEADER X-Tag ""', true],
    ['HEADER X-Missing ""', false],
    ['BODY "straße"', true],
    ['BODY "STRA=DFE"', false],
    ['BODY "grüße aus köln"', true],
    ['BODY "plain part with mixed"', true],
    ['BODY alpha', false],
    ['TEXT alpha', true],
    ['TEXT "Content-Transfer-Encoding: base64"', true],
    ['BODY "Content-Transfer-Encoding"', false],
    ['TEXT nowhere', false],
    ['OR BODY nowhere SUBJECT "café"', true],
    ['NOT (FROM john TO "jürgen")', false],
  ];
  for (const [text, want] of cases) {
    it(text, async () => assert.equal(await match(text), want));
  }

  it('BEFORE/ON/SINCE use the context zone', async () => {
    // 2020-06-15 23:30 UTC is 16 June east of UTC+0030.
    assert.equal(await match('ON 16-Jun-2020', {}, { ...ctx, zoneOffsetMinutes: 60 }), true);
    assert.equal(await match('ON 15-Jun-2020', {}, { ...ctx, zoneOffsetMinutes: -60 }), true);
  });

  it('loads the message only when the cheap keys have not decided', async () => {
    loads = 0;
    assert.equal(await match('UNSEEN BODY x'), false);
    assert.equal(await match('OR SEEN BODY x'), true);
    assert.equal(await match('NOT OR SEEN BODY x'), false);
    assert.equal(await match('LARGER 1 SENTSINCE 1-Jan-1970 UID 1'), false);
    assert.equal(loads, 0);
    assert.equal(await match('SEEN BODY "straße" SUBJECT "café" TEXT alpha'), true);
    assert.equal(loads, 1);
  });

  it('accepts an already-parsed structure from the caller', async () => {
    const s = parseMessage(body);
    assert.equal(await matchSearch(key('BODY "köln"'), message({ load: () => s }), ctx), true);
    assert.equal(await matchSearch(key('BODY "köln"'), message({ load: async () => body }), ctx), true);
  });

  it('a message without Date: counts as sent on 1-Jan-1970', async () => {
    const noDate = Buffer.from('Subject: x\r\n\r\ny');
    const m = message({ load: () => noDate });
    assert.equal(await matchSearch(key('SENTON 1-Jan-1970'), m, ctx), true);
    assert.equal(await matchSearch(key('SENTBEFORE 2-Jan-1970'), m, ctx), true);
    assert.equal(await matchSearch(key('SENTSINCE 2-Jan-1970'), m, ctx), false);
  });

  it('searchNeedsContent', () => {
    assert.equal(searchNeedsContent(key('SEEN UID 1:* LARGER 5 BEFORE 1-Jan-2000')), false);
    assert.equal(searchNeedsContent(key('SEEN OR FLAGGED SUBJECT x')), true);
    assert.equal(searchNeedsContent(key('NOT SENTON 1-Jan-2000')), true);
    assert.equal(searchNeedsContent(key('BODY x')), true);
  });
});

describe('helpers', () => {
  const days: [string, string | null][] = [
    ['Tue, 1 Feb 1994 21:52:25 -0800', '1994-02-01'],
    ['1 Mar 2021 10:00:00 GMT', '2021-03-01'],
    ['Wed, 17 Jul 1996 02:23:25 -0700 (PDT)', '1996-07-17'],
    ['Sat, 29 Feb 2020 23:59:59 -1200', '2020-02-29'],
    ['Sun, 5 Jan 20 10:00 +0000', '2020-01-05'],
    ['Sun, 5 Jan 99 10:00 +0000', '1999-01-05'],
    ['Thu, 13 Feb 1969 23:32:54 -0330', '1969-02-13'],
    ['(comment 1 Jan 2000) 2 January 2001', '2001-01-02'],
    ['not a date', null],
    ['31 Feb 2020', null],
    ['', null],
  ];
  for (const [text, want] of days) {
    it(`sentDayOf ${JSON.stringify(text)}`, () => {
      const d = sentDayOf(text);
      assert.equal(d === null ? null : new Date(d * 86400000).toISOString().slice(0, 10), want);
    });
  }
  const words: [string, string][] = [
    ['=?utf-8?q?caf=C3=A9?=', 'café'],
    ['=?ISO-8859-1?Q?Andr=E9?= Pirard', 'André Pirard'],
    ['=?UTF-8?B?w4RyZ2Vy?=', 'Ärger'],
    ['=?utf-8?q?a?= =?utf-8?q?b?=', 'ab'],
    ['=?utf-8?q?a_b?=', 'a b'],
    ['=?x-unknown?q?abc?=', '=?x-unknown?q?abc?='],
    ['plain', 'plain'],
  ];
  for (const [text, want] of words) {
    it(`decodeEncodedWords ${text}`, () => assert.equal(decodeEncodedWords(text), want));
  }
});

describe('fuzz', () => {
  it('text and date keys on mutated corpus messages never throw', async () => {
    const rand = mulberry32(0x5ea4c4);
    const corpus = FILES.map((f) => readFileSync(join(FIXTURES, 'messages', f)).toString('latin1'));
    const junk = ['=?', '?=', '=?x?b?', '=?utf-8?q?=', '=', '=\r\n', 'Content-Transfer-Encoding: base64\r\n', 'charset=bogus-x', 'Date: 99 Foo 99999\r\n', '\0', '\xff'];
    const keys = ['TEXT "a"', 'BODY "é"', 'SUBJECT "x"', 'FROM "@"', 'HEADER Date 1', 'SENTON 1-Jan-2000', 'OR SENTBEFORE 1-Jan-2000 SENTSINCE 1-Jan-2000'].map(key);
    for (let i = 0; i < 400; i++) {
      let s = corpus[i % corpus.length]!;
      for (let k = 0; k < 4; k++) {
        const at = Math.floor(rand() * (s.length + 1));
        s = s.slice(0, at) + junk[Math.floor(rand() * junk.length)] + s.slice(at + Math.floor(rand() * 3));
      }
      const buf = Buffer.from(s, 'latin1');
      for (const k of keys) {
        await matchSearch(k, { seq: 1, uid: 1, flags: [], size: buf.length, internalDate: new Date(0), load: () => buf }, { maxSeq: 1, maxUid: 1 });
      }
    }
  });
});
