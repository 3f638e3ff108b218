/**
 * A 250 after DATA means the message survives kill -9 of the gateway.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from '../helpers/gateway.js';
import { SmtpClient } from '../helpers/smtp-client.js';

test('kill -9 right after 250: every acknowledged message is in the queue after restart', async () => {
  const gw = await startGateway();
  try {
    const ids: string[] = [];
    // Several concurrent sessions so that group commit is exercised, then kill at once.
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const c = await SmtpClient.connect(gw.port);
        await c.cmd('EHLO client.example');
        for (let k = 0; k < 3; k++) {
          await c.cmd(`MAIL FROM:<s${i}@example.org>`);
          await c.cmd(`RCPT TO:<r${i}.${k}@relay.test>`);
          const r = await c.data(`Subject: ${i}.${k}\r\n\r\nbody ${i}.${k}\r\n`);
          assert.match(r.raw, /^250 2\.0\.0 Ok: queued as /);
          ids.push(/queued as (\S+)/.exec(r.raw)![1]!);
        }
        c.close();
      }),
    );
    await gw.kill9();
    await gw.start();
    const r = await gw.cli(['postqueue', '-j']);
    assert.equal(r.code, 0, r.stderr);
    const listed = new Set(r.stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { queue_id: string }).queue_id));
    for (const id of ids) assert.ok(listed.has(id), `${id} lost after kill -9`);
  } finally {
    await gw.stop();
    gw.cleanup();
  }
});

test('SIGTERM drains: the gateway stops with status 0', async () => {
  const gw = await startGateway();
  try {
    const c = await SmtpClient.connect(gw.port);
    await c.cmd('EHLO client.example');
    c.close();
    assert.equal(await gw.stop(), 0);
    const rec = gw.log().filter((l) => l.event === 'stop');
    assert.ok(rec.length >= 1);
  } finally {
    gw.cleanup();
  }
});

test('a second gateway on the same data_directory refuses to start', async () => {
  const gw = await startGateway();
  try {
    const r = await gw.cli(['start']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is in use by another greygate \(pid \d+\): the mail system is already running/);
    // The first one still works.
    const c = await SmtpClient.connect(gw.port);
    assert.equal((await c.cmd('EHLO client.example')).code, 250);
    c.close();
  } finally {
    await gw.stop();
    gw.cleanup();
  }
});
