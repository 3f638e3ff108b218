/**
 * @module test/checks/bench-filter
 * SUMMARY: per-message cost of ContentFilter on /work/shared/bench-fixtures: the realistic
 * 4 KB newsletter through header_checks_10 / header_checks_1000 with body_checks_100, in
 * one process on one core, written as smtp-server delivers DATA (16 KB chunks). Also the
 * walk alone (empty tables) and the lookups alone, to show where the time goes.
 * Run: node --import tsx test/checks/bench-filter.ts [seconds-per-case]
 */
import { readFileSync } from 'node:fs';
import { ContentFilter } from '../../src/checks/content-filter.js';
import { collectKeys } from '../../src/checks/message-walk.js';
import type { CompiledChecks } from '../../src/checks/compile.js';
import { checksOf, crlf } from './helpers.js';

const BENCH = '/work/shared/bench-fixtures';
const seconds = Number(process.argv[2] ?? 3);
const message = crlf(readFileSync(`${BENCH}/realistic-message.eml`, 'utf8'));
const rules = (name: string): string => readFileSync(`${BENCH}/${name}`, 'utf8');

function perSecond(label: string, fn: () => void): number {
  for (let i = 0; i < 200; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < 50; i++) fn();
    n += 50;
    now = process.hrtime.bigint();
  }
  const rate = n / (Number(now - start) / 1e9);
  console.log(`${label.padEnd(58)} ${rate.toFixed(0).padStart(8)} msg/s  ${(1e6 / rate).toFixed(1).padStart(7)} µs/msg`);
  return rate;
}

function through(checks: CompiledChecks): () => void {
  return () => {
    const f = new ContentFilter(checks);
    for (let i = 0; i < message.length; i += 16384) f.write(message.subarray(i, i + 16384));
    f.end();
  };
}

const keys = collectKeys(message);
const headers = keys.filter((k) => k.kind === 'header');
const body = keys.filter((k) => k.kind === 'body' && k.text !== '');
console.log(`message: ${message.length} bytes, ${headers.length} headers, ${body.length} non-empty body lines; Node ${process.version}\n`);

const empty = checksOf({ header: '', body: '' });
const hc10 = checksOf({ header: rules('header_checks_10'), body: rules('body_checks_100') });
const hc1000 = checksOf({ header: rules('header_checks_1000'), body: rules('body_checks_100') });

perSecond('walk + output only (empty tables)', through(empty));
perSecond('header_checks_10 + body_checks_100', through(hc10));
const full = perSecond('header_checks_1000 + body_checks_100', through(hc1000));

const headerMaps = hc1000.header!;
const bodyMaps = hc1000.body!;
const headerTexts = headers.map((k) => k.text);
const bodyTexts = body.map((k) => k.text);
perSecond('  of which: lookups alone (1000 header rules)', () => {
  for (const t of headerTexts) headerMaps.lookup(t);
});
perSecond('  of which: lookups alone (100 body rules)', () => {
  for (const t of bodyTexts) bodyMaps.lookup(t);
});
console.log(`\nPostfix anchor: 204 msg/s end to end at c=20 with 1,000 + 100 rules; the filter alone here: ${full.toFixed(0)} msg/s on one core.`);
