/**
 * @module test/checks/huge-message
 * SUMMARY: a 50 MB message generated on the fly (multipart parts of body text, a nested
 * message, long lines, one 300 KB folded header) streamed through header_checks and
 * body_checks in 64 KB writes: every byte comes out, one rule deep inside still matches,
 * and memory stays bounded (the filter keeps no copy of what it has passed on).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { ContentFilter } from '../../src/checks/content-filter.js';
import { checksOf } from './helpers.js';

const TOTAL = 50 * 1024 * 1024;
const BENCH = '/work/shared/bench-fixtures';

function rules(name: string, fallback: string): string {
  const path = `${BENCH}/${name}`;
  return existsSync(path) ? readFileSync(path, 'utf8') : fallback;
}

/** The message in pieces of about 64 KB, made as they are needed. */
function* generate(): Generator<Buffer> {
  yield Buffer.from(
    'From: big@example.org\r\nSubject: fifty megabytes\r\n' +
      `X-Folded: start\r\n${' more folded text for the header\r\n'.repeat(10000)}` +
      'Content-Type: multipart/mixed; boundary="huge"\r\n\r\npreamble\r\n',
  );
  let size = 0;
  let part = 0;
  const text = 'The quick brown fox jumps over the lazy dog, again and again and again.\r\n';
  while (size < TOTAL) {
    let piece = `--huge\r\nContent-Type: text/plain\r\nX-Part: ${part}\r\n\r\n`;
    if (part % 50 === 7) piece += `--huge\r\nContent-Type: message/rfc822\r\n\r\nSubject: nested ${part}\r\n\r\n`;
    piece += text.repeat(800);
    if (part % 10 === 3) piece += `${'L'.repeat(10000)}\r\n`;
    if (part === 500) piece = `--huge\r\nX-Needle: found\r\n\r\nneedle line\r\n${piece}`;
    const b = Buffer.from(piece);
    size += b.length;
    part++;
    yield b;
  }
  yield Buffer.from('--huge--\r\n');
}

describe('a 50 MB message streams through with bounded memory', () => {
  it('every byte out, rules still apply deep inside, memory bounded', (t) => {
    const checks = checksOf({
      header: rules('header_checks_1000', '/^X-Never:/ REJECT\n') + '/^X-Needle: found/ WARN header needle\n',
      body: rules('body_checks_100', '/never/ REJECT\n') + '/^needle line$/ WARN body needle\n',
    });
    global.gc?.();
    const before = process.memoryUsage();
    const f = new ContentFilter(checks);
    let inBytes = 0;
    let outBytes = 0;
    let peakHeap = 0;
    let pieces = 0;
    const started = process.hrtime.bigint();
    for (const chunk of generate()) {
      for (let i = 0; i < chunk.length; i += 65536) {
        const w = chunk.subarray(i, i + 65536);
        inBytes += w.length;
        for (const b of f.write(w)) outBytes += b.length;
      }
      if (++pieces % 100 === 0) peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
    }
    const { tail, outcome } = f.end();
    for (const b of tail) outBytes += b.length;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const after = process.memoryUsage();
    t.diagnostic(`${(inBytes / 1048576).toFixed(1)} MB in ${seconds.toFixed(2)} s (${(inBytes / 1048576 / seconds).toFixed(0)} MB/s)`);
    t.diagnostic(`heap: ${(before.heapUsed / 1048576).toFixed(1)} MB before, peak ${(peakHeap / 1048576).toFixed(1)} MB, ${(after.heapUsed / 1048576).toFixed(1)} MB after`);
    assert.ok(inBytes >= TOTAL);
    assert.equal(outBytes, inBytes);
    assert.deepEqual(
      outcome.decisions.map((d) => d.text),
      ['header needle', 'body needle'],
    );
    assert.equal(outcome.reject, undefined);
    // The input is 50 MB; what the filter keeps is one header and one record at most.
    assert.ok(peakHeap - before.heapUsed < 40 * 1048576, `heap grew by ${((peakHeap - before.heapUsed) / 1048576).toFixed(1)} MB`);
  });
});
