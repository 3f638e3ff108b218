/**
 * @module bench/lib/options
 * SUMMARY: parsing of the BENCH_* environment variables every benchmark reads: positive
 * integers and comma-separated choices, each refused with a one-line BenchError.
 */
import { BenchError } from './bench-error.js';

export function positiveInts(name: string, text: string): number[] {
  const values = text.split(',').map((s) => s.trim());
  const out = values.map(Number);
  if (values.some((v) => !/^\d+$/.test(v)) || out.some((n) => n < 1)) {
    throw new BenchError(`${name}=${text}: expected a positive integer or a comma-separated list of them`);
  }
  return out;
}

export function oneOf<T extends string>(name: string, text: string, known: readonly T[]): Set<T> {
  const out = new Set<T>();
  for (const v of text.split(',').map((s) => s.trim())) {
    if (!(known as readonly string[]).includes(v)) throw new BenchError(`${name}: unknown value "${v}" (known: ${known.join(', ')})`);
    out.add(v as T);
  }
  return out;
}
