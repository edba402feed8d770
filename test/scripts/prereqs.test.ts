/**
 * Prerequisite verdicts from recorded answers (every branch), and the real probes on this machine.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  checkDocker,
  checkNodeVersion,
  checkPrerequisites,
  checkPulumi,
  evaluateDocker,
  evaluateKeychain,
  evaluatePulumi,
  failureLines,
  identityMissing,
  MIN_NODE_VERSION,
} from '../../scripts/lib/prereqs.mjs';

const ok = (stdout = '') => ({ found: true, exitCode: 0, stdout, stderr: '' });
const failed = (stderr: string, exitCode = 1) => ({ found: true, exitCode, stdout: '', stderr });
const absent = { found: false, exitCode: null, stdout: '', stderr: '' };

describe('checkNodeVersion', () => {
  it('accepts the engines minimum and newer, refuses older with what to install', () => {
    expect(checkNodeVersion('20.19.0').ok).toBe(true);
    expect(checkNodeVersion('v22.1.0').ok).toBe(true);
    const old = checkNodeVersion('20.18.3');
    expect(old.ok).toBe(false);
    expect(old.detail).toContain('20.18.3');
    expect(old.fix).toContain('20.19');
    expect(checkNodeVersion('18.20.0').ok).toBe(false);
  });
  it('matches package.json engines', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${MIN_NODE_VERSION.replace(/\.0$/, '')}`);
  });
});

describe('evaluateDocker', () => {
  it('no docker command: install Docker Engine (Linux) or Docker Desktop', () => {
    const linux = evaluateDocker(absent, 'linux');
    expect(linux.ok).toBe(false);
    expect(linux.name).toBe('Docker engine');
    expect(linux.fix).toMatch(/Docker Engine/);
    expect(evaluateDocker(absent, 'darwin').fix).toMatch(/Docker Desktop/);
  });
  it('client without an engine: says the engine does not answer, quotes docker, says how to start it', () => {
    const c = evaluateDocker(failed('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?'), 'linux');
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(/no engine answers.*Cannot connect/);
    expect(c.fix).toMatch(/systemctl start docker/);
  });
  it('socket permission: says how to join the docker group', () => {
    const c = evaluateDocker(failed('permission denied while trying to connect to the Docker daemon socket'), 'linux');
    expect(c.fix).toMatch(/usermod -aG docker/);
  });
  it('a hung engine is a failure, not a wait', () => {
    expect(evaluateDocker({ ...failed(''), exitCode: null, timedOut: true }).detail).toMatch(/did not answer in time/);
  });
  it('an answering engine passes with its version', () => {
    expect(evaluateDocker(ok('28.2.2\n'))).toMatchObject({ ok: true, detail: 'Docker engine 28.2.2' });
  });
});

describe('evaluatePulumi', () => {
  it('missing: the install command per platform', () => {
    expect(evaluatePulumi(absent, 'linux').fix).toContain('curl -fsSL https://get.pulumi.com | sh');
    expect(evaluatePulumi(absent, 'darwin').fix).toContain('brew install pulumi/tap/pulumi');
    expect(evaluatePulumi(absent, 'win32').fix).toContain('winget install pulumi');
  });
  it('present but broken, and working', () => {
    expect(evaluatePulumi(failed('segfault')).detail).toMatch(/does not run \(segfault\)/);
    expect(evaluatePulumi(ok('v3.200.0\n'))).toMatchObject({ ok: true, detail: 'Pulumi v3.200.0' });
  });
});

describe('evaluateKeychain', () => {
  const status = (initialized: boolean) =>
    JSON.stringify({ name: 'default', initialized, suite: initialized ? 'ml-kem-1024' : null, kid: initialized ? 'ab' : null, rotationPending: false, keychain: 'Secret Service (service mongo-capsule)' });
  it('exit 0: reachable, identity present', () => {
    const c = evaluateKeychain({ ...ok(status(true)) });
    expect(c).toMatchObject({ ok: true, identity: { initialized: true, kid: 'ab' }, keychain: 'Secret Service (service mongo-capsule)' });
  });
  it('exit 3: reachable, identity absent', () => {
    const c = evaluateKeychain({ found: true, exitCode: 3, stdout: status(false), stderr: '' });
    expect(c.ok).toBe(true);
    expect(c.identity?.initialized).toBe(false);
  });
  it('exit 1: the CLI error and hint become the detail and the fix', () => {
    const c = evaluateKeychain(failed('error: keychain read failed for mongo-capsule/default: no D-Bus\nhint: start a Secret Service\n'));
    expect(c).toMatchObject({ ok: false, detail: 'keychain read failed for mongo-capsule/default: no D-Bus', fix: 'start a Secret Service' });
  });
  it('garbage on stdout is a failure, not a crash', () => {
    expect(evaluateKeychain(ok('not json')).ok).toBe(false);
  });
});

describe('failureLines', () => {
  it('one line per missing thing, naming it and the fix; nothing for passing checks', () => {
    const lines = failureLines([checkNodeVersion('22.0.0'), evaluateDocker(absent, 'linux'), evaluatePulumi(absent, 'linux'), identityMissing('default')]);
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).not.toContain('\n');
    expect(lines[0]).toMatch(/^missing: Docker engine: .*; fix: install Docker Engine/);
    expect(lines[1]).toMatch(/^missing: Pulumi CLI: /);
    expect(lines[2]).toMatch(/^missing: identity "default": .*npm run init/);
  });
});

describe('real probes on this machine', () => {
  it('docker and pulumi answer with a verdict within seconds, and agree with each other when run together', async () => {
    const t0 = Date.now();
    const [docker, pulumi] = await Promise.all([checkDocker(), checkPulumi()]);
    expect(Date.now() - t0).toBeLessThan(20_000);
    for (const c of [docker, pulumi]) {
      expect(typeof c.ok).toBe('boolean');
      if (!c.ok) expect(c.fix.length).toBeGreaterThan(10);
    }
    const all = await checkPrerequisites(['node', 'docker', 'pulumi']);
    expect(all.map((c) => c.id)).toEqual(['node', 'docker', 'pulumi']);
    expect(all[1]!.ok).toBe(docker.ok);
    expect(all[2]!.ok).toBe(pulumi.ok);
    console.log(`[prereqs] here: ${all.map((c) => `${c.name}: ${c.ok ? 'ok' : 'missing'} (${c.detail})`).join('; ')}`);
  });
});
