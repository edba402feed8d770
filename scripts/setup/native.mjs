// Setup step and shared build logic for the native NTRU addon (native/, a napi-rs crate over ntrust-native).
// Plain Node on purpose, like scripts/setup.mjs; scripts/build-native.mjs (`npm run build:native`) calls the
// same buildNativeAddons() below.
//
// ntrust-native compiles one NTRU parameter set per build (a cargo feature), so the crate is built once per
// variant and each library is installed as native/<suite id>.node, where src/crypto/ntru.ts looks for it.
// Built libraries are cached outside the repository under <cache>/native/<key>/, where the key hashes
// everything that determines the output: the crate's manifest, lockfile, build script and sources, the
// compiler (`rustc -vV`: version and host), RUSTFLAGS, the variants and the platform. A cache hit only copies files.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { delimiter, join, relative } from 'node:path';

/** Optional (see scripts/setup.mjs): without the addon, what stops working. */
export const disables = 'the NTRU suites (ntru-hps-4096-821, ntru-hrss-701) and their tests; ML-KEM and X-Wing need no addon';

/** One library per NTRU parameter set: the crate feature that selects it and the suite id it serves. */
export const NATIVE_VARIANTS = [
  { suite: 'ntru-hps-4096-821', feature: 'hps4096821' },
  { suite: 'ntru-hrss-701', feature: 'hrss701' },
];
const CRATE_LIB = 'mongo_capsule_ntru';
const CACHE_FORMAT = 'mongo-capsule-native-cache-v1';
/** Cache entries kept (newest first); older builds are removed after a new one is stored. */
const KEEP_ENTRIES = 3;
// The napi crates need Rust 1.88 (native/Cargo.toml `rust-version`); Debian 12's packaged rustc is 1.63.
const MIN_RUST = [1, 88];
const RUST_HINT =
  `install Rust ${MIN_RUST.join('.')} or newer with rustup (https://rustup.rs: ` +
  '`curl --proto =https --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal`), then rerun';

/** The file name cargo gives a cdylib on this platform. */
function cdylibName() {
  if (process.platform === 'win32') return `${CRATE_LIB}.dll`;
  if (process.platform === 'darwin') return `lib${CRATE_LIB}.dylib`;
  return `lib${CRATE_LIB}.so`;
}

/** rustup installs into ~/.cargo/bin, which non-login shells (CI) often lack on PATH. */
function toolEnv() {
  const cargoBin = join(process.env.CARGO_HOME ?? join(homedir(), '.cargo'), 'bin');
  const path = process.env.PATH ?? '';
  if (!existsSync(cargoBin) || path.split(delimiter).includes(cargoBin)) return process.env;
  return { ...process.env, PATH: `${path}${delimiter}${cargoBin}` };
}

function capture(cmd, args, env) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env });
  if (r.error?.code === 'ENOENT') throw new Error(`${cmd} not found: ${RUST_HINT}`);
  if (r.error) throw new Error(`${cmd} ${args.join(' ')} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout.trim();
}

function listFiles(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : []))
    .sort();
}

/** The cache key: a SHA-256 over every input that can change the built libraries. */
export function nativeCacheKey(root, rustcVersion) {
  const crate = join(root, 'native');
  const files = [join(crate, 'Cargo.toml'), join(crate, 'Cargo.lock'), join(crate, 'build.rs'), ...listFiles(join(crate, 'src'))];
  const h = createHash('sha256');
  const field = (s) => h.update(`${Buffer.byteLength(s)}:${s}\n`);
  field(CACHE_FORMAT);
  field(`${process.platform}-${process.arch}`);
  field(rustcVersion);
  field(`RUSTFLAGS=${process.env.RUSTFLAGS ?? ''}`);
  field(JSON.stringify(NATIVE_VARIANTS));
  for (const file of files) {
    field(relative(crate, file).split('\\').join('/'));
    const data = readFileSync(file);
    h.update(`${data.length}:`).update(data).update('\n');
  }
  return h.digest('hex').slice(0, 32);
}

/** Loads a freshly built library and checks that it implements the parameter set it is named after. */
function checkArtifact(file, suite) {
  const addon = createRequire(import.meta.url)(file);
  const actual = addon.parameterSet?.().suite;
  if (actual !== suite) throw new Error(`${file} implements ${actual ?? 'nothing known'}, expected ${suite}`);
}

/** Removes all but the newest KEEP_ENTRIES finished entries; `keep` (the one just stored) always stays. */
function pruneCache(dir, keep, log) {
  const entries = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && /^[0-9a-f]{32}$/.test(e.name) && e.name !== keep)
    .map((e) => ({ name: e.name, mtime: statSync(join(dir, e.name)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const old of entries.slice(KEEP_ENTRIES - 1)) {
    rmSync(join(dir, old.name), { recursive: true, force: true });
    log(`removed old cache entry ${old.name}`);
  }
}

/** Copies via a temporary name and renames, so a process that has the old library loaded is unaffected. */
function installFile(from, to) {
  const tmp = `${to}.${process.pid}.tmp`;
  copyFileSync(from, tmp);
  renameSync(tmp, to);
}

/**
 * Builds (or restores from the cache) one library per NTRU variant and installs them as native/<suite>.node.
 * @param {{ root: string, cacheDir: string, log: (m: string) => void, force?: boolean }} options
 * @returns {Promise<{ key: string, cached: boolean, files: string[] }>}
 */
export async function buildNativeAddons({ root, cacheDir, log, force = false }) {
  const env = toolEnv();
  capture('cargo', ['--version'], env);
  const rustc = capture('rustc', ['-vV'], env);
  const version = /^rustc (\d+)\.(\d+)/.exec(rustc);
  if (version === null) throw new Error(`could not read the Rust version from \`rustc -vV\`: ${rustc.split('\n')[0]}`);
  const [major, minor] = [Number(version[1]), Number(version[2])];
  if (major < MIN_RUST[0] || (major === MIN_RUST[0] && minor < MIN_RUST[1])) {
    throw new Error(`${rustc.split('\n')[0]} is too old: ${RUST_HINT}`);
  }
  const key = nativeCacheKey(root, rustc);
  const entry = join(cacheDir, 'native', key);
  const names = NATIVE_VARIANTS.map((v) => `${v.suite}.node`);
  const installed = names.map((n) => join(root, 'native', n));

  const hit = !force && names.every((n) => existsSync(join(entry, n)));
  if (hit) {
    log(`cache hit: ${entry}`);
  } else {
    const manifest = join(root, 'native', 'Cargo.toml');
    const targetDir = join(root, 'native', 'target');
    const staging = `${entry}.${process.pid}.tmp`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    try {
      for (const v of NATIVE_VARIANTS) {
        log(`cargo build --release (${v.suite})`);
        // Sequential on purpose: one cargo build at a time, and each overwrites the same output library.
        const r = spawnSync(
          'cargo',
          ['build', '--release', '--locked', '--manifest-path', manifest, '--target-dir', targetDir, '--no-default-features', '--features', v.feature],
          { stdio: ['ignore', 'inherit', 'inherit'], env },
        );
        if (r.error) throw new Error(`cargo build could not start: ${r.error.message}`);
        if (r.status !== 0) throw new Error(`cargo build --release --features ${v.feature} failed with exit code ${r.status ?? r.signal}`);
        const out = join(staging, `${v.suite}.node`);
        copyFileSync(join(targetDir, 'release', cdylibName()), out);
        checkArtifact(out, v.suite);
      }
      writeFileSync(
        join(staging, 'manifest.json'),
        `${JSON.stringify({ key, rustc: rustc.split('\n')[0], variants: NATIVE_VARIANTS, builtAt: new Date().toISOString() }, null, 2)}\n`,
      );
      rmSync(entry, { recursive: true, force: true });
      renameSync(staging, entry);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    log(`cached as ${key}`);
    pruneCache(join(cacheDir, 'native'), key, log);
  }

  names.forEach((n, i) => installFile(join(entry, n), installed[i]));
  for (const file of installed) log(`installed ${relative(root, file)} (${(statSync(file).size / 1024).toFixed(0)} KiB)`);
  return { key, cached: hit, files: installed };
}

export default async function native(ctx) {
  await buildNativeAddons({ root: ctx.root, cacheDir: ctx.cacheDir, log: ctx.log });
}
