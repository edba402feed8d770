#!/usr/bin/env node
// Installs everything mongo-capsule and its test suite need, on a fresh machine, in one command.
// Plain Node on purpose: it runs before node_modules exists. Each later step lives in scripts/setup/<step>.mjs.
//
// Required or optional is the step module's own declaration, so adding a step is one entry in STEPS:
//   export const required = true;          the main job needs it: its failure fails setup (exit 1)
//   export const disables = '<what>';      optional (the default): a failure is a skip, reported in one line
//                                          as what was skipped, what that disables, and how to get it (the
//                                          step's error message, which names the missing tool and its source)
// A step that declares neither is optional, and its skip line says so. `--strict` makes every step required.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { defaultCacheDir } from './lib/cache-dir.mjs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// Order matters: system packages first, then what builds on them.
const STEPS = ['system-packages', 'native', 'oracle', 'ferretdb', 'libmongocrypt', 'docker'];

const args = new Set(process.argv.slice(2));
if (args.has('--help')) {
  console.log(`Usage: npm run setup [-- --only <step>] [--skip <step>] [--strict]

Installs npm dependencies (step npm), then runs these steps (each is cached under the cache directory and is
quick on a warm machine): ${STEPS.join(', ')}.
A step that only tests or optional features need is skipped when its tools are missing (Go, Rust, root,
the npm registry for the test-only Node 22 + liboqs oracle):
setup then says what it skipped, what that disables and how to get it, and still exits 0. A step the
library needs (npm dependencies, the CSFLE addon) fails setup. --strict fails on any step (CI that must
run everything).

Environment:
  MONGO_CAPSULE_CACHE   cache directory (default: $XDG_CACHE_HOME/mongo-capsule or ~/.cache/mongo-capsule)
  CI=true               never prompt; install system packages with apt-get when running as root`);
  process.exit(0);
}

function flagValues(name) {
  const argv = process.argv.slice(2);
  return argv.flatMap((a, i) => (a === name && argv[i + 1] ? [argv[i + 1]] : []));
}
const only = flagValues('--only');
const skip = flagValues('--skip');
// A mistyped step name would otherwise select nothing (or skip nothing) without a word.
for (const name of [...only, ...skip]) {
  if (name !== 'npm' && !STEPS.includes(name)) {
    console.error(`setup: unknown step ${JSON.stringify(name)}; the steps are npm, ${STEPS.join(', ')}`);
    process.exit(2);
  }
}

const cacheDir = defaultCacheDir();

const ctx = {
  root: ROOT,
  cacheDir,
  ci: process.env.CI === 'true',
  log: (msg) => console.log(`  ${msg}`),
  warn: (msg) => console.warn(`  warning: ${msg}`),
};

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: 'inherit', cwd: ROOT, ...opts });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${argv.join(' ')} failed with exit code ${r.status ?? r.signal}`);
  }
}

const strict = args.has('--strict');
const failures = [];
const skipped = [];
const started = Date.now();

if ((only.length === 0 || only.includes('npm')) && !skip.includes('npm')) {
  console.log('• npm dependencies');
  // npm ci when a lockfile exists keeps installs reproducible; the optional CSFLE addon may fail to
  // download its prebuilt binary offline, which npm tolerates; the libmongocrypt step builds it.
  run('npm', [existsSync(join(ROOT, 'package-lock.json')) ? 'ci' : 'install', '--no-audit', '--no-fund']);
}

for (const step of STEPS) {
  if (only.length > 0 && !only.includes(step)) continue;
  if (skip.includes(step)) continue;
  const file = join(ROOT, 'scripts', 'setup', `${step}.mjs`);
  if (!existsSync(file)) continue;
  console.log(`• ${step}`);
  const t0 = Date.now();
  const mod = await import(pathToFileURL(file).href);
  const required = strict || mod.required === true;
  try {
    await mod.default(ctx);
    ctx.log(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    const message = String(e?.message ?? e);
    if (required) {
      failures.push(step);
      console.error(`  failed: ${message}`);
      continue;
    }
    const [first, ...detail] = message.split('\n');
    // The first line names what is missing and how to get it; the rest (build output) stays above the summary.
    if (detail.length > 0) console.warn(`  ${detail.join('\n  ').trim()}`);
    const disables = typeof mod.disables === 'string' ? mod.disables : 'an optional feature (the step declares no `disables`)';
    skipped.push(`skipped ${step}. Disables: ${disables}. To get it: ${first}`);
    console.warn('  skipped (optional; see the summary at the end)');
  }
}

console.log(`setup finished in ${((Date.now() - started) / 1000).toFixed(0)} s`);
for (const line of skipped) console.warn(`setup: ${line}`);
if (failures.length > 0) {
  console.error(`setup: ${failures.length} step(s) failed: ${failures.join(', ')}`);
  console.error('mongo-capsule itself needs these steps: fix what the step above reports and rerun `npm run setup`.');
  process.exit(1);
}
