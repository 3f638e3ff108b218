/**
 * @module bench/lib/executables
 * SUMMARY: find the external programs the benchmark drives (smtp-source, smtp-sink, postfix,
 * postconf). Exports findExecutable(name, hint) -> absolute path.
 * DIAGNOSTICS: a missing program is a BenchError in one line that says how to install it.
 * Postfix installs its tools in /usr/sbin, which a non-root PATH often lacks, so the sbin
 * directories are searched after PATH.
 * SEE ALSO: /work/shared/peers.md "Load tools".
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BenchError } from './bench-error.js';

const SBIN_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin'];

export const POSTFIX_HINT =
  'install Debian\'s postfix package: echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && apt-get install -y postfix';

export function findExecutable(name: string, hint: string = POSTFIX_HINT): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), ...SBIN_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not in this directory; keep looking
    }
  }
  throw new BenchError(`${name} not found in PATH or ${SBIN_DIRS.join(', ')}: ${hint}`);
}
