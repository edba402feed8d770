/**
 * The keys CLI: `init` and `keys status|delete|rotate|migrate`, plus `unwrap --name` reading the keychain.
 * Keychain-backed runs use the real OS keychain under a random test service (MONGO_CAPSULE_KEYCHAIN_SERVICE)
 * and skip, saying why, when none is reachable; the environment opt-in runs everywhere.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateCmk, parseCapsule, wrapKey } from '../../src/crypto/capsule.ts';
import { decodePublicIdentity, encodeSecretIdentity, generateIdentity } from '../../src/crypto/identity.ts';
import { runCli } from '../support/cli.ts';
import { osKeychainUnavailableReason } from '../support/os-keychain.ts';
import { describeIf } from '../support/skip.ts';

const SERVICE = `mongo-capsule-test-cli-${randomBytes(6).toString('hex')}`;

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, ...env });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mc-cli-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('keys CLI without a keychain', () => {
  it('lists init and keys in the help', async () => {
    const r = await run(['--help']);
    expect(r.stdout).toMatch(/^\s+init\s/m);
    expect(r.stdout).toMatch(/^\s+keys\s/m);
  });

  it('prints usage errors as message + hint, exit 1', async () => {
    for (const args of [['keys'], ['keys', 'frobnicate'], ['keys', 'delete', '--name', 'x'], ['init'], ['keys', 'rotate', '--pub-out', 'x']]) {
      const r = await run(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^error: .*\nhint: /);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  });

  it('keys status and unwrap --name use the environment opt-in, with a warning on stderr', async () => {
    const id = generateIdentity('ml-kem-768', { name: 'default' });
    const env = { MONGO_CAPSULE_SECRET_IDENTITY: encodeSecretIdentity(id) };
    const status = await run(['keys', 'status'], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(id.kid);
    expect(status.stderr).toMatch(/warning: using the secret identity from environment variable MONGO_CAPSULE_SECRET_IDENTITY/);
    const cmk = generateCmk();
    writeFileSync(join(dir, 'c.capsule'), wrapKey(cmk, id, { name: 'c', signer: id }));
    const unwrap = await run(['unwrap', '--name', 'default', '--in', join(dir, 'c.capsule'), '--out', join(dir, 'cmk.bin')], env);
    expect(unwrap.code).toBe(0);
    expect(readFileSync(join(dir, 'cmk.bin'))).toEqual(Buffer.from(cmk));
    expect(unwrap.stderr).toMatch(/warning:/);
    const del = await run(['keys', 'delete', '--name', 'default', '--yes'], env);
    expect(del.code).toBe(1);
    expect(del.stderr).toMatch(/read-only/);
  });
});

const reason = await osKeychainUnavailableReason(SERVICE);

describeIf(reason === undefined, `keys CLI against the OS keychain: ${reason ?? ''}`)('keys CLI against the OS keychain', () => {
  it('init → wrap → unwrap --name → rotate → status → delete', async () => {
    const name = `cli-${randomBytes(4).toString('hex')}`;
    const pub = join(dir, `${name}.pub.json`);
    const init = await run(['init', '--name', name, '--pub-out', pub]);
    expect(init.code).toBe(0);
    const identity = decodePublicIdentity(readFileSync(pub));
    expect(init.stdout).toContain(identity.kid);
    expect(statSync(pub).mode & 0o777).toBe(0o644);
    expect((await run(['init', '--name', name, '--pub-out', join(dir, 'other.json')])).stderr).toMatch(/already exists/);
    expect((await run(['init', '--name', `${name}x`, '--pub-out', pub])).stderr).toMatch(/refusing to overwrite/);

    const caps = join(dir, 'caps');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(caps);
    const cmkFile = join(dir, 'cmk.bin');
    writeFileSync(cmkFile, generateCmk(), { mode: 0o600 });
    expect((await run(['wrap', '--pub', pub, '--in', cmkFile, '--out', join(caps, 'a.capsule'), '--sign-name', name])).code).toBe(0);
    const out1 = join(dir, 'out1.bin');
    expect((await run(['unwrap', '--name', name, '--in', join(caps, 'a.capsule'), '--out', out1])).code).toBe(0);
    expect(readFileSync(out1)).toEqual(readFileSync(cmkFile));

    const newPub = join(dir, 'new.pub.json');
    const rot = await run(['keys', 'rotate', '--name', name, '--capsules', caps, '--pub-out', newPub]);
    expect(rot.code).toBe(0);
    expect(rot.stdout).toMatch(/re-sealed 1 capsule/);
    const rotated = decodePublicIdentity(readFileSync(newPub));
    expect(rotated.kid).not.toBe(identity.kid);
    expect(parseCapsule(new Uint8Array(readFileSync(join(caps, 'a.capsule')))).header.kid).toBe(rotated.kid);
    const out2 = join(dir, 'out2.bin');
    expect((await run(['unwrap', '--name', name, '--in', join(caps, 'a.capsule'), '--out', out2])).code).toBe(0);
    expect(readFileSync(out2)).toEqual(readFileSync(cmkFile));

    const status = await run(['keys', 'status', '--name', name, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ name, initialized: true, kid: rotated.kid, rotationPending: false });
    expect(status.stdout).not.toMatch(/seed/i);

    expect((await run(['keys', 'delete', '--name', name, '--yes'])).code).toBe(0);
    const gone = await run(['keys', 'status', '--name', name]);
    expect(gone.code).toBe(3);
    expect(gone.stdout).toMatch(/not initialized/);
  });

  it('keys migrate moves a --secret-out file into the keychain and deletes it', async () => {
    const name = `mig-${randomBytes(4).toString('hex')}`;
    const id = generateIdentity('ml-kem-1024', { name });
    const file = join(dir, 'id.secret.json');
    writeFileSync(file, encodeSecretIdentity(id), { mode: 0o600 });
    const r = await run(['keys', 'migrate', '--from', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(id.kid);
    expect(existsSync(file)).toBe(false);
    expect((await run(['keys', 'status', '--name', name])).stdout).toContain(id.kid);
    expect((await run(['keys', 'delete', '--name', name, '--yes'])).code).toBe(0);
  });
});
