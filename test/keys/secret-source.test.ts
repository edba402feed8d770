import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateCmk, wrapKey } from '../../src/crypto/capsule.ts';
import { encodeSecretIdentity, generateIdentity, wipeSecretIdentity } from '../../src/crypto/identity.ts';
import { MemoryKeychain } from '../../src/keys/keychain.ts';
import { KeyManager } from '../../src/keys/manager.ts';
import { environmentKeychain, loadSecretIdentity, resolveKeychain, unwrapWithKeychain } from '../../src/keys/secret-source.ts';
import { isZero } from './support.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mc-env-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function collect() {
  const lines: string[] = [];
  return { lines, warn: (m: string) => lines.push(m) };
}

describe('environment opt-in', () => {
  it('uses nothing from the environment unless asked, and then the keychain it was given', async () => {
    const { lines, warn } = collect();
    const keychain = new MemoryKeychain();
    expect(await environmentKeychain({ env: {}, warn })).toBeUndefined();
    expect(await resolveKeychain({ env: {}, warn, keychain })).toBe(keychain);
    expect(lines).toEqual([]);
  });

  it('loads the identity from MONGO_CAPSULE_SECRET_IDENTITY with a warning that holds no secret', async () => {
    const id = generateIdentity('ml-kem-1024', { name: 'ci' });
    const encoded = encodeSecretIdentity(id);
    const { lines, warn } = collect();
    const loaded = await loadSecretIdentity('ci', { env: { MONGO_CAPSULE_SECRET_IDENTITY: encoded }, warn });
    expect(loaded.kid).toBe(id.kid);
    expect(loaded.kemSecretKey).toEqual(id.kemSecretKey);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^warning: .*MONGO_CAPSULE_SECRET_IDENTITY/);
    expect(lines[0]).not.toContain(Buffer.from(id.signerSeed).toString('base64'));
    // The result is the caller's own: wiping it does not disturb a later load.
    wipeSecretIdentity(loaded);
    expect(isZero(loaded.kemSecretKey)).toBe(true);
    const again = await loadSecretIdentity('ci', { env: { MONGO_CAPSULE_SECRET_IDENTITY: encoded }, warn });
    expect(again.kemSecretKey).toEqual(id.kemSecretKey);
  });

  it('loads from MONGO_CAPSULE_SECRET_IDENTITY_FILE when the file is private, refuses it otherwise', async () => {
    const id = generateIdentity('ml-kem-768', { name: 'default' });
    const path = join(dir, 'id.json');
    writeFileSync(path, encodeSecretIdentity(id), { mode: 0o600 });
    const { lines, warn } = collect();
    const env = { MONGO_CAPSULE_SECRET_IDENTITY_FILE: path };
    expect((await loadSecretIdentity('default', { env, warn })).kid).toBe(id.kid);
    expect(lines[0]).toContain(path);
    chmodSync(path, 0o644);
    const err = await loadSecretIdentity('default', { env, warn }).catch((e) => e);
    expect(err).toMatchObject({ code: 'INSECURE_FILE_PERMISSIONS' });
    expect(err.hint).toMatch(/chmod 600/);
    chmodSync(path, 0o640);
    expect((await loadSecretIdentity('default', { env, warn })).kid).toBe(id.kid);
    await expect(loadSecretIdentity('default', { env: { MONGO_CAPSULE_SECRET_IDENTITY_FILE: join(dir, 'nope') }, warn })).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });

  it('rejects ambiguous, empty and malformed opt-ins with typed errors that quote no value', async () => {
    const { warn } = collect();
    await expect(environmentKeychain({ env: { MONGO_CAPSULE_SECRET_IDENTITY: 'x', MONGO_CAPSULE_SECRET_IDENTITY_FILE: 'y' }, warn })).rejects.toMatchObject({ code: 'USAGE' });
    await expect(environmentKeychain({ env: { MONGO_CAPSULE_SECRET_IDENTITY: '' }, warn })).rejects.toMatchObject({ code: 'USAGE' });
    const err = await environmentKeychain({ env: { MONGO_CAPSULE_SECRET_IDENTITY: '{"format":"mongo-capsule-secret-identity","seed":"c2VjcmV0"}' }, warn }).catch((e) => e);
    expect(err).toMatchObject({ code: 'IDENTITY_FORMAT' });
    expect(err.message).toMatch(/^MONGO_CAPSULE_SECRET_IDENTITY: /);
    expect(err.message).not.toContain('c2VjcmV0');
  });

  it('says which identity the environment holds when another is asked for', async () => {
    const id = generateIdentity('ml-kem-768', { name: 'ci' });
    const err = await loadSecretIdentity('default', { env: { MONGO_CAPSULE_SECRET_IDENTITY: encodeSecretIdentity(id) }, warn: () => undefined }).catch((e) => e);
    expect(err).toMatchObject({ code: 'NOT_INITIALIZED' });
    expect(err.hint).toContain('"ci"');
  });

  it('is read-only, and a KeyManager over it unwraps', async () => {
    const id = generateIdentity('ml-kem-768', { name: 'default' });
    const keychain = (await environmentKeychain({ env: { MONGO_CAPSULE_SECRET_IDENTITY: encodeSecretIdentity(id) }, warn: () => undefined }))!;
    const manager = new KeyManager({ keychain });
    const cmk = generateCmk();
    expect(await manager.unwrap(wrapKey(cmk, id, { name: 'c', signer: id }))).toEqual(cmk);
    await expect(manager.initialize('other')).rejects.toMatchObject({ code: 'KEYCHAIN_READ_ONLY' });
    await expect(keychain.store('default', new Uint8Array([1]))).rejects.toMatchObject({ code: 'KEYCHAIN_READ_ONLY' });
    await expect(manager.rotate('default', [])).rejects.toMatchObject({ code: 'KEYCHAIN_READ_ONLY' });
  });

  it('never falls back to the environment when the keychain fails', async () => {
    const failing = new MemoryKeychain();
    failing.retrieve = async () => {
      throw Object.assign(new Error('down'), { code: 'KEYCHAIN_UNAVAILABLE' });
    };
    await expect(loadSecretIdentity('default', { env: {}, keychain: failing })).rejects.toMatchObject({ code: 'KEYCHAIN_UNAVAILABLE' });
  });

  it('unwrapWithKeychain opens capsules for the active and the pending key of an unfinished rotation', async () => {
    const keychain = new MemoryKeychain();
    const manager = new KeyManager({ keychain });
    const active = await manager.initialize('default', 'ml-kem-768');
    const next = generateIdentity('ml-kem-768', { name: 'default' });
    await keychain.store('default~next', new TextEncoder().encode(encodeSecretIdentity(next)));
    const cmk = generateCmk();
    const options = { env: {}, keychain };
    expect(await unwrapWithKeychain(wrapKey(cmk, active, { name: 'a' }), 'default', { ...options, allowUnsigned: true })).toEqual(cmk);
    expect(await unwrapWithKeychain(wrapKey(cmk, next, { name: 'b', signer: next }), 'default', { ...options, requireSignature: true })).toEqual(cmk);
    await expect(unwrapWithKeychain(wrapKey(cmk, active, { name: 'a' }), 'default', { ...options, requireSignature: true })).rejects.toMatchObject({ code: 'SIGNATURE_INVALID' });
  });
});
