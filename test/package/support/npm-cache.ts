/**
 * Can `npm ci --offline` install a lockfile from this npm cache? Asked of npm itself (`npm cache ls`, one call),
 * before test/package/pack.test.ts spends a build on it: a machine whose npm cache was emptied (or never filled by
 * an install of this checkout) cannot run that test, and should say so rather than fail.
 *
 * The lockfile records no download addresses (`resolved`), so an offline install reads, for each package, its
 * registry document (to find the tarball) and the tarball from the cache; both are cache keys that npm lists.
 */
import { spawnSync } from 'node:child_process';

export interface LockedPackage {
  name: string;
  version: string;
  optional: boolean;
}

/** The registry packages a lockfile's `packages` map installs (not the root, links or local files). */
export function lockedPackages(packages: Record<string, { name?: unknown; version?: unknown; resolved?: unknown; link?: unknown; optional?: unknown }>): LockedPackage[] {
  return Object.entries(packages)
    .filter(([path, e]) => path !== '' && e.link !== true && typeof e.version === 'string' && !(typeof e.resolved === 'string' && e.resolved.startsWith('file:')))
    .map(([path, e]) => ({ name: typeof e.name === 'string' ? e.name : path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length), version: e.version as string, optional: e.optional === true }));
}

/** The cache keys npm stores a package's registry document and tarball under. */
export function cacheKeys(registry: string, pkg: { name: string; version: string }): { document: string; tarball: string } {
  const base = registry.endsWith('/') ? registry : `${registry}/`;
  const unscoped = pkg.name.startsWith('@') ? pkg.name.slice(pkg.name.indexOf('/') + 1) : pkg.name;
  return {
    document: `make-fetch-happen:request-cache:${base}${pkg.name.replace('/', '%2f')}`,
    tarball: `make-fetch-happen:request-cache:${base}${pkg.name}/-/${unscoped}-${pkg.version}.tgz`,
  };
}

export type OfflineProbe =
  | { ok: true; checked: number }
  | { ok: false; reason: string; missing: string[] }
  | { ok: 'unknown'; reason: string };

/**
 * Whether every non-optional package is in the npm cache at `cache`. `env` is the environment npm runs with
 * (its registry setting decides the keys). When npm cannot tell (`npm cache ls` fails), the answer is 'unknown':
 * the caller runs the install and reports what npm says.
 */
export function probeOfflineInstall(packages: readonly LockedPackage[], cache: string, env: NodeJS.ProcessEnv = process.env): OfflineProbe {
  const npmEnv = { ...env, npm_config_cache: cache, npm_config_update_notifier: 'false' };
  const registry = spawnSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', env: npmEnv });
  const ls = spawnSync('npm', ['cache', 'ls'], { encoding: 'utf8', env: npmEnv, maxBuffer: 256 * 1024 * 1024 });
  if (registry.status !== 0 || ls.status !== 0) {
    return { ok: 'unknown', reason: `\`npm cache ls\` failed (exit ${ls.status ?? ls.signal}): ${(ls.stderr || registry.stderr || '').trim().split('\n')[0]}` };
  }
  const keys = new Set(ls.stdout.split('\n').map((l) => l.trim()));
  const required = packages.filter((p) => !p.optional);
  const missing = required
    .filter((p) => {
      const k = cacheKeys(registry.stdout.trim(), p);
      return !keys.has(k.document) || !keys.has(k.tarball);
    })
    .map((p) => `${p.name}@${p.version}`);
  if (missing.length === 0) return { ok: true, checked: required.length };
  const shown = missing.slice(0, 3).join(', ');
  return {
    ok: false,
    missing,
    reason:
      `the npm cache (${cache}) does not hold ${missing.length} of the ${required.length} locked packages an offline install needs ` +
      `(${shown}${missing.length > 3 ? ', …' : ''}), so \`npm ci --offline\` would fail with ENOTCACHED; ` +
      'run `npm ci` in this checkout with the registry reachable to fill it',
  };
}
