// Setup step: builds the optional CSFLE addon `mongodb-client-encryption` against a real libmongocrypt and installs
// it into node_modules. Plain Node like the other steps.
//
// Why it is built here (DESIGN.md §5): its npm install script downloads a prebuilt addon, which fails offline, then
// falls back to node-gyp, which needs libmongocrypt; it stays an optional dependency so `npm ci` passes anyway.
// - headers: Debian sid's libmongocrypt-dev (bookworm's 1.7 is too old), fetched download-only through a private,
//   temporary apt configuration; the system's sources, lists and package state are never touched;
// - runtime library: the self-contained `pymongocrypt/libmongocrypt.so` from the PyPI pymongocrypt wheel (sid's
//   own library needs glibc 2.38); its version is checked against the addon's minimum;
// - the addon links dynamically (SONAME libmongocrypt.so.0) and finds the library next to itself through
//   rpath $ORIGIN, so the built package is self-contained and can be copied as a whole.
// The built package is cached per (addon, pymongocrypt, platform); since `npm ci` wipes node_modules, a warm run
// only copies the cached build back, without any download or compile.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { arch, platform } from 'node:process';
import { join } from 'node:path';

/** Required (see scripts/setup.mjs): CSFLE, the encrypted client, is what mongo-capsule is for. */
export const required = true;

export const ADDON_PACKAGE = 'mongodb-client-encryption';
export const ADDON_VERSION = '7.2.1';
// Pinned so the cache key names exactly what is inside; its wheel embeds libmongocrypt 1.21.0.
export const PYMONGOCRYPT_VERSION = '1.21.2';
// mongodb-client-encryption 7.2.x needs at least this libmongocrypt (it is built and tested against 1.20.1).
export const MIN_LIBMONGOCRYPT = '1.15.0';
const DEBIAN_SUITE = 'sid';
const DEBIAN_MIRROR = 'http://deb.debian.org/debian';
const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
// What mongodb-client-encryption 7.2.1 declares; it is needed only to compile.
const NODE_ADDON_API_RANGE = '^8.6.0';
const MARKER = '.mongo-capsule-build.json';

const WHEEL_PLATFORM = { x64: 'manylinux2014_x86_64', arm64: 'manylinux2014_aarch64' };
const DEB_ARCH = { x64: 'amd64', arm64: 'arm64' };

/** Cache directory of one build; the name says what is inside. */
export function addonCacheDir(cacheDir) {
  return join(cacheDir, 'libmongocrypt', `${ADDON_PACKAGE}-${ADDON_VERSION}+pymongocrypt-${PYMONGOCRYPT_VERSION}-${platform}-${arch}`);
}

function run(cmd, args, { cwd, env, what } = {}) {
  const r = spawnSync(cmd, args, { cwd, env: env ?? process.env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new Error(`${what ?? cmd}: ${cmd} could not start (${r.error.code ?? r.error.message})`);
  if (r.status !== 0) {
    const detail = `${r.stderr ?? ''}\n${r.stdout ?? ''}`.trim().split('\n').slice(-20).join('\n    ');
    throw new Error(`${what ?? cmd} failed (${cmd} exit code ${r.status ?? r.signal}):\n    ${detail}`);
  }
  return r.stdout;
}

function compareVersions(a, b) {
  const pa = a.split(/[.+-]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(/[.+-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

/** Loads the addon in a child process (a broken .node can abort the loading process) and returns libmongocrypt's version. */
export function probeAddon(packageDir) {
  const script = `const m = require(${JSON.stringify(packageDir)}); process.stdout.write(String(m.MongoCrypt.libmongocryptVersion));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, error: (r.stderr || '').trim().split('\n').find((l) => /Error/.test(l)) ?? 'load failed' };
  return { ok: true, version: r.stdout.trim() };
}

function checkPrerequisites() {
  const missing = [];
  const have = (cmd, args = ['--version']) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return !r.error && r.status === 0;
  };
  if (!have('apt-get')) missing.push('apt-get (a Debian-based system; elsewhere provide libmongocrypt headers ≥ 1.15 yourself)');
  if (!have('dpkg', ['--version'])) missing.push('dpkg');
  if (!existsSync(DEBIAN_KEYRING)) missing.push(`${DEBIAN_KEYRING} (package debian-archive-keyring)`);
  if (!have('python3')) missing.push('python3');
  else if (!have('python3', ['-m', 'pip', '--version'])) missing.push('pip for python3 (package python3-pip)');
  if (!have('make')) missing.push('make');
  if (!have('g++')) missing.push('a C++ compiler (package g++)');
  if (!have('npm')) missing.push('npm');
  return missing;
}

/** Debian sid libmongocrypt-dev, download-only, with apt state kept in `work` and the system left alone. */
function fetchHeaders(work, log) {
  const aptDir = join(work, 'apt');
  for (const d of ['lists/partial', 'cache/archives/partial', 'sources.list.d', 'preferences.d']) mkdirSync(join(aptDir, d), { recursive: true });
  const debArch = DEB_ARCH[arch];
  writeFileSync(join(aptDir, 'sources.list'), `deb [arch=${debArch} signed-by=${DEBIAN_KEYRING}] ${DEBIAN_MIRROR} ${DEBIAN_SUITE} main\n`);
  writeFileSync(join(aptDir, 'status'), '');
  const opts = [
    `Dir::Etc::SourceList=${join(aptDir, 'sources.list')}`,
    `Dir::Etc::SourceParts=${join(aptDir, 'sources.list.d')}`,
    `Dir::Etc::Preferences=${join(aptDir, 'preferences')}`,
    `Dir::Etc::PreferencesParts=${join(aptDir, 'preferences.d')}`,
    `Dir::State::Lists=${join(aptDir, 'lists')}`,
    `Dir::State::status=${join(aptDir, 'status')}`,
    `Dir::Cache=${join(aptDir, 'cache')}`,
    'Acquire::Languages=none',
    // The private directories belong to the current user; apt's _apt sandbox user could not write them.
    'APT::Sandbox::User=root',
    'Debug::NoLocking=1',
  ].flatMap((o) => ['-o', o]);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  log(`apt-get update (private lists, ${DEBIAN_SUITE} only)`);
  run('apt-get', [...opts, '-q', 'update'], { env, what: `apt-get update for Debian ${DEBIAN_SUITE}` });
  const debDir = join(work, 'deb');
  mkdirSync(debDir);
  run('apt-get', [...opts, '-q', 'download', 'libmongocrypt-dev'], { cwd: debDir, env, what: 'apt-get download libmongocrypt-dev' });
  const deb = readdirSync(debDir).find((f) => f.endsWith('.deb'));
  if (!deb) throw new Error('apt-get download libmongocrypt-dev produced no .deb');
  const root = join(work, 'headers');
  run('dpkg', ['-x', join(debDir, deb), root], { what: 'dpkg -x libmongocrypt-dev' });
  const include = join(root, 'usr', 'include');
  for (const h of ['mongocrypt.h', 'mongocrypt-compat.h', 'mongocrypt-export.h', 'mongocrypt-config.h']) {
    if (!existsSync(join(include, 'mongocrypt', h))) throw new Error(`${deb} lacks include/mongocrypt/${h}`);
  }
  const version = deb.split('_')[1] ?? 'unknown';
  log(`headers: libmongocrypt-dev ${version}`);
  return { include, version };
}

/** The manylinux libmongocrypt.so embedded in the pymongocrypt wheel, with its version checked. */
function fetchRuntimeLibrary(work, log) {
  const wheelDir = join(work, 'wheel');
  const platformTag = WHEEL_PLATFORM[arch];
  if (!platformTag) throw new Error(`no pymongocrypt wheel for ${platform}-${arch}`);
  log(`pip download pymongocrypt==${PYMONGOCRYPT_VERSION} (${platformTag})`);
  run(
    'python3',
    ['-m', 'pip', 'download', '--disable-pip-version-check', '--no-deps', '--only-binary=:all:', '--platform', platformTag, '--dest', wheelDir, `pymongocrypt==${PYMONGOCRYPT_VERSION}`],
    { what: 'pip download pymongocrypt' },
  );
  const wheel = readdirSync(wheelDir).find((f) => f.endsWith('.whl'));
  if (!wheel) throw new Error('pip download produced no wheel');
  const unpacked = join(work, 'wheel-unpacked');
  run('python3', ['-m', 'zipfile', '-e', join(wheelDir, wheel), unpacked], { what: 'unpacking the pymongocrypt wheel' });
  const so = join(unpacked, 'pymongocrypt', 'libmongocrypt.so');
  if (!existsSync(so)) throw new Error(`${wheel} has no pymongocrypt/libmongocrypt.so (a source-only or changed wheel layout)`);
  // Ask the library itself; the wheel's own version number is not libmongocrypt's.
  const version = run(
    'python3',
    [
      '-c',
      'import ctypes,sys\nl=ctypes.CDLL(sys.argv[1])\nl.mongocrypt_version.restype=ctypes.c_char_p\nl.mongocrypt_version.argtypes=[ctypes.c_void_p]\nprint(l.mongocrypt_version(None).decode())',
      so,
    ],
    { what: 'reading the libmongocrypt version' },
  ).trim();
  if (compareVersions(version, MIN_LIBMONGOCRYPT) < 0) {
    throw new Error(`pymongocrypt ${PYMONGOCRYPT_VERSION} embeds libmongocrypt ${version}; ${ADDON_PACKAGE} ${ADDON_VERSION} needs ≥ ${MIN_LIBMONGOCRYPT}`);
  }
  log(`runtime library: libmongocrypt ${version} from ${wheel}`);
  return { so, version };
}

function buildAddon(work, headers, runtime, log) {
  const prefix = join(work, 'build-root');
  mkdirSync(join(prefix, 'node_modules'), { recursive: true });
  writeFileSync(join(prefix, 'package.json'), JSON.stringify({ name: 'mongo-capsule-addon-build', private: true }));
  // node-addon-api is needed at build time only (binding.gyp asks it for its include dir). A separate tree, so
  // the project's node_modules and lockfile are not touched.
  // Installed before the addon is unpacked: npm prunes what its package.json does not list.
  run('npm', ['install', '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund', `node-addon-api@${NODE_ADDON_API_RANGE}`], {
    cwd: prefix,
    what: 'npm install node-addon-api',
  });

  log(`npm pack ${ADDON_PACKAGE}@${ADDON_VERSION}`);
  const tgz = run('npm', ['pack', '--silent', `${ADDON_PACKAGE}@${ADDON_VERSION}`, '--pack-destination', work], { cwd: work, what: `npm pack ${ADDON_PACKAGE}` })
    .trim()
    .split('\n')
    .pop();
  const pkgDir = join(prefix, 'node_modules', ADDON_PACKAGE);
  mkdirSync(pkgDir);
  run('tar', ['-xzf', join(work, tgz), '-C', pkgDir, '--strip-components=1'], { what: `unpacking ${tgz}` });

  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  if (pkg.version !== ADDON_VERSION) throw new Error(`npm pack returned ${ADDON_PACKAGE} ${pkg.version}, expected ${ADDON_VERSION}`);

  // The library ships next to the addon, under its SONAME, found through rpath $ORIGIN at run time; the
  // unversioned symlink exists only for the link step (-lmongocrypt) and stays out of the package.
  const linkDir = join(work, 'link');
  mkdirSync(linkDir);
  cpSync(runtime.so, join(linkDir, 'libmongocrypt.so.0'));
  symlinkSync('libmongocrypt.so.0', join(linkDir, 'libmongocrypt.so'));

  log(`node-gyp rebuild (dynamic link against libmongocrypt ${runtime.version})`);
  const env = {
    ...process.env,
    npm_config_libmongocrypt_link_type: 'dynamic',
    CPPFLAGS: `-I${headers.include} ${process.env.CPPFLAGS ?? ''}`.trim(),
    // `$$` survives make, the single quotes survive the shell: the linker sees the literal $ORIGIN.
    LDFLAGS: `-L${linkDir} -Wl,-rpath,'$$ORIGIN' ${process.env.LDFLAGS ?? ''}`.trim(),
  };
  // `npm run rebuild` puts npm's own node-gyp on PATH, which honours npm's nodedir setting for Node's headers.
  run('npm', ['run', '--silent', 'rebuild'], { cwd: pkgDir, env, what: `building ${ADDON_PACKAGE}` });
  cpSync(runtime.so, join(pkgDir, 'build', 'Release', 'libmongocrypt.so.0'));

  // Keep only what runs: the compiled addon, the library, the JS, the package metadata.
  const release = join(pkgDir, 'build', 'Release');
  for (const entry of readdirSync(release)) {
    if (entry !== 'mongocrypt.node' && entry !== 'libmongocrypt.so.0') rmSync(join(release, entry), { recursive: true, force: true });
  }
  for (const entry of readdirSync(join(pkgDir, 'build'))) {
    if (entry !== 'Release') rmSync(join(pkgDir, 'build', entry), { recursive: true, force: true });
  }
  rmSync(join(pkgDir, 'node_modules'), { recursive: true, force: true });
  return pkgDir;
}

function install(cachedPackage, target) {
  // Copy beside the target, then swap, so an interrupted copy never leaves a half package in node_modules.
  const staging = `${target}.installing-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  cpSync(cachedPackage, staging, { recursive: true, verbatimSymlinks: true });
  rmSync(target, { recursive: true, force: true });
  renameSync(staging, target);
}

export default async function libmongocrypt(ctx) {
  if (platform !== 'linux') {
    ctx.log(`nothing to build on ${platform}: npm installs the prebuilt ${ADDON_PACKAGE} addon there`);
    return;
  }
  const target = join(ctx.root, 'node_modules', ADDON_PACKAGE);
  const cached = addonCacheDir(ctx.cacheDir);
  const cachedPackage = join(cached, 'package');

  if (existsSync(join(target, 'package.json')) && !existsSync(join(target, MARKER))) {
    // npm managed to install it (online, prebuilt binary): nothing to do if it actually loads.
    const probe = probeAddon(target);
    if (probe.ok) {
      ctx.log(`${ADDON_PACKAGE} from npm already loads (libmongocrypt ${probe.version})`);
      return;
    }
  }

  if (!existsSync(join(cachedPackage, MARKER))) {
    const missing = checkPrerequisites();
    if (missing.length > 0) throw new Error(`cannot build ${ADDON_PACKAGE}; missing: ${missing.join('; ')}`);
    mkdirSync(join(ctx.cacheDir, 'libmongocrypt'), { recursive: true });
    const work = mkdtempSync(join(ctx.cacheDir, 'libmongocrypt', 'build-'));
    try {
      const headers = fetchHeaders(work, ctx.log);
      const runtime = fetchRuntimeLibrary(work, ctx.log);
      const built = buildAddon(work, headers, runtime, ctx.log);
      const manifest = {
        package: `${ADDON_PACKAGE}@${ADDON_VERSION}`,
        libmongocrypt: runtime.version,
        runtimeFrom: `pymongocrypt ${PYMONGOCRYPT_VERSION} (PyPI wheel)`,
        headersFrom: `Debian ${DEBIAN_SUITE} libmongocrypt-dev ${headers.version}`,
        linkType: 'dynamic',
        builtAt: new Date().toISOString(),
        node: process.version,
      };
      writeFileSync(join(built, MARKER), `${JSON.stringify(manifest, null, 2)}\n`);
      const probe = probeAddon(built);
      if (!probe.ok) throw new Error(`the freshly built addon does not load: ${probe.error}`);
      rmSync(cached, { recursive: true, force: true });
      mkdirSync(cached, { recursive: true });
      // Rename last: the marker inside is what a later run trusts.
      renameSync(built, cachedPackage);
      ctx.log(`built and cached ${cached}`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  } else {
    ctx.log(`cached build: ${cached}`);
  }

  install(cachedPackage, target);
  const probe = probeAddon(target);
  if (!probe.ok) throw new Error(`${ADDON_PACKAGE} was installed from ${cached} but does not load: ${probe.error}; delete that directory and rerun \`npm run setup\``);
  const manifest = JSON.parse(readFileSync(join(target, MARKER), 'utf8'));
  ctx.log(`installed ${ADDON_PACKAGE} ${ADDON_VERSION} (libmongocrypt ${probe.version}; headers from ${manifest.headersFrom})`);
}
