/**
 * @module cli/postconf
 * SUMMARY: `greygate postconf [-n] [-d] [-h] [-x] [NAME...]`: print parameters as
 * `name = value`, as postconf(1) does: effective values by default, `-n` only those set in
 * main.cf, `-d` the defaults, `-h` values only, `-x` expand $name references.
 * DIAGNOSTICS: an unknown NAME is a warning on stderr (postconf: warning: NAME: unknown
 * parameter) and exit status 1; main.cf problems are not printed here (see `check`).
 * SEE ALSO: postconf(1).
 */
import { UsageError } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { PARAMS } from '../config/params.js';
import { expand } from '../config/expand.js';
import type { CliIO } from './io.js';

export async function run(args: string[], io: CliIO): Promise<number> {
  let nonDefault = false;
  let defaults = false;
  let valueOnly = false;
  let expandValues = false;
  const names: string[] = [];
  for (const a of args) {
    if (/^-[ndhx]+$/.test(a)) {
      for (const f of a.slice(1)) {
        if (f === 'n') nonDefault = true;
        else if (f === 'd') defaults = true;
        else if (f === 'h') valueOnly = true;
        else expandValues = true;
      }
    } else if (a.startsWith('-')) throw new UsageError(`postconf: unknown option ${a} (use -n, -d, -h, -x)`);
    else names.push(a);
  }
  if (nonDefault && defaults) throw new UsageError('postconf: -n and -d cannot be used together');
  const config = loadConfig(io.configDir);
  const rawOf = (name: string): string | undefined => (defaults ? config.defaultOf(name) : config.raw(name));
  let selected: string[];
  if (names.length) selected = names;
  else if (nonDefault) selected = [...config.entries.keys()].sort();
  else selected = [...new Set([...PARAMS.keys(), ...config.entries.keys()])].sort();
  let status = 0;
  for (const name of selected) {
    const known = PARAMS.has(name) || config.entries.has(name);
    if (!known || (defaults && !PARAMS.has(name))) {
      io.err(`postconf: warning: ${name}: unknown parameter\n`);
      status = 1;
      continue;
    }
    let value = rawOf(name) ?? '';
    if (expandValues) value = expand(value, (n) => rawOf(n));
    io.out(valueOnly ? `${value}\n` : value === '' ? `${name} =\n` : `${name} = ${value}\n`);
  }
  return status;
}
