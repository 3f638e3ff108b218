/**
 * @module test/checks/helpers
 * SUMMARY: shared pieces of the checks tests: CompiledChecks from rule texts written to a
 * temporary config directory (real regexp:/pcre: tables, real Config), a message pushed
 * through a ContentFilter in chunks of any size, and CRLF conversion.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromText } from '../../src/config/config.js';
import { openTable } from '../../src/tables/open.js';
import type { Table } from '../../src/tables/table.js';
import { compileChecks, type CompiledChecks } from '../../src/checks/compile.js';
import { ContentFilter, type ContentFilterOptions, type ContentOutcome } from '../../src/checks/content-filter.js';

export interface RuleSet {
  /** File name (under the temp config dir) -> rule text. */
  readonly files?: Readonly<Record<string, string>>;
  /** main.cf text, naming the files, e.g. "header_checks = regexp:hc". */
  readonly mainCf: string;
}

export function compileRules(rules: RuleSet, wrapTable?: (t: Table) => Table): CompiledChecks {
  const dir = mkdtempSync(join(tmpdir(), 'gg-checks-'));
  for (const [name, text] of Object.entries(rules.files ?? {})) writeFileSync(join(dir, name), text);
  writeFileSync(join(dir, 'main.cf'), rules.mainCf);
  const config = configFromText(dir, join(dir, 'main.cf'), rules.mainCf);
  try {
    return compileChecks(config, (spec) => {
      const t = openTable(spec, dir);
      return wrapTable ? wrapTable(t) : t;
    });
  } finally {
    // Tables are read when opened; thousands of cases must not leave thousands of dirs.
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Shorthand: header_checks and/or body_checks given as rule texts. */
export function checksOf(opts: { header?: string; body?: string; mime?: string; nested?: string; extra?: string }): CompiledChecks {
  const files: Record<string, string> = {};
  let mainCf = '';
  if (opts.header !== undefined) {
    files.header_checks = opts.header;
    mainCf += 'header_checks = regexp:header_checks\n';
  }
  if (opts.mime !== undefined) {
    files.mime_header_checks = opts.mime;
    mainCf += `mime_header_checks = ${opts.mime === '' ? '' : 'regexp:mime_header_checks'}\n`;
  }
  if (opts.nested !== undefined) {
    files.nested_header_checks = opts.nested;
    mainCf += `nested_header_checks = ${opts.nested === '' ? '' : 'regexp:nested_header_checks'}\n`;
  }
  if (opts.body !== undefined) {
    files.body_checks = opts.body;
    mainCf += 'body_checks = regexp:body_checks\n';
  }
  mainCf += opts.extra ?? '';
  return compileRules({ files, mainCf });
}

export function crlf(text: string): Buffer {
  return Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8');
}

export interface FilterRun {
  readonly output: Buffer;
  readonly outcome: ContentOutcome;
  /** How many bytes write() returned before end(). */
  readonly early: number;
}

/** MESSAGE through a ContentFilter, written in chunks of CHUNK bytes (all at once by default). */
export function runFilter(checks: CompiledChecks, message: Buffer, chunk = message.length || 1, options: ContentFilterOptions = {}): FilterRun {
  const f = new ContentFilter(checks, options);
  const out: Buffer[] = [];
  for (let i = 0; i < message.length; i += chunk) out.push(...f.write(message.subarray(i, Math.min(message.length, i + chunk))));
  const early = out.reduce((n, b) => n + b.length, 0);
  const { tail, outcome } = f.end();
  out.push(...tail);
  return { output: Buffer.concat(out), outcome, early };
}
