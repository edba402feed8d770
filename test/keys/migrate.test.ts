import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdtempSync, openSync, fstatSync, closeSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseCapsule } from '../../src/crypto/capsule.ts';
import { suiteAvailable } from '../../src/crypto/kem.ts';
import { encodePublicIdentity, encodeSecretIdentity, generateIdentity, toPublicIdentity } from '../../src/crypto/identity.ts';
import { MemoryKeychain, type Keychain } from '../../src/keys/keychain.ts';
import { KeyManager } from '../../src/keys/manager.ts';
import { detectLegacyKind, migrateLegacySecret } from '../../src/keys/migrate.ts';
import { secureDelete } from '../../src/keys/secure-file.ts';
import { describeIf } from '../support/skip.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mc-migrate-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function secretFile(name = 'default') {
  const id = generateIdentity('ml-kem-1024', { name });
  const path = join(dir, `${name}.secret.json`);
  writeFileSync(path, encodeSecretIdentity(id), { mode: 0o600 });
  return { id, path };
}

/** A keychain that stores something other than what it was given (a broken or hostile backend). */
class LossyKeychain extends MemoryKeychain {
  override async store(account: string, secret: Uint8Array): Promise<void> {
    const altered = Uint8Array.from(secret);
    altered[altered.length - 2]! ^= 1;
    return super.store(account, altered);
  }
}

describe('migrateLegacySecret: secret identity files', () => {
  it('stores the identity, verifies it reads back identically, and deletes the file', async () => {
    const { id, path } = secretFile();
    const keychain = new MemoryKeychain();
    const r = await migrateLegacySecret(path, { keychain });
    expect(r).toMatchObject({ kind: 'secret-identity', name: 'default', alreadyPresent: false, deleted: true });
    expect(r.publicIdentity.kid).toBe(id.kid);
    expect(new TextDecoder().decode(await keychain.retrieve('default'))).toBe(encodeSecretIdentity(id));
    expect(existsSync(path)).toBe(false);
    expect((await new KeyManager({ keychain }).getPublicIdentity('default')).kid).toBe(id.kid);
  });

  it('refuses to delete the file when the read-back differs, and leaves nothing in the keychain', async () => {
    const { path } = secretFile();
    const before = readFileSync(path);
    const keychain = new LossyKeychain();
    await expect(migrateLegacySecret(path, { keychain })).rejects.toMatchObject({ code: 'MIGRATION_VERIFY_FAILED' });
    expect(readFileSync(path)).toEqual(before);
    expect(keychain.accounts()).toEqual([]);
  });

  it('finishes an interrupted migration (entry stored, file not yet deleted)', async () => {
    const { id, path } = secretFile();
    const keychain = new MemoryKeychain();
    await keychain.store('default', new TextEncoder().encode(encodeSecretIdentity(id)));
    const r = await migrateLegacySecret(path, { keychain });
    expect(r).toMatchObject({ alreadyPresent: true, deleted: true });
    expect(existsSync(path)).toBe(false);
  });

  it('refuses when the keychain holds a different identity under that name, keeping the file', async () => {
    const { path } = secretFile();
    const keychain = new MemoryKeychain();
    await new KeyManager({ keychain }).initialize('default');
    await expect(migrateLegacySecret(path, { keychain })).rejects.toMatchObject({ code: 'ALREADY_INITIALIZED' });
    expect(existsSync(path)).toBe(true);
  });

  it('refuses a --name that contradicts the file, and a rotation in progress', async () => {
    const { path } = secretFile('alpha');
    const keychain = new MemoryKeychain();
    await expect(migrateLegacySecret(path, { keychain, name: 'beta' })).rejects.toMatchObject({ code: 'USAGE' });
    await keychain.store('alpha~next', new Uint8Array([1]));
    await expect(migrateLegacySecret(path, { keychain })).rejects.toMatchObject({ code: 'ALREADY_INITIALIZED' });
    expect(existsSync(path)).toBe(true);
  });

  it('keeps the file with keepFile', async () => {
    const { path } = secretFile();
    const r = await migrateLegacySecret(path, { keychain: new MemoryKeychain(), keepFile: true });
    expect(r.deleted).toBe(false);
    expect(existsSync(path)).toBe(true);
  });

  it('rejects a public identity file with a typed error', async () => {
    const path = join(dir, 'x.pub.json');
    writeFileSync(path, encodePublicIdentity(toPublicIdentity(generateIdentity('ml-kem-768'))));
    await expect(migrateLegacySecret(path, { keychain: new MemoryKeychain() })).rejects.toMatchObject({ code: 'IDENTITY_FORMAT' });
    expect(existsSync(path)).toBe(true);
  });
});

describe('migrateLegacySecret: raw legacy key files', () => {
  it('detects the kinds by content', () => {
    expect(detectLegacyKind(new TextEncoder().encode('  {"format":1}'))).toBe('secret-identity');
    expect(detectLegacyKind(randomBytes(1590))).toBe('ntru-secret-key');
    expect(detectLegacyKind(randomBytes(1450))).toBe('ntru-secret-key');
    expect(detectLegacyKind(randomBytes(96))).toBe('csfle-master-key');
    expect(detectLegacyKind(new TextEncoder().encode(`${randomBytes(96).toString('base64')}\n`))).toBe('csfle-master-key');
    expect(detectLegacyKind(randomBytes(32))).toBe('master-key-32');
    expect(detectLegacyKind(new TextEncoder().encode(randomBytes(32).toString('base64')))).toBe('master-key-32');
    expect(detectLegacyKind(randomBytes(33))).toBeUndefined();
  });

  it('refuses the 32-byte master key of the original design and leaves it untouched', async () => {
    const path = join(dir, 'master.key');
    const key = randomBytes(32);
    writeFileSync(path, key, { mode: 0o600 });
    const err = await migrateLegacySecret(path, { keychain: new MemoryKeychain() }).catch((e) => e);
    expect(err).toMatchObject({ code: 'LEGACY_KEY_UNSUPPORTED' });
    expect(err.message + err.hint).not.toContain(key.toString('base64'));
    expect(readFileSync(path)).toEqual(key);
  });

  it('refuses an unknown file and leaves it untouched', async () => {
    const path = join(dir, 'what.bin');
    writeFileSync(path, randomBytes(77));
    await expect(migrateLegacySecret(path, { keychain: new MemoryKeychain() })).rejects.toMatchObject({ code: 'LEGACY_KEY_UNSUPPORTED' });
    expect(existsSync(path)).toBe(true);
  });

  it('asks for the public key of a raw NTRU secret key and leaves the file untouched', async () => {
    const path = join(dir, 'ntru.sk');
    writeFileSync(path, randomBytes(1590), { mode: 0o600 });
    const err = await migrateLegacySecret(path, { keychain: new MemoryKeychain() }).catch((e) => e);
    expect(err).toMatchObject({ code: 'LEGACY_KEY_UNSUPPORTED' });
    expect(err.hint).toMatch(/--public/);
    expect(existsSync(path)).toBe(true);
  });

  it('seals a raw 96-byte CSFLE master key into a capsule for the identity, checks it opens, then deletes the file', async () => {
    const keychain = new MemoryKeychain();
    const manager = new KeyManager({ keychain });
    const pub = await manager.initialize('default');
    const path = join(dir, 'master-key.txt');
    const cmk = randomBytes(96);
    writeFileSync(path, cmk, { mode: 0o600 });
    const capsuleOut = join(dir, 'default.capsule');
    const r = await migrateLegacySecret(path, { keychain, capsuleOut });
    expect(r).toMatchObject({ kind: 'csfle-master-key', capsuleOut, deleted: true });
    const capsule = new Uint8Array(readFileSync(capsuleOut));
    expect(parseCapsule(capsule).header).toMatchObject({ kid: pub.kid, signed: true, signerKid: pub.signer.kid, name: 'default' });
    expect(Buffer.from(await manager.unwrap(capsule))).toEqual(cmk);
    expect(existsSync(path)).toBe(false);
  });

  it('needs --capsule-out for a raw CMK and never overwrites an existing capsule', async () => {
    const keychain = new MemoryKeychain();
    await new KeyManager({ keychain }).initialize('default');
    const path = join(dir, 'cmk.bin');
    writeFileSync(path, randomBytes(96), { mode: 0o600 });
    await expect(migrateLegacySecret(path, { keychain })).rejects.toMatchObject({ code: 'LEGACY_KEY_UNSUPPORTED' });
    const capsuleOut = join(dir, 'taken.capsule');
    writeFileSync(capsuleOut, 'existing');
    await expect(migrateLegacySecret(path, { keychain, capsuleOut })).rejects.toMatchObject({ code: 'FILE_EXISTS' });
    expect(readFileSync(capsuleOut, 'utf8')).toBe('existing');
    expect(existsSync(path)).toBe(true);
  });
});

describeIf(suiteAvailable('ntru-hps-4096-821'), 'raw NTRU migration: the ntru-hps-4096-821 suite is unusable here (native addon not built: `npm run build:native`)')(
  'migrateLegacySecret: raw NTRU-HPS-4096-821 key pair',
  () => {
    it('turns a raw secret key plus its raw public key into an identity (pair checked) and deletes the file', async () => {
      const ntru = generateIdentity('ntru-hps-4096-821', { name: 'proto' });
      const path = join(dir, 'ntru.sk');
      writeFileSync(path, ntru.kemSecretKey, { mode: 0o600 });
      const keychain = new MemoryKeychain();
      const r = await migrateLegacySecret(path, { keychain, name: 'proto', publicKey: ntru.publicKey });
      expect(r.publicIdentity.kid).toBe(ntru.kid);
      expect(existsSync(path)).toBe(false);
      const held = await new KeyManager({ keychain }).getSecretIdentity('proto');
      expect(held.kemSecretKey).toEqual(ntru.kemSecretKey);
    });

    it('rejects a public key that does not belong to the secret key', async () => {
      const a = generateIdentity('ntru-hps-4096-821');
      const b = generateIdentity('ntru-hps-4096-821');
      const path = join(dir, 'ntru.sk');
      writeFileSync(path, a.kemSecretKey, { mode: 0o600 });
      await expect(migrateLegacySecret(path, { keychain: new MemoryKeychain(), publicKey: b.publicKey })).rejects.toMatchObject({ code: 'IDENTITY_FORMAT' });
      expect(existsSync(path)).toBe(true);
    });
  },
);

describe('secureDelete', () => {
  it('overwrites and truncates the data before unlinking (seen through a descriptor kept open)', async () => {
    const path = join(dir, 'secret.bin');
    writeFileSync(path, Buffer.alloc(200_000, 0xab));
    const fd = openSync(path, 'r');
    try {
      await secureDelete(path);
      expect(existsSync(path)).toBe(false);
      expect(fstatSync(fd).size).toBe(0);
      expect(fstatSync(fd).nlink).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  it('refuses symbolic links and files with other hard links, touching nothing', async () => {
    const target = join(dir, 'target.bin');
    writeFileSync(target, 'key');
    const sym = join(dir, 'sym.bin');
    symlinkSync(target, sym);
    await expect(secureDelete(sym)).rejects.toMatchObject({ code: 'INSECURE_FILE_PERMISSIONS' });
    const hard = join(dir, 'hard.bin');
    linkSync(target, hard);
    await expect(secureDelete(target)).rejects.toMatchObject({ code: 'INSECURE_FILE_PERMISSIONS' });
    expect(readFileSync(target, 'utf8')).toBe('key');
    await expect(secureDelete(join(dir, 'missing'))).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });

  it('is what migration uses: a hard-linked legacy file is refused before anything is stored', async () => {
    const { path } = secretFile();
    linkSync(path, join(dir, 'other-name.json'));
    const keychain: Keychain = new MemoryKeychain();
    await expect(migrateLegacySecret(path, { keychain })).rejects.toMatchObject({ code: 'INSECURE_FILE_PERMISSIONS' });
    expect(await keychain.exists('default')).toBe(false);
  });
});
