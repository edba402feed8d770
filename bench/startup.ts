/**
 * CLI cold start: a fresh `node` process per run, as a user or a script pays it. Three ways to start:
 * - `bin/mongo-capsule` with an up-to-date dist/: what an installed package runs (compiled JavaScript, no tsx);
 * - the sources through tsx: what a checkout without a build runs (the fallback of bin/mongo-capsule);
 * - a bare `node -e 0`: the floor.
 * test/package/pack.test.ts prints the same numbers from a project that installed the packed tarball.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure, type BenchResult } from './harness.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const RUNS = { iterations: 5, warmup: 1 };

function node(args: string[]): void {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr.trim().split('\n')[0]}`);
}

/** The CLI's `main` from dist/ or from the sources through tsx, in a fresh process. */
function cliArgs(from: 'dist' | 'tsx', argv: string[]): string[] {
  const load = from === 'dist' ? "await import('./dist/cli.js')" : "(await import('tsx/esm/api')).register(), await import('./src/cli.ts')";
  return ['--input-type=module', '-e', `const { main } = (${load}); process.exitCode = await main(${JSON.stringify(argv)});`];
}

export default async function startupBench(): Promise<BenchResult[]> {
  const group = 'cli cold start';
  const results: BenchResult[] = [await measure(group, 'node -e 0 (floor)', () => node(['-e', '0']), RUNS)];
  const dir = mkdtempSync(join(tmpdir(), 'mongo-capsule-bench-startup-'));
  try {
    let n = 0;
    const keygen = () => ['keygen', '--pub-out', join(dir, `${++n}.pub.json`), '--secret-out', join(dir, `${n}.secret.json`)];
    const sources: Array<'dist' | 'tsx'> = existsSync(join(ROOT, 'dist', 'cli.js')) ? ['dist', 'tsx'] : ['tsx'];
    if (sources.length === 1) results.push({ group, name: 'compiled (dist/)', medianMs: Number.NaN, p90Ms: Number.NaN, iterations: 0, note: 'dist/ is not built: npm run build' });
    for (const from of sources) {
      const label = from === 'dist' ? 'compiled, as installed' : 'sources via tsx (checkout, no build)';
      results.push(
        await measure(group, `--help, ${label}`, () => node(cliArgs(from, ['--help'])), RUNS),
        await measure(group, `--version, ${label}`, () => node(cliArgs(from, ['--version'])), RUNS),
        await measure(group, `keygen, ${label}`, () => node(cliArgs(from, keygen())), RUNS),
      );
    }
    results.push(
      await measure(group, 'bin/mongo-capsule --help (as run here)', () => node(['bin/mongo-capsule', '--help']), RUNS),
      await measure(group, 'bin/mongo-capsule --version (answers from package.json)', () => node(['bin/mongo-capsule', '--version']), RUNS),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}
