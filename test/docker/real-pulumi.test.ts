/**
 * Where the Pulumi CLI is on PATH, the flows run for real: `npm run up -- --external` against the run's test server
 * (then `npm run down -- --remove-stack`), and `npm run e2e` with a real Docker engine (it needs the mongo:6 image,
 * local or pullable). Each skips, printing why, on a machine without what it needs. State and passphrase live in a
 * temporary directory, never in the project's .pulumi-state.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { checkImage } from '../../scripts/lib/docker.mjs';
import { checkPulumi } from '../../scripts/lib/prereqs.mjs';
import { describeIf } from '../support/skip.ts';
import { nodeScript, run } from '../scripts/support/run.ts';
import { docker, dockerEnv, testStack } from './support/gate.ts';

const pulumi = await checkPulumi();
const server = inject('mongoServer');
const mongoImage = docker.available ? await checkImage('mongo:6', { env: dockerEnv(), pull: false }) : undefined;

function pulumiEnv(dir: string): NodeJS.ProcessEnv {
  const passphrase = join(dir, 'passphrase');
  writeFileSync(passphrase, 'test-run-passphrase', { mode: 0o600 });
  const env = dockerEnv({ PULUMI_BACKEND_URL: `file://${join(dir, 'state')}`, PULUMI_CONFIG_PASSPHRASE_FILE: passphrase, PULUMI_SKIP_UPDATE_CHECK: 'true' });
  delete env.PULUMI_CONFIG_PASSPHRASE;
  return env;
}

describeIf(pulumi.ok && server.kind !== 'none', pulumi.ok ? `up --external for real needs a test server: ${server.reason}` : `up --external for real needs the Pulumi CLI: ${pulumi.detail}`)('npm run up -- --external with the real Pulumi CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mongo-capsule-real-pulumi-'));
    const r = await run(process.execPath, ['bin/mongo-capsule', 'keygen', '--pub-out', join(dir, 'default.pub.json'), '--secret-out', join(dir, 'default.secret.json')]);
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('provisions the test server, a second run changes nothing, and down removes the stack', async () => {
    const stack = testStack('ext');
    const env = { ...pulumiEnv(dir), MONGODB_URI: server.uri, MONGO_CAPSULE_SECRET_IDENTITY_FILE: join(dir, 'default.secret.json') };
    const up = await nodeScript('up', ['--external', '--stack', stack, '--pub', join(dir, 'default.pub.json'), '--json'], { env, timeoutMs: 600_000 });
    expect(up.code, up.stderr).toBe(0);
    expect(JSON.parse(up.stdout)).toMatchObject({ capsuleName: 'default', connectionString: '[secret]' });
    const again = await nodeScript('up', ['--stack', stack], { env, timeoutMs: 600_000 });
    expect(again.code, again.stderr).toBe(0);
    const down = await nodeScript('down', ['--stack', stack, '--remove-stack'], { env, timeoutMs: 600_000 });
    expect(down.code, down.stderr).toBe(0);
  }, 1_800_000);
});

describeIf(
  pulumi.ok && docker.available && mongoImage?.ok === true,
  !pulumi.ok ? `e2e for real needs the Pulumi CLI: ${pulumi.detail}` : !docker.available ? `e2e for real needs a Docker engine: ${docker.reason}` : `e2e for real needs the mongo:6 image on the engine (${mongoImage?.detail ?? 'no engine'}); no registry is used by the tests`,
)('npm run e2e with the real Pulumi CLI and Docker engine', () => {
  it('brings a throwaway cluster up, runs the suite against it, and tears it down', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mongo-capsule-real-e2e-'));
    try {
      const r = await nodeScript('e2e', ['--stack', testStack('e2e'), 'test/mongo/connection.test.ts'], { env: pulumiEnv(dir), timeoutMs: 1_800_000 });
      expect(r.code, r.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 1_800_000);
});
