/**
 * The per-RCPT path is compiled once and must stay cheap: a typical inbound policy
 * (delay_reject, client and sender access maps, relay control, a recipient map, the implicit
 * unlisted-recipient check) must answer thousands of RCPT checks a second on one core.
 * The bound is deliberately loose (CI machines are shared); the measured rate is printed.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { openTable } from '../../src/tables/open.js';
import { compilePolicy } from '../../src/restrictions/policy.js';
import { newEffects, type SessionState } from '../../src/restrictions/state.js';
import { offlineDnsClient, type DnsClient } from '../../src/dns/resolver.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'restrictions');

const noDns = offlineDnsClient('test');

it('checks thousands of recipients per second', async () => {
  const config = configFromText(
    FIXTURES,
    'main.cf',
    [
      'myhostname = mx.example.org',
      'mydestination = mx.example.org, localhost',
      'relay_domains = relay.example',
      'mynetworks = 127.0.0.0/8 [::1]/128 10.0.0.0/8',
      'recipient_delimiter = +',
      'smtpd_client_restrictions = check_client_access hash:client-access, reject_unauth_pipelining',
      'smtpd_helo_restrictions = reject_invalid_helo_hostname, check_helo_access hash:helo-access',
      'smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access hash:sender-access',
      'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
      'smtpd_recipient_restrictions = reject_non_fqdn_recipient, check_recipient_access hash:recipient-access',
      'local_recipient_maps = hash:aliases',
    ].join('\n'),
  );
  const { policy, problems } = compilePolicy({ config, openTable: (s) => openTable(s, FIXTURES), dns: noDns, localUsers: { exists: (n) => n === 'alice' } });
  assert.deepEqual(problems, []);
  const s: SessionState = {
    client: { address: '203.0.113.9', port: 40000, name: 'mail.sender.example', reverseName: 'mail.sender.example' },
    helo: 'mail.sender.example',
    protocol: 'ESMTP',
    sender: 'someone@sender.example',
    recipients: [],
    tls: false,
    instance: 'x',
    unauthPipelining: false,
    localPort: 25,
    service: 'smtpd',
  };
  const rcpts = ['alice@mx.example.org', 'alice+x@mx.example.org', 'info@mx.example.org', 'user@relay.example', 'user@elsewhere.example', 'nobody@mx.example.org'];
  const n = 18_000;
  let accepted = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    s.recipient = rcpts[i % rcpts.length];
    const d = await policy.checkRcpt(s, newEffects());
    if (d.kind === 'permit') accepted++;
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const rate = Math.round(n / secs);
  console.log(`${rate} RCPT checks/s (${n} checks, ${accepted} accepted)`);
  assert.equal(accepted, (n / rcpts.length) * 4);
  assert.ok(rate > 2000, `only ${rate} RCPT checks/s`);
});
