/**
 * check_policy_service against a tiny policy server on 127.0.0.1 port 0: the request
 * attributes, the action parsed as an access(5) result, connection reuse, and the
 * default action when the server times out, is down, or answers without an action.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { openTable } from '../../src/tables/open.js';
import { compilePolicy } from '../../src/restrictions/policy.js';
import { createPolicyClient, parseEndpoint } from '../../src/restrictions/policy-client.js';
import { newEffects, type SessionState } from '../../src/restrictions/state.js';
import { offlineDnsClient, type DnsClient } from '../../src/dns/resolver.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'restrictions');

interface Seen {
  attrs: Map<string, string>;
}

let server: Server;
let port: number;
const requests: Seen[] = [];
let connections = 0;
/** What the server answers, by recipient. */
function answerFor(attrs: Map<string, string>): string | null {
  const rcpt = attrs.get('recipient') ?? '';
  if (rcpt.startsWith('slow@')) return null;
  if (rcpt.startsWith('noaction@')) return 'result=whatever';
  if (rcpt.startsWith('grey@')) return 'action=DEFER_IF_PERMIT Greylisted, see RFC 6647';
  if (rcpt.startsWith('reject@')) return 'action=550 5.7.1 No thanks';
  if (rcpt.startsWith('prepend@')) return 'action=PREPEND X-Greylist: delayed 1 seconds';
  if (rcpt.startsWith('relay@')) return 'action=reject_unauth_destination';
  return 'action=DUNNO';
}

function serve(sock: Socket): void {
  connections++;
  let buf = '';
  sock.on('data', (chunk) => {
    buf += chunk.toString();
    for (;;) {
      const end = buf.indexOf('\n\n');
      if (end < 0) break;
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const attrs = new Map<string, string>();
      for (const l of block.split('\n')) {
        const eq = l.indexOf('=');
        attrs.set(l.slice(0, eq), l.slice(eq + 1));
      }
      requests.push({ attrs });
      const a = answerFor(attrs);
      if (a !== null) sock.write(`${a}\n\n`);
    }
  });
}

const noDns = offlineDnsClient('test');

before(async () => {
  server = createServer(serve);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function session(recipient: string): SessionState {
  return {
    client: { address: '192.0.2.1', port: 41234, name: 'client.example', reverseName: 'client.example' },
    helo: 'client.example',
    protocol: 'ESMTP',
    sender: 'sender@example.com',
    recipient,
    recipients: [],
    tls: false,
    instance: 'abc.123',
    unauthPipelining: false,
    localPort: 2525,
    service: 'smtpd',
    queueId: '',
  };
}

function policyWith(service: string, extra = '') {
  const text = [
    'myhostname = mx.example.org',
    'mydestination = mx.example.org',
    'mynetworks = 127.0.0.0/8',
    'smtpd_relay_restrictions = reject_unauth_destination',
    `smtpd_recipient_restrictions = check_policy_service ${service}`,
    'smtpd_reject_unlisted_recipient = no',
    extra,
  ].join('\n');
  const config = configFromText(FIXTURES, 'main.cf', text);
  return compilePolicy({ config, openTable: (s) => openTable(s, FIXTURES), dns: noDns, localUsers: { exists: () => true } });
}

describe('check_policy_service', () => {
  it('parses endpoints', () => {
    assert.deepEqual(parseEndpoint('inet:127.0.0.1:9998'), { host: '127.0.0.1', port: 9998 });
    assert.deepEqual(parseEndpoint('inet:[::1]:9998'), { host: '::1', port: 9998 });
    assert.deepEqual(parseEndpoint('unix:/run/policy'), { path: '/run/policy' });
    assert.equal(parseEndpoint('inet:host'), null);
  });

  it('sends the Postfix attributes and applies the action', async () => {
    const { policy, problems } = policyWith(`inet:127.0.0.1:${port}`);
    assert.deepEqual(problems, []);
    requests.length = 0;
    const fx = newEffects();
    const d = await policy.checkRcpt(session('grey@mx.example.org'), fx);
    assert.equal(d.kind, 'defer');
    assert.equal(d.kind !== 'permit' && `${d.reply.code} ${d.reply.status} ${d.reply.text}`, '450 4.7.1 <grey@mx.example.org>: Recipient address rejected: Greylisted, see RFC 6647');
    assert.equal(d.rule, `check_policy_service inet:127.0.0.1:${port}`);
    const a = requests[0]!.attrs;
    assert.equal(a.get('request'), 'smtpd_access_policy');
    assert.equal(a.get('protocol_state'), 'RCPT');
    assert.equal(a.get('protocol_name'), 'ESMTP');
    assert.equal(a.get('client_address'), '192.0.2.1');
    assert.equal(a.get('client_name'), 'client.example');
    assert.equal(a.get('client_port'), '41234');
    assert.equal(a.get('helo_name'), 'client.example');
    assert.equal(a.get('sender'), 'sender@example.com');
    assert.equal(a.get('recipient'), 'grey@mx.example.org');
    assert.equal(a.get('recipient_count'), '0');
    assert.equal(a.get('instance'), 'abc.123');
    assert.equal(a.get('server_port'), '2525');
    assert.equal([...a.keys()][0], 'request');

    const r = await policy.checkRcpt(session('reject@mx.example.org'), fx);
    assert.equal(r.kind !== 'permit' && `${r.reply.code} ${r.reply.status} ${r.reply.text}`, '550 5.7.1 <reject@mx.example.org>: Recipient address rejected: No thanks');
    const p = await policy.checkRcpt(session('prepend@mx.example.org'), fx);
    assert.equal(p.kind, 'permit');
    assert.deepEqual(fx.prepend.map((x) => x.header), ['X-Greylist: delayed 1 seconds']);
    const relay = await policy.checkRcpt(session('relay@elsewhere.example'), fx);
    assert.equal(relay.kind, 'reject');
    const ok = await policy.checkRcpt(session('plain@mx.example.org'), fx);
    assert.equal(ok.kind, 'permit');
    policy.close();
  });

  it('reuses one connection for several requests', async () => {
    const { policy } = policyWith(`inet:127.0.0.1:${port}`);
    const before = connections;
    for (let i = 0; i < 5; i++) await policy.checkRcpt(session(`user${i}@mx.example.org`), newEffects());
    assert.equal(connections - before, 1);
    policy.close();
  });

  it('answers the default action when the server times out', async () => {
    const { policy } = policyWith(`inet:127.0.0.1:${port}`, 'smtpd_policy_service_timeout = 1s');
    const fx = newEffects();
    const t0 = Date.now();
    const d = await policy.checkRcpt(session('slow@mx.example.org'), fx);
    assert.ok(Date.now() - t0 < 3000);
    assert.equal(d.kind !== 'permit' && `${d.reply.code} ${d.reply.status} ${d.reply.text}`, '451 4.3.5 <slow@mx.example.org>: Recipient address rejected: Server configuration problem');
    assert.ok(fx.notes.some((n) => n.text.includes('timeout')));
    policy.close();
  });

  it('answers the default action when the server is down or answers no action', async () => {
    const down = createServer();
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    const downPort = (down.address() as { port: number }).port;
    await new Promise<void>((resolve) => down.close(() => resolve()));
    const { policy } = policyWith(`inet:127.0.0.1:${downPort}`);
    const d = await policy.checkRcpt(session('x@mx.example.org'), newEffects());
    assert.equal(d.kind, 'defer');
    policy.close();

    const { policy: p2 } = policyWith(`{ inet:127.0.0.1:${port}, timeout=2s, default_action=DUNNO }`);
    const d2 = await p2.checkRcpt(session('noaction@mx.example.org'), newEffects());
    assert.equal(d2.kind, 'permit');
    p2.close();
  });

  it('uses the per-service default action', async () => {
    const { policy, problems } = policyWith(`{ inet:127.0.0.1:${port}, timeout=1s, default_action=450 4.7.1 Policy service down }`);
    assert.deepEqual(problems, []);
    const d = await policy.checkRcpt(session('slow@mx.example.org'), newEffects());
    assert.equal(d.kind !== 'permit' && d.reply.text, '<slow@mx.example.org>: Recipient address rejected: Policy service down');
    policy.close();
  });

  it('reports a bad server as a problem', () => {
    const { problems } = policyWith('inet:nohost');
    assert.ok(problems.some((p) => p.severity === 'error' && p.message.includes('check_policy_service')), JSON.stringify(problems));
  });

  it('works as a standalone client', async () => {
    const c = createPolicyClient(`inet:127.0.0.1:${port}`);
    const r = await c.request([['request', 'smtpd_access_policy'], ['recipient', 'reject@x']], 2000);
    assert.deepEqual(r, { ok: true, action: '550 5.7.1 No thanks' });
    c.close();
  });
});
