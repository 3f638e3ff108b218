/**
 * `greygate trace FILE.eml`: one message through the whole policy pipeline offline. Each case
 * writes a config directory (main.cf + tables) in a temp dir, runs the command in-process
 * through cli/main.ts (as the real CLI does) and checks the decisions it prints, in order,
 * and the exit status (0 accepted, 1 rejected/deferred, 2 could not trace). One case runs the
 * built CLI (node dist/main.js) and one compares the whole output with a golden file in
 * test/fixtures/trace/ (UPDATE_REF=1 rewrites it; review the diff).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { MAIN, ROOT, runCli } from '../helpers/gateway.js';
import { TestDnsServer } from '../fixtures/dns-server.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'trace');

const BASE: Record<string, string> = {
  myhostname: 'mx.example.org',
  mydomain: 'example.org',
  mydestination: 'example.org, $myhostname',
  mynetworks: '127.0.0.0/8, 10.0.0.0/8',
  inet_interfaces: '127.0.0.1',
  alias_maps: 'hash:aliases',
  smtpd_relay_restrictions: 'permit_mynetworks, reject_unauth_destination',
};

const ALIASES = 'postmaster: root\nbob: root\ncarol: root\nroot: /dev/null\n';

const MESSAGE = [
  'Return-Path: <alice@example.net>',
  'From: Alice <alice@example.net>',
  'To: Bob <bob@example.org>',
  'Subject: hello',
  '',
  'Hello Bob.',
  '',
].join('\n');

let root: string;
let n = 0;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'gg-trace-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

interface Setup {
  params?: Record<string, string>;
  files?: Record<string, string>;
  message?: string;
}

/** A config directory with main.cf, the aliases table, FILES and msg.eml. */
function setup(s: Setup = {}): string {
  const dir = join(root, `c${++n}`);
  const params = { ...BASE, data_directory: join(dir, 'data'), ...s.params };
  const files: Record<string, string> = { aliases: ALIASES, ...s.files };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.cf'), Object.entries(params).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  writeFileSync(join(dir, 'msg.eml'), s.message ?? MESSAGE);
  return dir;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  lines: string[];
}

async function trace(dir: string, args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(['trace', '-c', dir, ...args, ...(args.some((a) => a.endsWith('.eml')) ? [] : [join(dir, 'msg.eml')])], {
    out: (t) => (stdout += t),
    err: (t) => (stderr += t),
  });
  return { code, stdout, stderr, lines: stdout.split('\n').filter((l) => l !== '') };
}

/** Each expected line (exact after trimming, or a RegExp) appears, in this order. */
function inOrder(r: Run, expected: ReadonlyArray<string | RegExp>): void {
  let at = 0;
  for (const want of expected) {
    const i = r.lines.findIndex((l, k) => k >= at && (typeof want === 'string' ? l.trim() === want : want.test(l.trim())));
    assert.ok(i >= 0, `missing (in order) ${String(want)}\n--- output ---\n${r.stdout}${r.stderr}`);
    at = i + 1;
  }
}

interface Case {
  name: string;
  setup: Setup;
  args: string[];
  code: number;
  expect: ReadonlyArray<string | RegExp>;
  absent?: ReadonlyArray<RegExp>;
}

const CASES: Case[] = [
  {
    name: 'relay access denied for an outside client (default client 192.0.2.1, name unknown)',
    setup: {},
    args: ['--to', 'someone@elsewhere.example'],
    code: 1,
    expect: [
      'connect from unknown[192.0.2.1] (service smtpd)',
      'EHLO [192.0.2.1]',
      'MAIL FROM:<alice@example.net>',
      'RCPT TO:<someone@elsewhere.example>',
      'smtpd_relay_restrictions: permit_mynetworks, reject_unauth_destination',
      'permit_mynetworks: dunno',
      'reject_unauth_destination: reject: 554 5.7.1 <someone@elsewhere.example>: Relay access denied',
      'reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <someone@elsewhere.example>: Relay access denied; from=<alice@example.net> to=<someone@elsewhere.example> proto=ESMTP helo=<[192.0.2.1]> [reject_unauth_destination]',
      'result: rejected at RCPT: 554 5.7.1 <someone@elsewhere.example>: Relay access denied [reject_unauth_destination]',
    ],
    absent: [/^DATA/],
  },
  {
    name: 'permit_mynetworks lets a trusted client relay',
    setup: {},
    args: ['--client', '10.1.2.3', '--to', 'someone@elsewhere.example'],
    code: 0,
    expect: [
      'connect from unknown[10.1.2.3] (service smtpd)',
      'RCPT TO:<someone@elsewhere.example>',
      'permit_mynetworks: permit',
      'permit [permit_mynetworks]',
      'DATA',
      /^END-OF-MESSAGE \(\d+ bytes as queued\)$/,
      /^accept: from=<alice@example.net>, size=\d+, nrcpt=1 \(queue incoming\)$/,
      'result: accepted (queue: incoming)',
    ],
  },
  {
    name: 'an access map REJECT names its FILE:LINE and the key that matched',
    setup: {
      params: { smtpd_client_restrictions: 'check_client_access hash:client_access' },
      files: { client_access: '# clients we refuse\n198.51.100.7 OK\n192.0.2 REJECT go away\n' },
    },
    args: [],
    code: 1,
    expect: [
      'RCPT TO:<bob@example.org>',
      'smtpd_client_restrictions: check_client_access hash:client_access',
      'check_client_access hash:client_access: reject: 554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: go away [client_access:3]',
      'hash:client_access: 192.0.2 = REJECT go away (after unknown, 192.0.2.1: not found) [client_access:3]',
      /^reject: RCPT from unknown\[192\.0\.2\.1\]: 554 5\.7\.1 <unknown\[192\.0\.2\.1\]>: Client host rejected: go away; .* \[client_access:3\]$/,
      'result: rejected at RCPT: 554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: go away [client_access:3]',
    ],
  },
  {
    name: 'a DUNNO entry is an exception: the search stops there and the list goes on',
    setup: {
      params: { smtpd_sender_restrictions: 'check_sender_access hash:sender_access' },
      files: { sender_access: 'example.net REJECT no mail from there\nalice@example.net DUNNO\n' },
    },
    args: [],
    code: 0,
    expect: [
      'smtpd_sender_restrictions: check_sender_access hash:sender_access',
      'check_sender_access hash:sender_access: dunno',
      'hash:sender_access: alice@example.net = DUNNO [sender_access:2]',
      'smtpd_relay_restrictions: permit_mynetworks, reject_unauth_destination',
      'permit (no restriction decided: end of smtpd_sender_restrictions, smtpd_relay_restrictions)',
      'result: accepted (queue: incoming)',
    ],
  },
  {
    name: 'without the DUNNO exception the parent domain entry rejects',
    setup: {
      params: { smtpd_sender_restrictions: 'check_sender_access hash:sender_access' },
      files: { sender_access: 'example.net REJECT no mail from there\nalice@example.net DUNNO\n' },
    },
    args: ['--from', 'mallory@example.net'],
    code: 1,
    expect: [
      'hash:sender_access: example.net = REJECT no mail from there (after mallory@example.net: not found) [sender_access:1]',
      'result: rejected at RCPT: 554 5.7.1 <mallory@example.net>: Sender address rejected: no mail from there [sender_access:1]',
    ],
  },
  {
    name: 'smtpd_delay_reject = yes: client, helo and sender restrictions are decided at RCPT',
    setup: {
      params: { smtpd_client_restrictions: 'reject', smtpd_helo_restrictions: 'permit' },
    },
    args: [],
    code: 1,
    expect: [
      'connect from unknown[192.0.2.1] (service smtpd)',
      'permit (smtpd_client_restrictions run at RCPT: smtpd_delay_reject = yes)',
      'EHLO [192.0.2.1]',
      'permit (smtpd_helo_restrictions run at RCPT: smtpd_delay_reject = yes)',
      'MAIL FROM:<alice@example.net>',
      'permit (smtpd_sender_restrictions run at RCPT: smtpd_delay_reject = yes)',
      'RCPT TO:<bob@example.org>',
      'smtpd_client_restrictions: reject',
      'reject: reject: 554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied',
      /^reject: RCPT from unknown\[192\.0\.2\.1\]: 554 5\.7\.1 <unknown\[192\.0\.2\.1\]>: Client host rejected: Access denied; from=<alice@example\.net> to=<bob@example\.org> .*\[reject\]$/,
      'result: rejected at RCPT: 554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied [reject]',
    ],
  },
  {
    name: 'smtpd_delay_reject = no: the client is refused at CONNECT, nothing else runs',
    setup: {
      params: { smtpd_delay_reject: 'no', smtpd_client_restrictions: 'reject' },
    },
    args: [],
    code: 1,
    expect: [
      'connect from unknown[192.0.2.1] (service smtpd)',
      'smtpd_client_restrictions: reject',
      /^reject: CONNECT from unknown\[192\.0\.2\.1\]: 554 5\.7\.1 <unknown\[192\.0\.2\.1\]>: Client host rejected: Access denied; from=<> to=<> proto=SMTP helo=<> \[reject\]$/,
      'result: rejected at CONNECT: 554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied [reject]',
    ],
    absent: [/^EHLO/, /^RCPT/],
  },
  {
    name: 'smtpd_delay_reject = no: helo and sender lists run at their own command',
    setup: {
      params: {
        smtpd_delay_reject: 'no',
        smtpd_helo_restrictions: 'reject_invalid_helo_hostname',
        smtpd_sender_restrictions: 'reject_non_fqdn_sender',
      },
    },
    args: ['--from', 'alice@localhost'],
    code: 1,
    expect: [
      'EHLO [192.0.2.1]',
      'smtpd_helo_restrictions: reject_invalid_helo_hostname',
      'reject_invalid_helo_hostname: dunno',
      'permit (no restriction decided: end of smtpd_helo_restrictions)',
      'MAIL FROM:<alice@localhost>',
      'reject_non_fqdn_sender: reject: 504 5.5.2 <alice@localhost>: Sender address rejected: need fully-qualified address',
      'result: rejected at MAIL: 504 5.5.2 <alice@localhost>: Sender address rejected: need fully-qualified address [reject_non_fqdn_sender]',
    ],
    absent: [/^RCPT/],
  },
  {
    name: 'an unknown local user is rejected by the implicit reject_unlisted_recipient',
    setup: {},
    args: ['--to', 'nobody@example.org'],
    code: 1,
    expect: [
      'RCPT TO:<nobody@example.org>',
      'reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table; from=<alice@example.net> to=<nobody@example.org> proto=ESMTP helo=<[192.0.2.1]> [reject_unlisted_recipient]',
      'result: rejected at RCPT: 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table [reject_unlisted_recipient]',
    ],
  },
  {
    name: 'one known and one unknown recipient: accepted for the known one',
    setup: {},
    args: ['--to', 'nobody@example.org', '--to', 'carol@example.org'],
    code: 0,
    expect: [
      'RCPT TO:<nobody@example.org>',
      /550 5\.1\.1 <nobody@example\.org>: Recipient address rejected: User unknown/,
      'RCPT TO:<carol@example.org>',
      'permit (no restriction decided: end of smtpd_relay_restrictions)',
      /^accept: from=<alice@example.net>, size=\d+, nrcpt=1 \(queue incoming\)$/,
      'result: accepted for 1 of 2 recipients (queue: incoming)',
    ],
  },
  {
    name: 'warn_if_reject logs reject_warning and lets the mail through',
    setup: {
      params: { smtpd_client_restrictions: 'warn_if_reject, check_client_access hash:client_access' },
      files: { client_access: '192.0.2.1 REJECT listed\n' },
    },
    args: [],
    code: 0,
    expect: [
      'smtpd_client_restrictions: warn_if_reject, check_client_access hash:client_access',
      'check_client_access hash:client_access: dunno',
      'hash:client_access: 192.0.2.1 = REJECT listed (after unknown: not found) [client_access:1]',
      'reject_warning: RCPT from unknown[192.0.2.1]: 554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: listed [client_access:1]',
      'result: accepted (queue: incoming)',
    ],
  },
  {
    name: 'HOLD from an access map sends the message to the hold queue',
    setup: {
      params: { smtpd_sender_restrictions: 'check_sender_access hash:sender_access' },
      files: { sender_access: 'example.net HOLD check this one\n' },
    },
    args: [],
    code: 0,
    expect: [
      'hash:sender_access: example.net = HOLD check this one (after alice@example.net: not found) [sender_access:1]',
      'hold: <alice@example.net>: Sender address check this one [sender_access:1]',
      /^accept: .* \(queue hold\)$/,
      'result: accepted (queue: hold): held [sender_access:1]',
    ],
  },
  {
    name: 'a restriction class named on a table right-hand side is shown nested under its entry',
    setup: {
      params: {
        smtpd_restriction_classes: 'trusted_only',
        trusted_only: 'permit_mynetworks, reject',
        smtpd_recipient_restrictions: 'check_recipient_access hash:recipient_access',
      },
      files: { recipient_access: 'bob@example.org trusted_only\n' },
    },
    args: [],
    code: 1,
    expect: [
      'smtpd_recipient_restrictions: check_recipient_access hash:recipient_access',
      'check_recipient_access hash:recipient_access: reject: 554 5.7.1 <bob@example.org>: Recipient address rejected: Access denied [recipient_access:1]',
      'hash:recipient_access: bob@example.org = trusted_only [recipient_access:1]',
      'list: trusted_only',
      'trusted_only: reject: 554 5.7.1 <bob@example.org>: Recipient address rejected: Access denied [recipient_access:1]',
      'list: permit_mynetworks, reject',
      'permit_mynetworks: dunno [recipient_access:1]',
      'result: rejected at RCPT: 554 5.7.1 <bob@example.org>: Recipient address rejected: Access denied [recipient_access:1]',
    ],
  },
  {
    name: 'a policy service is not contacted offline: it answers DUNNO, said so',
    setup: {
      params: { smtpd_recipient_restrictions: 'check_policy_service inet:127.0.0.1:9' },
    },
    args: [],
    code: 0,
    expect: ['check_policy_service inet:127.0.0.1:9: dunno', 'inet:127.0.0.1:9: not contacted (trace is offline): taken as DUNNO', 'result: accepted (queue: incoming)'],
  },
  {
    name: 'SASL authentication (--sasl) satisfies permit_sasl_authenticated',
    setup: { params: { smtpd_relay_restrictions: 'permit_sasl_authenticated, reject_unauth_destination' } },
    args: ['--sasl', 'carol', '--to', 'someone@elsewhere.example'],
    code: 0,
    expect: [/^auth: client=unknown\[192\.0\.2\.1\], sasl_method=PLAIN, sasl_username=carol/, 'permit_sasl_authenticated: permit', 'result: accepted (queue: incoming)'],
  },
  {
    name: 'the envelope defaults: Return-Path for the sender, To/Cc/Bcc for the recipients',
    setup: {
      message: 'Return-Path: <bounces@example.net>\nFrom: "Doe, Jane" <jane@example.net>\nTo: bob@example.org (Bob)\nCc: Team: carol@example.org, "Bob" <BOB@example.org>;\n\nbody\n',
    },
    args: [],
    code: 0,
    expect: [
      /^trace .*msg\.eml with .*main\.cf: MAIL FROM:<bounces@example\.net> \(Return-Path: header\), RCPT TO: <bob@example\.org> <carol@example\.org> \(To\/Cc\/Bcc headers\)$/,
      'MAIL FROM:<bounces@example.net>',
      'RCPT TO:<bob@example.org>',
      'RCPT TO:<carol@example.org>',
      /^accept: from=<bounces@example.net>, size=\d+, nrcpt=2 \(queue incoming\)$/,
    ],
  },
  {
    name: 'the null sender: --from "<>"',
    setup: {},
    args: ['--from', '<>'],
    code: 0,
    expect: ['MAIL FROM:<>', 'result: accepted (queue: incoming)'],
  },
  {
    name: 'message_size_limit is applied at end of data',
    setup: { params: { message_size_limit: '20' } },
    args: [],
    code: 1,
    expect: [/^END-OF-MESSAGE/, 'result: rejected at END-OF-MESSAGE: 552 5.3.4 Message size exceeds fixed limit [message_size_limit]'],
  },
];

const HEADER_CHECKS = [
  '# header_checks for the trace tests',
  '/^X-Mailer: Trusted/ DUNNO',
  '/^Subject:.*viagra/ REJECT no pills here',
  '/^Subject:.*review/ HOLD held for review',
  '/^Subject:.*drop/ DISCARD dropped',
  '/^Subject:.*odd/ WARN looks odd',
  '/^X-Spam-Flag: YES/ PREPEND X-Was-Spam: yes',
  '/^X-Internal:/ IGNORE',
  '',
].join('\n');

const BODY_CHECKS = ['/click here to win/ REJECT 4.7.1 try again later', '/^unsubscribe/ WARN bulk mail', ''].join('\n');

const CHECKS: Setup = {
  params: { header_checks: 'regexp:header_checks', body_checks: 'regexp:body_checks' },
  files: { header_checks: HEADER_CHECKS, body_checks: BODY_CHECKS },
};

function withMessage(headers: string, body = 'Hello.\n'): Setup {
  return { ...CHECKS, message: `From: alice@example.net\nTo: bob@example.org\n${headers}\n${body}` };
}

const CHECK_CASES: Case[] = [
  {
    name: 'header_checks REJECT: the matched header, FILE:LINE, 550 at end of data',
    setup: withMessage('Subject: cheap viagra\n'),
    args: [],
    code: 1,
    expect: [
      'DATA',
      /^message: \d+ bytes, header_checks, mime_header_checks, nested_header_checks, body_checks$/,
      'header_checks: reject: header Subject: cheap viagra: 5.7.1 no pills here [header_checks:3]',
      /^END-OF-MESSAGE/,
      /^reject: END-OF-MESSAGE from unknown\[192\.0\.2\.1\]: 550 5\.7\.1 no pills here; .* \[header_checks:3\]$/,
      'result: rejected at END-OF-MESSAGE: 550 5.7.1 no pills here [header_checks:3]',
    ],
  },
  {
    name: 'header_checks HOLD: accepted into the hold queue; a folded header is shown on one line',
    setup: withMessage('Subject: please\n  review this\n'),
    args: [],
    code: 0,
    expect: [
      'header_checks: hold: header Subject: please\\n  review this: held for review [header_checks:4]',
      'hold: held for review [header_checks:4]',
      /^accept: .* \(queue hold\)$/,
      'result: accepted (queue: hold): held [header_checks:4]',
    ],
  },
  {
    name: 'header_checks DISCARD: the client gets 250, the message is dropped (exit 0)',
    setup: withMessage('Subject: drop this\n'),
    args: [],
    code: 0,
    expect: ['header_checks: discard: header Subject: drop this: dropped [header_checks:5]', 'discard: dropped [header_checks:5]', 'result: discarded: the client is told 250 Ok, the message is dropped [header_checks:5]'],
    absent: [/^\s*accept:/],
  },
  {
    name: 'header_checks WARN, PREPEND, IGNORE and (trace only) DUNNO, in header order; body_checks WARN',
    setup: withMessage('X-Mailer: Trusted 1.0\nSubject: an odd one\nX-Spam-Flag: YES\nX-Internal: secret\n', 'Hello.\nunsubscribe: reply STOP\n'),
    args: [],
    code: 0,
    expect: [
      'header_checks: dunno: header X-Mailer: Trusted 1.0 [header_checks:2]',
      'header_checks: warning: header Subject: an odd one: looks odd [header_checks:6]',
      'header_checks: prepend: header X-Spam-Flag: YES: X-Was-Spam: yes [header_checks:7]',
      'header_checks: ignore: header X-Internal: secret [header_checks:8]',
      'body_checks: warning: body unsubscribe: reply STOP: bulk mail [body_checks:2]',
      'result: accepted (queue: incoming)',
    ],
  },
  {
    name: 'body_checks REJECT with a 4.x.x text defers (451) and shows the matched line',
    setup: withMessage('Subject: hi\n', 'Hello.\nPlease click here to win!\nBye.\n'),
    args: [],
    code: 1,
    expect: [
      'body_checks: reject: body Please click here to win!: 4.7.1 try again later [body_checks:1]',
      /^defer: END-OF-MESSAGE from .*: 451 4\.7\.1 try again later; .* \[body_checks:1\]$/,
      'result: deferred at END-OF-MESSAGE: 451 4.7.1 try again later [body_checks:1]',
    ],
  },
  {
    name: 'a REJECT stops the checks: later headers and body lines are not looked at',
    setup: withMessage('Subject: viagra\nSubject: odd\n', 'unsubscribe\n'),
    args: [],
    code: 1,
    expect: ['header_checks: reject: header Subject: viagra: 5.7.1 no pills here [header_checks:3]'],
    absent: [/looks odd/, /bulk mail/],
  },
  {
    name: 'smtpd_end_of_data_restrictions answer before the content verdict',
    setup: { ...withMessage('Subject: viagra\n'), params: { ...CHECKS.params, smtpd_end_of_data_restrictions: 'reject' } },
    args: [],
    code: 1,
    expect: [
      'header_checks: reject: header Subject: viagra: 5.7.1 no pills here [header_checks:3]',
      'smtpd_end_of_data_restrictions: reject',
      'result: rejected at END-OF-MESSAGE: 554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: Access denied [reject]',
    ],
  },
  {
    name: 'without header_checks or body_checks the message passes unexamined',
    setup: {},
    args: [],
    code: 0,
    expect: [/^message: \d+ bytes, no header_checks or body_checks$/, 'result: accepted (queue: incoming)'],
  },
];

describe('greygate trace: header_checks and body_checks', () => {
  for (const c of CHECK_CASES) {
    it(c.name, async () => {
      const dir = setup(c.setup);
      const r = await trace(dir, c.args);
      assert.equal(r.stderr, '', r.stderr);
      inOrder(r, c.expect);
      for (const re of c.absent ?? []) assert.ok(!r.lines.some((l) => re.test(l.trim())), `unexpected ${re}\n${r.stdout}`);
      assert.equal(r.code, c.code, r.stdout);
    });
  }

  it('--json: check decisions carry event, rule, table and the matched header or line', async () => {
    const dir = setup(withMessage('Subject: odd\n', 'unsubscribe now\n'));
    const r = await trace(dir, ['--json']);
    const recs = r.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const warnHeader = recs.find((x) => x.event === 'warn' && x.table === 'header_checks')!;
    assert.equal(warnHeader.rule, 'header_checks:6');
    assert.equal(warnHeader.header, 'Subject: odd');
    assert.equal(warnHeader.text, 'looks odd');
    assert.equal(warnHeader.stage, 'data');
    const warnBody = recs.find((x) => x.event === 'warn' && x.table === 'body_checks')!;
    assert.equal(warnBody.line, 'unsubscribe now');
    assert.equal(warnBody.rule, 'body_checks:2');
  });
});

describe('greygate trace: restriction decisions', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = setup(c.setup);
      const r = await trace(dir, c.args);
      assert.equal(r.stderr, '', r.stderr);
      inOrder(r, c.expect);
      for (const re of c.absent ?? []) assert.ok(!r.lines.some((l) => re.test(l.trim())), `unexpected ${re}\n${r.stdout}`);
      assert.equal(r.code, c.code, r.stdout);
    });
  }
});

describe('greygate trace --json', () => {
  it('prints the same records as JSON lines, with the decision log field names', async () => {
    const dir = setup({
      params: { smtpd_sender_restrictions: 'check_sender_access hash:sender_access' },
      files: { sender_access: 'example.net REJECT no thanks\n' },
    });
    const text = await trace(dir, []);
    const json = await trace(dir, ['--json']);
    assert.equal(json.code, 1);
    const recs = json.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(recs.length, text.lines.length);
    assert.deepEqual(
      recs.map((r) => r.msg),
      text.lines.map((l) => l.trim()),
    );
    const reject = recs.find((r) => r.event === 'reject')!;
    assert.equal(reject.stage, 'rcpt');
    assert.equal(reject.rule, 'sender_access:1');
    assert.equal(reject.code, 554);
    assert.equal(reject.status, '5.7.1');
    assert.equal(reject.reply, '554 5.7.1 <alice@example.net>: Sender address rejected: no thanks');
    assert.equal(reject.from, 'alice@example.net');
    assert.equal(reject.to, 'bob@example.org');
    assert.equal(reject.client_ip, '192.0.2.1');
    assert.equal(reject.client_name, 'unknown');
    assert.equal(reject.helo, '[192.0.2.1]');
    const lookup = recs.find((r) => r.event === 'lookup')!;
    assert.deepEqual(lookup.keys, ['alice@example.net', 'example.net']);
    assert.equal(lookup.key, 'example.net');
    assert.equal(lookup.value, 'REJECT no thanks');
    assert.equal(lookup.rule, 'sender_access:1');
    const restriction = recs.find((r) => r.event === 'restriction' && r.restriction === 'check_sender_access hash:sender_access')!;
    assert.equal(restriction.list, 'smtpd_sender_restrictions');
    assert.equal(restriction.result, 'reject');
    const result = recs[recs.length - 1]!;
    assert.equal(result.event, 'result');
    assert.equal(result.result, 'rejected');
    assert.equal(result.rejected_stage, 'rcpt');
    assert.equal(result.rule, 'sender_access:1');
  });
});

describe('greygate trace: DNS', () => {
  let dns: TestDnsServer;
  before(async () => {
    dns = await TestDnsServer.start({ '1.2.0.192.zen.example': { A: ['127.0.0.2'] } });
  });
  after(() => dns.close());

  it('reject_rbl_client asks the configured resolvers and shows the query under the restriction', async () => {
    const dir = setup({ params: { dns_resolvers: dns.address, smtpd_client_restrictions: 'reject_rbl_client zen.example' } });
    const r = await trace(dir, []);
    inOrder(r, [
      'smtpd_client_restrictions: reject_rbl_client zen.example',
      /^reject_rbl_client zen\.example: reject: 554 5\.7\.1 Service unavailable; Client host \[192\.0\.2\.1\] blocked using zen\.example/,
      'dns A 1.2.0.192.zen.example: 127.0.0.2',
      /^result: rejected at RCPT: 554 5\.7\.1 Service unavailable; Client host \[192\.0\.2\.1\] blocked using zen\.example/,
    ]);
    assert.equal(r.code, 1);
  });

  it('--no-dns answers every lookup "not found" without asking', async () => {
    const dir = setup({ params: { dns_resolvers: dns.address, smtpd_client_restrictions: 'reject_rbl_client zen.example' } });
    const r = await trace(dir, ['--no-dns']);
    inOrder(r, ['reject_rbl_client zen.example: dunno', 'dns A 1.2.0.192.zen.example: not found (--no-dns: not asked)', 'result: accepted (queue: incoming)']);
    assert.equal(r.code, 0);
  });

  it('--rdns looks the client name up as the daemon does', async () => {
    dns.set('1.2.0.192.in-addr.arpa', { PTR: ['mail.friend.example'] });
    dns.set('mail.friend.example', { A: ['192.0.2.1'] });
    const dir = setup({ params: { dns_resolvers: dns.address } });
    const r = await trace(dir, ['--rdns']);
    inOrder(r, [
      'client name lookup for 192.0.2.1 (--rdns)',
      'dns PTR 192.0.2.1: mail.friend.example',
      'dns A mail.friend.example: 192.0.2.1',
      'client name mail.friend.example, reverse name mail.friend.example (forward-confirmed)',
      'connect from mail.friend.example[192.0.2.1] (service smtpd)',
      'EHLO mail.friend.example',
    ]);
  });
});

describe('greygate trace: bad input', () => {
  const cases: Array<{ name: string; args: (dir: string) => string[]; code: number; err: RegExp }> = [
    { name: 'a missing message file', args: (d) => [join(d, 'nope.eml')], code: 2, err: /^greygate: trace: cannot read .*nope\.eml: No such file or directory\n$/ },
    { name: 'a bad --to address', args: () => ['--to', 'bob@@example'], code: 2, err: /^greygate: trace: --to: bad address syntax: bob@@example\n$/ },
    { name: 'a --from without a domain', args: () => ['--from', 'alice'], code: 2, err: /^greygate: trace: --from: address without a domain: alice\n$/ },
    { name: 'a bad --client', args: () => ['--client', '300.1.1.1'], code: 2, err: /^greygate: trace: --client: not an IP address: 300\.1\.1\.1\n$/ },
    { name: 'an unknown option', args: () => ['--frobnicate'], code: 2, err: /^greygate: trace: unknown option --frobnicate; usage: greygate trace/ },
    { name: 'a missing option argument', args: (d) => [join(d, 'msg.eml'), '--to'], code: 2, err: /^greygate: trace: option --to requires an argument\n$/ },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const dir = setup();
      const r = await trace(dir, c.args(dir));
      assert.equal(r.code, c.code);
      assert.match(r.stderr, c.err);
      assert.equal(r.stdout, '');
    });
  }

  it('a message without recipients asks for --to', async () => {
    const dir = setup({ message: 'From: a@example.net\nSubject: x\n\nbody\n' });
    const r = await trace(dir, []);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /has no To, Cc or Bcc address: give --to ADDR\n$/);
  });

  it('errors in main.cf: each as FILE:LINE, and the trace does not run (exit 2)', async () => {
    const dir = setup({ params: { smtpd_delay_reject: 'sometimes' } });
    const r = await trace(dir, []);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /main\.cf:\d+: bad value for smtpd_delay_reject: "sometimes": expected yes or no\n/);
    assert.equal(r.stdout, '');
  });

  it('a bad table entry is reported as FILE:LINE and the trace goes on', async () => {
    const dir = setup({
      params: { smtpd_client_restrictions: 'check_client_access regexp:client_checks' },
      files: { client_checks: '/(?=x)y/ REJECT\n/^192\\.0\\.2\\./ REJECT test net\n' },
    });
    const r = await trace(dir, []);
    assert.match(r.stderr, /client_checks:1: /);
    inOrder(r, [/^regexp:client_checks: 192\.0\.2\.1 = REJECT test net .*\[client_checks:2\]$/]);
    assert.equal(r.code, 1);
  });
});

describe('greygate trace: the whole output', () => {
  it('matches test/fixtures/trace/relay.ref', async () => {
    const dir = setup({
      params: {
        smtpd_client_restrictions: 'check_client_access cidr:client.cidr',
        smtpd_sender_restrictions: 'reject_non_fqdn_sender, check_sender_access hash:sender_access',
        smtpd_recipient_restrictions: 'check_recipient_access hash:recipient_access',
        header_checks: 'regexp:header_checks',
        body_checks: 'pcre:body_checks',
      },
      files: {
        header_checks: '/^Subject: golden/ WARN shiny subject\n/^From:.*@example\\.net/ DUNNO\n',
        body_checks: '/^\\s*$/ REJECT never: empty lines are not looked up\n/^bo(d)y$/ PREPEND X-Body: $1\n',
        'client.cidr': '192.0.2.0/24 DUNNO\n0.0.0.0/0 OK\n',
        sender_access: 'example.net WARN sender from example.net\n',
        recipient_access: 'bob@example.org PREPEND X-Traced: yes\n',
      },
      message: 'From: alice@example.net\nTo: bob@example.org, eve@elsewhere.example\nSubject: golden\n\nbody\n',
    });
    const r = await trace(dir, []);
    const got = r.stdout.split(dir).join('DIR');
    const ref = join(FIXTURES, 'relay.ref');
    if (process.env.UPDATE_REF === '1') writeFileSync(ref, got);
    assert.equal(got, readFileSync(ref, 'utf8'));
    assert.equal(r.code, 0);
  });
});

describe('greygate trace: the built CLI', () => {
  it('node dist/main.js trace: exit 1 on a reject, 2 on bad input, no stack trace', { skip: !existsSync(join(ROOT, 'dist', 'cli', 'trace.js')) && 'dist/ not built (npm run build)' }, async () => {
    const dir = setup();
    const denied = await runCli(['trace', join(dir, 'msg.eml'), '--to', 'x@elsewhere.example', '-c', dir]);
    assert.equal(denied.code, 1, denied.stderr);
    assert.match(denied.stdout, /^result: rejected at RCPT: 554 5\.7\.1 <x@elsewhere\.example>: Relay access denied \[reject_unauth_destination\]$/m);
    const ok = await runCli(['trace', '-c', dir, '--client', '127.0.0.1', '--json', join(dir, 'msg.eml')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout.trim().split('\n').pop()!).result, 'accepted');
    const bad = await runCli(['trace', '-c', dir, join(dir, 'missing.eml')]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.split('\n').length, 2, bad.stderr);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
    assert.ok(MAIN.endsWith('main.js'));
  });
});
