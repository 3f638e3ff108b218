/**
 * Golden trace scripts for the restriction engine, in the manner of Postfix's
 * smtpd_check.in / smtpd_check.ref: each test/fixtures/restrictions/NAME.in is run with no
 * SMTP socket and its output compared with NAME.ref. Set UPDATE_REF=1 to rewrite the .ref
 * files after a deliberate change (and review the diff).
 *
 * Script commands (one per line, "#" comments are echoed):
 *   param NAME = VALUE      set a main.cf parameter (the policy is recompiled)
 *   user NAME               add a mailbox user
 *   dns TYPE NAME VALUE     add a record to the test DNS server (a, aaaa, ptr, txt, mx);
 *                           "dns ptr 1.2.3.4 host.example" takes the address;
 *                           "dns timeout NAME" / "dns servfail NAME"
 *   client ADDR [NAME [REVERSE_NAME]]  start a session; without NAME the name is verified in DNS
 *   helo NAME | mail ADDR | rcpt ADDR | data | eod | rset
 *   sasl USER | tls yes|no | pipelining yes|no
 * Each check prints its decision: "OK [rule]" or "CODE X.Y.Z text [rule]", then its notes
 * and the transaction side effects it added.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { formatProblem } from '../../src/errors.js';
import { openTable } from '../../src/tables/open.js';
import { createDnsClientFromOptions, type DnsClient } from '../../src/dns/resolver.js';
import { compilePolicy, type Policy } from '../../src/restrictions/policy.js';
import { newEffects, type Decision, type SessionState, type TransactionEffects } from '../../src/restrictions/state.js';
import { TestDnsServer, type TestRecords } from '../fixtures/dns-server.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'restrictions');

let dnsServer: TestDnsServer;
let dns: DnsClient;

before(async () => {
  dnsServer = await TestDnsServer.start();
  dns = createDnsClientFromOptions({ servers: [dnsServer.address], timeoutMs: 300 });
});

after(async () => {
  await dnsServer.close();
});

function formatDecision(d: Decision): string {
  if (d.kind === 'permit') return d.rule ? `OK [${d.rule}]` : 'OK';
  return `${d.reply.code} ${d.reply.status} ${d.reply.text} [${d.rule}]${d.disconnect ? ' (disconnect)' : ''}`;
}

class Runner {
  private readonly params = new Map<string, string>();
  private readonly users = new Set<string>();
  private policy: Policy | null = null;
  private s: SessionState | null = null;
  private fx: TransactionEffects = newEffects();
  private seenNotes = 0;
  private seenPrepends = 0;
  private readonly out: string[] = [];
  private readonly records = new Map<string, TestRecords>();
  /** Problems of the previous compile: only new ones are printed. */
  private shown = new Set<string>();

  constructor(private readonly name: string) {
    // A fixed, machine-independent baseline; scripts override what they test.
    this.params.set('myhostname', 'mx.example.org');
    this.params.set('mydomain', 'example.org');
    this.params.set('mynetworks', '127.0.0.0/8 [::1]/128');
    this.params.set('inet_interfaces', '127.0.0.1');
    this.params.set('smtpd_relay_restrictions', 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination');
  }

  private compile(): Policy {
    if (this.policy) return this.policy;
    const text = [...this.params].map(([k, v]) => `${k} = ${v}`).join('\n') + '\n';
    const config = configFromText(FIXTURES, 'main.cf', text);
    const now = new Set<string>();
    const once = (line: string): void => {
      if (!this.shown.has(line) && !now.has(line)) this.out.push(line);
      now.add(line);
    };
    for (const p of config.problems) once(`config: ${formatProblem(p)}`);
    const { policy, problems } = compilePolicy({
      config,
      openTable: (spec) => openTable(spec, FIXTURES),
      dns,
      localUsers: { exists: (n) => this.users.has(n.toLowerCase()) },
    });
    for (const p of problems) once(`problem: ${formatProblem({ ...p, file: p.file.replace(FIXTURES + '/', '') })}`);
    this.shown = now;
    this.policy = policy;
    return policy;
  }

  private session(): SessionState {
    if (!this.s) throw new Error(`${this.name}: no "client" command before this one`);
    return this.s;
  }

  private report(d: Decision): void {
    this.out.push(formatDecision(d));
    for (const n of this.fx.notes.slice(this.seenNotes)) this.out.push(`  ${n.event}: ${n.text} [${n.rule}]`);
    this.seenNotes = this.fx.notes.length;
    for (const p of this.fx.prepend.slice(this.seenPrepends)) this.out.push(`  prepend: ${p.header} [${p.rule}]`);
    this.seenPrepends = this.fx.prepend.length;
  }

  private effects(): void {
    const fx = this.fx;
    if (fx.hold) this.out.push(`  hold: ${fx.hold.text} [${fx.hold.rule}]`);
    if (fx.discard) this.out.push(`  discard: ${fx.discard.text} [${fx.discard.rule}]`);
    if (fx.redirect) this.out.push(`  redirect: ${fx.redirect.address} [${fx.redirect.rule}]`);
    if (fx.filter) this.out.push(`  filter: ${fx.filter.nexthop} [${fx.filter.rule}]`);
    if (fx.bcc) this.out.push(`  bcc: ${fx.bcc.address} [${fx.bcc.rule}]`);
  }

  private newTransaction(): void {
    this.fx = newEffects();
    this.seenNotes = 0;
    this.seenPrepends = 0;
  }

  async run(script: string): Promise<string> {
    for (const raw of script.split('\n')) {
      const line = raw.trim();
      if (line === '') continue;
      this.out.push(`>>> ${line}`);
      if (line.startsWith('#')) continue;
      const [cmd, ...rest] = line.split(/\s+/);
      const arg = rest.join(' ');
      switch (cmd) {
        case 'param': {
          const m = /^(\S+)\s*=\s*(.*)$/.exec(arg);
          if (!m) throw new Error(`bad param line: ${line}`);
          this.params.set(m[1]!, m[2]!);
          this.policy?.close();
          this.policy = null;
          this.compile();
          break;
        }
        case 'user':
          this.users.add(arg.toLowerCase());
          break;
        case 'dns':
          this.dns(rest);
          break;
        case 'client': {
          const [addr, name, reverse] = rest as [string, string | undefined, string | undefined];
          let client: SessionState['client'];
          if (name === undefined) {
            const v = await dns.verifiedClientName(addr);
            client = { address: addr, port: 40000, name: v.name, reverseName: v.reverseName, nameStatus: v.nameStatus, reverseNameStatus: v.reverseNameStatus };
            this.out.push(`  client name: ${v.name} (${v.nameStatus}), reverse: ${v.reverseName}`);
          } else {
            client = { address: addr, port: 40000, name, reverseName: reverse ?? name };
          }
          this.s = { client, protocol: 'ESMTP', recipients: [], tls: false, instance: 'inst1', unauthPipelining: false, localPort: 25, service: 'smtpd' };
          this.newTransaction();
          this.report(await this.compile().checkConnect(this.s, this.fx));
          break;
        }
        case 'helo': {
          const s = this.session();
          s.helo = arg;
          this.report(await this.compile().checkHelo(s, this.fx));
          break;
        }
        case 'mail': {
          const s = this.session();
          s.sender = arg.replace(/^<(.*)>$/, '$1');
          s.recipients = [];
          s.recipient = undefined;
          this.newTransaction();
          this.report(await this.compile().checkMail(s, this.fx));
          break;
        }
        case 'rcpt': {
          const s = this.session();
          s.recipient = arg.replace(/^<(.*)>$/, '$1');
          const d = await this.compile().checkRcpt(s, this.fx);
          this.report(d);
          if (d.kind === 'permit') s.recipients.push(s.recipient);
          break;
        }
        case 'data':
          this.report(await this.compile().checkData(this.session(), this.fx));
          break;
        case 'eod':
          this.report(await this.compile().checkEndOfData(this.session(), this.fx));
          this.effects();
          break;
        case 'rset': {
          const s = this.session();
          s.sender = undefined;
          s.recipient = undefined;
          s.recipients = [];
          this.newTransaction();
          break;
        }
        case 'sasl':
          this.session().saslUsername = arg;
          break;
        case 'tls':
          this.session().tls = arg === 'yes';
          break;
        case 'pipelining':
          this.session().unauthPipelining = arg === 'yes';
          break;
        default:
          throw new Error(`${this.name}: unknown command: ${line}`);
      }
    }
    this.policy?.close();
    return this.out.join('\n') + '\n';
  }

  private dns(args: string[]): void {
    const [type, name, ...vals] = args as [string, string, ...string[]];
    const value = vals.join(' ');
    const key = type === 'ptr' ? TestDnsServer.ptrName(name) : name.toLowerCase();
    const rec: TestRecords = { ...(this.records.get(key) ?? {}) };
    switch (type) {
      case 'a':
        rec.A = [...(rec.A ?? []), value];
        break;
      case 'aaaa':
        rec.AAAA = [...(rec.AAAA ?? []), value];
        break;
      case 'ptr':
        rec.PTR = [...(rec.PTR ?? []), value];
        break;
      case 'txt':
        rec.TXT = [...(rec.TXT ?? []), value];
        break;
      case 'mx': {
        const [prio, host] = vals as [string, string];
        rec.MX = [...(rec.MX ?? []), { priority: Number(prio), exchange: host === '.' ? '' : host }];
        break;
      }
      case 'timeout':
        rec.behavior = 'timeout';
        break;
      case 'servfail':
        rec.behavior = 'servfail';
        break;
      default:
        throw new Error(`${this.name}: bad dns record type ${type}`);
    }
    this.records.set(key, rec);
    dnsServer.set(key, rec);
  }
}

const scripts = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.in'))
  .sort();

describe('restriction trace scripts', () => {
  it('has scripts', () => assert.ok(scripts.length > 0));
  for (const file of scripts) {
    it(file.replace(/\.in$/, ''), async () => {
      const input = readFileSync(join(FIXTURES, file), 'utf8');
      const output = await new Runner(file).run(input);
      const refFile = join(FIXTURES, file.replace(/\.in$/, '.ref'));
      if (process.env.UPDATE_REF === '1') writeFileSync(refFile, output);
      const ref = readFileSync(refFile, 'utf8');
      assert.equal(output, ref);
    });
  }
});
