#!/usr/bin/env node
// `npm run bench`: the benchmarks (bench/index.ts) inside the same private keyring session as the tests, so the
// OS-keychain rows measure a real Secret Service. Extra arguments select modules (`npm run bench -- crypto keys`).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInKeyringSession } from './lib/keyring-session.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg) => console.error(`[bench] ${msg}`);

if (!existsSync(join(ROOT, 'node_modules', 'tsx'))) {
  log('tsx is not installed: run `npm run setup` (or `npm ci`) first');
  process.exit(1);
}
const code = await runInKeyringSession([process.execPath, '--import', 'tsx', join('bench', 'index.ts'), ...process.argv.slice(2)], { cwd: ROOT, log: (m) => log(`benchmarks ${m}`) });
process.exit(code);
