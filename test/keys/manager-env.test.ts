/**
 * `new KeyManager()` as the README's application example writes it: with no options it honours the documented
 * environment opt-in (MONGO_CAPSULE_SECRET_IDENTITY_FILE / MONGO_CAPSULE_SECRET_IDENTITY) exactly as the CLI
 * does, and uses the OS keychain only when neither variable is set.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { generateCmk, wrapKey } from '../../src/crypto/capsule.ts';
import { encodeSecretIdentity, generateIdentity, toPublicIdentity, wipeSecretIdentity, type SecretIdentity } from '../../src/crypto/identity.ts';
import { OsKeychain } from '../../src/keys/keychain.ts';
import { KeyManager } from '../../src/keys/manager.ts';

const VARS = ['MONGO_CAPSULE_SECRET_IDENTITY', 'MONGO_CAPSULE_SECRET_IDENTITY_FILE'] as const;
let dir: string;
let id: SecretIdentity;
let file: string;
const saved: Record<string, string | undefined> = {};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mongo-capsule-manager-env-'));
  id = generateIdentity('ml-kem-1024', { name: 'ci' });
  file = join(dir, 'ci.secret.json');
  writeFileSync(file, encodeSecretIdentity(id), { mode: 0o600 });
  for (const v of VARS) saved[v] = process.env[v];
  for (const v of VARS) delete process.env[v];
});
afterEach(() => {
  for (const v of VARS) {
    if (saved[v] === undefined) delete process.env[v];
    else process.env[v] = saved[v];
  }
  wipeSecretIdentity(id);
  rmSync(dir, { recursive: true, force: true });
  vi.restoreAllMocks();
});

function stderrLines(): string[] {
  const lines: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  return lines;
}

describe('KeyManager with no options', () => {
  it('uses MONGO_CAPSULE_SECRET_IDENTITY_FILE: opens a capsule sealed for that identity, with one warning', async () => {
    process.env.MONGO_CAPSULE_SECRET_IDENTITY_FILE = file;
    const lines = stderrLines();
    const keys = new KeyManager();
    expect(keys.keychain).not.toBeInstanceOf(OsKeychain);
    expect(keys.keychain.readOnly).toBe(true);
    expect(keys.keychain.description).toContain('MONGO_CAPSULE_SECRET_IDENTITY_FILE');

    const cmk = generateCmk();
    const capsule = wrapKey(cmk, toPublicIdentity(id), { name: 'app', signer: id });
    const opened = await keys.unwrap(capsule, 'ci');
    expect(opened).toEqual(cmk);
    expect((await keys.getPublicIdentity('ci')).kid).toBe(id.kid);
    keys.clearCache();

    const warnings = lines.filter((l) => l.includes('warning: using the secret identity from MONGO_CAPSULE_SECRET_IDENTITY_FILE'));
    expect(warnings).toHaveLength(1);
    expect(lines.join('')).not.toContain(encodeSecretIdentity(id).slice(40, 80));
  });

  it('uses MONGO_CAPSULE_SECRET_IDENTITY, and is read-only like the CLI', async () => {
    process.env.MONGO_CAPSULE_SECRET_IDENTITY = encodeSecretIdentity(id);
    stderrLines();
    const keys = new KeyManager({ cacheTtlMs: 0 });
    expect((await keys.getSecretIdentity('ci')).kid).toBe(id.kid);
    await expect(keys.initialize('other')).rejects.toMatchObject({ code: 'KEYCHAIN_READ_ONLY' });
    await expect(keys.getSecretIdentity('default')).rejects.toMatchObject({ code: 'NOT_INITIALIZED', hint: expect.stringContaining('holds identity "ci"') });
  });

  it('reports a broken opt-in on first use instead of falling back to the keychain', async () => {
    process.env.MONGO_CAPSULE_SECRET_IDENTITY_FILE = join(dir, 'missing.secret.json');
    stderrLines();
    await expect(new KeyManager().getSecretIdentity('ci')).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
    process.env.MONGO_CAPSULE_SECRET_IDENTITY = encodeSecretIdentity(id);
    await expect(new KeyManager().getSecretIdentity('ci')).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('uses the OS keychain when neither variable is set, and a given keychain always wins', async () => {
    expect(new KeyManager().keychain).toBeInstanceOf(OsKeychain);
    process.env.MONGO_CAPSULE_SECRET_IDENTITY_FILE = file;
    const own = new OsKeychain();
    expect(new KeyManager({ keychain: own }).keychain).toBe(own);
  });
});
