/**
 * Which Docker provider plugin Pulumi will load, and whether it is new enough (≥ 5.2.0: container uploads with
 * owner/group). The verdicts from recorded findings (every branch), then the real probe with fake plugin binaries on
 * PATH, fake plugin directories, and a stub `pulumi` printing `pulumi plugin ls --json` in the CLI's format
 * (pkg/cmd/pulumi/plugin/plugin_ls.go: an array of { name, kind, version, size, installTime?, lastUsedTime? }).
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkDockerPlugin,
  evaluateDockerPlugin,
  MIN_DOCKER_PLUGIN_VERSION,
  parsePluginList,
  pluginDirVersions,
  sdkPluginVersion,
  versionBelow,
  versionFromPath,
} from '../../scripts/lib/docker-plugin.mjs';
import { ROOT } from './support/run.ts';

const INVALID_KEY = "Invalid or unknown key. Examine values at 'mongo-0.uploads'";

describe('evaluateDockerPlugin (recorded findings)', () => {
  it('the minimum is what the SDK in package.json asks for', () => {
    expect(MIN_DOCKER_PLUGIN_VERSION).toBe('5.2.0');
    expect(versionBelow(sdkPluginVersion(ROOT), MIN_DOCKER_PLUGIN_VERSION)).toBe(false);
  });
  it('versions compare numerically, v-prefix and pre-release tails ignored', () => {
    expect(versionBelow('4.11.0', '5.2.0')).toBe(true);
    expect(versionBelow('5.10.0', '5.2.0')).toBe(false);
    expect(versionBelow('v5.2.0', '5.2.0')).toBe(false);
    expect(versionBelow('5.1.9-alpha.1', '5.2.0')).toBe(true);
    expect(versionBelow('dev', '5.2.0')).toBeUndefined();
    expect(versionFromPath('/root/.pulumi/plugins/resource-docker-v4.5.1/pulumi-resource-docker')).toBe('4.5.1');
  });
  it('an old plugin on PATH wins over installed ones: refused, with the way out', () => {
    const c = evaluateDockerPlugin({ ambient: { path: '/usr/local/bin/pulumi-resource-docker', version: '4.5.1' }, installed: ['5.2.0'] });
    expect(c.ok).toBe(false);
    expect(c.detail).toContain(INVALID_KEY);
    expect(c.detail).toMatch(/Pulumi would use \/usr\/local\/bin\/pulumi-resource-docker from PATH, version 4\.5\.1/);
    expect(c.fix).toMatch(/remove \/usr\/local\/bin\/pulumi-resource-docker from PATH .*PULUMI_IGNORE_AMBIENT_PLUGINS=true .*`pulumi plugin install resource docker 5\.2\.0`/);
  });
  it('PULUMI_IGNORE_AMBIENT_PLUGINS: the PATH plugin does not count', () => {
    expect(evaluateDockerPlugin({ ambient: { path: '/x/pulumi-resource-docker', version: '4.5.1' }, installed: ['5.2.0'], ignoreAmbient: true }).ok).toBe(true);
  });
  it('a new enough PATH plugin passes; one whose version cannot be read passes with a warning', () => {
    expect(evaluateDockerPlugin({ ambient: { path: '/x/pulumi-resource-docker', version: '5.3.0' } }).ok).toBe(true);
    const unknown = evaluateDockerPlugin({ ambient: { path: '/x/pulumi-resource-docker', version: undefined } });
    expect(unknown.ok).toBe(true);
    expect(unknown.warning).toMatch(/^warning: Pulumi will use \/x\/pulumi-resource-docker from PATH, whose version could not be read; .*5\.2\.0/);
  });
  it('installed plugins: one new enough is fine; none means pulumi downloads it; only old ones are refused with the exact commands', () => {
    expect(evaluateDockerPlugin({ installed: ['4.5.1', '5.2.0'] }).ok).toBe(true);
    expect(evaluateDockerPlugin({ installed: [] })).toMatchObject({ ok: true, detail: expect.stringMatching(/pulumi downloads 5\.2\.0/) });
    const stale = evaluateDockerPlugin({ installed: ['4.5.1'] });
    expect(stale.ok).toBe(false);
    expect(stale.detail).toContain(INVALID_KEY);
    expect(stale.fix).toBe('`pulumi plugin install resource docker 5.2.0` (and remove the old one: `pulumi plugin rm resource docker 4.5.1 --yes`)');
  });
  it('parsePluginList keeps docker resource plugins only', () => {
    const out = JSON.stringify([
      { name: 'docker', kind: 'resource', version: '4.5.1', size: 1, installTime: '2026-01-01T00:00:00Z', lastUsedTime: '2026-01-02T00:00:00Z' },
      { name: 'docker-build', kind: 'resource', version: '0.0.8', size: 1 },
      { name: 'nodejs', kind: 'language', version: '3.248.0', size: 1 },
      { name: 'docker', kind: 'converter', version: '9.9.9', size: 1 },
    ]);
    expect(parsePluginList(out)).toEqual(['4.5.1']);
    expect(parsePluginList('[]')).toEqual([]);
    expect(() => parsePluginList('{}')).toThrow(/array/);
  });
});

describe('checkDockerPlugin (real probe: PATH, stub pulumi, plugin directory)', () => {
  let dir: string;
  const bin = (name: string, text: string, where = join(dir, 'bin')) => {
    mkdirSync(where, { recursive: true });
    writeFileSync(join(where, name), text);
    chmodSync(join(where, name), 0o755);
    return where;
  };
  const pulumiListing = (versions: string[]) =>
    `#!/bin/sh\n[ "$1 $2 $3" = "plugin ls --json" ] || exit 2\ncat <<'JSON'\n${JSON.stringify(versions.map((version) => ({ name: 'docker', kind: 'resource', version, size: 52428800, installTime: '2026-11-30T09:00:00Z', lastUsedTime: '2026-12-01T09:00:00Z' })), null, 2)}\nJSON\n`;
  const baseEnv = (path: string, extra: NodeJS.ProcessEnv = {}) => ({ ...process.env, PATH: `${path}:/usr/bin:/bin`, PULUMI_HOME: join(dir, 'home'), ...extra });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mongo-capsule-plugin-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('an old pulumi-resource-docker on PATH (version from its -version flag) is refused before anything runs', async () => {
    const path = bin('pulumi-resource-docker', '#!/bin/sh\n[ "$1" = "-version" ] && { echo 4.5.1; exit 0; }\nexit 1\n', join(dir, 'old'));
    bin('pulumi', pulumiListing(['5.2.0']), join(dir, 'old'));
    const c = await checkDockerPlugin({ env: baseEnv(path) });
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(new RegExp(`${join(dir, 'old', 'pulumi-resource-docker').replace(/[/.]/g, '\\$&')} from PATH, version 4\\.5\\.1`));
    expect((await checkDockerPlugin({ env: baseEnv(path, { PULUMI_IGNORE_AMBIENT_PLUGINS: 'true' }) })).ok).toBe(true);
  });

  it('a PATH plugin inside a versioned plugin directory is judged by the directory name', async () => {
    const path = bin('pulumi-resource-docker', '#!/bin/sh\nexit 1\n', join(dir, 'resource-docker-v5.4.0'));
    expect(await checkDockerPlugin({ env: baseEnv(path) })).toMatchObject({ ok: true, detail: expect.stringMatching(/version 5\.4\.0/) });
  });

  it('a PATH plugin that says nothing usable passes with a warning, within seconds', async () => {
    const path = bin('pulumi-resource-docker', '#!/bin/sh\nsleep 30\n', join(dir, 'silent'));
    const t0 = Date.now();
    const c = await checkDockerPlugin({ env: baseEnv(path) });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(c.ok).toBe(true);
    expect(c.warning).toMatch(/version could not be read/);
  });

  it('no PATH plugin: what `pulumi plugin ls --json` lists decides', async () => {
    const stale = bin('pulumi', pulumiListing(['4.5.1']), join(dir, 'stale'));
    const c = await checkDockerPlugin({ env: baseEnv(stale) });
    expect(c.ok).toBe(false);
    expect(c.fix).toContain('pulumi plugin install resource docker 5.2.0');
    const fresh = bin('pulumi', pulumiListing(['5.2.0', '4.5.1']), join(dir, 'fresh'));
    expect((await checkDockerPlugin({ env: baseEnv(fresh) })).ok).toBe(true);
  });

  it('a CLI that cannot list: the plugin directory under PULUMI_HOME is read instead', async () => {
    const broken = bin('pulumi', '#!/bin/sh\nexit 1\n', join(dir, 'broken'));
    mkdirSync(join(dir, 'home', 'plugins', 'resource-docker-v4.5.1'), { recursive: true });
    mkdirSync(join(dir, 'home', 'plugins', 'resource-docker-v5.2.0.partial'), { recursive: true });
    expect(pluginDirVersions({ PULUMI_HOME: join(dir, 'home') })).toEqual(['4.5.1']);
    expect((await checkDockerPlugin({ env: baseEnv(broken) })).ok).toBe(false);
    mkdirSync(join(dir, 'home', 'plugins', 'resource-docker-v5.2.0'), { recursive: true });
    expect((await checkDockerPlugin({ env: baseEnv(broken) })).ok).toBe(true);
  });
});
