/**
 * @module test/cli/sendmail
 * SUMMARY: the built `greygate sendmail` (node dist/main.js, stdin piped) against a temp
 * config and queue: the envelope `postqueue -j` shows, the headers cleanup adds (Received,
 * Message-ID, Date, From with -F), LF -> CRLF, -t with Bcc removed, header_checks REJECT (exit
 * 65, nothing queued), HOLD, DISCARD, REDIRECT/BCC, a failed lookup (exit 75), message_size_limit,
 * the dot rule and -i, DSN options, usage errors as one line, the pickup trigger and the log.
 */
process.env.TZ = 'UTC';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCli } from '../helpers/gateway.js';
import { QueueStore } from '../../src/queue/store.js';
import type { Envelope } from '../../src/queue/envelope.js';

const BUILT = existsSync(join(ROOT, 'dist', 'cli', 'sendmail.js'));
const skip = BUILT ? false : 'dist/ not built (npm run build)';

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface Site {
  configDir: string;
  dataDir: string;
  sendmail(args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }>;
  postqueue(): Promise<Array<{ queue_name: string; queue_id: string; sender: string; recipients: Array<{ address: string }> }>>;
  /** The one queued message: its envelope and its bytes. */
  only(): Promise<{ queue: string; envelope: Envelope; body: string }>;
  log(): Array<Record<string, unknown>>;
  queued(): string[];
}

function site(mainCf = '', files: Record<string, string> = {}): Site {
  const root = mkdtempSync(join(tmpdir(), 'gg-cli-sendmail-'));
  roots.push(root);
  const configDir = join(root, 'rules');
  const dataDir = join(root, 'state');
  mkdirSync(configDir);
  writeFileSync(join(configDir, 'main.cf'), `data_directory = ${dataDir}\nqueue_fsync = no\nmyhostname = mx.example.org\nmyorigin = example.org\n${mainCf}`);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(configDir, name), text);
  const s: Site = {
    configDir,
    dataDir,
    // NAME would become the From: full name (sendmail(1)); keep the runs independent of it.
    sendmail: (args, input) => runCli(['sendmail', '-c', configDir, ...args], { input, env: { NAME: '' } }),
    async postqueue() {
      const r = await runCli(['postqueue', '-j', '-c', configDir]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l));
    },
    async only() {
      const store = await QueueStore.open(dataDir, { fsync: false });
      try {
        const found = [...(await store.list('incoming')), ...(await store.list('hold'))];
        assert.equal(found.length, 1, `one queued message, not ${found.length}`);
        const f = found[0]!;
        const r = await store.read(f.queue, f.id);
        assert.equal(r.kind, 'ok');
        if (r.kind !== 'ok') throw new Error('unreadable');
        return { queue: f.queue, envelope: r.message.envelope, body: (await store.readBody(r.message)).toString('utf8') };
      } finally {
        await store.close();
      }
    },
    log() {
      const file = join(dataDir, 'log', 'mail.log');
      if (!existsSync(file)) return [];
      return readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    queued() {
      const out: string[] = [];
      for (const q of ['incoming', 'hold', 'active', 'deferred']) {
        const dir = join(dataDir, 'queue', q);
        if (existsSync(dir)) for (const f of readdirSync(dir)) out.push(`${q}/${f}`);
      }
      return out;
    },
  };
  return s;
}

/** The header section of BODY as [name, value] pairs (unfolded). */
function headers(body: string): Array<[string, string]> {
  const head = body.slice(0, body.indexOf('\r\n\r\n') + 2);
  const out: Array<[string, string]> = [];
  for (const line of head.split('\r\n')) {
    if (line === '') continue;
    if (line[0] === ' ' || line[0] === '\t') out[out.length - 1]![1] += ' ' + line.trim();
    else out.push([line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim()]);
  }
  return out;
}

const value = (h: Array<[string, string]>, name: string): string | undefined => h.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];

const MESSAGE = 'Subject: lunch\nTo: Bob <bob@example.com>\n\nSee you at noon.\n';

describe('greygate sendmail', { skip }, () => {
  it('queues the message in incoming/ with the envelope, as postqueue -j shows it', async () => {
    const s = site();
    const r = await s.sendmail(['-f', 'alice@example.net', 'bob@example.com'], MESSAGE);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', '']);
    const q = await s.postqueue();
    assert.equal(q.length, 1);
    assert.equal(q[0]!.queue_name, 'incoming');
    assert.equal(q[0]!.sender, 'alice@example.net');
    assert.deepEqual(q[0]!.recipients, [{ address: 'bob@example.com' }]);
    const m = await s.only();
    assert.equal(m.envelope.queueId, q[0]!.queue_id);
    assert.equal(m.envelope.service, 'sendmail');
    assert.deepEqual(m.envelope.client, { address: '127.0.0.1', name: 'localhost', helo: '', protocol: 'sendmail' });
    // A running gateway is told to pick it up.
    assert.ok(existsSync(join(s.dataDir, 'queue', 'pickup')));
  });

  it('stores CRLF lines and adds Received, Message-ID, Date and From as cleanup does', async () => {
    const s = site();
    const before = Date.now();
    assert.equal((await s.sendmail(['-f', 'alice@example.net', 'bob@example.com'], MESSAGE)).code, 0);
    const { body, envelope } = await s.only();
    assert.doesNotMatch(body, /(?<!\r)\n/);
    const qid = envelope.queueId;
    const uid = process.getuid?.() ?? 0;
    assert.match(body, new RegExp(`^Received: by mx\\.example\\.org \\(greygate, from userid ${uid}\\)\\r\\n\\tid ${qid}; \\w{3}, \\d{1,2} \\w{3} \\d{4} \\d\\d:\\d\\d:\\d\\d \\+0000 \\(UTC\\)\\r\\n`));
    const h = headers(body);
    assert.deepEqual(
      h.map(([k]) => k),
      ['Received', 'Subject', 'To', 'Message-ID', 'Date', 'From'],
    );
    assert.match(value(h, 'Message-ID')!, new RegExp(`^<\\d{14}\\.${qid}@mx\\.example\\.org>$`));
    assert.ok(Math.abs(Date.parse(value(h, 'Date')!.replace(/ \(UTC\)$/, '')) - before) < 60_000);
    assert.equal(value(h, 'From'), 'alice@example.net');
    assert.ok(body.endsWith('\r\n\r\nSee you at noon.\r\n'));
    assert.equal(envelope.messageSize, Buffer.byteLength(body));
  });

  it('keeps the headers the user wrote and uses -F for a generated From', async () => {
    const s = site();
    const own = 'Date: Mon, 4 Mar 2024 08:00:00 +0000\nMessage-ID: <mine@example.net>\nSubject: x\n\nbody\n';
    assert.equal((await s.sendmail(['-F', 'Alice Q. User', '-f', 'alice@example.net', 'bob@example.com'], own)).code, 0);
    const h = headers((await s.only()).body);
    assert.equal(value(h, 'Date'), 'Mon, 4 Mar 2024 08:00:00 +0000');
    assert.equal(value(h, 'Message-ID'), '<mine@example.net>');
    assert.equal(value(h, 'From'), '"Alice Q. User" <alice@example.net>');
    assert.equal(h.filter(([k]) => k === 'Date' || k === 'Message-ID').length, 2);
  });

  it('a message without headers gets them, and a blank line before its body', async () => {
    const s = site();
    assert.equal((await s.sendmail(['bob@example.com'], 'just text\n')).code, 0);
    const { body } = await s.only();
    assert.match(body, /\r\nFrom: [^\r]+\r\n\r\njust text\r\n$/);
  });

  it('the sender defaults to the login name @ $myorigin; unqualified recipients get @$myorigin', async () => {
    const s = site();
    assert.equal((await s.sendmail(['bob', 'carol@example.com'], MESSAGE)).code, 0);
    const q = await s.postqueue();
    assert.equal(q[0]!.sender, `${userInfo().username}@example.org`);
    assert.deepEqual(q[0]!.recipients, [{ address: 'bob@example.org' }, { address: 'carol@example.com' }]);
  });

  it('-t takes recipients from To, Cc and Bcc (plus the command line) and removes Bcc', async () => {
    const s = site();
    const msg = 'From: Alice <alice@example.net>\nTo: Bob <bob@example.com>, "Smith, Carol" <carol@example.com>\nCc: dave\nBcc: secret@example.net,\n  bob@example.com\nSubject: team\n\nhi\n';
    assert.equal((await s.sendmail(['-t', '-f', 'alice@example.net', 'erin@example.com'], msg)).code, 0);
    const q = await s.postqueue();
    assert.deepEqual(
      q[0]!.recipients.map((r) => r.address),
      ['erin@example.com', 'bob@example.com', 'carol@example.com', 'dave@example.org', 'secret@example.net'],
    );
    const { body } = await s.only();
    assert.doesNotMatch(body, /^Bcc:/im);
    assert.doesNotMatch(body, /secret/);
    assert.deepEqual(
      headers(body).map(([k]) => k),
      ['Received', 'From', 'To', 'Cc', 'Subject', 'Message-ID', 'Date'],
    );
  });

  it('-t uses Resent-To/Cc/Bcc when the message is being resent', async () => {
    const s = site();
    const msg = 'Resent-From: alice@example.net\nResent-To: frank@example.com\nResent-Bcc: gina@example.com\nTo: bob@example.com\nSubject: fwd\n\nx\n';
    assert.equal((await s.sendmail(['-t'], msg)).code, 0);
    assert.deepEqual((await s.postqueue())[0]!.recipients, [{ address: 'frank@example.com' }, { address: 'gina@example.com' }]);
    const h = headers((await s.only()).body);
    assert.equal(value(h, 'Resent-Bcc'), undefined);
    assert.ok(value(h, 'Resent-Message-ID'));
    assert.ok(value(h, 'Resent-Date'));
  });

  it('a line with a single dot ends the input, unless -i or -oi', async () => {
    const msg = 'Subject: dots\n\nbefore\n.\nafter\n';
    const s1 = site();
    assert.equal((await s1.sendmail(['bob@example.com'], msg)).code, 0);
    assert.ok((await s1.only()).body.endsWith('\r\n\r\nbefore\r\n'));
    for (const flag of ['-i', '-oi']) {
      const s2 = site();
      assert.equal((await s2.sendmail([flag, 'bob@example.com'], msg)).code, 0);
      assert.ok((await s2.only()).body.endsWith('\r\nbefore\r\n.\r\nafter\r\n'), flag);
    }
  });

  it('drops a leading mbox "From " line', async () => {
    const s = site();
    assert.equal((await s.sendmail(['bob@example.com'], 'From alice@example.net Mon Mar  4 08:00:00 2024\nSubject: mbox\n\nx\n')).code, 0);
    assert.match((await s.only()).body, /\r\nSubject: mbox\r\n/);
    assert.doesNotMatch((await s.only()).body, /^From alice/m);
  });

  it('accepts the Sendmail compatibility flags; -N, -R and -V land in the envelope', async () => {
    const s = site();
    const args = ['-i', '-odi', '-odb', '-oem', '-om', '-bm', '-v', '-L', 'mailx', '-h', '17', '-O', 'x=y', '-N', 'failure,delay', '-R', 'hdrs', '-V', 'ENV-42', '-Falice', '-ralice@example.net', 'bob@example.com'];
    const r = await s.sendmail(args, MESSAGE);
    assert.deepEqual([r.code, r.stderr], [0, '']);
    const { envelope } = await s.only();
    assert.equal(envelope.sender, 'alice@example.net');
    assert.deepEqual(envelope.recipients[0]!.notify, ['FAILURE', 'DELAY']);
    assert.equal(envelope.ret, 'HDRS');
    assert.equal(envelope.envid, 'ENV-42');
  });

  it('-f "<>" submits with the null sender', async () => {
    const s = site();
    assert.equal((await s.sendmail(['-f', '<>', 'bob@example.com'], MESSAGE)).code, 0);
    const { envelope, body } = await s.only();
    assert.equal(envelope.sender, '');
    assert.equal(value(headers(body), 'From'), 'MAILER-DAEMON');
  });

  it('logs one accept record with the contract fields', async () => {
    const s = site();
    assert.equal((await s.sendmail(['-f', 'alice@example.net', 'bob@example.com', 'carol@example.com'], MESSAGE)).code, 0);
    const { envelope } = await s.only();
    const log = s.log();
    assert.equal(log.length, 1);
    const rec = log[0]!;
    assert.equal(rec.event, 'accept');
    assert.equal(rec.stage, 'sendmail');
    assert.equal(rec.queue_id, envelope.queueId);
    assert.equal(rec.client_ip, '127.0.0.1');
    assert.equal(rec.client_name, 'localhost');
    assert.equal(rec.from, 'alice@example.net');
    assert.deepEqual(rec.to, ['bob@example.com', 'carol@example.com']);
    assert.equal(rec.size, envelope.messageSize);
    assert.ok(typeof rec.time === 'string');
    assert.equal(rec.msg, `${envelope.queueId}: from=<alice@example.net>, size=${envelope.messageSize}, nrcpt=2 (queue incoming)`);
  });
});

describe('greygate sendmail: header_checks and body_checks', { skip }, () => {
  const CHECKS = {
    header_checks:
      '/^Subject: .*viagra/ REJECT no pills here\n' +
      '/^Subject: review me/ HOLD needs a look\n' +
      '/^Subject: drop me/ DISCARD silently\n' +
      '/^Subject: tempfail/ REJECT 4.7.1 try later\n' +
      '/^X-Route: legal/ REDIRECT legal@example.org\n',
    body_checks: '/^ARCHIVE-ME$/ BCC archive@example.org\n',
  };
  const CF = 'header_checks = regexp:header_checks\nbody_checks = regexp:body_checks\n';

  it('REJECT: exit 65, one line on stderr, nothing queued, the reject logged', async () => {
    const s = site(CF, CHECKS);
    const r = await s.sendmail(['-f', 'alice@example.net', 'bob@example.com'], 'Subject: cheap viagra\n\nx\n');
    assert.equal(r.code, 65);
    assert.equal(r.stderr, 'greygate: sendmail: 550 5.7.1 no pills here\n');
    assert.deepEqual(s.queued(), []);
    assert.deepEqual(await s.postqueue(), []);
    const log = s.log();
    assert.equal(log.length, 1);
    assert.equal(log[0]!.event, 'reject');
    assert.equal(log[0]!.stage, 'sendmail');
    assert.equal(log[0]!.rule, 'header_checks:1');
    assert.equal(log[0]!.reply, '550 5.7.1 no pills here');
    assert.match(String(log[0]!.msg), /: reject: header Subject: cheap viagra from local; from=<alice@example\.net> to=<bob@example\.com>: 5\.7\.1 no pills here$/);
  });

  it('REJECT with a 4.x.x text: exit 75 (try again), nothing queued', async () => {
    const s = site(CF, CHECKS);
    const r = await s.sendmail(['bob@example.com'], 'Subject: tempfail\n\nx\n');
    assert.equal(r.code, 75);
    assert.equal(r.stderr.split('\n').length, 2);
    assert.deepEqual(s.queued(), []);
  });

  it('HOLD: into hold/, with the hold and the accept logged', async () => {
    const s = site(CF, CHECKS);
    assert.equal((await s.sendmail(['bob@example.com'], 'Subject: review me\n\nx\n')).code, 0);
    const q = await s.postqueue();
    assert.equal(q.length, 1);
    assert.equal(q[0]!.queue_name, 'hold');
    const { envelope } = await s.only();
    assert.equal(envelope.hold, 'needs a look');
    assert.deepEqual(
      s.log().map((l) => l.event),
      ['hold', 'accept'],
    );
    assert.match(String(s.log()[1]!.msg), /\(queue hold\)$/);
  });

  it('DISCARD: accepted (exit 0) and dropped, the discard logged', async () => {
    const s = site(CF, CHECKS);
    const r = await s.sendmail(['bob@example.com'], 'Subject: drop me\n\nx\n');
    assert.deepEqual([r.code, r.stderr], [0, '']);
    assert.deepEqual(s.queued(), []);
    assert.deepEqual(
      s.log().map((l) => [l.event, l.rule]),
      [['discard', 'header_checks:3']],
    );
  });

  it('BCC adds a recipient with NOTIFY=NEVER', async () => {
    const s = site(CF, CHECKS);
    assert.equal((await s.sendmail(['bob@example.com', 'carol@example.com'], 'Subject: contract\n\nARCHIVE-ME\n')).code, 0);
    const { envelope } = await s.only();
    assert.deepEqual(
      envelope.recipients.map((r) => [r.address, r.notify]),
      [
        ['bob@example.com', undefined],
        ['carol@example.com', undefined],
        ['archive@example.org', ['NEVER']],
      ],
    );
    assert.deepEqual(
      s.log().map((l) => l.event),
      ['bcc', 'accept'],
    );
  });

  it('REDIRECT replaces every recipient (and ends the checks, as in cleanup)', async () => {
    const s = site(CF, CHECKS);
    assert.equal((await s.sendmail(['bob@example.com', 'carol@example.com'], 'X-Route: legal\nSubject: contract\n\nARCHIVE-ME\n')).code, 0);
    const { envelope } = await s.only();
    assert.deepEqual(
      envelope.recipients.map((r) => r.address),
      ['legal@example.org'],
    );
  });

  it('our Received: and the headers we add are not inspected', async () => {
    const s = site('header_checks = regexp:header_checks\n', { header_checks: '/^(Received|From|Message-ID|Date):/ REJECT not ours to check\n' });
    const r = await s.sendmail(['bob@example.com'], 'Subject: plain\n\nx\n');
    assert.equal(r.code, 0, r.stderr);
  });

  it('a table that cannot be read fails closed: exit 75, nothing queued', async () => {
    const s = site('header_checks = regexp:missing_checks\n');
    const r = await s.sendmail(['bob@example.com'], MESSAGE);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, /^greygate: sendmail: 451 4\.3\.0 /);
    assert.deepEqual(s.queued(), []);
  });

  it('message_size_limit: exit 65, nothing queued', async () => {
    const s = site('message_size_limit = 1000\n');
    const r = await s.sendmail(['bob@example.com'], `Subject: big\n\n${'y'.repeat(2000)}\n`);
    assert.equal(r.code, 65);
    assert.match(r.stderr, /^greygate: sendmail: message file too big/);
    assert.deepEqual(s.queued(), []);
    assert.equal(s.log()[0]!.rule, 'message_size_limit');
  });
});

describe('greygate sendmail: bad input is one line on stderr', { skip }, () => {
  const cases: Array<{ name: string; args: string[]; input?: string; want: RegExp }> = [
    { name: 'no recipient', args: [], want: /recipient addresses must be specified/ },
    { name: '-t without recipient headers', args: ['-t'], input: 'Subject: nobody\n\nx\n', want: /no recipient addresses found in message header/ },
    { name: '-bs (SMTP on stdin)', args: ['-bs'], want: /-bs is not supported/ },
    { name: '-bp (mailq)', args: ['-bp'], want: /-bp is not supported/ },
    { name: '-q (queue run)', args: ['-q'], want: /-q is not supported/ },
    { name: 'an unknown option', args: ['-Z', 'bob@example.com'], want: /invalid option -- 'Z'/ },
    { name: 'an option without its argument', args: ['-f'], want: /option -f requires an argument/ },
    { name: 'a bad -N value', args: ['-N', 'sometimes', 'bob@example.com'], want: /bad -N option value/ },
    { name: 'NEVER with another NOTIFY', args: ['-N', 'never,failure', 'bob@example.com'], want: /bad -N option value/ },
    { name: 'a bad recipient', args: ['bob@@'], want: /bad recipient address syntax/ },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const s = site();
      const r = await s.sendmail(c.args, c.input ?? MESSAGE);
      assert.equal(r.code, 2);
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
      assert.match(r.stderr, /^greygate: sendmail: /);
      assert.match(r.stderr, c.want);
      assert.deepEqual(s.queued(), []);
    });
  }
});
