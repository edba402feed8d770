/**
 * `npm run bench`: runs every benchmark module and prints one table. Numbers, not pass/fail.
 * `npm run bench -- crypto keys` runs only the named modules.
 */
import { existsSync } from 'node:fs';
import { formatResults, type BenchModule, type BenchResult } from './harness.ts';

const MODULES = ['crypto', 'ntru', 'keys', 'mongo', 'startup'];
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const selected = wanted.length > 0 ? MODULES.filter((m) => wanted.includes(m)) : MODULES;

console.log(`mongo-capsule benchmarks — node ${process.version}, ${process.platform}/${process.arch}`);
const all: BenchResult[] = [];
let failed = 0;
for (const name of selected) {
  const url = new URL(`./${name}.ts`, import.meta.url);
  if (!existsSync(url)) continue;
  const started = performance.now();
  try {
    const mod = (await import(url.href)) as { default: BenchModule };
    const results = await mod.default();
    all.push(...results);
    console.log(`\n${formatResults(results)}\n(${name}: ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.error(`\n[bench] ${name} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}
if (failed > 0) process.exitCode = 1;
