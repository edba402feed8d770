/**
 * Tiny benchmark harness: warm up, run a fixed number of iterations, report the median and p90.
 * Benchmarks print numbers; they never pass or fail on timing.
 */
import { performance } from 'node:perf_hooks';

export interface BenchResult {
  group: string;
  name: string;
  /** Median time of one operation, milliseconds. */
  medianMs: number;
  p90Ms: number;
  iterations: number;
  /** Free-form extra columns (ratios, throughput, target). */
  note?: string;
}

export interface MeasureOptions {
  iterations?: number;
  warmup?: number;
}

export async function measure(
  group: string,
  name: string,
  fn: () => unknown | Promise<unknown>,
  { iterations = 50, warmup = 5 }: MeasureOptions = {},
): Promise<BenchResult> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? Number.NaN;
  return { group, name, medianMs: at(0.5), p90Ms: at(0.9), iterations };
}

export function formatResults(results: BenchResult[]): string {
  const rows = results.map((r) => [r.group, r.name, r.medianMs.toFixed(3), r.p90Ms.toFixed(3), String(r.iterations), r.note ?? '']);
  const header = ['group', 'operation', 'median ms', 'p90 ms', 'n', 'note'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** A bench module: `bench/<area>.ts` default-exports one of these. */
export type BenchModule = () => Promise<BenchResult[]>;
