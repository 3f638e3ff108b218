/**
 * imap/message-structure: ENVELOPE, BODYSTRUCTURE, BODY, RFC822.SIZE and every probed
 * BODY[section]<partial> of the corpus in test/fixtures/imap/messages/ compared with what
 * Dovecot 2.3 answered for the same messages (dovecot-fetch.json, captured by
 * capture-dovecot.ts), plus hand-checked edge cases and a seeded fuzz of malformed MIME.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileValue } from '../../src/imap/compiler.js';
import { parseMessage, type BodyPart } from '../../src/imap/message-structure.js';
import { parseCommand, parseFetchItems, type SectionSpec } from '../../src/imap/parser.js';
import { PROBED_SECTIONS } from '../fixtures/imap/corpus.js';
import { mulberry32 as prng } from '../helpers/prng.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'imap');
const MESSAGES = join(FIXTURES, 'messages');
const DOVECOT = JSON.parse(readFileSync(join(FIXTURES, 'dovecot-fetch.json'), 'utf8')) as Record<string, Record<string, string> & { sections: Record<string, string> }>;
const FILES = readdirSync(MESSAGES).filter((f) => f.endsWith('.eml')).sort();

/**
 * Where we knowingly answer differently from Dovecot, and what we answer instead.
 * - 02 BODY: Dovecot builds BODY for a plain 7-bit text part from a compact cache record and
 *   writes it in lower case; its own BODYSTRUCTURE, and we, keep the header's case.
 * - 29 HEADER.FIELDS probes: for an attached message with no header, Dovecot's header filter
 *   reads past the part's end into the next part's MIME header; we stay inside the part.
 */
const KNOWN: Record<string, { reason: string; check: (ours: string, dovecot: string) => void }> = {
  '02-full-envelope.eml BODY': {
    reason: 'Dovecot lower-cases BODY of a cached plain 7-bit part',
    check: (ours, dovecot) => assert.equal(ours.toLowerCase(), dovecot.toLowerCase()),
  },
  '29-rfc822-bad-inner.eml BODY[1.HEADER.FIELDS (CONTENT-TYPE)]': {
    reason: 'Dovecot reads the next part; the attached message has no Content-Type, so: a blank line',
    check: (ours) => assert.equal(ours, digest(Buffer.from('\r\n'))),
  },
  '29-rfc822-bad-inner.eml BODY[2.HEADER.FIELDS.NOT (CONTENT-TYPE)]': {
    reason: 'Dovecot reads past the end; the attached message is empty, so: nothing',
    check: (ours) => assert.equal(ours, digest(Buffer.alloc(0))),
  },
};

function digest(b: Buffer): string {
  return `${b.length} ${createHash('sha256').update(b).digest('hex').slice(0, 16)}`;
}

function sectionOf(probe: string): { section: SectionSpec; partial?: { origin: number; count?: number } } {
  const r = parseCommand(Buffer.from(`t FETCH 1 BODY.PEEK[${probe}`));
  assert.ok(r.ok, probe);
  const items = parseFetchItems(r.value.args[1]);
  assert.ok(items.ok && items.value[0]?.kind === 'section', probe);
  const item = items.value[0];
  return item.partial === undefined ? { section: item.section } : { section: item.section, partial: item.partial };
}

function compare(key: string, ours: string, dovecot: string | undefined): void {
  assert.notEqual(dovecot, undefined, `no Dovecot capture for ${key}`);
  const known = KNOWN[key];
  if (known !== undefined) known.check(ours, dovecot!);
  else assert.equal(ours, dovecot, key);
}

describe('same answers as Dovecot', () => {
  it('the corpus and the capture match', () => {
    assert.deepEqual(Object.keys(DOVECOT).sort(), FILES);
  });
  for (const file of FILES) {
    it(file, () => {
      const message = parseMessage(readFileSync(join(MESSAGES, file)));
      const want = DOVECOT[file]!;
      compare(`${file} ENVELOPE`, compileValue(message.envelope()).toString('utf8'), want['ENVELOPE']);
      compare(`${file} BODYSTRUCTURE`, compileValue(message.bodyStructure(true)).toString('utf8'), want['BODYSTRUCTURE']);
      compare(`${file} BODY`, compileValue(message.bodyStructure(false)).toString('utf8'), want['BODY']);
      compare(`${file} RFC822.SIZE`, String(message.size), want['RFC822.SIZE']);
      for (const probe of PROBED_SECTIONS) {
        const { section, partial } = sectionOf(probe);
        compare(`${file} BODY[${probe}`, digest(message.section(section, partial)), want.sections[probe]);
      }
    });
  }
});

describe('hand-checked cases', () => {
  const msg = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'utf8');
  const sect = (text: string) => sectionOf(text).section;

  it('RFC 3501 7.4.2 example message structure', () => {
    const m = parseMessage(
      msg([
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary=b',
        '',
        '--b',
        'Content-Type: TEXT/PLAIN; CHARSET=US-ASCII',
        '',
        'line 1',
        'line 2',
        '--b',
        'Content-Type: message/rfc822',
        '',
        'Subject: inner',
        '',
        'inner body',
        '--b--',
        '',
      ]),
    );
    assert.equal(
      compileValue(m.bodyStructure(false)).toString(),
      '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7bit" 14 1)("message" "rfc822" NIL NIL NIL "7bit" 28 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0) 2) "mixed")',
    );
    assert.equal(m.section(sect('1]')).toString(), 'line 1\r\nline 2');
    assert.equal(m.section(sect('2.HEADER]')).toString(), 'Subject: inner\r\n\r\n');
    assert.equal(m.section(sect('2.TEXT]')).toString(), 'inner body');
    assert.equal(m.section(sect('2.1]')).toString(), 'inner body');
    assert.equal(m.section(sect('2.MIME]')).toString(), 'Content-Type: message/rfc822\r\n\r\n');
    assert.equal(m.section(sect('3]')).length, 0);
    // Dovecot's rule: part 1 of a non-multipart part is the part itself; other numbers are empty.
    assert.equal(m.section(sect('1.1]')).toString(), 'line 1\r\nline 2');
    assert.equal(m.section(sect('1.2]')).length, 0);
  });

  it('partials: origin past the end is empty, count is a maximum', () => {
    const m = parseMessage(msg(['Subject: x', '', 'abcdef']));
    assert.equal(m.section(sect('TEXT]'), { origin: 2, count: 3 }).toString(), 'cde');
    assert.equal(m.section(sect('TEXT]'), { origin: 4, count: 100 }).toString(), 'ef');
    assert.equal(m.section(sect('TEXT]'), { origin: 6 }).length, 0);
    assert.equal(m.section(sect('TEXT]'), { origin: 2 }).toString(), 'cdef');
  });

  it('NUL bytes in a section become 0x80, as literals may not carry NUL', () => {
    const m = parseMessage(Buffer.from('Subject: x\r\n\r\na\0b'));
    assert.deepEqual([...m.section(sect('TEXT]'))], [0x61, 0x80, 0x62]);
    // The buffer itself is untouched.
    assert.equal(m.buffer.includes(0), true);
  });

  it('header values are unfolded; header() and body() split at the blank line', () => {
    const m = parseMessage(msg(['Subject: one', ' two', 'X-A: 1', 'x-a:2', '', 'body']));
    assert.deepEqual(m.headerValues('subject').map(String), ['one two']);
    assert.deepEqual(m.headerValues('X-A').map(String), ['1', '2']);
    assert.deepEqual(m.headerValues('nope'), []);
    assert.equal(m.header().toString(), 'Subject: one\r\n two\r\nX-A: 1\r\nx-a:2\r\n\r\n');
    assert.equal(m.body().toString(), 'body');
  });

  it('LF-only messages are read leniently, sizes counted as given', () => {
    const m = parseMessage(Buffer.from('Content-Type: multipart/alternative; boundary=x\n\n--x\n\none\n--x\n\ntwo\n--x--\n'));
    assert.equal(compileValue(m.bodyStructure(false)).toString(), '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0) "alternative")');
    assert.equal(m.section(sect('2]')).toString(), 'two');
  });

  it('BodyPart fields describe the tree', () => {
    const m = parseMessage(readFileSync(join(MESSAGES, '05-mixed-attachment.eml')));
    const shape = (p: BodyPart): unknown => ({ type: `${p.type}/${p.subtype}`, encoding: p.encoding, children: p.children.map(shape) });
    assert.deepEqual(shape(m.root), {
      type: 'multipart/mixed',
      encoding: '7bit',
      children: [
        { type: 'text/plain', encoding: '7bit', children: [] },
        { type: 'application/pdf', encoding: 'base64', children: [] },
      ],
    });
    assert.deepEqual(m.root.children[1]!.params, [['name', 'report.pdf']]);
  });

  it('results are cached: one parse serves every fetch item', () => {
    const m = parseMessage(readFileSync(join(MESSAGES, '06-nested-rfc822.eml')));
    assert.equal(m.envelope(), m.envelope());
    assert.equal(m.bodyStructure(true), m.bodyStructure(true));
    assert.equal(m.bodyStructure(false), m.bodyStructure(false));
  });

  it('nesting beyond 100 levels stops, described as application/octet-stream', () => {
    let text = 'Subject: deep\r\n';
    for (let i = 0; i < 150; i++) text += `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n`;
    text += 'Content-Type: text/plain\r\n\r\nleaf\r\n';
    const m = parseMessage(Buffer.from(text));
    const out = compileValue(m.bodyStructure(true)).toString();
    assert.match(out, /"application" "octet-stream"/);
    let depth = 0;
    for (let p: BodyPart | undefined = m.root; p !== undefined; p = p.children[0]) depth++;
    assert.ok(depth <= 100, `depth ${depth}`);
  });

  it('empty input', () => {
    const m = parseMessage(Buffer.alloc(0));
    assert.equal(compileValue(m.bodyStructure(true)).toString(), '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)');
    assert.equal(compileValue(m.envelope()).toString(), '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)');
    assert.equal(m.section(sect(']')).length, 0);
  });
});

describe('fuzz', () => {
  it('mutated corpus messages never throw and every section stays inside the message', () => {
    const rand = prng(0xb0d7);
    const corpus = FILES.map((f) => readFileSync(join(MESSAGES, f)));
    const junk = ['\r\n', '\n', '--', '--XYZ123', '--outer--', 'Content-Type: multipart/mixed; boundary=', 'Content-Type: message/rfc822\r\n', ':', '"', '(', ')', '<', '>', ',', ';', '=?utf-8?b?', '\0', '\xff', ' ', '\t'];
    const probes = PROBED_SECTIONS.map(sectionOf);
    const started = Date.now();
    for (let i = 0; i < 1500; i++) {
      let s = corpus[i % corpus.length]!.toString('latin1');
      for (let k = 0, n = 1 + Math.floor(rand() * 6); k < n; k++) {
        const at = Math.floor(rand() * (s.length + 1));
        const op = rand();
        if (op < 0.5) s = s.slice(0, at) + junk[Math.floor(rand() * junk.length)] + s.slice(at);
        else if (op < 0.8) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 20));
        else s = s.slice(0, at);
      }
      const buf = Buffer.from(s, 'latin1');
      const m = parseMessage(buf);
      compileValue(m.envelope());
      compileValue(m.bodyStructure(true));
      compileValue(m.bodyStructure(false));
      const check = (p: BodyPart): void => {
        assert.ok(p.start <= p.bodyStart && p.bodyStart <= p.end && p.end <= buf.length, `part range ${p.start} ${p.bodyStart} ${p.end} of ${buf.length}`);
        p.children.forEach(check);
        if (p.message !== null) check(p.message);
      };
      check(m.root);
      for (const { section, partial } of probes) {
        const out = m.section(section, partial);
        assert.ok(out.length <= buf.length + 2 * (m.root.headers.length + 1));
      }
    }
    assert.ok(Date.now() - started < 60_000);
  });
});
