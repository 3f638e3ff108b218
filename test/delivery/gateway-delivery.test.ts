/**
 * End to end: the gateway accepts mail over SMTP (or sendmail), its queue manager delivers it
 * to a scriptable SMTP sink on loopback (the protected server), to Maildir mailboxes read back
 * with Python's mailbox module, or returns it to the sender with an RFC 3464 notice.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startGateway, requireTool, type TestGateway } from '../helpers/gateway.js';
import { SmtpSink } from '../helpers/smtp-sink.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { TestDnsServer } from '../fixtures/dns-server.js';

const run = promisify(execFile);

interface MailboxMessage {
  from: string | null;
  subject: string | null;
  contentType: string;
  returnPath: string | null;
  deliveredTo: string | null;
  body: string;
  parts: Array<{ type: string; text: string }>;
}

/** USER's INBOX as Python's mailbox.Maildir reads it (what mutt and Dovecot see too). */
async function readMaildir(gw: TestGateway, user: string): Promise<MailboxMessage[]> {
  requireTool('/usr/bin/python3');
  const script = `
import json, mailbox, sys, os
root = sys.argv[1]
out = []
if os.path.isdir(root):
    md = mailbox.Maildir(root, factory=None, create=False)
    for key in sorted(md.keys()):
        m = md[key]
        parts = []
        if m.is_multipart():
            # Top-level parts only: message/delivery-status and message/rfc822 are
            # containers to Python, and are shown whole.
            for p in m.get_payload():
                payload = p.get_payload(decode=False)
                if isinstance(payload, list): payload = '\\n'.join(str(x) for x in payload)
                parts.append({'type': p.get_content_type(), 'text': str(payload)})
        out.append({'from': m['From'], 'subject': m['Subject'], 'contentType': m.get_content_type(),
                    'returnPath': m['Return-Path'], 'deliveredTo': m['Delivered-To'],
                    'body': '' if m.is_multipart() else m.get_payload(), 'parts': parts})
print(json.dumps(out))
`;
  const { stdout } = await run('python3', ['-c', script, join(gw.dataDir, 'mail', user)]);
  return JSON.parse(stdout) as MailboxMessage[];
}

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined> | T | null | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function queueFiles(gw: TestGateway, q: string): string[] {
  const dir = join(gw.dataDir, 'queue', q);
  return existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith('.')) : [];
}

function queueEmpty(gw: TestGateway): boolean {
  return ['incoming', 'active', 'deferred'].every((q) => queueFiles(gw, q).length === 0);
}

/** One raw SMTP transaction; returns the DATA reply. */
async function send(gw: TestGateway, from: string, to: string[], message: string): Promise<string> {
  const c = await SmtpClient.connect(gw.port);
  try {
    assert.equal((await c.cmd('EHLO client.example')).code, 250);
    assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
    for (const r of to) assert.equal((await c.cmd(`RCPT TO:<${r}>`)).code, 250, `RCPT ${r}`);
    const reply = await c.data(message);
    assert.equal(reply.code, 250, reply.text);
    await c.cmd('QUIT');
    return reply.text;
  } finally {
    c.close();
  }
}

function queueIdOf(dataReply: string): string {
  const m = /queued as (\S+)/.exec(dataReply);
  assert.ok(m, dataReply);
  return m[1]!;
}

const DELIVERY = {
  master_service_disable: '',
  minimal_backoff_time: '1s',
  maximal_backoff_time: '2s',
  queue_run_delay: '1s',
};

describe('queue manager and delivery, end to end', () => {
  describe('relay to the protected server', () => {
    let sink: SmtpSink;
    let other: SmtpSink;
    let gw: TestGateway;
    before(async () => {
      sink = await SmtpSink.start({ tls: true });
      other = await SmtpSink.start({});
      gw = await startGateway({
        params: { ...DELIVERY, relayhost: sink.nexthop, transport_maps: 'hash:transport', relay_domains: 'relay.test, routed.test, gone.test' },
        files: { transport: `routed.test smtp:${other.nexthop}\ngone.test error:5.1.2 this domain is gone\n` },
      });
    });
    after(async () => {
      await gw.stop();
      await sink.stop();
      await other.stop();
    });

    it('delivers byte-exact with our Received header, over STARTTLS, EHLO as myhostname', async () => {
      const body = 'From: a@example.org\r\nTo: b@relay.test\r\nSubject: exact\r\n\r\nline one\r\n..dot line\r\n\ttabbed\r\n';
      const before = sink.messages.length;
      const id = queueIdOf(await send(gw, 'a@example.org', ['b@relay.test'], body.replace(/^\.\./m, '.')));
      await sink.waitForMessages(before + 1);
      const m = sink.messages[before]!;
      const raw = m.raw.toString('latin1');
      assert.match(raw, new RegExp(`^Received: from client\\.example \\(localhost \\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.greygate\\.test \\(greygate\\) with ESMTP id ${id}\\r\\n`));
      assert.equal(raw.slice(raw.indexOf('From: a@example.org')), body.replace('..dot', '.dot'));
      assert.equal(m.tls, true);
      assert.equal(m.ehlo, 'mx.greygate.test');
      assert.equal(m.mailFrom.address, 'a@example.org');
      assert.deepEqual(m.rcptTo.map((r) => r.address), ['b@relay.test']);
      const rec = await gw.waitLog((r) => r.event === 'deliver' && r.queue_id === id);
      assert.equal(rec.status, 'sent');
      assert.equal(rec.dsn, '2.0.0');
      assert.equal(rec.relay, `127.0.0.1[127.0.0.1]:${sink.port}`);
      assert.equal(typeof rec.delay, 'number');
      assert.equal(rec.to, 'b@relay.test');
      assert.equal(rec.from, 'a@example.org');
      await waitFor('queue empty', () => queueEmpty(gw));
    });

    it('routes by transport_maps, and error: transport bounces', async () => {
      const before = other.messages.length;
      await send(gw, 'a@example.org', ['x@routed.test'], 'Subject: routed\r\n\r\nhi\r\n');
      await other.waitForMessages(before + 1);
      assert.deepEqual(other.messages[before]!.rcptTo.map((r) => r.address), ['x@routed.test']);
      const id = queueIdOf(await send(gw, '', ['x@gone.test'], 'Subject: gone\r\n\r\nhi\r\n'));
      const rec = await gw.waitLog((r) => r.event === 'bounce' && r.queue_id === id);
      assert.equal(rec.dsn, '5.1.2');
      assert.equal(rec.reply, 'this domain is gone');
      assert.equal(rec.relay, 'none');
    });

    it('one delivery record per recipient: 250 for one, 550 for another, 450 for a third', async () => {
      await sink.stop();
      const s2 = await SmtpSink.start({
        port: sink.port,
        rcpt: (a) => (a.address.startsWith('bad') ? { code: 550, text: '5.1.1 no such user' } : a.address.startsWith('later') ? { code: 450, text: '4.2.1 try later' } : undefined),
      });
      try {
        const id = queueIdOf(await send(gw, '', ['ok@relay.test', 'bad@relay.test', 'later@relay.test'], 'Subject: three\r\n\r\nhi\r\n'));
        const ok = await gw.waitLog((r) => r.event === 'deliver' && r.queue_id === id);
        const bad = await gw.waitLog((r) => r.event === 'bounce' && r.queue_id === id);
        const later = await gw.waitLog((r) => r.event === 'defer' && r.queue_id === id);
        assert.equal(ok.to, 'ok@relay.test');
        assert.equal(bad.to, 'bad@relay.test');
        assert.equal(bad.dsn, '5.1.1');
        assert.match(String(bad.reply), /^host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 no such user \(in reply to RCPT TO command\)$/);
        assert.equal(later.dsn, '4.2.1');
        assert.equal(later.status, 'deferred');
        // postqueue -j shows the deferred recipient only, with its delay_reason
        const j = await waitFor('deferred', async () => {
          const r = await gw.cli(['postqueue', '-j']);
          const line = r.stdout.split('\n').find((l) => l.includes(id));
          return line && JSON.parse(line).queue_name === 'deferred' ? (JSON.parse(line) as { recipients: Array<{ address: string; delay_reason: string }> }) : null;
        });
        assert.deepEqual(j.recipients.map((r) => r.address), ['later@relay.test']);
        assert.match(j.recipients[0]!.delay_reason, /said: 450 4\.2\.1 try later \(in reply to RCPT TO command\)/);
        // The retry (1 s backoff) sends only the deferred recipient again.
        const n = s2.messages.length;
        await gw.waitLog((r) => r.event === 'defer' && r.queue_id === id && r !== later && r.time !== later.time, 8000);
        assert.ok(s2.messages.slice(n).every((m) => m.rcptTo.every((r) => r.address === 'later@relay.test')));
        await gw.cli(['postsuper', '-d', id]);
      } finally {
        await s2.stop();
        await sink.start();
      }
    });
  });

  describe('sink down, then back', () => {
    it('defers with the connection error as delay_reason; postqueue -f delivers it', async () => {
      const sink = await SmtpSink.start({});
      await sink.stop();
      const gw = await startGateway({ params: { ...DELIVERY, minimal_backoff_time: '300s', maximal_backoff_time: '4000s', queue_run_delay: '300s', relayhost: sink.nexthop } });
      try {
        const id = queueIdOf(await send(gw, 'a@example.org', ['b@relay.test'], 'Subject: down\r\n\r\nhi\r\n'));
        const rec = await gw.waitLog((r) => r.event === 'defer' && r.queue_id === id, 10_000);
        assert.equal(rec.dsn, '4.4.1');
        assert.equal(rec.reply, `connect to 127.0.0.1[127.0.0.1]:${sink.port}: Connection refused`);
        await waitFor('in deferred', () => queueFiles(gw, 'deferred').includes(id));
        const p = await gw.cli(['postqueue', '-p']);
        assert.match(p.stdout, new RegExp(`^${id}\\s+\\d+ .*  a@example\\.org\\n\\s+\\(connect to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${sink.port}: Connection refused\\)\\n\\s+b@relay\\.test\\n`, 'm'));
        const id2 = queueIdOf(await send(gw, 'a@example.org', ['c@relay.test'], 'Subject: down too\r\n\r\nhi\r\n'));
        await waitFor('both in deferred', () => queueFiles(gw, 'deferred').includes(id2));
        await sink.start();
        // postqueue -i: that message only
        const i = await gw.cli(['postqueue', '-i', id]);
        assert.equal(i.code, 0, i.stderr);
        await sink.waitForMessages(1, 10_000);
        await gw.waitLog((r) => r.event === 'deliver' && r.queue_id === id);
        assert.ok(queueFiles(gw, 'deferred').includes(id2), 'the other message still waits');
        // postqueue -f: everything deferred
        const f = await gw.cli(['postqueue', '-f']);
        assert.equal(f.code, 0, f.stderr);
        await gw.waitLog((r) => r.event === 'deliver' && r.queue_id === id2);
        assert.equal(sink.messages.length, 2);
        await waitFor('queue empty', () => queueEmpty(gw));
      } finally {
        await gw.stop();
        await sink.stop();
      }
    });

    it('expires after maximal_queue_lifetime and returns the mail to a local sender with a DSN', async () => {
      const sink = await SmtpSink.start({});
      await sink.stop();
      const gw = await startGateway({ params: { ...DELIVERY, maximal_queue_lifetime: '2s', relayhost: sink.nexthop } });
      try {
        assert.equal((await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'pw\n')).code, 0);
        const id = queueIdOf(await send(gw, 'alice@greygate.test', ['b@relay.test'], 'Subject: will expire\r\n\r\nhi\r\n'));
        const exp = await gw.waitLog((r) => r.event === 'expire' && r.queue_id === id, 15_000);
        assert.equal(exp.status, 'expired');
        assert.match(String(exp.reply), /Connection refused/);
        const box = await waitFor('notice in mailbox', async () => {
          const m = await readMaildir(gw, 'alice');
          return m.length ? m : null;
        });
        assert.equal(box.length, 1);
        assert.match(box[0]!.from ?? '', /^MAILER-DAEMON@mx\.greygate\.test \(Mail Delivery System\)$/);
        assert.equal(box[0]!.subject, 'Undelivered Mail Returned to Sender');
        assert.equal(box[0]!.contentType, 'multipart/report');
        assert.equal(box[0]!.returnPath, '<>');
        const status = box[0]!.parts.find((p) => p.type === 'message/delivery-status');
        assert.ok(status, JSON.stringify(box[0]!.parts.map((p) => p.type)));
        assert.match(status.text, /Final-Recipient: rfc822; ?b@relay\.test/i);
        assert.match(status.text, /Action: failed/);
        await waitFor('queue empty', () => queueEmpty(gw));
      } finally {
        await gw.stop();
      }
    });
  });

  describe('delay warnings', () => {
    it('after delay_warning_time the sender gets one "still being retried" notice', async () => {
      const gw = await startGateway({ params: { ...DELIVERY, delay_warning_time: '1s', relayhost: '[127.0.0.1]:9' } });
      try {
        assert.equal((await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'pw\n')).code, 0);
        const id = queueIdOf(await send(gw, 'alice@greygate.test', ['b@relay.test'], 'Subject: slow\r\n\r\nhi\r\n'));
        const box = await waitFor('delay notice', async () => {
          const m = await readMaildir(gw, 'alice');
          return m.length ? m : null;
        });
        assert.equal(box[0]!.subject, 'Delayed Mail (still being retried)');
        const st = box[0]!.parts.find((p) => p.type === 'message/delivery-status');
        assert.match(st?.text ?? '', /Action: delayed/);
        // More retries happen (1-2 s backoff), but no second warning.
        await gw.waitLog((r) => r.event === 'defer' && r.queue_id === id && Number(r.delay) >= 3, 10_000);
        assert.equal((await readMaildir(gw, 'alice')).length, 1);
        assert.ok(queueFiles(gw, 'deferred').includes(id) || queueFiles(gw, 'active').includes(id));
      } finally {
        await gw.stop();
      }
    });
  });

  describe('bounces', () => {
    let sink: SmtpSink;
    let gw: TestGateway;
    before(async () => {
      sink = await SmtpSink.start({ rcpt: (a) => (a.address.startsWith('nobody') ? { code: 550, text: '5.1.1 <' + a.address + '>: Recipient address rejected' } : undefined) });
      gw = await startGateway({ params: { ...DELIVERY, relayhost: sink.nexthop, alias_maps: 'hash:aliases' }, files: { aliases: 'postmaster: alice\n' } });
      assert.equal((await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'pw\n')).code, 0);
      assert.equal((await gw.cli(['user', 'add', 'bob', '--password-stdin'], 'pw\n')).code, 0);
    });
    after(async () => {
      await gw.stop();
      await sink.stop();
    });

    it('a 5xx from the protected server puts an RFC 3464 DSN in the sender\'s mailbox', async () => {
      const id = queueIdOf(await send(gw, 'bob@greygate.test', ['nobody@relay.test'], 'Subject: to nobody\r\nMessage-ID: <orig@example>\r\n\r\nhello\r\n'));
      const b = await gw.waitLog((r) => r.event === 'bounce' && r.queue_id === id);
      assert.equal(b.dsn, '5.1.1');
      const box = await waitFor('DSN for bob', async () => {
        const m = await readMaildir(gw, 'bob');
        return m.length ? m : null;
      });
      const dsn = box[0]!;
      assert.equal(dsn.contentType, 'multipart/report');
      const types = dsn.parts.map((p) => p.type);
      assert.ok(types.includes('message/delivery-status'), types.join(','));
      const st = dsn.parts.find((p) => p.type === 'message/delivery-status')!.text;
      assert.match(st, /Reporting-MTA: dns; ?mx\.greygate\.test/);
      assert.match(st, /Status: 5\.1\.1/);
      assert.match(st, /Diagnostic-Code: smtp; ?550 5\.1\.1/);
      assert.match(st, /Remote-MTA: dns; ?127\.0\.0\.1/);
      assert.ok(JSON.stringify(dsn.parts).includes('orig@example'), 'the original headers are returned');
    });

    it('never bounces to the null sender: the double bounce goes to postmaster', async () => {
      const before = (await readMaildir(gw, 'alice')).length;
      const id = queueIdOf(await send(gw, '', ['nobody2@relay.test'], 'Subject: bounce of a bounce\r\n\r\nhello\r\n'));
      await gw.waitLog((r) => r.event === 'bounce' && r.queue_id === id);
      const box = await waitFor('double bounce for postmaster', async () => {
        const m = await readMaildir(gw, 'alice');
        return m.length > before ? m : null;
      });
      assert.match(box[box.length - 1]!.subject ?? '', /Postmaster Copy: Undelivered Mail/);
      // Nothing for the null sender, nothing stuck.
      await waitFor('queue empty', () => queueEmpty(gw));
    });
  });

  describe('local delivery', () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway({
        params: { ...DELIVERY, alias_maps: 'hash:aliases', recipient_delimiter: '+' },
        files: { aliases: 'team: alice, bob\nsales: :include:sales.list\nloop1: loop2\nloop2: loop1\n', 'sales.list': '# the sales team\nbob\n' },
      });
      assert.equal((await gw.cli(['user', 'add', 'alice', '--password-stdin'], 'pw\n')).code, 0);
      assert.equal((await gw.cli(['user', 'add', 'bob', '--password-stdin'], 'pw\n')).code, 0);
    });
    after(async () => {
      await gw.stop();
    });

    it('delivers into Maildir through aliases, :include: and recipient_delimiter', async () => {
      await send(gw, 'x@example.org', ['alice+news@greygate.test'], 'Subject: plus\r\n\r\nfor alice\r\n');
      await send(gw, 'x@example.org', ['team@greygate.test'], 'Subject: team\r\n\r\nfor the team\r\n');
      await send(gw, 'x@example.org', ['sales@greygate.test'], 'Subject: sales\r\n\r\nfor sales\r\n');
      const alice = await waitFor('alice has 2', async () => {
        const m = await readMaildir(gw, 'alice');
        return m.length >= 2 ? m : null;
      });
      const bob = await waitFor('bob has 2', async () => {
        const m = await readMaildir(gw, 'bob');
        return m.length >= 2 ? m : null;
      });
      assert.deepEqual(alice.map((m) => m.subject).sort(), ['plus', 'team']);
      assert.deepEqual(bob.map((m) => m.subject).sort(), ['sales', 'team']);
      const plus = alice.find((m) => m.subject === 'plus')!;
      assert.equal(plus.returnPath, '<x@example.org>');
      assert.equal(plus.deliveredTo, 'alice+news@greygate.test');
      assert.equal(plus.body.replace(/\r\n/g, '\n'), 'for alice\n');
    });

    it('an alias loop bounces 5.4.6, and mail to a removed user bounces 5.1.1', async () => {
      const id = queueIdOf(await send(gw, '', ['loop1@greygate.test'], 'Subject: loop\r\n\r\nx\r\n'));
      const l = await gw.waitLog((r) => r.event === 'bounce' && r.queue_id === id);
      assert.equal(l.dsn, '5.4.6');
      assert.equal((await gw.cli(['user', 'add', 'carol', '--password-stdin'], 'pw\n')).code, 0);
      const c = await SmtpClient.connect(gw.port);
      await c.cmd('EHLO client.example');
      await c.cmd('MAIL FROM:<>');
      assert.equal((await c.cmd('RCPT TO:<carol@greygate.test>')).code, 250);
      // removed between RCPT and delivery
      assert.equal((await gw.cli(['user', 'del', 'carol'])).code, 0);
      const reply = await c.data('Subject: too late\r\n\r\nx\r\n');
      assert.equal(reply.code, 250);
      const id2 = queueIdOf(reply.text);
      const u = await gw.waitLog((r) => r.event === 'bounce' && r.queue_id === id2);
      assert.equal(u.dsn, '5.1.1');
      assert.match(String(u.reply), /unknown user: "carol"/);
    });

    it('greygate sendmail submits through the queue; the running gateway delivers it at once', async () => {
      const r = await gw.cli(['sendmail', '-f', 'root@greygate.test', 'alice@greygate.test'], 'Subject: from sendmail\n\nvia the CLI\n');
      assert.equal(r.code, 0, r.stderr);
      const box = await waitFor('sendmail message', async () => {
        const m = await readMaildir(gw, 'alice');
        return m.find((x) => x.subject === 'from sendmail') ?? null;
      });
      assert.equal(box.body.replace(/\r\n/g, '\n'), 'via the CLI\n');
    });
  });

  describe('MX delivery through dns_resolvers', () => {
    it('looks up the MX of the nexthop and delivers to the best reachable exchanger', async () => {
      const sink = await SmtpSink.start({});
      const dns = await TestDnsServer.start({
        'mx.test': { MX: [{ exchange: 'down.mx.test', priority: 5 }, { exchange: 'up.mx.test', priority: 10 }] },
        'down.mx.test': { A: ['127.0.0.3'] },
        'up.mx.test': { A: ['127.0.0.1'] },
      });
      const gw = await startGateway({
        params: { ...DELIVERY, dns_resolvers: dns.address, relay_domains: 'mx.test', transport_maps: 'hash:transport' },
        // host:port with MX lookup (no brackets), as transport(5) allows.
        files: { transport: `mx.test smtp:mx.test:${sink.port}\n` },
      });
      try {
        const id = queueIdOf(await send(gw, 'a@example.org', ['u@mx.test'], 'Subject: via MX\r\n\r\nhi\r\n'));
        await sink.waitForMessages(1, 15_000);
        const rec = await gw.waitLog((r) => r.event === 'deliver' && r.queue_id === id);
        assert.equal(rec.relay, `up.mx.test[127.0.0.1]:${sink.port}`);
        assert.ok(dns.queries.some((q) => q.name === 'mx.test' && q.type === 'MX'));
      } finally {
        await gw.stop();
        await sink.stop();
        await dns.close();
      }
    });
  });

  describe('durability', () => {
    it('kill -9 during delivery: the message is delivered after restart, nothing lost', async () => {
      let slow = true;
      const sink = await SmtpSink.start({
        data: async () => {
          if (slow) await new Promise((r) => setTimeout(r, 4000));
          return undefined;
        },
      });
      const gw = await startGateway({ params: { ...DELIVERY, relayhost: sink.nexthop } });
      try {
        const id = queueIdOf(await send(gw, 'a@example.org', ['b@relay.test'], 'Subject: survive\r\n\r\nhi\r\n'));
        await waitFor('in active', () => queueFiles(gw, 'active').includes(id));
        await waitFor('sink got data', () => sink.messages.length >= 1, 10_000).catch(() => undefined);
        await gw.kill9();
        slow = false;
        assert.ok(queueFiles(gw, 'active').includes(id), 'still leased in active/');
        await gw.start();
        await gw.waitLog((r) => r.event === 'deliver' && r.queue_id === id && r.status === 'sent', 15_000);
        await waitFor('queue empty', () => queueEmpty(gw));
        // At least once: the copy before the crash may or may not have counted.
        assert.ok(sink.messages.length >= 1);
      } finally {
        await gw.stop();
        await sink.stop();
      }
    });

    it('a queue file that cannot be parsed goes to corrupt/, never deleted', async () => {
      const gw = await startGateway({ params: { ...DELIVERY, relayhost: '[127.0.0.1]:9' } });
      try {
        writeFileSync(join(gw.dataDir, 'queue', 'incoming', 'ABCDEF12345'), 'GREYGATE-QUEUE/1 garbage\n');
        await gw.cli(['postqueue', '-f']);
        await waitFor('quarantined', () => queueFiles(gw, 'corrupt').includes('ABCDEF12345'));
        assert.deepEqual(queueFiles(gw, 'incoming'), []);
      } finally {
        await gw.stop();
      }
    });
  });
});
