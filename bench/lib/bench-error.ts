/**
 * @module bench/lib/bench-error
 * SUMMARY: the one error class of the benchmark harness: a failure the operator can act on
 * (a tool missing, a daemon that would not start, a load run that reported errors).
 * Exports BenchError; bench/accept.ts prints its message as one line and exits 1, and
 * prints a stack only for other errors (bugs) or with BENCH_DEBUG=1.
 * SEE ALSO: src/errors.ts (the gateway's own errors, which the harness does not import).
 */
export class BenchError extends Error {
  override readonly name = 'BenchError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
