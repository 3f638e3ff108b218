/**
 * @module test/checks/golden
 * SUMMARY: golden sets in test/fixtures/checks/golden/NAME/: main.cf and the rule files it
 * names, message.eml, and the expected results: expected.ref (each decision as Postfix's
 * cleanup would log it, each warning, and the outcome with the SMTP reply) and expected.eml
 * (the message as stored). The message is written in 1-byte, 100-byte and whole pieces.
 * GOLDEN_UPDATE=1 rewrites the expected files (review the diff before committing).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { openTable } from '../../src/tables/open.js';
import { formatReply } from '../../src/mail/reply.js';
import { compileChecks } from '../../src/checks/compile.js';
import { formatActLog } from '../../src/checks/actions.js';
import type { ContentOutcome } from '../../src/checks/content-filter.js';
import { runFilter } from './helpers.js';

const GOLDEN = new URL('../fixtures/checks/golden/', import.meta.url).pathname;
const NAMES = readdirSync(GOLDEN).filter((n) => existsSync(join(GOLDEN, n, 'main.cf'))).sort();
const UPDATE = process.env.GOLDEN_UPDATE === '1';

function crlf(b: Buffer): Buffer {
  return Buffer.from(b.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}

/** The outcome as text: log lines as cleanup writes them, warnings, then the result. */
function reference(o: ContentOutcome): string {
  const lines: string[] = [];
  const ctx = { queueId: 'QUEUEID', origin: 'client.example[192.0.2.1]', sender: 'sender@example.org', recipient: 'rcpt@example.com', protocol: 'ESMTP', helo: 'client.example' };
  for (const d of o.decisions) lines.push(`log ${d.rule} ${d.where}: ${formatActLog(d, ctx)}`.replace(/\n/g, '\\n'));
  for (const w of o.warnings) lines.push(`warning${w.rule ? ` ${w.rule}` : ''}: ${w.message}`);
  if (o.discard) lines.push(`result: discard (${o.discard.rule}) -> 250, message dropped`);
  else if (o.reject) lines.push(`result: reject (${o.reject.rule}) -> ${formatReply(o.reject.reply)}`);
  else if (o.error) lines.push(`result: lookup error (${o.error.table}) -> ${formatReply(o.error.reply)}`);
  else lines.push('result: accept -> 250');
  if (!o.discard) {
    if (o.hold) lines.push(`hold (${o.hold.rule}): ${o.hold.text}`);
    if (o.redirect) lines.push(`redirect (${o.redirect.rule}): ${o.redirect.address}`);
    if (o.filter) lines.push(`filter (${o.filter.rule}): ${o.filter.nexthop}`);
    for (const b of o.bcc) lines.push(`bcc (${b.rule}): ${b.address}`);
  }
  return lines.join('\n') + '\n';
}

describe('golden sets', () => {
  for (const name of NAMES) {
    it(name, () => {
      const dir = join(GOLDEN, name);
      const mainCf = readFileSync(join(dir, 'main.cf'), 'utf8');
      const config = configFromText(dir, 'main.cf', mainCf);
      const checks = compileChecks(config, (spec) => openTable(spec, dir));
      assert.deepEqual(
        checks.problems.filter((p) => p.severity === 'error'),
        [],
      );
      const message = crlf(readFileSync(join(dir, 'message.eml')));
      const whole = runFilter(checks, message);
      const ref = reference(whole.outcome);
      if (UPDATE) {
        writeFileSync(join(dir, 'expected.ref'), ref);
        writeFileSync(join(dir, 'expected.eml'), whole.output);
      }
      assert.equal(ref, readFileSync(join(dir, 'expected.ref'), 'utf8'));
      assert.ok(whole.output.equals(readFileSync(join(dir, 'expected.eml'))), 'expected.eml');
      for (const chunk of [1, 100]) {
        const r = runFilter(checks, message, chunk);
        assert.equal(reference(r.outcome), ref, `${chunk}-byte writes`);
        assert.ok(r.output.equals(whole.output), `${chunk}-byte writes: output`);
      }
    });
  }
});
