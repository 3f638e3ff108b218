/**
 * Tests for delivery/relay.ts (and its wire side, delivery/smtp-connection-pool.ts) with real
 * SMTP servers on loopback: smtp-server sinks (test/helpers/smtp-sink.ts), a few raw scripted
 * servers for what smtp-server cannot be made to do, and test/fixtures/dns-server.ts for MX.
 * Covered: byte-exact delivery, bare CR/LF arriving as CRLF, STARTTLS when offered and not
 * otherwise, the plaintext retry after a failed handshake, `encrypt`, 4xx/5xx at every
 * stage with Postfix's texts, connection refused and timeouts, MX order and fallback (also
 * for a recipient deferred by the first MX), null and implicit MX, loop detection, 8BITMIME,
 * SMTPUTF8, DSN and SIZE parameters, connection reuse (and a broken cached connection),
 * per-destination concurrency, and "sink down, deferred, sink back".
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { SmtpSink, type SinkOptions } from '../helpers/smtp-sink.js';
import { TestDnsServer } from '../fixtures/dns-server.js';
import { SmtpAgent, smtpAgentOptions, type SmtpAgentOptions } from '../../src/delivery/relay.js';
import { configFromText } from '../../src/config/config.js';
import { CrlfNormalizer, DestinationLimiter, normalizeCrlf } from '../../src/delivery/smtp-connection-pool.js';
import type { DeliveryJob, RecipientOutcome } from '../../src/delivery/agent.js';
import { buildEnvelope, type NewEnvelope, type NewRecipient } from '../../src/queue/envelope.js';
import { createDnsClientFromOptions, offlineDnsClient } from '../../src/dns/resolver.js';

const HELO = 'gw.example.test';
const BODY = 'Received: from client.example (client.example [192.0.2.9])\r\nSubject: test\r\n\r\nHello.\r\n';

let seq = 0;

interface JobSpec {
  nexthop: string;
  recipients?: Array<string | NewRecipient>;
  message?: string | Buffer;
  envelope?: Partial<NewEnvelope>;
}

function makeJob(spec: JobSpec): DeliveryJob {
  const recipients = spec.recipients ?? ['bob@example.com'];
  const message = Buffer.isBuffer(spec.message) ? spec.message : Buffer.from(spec.message ?? BODY);
  const queueId = `TEST${++seq}`;
  const envelope = buildEnvelope(
    queueId,
    {
      sender: 'alice@example.org',
      recipients,
      client: { address: '192.0.2.9', name: 'client.example' },
      protocol: 'ESMTP',
      ...spec.envelope,
    },
    message.length,
    Date.now(),
  );
  return {
    queueId,
    envelope,
    recipients: envelope.recipients.map((r, index) => ({ index, address: r.address, originalAddress: r.originalAddress })),
    transport: 'smtp',
    nexthop: spec.nexthop,
    message,
  };
}

function makeAgent(over: Partial<SmtpAgentOptions> = {}): SmtpAgent {
  return new SmtpAgent({
    heloName: HELO,
    tlsSecurityLevel: 'may',
    connectTimeoutMs: 3000,
    heloTimeoutMs: 10_000,
    dataDoneTimeoutMs: 10_000,
    connectionCacheTimeLimitMs: 2000,
    connectionReuseCountLimit: 0,
    destinationConcurrencyLimit: 20,
    dns: offlineDnsClient(),
    isSelf: () => false,
    randomizeMx: false,
    ...over,
  });
}

/** withSink - run FN with a fresh sink and agent; both are closed afterwards */
async function withSink<T>(sinkOpts: SinkOptions, fn: (sink: SmtpSink, agent: SmtpAgent) => Promise<T>, agentOpts: Partial<SmtpAgentOptions> = {}): Promise<T> {
  const sink = await SmtpSink.start(sinkOpts);
  const agent = makeAgent(agentOpts);
  try {
    return await fn(sink, agent);
  } finally {
    await agent.close();
    await sink.stop();
  }
}

function relayOf(sink: SmtpSink, host = sink.host): string {
  return `${host}[${sink.host}]:${sink.port}`;
}

/* ---- a raw scripted server, for replies smtp-server cannot give ---- */

interface Scripted {
  readonly port: number;
  readonly commands: string[];
  close(): Promise<void>;
}

/**
 * scripted - a bare SMTP server: REPLY(command) gives the reply line(s) (undefined = a
 * default OK), 'CLOSE' drops the connection, 'SILENT' answers nothing. The end of data is
 * the command ".". GREETING null sends no greeting at all.
 */
async function scripted(reply: (cmd: string) => string | undefined, greeting: string | null = '220 fake.test ESMTP'): Promise<Scripted> {
  const commands: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    let inData = false;
    if (greeting !== null) sock.write(`${greeting}\r\n`);
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (inData && line !== '.') continue;
        inData = false;
        commands.push(line);
        const verb = line.split(/[ :]/, 1)[0]!.toUpperCase();
        const r =
          reply(line) ??
          ({ EHLO: '250-fake.test\r\n250 8BITMIME', HELO: '250 fake.test', MAIL: '250 2.1.0 Ok', RCPT: '250 2.1.5 Ok', DATA: '354 End data with <CR><LF>.<CR><LF>', '.': '250 2.0.0 Ok: queued as FAKE1', RSET: '250 2.0.0 Ok', QUIT: '221 2.0.0 Bye' } as Record<string, string>)[verb] ??
          '502 5.5.2 Error: command not recognized';
        if (r === 'CLOSE') {
          sock.destroy();
          return;
        }
        if (r === 'SILENT') continue;
        if (verb === 'DATA' && r.startsWith('354')) inData = true;
        sock.write(`${r}\r\n`);
        if (verb === 'QUIT') sock.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  return {
    port: typeof a === 'object' && a ? a.port : 0,
    commands,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const a = s.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function brief(o: RecipientOutcome): { kind: string; status: string; reason?: string; relay: string } {
  return o.kind === 'delivered' ? { kind: o.kind, status: o.dsn.status, relay: o.relay } : { kind: o.kind, status: o.dsn.status, reason: o.reason, relay: o.relay };
}

/* ---- line endings ---- */

describe('CRLF normalisation', () => {
  const cases: Array<{ name: string; input: string; want: string }> = [
    { name: 'CRLF stays', input: 'a\r\nb\r\n', want: 'a\r\nb\r\n' },
    { name: 'bare LF', input: 'a\nb\n', want: 'a\r\nb\r\n' },
    { name: 'bare CR', input: 'a\rb\r', want: 'a\r\nb\r\n' },
    { name: 'CR CR LF', input: 'a\r\r\nb', want: 'a\r\n\r\nb' },
    { name: 'LF CR', input: 'a\n\rb', want: 'a\r\n\r\nb' },
    { name: 'no line end at all', input: 'abc', want: 'abc' },
    { name: 'only CR', input: '\r', want: '\r\n' },
  ];
  for (const c of cases) {
    it(`${c.name}, whole and split at every byte`, async () => {
      assert.equal(normalizeCrlf(Buffer.from(c.input, 'latin1')).toString('latin1'), c.want);
      for (let cut = 0; cut <= c.input.length; cut++) {
        for (const size of [1, 2, 3]) {
          const pieces: Buffer[] = [Buffer.from(c.input.slice(0, cut), 'latin1')];
          for (let i = cut; i < c.input.length; i += size) pieces.push(Buffer.from(c.input.slice(i, i + size), 'latin1'));
          const out: Buffer[] = [];
          await new Promise<void>((resolve, reject) => {
            Readable.from(pieces)
              .pipe(new CrlfNormalizer())
              .on('data', (b: Buffer) => out.push(b))
              .on('end', resolve)
              .on('error', reject);
          });
          assert.equal(Buffer.concat(out).toString('latin1'), c.want, `cut ${cut}, size ${size}`);
        }
      }
    });
  }

  it('returns a clean message without copying it', () => {
    const b = Buffer.from('a\r\nb\r\n');
    assert.equal(normalizeCrlf(b), b);
  });
});

/* ---- delivery ---- */

describe('SMTP delivery to a sink', () => {
  it('delivers the message byte for byte, with EHLO as smtp_helo_name', async () => {
    const bytes = Buffer.concat([
      Buffer.from('Received: from x\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n'),
      Buffer.from('.leading dot\r\n..two dots\r\n.\r\n'),
      Buffer.from([0xc3, 0xa9, 0x80, 0xff, 0x0d, 0x0a]),
      Buffer.from(`${'x'.repeat(5000)}\r\n`),
      Buffer.from('last line without CRLF'),
    ]);
    await withSink({}, async (sink, agent) => {
      const job = makeJob({ nexthop: sink.nexthop, recipients: ['bob@example.com', 'carol@example.com'], message: bytes, envelope: { bodyType: '8BITMIME' } });
      const out = await agent.deliver(job);
      assert.equal(out.length, 2);
      for (const o of out) {
        assert.equal(o.kind, 'delivered');
        assert.equal(o.relay, relayOf(sink));
        assert.equal(o.kind === 'delivered' && o.reply, '250 2.0.0 Ok: queued as SINK1');
        assert.deepEqual(o.dsn, { status: '2.0.0', diagnostic: '250 2.0.0 Ok: queued as SINK1', remoteMta: 'dns; 127.0.0.1' });
      }
      assert.equal(sink.messages.length, 1);
      const m = sink.messages[0]!;
      // The final CRLF is the one SMTP needs before ".": the server keeps it.
      assert.deepEqual(m.raw, Buffer.concat([bytes, Buffer.from('\r\n')]));
      assert.equal(m.ehlo, HELO);
      assert.equal(m.mailFrom.address, 'alice@example.org');
      assert.equal(m.mailFrom.args.BODY, '8BITMIME');
      assert.deepEqual(
        m.rcptTo.map((r) => r.address),
        ['bob@example.com', 'carol@example.com'],
      );
    });
  });

  it('delivers over IPv6 loopback', async () => {
    await withSink({ host: '::1' }, async (sink, agent) => {
      const [o] = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(o!.kind, 'delivered');
      assert.equal(o!.relay, `::1[::1]:${sink.port}`);
    });
  });

  it('never sends a bare CR or LF: they arrive as CRLF', async () => {
    await withSink({}, async (sink, agent) => {
      const msg = Buffer.from('Subject: bare\r\n\r\nline1\rline2\nline3\r\n.\r..dot after CR\r', 'latin1');
      const out = await agent.deliver(makeJob({ nexthop: sink.nexthop, message: msg }));
      assert.equal(out[0]!.kind, 'delivered');
      assert.equal(sink.messages[0]!.raw.toString('latin1'), 'Subject: bare\r\n\r\nline1\r\nline2\r\nline3\r\n.\r\n..dot after CR\r\n');
    });
  });

});

describe('TLS', () => {
  it('uses STARTTLS when the server offers it (certificate not verified)', async () => {
    await withSink({ tls: true }, async (sink, agent) => {
      const out = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(out[0]!.kind, 'delivered');
      assert.equal(sink.messages[0]!.tls, true);
    });
  });

  it('goes on in plaintext when STARTTLS is not offered', async () => {
    await withSink({ tls: false }, async (sink, agent) => {
      const out = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(out[0]!.kind, 'delivered');
      assert.equal(sink.messages[0]!.tls, false);
    });
  });

  it('never uses TLS with smtp_tls_security_level = none', async () => {
    await withSink(
      { tls: true },
      async (sink, agent) => {
        const out = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
        assert.equal(out[0]!.kind, 'delivered');
        assert.equal(sink.messages[0]!.tls, false);
      },
      { tlsSecurityLevel: 'none' },
    );
  });

  it('retries the host once in plaintext when the handshake fails (may)', async () => {
    await withSink({ tls: 'broken' }, async (sink, agent) => {
      const out = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(out[0]!.kind, 'delivered');
      assert.equal(sink.messages[0]!.tls, false);
      assert.equal(sink.connections, 2);
    });
  });

  it('defers when the handshake fails with encrypt', async () => {
    await withSink(
      { tls: 'broken' },
      async (sink, agent) => {
        const out = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
        assert.deepEqual(brief(out[0]!), { kind: 'deferred', status: '4.7.5', reason: 'Cannot start TLS: handshake failure', relay: relayOf(sink) });
        assert.equal(sink.messages.length, 0);
      },
      { tlsSecurityLevel: 'encrypt' },
    );
  });

  it('defers when encrypt is required and STARTTLS is not offered', async () => {
    await withSink(
      { tls: false },
      async (sink, agent) => {
        const out = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
        assert.deepEqual(brief(out[0]!), {
          kind: 'deferred',
          status: '4.7.4',
          reason: `TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]`,
          relay: relayOf(sink),
        });
      },
      { tlsSecurityLevel: 'encrypt' },
    );
  });

  it('delivers over TLS with encrypt', async () => {
    await withSink(
      { tls: true },
      async (sink, agent) => {
        const out = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
        assert.equal(out[0]!.kind, 'delivered');
        assert.equal(sink.messages[0]!.tls, true);
      },
      { tlsSecurityLevel: 'encrypt' },
    );
  });
});

describe('replies at each stage', () => {
  const H = '127.0.0.1[127.0.0.1]';
  const cases: Array<{ name: string; sink: SinkOptions; want: Array<{ kind: string; status: string; reason?: string }> }> = [
    {
      name: '421 greeting defers',
      sink: { greeting: { code: 421, text: '4.3.2 Service not available' } },
      want: [{ kind: 'deferred', status: '4.3.2', reason: `host ${H} refused to talk to me: 421 4.3.2 Service not available` }],
    },
    {
      name: '554 greeting defers too (smtp_skip_5xx_greeting)',
      sink: { greeting: { code: 554, text: '5.7.1 go away' } },
      want: [{ kind: 'deferred', status: '4.7.1', reason: `host ${H} refused to talk to me: 554 5.7.1 go away` }],
    },
    {
      name: '451 to MAIL FROM defers every recipient',
      sink: { mail: () => ({ code: 451, text: '4.3.0 try again later' }) },
      want: [
        { kind: 'deferred', status: '4.3.0', reason: `host ${H} said: 451 4.3.0 try again later (in reply to MAIL FROM command)` },
        { kind: 'deferred', status: '4.3.0', reason: `host ${H} said: 451 4.3.0 try again later (in reply to MAIL FROM command)` },
      ],
    },
    {
      name: '553 to MAIL FROM bounces every recipient',
      sink: { mail: () => ({ code: 553, text: '5.7.1 sender rejected' }) },
      want: [
        { kind: 'bounced', status: '5.7.1', reason: `host ${H} said: 553 5.7.1 sender rejected (in reply to MAIL FROM command)` },
        { kind: 'bounced', status: '5.7.1', reason: `host ${H} said: 553 5.7.1 sender rejected (in reply to MAIL FROM command)` },
      ],
    },
    {
      name: 'RCPT replies apply per recipient',
      sink: { rcpt: (a) => (a.address.startsWith('bob') ? { code: 550, text: '5.1.1 <bob@example.com>: Recipient address rejected: User unknown' } : undefined) },
      want: [
        { kind: 'bounced', status: '5.1.1', reason: `host ${H} said: 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown (in reply to RCPT TO command)` },
        { kind: 'delivered', status: '2.0.0' },
      ],
    },
    {
      name: 'a RCPT reply without enhanced code gets X.0.0',
      sink: { rcpt: (a) => (a.address.startsWith('carol') ? { code: 450, text: 'mailbox busy' } : undefined) },
      want: [
        { kind: 'delivered', status: '2.0.0' },
        { kind: 'deferred', status: '4.0.0', reason: `host ${H} said: 450 mailbox busy (in reply to RCPT TO command)` },
      ],
    },
    {
      name: 'every recipient refused',
      sink: { rcpt: () => ({ code: 450, text: '4.2.1 slow down' }) },
      want: [
        { kind: 'deferred', status: '4.2.1', reason: `host ${H} said: 450 4.2.1 slow down (in reply to RCPT TO command)` },
        { kind: 'deferred', status: '4.2.1', reason: `host ${H} said: 450 4.2.1 slow down (in reply to RCPT TO command)` },
      ],
    },
    {
      name: '451 to the end of data defers the accepted recipients',
      sink: { data: () => ({ code: 451, text: '4.3.0 queue trouble' }) },
      want: [
        { kind: 'deferred', status: '4.3.0', reason: `host ${H} said: 451 4.3.0 queue trouble (in reply to end of DATA command)` },
        { kind: 'deferred', status: '4.3.0', reason: `host ${H} said: 451 4.3.0 queue trouble (in reply to end of DATA command)` },
      ],
    },
    {
      name: '554 to the end of data bounces, a refused RCPT keeps its own reply',
      sink: {
        rcpt: (a) => (a.address.startsWith('bob') ? { code: 550, text: '5.1.1 no such user' } : undefined),
        data: () => ({ code: 554, text: '5.7.1 spam' }),
      },
      want: [
        { kind: 'bounced', status: '5.1.1', reason: `host ${H} said: 550 5.1.1 no such user (in reply to RCPT TO command)` },
        { kind: 'bounced', status: '5.7.1', reason: `host ${H} said: 554 5.7.1 spam (in reply to end of DATA command)` },
      ],
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      await withSink(c.sink, async (sink, agent) => {
        const out = await agent.deliver(makeJob({ nexthop: sink.nexthop, recipients: c.want.length === 1 ? ['bob@example.com'] : ['bob@example.com', 'carol@example.com'] }));
        assert.deepEqual(
          out.map((o) => {
            const b = brief(o);
            return b.kind === 'delivered' ? { kind: b.kind, status: b.status } : { kind: b.kind, status: b.status, reason: b.reason };
          }),
          c.want,
        );
        for (const o of out) {
          assert.equal(o.relay, relayOf(sink));
          assert.equal(o.dsn.remoteMta, 'dns; 127.0.0.1');
        }
      });
    });
  }

  it('keeps the remote reply as the DSN diagnostic', async () => {
    await withSink({ rcpt: () => ({ code: 550, text: '5.1.1 no such user' }) }, async (sink, agent) => {
      const [o] = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.deepEqual(o!.dsn, { status: '5.1.1', diagnostic: '550 5.1.1 no such user', remoteMta: 'dns; 127.0.0.1' });
    });
  });
});

describe('replies from a scripted server', () => {
  const agentFor = () => makeAgent({ connectionCacheTimeLimitMs: 0 });

  it('applies a refused DATA command to the accepted recipients only', async () => {
    const srv = await scripted((cmd) => (cmd === 'DATA' ? '554 5.5.1 Error: no valid recipients' : cmd.startsWith('RCPT TO:<carol') ? '550 5.1.1 unknown' : undefined));
    const agent = agentFor();
    try {
      const out = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}`, recipients: ['bob@example.com', 'carol@example.com'] }));
      assert.deepEqual(out.map(brief), [
        { kind: 'bounced', status: '5.5.1', reason: 'host 127.0.0.1[127.0.0.1] said: 554 5.5.1 Error: no valid recipients (in reply to DATA command)', relay: `127.0.0.1[127.0.0.1]:${srv.port}` },
        { kind: 'bounced', status: '5.1.1', reason: 'host 127.0.0.1[127.0.0.1] said: 550 5.1.1 unknown (in reply to RCPT TO command)', relay: `127.0.0.1[127.0.0.1]:${srv.port}` },
      ]);
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('joins a multi-line reply into one line', async () => {
    const srv = await scripted((cmd) => (cmd.startsWith('RCPT') ? '550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please try again.' : undefined));
    const agent = agentFor();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      assert.equal(
        o!.kind === 'bounced' && o!.reason,
        'host 127.0.0.1[127.0.0.1] said: 550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 Please try again. (in reply to RCPT TO command)',
      );
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('defers on a lost connection, naming the stage', async () => {
    const srv = await scripted((cmd) => (cmd.startsWith('RCPT') ? 'CLOSE' : undefined));
    const agent = agentFor();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      assert.deepEqual(brief(o!), { kind: 'deferred', status: '4.4.2', reason: 'lost connection with 127.0.0.1[127.0.0.1] while sending MAIL FROM', relay: `127.0.0.1[127.0.0.1]:${srv.port}` });
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('defers on a lost connection after the message was sent', async () => {
    const srv = await scripted((cmd) => (cmd === '.' ? 'CLOSE' : undefined));
    const agent = agentFor();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      assert.deepEqual(brief(o!), {
        kind: 'deferred',
        status: '4.4.2',
        reason: 'lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- message may be sent more than once',
        relay: `127.0.0.1[127.0.0.1]:${srv.port}`,
      });
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('writes MAIL FROM and RCPT TO exactly: null sender, quoting, xtext, per-recipient DSN', async () => {
    const srv = await scripted((cmd) => (cmd.startsWith('EHLO') ? '250-fake.test\r\n250-DSN\r\n250-SIZE 100000\r\n250-8BITMIME\r\n250 SMTPUTF8' : undefined));
    const agent = agentFor();
    try {
      const job = makeJob({
        nexthop: `[127.0.0.1]:${srv.port}`,
        recipients: [
          { address: 'john smith@example.com', notify: ['SUCCESS', 'FAILURE'] },
          { address: 'carol@example.com', notify: ['NEVER'], orcpt: 'rfc822;carol+x@example.com' },
        ],
        envelope: { sender: '', envid: 'QQ 123=', ret: 'HDRS', bodyType: '8BITMIME', smtputf8: true },
      });
      const out = await agent.deliver(job);
      assert.deepEqual(
        out.map((o) => o.kind),
        ['delivered', 'delivered'],
      );
      assert.deepEqual(srv.commands.slice(1, 4), [
        `MAIL FROM:<> SIZE=${job.message.length} BODY=8BITMIME ENVID=QQ+20123+3D RET=HDRS SMTPUTF8`,
        'RCPT TO:<"john smith"@example.com> ORCPT=rfc822;"john+20smith"@example.com NOTIFY=SUCCESS,FAILURE',
        'RCPT TO:<carol@example.com> ORCPT=rfc822;carol+2Bx@example.com NOTIFY=NEVER',
      ]);
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('retries in plaintext when STARTTLS is refused (may)', async () => {
    const srv = await scripted((cmd) => (cmd.startsWith('EHLO') ? '250-fake.test\r\n250 STARTTLS' : cmd === 'STARTTLS' ? '454 4.7.0 TLS not available due to local problem' : undefined));
    const agent = agentFor();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      assert.equal(o!.kind, 'delivered');
      // The refused connection is dropped; the second one never tries STARTTLS.
      assert.deepEqual(
        srv.commands.slice(0, 7).map((c) => c.split(/[ :]/, 1)[0]),
        ['EHLO', 'STARTTLS', 'EHLO', 'MAIL', 'RCPT', 'DATA', '.'],
      );
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('defers when STARTTLS is refused with encrypt', async () => {
    const srv = await scripted((cmd) => (cmd.startsWith('EHLO') ? '250-fake.test\r\n250 STARTTLS' : cmd === 'STARTTLS' ? '454 4.7.0 TLS not available due to local problem' : undefined));
    const agent = makeAgent({ tlsSecurityLevel: 'encrypt' });
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      assert.deepEqual(brief(o!), {
        kind: 'deferred',
        status: '4.7.0',
        reason: 'TLS is required, but host 127.0.0.1[127.0.0.1] refused to start TLS: 454 4.7.0 TLS not available due to local problem',
        relay: `127.0.0.1[127.0.0.1]:${srv.port}`,
      });
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('never writes an address with a control character', async () => {
    const srv = await scripted(() => undefined);
    const agent = agentFor();
    try {
      const out = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}`, recipients: ['evil@example.com>\r\nRSET', 'bob@example.com'] }));
      assert.deepEqual(brief(out[0]!), { kind: 'bounced', status: '5.1.3', reason: 'bad recipient address syntax: <evil@example.com>??RSET>', relay: 'none' });
      assert.equal(out[1]!.kind, 'delivered');
      assert.ok(!srv.commands.some((c) => c.includes('evil')));
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('falls back to HELO when EHLO is refused', async () => {
    const srv = await scripted((cmd) => (cmd.startsWith('EHLO') ? '502 5.5.2 no EHLO here' : undefined));
    const agent = agentFor();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}`, envelope: { bodyType: '8BITMIME' } }));
      assert.equal(o!.kind, 'delivered');
      assert.ok(srv.commands.includes(`HELO ${HELO}`));
      assert.ok(srv.commands.includes('MAIL FROM:<alice@example.org>'), srv.commands.join('|'));
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('times out a server that never greets (smtp_helo_timeout)', async () => {
    const srv = await scripted(() => undefined, null);
    const agent = makeAgent({ heloTimeoutMs: 300 });
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      assert.deepEqual(brief(o!), {
        kind: 'deferred',
        status: '4.4.2',
        reason: 'conversation with 127.0.0.1[127.0.0.1] timed out while receiving the initial server greeting',
        relay: `127.0.0.1[127.0.0.1]:${srv.port}`,
      });
    } finally {
      await agent.close();
      await srv.close();
    }
  });

  it('times out a server that never answers the end of data (smtp_data_done_timeout)', async () => {
    const srv = await scripted((cmd) => (cmd === '.' ? 'SILENT' : undefined));
    const agent = makeAgent({ dataDoneTimeoutMs: 300 });
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      assert.equal(o!.kind, 'deferred');
      assert.equal(o!.kind === 'deferred' && o!.reason, 'conversation with 127.0.0.1[127.0.0.1] timed out while sending end of data -- message may be sent more than once');
    } finally {
      await agent.close();
      await srv.close();
    }
  });
});

describe('connection failures', () => {
  it('defers with Postfix text when the connection is refused', async () => {
    const port = await closedPort();
    const agent = makeAgent();
    try {
      const out = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${port}`, recipients: ['a@example.com', 'b@example.com'] }));
      for (const o of out) {
        assert.deepEqual(brief(o), { kind: 'deferred', status: '4.4.1', reason: `connect to 127.0.0.1[127.0.0.1]:${port}: Connection refused`, relay: 'none' });
        assert.equal(o.dsn.remoteMta, undefined);
      }
    } finally {
      await agent.close();
    }
  });

  it('sink down: deferred; sink back on the same port: delivered', async () => {
    const sink = await SmtpSink.start();
    const agent = makeAgent();
    try {
      await sink.stop();
      const [first] = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(first!.kind, 'deferred');
      assert.equal(first!.kind === 'deferred' && first!.reason, `connect to ${relayOf(sink)}: Connection refused`);
      await sink.start();
      const [second] = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(second!.kind, 'delivered');
      assert.equal(sink.messages.length, 1);
    } finally {
      await agent.close();
      await sink.stop();
    }
  });
});

describe('MX routing', () => {
  let dnsServer: TestDnsServer;
  let primary: SmtpSink;
  let backup: SmtpSink;
  let port: number;

  before(async () => {
    backup = await SmtpSink.start({ host: '127.0.0.3' });
    port = backup.port;
    primary = await SmtpSink.start({ host: '127.0.0.2', port });
    dnsServer = await TestDnsServer.start({
      'two.test': {
        MX: [
          { exchange: 'mx2.two.test', priority: 20 },
          { exchange: 'mx1.two.test', priority: 10 },
        ],
      },
      'mx1.two.test': { A: ['127.0.0.2'] },
      'mx2.two.test': { A: ['127.0.0.3'] },
      'implicit.test': { A: ['127.0.0.3'] },
      'nullmx.test': { MX: [{ exchange: '', priority: 0 }] },
      'self.test': { MX: [{ exchange: 'mx1.two.test', priority: 10 }] },
    });
  });

  after(async () => {
    await primary.stop();
    await backup.stop();
    await dnsServer.close();
  });

  const agentWithDns = (over: Partial<SmtpAgentOptions> = {}) => makeAgent({ dns: createDnsClientFromOptions({ servers: [dnsServer.address], timeoutMs: 1000 }), connectionCacheTimeLimitMs: 0, ...over });

  it('delivers to the most preferred MX', async () => {
    const agent = agentWithDns();
    const before = primary.messages.length;
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `two.test:${port}` }));
      assert.equal(o!.relay, `mx1.two.test[127.0.0.2]:${port}`);
      assert.equal(o!.dsn.remoteMta, 'dns; mx1.two.test');
      assert.equal(primary.messages.length, before + 1);
    } finally {
      await agent.close();
    }
  });

  it('falls back to the next MX when the first refuses connections', async () => {
    const agent = agentWithDns();
    await primary.stop();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `two.test:${port}` }));
      assert.equal(o!.kind, 'delivered');
      assert.equal(o!.relay, `mx2.two.test[127.0.0.3]:${port}`);
    } finally {
      await agent.close();
      await primary.start();
    }
  });

  it('falls back to the next MX after a 4xx greeting, and a 4xx recipient too', async () => {
    const busy = await SmtpSink.start({ host: '127.0.0.4', greeting: { code: 421, text: '4.7.0 busy' } });
    const picky = await SmtpSink.start({ host: '127.0.0.5', port: busy.port, rcpt: (a) => (a.address.startsWith('carol') ? { code: 451, text: '4.3.0 later' } : undefined) });
    const last = await SmtpSink.start({ host: '127.0.0.6', port: busy.port });
    dnsServer.set('three.test', {
      MX: [
        { exchange: 'busy.three.test', priority: 10 },
        { exchange: 'picky.three.test', priority: 20 },
        { exchange: 'last.three.test', priority: 30 },
      ],
    });
    dnsServer.set('busy.three.test', { A: ['127.0.0.4'] });
    dnsServer.set('picky.three.test', { A: ['127.0.0.5'] });
    dnsServer.set('last.three.test', { A: ['127.0.0.6'] });
    const agent = agentWithDns({ mxSessionLimit: 3 });
    try {
      const out = await agent.deliver(makeJob({ nexthop: `three.test:${busy.port}`, recipients: ['bob@example.com', 'carol@example.com'] }));
      assert.deepEqual(
        out.map((o) => [o.kind, o.relay]),
        [
          ['delivered', `picky.three.test[127.0.0.5]:${busy.port}`],
          ['delivered', `last.three.test[127.0.0.6]:${busy.port}`],
        ],
      );
      assert.deepEqual(
        last.messages.map((m) => m.rcptTo.map((r) => r.address)),
        [['carol@example.com']],
      );
    } finally {
      await agent.close();
      await busy.stop();
      await picky.stop();
      await last.stop();
    }
  });

  it('defers with the last reason when every MX fails', async () => {
    const agent = agentWithDns();
    await primary.stop();
    await backup.stop();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `two.test:${port}` }));
      assert.deepEqual(brief(o!), { kind: 'deferred', status: '4.4.1', reason: `connect to mx2.two.test[127.0.0.3]:${port}: Connection refused`, relay: 'none' });
    } finally {
      await agent.close();
      await primary.start();
      await backup.start();
    }
  });

  it('bounces a null MX domain with 5.1.10', async () => {
    const agent = agentWithDns();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: 'nullmx.test' }));
      assert.deepEqual(brief(o!), { kind: 'bounced', status: '5.1.10', reason: 'Domain nullmx.test does not accept mail (nullMX)', relay: 'none' });
    } finally {
      await agent.close();
    }
  });

  it('delivers to the domain itself without MX records (implicit MX)', async () => {
    const agent = agentWithDns();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `implicit.test:${port}` }));
      assert.equal(o!.kind, 'delivered');
      assert.equal(o!.relay, `implicit.test[127.0.0.3]:${port}`);
    } finally {
      await agent.close();
    }
  });

  it('bounces mail that would loop back to one of our own listeners', async () => {
    const agent = agentWithDns({ isSelf: (ip, p) => ip === '127.0.0.2' && p === port });
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: `self.test:${port}` }));
      assert.deepEqual(brief(o!), { kind: 'bounced', status: '5.4.6', reason: 'mail for self.test loops back to myself', relay: 'none' });
      const [lit] = await agent.deliver(makeJob({ nexthop: `[127.0.0.2]:${port}` }));
      assert.deepEqual(brief(lit!), { kind: 'bounced', status: '5.4.6', reason: 'mail for 127.0.0.2 loops back to myself', relay: 'none' });
      // The same address on another port is just another server.
      const [other] = await agent.deliver(makeJob({ nexthop: `[127.0.0.3]:${port}` }));
      assert.equal(other!.kind, 'delivered');
    } finally {
      await agent.close();
    }
  });

  it('defers when DNS fails temporarily', async () => {
    dnsServer.set('broken.test', { behavior: 'servfail' });
    const agent = agentWithDns();
    try {
      const [o] = await agent.deliver(makeJob({ nexthop: 'broken.test' }));
      assert.deepEqual(brief(o!), {
        kind: 'deferred',
        status: '4.4.3',
        reason: 'Host or domain name not found. Name service error for name=broken.test type=MX: Host not found, try again',
        relay: 'none',
      });
    } finally {
      await agent.close();
    }
  });
});

describe('MAIL FROM and RCPT TO parameters', () => {
  it('passes DSN parameters on, per recipient, when the server offers DSN', async () => {
    await withSink({}, async (sink, agent) => {
      const job = makeJob({
        nexthop: sink.nexthop,
        recipients: [
          { address: 'bob@example.com', originalAddress: 'Bob@Example.com', notify: ['SUCCESS', 'FAILURE'] },
          { address: 'carol@example.com', notify: ['NEVER'], orcpt: 'rfc822;carol+x@example.com' },
        ],
        envelope: { envid: 'QQ 123', ret: 'HDRS' },
      });
      const out = await agent.deliver(job);
      assert.deepEqual(out.map((o) => o.kind), ['delivered', 'delivered']);
      const m = sink.messages[0]!;
      // smtp-server hands the parameters over xtext-decoded.
      assert.equal(m.mailFrom.args.RET, 'HDRS');
      assert.equal(m.mailFrom.args.ENVID, 'QQ 123');
      assert.equal(m.rcptTo[0]!.args.NOTIFY, 'SUCCESS,FAILURE');
      assert.equal(m.rcptTo[0]!.args.ORCPT, 'rfc822;Bob@Example.com');
      assert.equal(m.rcptTo[1]!.args.NOTIFY, 'NEVER');
      assert.equal(m.rcptTo[1]!.args.ORCPT, 'rfc822;carol+x@example.com');
    });
  });

  it('leaves DSN, BODY and SIZE out when the server does not offer them', async () => {
    // SMTPUTF8 hidden too: a server that offers it gets BODY=8BITMIME even without 8BITMIME.
    await withSink({ hide: { dsn: true, eightBitMime: true, smtputf8: true } }, async (sink, agent) => {
      const job = makeJob({ nexthop: sink.nexthop, recipients: [{ address: 'bob@example.com', notify: ['FAILURE'] }], envelope: { envid: 'X', ret: 'FULL', bodyType: '8BITMIME' } });
      const [o] = await agent.deliver(job);
      assert.equal(o!.kind, 'delivered');
      assert.deepEqual(sink.messages[0]!.mailFrom.args, {});
      assert.deepEqual(sink.messages[0]!.rcptTo[0]!.args, {});
    });
  });

  it('announces SIZE and bounces a message larger than the server takes', async () => {
    await withSink({ size: 1000 }, async (sink, agent) => {
      const [small] = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(small!.kind, 'delivered');
      assert.equal(sink.messages[0]!.mailFrom.args.SIZE, String(Buffer.byteLength(BODY)));
      const big = `Subject: big\r\n\r\n${'y'.repeat(2000)}\r\n`;
      const [o] = await agent.deliver(makeJob({ nexthop: sink.nexthop, message: big }));
      assert.deepEqual(brief(o!), {
        kind: 'bounced',
        status: '5.3.4',
        reason: `message size ${big.length} exceeds size limit 1000 of server 127.0.0.1[127.0.0.1]`,
        relay: relayOf(sink),
      });
    });
  });

  it('sends SMTPUTF8 when the sender asked for it and the server offers it', async () => {
    await withSink({}, async (sink, agent) => {
      const [o] = await agent.deliver(makeJob({ nexthop: sink.nexthop, recipients: ['jörg@example.com'], envelope: { smtputf8: true } }));
      assert.equal(o!.kind, 'delivered');
      assert.equal(sink.messages[0]!.mailFrom.args.SMTPUTF8, true);
      assert.equal(sink.messages[0]!.rcptTo[0]!.address, 'jörg@example.com');
    });
  });

  it('bounces 5.6.7 when SMTPUTF8 is required but not offered', async () => {
    await withSink({ hide: { smtputf8: true } }, async (sink, agent) => {
      const [o] = await agent.deliver(makeJob({ nexthop: sink.nexthop, recipients: ['jörg@example.com'], envelope: { smtputf8: true } }));
      assert.deepEqual(brief(o!), { kind: 'bounced', status: '5.6.7', reason: 'SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]', relay: relayOf(sink) });
      assert.equal(sink.messages.length, 0);
    });
  });

  it('bounces 5.6.7 for UTF-8 headers, but delivers an all-ASCII message that merely asked', async () => {
    await withSink({ hide: { smtputf8: true } }, async (sink, agent) => {
      const utf8Headers = 'Subject: Grüße\r\n\r\nbody\r\n';
      const [o] = await agent.deliver(makeJob({ nexthop: sink.nexthop, message: utf8Headers, envelope: { smtputf8: true } }));
      assert.equal(o!.kind === 'bounced' && o!.dsn.status, '5.6.7');
      const [plain] = await agent.deliver(makeJob({ nexthop: sink.nexthop, envelope: { smtputf8: true } }));
      assert.equal(plain!.kind, 'delivered');
      assert.equal(sink.messages[0]!.mailFrom.args.SMTPUTF8, undefined);
    });
  });
});

describe('connection reuse', () => {
  it('delivers two jobs over one connection, RSET in between', async () => {
    const srv = await scripted(() => undefined);
    const agent = makeAgent();
    try {
      const a = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      const b = await agent.deliver(makeJob({ nexthop: `[127.0.0.1]:${srv.port}` }));
      assert.deepEqual([a[0]!.kind, b[0]!.kind], ['delivered', 'delivered']);
      const verbs = srv.commands.map((c) => c.split(/[ :]/, 1)[0]);
      assert.deepEqual(verbs, ['EHLO', 'MAIL', 'RCPT', 'DATA', '.', 'RSET', 'MAIL', 'RCPT', 'DATA', '.']);
    } finally {
      await agent.close();
      await srv.close();
    }
    assert.equal(srv.commands.at(-1), 'QUIT');
  });

  it('uses one connection for two jobs to the same sink', async () => {
    await withSink({}, async (sink, agent) => {
      for (let i = 0; i < 2; i++) assert.equal((await agent.deliver(makeJob({ nexthop: sink.nexthop })))[0]!.kind, 'delivered');
      assert.equal(sink.connections, 1);
      assert.deepEqual(
        sink.messages.map((m) => m.connection),
        [1, 1],
      );
    });
  });

  it('opens a new connection after smtp_connection_reuse_count_limit messages', async () => {
    await withSink(
      {},
      async (sink, agent) => {
        for (let i = 0; i < 3; i++) assert.equal((await agent.deliver(makeJob({ nexthop: sink.nexthop })))[0]!.kind, 'delivered');
        assert.deepEqual(
          sink.messages.map((m) => m.connection),
          [1, 1, 2],
        );
      },
      { connectionReuseCountLimit: 2 },
    );
  });

  it('closes idle connections after smtp_connection_cache_time_limit', async () => {
    await withSink(
      {},
      async (sink, agent) => {
        await agent.deliver(makeJob({ nexthop: sink.nexthop }));
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(sink.active, 0);
        await agent.deliver(makeJob({ nexthop: sink.nexthop }));
        assert.equal(sink.connections, 2);
      },
      { connectionCacheTimeLimitMs: 100 },
    );
  });

  it('discards a broken cached connection and delivers on a fresh one', async () => {
    await withSink({}, async (sink, agent) => {
      await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      // The server goes away and comes back: the cached connection is dead.
      await sink.stop();
      await sink.start();
      const [o] = await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(o!.kind, 'delivered');
      assert.equal(sink.messages.length, 2);
      assert.equal(sink.connections, 2);
    });
  });

  it('closes cached connections on close()', async () => {
    const sink = await SmtpSink.start();
    const agent = makeAgent({ connectionCacheTimeLimitMs: 60_000 });
    try {
      await agent.deliver(makeJob({ nexthop: sink.nexthop }));
      assert.equal(sink.active, 1);
      await agent.close();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(sink.active, 0);
    } finally {
      await agent.close();
      await sink.stop();
    }
  });
});

describe('per-destination concurrency', () => {
  it('runs at most default_destination_concurrency_limit deliveries per next hop', async () => {
    let inData = 0;
    let maxInData = 0;
    await withSink(
      {
        data: async () => {
          inData++;
          maxInData = Math.max(maxInData, inData);
          await new Promise((r) => setTimeout(r, 150));
          inData--;
          return undefined;
        },
      },
      async (sink, agent) => {
        const jobs = Array.from({ length: 5 }, () => makeJob({ nexthop: sink.nexthop }));
        const out = await Promise.all(jobs.map((j) => agent.deliver(j)));
        assert.deepEqual(
          out.map((o) => o[0]!.kind),
          ['delivered', 'delivered', 'delivered', 'delivered', 'delivered'],
        );
        assert.equal(maxInData, 2);
        assert.ok(sink.maxActive <= 2, `at most 2 connections, saw ${sink.maxActive}`);
      },
      { destinationConcurrencyLimit: 2 },
    );
  });

  it('hands slots out in FIFO order', async () => {
    const limiter = new DestinationLimiter(1);
    const order: number[] = [];
    const first = await limiter.acquire('d');
    const waiting = [1, 2, 3].map(async (n) => {
      const release = await limiter.acquire('d');
      order.push(n);
      await new Promise((r) => setTimeout(r, 5));
      release();
    });
    // Another destination is not held up.
    const other = await limiter.acquire('e');
    other();
    first();
    await Promise.all(waiting);
    assert.deepEqual(order, [1, 2, 3]);
  });
});

describe('smtpAgentOptions', () => {
  it('reads the smtp_* parameters, with Postfix defaults', () => {
    const cfg = configFromText('/nonexistent', '/nonexistent/main.cf', 'myhostname = mx.example.test\nsmtp_connect_timeout = 10s\nsmtp_tls_security_level = encrypt\n');
    const dns = offlineDnsClient();
    const o = smtpAgentOptions(cfg, { dns });
    assert.equal(o.heloName, 'mx.example.test');
    assert.equal(o.tlsSecurityLevel, 'encrypt');
    assert.equal(o.connectTimeoutMs, 10_000);
    assert.equal(o.heloTimeoutMs, 300_000);
    assert.equal(o.dataDoneTimeoutMs, 600_000);
    assert.equal(o.connectionCacheTimeLimitMs, 2000);
    assert.equal(o.connectionReuseCountLimit, 0);
    assert.equal(o.destinationConcurrencyLimit, 20);
    assert.equal(o.dns, dns);
    assert.equal(o.isSelf('127.0.0.1', 25), false);
  });
});
