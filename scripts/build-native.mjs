#!/usr/bin/env node
// Builds the native NTRU addon in release mode (or restores it from the cache) and installs native/*.node.
import { defaultCacheDir } from './lib/cache-dir.mjs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNativeAddons } from './setup/native.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE_DIR = defaultCacheDir();

const args = process.argv.slice(2);
if (args.includes('--help')) {
  console.log(`Usage: npm run build:native [-- --force]

Builds native/ (the NTRU addon) with \`cargo build --release\`, once per parameter set, and installs
native/ntru-hps-4096-821.node and native/ntru-hrss-701.node. Results are cached under
${join(CACHE_DIR, 'native')} (MONGO_CAPSULE_CACHE overrides the cache directory).

  --force   rebuild even when the cache has a build for the current sources and compiler`);
  process.exit(0);
}
const unknown = args.filter((a) => a !== '--force');
if (unknown.length > 0) {
  console.error(`build-native: unknown argument ${unknown[0]} (see --help)`);
  process.exit(2);
}

try {
  const t0 = Date.now();
  const { cached } = await buildNativeAddons({
    root: ROOT,
    cacheDir: CACHE_DIR,
    log: (msg) => console.log(`build-native: ${msg}`),
    force: args.includes('--force'),
  });
  console.log(`build-native: ${cached ? 'restored' : 'built'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
} catch (e) {
  console.error(`build-native: ${e?.stderr?.trim() || e?.message || e}`);
  process.exit(1);
}
