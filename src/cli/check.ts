/**
 * @module cli/check
 * SUMMARY: `greygate check`: validate main.cf and every table and restriction list it names,
 * exactly as `start` and a reload would, printing each problem as `FILE:LINE: message`
 * (warnings as `FILE:LINE: warning: message`). Exit status 1 when there is any error,
 * 0 otherwise (warnings alone do not fail), like `postfix check`.
 * SEE ALSO: postfix(1) check, runtime.ts.
 */
import { isAbsolute, join } from 'node:path';
import { formatProblem, UsageError, type Problem } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { TableCache } from '../tables/open.js';
import { createDnsClient } from '../dns/resolver.js';
import { compileRuntime } from '../runtime.js';
import { checkGreylistConfig } from '../greylist/greylist.js';
import type { CliIO } from './io.js';

export async function run(args: string[], io: CliIO): Promise<number> {
  if (args.length) throw new UsageError(`check: unexpected argument: ${args[0]}`);
  const config = loadConfig(io.configDir);
  const problems: Problem[] = [...config.problems];
  // A main.cf with bad values cannot be compiled further without inventing values.
  if (!problems.some((p) => p.severity === 'error')) {
    const tables = new TableCache(config.configDir);
    const compiled = compileRuntime(config, tables, createDnsClient(config), { exists: () => false });
    problems.push(...compiled.problems, ...checkGreylistConfig(config));
  }
  const seen = new Set<string>();
  for (const p of problems) {
    // Tables name their files as written in main.cf (relative to the config directory);
    // show them from where the admin ran the command, like main.cf itself.
    const line = formatProblem(isAbsolute(p.file) ? p : { ...p, file: join(io.configDir, p.file) });
    if (seen.has(line)) continue;
    seen.add(line);
    io.err(line + '\n');
  }
  return problems.some((p) => p.severity === 'error') ? 1 : 0;
}
