/**
 * On a machine without a Docker engine or the Pulumi CLI (like the build machine), `npm run up`, `npm run e2e` and
 * `npm run down` stop within seconds, name what is missing with how to install it, create nothing, and never
 * print a stack trace. Spawned for real, through npm, with this machine's own PATH.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkDocker, checkPulumi } from '../../scripts/lib/prereqs.mjs';
import { describeIf } from '../support/skip.ts';
import { npmRun, ROOT, STACK_FRAME } from './support/run.ts';

const [docker, pulumi] = await Promise.all([checkDocker(), checkPulumi()]);
const somethingMissing = !docker.ok || !pulumi.ok;
/** Fail fast means seconds: the probes are bounded, nothing slow runs before them. */
const FAST_MS = 15_000;

describeIf(somethingMissing, 'fail-fast checks need a machine without a Docker engine or without the Pulumi CLI (this one has both)')('without Docker or Pulumi', () => {
  let stateExisted: boolean;
  beforeAll(() => {
    stateExisted = existsSync(join(ROOT, '.pulumi-state'));
  });

  for (const [script, args] of [
    ['up', []],
    ['e2e', []],
    ['down', []],
  ] as const) {
    it(`npm run ${script} fails fast naming what is missing`, async () => {
      const r = await npmRun(script, [...args], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(1);
      expect(r.ms).toBeLessThan(FAST_MS);
      if (!docker.ok) expect(r.stderr).toMatch(/^missing: Docker engine: .*; fix: /m);
      if (!pulumi.ok) expect(r.stderr).toMatch(/^missing: Pulumi CLI: .*; fix: .*(get\.pulumi\.com|winget|brew)/m);
      expect(r.stderr).toMatch(/prerequisite\(s\) missing; nothing was (changed|created)/);
      expect(r.stderr).not.toMatch(STACK_FRAME);
      expect(r.stdout).toBe('');
      // Nothing was created: no state directory, no passphrase.
      if (!stateExisted) expect(existsSync(join(ROOT, '.pulumi-state'))).toBe(false);
    });
  }
});

describe('plans and usage need nothing installed', () => {
  it('npm run e2e -- --dry-run prints the plan and exits 0', async () => {
    const r = await npmRun('e2e', ['--dry-run', '--stack', 'e2e-plan-test']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^e2e plan for throwaway stack e2e-plan-test \(nothing is run\):/);
    expect(r.stdout).toContain('pulumi up --stack e2e-plan-test --yes --skip-preview --non-interactive');
    expect(r.stdout).toContain('pulumi destroy --stack e2e-plan-test');
    expect(r.stdout).toContain('pulumi stack rm e2e-plan-test');
  });
  it('npm run up -- --dry-run and npm run down -- --dry-run print their plans', async () => {
    const up = await npmRun('up', ['--dry-run', '--members', '3']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain('pulumi config set --stack dev --non-interactive mongo-capsule:members -- 3');
    expect(up.stdout).toContain('pulumi up --stack dev');
    const down = await npmRun('down', ['--dry-run', '--remove-stack']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain('pulumi destroy --stack dev');
    expect(down.stdout).toContain('pulumi stack rm dev');
  });
  it('a mistyped option is a usage error (exit 2) with the usage, never a run', async () => {
    for (const script of ['up', 'down', 'e2e', 'init', 'rs-setup']) {
      const r = await npmRun(script, ['--dryrun']);
      expect(r.code, script).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^${script}: Unknown option '--dryrun'`));
      expect(r.stderr).toMatch(/Usage: npm run /);
    }
  });
  it('--help prints the usage and exits 0', async () => {
    for (const script of ['up', 'down', 'e2e', 'init', 'rs-setup']) {
      const r = await npmRun(script, ['--help']);
      expect(r.code, script).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: npm run ${script}`));
    }
  });
});
