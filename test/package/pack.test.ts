/**
 * The package as a user gets it: `npm pack` (which runs the build through `prepare`), the tarball installed
 * offline into a throwaway project, then the library from plain Node ESM, CommonJS and type-checked
 * TypeScript (moduleResolution nodenext and bundler), and the CLI through `npx --no-install` and
 * node_modules/.bin, with a keygen/wrap/unwrap round trip and the CLI's cold start printed.
 *
 * Offline: the throwaway project's lockfile pins the very versions this checkout's package-lock.json holds,
 * so `npm ci --offline` takes every tarball from the local npm cache that installed this checkout and never
 * asks the registry (a fresh resolution would need registry metadata the cache may not hold).
 * The build runs in a staging copy, never in this checkout's dist/, which other test files may be using.
 * A machine whose npm cache does not hold those packages (an emptied cache, a fresh machine) cannot install
 * offline: that is asked of `npm cache ls` first, and the test skips with the reason instead of failing the build.
 */
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeIf } from '../support/skip.ts';
import { lockedPackages, probeOfflineInstall } from './support/npm-cache.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; dependencies: Record<string, string>; optionalDependencies?: Record<string, string>; engines: { node: string } };

function npmVersion(): string | undefined {
  const r = spawnSync('npm', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}
const npm = npmVersion();
const cache = npm === undefined ? '' : execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dev?: boolean;
  optional?: boolean;
  devOptional?: boolean;
  [key: string]: unknown;
}

/** The throwaway project's lockfile: mongo-capsule from the tarball, everything else as this checkout pins it. */
function throwawayLock(tarball: string, integrity: string, devPackages: readonly string[]): object {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const packages: Record<string, LockEntry> = {
    '': { name: 'throwaway', version: '1.0.0', dependencies: { [pkg.name]: `file:${tarball}` }, devDependencies: Object.fromEntries(devPackages.map((p) => [p, lock.packages[`node_modules/${p}`]!.version!])) },
    [`node_modules/${pkg.name}`]: {
      version: pkg.version,
      resolved: `file:${tarball}`,
      integrity,
      license: 'Apache-2.0',
      dependencies: pkg.dependencies,
      optionalDependencies: pkg.optionalDependencies,
      bin: { 'mongo-capsule': 'bin/mongo-capsule' },
      engines: pkg.engines,
    },
  };
  const devClosure = new Set(devPackages.map((p) => `node_modules/${p}`));
  for (const p of devPackages) for (const dep of Object.keys((lock.packages[`node_modules/${p}`]!.dependencies as Record<string, string> | undefined) ?? {})) devClosure.add(`node_modules/${dep}`);
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '') continue;
    if (entry.dev === true && !devClosure.has(path)) continue;
    const { dev: _dev, devOptional, ...rest } = entry;
    const copy: LockEntry = { ...rest };
    if (devClosure.has(path)) copy.dev = true;
    else if (devOptional === true) copy.optional = true;
    packages[path] = copy;
  }
  return { name: 'throwaway', version: '1.0.0', lockfileVersion: 3, requires: true, packages };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_cache: cache, npm_config_update_notifier: 'false', ...env }, maxBuffer: 64 * 1024 * 1024 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status ?? r.signal}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** Median wall time of `runs` fresh processes, in milliseconds. */
function coldStart(cmd: string, args: string[], cwd: string, runs = 5): number {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    ok(run(cmd, args, cwd), `${cmd} ${args.join(' ')}`);
    samples.push(performance.now() - t0);
  }
  return samples.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

/** Dev packages the throwaway project type-checks with. */
const DEV = ['typescript', '@types/node'];

// Everything but the tarball of mongo-capsule itself (a local file) comes from the npm cache.
const offline =
  npm === undefined
    ? undefined
    : probeOfflineInstall(lockedPackages((throwawayLock('probe.tgz', 'sha512-', DEV) as { packages: Record<string, LockEntry> }).packages), cache);
if (offline?.ok === 'unknown') console.warn(`[info] could not ask the npm cache first (${offline.reason}); the offline install runs and says what it lacks`);

describeIf(
  npm !== undefined && offline?.ok !== false,
  npm === undefined ? 'npm is not on PATH: the package is not packed and installed like a user would' : `the package is not packed and installed offline: ${offline?.ok === false ? offline.reason : ''}`,
)(`the packed package, installed into a throwaway project (npm ${npm})`, () => {
  let temp = '';
  let staging = '';
  let app = '';
  let tarball = '';
  let files: string[] = [];

  afterAll(() => {
    if (temp !== '') rmSync(temp, { recursive: true, force: true });
  });

  beforeAll(() => {
    // Made here, not while the file is collected, so that a skipped run leaves no directory behind.
    temp = mkdtempSync(join(tmpdir(), 'mongo-capsule-pack-'));
    staging = join(temp, 'staging');
    app = join(temp, 'app');
    // The files `npm pack` needs to run `prepare` (the build) and to pack; node_modules only provides tsc and types.
    mkdirSync(staging);
    for (const f of ['package.json', 'README.md', 'tsconfig.json', 'tsconfig.build.json', 'tsconfig.build-cli.json', 'bin', 'docs', 'src', 'scripts/build.mjs', 'LICENSE']) {
      cpSync(join(ROOT, f), join(staging, f), { recursive: true });
    }
    symlinkSync(join(ROOT, 'node_modules'), join(staging, 'node_modules'), 'dir');
    const packed = JSON.parse(ok(run('npm', ['pack', '--json', '--pack-destination', temp], staging, { npm_config_loglevel: 'error' }), 'npm pack')) as Array<{ filename: string; integrity: string; files: Array<{ path: string }> }>;
    tarball = join(temp, packed[0]!.filename);
    files = packed[0]!.files.map((f) => f.path).sort();

    mkdirSync(app);
    const lock = throwawayLock(tarball, packed[0]!.integrity, DEV) as { packages: Record<string, { devDependencies: Record<string, string> }> };
    writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: 'throwaway', version: '1.0.0', private: true, type: 'module', dependencies: { [pkg.name]: `file:${tarball}` }, devDependencies: lock.packages['']!.devDependencies }, null, 2)}\n`);
    writeFileSync(join(app, 'package-lock.json'), `${JSON.stringify(lock, null, 2)}\n`);
    ok(run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--cache', cache], app), 'npm ci --offline in the throwaway project');
  }, 240_000);

  it('holds the compiled library, the CLI and the docs, and no tests, sources, caches, state, build output or secrets', () => {
    const allowed = /^(package\.json|README\.md|LICENSE|bin\/mongo-capsule|dist\/.+\.(js|mjs|d\.ts|d\.mts)|docs\/[\w.-]+\.(md|json))$/;
    expect(files.filter((f) => !allowed.test(f))).toEqual([]);
    expect(files).toEqual(expect.arrayContaining(['package.json', 'LICENSE', 'bin/mongo-capsule', 'dist/index.js', 'dist/index.d.ts', 'dist/cli.js']));
    for (const bad of [/^test\//, /^src\//, /\.node$/, /\.secret\.json$/, /\.(pem|key|keyfile)$/, /\.pulumi-state/, /(^|\/)\.env$/, /node_modules/, /cache/i, /\.tsbuildinfo$/]) {
      expect(files.filter((f) => bad.test(f)), String(bad)).toEqual([]);
    }
    const installed = join(app, 'node_modules', pkg.name);
    for (const f of files) {
      const text = readFileSync(join(installed, f), 'utf8');
      expect(text, f).not.toMatch(/-----BEGIN [A-Z ]*PRIVATE KEY-----/);
      // A serialized secret identity (keygen --secret-out) has these fields with base64 values.
      expect(text, f).not.toMatch(/"kemSecretKey"\s*:\s*"[A-Za-z0-9+/]{40}/);
    }
  });

  it('needs no tsx: not a dependency, and the CLI runs with it absent', () => {
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules', pkg.name, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(manifest.dependencies)).not.toContain('tsx');
    expect(existsSync(join(app, 'node_modules', 'tsx'))).toBe(false);
  });

  it('loads in plain Node ESM: wrapKey/unwrapKey round trip and typed errors', () => {
    writeFileSync(
      join(app, 'app.mjs'),
      `import { CapsuleAuthError, KeyManager, MongoCapsuleError, generateCmk, generateIdentity, openEncryptedClient, toPublicIdentity, unwrapKey, wrapKey } from 'mongo-capsule';
const owner = generateIdentity('ml-kem-1024', { name: 'app' });
const cmk = generateCmk();
const capsule = wrapKey(cmk, toPublicIdentity(owner), { name: 'app', signer: owner });
const back = unwrapKey(capsule, owner);
let error;
try { unwrapKey(capsule, generateIdentity('ml-kem-1024', { name: 'app' })); } catch (e) { error = e; }
console.log(JSON.stringify({
  roundTrip: Buffer.from(back).equals(Buffer.from(cmk)),
  typed: error instanceof CapsuleAuthError && error instanceof MongoCapsuleError,
  code: error?.code,
  api: typeof KeyManager === 'function' && typeof openEncryptedClient === 'function',
}));
`,
    );
    expect(JSON.parse(ok(run(process.execPath, ['app.mjs'], app), 'node app.mjs'))).toEqual({ roundTrip: true, typed: true, code: 'CAPSULE_AUTH', api: true });
  });

  it('loads from CommonJS with require() (Node >= 20.19 loads ES modules without top-level await)', () => {
    writeFileSync(join(app, 'app.cjs'), "const m = require('mongo-capsule');\nconsole.log(typeof m.wrapKey, typeof m.KeyManager, typeof m.CapsuleAuthError);\n");
    expect(ok(run(process.execPath, ['app.cjs'], app), 'node app.cjs').trim()).toBe('function function function');
  });

  for (const [name, compilerOptions] of [
    ['nodenext', { module: 'nodenext', moduleResolution: 'nodenext' }],
    ['bundler', { module: 'esnext', moduleResolution: 'bundler' }],
  ] as const) {
    it(`type-checks a TypeScript file with moduleResolution ${name}`, () => {
      writeFileSync(
        join(app, 'check.ts'),
        `import { CapsuleAuthError, isMongoCapsuleError, KeyManager, generateCmk, generateIdentity, toPublicIdentity, unwrapKey, wrapKey, type PublicIdentity } from 'mongo-capsule';
const owner = generateIdentity('ml-kem-1024', { name: 'app' });
const pub: PublicIdentity = toPublicIdentity(owner);
const capsule: Uint8Array = wrapKey(generateCmk(), pub, { name: 'app' });
try {
  unwrapKey(capsule, owner);
} catch (e) {
  if (e instanceof CapsuleAuthError) console.log(e.code satisfies string, e.hint);
  else if (isMongoCapsuleError(e)) console.log(e.code);
}
export const keys: KeyManager = new KeyManager({ cacheTtlMs: 0 });
// @ts-expect-error: a capsule is bytes, and the types say so
wrapKey('not bytes', pub, { name: 'app' });
`,
      );
      writeFileSync(join(app, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions: { target: 'es2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], ...compilerOptions }, files: ['check.ts'] }));
      ok(run(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', `tsconfig.${name}.json`], app), `tsc (${name})`);
    });
  }

  it('runs the CLI from the project: --help, --version, and a keygen/wrap/unwrap round trip', () => {
    const help = ok(run('npx', ['--no-install', 'mongo-capsule', '--help'], app), 'npx --no-install mongo-capsule --help');
    expect(help).toContain('Usage: mongo-capsule <command>');
    expect(help).toContain('--version');
    expect(ok(run('npx', ['--no-install', 'mongo-capsule', '--version'], app), 'npx --version').trim()).toBe(pkg.version);
    const bin = join(app, 'node_modules', '.bin', 'mongo-capsule');
    expect(ok(run(bin, ['--version'], app), '.bin/mongo-capsule --version').trim()).toBe(pkg.version);

    ok(run(bin, ['keygen', '--pub-out', 'app.pub.json', '--secret-out', 'app.secret.json'], app), 'keygen');
    const cmk = Buffer.alloc(96, 7);
    writeFileSync(join(app, 'cmk.bin'), cmk, { mode: 0o600 });
    ok(run(bin, ['wrap', '--pub', 'app.pub.json', '--sign', 'app.secret.json', '--in', 'cmk.bin', '--out', 'app.capsule'], app), 'wrap');
    ok(run(bin, ['unwrap', '--secret', 'app.secret.json', '--in', 'app.capsule', '--out', 'back.bin'], app), 'unwrap');
    expect(readFileSync(join(app, 'back.bin')).equals(cmk)).toBe(true);
  });

  it('reports CSFLE clearly when the optional addon did not install', (ctx) => {
    const r = run(process.execPath, ['--input-type=module', '-e', "import { csfleStatus } from 'mongo-capsule'; console.log(JSON.stringify(csfleStatus()));"], app);
    const status = JSON.parse(ok(r, 'csfleStatus')) as { available: boolean; reason?: string };
    if (status.available) {
      const why = 'mongodb-client-encryption installed in the throwaway project, so the path without it is not exercised here';
      console.warn(`[skipped] ${why}`);
      ctx.skip(why);
    }
    expect(status.reason).toMatch(/mongodb-client-encryption/);
    const open = run(process.execPath, ['--input-type=module', '-e', "import { openEncryptedClient } from 'mongo-capsule'; await openEncryptedClient({ uri: 'mongodb://127.0.0.1:9', unwrap: async () => new Uint8Array(96) });"], app);
    expect(open.status).not.toBe(0);
    expect(open.stderr).toMatch(/needs client-side field level encryption, but mongodb-client-encryption cannot be loaded/);
  });

  it('tells an installed application how to get CSFLE, without the checkout-only `npm run setup`', () => {
    const r = run(process.execPath, ['--input-type=module', '-e', "import { csfleInstallHint } from 'mongo-capsule'; console.log(csfleInstallHint());"], app);
    const hint = ok(r, 'csfleInstallHint');
    expect(hint).toContain(`npm install mongodb-client-encryption@${pkg.optionalDependencies!['mongodb-client-encryption']}`);
    expect(hint).not.toMatch(/npm run setup/);
  });

  it('starts fast (printed, not asserted)', () => {
    const bin = join(app, 'node_modules', '.bin', 'mongo-capsule');
    const help = coldStart(bin, ['--help'], app);
    const version = coldStart(bin, ['--version'], app);
    const npx = coldStart('npx', ['--no-install', 'mongo-capsule', '--version'], app, 3);
    console.warn(`[info] installed CLI cold start: --help ${help.toFixed(0)} ms, --version ${version.toFixed(0)} ms, through npx --no-install ${npx.toFixed(0)} ms (median)`);
    expect(help).toBeGreaterThan(0);
  });
});

interface Semver {
  satisfies(version: string, range: string): boolean;
  minVersion(range: string): { version: string } | null;
}
function loadSemver(): Semver | undefined {
  try {
    // Not a dependency of ours: npm's own range semantics, from the tree npm installed here.
    return createRequire(join(ROOT, 'package.json'))('semver') as Semver;
  } catch {
    return undefined;
  }
}
const semver = loadSemver();

describeIf(semver !== undefined, 'semver is not installed in node_modules: engines ranges not checked')('package.json engines', () => {
  it('every locked package installed by `npm ci` accepts the lowest Node version package.json promises', () => {
    const semver = loadSemver()!;
    const lowest = semver.minVersion(pkg.engines.node)!.version;
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; engines?: { node?: string } | string[] }> };
    const refused = Object.entries(lock.packages)
      .filter(([path, e]) => path !== '' && !Array.isArray(e.engines) && e.engines?.node !== undefined && !semver.satisfies(lowest, e.engines.node))
      .map(([path, e]) => `${path}@${e.version} wants node ${(e.engines as { node: string }).node}`);
    expect(refused).toEqual([]);
  });
});
