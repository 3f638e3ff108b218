/**
 * @module test/delivery/local
 * SUMMARY: the local delivery agent against a real data directory (users.db, Maildirs),
 * a real aliases(5) file and :include: files, read back with Python's mailbox.Maildir:
 * plain users, recipient_delimiter, aliases with several targets, the full local-part
 * looked up before the bare one, :include: (absolute and relative, comments, commas),
 * missing include files (defer), alias loops and Delivered-To loops (bounce 5.4.6), an alias
 * naming itself, duplicate elimination, |command and /file targets (bounce 5.7.1), removed
 * users (bounce 5.1.1), table, user-database and mailbox failures (defer), the forward
 * callback for remote targets, postmaster without an alias, and concurrent deliveries.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LocalAgent, deliveredToHeaders, splitTargets, type ForwardInput, type LocalAgentOptions } from '../../src/delivery/local.js';
import type { DeliveryJob, RecipientOutcome } from '../../src/delivery/agent.js';
import { MAIL_DIRECTORY, MaildirStore } from '../../src/mailbox/maildir.js';
import { UserStore } from '../../src/mailbox/users.js';
import { buildEnvelope } from '../../src/queue/envelope.js';
import { Maps } from '../../src/tables/maps.js';
import { openTable } from '../../src/tables/open.js';

const run = promisify(execFile);

let dir: string;
let configDir: string;
let dataDir: string;
let users: UserStore;
let mailboxes: MaildirStore;
let aliases: Maps;
const forwarded: ForwardInput[] = [];
const warnings: string[] = [];
let nextForwardId = 0;

const LOCAL_DOMAINS = new Set(['example.com', 'mx.example.com']);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gg-local-'));
  configDir = join(dir, 'rules');
  dataDir = join(dir, 'data');
  await mkdir(configDir);
  await writeFile(join(configDir, 'staff.list'), '# the staff list\nalice\nbob, carol@remote.example\n\n  # indented comment\nalice@example.com\n');
  await writeFile(join(dir, 'abs.list'), 'bob\n');
  await writeFile(join(dir, 'open.list'), 'alice\n');
  await chmod(join(dir, 'open.list'), 0o666);
  await writeFile(
    join(configDir, 'aliases'),
    [
      '# aliases(5)',
      'team: alice, bob,',
      '  carol@remote.example, dave@other.example',
      'root: alice',
      'sales+eu: bob',
      'sales: alice',
      'staff: :include:staff.list',
      'absinc: ":include:' + join(dir, 'abs.list') + '"',
      'missing: :include:' + join(dir, 'no-such.list'),
      'openinc: :include:' + join(dir, 'open.list'),
      'loopa: loopb',
      'loopb: loopa',
      'erin: erin, erin@remote.example',
      'dup: alice, alice@example.com, alice+x, ALICE@MX.EXAMPLE.COM, team',
      'cmd: "|/usr/bin/vacation alice", bob',
      'file: /var/mail/archive',
      'ghost: nobody-here',
      'quoted: "Bob Builder" <bob@example.com>, \\alice',
      'chain1: chain2',
      'chain2: chain3',
      'chain3: bob@mx.example.com',
      '',
    ].join('\n'),
  );
  users = UserStore.open(dataDir);
  for (const u of ['alice', 'bob', 'erin', 'frank', 'grace']) await users.add(u, `${u}-secret`);
  mailboxes = new MaildirStore(dataDir, { hostname: 'mx.example.com' });
  aliases = new Maps('alias_maps', [openTable('texthash:aliases', configDir, { aliases: true })]);
  assert.deepEqual(aliases.problems, []);
});

after(async () => {
  mailboxes.close();
  users.close();
  await rm(dir, { recursive: true, force: true });
});

function agentWith(over: Partial<LocalAgentOptions> = {}): LocalAgent {
  return new LocalAgent({
    users,
    mailboxes,
    aliases,
    recipientDelimiter: '+',
    isLocalDomain: (d) => LOCAL_DOMAINS.has(d),
    forward: async (input) => {
      forwarded.push(input);
      return `FWD${++nextForwardId}`;
    },
    configDir,
    warn: (m) => warnings.push(m),
    ...over,
  });
}

const BODY = 'From: Sender <sender@origin.example>\r\nTo: team@example.com\r\nSubject: %SUBJECT%\r\n\r\nHello there.\r\n';

let jobs = 0;
function job(recipients: Array<string | { address: string; originalAddress: string }>, opts: { subject?: string; headers?: string; sender?: string } = {}): DeliveryJob {
  const queueId = `Q${++jobs}`;
  const message = Buffer.from((opts.headers ?? '') + BODY.replace('%SUBJECT%', opts.subject ?? queueId));
  const envelope = buildEnvelope(
    queueId,
    { sender: opts.sender ?? 'sender@origin.example', recipients, client: { address: '192.0.2.1', name: 'origin.example' }, protocol: 'ESMTP' },
    message.length,
    Date.now(),
  );
  return {
    queueId,
    envelope,
    recipients: envelope.recipients.map((r, index) => ({ index, address: r.address, originalAddress: r.originalAddress })),
    transport: 'local',
    nexthop: 'mx.example.com',
    message,
  };
}

interface PyMessage {
  subject: string;
  returnPath: string | null;
  originalTo: string | null;
  deliveredTo: string[];
  firstHeaders: string[];
  body: string;
}

/** USER's INBOX as Python's mailbox.Maildir reads it. */
async function inbox(user: string): Promise<PyMessage[]> {
  const script = `
import json, mailbox, sys
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
out = []
for key, msg in md.items():
    out.append({"subject": msg["Subject"], "returnPath": msg["Return-Path"], "originalTo": msg["X-Original-To"],
                "deliveredTo": msg.get_all("Delivered-To") or [], "firstHeaders": list(msg.keys())[:3], "body": msg.get_payload()})
print(json.dumps(out))
`;
  const root = join(dataDir, MAIL_DIRECTORY, user);
  try {
    await readdir(root);
  } catch {
    return [];
  }
  const { stdout } = await run('python3', ['-c', script, root]);
  return JSON.parse(stdout) as PyMessage[];
}

async function subjects(user: string, subject: string): Promise<PyMessage[]> {
  return (await inbox(user)).filter((m) => m.subject === subject);
}

function only(outcomes: RecipientOutcome[]): RecipientOutcome {
  assert.equal(outcomes.length, 1);
  return outcomes[0]!;
}

describe('helpers', () => {
  it('splits alias values at commas outside quotes and angle brackets', () => {
    assert.deepEqual(splitTargets('a, "b, c" <b@x>, "|cmd a,b" , :include:/f,'), ['a', '"b, c" <b@x>', '"|cmd a,b"', ':include:/f']);
  });
  it('collects Delivered-To values from the primary header only, folded', () => {
    const m = Buffer.from('Delivered-To: Alice@Example.COM\r\nX: y\r\nDelivered-To:\r\n bob@example.com\r\n\r\nDelivered-To: body@example.com\r\n');
    assert.deepEqual([...deliveredToHeaders(m)], ['alice@example.com', 'bob@example.com']);
  });
});

describe('local delivery', () => {
  it('delivers to a user with Return-Path, X-Original-To and Delivered-To, readable by Python', async () => {
    const j = job([{ address: 'alice@example.com', originalAddress: 'Alice@Example.com' }]);
    const o = only(await agentWith().deliver(j));
    assert.deepEqual(o, { kind: 'delivered', relay: 'local', dsn: { status: '2.0.0', diagnostic: 'delivered to maildir' }, reply: 'delivered to maildir' });
    const [m, ...rest] = await subjects('alice', j.queueId);
    assert.equal(rest.length, 0);
    assert.deepEqual(m!.firstHeaders, ['Return-Path', 'X-Original-To', 'Delivered-To']);
    assert.equal(m!.returnPath, '<sender@origin.example>');
    assert.equal(m!.originalTo, 'Alice@Example.com');
    assert.deepEqual(m!.deliveredTo, ['alice@example.com']);
    assert.equal(m!.body, 'Hello there.\n');
  });

  it('writes Return-Path: <> for the null sender', async () => {
    const j = job(['bob@example.com'], { sender: '' });
    assert.equal(only(await agentWith().deliver(j)).kind, 'delivered');
    assert.equal((await subjects('bob', j.queueId))[0]!.returnPath, '<>');
  });

  it('strips the recipient_delimiter extension to find the user, keeps it in Delivered-To', async () => {
    const j = job(['Alice+Lists@Example.com']);
    assert.equal(only(await agentWith().deliver(j)).kind, 'delivered');
    assert.deepEqual((await subjects('alice', j.queueId))[0]!.deliveredTo, ['alice+lists@example.com']);
  });

  it('expands an alias with several targets: mailboxes, and one forward for the remote ones', async () => {
    forwarded.length = 0;
    const j = job(['team@example.com']);
    const o = only(await agentWith().deliver(j));
    assert.equal(o.kind, 'delivered');
    assert.match((o as { reply: string }).reply, /^delivered to maildir \(alice, bob\); forwarded as FWD\d+$/);
    assert.equal((await subjects('alice', j.queueId)).length, 1);
    const [b] = await subjects('bob', j.queueId);
    assert.deepEqual(b!.deliveredTo, ['team@example.com'], 'Delivered-To names the alias, as with frozen_delivered_to');
    assert.equal(forwarded.length, 1);
    const f = forwarded[0]!;
    assert.deepEqual(f.recipients, ['carol@remote.example', 'dave@other.example']);
    assert.equal(f.sender, 'sender@origin.example');
    assert.equal(f.origin, 'team@example.com');
    assert.ok(f.message.toString().startsWith(`Delivered-To: team@example.com\r\nFrom: Sender`), f.message.toString().slice(0, 80));
  });

  it('looks up the full local-part before the one without its extension', async () => {
    const eu = job(['sales+eu@example.com']);
    const us = job(['sales+us@example.com']);
    const agent = agentWith();
    assert.equal(only(await agent.deliver(eu)).kind, 'delivered');
    assert.equal(only(await agent.deliver(us)).kind, 'delivered');
    assert.equal((await subjects('bob', eu.queueId)).length, 1);
    assert.equal((await subjects('alice', eu.queueId)).length, 0);
    assert.equal((await subjects('alice', us.queueId)).length, 1);
  });

  it('follows chains of aliases across local domains', async () => {
    const j = job(['chain1@example.com']);
    const o = only(await agentWith().deliver(j));
    assert.deepEqual(o.kind === 'delivered' && o.reply, 'delivered to maildir (bob)');
    assert.equal((await subjects('bob', j.queueId)).length, 1);
  });

  it('reads :include: files: relative to the config directory, comments, commas, absolute paths', async () => {
    forwarded.length = 0;
    const j = job(['staff@example.com', 'absinc@example.com']);
    const [staff, absinc] = await agentWith().deliver(j);
    assert.equal(staff!.kind, 'delivered');
    assert.equal(absinc!.kind, 'delivered');
    assert.equal((await subjects('alice', j.queueId)).length, 1, 'alice and alice@example.com are one mailbox');
    assert.equal((await subjects('bob', j.queueId)).length, 2, 'one copy per top-level recipient');
    assert.deepEqual(forwarded.map((f) => f.recipients), [['carol@remote.example']]);
  });

  it('defers when an :include: file is missing, and delivers nothing for that recipient', async () => {
    const j = job(['missing@example.com']);
    const o = only(await agentWith().deliver(j));
    assert.equal(o.kind, 'deferred');
    assert.equal(o.dsn.status, '4.3.0');
    assert.match((o as { reason: string }).reason, /cannot open include file .*no-such\.list: No such file or directory/);
  });

  it('refuses a world-writable :include: file (5.3.5)', async () => {
    const o = only(await agentWith().deliver(job(['openinc@example.com'])));
    assert.equal(o.kind, 'bounced');
    assert.equal(o.dsn.status, '5.3.5');
    assert.match((o as { reason: string }).reason, /world writable/);
  });

  it('bounces an alias loop with 5.4.6', async () => {
    const o = only(await agentWith().deliver(job(['loopa@example.com'])));
    assert.equal(o.kind, 'bounced');
    assert.equal(o.dsn.status, '5.4.6');
    assert.match((o as { reason: string }).reason, /^mail forwarding loop for loop[ab]@example\.com$/);
  });

  it('delivers an alias that names itself to the user, plus its other targets', async () => {
    forwarded.length = 0;
    const j = job(['erin@example.com']);
    const o = only(await agentWith().deliver(j));
    assert.equal(o.kind, 'delivered');
    assert.match((o as { reply: string }).reply, /^delivered to maildir; forwarded as FWD\d+$/);
    assert.equal((await subjects('erin', j.queueId)).length, 1);
    assert.deepEqual(forwarded.map((f) => f.recipients), [['erin@remote.example']]);
  });

  it('eliminates duplicates within one recipient', async () => {
    forwarded.length = 0;
    const j = job(['dup@example.com']);
    assert.equal(only(await agentWith().deliver(j)).kind, 'delivered');
    assert.equal((await subjects('alice', j.queueId)).length, 1);
    assert.equal((await subjects('bob', j.queueId)).length, 1);
    assert.equal(forwarded.length, 1);
  });

  it('bounces a recipient listed in a Delivered-To: header (mail forwarding loop)', async () => {
    const j = job(['alice@example.com'], { headers: 'Delivered-To: ALICE@example.com\r\n' });
    const o = only(await agentWith().deliver(j));
    assert.deepEqual(o, {
      kind: 'bounced',
      relay: 'local',
      dsn: { status: '5.4.6', diagnostic: 'mail forwarding loop for alice@example.com' },
      reason: 'mail forwarding loop for alice@example.com',
    });
    assert.equal((await subjects('alice', j.queueId)).length, 0);
  });

  it('detects the loop at an alias target too', async () => {
    const j = job(['root@example.com'], { headers: 'Delivered-To: alice@example.com\r\n' });
    const o = only(await agentWith().deliver(j));
    assert.equal(o.kind, 'bounced');
    assert.equal((o as { reason: string }).reason, 'mail forwarding loop for alice@example.com');
  });

  it('bounces |command and /file targets with 5.7.1, and still delivers the others', async () => {
    const j = job(['cmd@example.com', 'file@example.com']);
    const [cmd, file] = await agentWith().deliver(j);
    assert.equal(cmd!.kind, 'bounced');
    assert.equal(cmd!.dsn.status, '5.7.1');
    assert.match((cmd as { reason: string }).reason, /mail to command is not supported: "\|\/usr\/bin\/vacation alice" in alias cmd \(aliases:\d+\)/);
    assert.equal((await subjects('bob', j.queueId)).length, 1);
    assert.equal(file!.kind, 'bounced');
    assert.match((file as { reason: string }).reason, /mail to file is not supported: "\/var\/mail\/archive"/);
  });

  it('takes display names, <> and \\user in alias values', async () => {
    const j = job(['quoted@example.com']);
    const o = only(await agentWith().deliver(j));
    assert.deepEqual(o.kind === 'delivered' && o.reply, 'delivered to maildir (bob, alice)');
  });

  it('bounces unknown users (5.1.1), also as alias targets', async () => {
    const [u, g] = await agentWith().deliver(job(['nobody@example.com', 'ghost@example.com']));
    assert.deepEqual(u, { kind: 'bounced', relay: 'local', dsn: { status: '5.1.1', diagnostic: 'unknown user: "nobody"' }, reason: 'unknown user: "nobody"' });
    assert.equal(g!.kind, 'bounced');
    assert.equal((g as { reason: string }).reason, 'unknown user: "nobody-here"');
  });

  it('bounces mail to a user removed after the message was accepted', async () => {
    const agent = agentWith();
    assert.equal(only(await agent.deliver(job(['frank@example.com']))).kind, 'delivered');
    users.delete('frank');
    const o = only(await agent.deliver(job(['frank@example.com'])));
    assert.equal(o.kind, 'bounced');
    assert.equal(o.dsn.status, '5.1.1');
    assert.equal((o as { reason: string }).reason, 'unknown user: "frank"');
  });

  it('discards mail to postmaster when it has neither alias nor mailbox, with a warning', async () => {
    warnings.length = 0;
    const o = only(await agentWith().deliver(job(['postmaster@example.com'])));
    assert.deepEqual(o.kind === 'delivered' && o.reply, 'discarded');
    assert.deepEqual(warnings, ['required alias not found: postmaster']);
  });

  it('defers (4.3.0) when the alias table fails', async () => {
    const broken = new Maps('alias_maps', [openTable('nosuchtype:aliases', configDir, { aliases: true })]);
    const o = only(await agentWith({ aliases: broken }).deliver(job(['alice@example.com'])));
    assert.equal(o.kind, 'deferred');
    assert.equal(o.dsn.status, '4.3.0');
    assert.match((o as { reason: string }).reason, /^alias database unavailable: .*unsupported dictionary type: nosuchtype/);
  });

  it('defers (4.3.0) when the user database fails', async () => {
    const closed = UserStore.open(join(dir, 'other-data'));
    closed.close();
    const o = only(await agentWith({ users: closed }).deliver(job(['alice@example.com'])));
    assert.equal(o.kind, 'deferred');
    assert.equal(o.dsn.status, '4.3.0');
    assert.match((o as { reason: string }).reason, /^user database unavailable: /);
  });

  it('defers (4.2.0) when the mailbox cannot be written, with the reason', async () => {
    await mkdir(join(dataDir, MAIL_DIRECTORY), { recursive: true });
    await writeFile(join(dataDir, MAIL_DIRECTORY, 'grace'), 'a file where the Maildir should be');
    const o = only(await agentWith().deliver(job(['grace@example.com'])));
    assert.equal(o.kind, 'deferred');
    assert.equal(o.dsn.status, '4.2.0');
    assert.match((o as { reason: string }).reason, /^maildir delivery failed: .*grace.*: (Not a directory|File exists)$/);
  });

  it('defers (4.3.0) when forwarding fails, and when it does not answer in time', async () => {
    const failing = agentWith({ forward: () => Promise.reject(new Error('queue file write failed')) });
    const o = only(await failing.deliver(job(['team@example.com'])));
    assert.equal(o.kind, 'deferred');
    assert.match((o as { reason: string }).reason, /^cannot forward to carol@remote\.example, dave@other\.example: queue file write failed$/);
    const hanging = agentWith({ forward: () => new Promise<string>(() => undefined), forwardTimeout: 50 });
    const h = only(await hanging.deliver(job(['team@example.com'])));
    assert.equal(h.kind, 'deferred');
    assert.match((h as { reason: string }).reason, /forwarding timed out/);
  });

  it('answers one outcome per recipient, in order', async () => {
    const o = await agentWith().deliver(job(['bob@example.com', 'nobody@example.com', 'missing@example.com', 'alice@example.com']));
    assert.deepEqual(
      o.map((x) => x.kind),
      ['delivered', 'bounced', 'deferred', 'delivered'],
    );
  });

  it('gives concurrent deliveries distinct files and UIDs', async () => {
    const agent = agentWith();
    const before = await readdir(join(dataDir, MAIL_DIRECTORY, 'bob', 'new'));
    const N = 25;
    const outcomes = await Promise.all(Array.from({ length: N }, (_, i) => agent.deliver(job(['bob@example.com'], { subject: `concurrent ${i}` }))));
    assert.ok(outcomes.every((o) => only(o).kind === 'delivered'));
    const after = await readdir(join(dataDir, MAIL_DIRECTORY, 'bob', 'new'));
    assert.equal(after.length, before.length + N);
    const index = mailboxes.mailbox('bob').index().messages('INBOX');
    assert.equal(index.length, after.length);
    assert.equal(new Set(index.map((m) => m.uid)).size, index.length);
    const read = (await inbox('bob')).filter((m) => m.subject.startsWith('concurrent '));
    assert.equal(new Set(read.map((m) => m.subject)).size, N);
  });

  it('keeps the message bytes intact apart from the line ends', async () => {
    const j = job(['alice@example.com'], { subject: 'bytes' });
    await agentWith().deliver(j);
    const box = join(dataDir, MAIL_DIRECTORY, 'alice', 'new');
    const files = await readdir(box);
    const texts = await Promise.all(files.map((f) => readFile(join(box, f), 'utf8')));
    const mine = texts.find((t) => t.includes('Subject: bytes'))!;
    const lines = mine.split('\n');
    assert.deepEqual(lines.slice(0, 3), ['Return-Path: <sender@origin.example>', 'X-Original-To: alice@example.com', 'Delivered-To: alice@example.com']);
    assert.equal(lines.slice(3).join('\n'), j.message.toString().replace(/\r\n/g, '\n'));
  });
});
