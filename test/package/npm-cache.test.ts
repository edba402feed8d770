/**
 * The npm-cache probe of test/package/pack.test.ts agrees with npm: what it calls missing, `npm ci --offline`
 * refuses with ENOTCACHED, and what it calls present, `npm ci --offline` installs. And pack.test.ts itself, with
 * an empty npm cache, skips with that reason instead of failing (run as its own vitest, without the test server).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeIf } from '../support/skip.ts';
import { lockedPackages, probeOfflineInstall } from './support/npm-cache.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const npmOk = spawnSync('npm', ['--version'], { encoding: 'utf8' }).status === 0;
const realCache = npmOk ? spawnSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).stdout.trim() : '';

const temp = mkdtempSync(join(tmpdir(), 'mongo-capsule-npm-cache-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

// One scoped package without dependencies, exactly as this checkout locks it.
const NAME = '@scure/base';
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
const entry = lock.packages[`node_modules/${NAME}`]!;

/** `npm ci --offline` of a project holding only that package, against `cache`. */
function offlineInstall(cache: string) {
  const app = mkdtempSync(join(temp, 'app-'));
  const version = entry.version as string;
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'probe', version: '1.0.0', private: true, dependencies: { [NAME]: version } }));
  writeFileSync(
    join(app, 'package-lock.json'),
    JSON.stringify({ name: 'probe', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'probe', version: '1.0.0', dependencies: { [NAME]: version } }, [`node_modules/${NAME}`]: entry } }),
  );
  const r = spawnSync('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--cache', cache], { cwd: app, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const one = lockedPackages({ '': {}, [`node_modules/${NAME}`]: entry });

describeIf(npmOk, 'npm is not on PATH: the npm-cache probe is not checked')('the npm-cache probe of the pack test', () => {
  it('an empty npm cache: the probe names the missing package, and npm refuses the offline install with ENOTCACHED', () => {
    const empty = join(temp, 'empty-cache');
    mkdirSync(empty);
    const probe = probeOfflineInstall(one, empty);
    expect(probe).toMatchObject({ ok: false, missing: [`${NAME}@${entry.version as string}`] });
    expect(probe.ok === false && probe.reason).toMatch(/^the npm cache \(.*empty-cache\) does not hold 1 of the 1 locked packages an offline install needs \(@scure\/base@[\d.]+\), so `npm ci --offline` would fail with ENOTCACHED; run `npm ci` in this checkout/);
    const r = offlineInstall(empty);
    expect(r.code, r.out).not.toBe(0);
    expect(r.out).toMatch(/ENOTCACHED/);
  });

  const present = npmOk ? probeOfflineInstall(one, realCache) : undefined;
  describeIf(present?.ok === true, `this machine's npm cache (${realCache}) lacks ${NAME}: the probe's "present" answer is not checked against npm`)('with this checkout\'s npm cache', () => {
    it('the probe finds the package, and npm installs it offline', () => {
      expect(present).toEqual({ ok: true, checked: 1 });
      const r = offlineInstall(realCache);
      expect(r.code, r.out).toBe(0);
    });
  });

  it('pack.test.ts with an empty npm cache skips with the reason, without building or failing', () => {
    const dir = join(temp, 'vitest');
    mkdirSync(dir);
    // Only that file, no global setup (it needs no test server), the project's own reporters.
    const config = join(dir, 'vitest.config.mjs');
    writeFileSync(config, `export default { test: { root: ${JSON.stringify(ROOT)}, include: ['test/package/pack.test.ts'], reporters: ['default'], pool: 'forks' } };\n`);
    const cache = join(temp, 'empty-cache-2');
    mkdirSync(cache);
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', config, '--root', ROOT], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, npm_config_cache: cache, NO_COLOR: '1', FORCE_COLOR: '0' },
      timeout: 120_000,
    });
    const out = `${r.stdout}${r.stderr}`;
    expect(r.status, out).toBe(0);
    expect(out).toMatch(/\[skipped\] the package is not packed and installed offline: the npm cache \(.*empty-cache-2\) does not hold \d+ of the \d+ locked packages/);
    expect(out).toMatch(/Tests\s+1 passed \| 10 skipped/);
    expect(out).not.toMatch(/npm pack/);
  }, 120_000);
});
