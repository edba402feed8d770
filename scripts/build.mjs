#!/usr/bin/env node
// `npm run build` (and `prepare`, so `npm pack` and installs from git get it): compiles src/ into dist/ as ESM
// with declarations. Two programs because only the library (src/index.ts) has a public type surface; the CLI
// (src/cli.ts, run by bin/mongo-capsule) is compiled without declarations. dist/ is emptied first so a removed
// source never leaves a stale module behind.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(ROOT, 'dist');

let tsc;
try {
  tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  // An installed package already holds dist/; only a checkout without dev dependencies gets here.
  if (existsSync(join(dist, 'index.js'))) process.exit(0);
  console.error('build: typescript is not installed: run `npm install` in the checkout first');
  process.exit(1);
}

rmSync(dist, { recursive: true, force: true });
for (const project of ['tsconfig.build.json', 'tsconfig.build-cli.json']) {
  const r = spawnSync(process.execPath, [tsc, '-p', project], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) {
    rmSync(dist, { recursive: true, force: true });
    console.error(`build: tsc -p ${project} failed`);
    process.exit(r.status ?? 1);
  }
}

// Plain JavaScript modules under src/ (shared with the plain-Node scripts, e.g. src/uri-redaction.mjs) are not
// compiled by tsc: copy them and their declarations beside the compiled modules that import them.
function copyPlainModules(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const from = join(dir, entry.name);
    if (entry.isDirectory()) copyPlainModules(from);
    else if (entry.name.endsWith('.mjs') || entry.name.endsWith('.d.mts')) {
      const to = join(dist, relative(join(ROOT, 'src'), from));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(from, to);
    }
  }
}
copyPlainModules(join(ROOT, 'src'));
