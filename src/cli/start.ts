/**
 * @module cli/start
 * SUMMARY: `greygate start`: run the gateway in the foreground until SIGTERM/SIGINT;
 * SIGHUP reloads configuration and tables (postfix reload).
 * DIAGNOSTICS: configuration errors are printed one per line as FILE:LINE: message and the
 * exit status is 1; nothing starts listening.
 */
import { Gateway, GatewayStartError } from '../gateway.js';
import { formatProblem } from '../errors.js';
import { UsageError } from '../errors.js';
import type { CliIO } from './io.js';

export async function run(args: string[], io: CliIO): Promise<number> {
  if (args.length) throw new UsageError(`start: unexpected argument: ${args[0]}`);
  let gw: Gateway;
  try {
    gw = await Gateway.start({ configDir: io.configDir, stdout: true });
  } catch (err) {
    if (err instanceof GatewayStartError) {
      for (const p of err.problems) io.err(`${formatProblem(p)}\n`);
      io.err(`greygate: fatal: configuration errors, not starting\n`);
      return 1;
    }
    throw err;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      void gw.stop().then(
        () => resolve(0),
        (e: unknown) => {
          io.err(`greygate: error while stopping on ${sig}: ${(e as Error).message}\n`);
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void gw.reload('SIGHUP'));
  });
}
