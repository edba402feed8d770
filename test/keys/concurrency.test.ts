/**
 * What happens when callers overlap or a keychain is read-only: one writer per identity, caches that never
 * serve what was deleted or rotated away, migration that never deletes a file it did not provably copy, and a
 * public file published before the old key is retired.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateCmk, parseCapsule, wrapKey } from '../../src/crypto/capsule.ts';
import { encodeSecretIdentity, generateIdentity, toPublicIdentity } from '../../src/crypto/identity.ts';
import { withIdentityLock } from '../../src/keys/identity-lock.ts';
import { MemoryKeychain, type Keychain } from '../../src/keys/keychain.ts';
import { KeyManager } from '../../src/keys/manager.ts';
import { migrateLegacySecret } from '../../src/keys/migrate.ts';
import { EnvironmentKeychain } from '../../src/keys/secret-source.ts';
import { MemoryRepository, unopenable } from './support.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mc-keys-concurrency-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A keychain whose reads wait for `release()`: to hold a load in flight. */
class SlowKeychain extends MemoryKeychain {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  hold() {
    this.#gate = new Promise((r) => (this.#open = r));
  }
  release() {
    this.#open?.();
    this.#gate = undefined;
  }
  override async retrieve(account: string) {
    const gate = this.#gate;
    const value = await super.retrieve(account);
    if (gate) await gate;
    return value;
  }
}

describe('one writer per identity', () => {
  it('a second rotation while one runs is refused, and every capsule still opens afterwards', async () => {
    const keychain = new MemoryKeychain();
    const a = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain });
    const b = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain });
    const pub = await a.initialize('default', 'ml-kem-768');
    const repo = new MemoryRepository();
    for (let i = 0; i < 4; i++) repo.capsules.set(`c${i}.capsule`, wrapKey(generateCmk(), pub, { name: `c${i}` }));
    const results = await Promise.allSettled([a.rotate('default', [repo]), b.rotate('default', [repo])]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toMatchObject({ code: 'IDENTITY_LOCKED' });
    expect(await unopenable(keychain, [repo])).toEqual([]);
    expect((await a.status('default')).rotationPending).toBe(false);
  });

  it('across processes: a lock file of a live process refuses, one of a dead process is taken over', async () => {
    const runtime = join(dir, 'runtime');
    mkdirSync(runtime, { mode: 0o700 });
    const saved = process.env.XDG_RUNTIME_DIR;
    process.env.XDG_RUNTIME_DIR = runtime;
    const shared = Object.assign(new MemoryKeychain(), { lockScope: 'os:test-scope' }) as Keychain;
    const lockFile = join(runtime, 'mongo-capsule-locks', `${createHash('sha256').update('os:test-scope\0default').digest('hex').slice(0, 32)}.lock`);
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      mkdirSync(join(runtime, 'mongo-capsule-locks'), { recursive: true });
      writeFileSync(lockFile, JSON.stringify({ pid: sleeper.pid }));
      await expect(withIdentityLock(shared, 'default', async () => 'ran')).rejects.toMatchObject({ code: 'IDENTITY_LOCKED', message: expect.stringContaining(`process ${sleeper.pid}`) });
      sleeper.kill('SIGKILL');
      await new Promise((r) => sleeper.once('exit', r));
      await expect(withIdentityLock(shared, 'default', async () => 'ran')).resolves.toBe('ran');
      expect(existsSync(lockFile)).toBe(false); // released
    } finally {
      sleeper.kill('SIGKILL');
      if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = saved;
    }
  });
});

describe('the cache never serves what is gone', () => {
  it('a load in flight during delete does not put the deleted identity back', async () => {
    const keychain = new SlowKeychain();
    const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain });
    await manager.initialize('default', 'ml-kem-768');
    manager.clearCache();
    keychain.hold();
    const inFlight = manager.getSecretIdentity('default').catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 10));
    await manager.delete('default'); // while the read above waits
    keychain.release();
    await inFlight;
    await expect(manager.getSecretIdentity('default')).rejects.toMatchObject({ code: 'NOT_INITIALIZED' });
  });

  it('after another process rotated, unwrap reads the keychain again instead of failing for five minutes', async () => {
    const keychain = new MemoryKeychain();
    const app = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain });
    const ops = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain });
    const pub = await app.initialize('default', 'ml-kem-768');
    const repo = new MemoryRepository();
    const cmk = generateCmk();
    repo.capsules.set('app.capsule', wrapKey(cmk, pub, { name: 'app' }));
    (await app.unwrap(repo.capsules.get('app.capsule')!)).fill(0); // the old identity is now cached
    await ops.rotate('default', [repo]);
    const rotated = repo.capsules.get('app.capsule')!;
    expect(parseCapsule(rotated).header.kid).not.toBe(pub.kid);
    expect(Buffer.from(await app.unwrap(rotated)).equals(Buffer.from(cmk))).toBe(true);
  });
});

describe('migration never deletes a file it did not provably copy', () => {
  it('refuses a read-only source (the environment opt-in), even for the very file it reads', async () => {
    const id = generateIdentity('ml-kem-768', { name: 'default' });
    const file = join(dir, 'default.secret.json');
    writeFileSync(file, encodeSecretIdentity(id), { mode: 0o600 });
    const keychain = new EnvironmentKeychain(new TextEncoder().encode(encodeSecretIdentity(id)), 'MONGO_CAPSULE_SECRET_IDENTITY_FILE');
    await expect(migrateLegacySecret(file, { keychain })).rejects.toMatchObject({ code: 'KEYCHAIN_READ_ONLY' });
    expect(existsSync(file)).toBe(true);
  });

  it('a secret identity file whose signing key differs from the keychain\'s is refused and kept', async () => {
    const keychain = new MemoryKeychain();
    const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain });
    await manager.initialize('default', 'ml-kem-768');
    const held = await manager.getSecretIdentity('default');
    // Same KEM key, another ML-DSA key: deleting this file would lose that signing key.
    const other = generateIdentity('ml-kem-768', { name: 'default', kemSeed: held.kemSeed!, signerSeed: crypto.getRandomValues(new Uint8Array(32)) });
    expect(other.kid).toBe(held.kid);
    const file = join(dir, 'default.secret.json');
    writeFileSync(file, encodeSecretIdentity(other), { mode: 0o600 });
    await expect(migrateLegacySecret(file, { keychain })).rejects.toMatchObject({ code: 'ALREADY_INITIALIZED' });
    expect(existsSync(file)).toBe(true);
  });
});

describe('publishing the new public identity', () => {
  it('happens before the old key is retired; when it fails, both keys stay and a rerun finishes', async () => {
    const keychain = new MemoryKeychain();
    const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain });
    const pub = await manager.initialize('default', 'ml-kem-768');
    const repo = new MemoryRepository();
    repo.capsules.set('a.capsule', wrapKey(generateCmk(), pub, { name: 'a' }));
    await expect(manager.rotate('default', [repo], { onPromoted: () => Promise.reject(new Error('disk full')) })).rejects.toThrow('disk full');
    const pending = await manager.status('default');
    expect(pending.rotationPending).toBe(true); // the old key is still held
    expect(await unopenable(keychain, [repo])).toEqual([]);
    const published: string[] = [];
    const done = await manager.rotate('default', [repo], { onPromoted: async (p) => void published.push(p.kid) });
    expect(done.resumed).toBe(true);
    expect(published).toEqual([done.newKid]);
    expect((await manager.status('default')).rotationPending).toBe(false);
    expect(toPublicIdentity(await manager.getSecretIdentity('default')).kid).toBe(done.newKid);
  });
});
