/**
 * @module test/tables/maps
 * SUMMARY: Maps (Postfix maps.c): the first hit in list order wins, an error ends the search
 * and is returned (never read as a miss, even when a later table has the key), an empty key
 * is a miss, an empty result is a configuration error, and fixedOnly skips pattern tables.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Maps } from '../../src/tables/maps.js';
import { openTable } from '../../src/tables/open.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-maps-'));
  writeFileSync(join(dir, 'access'), 'example.com REJECT from hash\nboth.example OK from hash\n');
  writeFileSync(join(dir, 'checks'), '/^both/ from regexp\n/^pattern/ PATTERN\n');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('Maps', () => {
  it('first hit in list order wins', () => {
    const maps = new Maps('smtpd_client_restrictions', [openTable('hash:access', dir), openTable('regexp:checks', dir)]);
    assert.deepEqual(maps.lookup('both.example'), { kind: 'hit', value: 'OK from hash', source: 'access:2' });
    assert.deepEqual(maps.lookup('pattern.example'), { kind: 'hit', value: 'PATTERN', source: 'checks:2' });
    assert.deepEqual(maps.lookup('nowhere'), { kind: 'miss' });
  });

  it('an error is returned, never taken for a miss', () => {
    const maps = new Maps('check_client_access', [openTable('hash:missing', dir), openTable('hash:access', dir)]);
    const r = maps.lookup('example.com');
    assert.equal(r.kind, 'error');
    assert.equal(r.kind === 'error' && r.error.kind, 'config');
    assert.equal(maps.problems.length, 1);
  });

  it('an empty key is a miss (maps_find guard)', () => {
    assert.deepEqual(new Maps('t', [openTable('static:x', dir)]).lookup(''), { kind: 'miss' });
  });

  it('an empty result is a configuration error', () => {
    const r = new Maps('header_checks', [openTable('inline:{ a= }', dir)]).lookup('a');
    assert.equal(r.kind, 'error');
    assert.match(r.kind === 'error' ? r.error.message : '', /header_checks lookup of a returns an empty string result/);
  });

  it('fixedOnly consults exact-key tables only (partial access(5) keys)', () => {
    const maps = new Maps('t', [openTable('regexp:checks', dir), openTable('hash:access', dir)]);
    assert.deepEqual(maps.lookup('both.example'), { kind: 'hit', value: 'from regexp', source: 'checks:1' });
    assert.deepEqual(maps.lookup('both.example', { fixedOnly: true }), { kind: 'hit', value: 'OK from hash', source: 'access:2' });
  });
});
