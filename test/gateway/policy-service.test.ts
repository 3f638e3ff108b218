/**
 * The policy service inside the running gateway (policy_service_port): postgrey-compatible
 * answers from the gateway's own greylist, over the Postfix policy delegation protocol.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startGateway, freePort } from '../helpers/gateway.js';

function ask(port: number, attrs: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      buf += d;
      if (buf.endsWith('\n\n')) {
        s.end();
        resolve(buf.trim());
      }
    });
    s.on('error', reject);
    s.write(Object.entries(attrs).map(([k, v]) => `${k}=${v}\n`).join('') + '\n');
  });
}

const REQ = {
  request: 'smtpd_access_policy',
  protocol_state: 'RCPT',
  protocol_name: 'ESMTP',
  client_address: '198.51.100.44',
  client_name: 'unknown',
  reverse_client_name: 'unknown',
  helo_name: 'sender.example',
  sender: 'news@sender.example',
  recipient: 'user@protected.example',
  recipient_count: '0',
  instance: '1a2b.3c4d',
};

test('policy_service_port answers DEFER_IF_PERMIT, then PREPEND X-Greylist after the delay, then DUNNO', async () => {
  const port = await freePort();
  const gw = await startGateway({ params: { policy_service_port: String(port), greylist_delay: '1s' } });
  try {
    assert.equal(await ask(port, REQ), 'action=DEFER_IF_PERMIT 4.2.0 Greylisted, see RFC 6647');
    await new Promise((r) => setTimeout(r, 1200));
    assert.match(await ask(port, { ...REQ, instance: '5e6f.7a8b' }), /^action=PREPEND X-Greylist: delayed \d+ seconds by greygate at mx\.greygate\.test; /);
    assert.equal(await ask(port, { ...REQ, instance: '9c0d.1e2f' }), 'action=DUNNO');
    const rec = await gw.waitLog((l) => l.event === 'greylist' && l.reason === 'new');
    assert.equal(rec.client_ip, '198.51.100.44');
  } finally {
    await gw.stop();
    gw.cleanup();
  }
});
