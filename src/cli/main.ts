/**
 * @module cli/main
 * SUMMARY: `greygate <command> [-c CONFIG_DIR] ...` dispatch. `-c DIR` is accepted anywhere
 * on the line; commands are loaded lazily so that `postmap -q` starts fast.
 * DIAGNOSTICS: a user mistake (UsageError, ConfigError, any GreygateError) is printed as one
 * line on stderr, exit status 2 for usage and 1 otherwise; only a bug prints a stack, and
 * only with GREYGATE_DEBUG=1.
 * SEE ALSO: design.md "CLI".
 */
import { GreygateError, UsageError } from '../errors.js';
import type { CliCommand, CliIO } from './io.js';

type Loader = () => Promise<{ run: CliCommand }>;

const COMMANDS: ReadonlyMap<string, Loader> = new Map<string, Loader>([
  ['start', () => import('./start.js')],
  ['check', () => import('./check.js')],
  ['postconf', () => import('./postconf.js')],
  ['postmap', () => import('./postmap.js')],
  ['postqueue', () => import('./postqueue.js')],
  ['postsuper', () => import('./postsuper.js')],
  ['sendmail', () => import('./sendmail.js')],
  ['user', () => import('./user.js')],
  ['trace', () => import('./trace.js')],
  ['log', () => import('./log.js')],
  ['report', () => import('./report.js')],
]);

const USAGE = `usage: greygate <command> [-c CONFIG_DIR] [args...]
commands: ${[...COMMANDS.keys()].join(', ')}`;

/** Remove every `-c DIR` / `-cDIR` pair; the last one wins. */
export function extractConfigDir(argv: readonly string[]): { configDir: string; rest: string[] } {
  let configDir = 'rules';
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-c') {
      const v = argv[i + 1];
      if (v === undefined) throw new UsageError('option -c requires a directory argument');
      configDir = v;
      i++;
    } else if (a.startsWith('-c') && a.length > 2 && !a.startsWith('--')) {
      configDir = a.slice(2);
    } else rest.push(a);
  }
  return { configDir, rest };
}

export async function main(argv: readonly string[], io?: Partial<CliIO>): Promise<number> {
  const err = io?.err ?? ((t: string) => process.stderr.write(t));
  try {
    const { configDir, rest } = extractConfigDir(argv);
    const [name, ...args] = rest;
    if (!name || name === '-h' || name === '--help' || name === 'help') {
      (io?.out ?? ((t: string) => process.stdout.write(t)))(USAGE + '\n');
      return name ? 0 : 2;
    }
    const load = COMMANDS.get(name);
    if (!load) throw new UsageError(`unknown command: ${name} (try: ${[...COMMANDS.keys()].join(', ')})`);
    const { run } = await load();
    return await run(args, {
      configDir,
      stdin: io?.stdin ?? process.stdin,
      out: io?.out ?? ((t) => process.stdout.write(t)),
      err,
    });
  } catch (e) {
    if (e instanceof UsageError) {
      err(`greygate: ${e.message}\n`);
      return 2;
    }
    if (e instanceof GreygateError) {
      err(`greygate: ${e.message}\n`);
      return 1;
    }
    const msg = e instanceof Error ? e.message : String(e);
    err(`greygate: internal error: ${msg}\n`);
    if (process.env.GREYGATE_DEBUG && e instanceof Error && e.stack) err(e.stack + '\n');
    return 70;
  }
}
