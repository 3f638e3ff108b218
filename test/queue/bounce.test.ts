/**
 * @module test/queue/bounce
 * SUMMARY: buildNotice() against Python's `email` package (python3 parses every notice as a
 * mail reader would: multipart/report, the delivery-status blocks, the returned message):
 * bounce to the sender, the double bounce to postmaster and the discarded triple bounce,
 * NOTIFY filtering, delay notices, RET=HDRS and bounce_size_limit, SMTPUTF8 (RFC 6533),
 * ENVID/ORCPT, masking of hostile replies, CRLF-only output and Postfix's line wrapping.
 */
process.env.TZ = 'UTC';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { buildNotice, lineWrap, headerEnd, type NoticeInput, type NoticeRecipient, type NoticeSettings } from '../../src/queue/bounce.js';
import { mailDate } from '../../src/mail/mail-date.js';
import { buildEnvelope, type Envelope, type NewEnvelope } from '../../src/queue/envelope.js';

const HAVE_PYTHON = spawnSync('python3', ['-c', 'import email'], { stdio: 'ignore' }).status === 0;
const skip = HAVE_PYTHON ? false : 'python3 with the email package is not installed';

/* Parses a notice as a mail reader would and reports its structure as JSON. */
const PARSER = String.raw`
import sys, json, email
from email import policy
raw = sys.stdin.buffer.read()
msg = email.message_from_bytes(raw, policy=policy.compat32)

def fix(v):
    # 8-bit header bytes arrive as surrogate escapes: give them back as UTF-8 text.
    return str(v).encode('utf-8', 'surrogateescape').decode('utf-8')

def body(m):
    # get_payload() without decode would turn 8-bit bytes into U+FFFD.
    return m.get_payload(decode=True).decode('utf-8')

def hdrs(m):
    return [(k, fix(v)) for k, v in m._headers]

def blocks_of(text):
    out = []
    for chunk in text.replace('\r\n', '\n').strip('\n').split('\n\n'):
        if chunk == '':
            continue
        out.append(hdrs(email.message_from_string(chunk)))
    return out

def describe(part):
    d = {'type': part.get_content_type(), 'headers': hdrs(part), 'defects': [type(x).__name__ for x in part.defects]}
    ct = d['type']
    payload = part.get_payload()
    if ct == 'message/delivery-status':
        d['blocks'] = [hdrs(b) for b in payload]
    elif ct == 'message/rfc822':
        inner = payload[0]
        d['inner_headers'] = hdrs(inner)
        d['inner_body'] = body(inner)
    elif ct == 'message/global-delivery-status':
        # Parsed as one message: the per-message block is its header, the rest its body.
        first = payload[0]
        d['blocks'] = [hdrs(first)] + blocks_of(body(first))
    elif ct in ('message/global', 'message/global-headers'):
        inner = payload[0]
        d['inner_headers'] = hdrs(inner)
        d['inner_body'] = body(inner)
    else:
        d['text'] = part.get_payload(decode=True).decode('utf-8')
    return d

out = {
    'type': msg.get_content_type(),
    'params': msg.get_params(),
    'boundary': msg.get_boundary(),
    'headers': hdrs(msg),
    'defects': [type(x).__name__ for x in msg.defects],
    'preamble': msg.preamble,
    'parts': [describe(p) for p in msg.get_payload()],
}
print(json.dumps(out))
`;

type Pairs = Array<[string, string]>;
interface Part {
  type: string;
  headers: Pairs;
  defects: string[];
  blocks?: Pairs[];
  inner_headers?: Pairs;
  inner_body?: string;
  text?: string;
}
interface Parsed {
  type: string;
  params: Array<[string, string]>;
  boundary: string;
  headers: Pairs;
  defects: string[];
  preamble: string;
  parts: Part[];
}

function parse(message: Buffer): Parsed {
  const r = spawnSync('python3', ['-c', PARSER], { input: message, maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, r.stderr.toString());
  return JSON.parse(r.stdout.toString()) as Parsed;
}

/** The value of header NAME in PAIRS (unfolded), or undefined. */
function field(pairs: Pairs | undefined, name: string): string | undefined {
  const hit = (pairs ?? []).find(([k]) => k.toLowerCase() === name.toLowerCase());
  return hit ? hit[1].replace(/\r?\n[ \t]+/g, ' ') : undefined;
}

function names(pairs: Pairs | undefined): string[] {
  return (pairs ?? []).map(([k]) => k);
}

const NOW = Date.UTC(2024, 2, 5, 12, 0, 0);
const ARRIVAL = Date.UTC(2024, 2, 4, 8, 30, 15);

const SETTINGS: NoticeSettings = {
  myhostname: 'mx.example.org',
  myorigin: 'example.org',
  mailName: 'greygate',
  bounceSizeLimit: 50000,
  doubleBounceRecipient: 'postmaster',
  doubleBounceSender: 'double-bounce',
  delayWarningTime: 4 * 3_600_000,
  maximalQueueLifetime: 5 * 86_400_000,
  uniqueId: () => 'TOKEN42',
};

const ORIGINAL =
  'Received: from client.example.net (client.example.net [192.0.2.7])\r\n' +
  '\tby mx.example.org (greygate) with ESMTP id 3F2A1B; Mon, 4 Mar 2024 08:30:15 +0000 (UTC)\r\n' +
  'From: Alice <alice@example.net>\r\n' +
  'To: Bob <bob@example.com>\r\n' +
  'Subject: quarterly numbers\r\n' +
  'Message-ID: <abc@example.net>\r\n' +
  '\r\n' +
  'Hello Bob,\r\n' +
  'the numbers are attached.\r\n';

const BOB_REPLY = '550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table';

function envelope(over: Partial<NewEnvelope> = {}): Envelope {
  const env = buildEnvelope(
    '3F2A1B',
    {
      sender: 'alice@example.net',
      recipients: ['bob@example.com', 'carol@example.com'],
      arrivalTime: ARRIVAL,
      client: { address: '192.0.2.7', name: 'client.example.net' },
      helo: 'client.example.net',
      protocol: 'ESMTP',
      ...over,
    },
    Buffer.byteLength(ORIGINAL),
    ARRIVAL,
  );
  env.lastAttemptAt = NOW - 60_000;
  return env;
}

function bob(over: Partial<NoticeRecipient> = {}): NoticeRecipient {
  return {
    address: 'bob@example.com',
    originalAddress: 'bob@example.com',
    dsn: { status: '5.1.1', diagnostic: BOB_REPLY, remoteMta: 'mx.example.com' },
    reason: `host mx.example.com[192.0.2.1] said: ${BOB_REPLY} (in reply to RCPT TO command)`,
    relay: 'mx.example.com[192.0.2.1]:25',
    ...over,
  };
}

function carol(over: Partial<NoticeRecipient> = {}): NoticeRecipient {
  return {
    address: 'carol@example.com',
    originalAddress: 'carol@example.com',
    dsn: { status: '4.4.1', diagnostic: 'connect to mx.example.com[192.0.2.1]:25: Connection refused' },
    reason: 'connect to mx.example.com[192.0.2.1]:25: Connection refused',
    ...over,
  };
}

function input(over: Partial<NoticeInput> = {}): NoticeInput {
  return { kind: 'failure', envelope: envelope(), recipients: [bob()], message: Buffer.from(ORIGINAL), now: NOW, settings: SETTINGS, ...over };
}

/** Every line ends in CRLF and no CR or LF stands alone. */
function assertCrlfOnly(b: Buffer): void {
  const s = b.toString('latin1');
  assert.ok(s.endsWith('\r\n'), 'ends with CRLF');
  assert.doesNotMatch(s, /\r(?!\n)|(?<!\r)\n/, 'no bare CR or LF');
}

describe('buildNotice: a bounce to the sender', { skip }, () => {
  const notice = buildNotice(input({ recipients: [bob(), carol({ dsn: { status: '5.4.7', diagnostic: 'delivery time expired' }, reason: 'delivery temporarily suspended: connect to mx.example.com[192.0.2.1]:25: Connection refused' })] }))!;
  const p = notice && parse(notice.message);

  it('goes from <> to the original sender', () => {
    assert.equal(notice.kind, 'bounce');
    assert.equal(notice.sender, '');
    assert.deepEqual(notice.recipients, ['alice@example.net']);
    assertCrlfOnly(notice.message);
  });

  it('has Postfix headers: From MAILER-DAEMON, the subject, Auto-Submitted, Date, Message-ID', () => {
    assert.deepEqual(p.defects, []);
    assert.equal(field(p.headers, 'From'), 'MAILER-DAEMON@mx.example.org (Mail Delivery System)');
    assert.equal(field(p.headers, 'Subject'), 'Undelivered Mail Returned to Sender');
    assert.equal(field(p.headers, 'To'), 'alice@example.net');
    assert.equal(field(p.headers, 'Auto-Submitted'), 'auto-replied');
    assert.equal(field(p.headers, 'MIME-Version'), '1.0');
    assert.equal(field(p.headers, 'Date'), 'Tue, 5 Mar 2024 12:00:00 +0000 (UTC)');
    assert.equal(field(p.headers, 'Message-ID'), '<20240305120000.TOKEN42@mx.example.org>');
    assert.equal(field(p.headers, 'Content-Transfer-Encoding'), '7bit');
  });

  it('is a multipart/report of three parts', () => {
    assert.equal(p.type, 'multipart/report');
    assert.deepEqual(p.params.find(([k]) => k === 'report-type'), ['report-type', 'delivery-status']);
    assert.equal(p.boundary, `3F2A1B.${NOW / 1000}.TOKEN42/mx.example.org`);
    assert.equal(p.preamble.trim(), 'This is a MIME-encapsulated message.');
    assert.deepEqual(p.parts.map((x) => [x.type, field(x.headers, 'Content-Description')]), [
      ['text/plain', 'Notification'],
      ['message/delivery-status', 'Delivery report'],
      ['message/rfc822', 'Undelivered Message'],
    ]);
    for (const part of p.parts) assert.deepEqual(part.defects, []);
  });

  it('explains in Postfix words, one wrapped <addr>: reason paragraph per recipient', () => {
    const text = p.parts[0]!.text!.replace(/\r\n/g, '\n');
    assert.equal(field(p.parts[0]!.headers, 'Content-Type'), 'text/plain; charset=us-ascii');
    assert.ok(
      text.startsWith(
        'This is the mail system at host mx.example.org.\n\n' +
          "I'm sorry to have to inform you that your message could not\n" +
          "be delivered to one or more recipients. It's attached below.\n\n" +
          'For further assistance, please send mail to <postmaster>\n\n' +
          'If you do so, please include this problem report. You can\n' +
          'delete your own text from the attached returned message.\n\n' +
          '                   The mail system\n\n',
      ),
      text,
    );
    assert.ok(
      text.includes(
        '<bob@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1\n' +
          '    <bob@example.com>: Recipient address rejected: User unknown in virtual\n' +
          '    mailbox table (in reply to RCPT TO command)\n',
      ),
      text,
    );
    assert.ok(text.includes('\n<carol@example.com>: delivery temporarily suspended: connect to\n    mx.example.com[192.0.2.1]:25: Connection refused\n'), text);
    for (const line of text.split('\n')) assert.ok(line.length <= 79, line);
  });

  it('reports per message: Reporting-MTA, queue ID, sender, Arrival-Date', () => {
    const [head, r1, r2] = p.parts[1]!.blocks!;
    assert.deepEqual(names(head), ['Reporting-MTA', 'X-Greygate-Queue-ID', 'X-Greygate-Sender', 'Arrival-Date']);
    assert.equal(field(head, 'Reporting-MTA'), 'dns; mx.example.org');
    assert.equal(field(head, 'X-Greygate-Queue-ID'), '3F2A1B');
    assert.equal(field(head, 'X-Greygate-Sender'), 'rfc822; alice@example.net');
    assert.equal(field(head, 'Arrival-Date'), 'Mon, 4 Mar 2024 08:30:15 +0000 (UTC)');
    assert.equal(field(r1, 'Final-Recipient'), 'rfc822; bob@example.com');
    assert.equal(field(r2, 'Final-Recipient'), 'rfc822; carol@example.com');
  });

  it('reports per recipient: Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date', () => {
    const [, r1, r2] = p.parts[1]!.blocks!;
    assert.deepEqual(names(r1), ['Final-Recipient', 'Original-Recipient', 'Action', 'Status', 'Remote-MTA', 'Diagnostic-Code', 'Last-Attempt-Date']);
    assert.equal(field(r1, 'Original-Recipient'), 'rfc822; bob@example.com');
    assert.equal(field(r1, 'Action'), 'failed');
    assert.equal(field(r1, 'Status'), '5.1.1');
    assert.equal(field(r1, 'Remote-MTA'), 'dns; mx.example.com');
    assert.equal(field(r1, 'Diagnostic-Code'), `smtp; ${BOB_REPLY}`);
    assert.equal(field(r1, 'Last-Attempt-Date'), 'Tue, 5 Mar 2024 11:59:00 +0000 (UTC)');
    // A local diagnostic (no remote MTA) is x-unix; no Remote-MTA field.
    assert.equal(field(r2, 'Remote-MTA'), undefined);
    assert.equal(field(r2, 'Diagnostic-Code'), 'x-unix; delivery time expired');
    assert.equal(field(r2, 'Will-Retry-Until'), undefined);
  });

  it('returns the whole original with a Return-Path', () => {
    const orig = p.parts[2]!;
    assert.deepEqual(names(orig.inner_headers), ['Return-Path', 'Received', 'From', 'To', 'Subject', 'Message-ID']);
    assert.equal(field(orig.inner_headers, 'Return-Path'), '<alice@example.net>');
    assert.equal(field(orig.inner_headers, 'Subject'), 'quarterly numbers');
    assert.equal(orig.inner_body!.replace(/\r\n/g, '\n'), 'Hello Bob,\nthe numbers are attached.\n');
  });

  it('ends with the closing boundary', () => {
    assert.ok(notice.message.toString('latin1').endsWith(`\r\nthe numbers are attached.\r\n\r\n--${p.boundary}--\r\n`));
  });
});

describe('buildNotice: who gets a notice', { skip }, () => {
  it('a null sender: a double bounce from double-bounce@myorigin to postmaster@myorigin', () => {
    const n = buildNotice(input({ envelope: envelope({ sender: '' }) }))!;
    assert.equal(n.kind, 'double-bounce');
    assert.equal(n.sender, 'double-bounce@example.org');
    assert.deepEqual(n.recipients, ['postmaster@example.org']);
    const p = parse(n.message);
    assert.equal(field(p.headers, 'Subject'), 'Postmaster Copy: Undelivered Mail');
    assert.equal(field(p.headers, 'To'), 'postmaster@example.org');
    assert.equal(field(p.headers, 'Auto-Submitted'), 'auto-generated');
    // No boiler-plate for the postmaster: only the reasons (bounce_notify_service.c).
    assert.match(p.parts[0]!.text!, /^\r?\n<bob@example\.com>: host mx\.example\.com/);
    const [head] = p.parts[1]!.blocks!;
    assert.equal(field(head, 'X-Greygate-Sender'), undefined);
    assert.equal(field(p.parts[2]!.inner_headers, 'Return-Path'), '<>');
  });

  it('a double bounce reports every recipient: NOTIFY is overridden for the postmaster', () => {
    const n = buildNotice(input({ envelope: envelope({ sender: '', ret: 'HDRS' }), recipients: [bob({ notify: ['NEVER'] })] }))!;
    assert.equal(n.kind, 'double-bounce');
    assert.equal(parse(n.message).parts[2]!.type, 'message/rfc822');
  });

  it('2bounce_notice_recipient and double_bounce_sender with a domain are kept', () => {
    const n = buildNotice(input({ envelope: envelope({ sender: '' }), settings: { ...SETTINGS, doubleBounceRecipient: 'hostmaster@ops.example', doubleBounceSender: 'mailer-loop@example.org' } }))!;
    assert.deepEqual([n.sender, n.recipients], ['mailer-loop@example.org', ['hostmaster@ops.example']]);
  });

  it('mail from the double-bounce address itself is discarded: never a triple bounce', () => {
    assert.equal(buildNotice(input({ envelope: envelope({ sender: 'double-bounce@example.org' }) })), null);
    assert.equal(buildNotice(input({ envelope: envelope({ sender: 'Double-Bounce@Example.ORG' }) })), null);
    assert.equal(buildNotice(input({ kind: 'delay', envelope: envelope({ sender: 'double-bounce@example.org' }) })), null);
  });

  const cases: Array<{ name: string; kind: 'failure' | 'delay'; notify: NoticeRecipient['notify']; due: boolean }> = [
    { name: 'no NOTIFY: a failure is reported', kind: 'failure', notify: undefined, due: true },
    { name: 'no NOTIFY: a delay is reported', kind: 'delay', notify: undefined, due: true },
    { name: 'NOTIFY=NEVER: no failure notice', kind: 'failure', notify: ['NEVER'], due: false },
    { name: 'NOTIFY=NEVER: no delay notice', kind: 'delay', notify: ['NEVER'], due: false },
    { name: 'NOTIFY=FAILURE: a failure notice', kind: 'failure', notify: ['FAILURE'], due: true },
    { name: 'NOTIFY=FAILURE: no delay notice', kind: 'delay', notify: ['FAILURE'], due: false },
    { name: 'NOTIFY=SUCCESS: no failure notice', kind: 'failure', notify: ['SUCCESS'], due: false },
    { name: 'NOTIFY=SUCCESS,DELAY: a delay notice', kind: 'delay', notify: ['SUCCESS', 'DELAY'], due: true },
    { name: 'NOTIFY=DELAY: no failure notice', kind: 'failure', notify: ['DELAY'], due: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = c.kind === 'failure' ? bob({ notify: c.notify }) : carol({ notify: c.notify });
      const n = buildNotice(input({ kind: c.kind, recipients: [r] }));
      assert.equal(n !== null, c.due);
    });
  }

  it('recipients that opted out (a policy BCC with NOTIFY=NEVER) are left out of the report', () => {
    const n = buildNotice(input({ recipients: [bob(), bob({ address: 'archive@example.org', originalAddress: 'archive@example.org', notify: ['NEVER'] })] }))!;
    const p = parse(n.message);
    assert.doesNotMatch(p.parts[0]!.text!, /archive/);
    assert.deepEqual(p.parts[1]!.blocks!.slice(1).map((b) => field(b, 'Final-Recipient')), ['rfc822; bob@example.com']);
  });

  it('no recipient left: no notice', () => {
    assert.equal(buildNotice(input({ recipients: [] })), null);
  });
});

describe('buildNotice: delay notices', { skip }, () => {
  it('warn the sender with Postfix delay text, Action delayed, Will-Retry-Until, headers only', () => {
    const n = buildNotice(input({ kind: 'delay', recipients: [carol()] }))!;
    assert.equal(n.kind, 'delay');
    assert.equal(n.sender, '');
    assert.deepEqual(n.recipients, ['alice@example.net']);
    assertCrlfOnly(n.message);
    const p = parse(n.message);
    assert.equal(field(p.headers, 'Subject'), 'Delayed Mail (still being retried)');
    const text = p.parts[0]!.text!.replace(/\r\n/g, '\n');
    assert.ok(text.includes('# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n'), text);
    assert.ok(text.includes('Your message could not be delivered for more than 4 hour(s).\nIt will be retried until it is 5 day(s) old.\n'), text);
    assert.ok(text.includes('\n<carol@example.com>: connect to mx.example.com[192.0.2.1]:25: Connection\n    refused\n'), text);
    const r = p.parts[1]!.blocks![1]!;
    assert.equal(field(r, 'Action'), 'delayed');
    assert.equal(field(r, 'Status'), '4.4.1');
    assert.equal(field(r, 'Will-Retry-Until'), mailDate(ARRIVAL + 5 * 86_400_000));
    const orig = p.parts[2]!;
    assert.equal(orig.type, 'text/rfc822-headers');
    assert.equal(field(orig.headers, 'Content-Description'), 'Undelivered Message Headers');
    assert.doesNotMatch(orig.text!, /Hello Bob/);
    assert.match(orig.text!, /^Return-Path: <alice@example\.net>\r?\nReceived: from client/);
  });

  it('are never sent about mail from the null sender', () => {
    assert.equal(buildNotice(input({ kind: 'delay', envelope: envelope({ sender: '' }), recipients: [carol()] })), null);
  });
});

describe('buildNotice: the returned message', { skip }, () => {
  it('RET=HDRS returns the headers only, as text/rfc822-headers', () => {
    const p = parse(buildNotice(input({ envelope: envelope({ ret: 'HDRS' }) }))!.message);
    const orig = p.parts[2]!;
    assert.equal(orig.type, 'text/rfc822-headers');
    assert.equal(field(orig.headers, 'Content-Description'), 'Undelivered Message Headers');
    assert.match(orig.text!, /Subject: quarterly numbers\r?\nMessage-ID: <abc@example\.net>\r?\n\r?\n?$/);
    assert.doesNotMatch(orig.text!, /Hello Bob/);
  });

  it('a message over bounce_size_limit is returned as headers only; 0 means no limit', () => {
    const big = Buffer.from(ORIGINAL + 'x'.repeat(998) + '\r\n');
    const over = parse(buildNotice(input({ message: big, settings: { ...SETTINGS, bounceSizeLimit: 1000 } }))!.message);
    assert.equal(over.parts[2]!.type, 'text/rfc822-headers');
    const unlimited = parse(buildNotice(input({ message: big, settings: { ...SETTINGS, bounceSizeLimit: 0 } }))!.message);
    assert.equal(unlimited.parts[2]!.type, 'message/rfc822');
    assert.ok(unlimited.parts[2]!.inner_body!.includes('x'.repeat(998)));
  });

  it('a message without a header section returns an empty header part', () => {
    const p = parse(buildNotice(input({ envelope: envelope({ ret: 'HDRS' }), message: Buffer.from('just a body line\r\n') }))!.message);
    assert.equal(p.parts[2]!.text!.replace(/\r\n/g, '\n'), 'Return-Path: <alice@example.net>\n');
  });

  it('bare LF and CR in the original become CRLF', () => {
    const n = buildNotice(input({ message: Buffer.from('Subject: lf\nX-A: 1\r\n\r\nline1\nline2\rline3') }))!;
    assertCrlfOnly(n.message);
    assert.equal(parse(n.message).parts[2]!.inner_body!.replace(/\r\n/g, '\n'), 'line1\nline2\nline3\n');
  });

  it('8-bit originals are declared 8bit, with a utf-8 notification', () => {
    const msg = Buffer.from('Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n', 'utf8');
    const p = parse(buildNotice(input({ message: msg, envelope: envelope({ bodyType: '8BITMIME' }) }))!.message);
    assert.equal(field(p.headers, 'Content-Transfer-Encoding'), '8bit');
    assert.equal(field(p.parts[0]!.headers, 'Content-Type'), 'text/plain; charset=utf-8');
    assert.equal(field(p.parts[2]!.headers, 'Content-Transfer-Encoding'), '8bit');
  });
});

describe('buildNotice: DSN details', { skip }, () => {
  it('ENVID becomes Original-Envelope-Id; ORCPT becomes Original-Recipient', () => {
    const p = parse(
      buildNotice(
        input({
          envelope: envelope({ envid: 'QQ314159' }),
          recipients: [bob({ orcpt: 'rfc822;Bob@Example.COM' }), bob({ address: 'dan@example.com', originalAddress: 'dan@example.com', orcpt: 'dan@old.example' })],
        }),
      )!.message,
    );
    const [head, r1, r2] = p.parts[1]!.blocks!;
    assert.deepEqual(names(head), ['Reporting-MTA', 'Original-Envelope-Id', 'X-Greygate-Queue-ID', 'X-Greygate-Sender', 'Arrival-Date']);
    assert.equal(field(head, 'Original-Envelope-Id'), 'QQ314159');
    assert.equal(field(r1, 'Original-Recipient'), 'rfc822;Bob@Example.COM');
    assert.equal(field(r2, 'Original-Recipient'), 'rfc822;dan@old.example');
  });

  it('a rewritten recipient is shown "(expanded from <orig>)"', () => {
    const p = parse(buildNotice(input({ recipients: [bob({ originalAddress: 'sales@example.com' })] }))!.message);
    assert.match(p.parts[0]!.text!, /<bob@example\.com> \(expanded from <sales@example\.com>\): host/);
    assert.equal(field(p.parts[1]!.blocks![1], 'Original-Recipient'), 'rfc822; sales@example.com');
  });

  it('no diagnostic from the agent: Diagnostic-Code X-Greygate with the reason', () => {
    const p = parse(buildNotice(input({ recipients: [bob({ dsn: { status: '5.1.1' }, reason: 'unknown user: "bob"' })] }))!.message);
    assert.equal(field(p.parts[1]!.blocks![1], 'Diagnostic-Code'), 'X-Greygate; unknown user: "bob"');
  });

  it('a hostile reply cannot add header lines or MIME parts', () => {
    const evil = '550 no\r\nX-Injected: yes\r\n\r\n--boundary\r\n';
    const n = buildNotice(input({ recipients: [bob({ dsn: { status: '5.0.0', diagnostic: evil, remoteMta: 'mx\r\nX-Evil: 1' }, reason: evil })] }))!;
    assertCrlfOnly(n.message);
    const p = parse(n.message);
    assert.equal(p.parts.length, 3);
    const r = p.parts[1]!.blocks![1]!;
    assert.equal(field(r, 'X-Injected'), undefined);
    assert.equal(field(r, 'X-Evil'), undefined);
    assert.equal(field(r, 'Diagnostic-Code'), 'smtp; 550 no??X-Injected: yes????--boundary??');
    assert.doesNotMatch(p.parts[0]!.text!, /^X-Injected/m);
  });

  it('non-ASCII in a reply is masked for a non-SMTPUTF8 message', () => {
    const p = parse(buildNotice(input({ recipients: [bob({ reason: 'Benutzer unbekannt: m\u00fcller' })] }))!.message);
    assert.match(p.parts[0]!.text!, /<bob@example\.com>: Benutzer unbekannt: m\?ller/);
  });

  it('SMTPUTF8 mail gets message/global-delivery-status and message/global (RFC 6533)', () => {
    const msg = Buffer.from('From: j\u00f6rg@b\u00fccher.example\r\nSubject: gr\u00fc\u00dfe\r\n\r\nhallo\r\n', 'utf8');
    const env = envelope({ sender: 'j\u00f6rg@b\u00fccher.example', smtputf8: true, bodyType: '8BITMIME' });
    const n = buildNotice(input({ envelope: env, message: msg, recipients: [bob({ address: 'm\u00fcller@example.com', originalAddress: 'm\u00fcller@example.com', reason: 'Benutzer m\u00fcller unbekannt' })] }))!;
    assert.deepEqual(n.recipients, ['j\u00f6rg@b\u00fccher.example']);
    assertCrlfOnly(n.message);
    const p = parse(n.message);
    assert.deepEqual(p.parts.map((x) => x.type), ['text/plain', 'message/global-delivery-status', 'message/global']);
    const [head, r] = p.parts[1]!.blocks!;
    assert.equal(field(head, 'X-Greygate-Sender'), 'utf-8; j\u00f6rg@b\u00fccher.example');
    assert.equal(field(r, 'Final-Recipient'), 'utf-8; m\u00fcller@example.com');
    assert.match(p.parts[0]!.text!, /<m\u00fcller@example\.com>: Benutzer m\u00fcller unbekannt/);
    const headersOnly = parse(buildNotice(input({ kind: 'delay', envelope: env, message: msg, recipients: [carol()] }))!.message);
    assert.equal(headersOnly.parts[2]!.type, 'message/global-headers');
  });
});

describe('lineWrap', () => {
  const cases: Array<{ name: string; text: string; want: string[] }> = [
    { name: 'short text stays on one line', text: '<a@b>: short', want: ['<a@b>: short'] },
    {
      name: 'breaks before the word that passes column 79, then indents by 4',
      text: `${'a'.repeat(70)} ${'b'.repeat(10)} ${'c'.repeat(60)} ${'d'.repeat(20)}`,
      want: ['a'.repeat(70), `    ${'b'.repeat(10)} ${'c'.repeat(60)}`, `    ${'d'.repeat(20)}`],
    },
    { name: 'a word longer than the line is not split', text: `x ${'y'.repeat(100)}`, want: ['x', `    ${'y'.repeat(100)}`] },
    { name: 'trailing blanks are dropped', text: 'abc   ', want: ['abc'] },
    { name: 'a line of exactly 79 characters is kept', text: `${'a'.repeat(39)} ${'b'.repeat(39)}`, want: [`${'a'.repeat(39)} ${'b'.repeat(39)}`] },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(lineWrap(c.text), c.want));
});

describe('headerEnd', () => {
  it('stops at the blank line, keeps continuations, and at a line that is no header', () => {
    assert.equal(headerEnd(Buffer.from('A: 1\r\n b\r\nC : 2\r\n\r\nbody\r\n')), 'A: 1\r\n b\r\nC : 2\r\n'.length);
    assert.equal(headerEnd(Buffer.from('A: 1\r\nnot a header\r\nB: 2\r\n')), 'A: 1\r\n'.length);
    assert.equal(headerEnd(Buffer.from(' indented\r\n')), 0);
    assert.equal(headerEnd(Buffer.from('')), 0);
  });
});
