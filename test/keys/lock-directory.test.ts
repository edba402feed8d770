// The cross-process lock directory in the shared temporary directory (no XDG_RUNTIME_DIR) must be this user's
// alone: another user who created it first, mode 0777, could plant lock files (blocking every rotation) or remove
// ours (two rotations at once). Such a directory is refused, with a hint.
import { chmod, chown, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InsecureFilePermissionsError } from '../../src/errors.ts';
import { withIdentityLock } from '../../src/keys/identity-lock.ts';
import type { Keychain } from '../../src/keys/keychain.ts';

// Only the lock scope matters to the lock; the keychain itself is never called.
const keychain = { lockScope: 'test:lock-directory' } as unknown as Keychain;
const isRoot = userInfo().uid === 0;

describe('the per-user lock directory under the temporary directory', () => {
  let sandbox: string;
  const saved = { TMPDIR: process.env.TMPDIR, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR };
  let base: string;

  beforeEach(async () => {
    sandbox = await mkdtemp(join(tmpdir(), 'mongo-capsule-lockdir-'));
    process.env.TMPDIR = sandbox;
    delete process.env.XDG_RUNTIME_DIR;
    base = join(sandbox, `mongo-capsule-${userInfo().uid}`);
  });
  afterEach(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await rm(sandbox, { recursive: true, force: true });
  });

  it('is created private (0700) and used', async () => {
    expect(await withIdentityLock(keychain, 'a', async () => 'ran')).toBe('ran');
    expect(await readdir(join(base, 'mongo-capsule-locks'))).toEqual([]);
  });

  it('refuses a directory writable by others (another user made it 0777), and runs nothing', async () => {
    await mkdir(base, { mode: 0o777 });
    await chmod(base, 0o777);
    let ran = false;
    const err = await withIdentityLock(keychain, 'a', async () => {
      ran = true;
    }).catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(err).toBeInstanceOf(InsecureFilePermissionsError);
    expect((err as Error).message).toMatch(/lock directory .* is writable by other users \(mode 777\)/);
    expect((err as InsecureFilePermissionsError).hint).toMatch(/rm -rf .*XDG_RUNTIME_DIR/);
  });

  it.skipIf(!isRoot)('refuses a directory owned by another user (made with chown, as root)', async () => {
    await mkdir(join(base, 'mongo-capsule-locks'), { recursive: true, mode: 0o700 });
    await chown(base, 4242, 4242);
    const err = await withIdentityLock(keychain, 'a', async () => undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InsecureFilePermissionsError);
    expect((err as Error).message).toMatch(/belongs to uid 4242, not to this user/);
  });

  it('refuses a lock directory inside it that others can write', async () => {
    await mkdir(join(base, 'mongo-capsule-locks'), { recursive: true, mode: 0o700 });
    await chmod(join(base, 'mongo-capsule-locks'), 0o733);
    await expect(withIdentityLock(keychain, 'a', async () => undefined)).rejects.toBeInstanceOf(InsecureFilePermissionsError);
  });
});
