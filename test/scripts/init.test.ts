/**
 * `npm run init` against real keychains: the explicit environment opt-in (works everywhere) and the OS keychain
 * (Secret Service here: `npm test` runs inside a private D-Bus session with gnome-keyring; elsewhere it skips
 * and says why). The OS test uses its own keychain service, never the user's `mongo-capsule` entries.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkKeychain } from '../../scripts/lib/prereqs.mjs';
import { describeIf } from '../support/skip.ts';
import { npmRun, run, STACK_FRAME } from './support/run.ts';

const SERVICE = `mongo-capsule-test-init-${randomBytes(4).toString('hex')}`;
const cleanEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, ...extra };
  for (const k of ['MONGO_CAPSULE_SECRET_IDENTITY', 'MONGO_CAPSULE_SECRET_IDENTITY_FILE']) if (extra[k] === undefined) delete env[k];
  return env;
};
const keychain = await checkKeychain({ name: 'probe', env: cleanEnv() });

describe('npm run init with the environment opt-in (no keychain needed)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mongo-capsule-init-env-'));
    const r = await run(process.execPath, ['bin/mongo-capsule', 'keygen', '--name', 'ci', '--pub-out', join(dir, 'orig.pub.json'), '--secret-out', join(dir, 'ci.secret.json')]);
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reports the identity as existing, writes its public file once, and never replaces anything', async () => {
    const env = cleanEnv({ MONGO_CAPSULE_SECRET_IDENTITY_FILE: join(dir, 'ci.secret.json') });
    const pub = join(dir, 'ci.pub.json');
    const first = await npmRun('init', ['--name', 'ci', '--pub-out', pub], { env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/identity ci already exists in MONGO_CAPSULE_SECRET_IDENTITY_FILE/);
    expect(first.stdout).toContain(`wrote its public identity to ${pub}`);
    expect(readFileSync(pub, 'utf8')).toBe(readFileSync(join(dir, 'orig.pub.json'), 'utf8'));
    expect(first.stderr).toMatch(/warning: using the secret identity from MONGO_CAPSULE_SECRET_IDENTITY_FILE/);

    const again = await npmRun('init', ['--name', 'ci', '--pub-out', pub], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`public identity: ${pub}`);
    expect(again.stdout).toMatch(/keys rotate --name ci/);
  });
});

// On Linux a session bus that does not exist takes the Secret Service away, so this runs wherever the tests do.
const noKeychainEnv = keychain.ok && process.platform === 'linux' ? { DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent/mongo-capsule-test-bus' } : {};
describeIf(!keychain.ok || process.platform === 'linux', `init without a keychain: this ${process.platform} machine has one (${keychain.detail})`)('npm run init without a keychain', () => {
  it('fails fast naming the keychain and what to install or opt into, no stack trace', async () => {
    const r = await npmRun('init', ['--pub-out', join(tmpdir(), `never-${randomBytes(4).toString('hex')}.pub.json`)], { env: cleanEnv(noKeychainEnv) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^missing: OS keychain: .*; fix: .*MONGO_CAPSULE_SECRET_IDENTITY_FILE/m);
    expect(r.stderr).toMatch(/init: 1 prerequisite\(s\) missing; nothing was created/);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });
});

describeIf(keychain.ok, `init with the OS keychain needs a reachable Secret Service (npm test starts one): ${keychain.detail}`)('npm run init with the OS keychain', () => {
  let dir: string;
  const name = 'init-test';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mongo-capsule-init-os-'));
  });
  afterAll(async () => {
    await run(process.execPath, ['bin/mongo-capsule', 'keys', 'delete', '--name', name, '--yes'], { env: cleanEnv() });
    rmSync(dir, { recursive: true, force: true });
  });

  it('--dry-run creates nothing', async () => {
    const pub = join(dir, `${name}.pub.json`);
    const r = await npmRun('init', ['--name', name, '--pub-out', pub, '--dry-run'], { env: cleanEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/would run: mongo-capsule init --name init-test/);
    expect(existsSync(pub)).toBe(false);
  });

  it('creates the identity once; a second run keeps it and says how to rotate; a lost public file is rewritten', async () => {
    const pub = join(dir, `${name}.pub.json`);
    const first = await npmRun('init', ['--name', name, '--pub-out', pub], { env: cleanEnv() });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^identity init-test: suite ml-kem-1024, kid [0-9a-f]+/m);
    expect(first.stdout).toContain(`secret keys: Secret Service (service ${SERVICE})`);
    expect(first.stdout).toMatch(/next: `npm run up`/);
    const text = readFileSync(pub, 'utf8');
    expect(text).not.toMatch(/secret/i);

    const again = await npmRun('init', ['--name', name, '--pub-out', pub], { env: cleanEnv() });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/identity init-test already exists/);
    expect(again.stdout).toMatch(/npx mongo-capsule keys rotate --name init-test/);
    expect(readFileSync(pub, 'utf8')).toBe(text);

    rmSync(pub);
    const restore = await npmRun('init', ['--name', name, '--pub-out', pub], { env: cleanEnv() });
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toContain(`wrote its public identity to ${pub}`);
    expect(readFileSync(pub, 'utf8')).toBe(text);
  });
});
