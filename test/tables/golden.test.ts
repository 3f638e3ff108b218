/**
 * @module test/tables/golden
 * SUMMARY: golden files as Postfix keeps them (util/dict_regexp.{map,in,ref}): for every
 * test/fixtures/tables/NAME.map the table type is NAME's prefix (regexp-basic -> regexp:),
 * NAME.in holds the keys and NAME.ref the expected problems and lookups. inline- and static-
 * fixtures hold one spec per line instead of a table. UPDATE_GOLDEN=1 rewrites the .ref files.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, FIXTURE_NAMES, render } from './golden-format.js';

describe('table golden files (NAME.map, NAME.in -> NAME.ref)', () => {
  for (const name of FIXTURE_NAMES) {
    it(name, () => {
      const actual = render(name);
      const refFile = join(FIXTURES, `${name}.ref`);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(refFile, actual);
      assert.equal(actual, readFileSync(refFile, 'utf8'));
    });
  }
});
