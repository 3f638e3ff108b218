/**
 * The DNS list restrictions end to end over SMTP (restrictions/dnsbl.ts through the real
 * gateway), against the loopback test DNS server: reject_rbl_client with a reply filter and
 * the TXT record in Postfix's default_rbl_reply text, rbl_reply_maps, permit_dnswl_client,
 * reject_rhsbl_client/helo/sender, and lists that time out, SERVFAIL or answer
 * 127.255.255.254: the client is served (fail open) and a warning is logged.
 * External clients are simulated with XCLIENT from 127.0.0.1; with smtpd_delay_reject (the
 * default) every list is evaluated at RCPT.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SmtpClient, type SmtpReply } from '../helpers/smtp-client.js';
import { TestDnsServer } from '../fixtures/dns-server.js';

const rev = (ip: string) => ip.split('.').reverse().join('.');

/** XCLIENT as IP (and NAME), EHLO, MAIL, RCPT: the first refusal or the RCPT reply. */
async function attempt(gw: TestGateway, o: { ip: string; name?: string; helo?: string; from?: string; to?: string }): Promise<SmtpReply> {
  const c = await SmtpClient.connect(gw.port);
  try {
    assert.equal((await c.cmd(`XCLIENT ADDR=${o.ip}${o.name ? ` NAME=${o.name}` : ''}`)).code, 220);
    assert.equal((await c.cmd(`EHLO ${o.helo ?? 'client.example'}`)).code, 250);
    const m = await c.cmd(`MAIL FROM:<${o.from ?? 'sender@client.example'}>`);
    if (m.code !== 250) return m;
    return await c.cmd(`RCPT TO:<${o.to ?? 'user@relay.test'}>`);
  } finally {
    c.close();
  }
}

describe('DNS list restrictions over SMTP', () => {
  let dns: TestDnsServer;
  let gw: TestGateway;
  before(async () => {
    dns = await TestDnsServer.start({
      [`${rev('192.0.2.10')}.bl.test`]: { A: ['127.0.0.2'], TXT: ['https://bl.test/lookup?ip=192.0.2.10'] },
      [`${rev('192.0.2.11')}.bl.test`]: { A: ['127.0.0.20'] },
      [`${rev('192.0.2.12')}.rep.test`]: { A: ['127.0.0.2'], TXT: ['spam source'] },
      [`${rev('192.0.2.13')}.wl.test`]: { A: ['127.0.10.1'] },
      [`${rev('192.0.2.13')}.bl.test`]: { A: ['127.0.0.2'] },
      ['host.spammer.example.rhs.test']: { A: ['127.0.0.2'] },
      ['bad.helo.example.rhs.test']: { A: ['127.0.0.2'] },
      ['spam.example.rhs.test']: { A: ['127.0.0.2'] },
      [`${rev('192.0.2.16')}.slow.test`]: { behavior: 'timeout' },
      [`${rev('192.0.2.17')}.bl.test`]: { A: ['127.255.255.254'] },
      [`${rev('192.0.2.18')}.bl.test`]: { behavior: 'servfail' },
    });
    gw = await startGateway({
      params: {
        mynetworks: '127.0.0.1/32',
        dns_resolvers: dns.address,
        dns_timeout: '1s',
        smtpd_client_restrictions:
          'permit_dnswl_client wl.test, reject_rbl_client bl.test=127.0.0.[2..11], reject_rbl_client rep.test, reject_rhsbl_client rhs.test, reject_rbl_client slow.test',
        smtpd_helo_restrictions: 'reject_rhsbl_helo rhs.test',
        smtpd_sender_restrictions: 'reject_rhsbl_sender rhs.test',
        rbl_reply_maps: 'texthash:rbl_reply',
      },
      files: { rbl_reply: 'rep.test   $rbl_code 5.7.1 Custom: [$rbl_what] listed at $rbl_domain${rbl_reason?: $rbl_reason}\n' },
    });
  });
  after(async () => {
    await gw.stop();
    gw.cleanup();
    await dns.close();
  });

  const cases: Array<{ name: string; o: Parameters<typeof attempt>[1]; reply: string; rule?: string }> = [
    {
      name: 'reject_rbl_client: a listed client, with the TXT record in the reply',
      o: { ip: '192.0.2.10' },
      reply: '554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using bl.test; https://bl.test/lookup?ip=192.0.2.10',
      rule: 'reject_rbl_client bl.test=127.0.0.[2..11]',
    },
    { name: 'reject_rbl_client: an answer outside the filter is no listing', o: { ip: '192.0.2.11' }, reply: '250 2.1.5 Ok' },
    { name: 'rbl_reply_maps: the per-list reply', o: { ip: '192.0.2.12' }, reply: '554 5.7.1 Custom: [192.0.2.12] listed at rep.test: spam source', rule: 'reject_rbl_client rep.test' },
    { name: 'permit_dnswl_client: an allow-listed client passes a block list', o: { ip: '192.0.2.13' }, reply: '250 2.1.5 Ok' },
    {
      name: 'permit_dnswl_client never allow-lists relaying',
      o: { ip: '192.0.2.13', to: 'victim@elsewhere.example' },
      reply: '554 5.7.1 Service unavailable; Client host [192.0.2.13] blocked using bl.test',
      rule: 'reject_rbl_client bl.test=127.0.0.[2..11]',
    },
    {
      name: 'reject_rhsbl_client: the verified client name',
      o: { ip: '192.0.2.14', name: 'host.spammer.example' },
      reply: '554 5.7.1 Service unavailable; Client host [host.spammer.example] blocked using rhs.test',
      rule: 'reject_rhsbl_client rhs.test',
    },
    {
      name: 'reject_rhsbl_helo',
      o: { ip: '192.0.2.15', helo: 'bad.helo.example' },
      reply: '554 5.7.1 Service unavailable; Helo command [bad.helo.example] blocked using rhs.test',
      rule: 'reject_rhsbl_helo rhs.test',
    },
    {
      name: 'reject_rhsbl_sender',
      o: { ip: '192.0.2.15', from: 'x@spam.example' },
      reply: '554 5.7.1 Service unavailable; Sender address [x@spam.example] blocked using rhs.test',
      rule: 'reject_rhsbl_sender rhs.test',
    },
    { name: 'reject_rhsbl_sender: a clean sender domain passes', o: { ip: '192.0.2.15', from: 'x@clean.example' }, reply: '250 2.1.5 Ok' },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const r = await attempt(gw, c.o);
      assert.equal(r.raw, c.reply);
      if (c.rule) {
        const rec = await gw.waitLog((l) => l.event === 'reject' && l.client_ip === c.o.ip && l.reply === c.reply);
        assert.equal(rec.rule, c.rule);
        assert.equal(rec.stage, 'rcpt');
        assert.equal(rec.code, 554);
        assert.equal(rec.status, '5.7.1');
      }
    });
  }

  const failures: Array<{ name: string; ip: string; rule: string; text: RegExp }> = [
    { name: 'a list that times out', ip: '192.0.2.16', rule: 'reject_rbl_client slow.test', text: /16\.2\.0\.192\.slow\.test: RBL lookup error: ETIMEOUT/ },
    { name: 'a 127.255.255.254 answer', ip: '192.0.2.17', rule: 'reject_rbl_client bl.test=127.0.0.[2..11]', text: /refused the query: 127\.255\.255\.254/ },
    { name: 'a SERVFAIL', ip: '192.0.2.18', rule: 'reject_rbl_client bl.test=127.0.0.[2..11]', text: /18\.2\.0\.192\.bl\.test: RBL lookup error/ },
  ];
  for (const f of failures) {
    it(`fails open with a logged warning: ${f.name}`, async () => {
      const t0 = Date.now();
      assert.equal((await attempt(gw, { ip: f.ip })).raw, '250 2.1.5 Ok');
      assert.ok(Date.now() - t0 < 8000);
      const w = await gw.waitLog((l) => l.event === 'warn' && l.client_ip === f.ip);
      assert.equal(w.rule, f.rule);
      assert.match(String(w.reply), f.text);
    });
  }
});
