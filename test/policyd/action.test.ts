/**
 * Decision + effects -> the action sent to Postfix (policyd/action.ts), table-driven: the
 * engine's "<name>: Class rejected: " prefix comes off (Postfix puts its own on), the
 * greylisting deferral becomes DEFER_IF_PERMIT with its status, other refusals keep code and
 * status, a permit sends its strongest effect (one action per reply) or DUNNO, never OK.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { policyAction } from '../../src/policyd/action.js';
import { newEffects, type Decision, type TransactionEffects } from '../../src/restrictions/state.js';

const refuse = (kind: 'reject' | 'defer', code: number, status: string, text: string, rule: string): Decision => ({ kind, reply: { code, status, text }, rule, disconnect: false });
const permit: Decision = { kind: 'permit', rule: null };

function fx(f: (e: TransactionEffects) => void = () => undefined): TransactionEffects {
  const e = newEffects();
  f(e);
  return e;
}

const greylistNote = (e: TransactionEffects): void => {
  e.notes.push({ event: 'info', text: 'action=greylist, reason=new', rule: 'check_greylist', stage: 'rcpt', greylist: { action: 'greylist', reason: 'new' } });
};

const cases: Array<{ name: string; d: Decision; fx: TransactionEffects; action: string; kind: string; dropped?: string[] }> = [
  {
    name: 'greylisted: DEFER_IF_PERMIT with the status, without the prefix',
    d: refuse('defer', 450, '4.2.0', '<u@example.com>: Recipient address rejected: Greylisted, see RFC 6647', 'check_greylist'),
    fx: fx(greylistNote),
    action: 'DEFER_IF_PERMIT 4.2.0 Greylisted, see RFC 6647',
    kind: 'greylist',
  },
  {
    name: 'check_greylist store failure: numeric 451 4.3.0',
    d: refuse('defer', 451, '4.3.0', '<u@example.com>: Recipient address rejected: Temporary lookup failure', 'check_greylist'),
    fx: fx(),
    action: '451 4.3.0 Temporary lookup failure',
    kind: 'defer',
  },
  {
    name: 'engine configuration error: numeric 451 4.3.5',
    d: refuse('defer', 451, '4.3.5', 'Server configuration error', 'check_greylist'),
    fx: fx(),
    action: '451 4.3.5 Server configuration error',
    kind: 'defer',
  },
  {
    name: 'sender-class reject from an access map',
    d: refuse('reject', 554, '5.7.1', '<s@bad.example>: Sender address rejected: go away', 'access:1'),
    fx: fx(),
    action: '554 5.7.1 go away',
    kind: 'reject',
  },
  {
    name: 'client-class reject',
    d: refuse('reject', 554, '5.7.1', '<host.example[192.0.2.1]>: Client host rejected: Access denied', 'client_access:3'),
    fx: fx(),
    action: '554 5.7.1 Access denied',
    kind: 'reject',
  },
  {
    name: 'relay denial: the bare "<rcpt>: " comes off too',
    d: refuse('reject', 554, '5.7.1', '<u@elsewhere.example>: Relay access denied', 'reject_unauth_destination'),
    fx: fx(),
    action: '554 5.7.1 Relay access denied',
    kind: 'reject',
  },
  {
    name: 'a text without prefix is sent as it is',
    d: refuse('reject', 554, '5.7.1', 'Service unavailable; Client host [192.0.2.1] blocked using zen.example', 'reject_rbl_client zen.example'),
    fx: fx(),
    action: '554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.example',
    kind: 'reject',
  },
  { name: 'permit: DUNNO', d: permit, fx: fx(), action: 'DUNNO', kind: 'dunno' },
  { name: 'explicit OK is still DUNNO (Postfix\'s list goes on)', d: { kind: 'permit', rule: 'access:2' }, fx: fx(), action: 'DUNNO', kind: 'dunno' },
  {
    name: 'PREPEND',
    d: permit,
    fx: fx((e) => e.prepend.push({ header: 'X-Greylist: delayed 2 seconds by greygate at h; date', rule: 'check_greylist' })),
    action: 'PREPEND X-Greylist: delayed 2 seconds by greygate at h; date',
    kind: 'prepend',
  },
  {
    name: 'HOLD beats PREPEND; the PREPEND is reported as dropped',
    d: permit,
    fx: fx((e) => {
      e.hold = { text: '<s@x.example>: Sender address quarantine', rule: 'access:4' };
      e.prepend.push({ header: 'X-Tag: 1', rule: 'access:5' });
    }),
    action: 'HOLD quarantine',
    kind: 'hold',
    dropped: ['PREPEND X-Tag: 1'],
  },
  {
    name: 'DISCARD first',
    d: permit,
    fx: fx((e) => {
      e.discard = { text: '<s@x.example>: Sender address triggers DISCARD action', rule: 'access:6' };
      e.bcc = { address: 'archive@example.com', rule: 'access:7' };
    }),
    action: 'DISCARD triggers DISCARD action',
    kind: 'discard',
    dropped: ['BCC archive@example.com'],
  },
  {
    name: 'REDIRECT, FILTER, BCC in that order',
    d: permit,
    fx: fx((e) => {
      e.filter = { nexthop: 'smtp:[127.0.0.1]:10025', rule: 'access:8' };
      e.redirect = { address: 'spamtrap@example.com', rule: 'access:9' };
    }),
    action: 'REDIRECT spamtrap@example.com',
    kind: 'redirect',
    dropped: ['FILTER smtp:[127.0.0.1]:10025'],
  },
];

describe('policyAction', () => {
  for (const c of cases) {
    it(c.name, () => {
      const v = policyAction(c.d, c.fx);
      assert.equal(v.action, c.action);
      assert.equal(v.kind, c.kind);
      assert.deepEqual(v.dropped, c.dropped ?? []);
    });
  }
});
