/**
 * `greygate check`, `greygate postconf` and start-up refusals, run as the real CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, ROOT } from '../helpers/gateway.js';

function confDir(mainCf: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'greygate-cli-'));
  writeFileSync(join(dir, 'main.cf'), mainCf);
  for (const [n, t] of Object.entries(files)) writeFileSync(join(dir, n), t);
  return dir;
}

test('check: the shipped rules/ directory is clean', async () => {
  const r = await runCli(['check'], { cwd: ROOT });
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
});

test('check: every problem as FILE:LINE, warnings do not fail, errors do', async () => {
  const dir = confDir(
    [
      'myhostname = mx.example.com',
      'no_such_parameter = 1',
      'smtpd_delay_reject = sometimes',
      'smtpd_recipient_restrictions = reject_unauth_destination, check_sender_access regexp:bad_rules, frobnicate_client',
    ].join('\n') + '\n',
    { bad_rules: '/^ok$/ OK\n/(?=look)ahead/ REJECT\n/[unclosed/ REJECT\n/fine/ DUNNO\n' },
  );
  try {
    const r = await runCli(['check', '-c', dir]);
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    assert.ok(lines.includes(`${join(dir, 'main.cf')}:2: warning: unknown parameter: no_such_parameter (ignored)`), r.stderr);
    assert.ok(lines.includes(`${join(dir, 'main.cf')}:3: bad value for smtpd_delay_reject: "sometimes": expected yes or no`), r.stderr);
    for (const l of lines) assert.match(l, /^\/.+:\d+: /, `FILE:LINE form: ${l}`);
    assert.ok(!r.stderr.includes('    at '), 'no stack trace');

    const fixed = confDir(
      'myhostname = mx.example.com\nsmtpd_recipient_restrictions = reject_unauth_destination, check_sender_access regexp:bad_rules, frobnicate_client\n',
      { bad_rules: '/^ok$/ OK\n/(?=look)ahead/ REJECT\n/[unclosed/ REJECT\n/fine/ DUNNO\n' },
    );
    const r2 = await runCli(['check', '-c', fixed]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, new RegExp(`${join(fixed, 'bad_rules')}:2: .*lookahead`, 'i'));
    assert.match(r2.stderr, new RegExp(`${join(fixed, 'bad_rules')}:3: `));
    assert.match(r2.stderr, /frobnicate_client/);
    rmSync(fixed, { recursive: true });
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('check: only warnings exit 0', async () => {
  const dir = confDir('myhostname = mx.example.com\nsome_future_param = yes\n');
  try {
    const r = await runCli(['check', '-c', dir]);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /main\.cf:2: warning: unknown parameter: some_future_param/);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('start refuses an open relay, as Postfix does', async () => {
  const dir = confDir('myhostname = mx.example.com\nsmtpd_relay_restrictions = permit_mynetworks\nsmtpd_recipient_restrictions = permit\nsmtpd_port = 0\nsubmission_port = 0\nsmtps_port = 0\n');
  try {
    const r = await runCli(['start', '-c', dir], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /specify at least one working instance of: reject_unauth_destination/);
    assert.ok(!r.stderr.includes('    at '));
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('a missing config directory is one line, exit 1', async () => {
  const r = await runCli(['check', '-c', '/nonexistent/greygate']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /\/nonexistent\/greygate\/main\.cf: cannot read configuration: no such file/);
});

test('unknown command and bad option: usage error, exit 2', async () => {
  const r = await runCli(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^greygate: unknown command: frobnicate/);
  const r2 = await runCli(['postconf', '-z', '-c', 'rules'], { cwd: ROOT });
  assert.equal(r2.code, 2);
});

test('postconf: -n shows main.cf, -d defaults, NAME selects, -c anywhere', async () => {
  const dir = confDir('myhostname = mx.example.com\nrelay_domains = example.com\n  example.net\n');
  try {
    const n = await runCli(['postconf', '-n', '-c', dir]);
    assert.equal(n.stdout, 'myhostname = mx.example.com\nrelay_domains = example.com  example.net\n');
    const d = await runCli(['-c', dir, 'postconf', '-d', 'smtpd_relay_restrictions', 'greylist_delay', 'mydestination']);
    assert.equal(d.stdout, 'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination\ngreylist_delay = 300s\nmydestination = $myhostname, localhost.$mydomain, localhost\n');
    const x = await runCli(['postconf', '-x', 'mydestination', '-c', dir]);
    assert.equal(x.stdout, 'mydestination = mx.example.com, localhost.example.com, localhost\n');
    const h = await runCli(['postconf', '-h', 'mydomain', '-c', dir]);
    assert.equal(h.stdout, 'example.com\n');
    const all = await runCli(['postconf', '-c', dir]);
    assert.match(all.stdout, /^message_size_limit = 10240000$/m);
    assert.match(all.stdout, /^smtpd_banner = \$myhostname ESMTP \$mail_name$/m);
    const bad = await runCli(['postconf', 'no_such_thing', '-c', dir]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'postconf: warning: no_such_thing: unknown parameter\n');
  } finally {
    rmSync(dir, { recursive: true });
  }
});
