/**
 * The optional setup step that installs a Docker engine (Debian's docker.io) and busybox-static for the Docker tests:
 * what it plans on each kind of machine, what it runs as root, and that it never fails setup. Then the real step on
 * this machine: quick, and idempotent once installed.
 */
import { describe, expect, it } from 'vitest';
import { dockerPlan, dockerStep, machine } from '../../scripts/setup/docker.mjs';

const debian = (installed: string[], files: string[] = []) => ({
  platform: 'linux' as NodeJS.Platform,
  uid: 0,
  exists: (p: string) => ['/usr/bin/apt-get', '/usr/bin/dpkg-query', ...files].includes(p),
  isInstalled: (p: string) => installed.includes(p),
});

describe('dockerPlan', () => {
  it('a fresh Debian machine as root: docker.io and busybox-static', () => {
    expect(dockerPlan(debian([]))).toEqual({ install: ['docker.io', 'busybox-static'], skip: '' });
  });
  it('an engine binary already there (docker-ce, Desktop…): never replaced, only the image package', () => {
    const p = dockerPlan(debian([], ['/usr/bin/dockerd']));
    expect(p.install).toEqual(['busybox-static']);
    expect(p.skip).toMatch(/an engine is installed already \(\/usr\/bin\/dockerd\): not replaced/);
  });
  it('everything there: one line, nothing to run', () => {
    expect(dockerPlan(debian(['docker.io', 'busybox-static']))).toEqual({ install: [], skip: 'already there: docker.io, busybox-static' });
  });
  it('not root, not Debian, not Linux: one line saying what is skipped and why', () => {
    expect(dockerPlan({ ...debian([]), uid: 1000 }).skip).toMatch(/^skipped: installing docker\.io, busybox-static needs root \(sudo apt-get install -y docker\.io busybox-static\)/);
    expect(dockerPlan({ ...debian([]), exists: () => false }).skip).toMatch(/^skipped: not a Debian-based system/);
    expect(dockerPlan({ ...debian([]), platform: 'darwin' }).skip).toMatch(/^skipped: .*darwin/);
    for (const p of [dockerPlan({ ...debian([]), uid: 1000 }), dockerPlan({ ...debian([]), platform: 'darwin' })]) expect(p.install).toEqual([]);
  });
});

describe('dockerStep', () => {
  const ctx = () => {
    const lines: string[] = [];
    return { lines, log: (m: string) => lines.push(m), warn: (m: string) => lines.push(`warning: ${m}`) };
  };
  it('installs with apt-get; runs update and retries only when the first install fails', async () => {
    const installed: string[] = [];
    const runs: string[][] = [];
    let first = true;
    const c = ctx();
    await dockerStep(c, {
      ...debian(installed),
      aptGet: (args: string[]) => {
        runs.push(args);
        if (args[0] === 'install' && first) {
          first = false;
          return 'apt-get install failed with exit code 100';
        }
        if (args[0] === 'install') installed.push(...args.slice(3));
        return '';
      },
    });
    expect(runs.map((a) => a[0])).toEqual(['install', 'update', 'install']);
    expect(runs[0]).toEqual(['install', '-y', '--no-install-recommends', 'docker.io', 'busybox-static']);
    expect(c.lines.at(-1)).toMatch(/^installed: docker\.io, busybox-static/);
  });
  it('an apt failure is a warning, never a failed setup', async () => {
    const c = ctx();
    await expect(dockerStep(c, { ...debian([]), aptGet: () => 'apt-get update failed with exit code 100' })).resolves.toBeUndefined();
    expect(c.lines.at(-1)).toMatch(/^warning: docker\.io, busybox-static not installed \(apt-get update failed .*\); the Docker tests will skip$/);
    const broken = ctx();
    await expect(dockerStep(broken, { ...debian([]), isInstalled: () => { throw new Error('dpkg is broken'); }, aptGet: () => '' })).resolves.toBeUndefined();
    expect(broken.lines.at(-1)).toMatch(/^warning: the docker step could not run \(dpkg is broken\)/);
  });
  // Never installs from a test: on a machine where the step would install something, `npm run setup` has not run.
  const pending = dockerPlan(machine()).install;
  it.skipIf(pending.length > 0)(`the real step on this machine: one line, quick, the same again (idempotent)${pending.length > 0 ? ` [skipped: it would install ${pending.join(', ')}; run npm run setup]` : ''}`, async () => {
    const t0 = Date.now();
    const a = ctx();
    await dockerStep(a);
    const b = ctx();
    await dockerStep(b);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(b.lines).toEqual(a.lines);
    expect(b.lines).toHaveLength(1);
    expect(b.lines[0]).toMatch(/^(already there|skipped): /);
    console.log(`[setup docker] here: ${b.lines[0]}`);
  });
});
