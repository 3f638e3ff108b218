/**
 * Tests for mail/access-keys.ts: the access(5) search order for host names, addresses and
 * email addresses, with and without parent-domain matching, and which keys are partial
 * (tried against exact-key tables only).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { addressKeys, hostKeys, lookupKey, mailKeys, type AccessKey } from '../../src/mail/access-keys.js';
import type { LookupResult, Table } from '../../src/tables/table.js';

const show = (keys: AccessKey[]): string[] => keys.map((k) => (k.partial ? `${k.key}*` : k.key));

describe('host keys', () => {
  const cases: Array<{ name: string; parent: boolean; want: string[] }> = [
    { name: 'a.b.example.com', parent: true, want: ['a.b.example.com', 'b.example.com*', 'example.com*', 'com*'] },
    { name: 'a.b.example.com', parent: false, want: ['a.b.example.com', '.b.example.com*', '.example.com*', '.com*'] },
    { name: 'localhost', parent: true, want: ['localhost'] },
    { name: 'foo.', parent: true, want: ['foo.'] },
    { name: 'foo.', parent: false, want: ['foo.', '.*'] },
    { name: '1.2.3.4', parent: true, want: ['1.2.3.4'] },
    { name: 'unknown', parent: true, want: ['unknown'] },
  ];
  for (const c of cases) it(`${c.name} (${c.parent ? 'parent' : '.parent'})`, () => assert.deepEqual(show(hostKeys(c.name, c.parent)), c.want));
});

describe('address keys', () => {
  const cases: Array<{ addr: string; want: string[] }> = [
    { addr: '1.2.3.4', want: ['1.2.3.4', '1.2.3*', '1.2*', '1*'] },
    { addr: '2001:db8:1:2::5', want: ['2001:db8:1:2::5', '2001:db8:1:2:*', '2001:db8:1:2*', '2001:db8:1*', '2001:db8*', '2001*'] },
  ];
  for (const c of cases) it(c.addr, () => assert.deepEqual(show(addressKeys(c.addr)), c.want));
});

describe('mail keys', () => {
  const cases: Array<{ addr: string; delim: string; parent: boolean; want: string[] }> = [
    {
      addr: 'user+foo@sub.example.com',
      delim: '+',
      parent: true,
      want: ['user+foo@sub.example.com', 'user@sub.example.com*', 'sub.example.com*', 'example.com*', 'com*', 'user+foo@*', 'user@*'],
    },
    {
      addr: 'user@sub.example.com',
      delim: '+',
      parent: false,
      want: ['user@sub.example.com', 'sub.example.com*', '.example.com*', '.com*', 'user@*'],
    },
    {
      addr: 'user+foo@example.com',
      delim: '',
      parent: true,
      want: ['user+foo@example.com', 'example.com*', 'com*', 'user+foo@*'],
    },
    {
      addr: 'first last@example.com',
      delim: '',
      parent: true,
      want: ['"first last"@example.com', 'first last@example.com', 'example.com*', 'com*', '"first last"@*', 'first last@*'],
    },
  ];
  for (const c of cases) it(`${c.addr} (delimiter "${c.delim}")`, () => assert.deepEqual(show(mailKeys(c.addr, c.delim, c.parent)), c.want));
});

function fakeTable(fixed: boolean, foldCase: boolean, seen: string[]): Table {
  return {
    type: fixed ? 'hash' : 'regexp',
    spec: 'x:y',
    flags: { fixed, foldCase },
    problems: [],
    lookup(key: string): LookupResult {
      seen.push(key);
      return { kind: 'miss' };
    },
  };
}

describe('lookupKey', () => {
  it('skips partial keys for pattern tables and lowercases for exact tables that do not fold', () => {
    const seen: string[] = [];
    const keys = hostKeys('Mail.Example.COM', true);
    for (const k of keys) lookupKey(fakeTable(false, false, seen), k);
    assert.deepEqual(seen, ['Mail.Example.COM']);
    seen.length = 0;
    for (const k of keys) lookupKey(fakeTable(true, false, seen), k);
    assert.deepEqual(seen, ['mail.example.com', 'example.com', 'com']);
    seen.length = 0;
    for (const k of keys) lookupKey(fakeTable(true, true, seen), k);
    assert.deepEqual(seen, ['Mail.Example.COM', 'Example.COM', 'COM']);
  });
});
