/**
 * One writer per identity at a time. Two rotations of one identity that overlap would each store a new key in the
 * same `next` slot, the second overwriting the first while the first still re-seals capsules for it: those
 * capsules would end up sealed for a key no slot holds. So every operation that writes an identity's slots
 * holds this lock.
 *
 * Within a process the lock is a set of names per keychain object. For a keychain shared across processes (the
 * OS keychain: it says so with `lockScope`), it is also a file created exclusively in a directory private to the
 * user; a lock whose holder process is gone (a crash) is taken over.
 */
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { InsecureFilePermissionsError, MongoCapsuleError } from '../errors.ts';
import type { Keychain } from './keychain.ts';

const held = new WeakMap<Keychain, Set<string>>();

function lockedError(name: string, by: string): MongoCapsuleError {
  return new MongoCapsuleError('IDENTITY_LOCKED', `identity ${JSON.stringify(name)} is being changed by ${by}; nothing was done`, {
    hint: 'wait for it to finish (an interrupted rotation is finished by running `mongo-capsule keys rotate` again), then retry',
  });
}

/**
 * Where cross-process lock files live: private to this user (0700), outside any project. Without XDG_RUNTIME_DIR
 * (a per-user directory the system creates) it is a directory in the shared temporary directory, where another
 * user may have created it first to plant or remove lock files: a directory not owned by this user, or writable
 * by others, is refused.
 */
function lockDirectory(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  const base = runtime || join(tmpdir(), `mongo-capsule-${userInfo().uid}`);
  const dir = join(base, 'mongo-capsule-locks');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const d of runtime ? [dir] : [base, dir]) checkPrivate(d);
  return dir;
}

function checkPrivate(dir: string): void {
  if (process.platform === 'win32') return;
  const st = lstatSync(dir);
  const uid = userInfo().uid;
  const problem = !st.isDirectory()
    ? 'is not a directory'
    : st.uid !== uid
      ? `belongs to uid ${st.uid}, not to this user (uid ${uid})`
      : (st.mode & 0o022) !== 0
        ? `is writable by other users (mode ${(st.mode & 0o777).toString(8)})`
        : undefined;
  if (problem === undefined) return;
  throw new InsecureFilePermissionsError(`the lock directory ${dir} ${problem}: another user could hold or break the locks of your identities; nothing was done`, {
    hint: `remove it if nobody you trust created it (\`rm -rf ${dir}\`), or set XDG_RUNTIME_DIR to a directory private to you`,
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function acquireFile(path: string, name: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(JSON.stringify({ pid: process.pid, since: new Date().toISOString() }));
      await handle.close();
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = await readFile(path, 'utf8').then((t) => JSON.parse(t) as { pid?: unknown }).catch(() => ({ pid: undefined }));
    if (typeof holder.pid === 'number' && alive(holder.pid)) throw lockedError(name, `process ${holder.pid}`);
    await unlink(path).catch(() => undefined); // its holder is gone: take the lock over
  }
  throw lockedError(name, 'another process');
}

/** Runs `fn` holding the lock of identity `name` in `keychain`; refuses at once when someone else holds it. */
export async function withIdentityLock<T>(keychain: Keychain, name: string, fn: () => Promise<T>): Promise<T> {
  const names = held.get(keychain) ?? new Set<string>();
  held.set(keychain, names);
  if (names.has(name)) throw lockedError(name, 'another operation in this process');
  names.add(name);
  let file: string | undefined;
  try {
    if (keychain.lockScope !== undefined) {
      const id = createHash('sha256').update(`${keychain.lockScope}\0${name}`).digest('hex').slice(0, 32);
      file = join(lockDirectory(), `${id}.lock`);
      await acquireFile(file, name).catch((e: unknown) => {
        file = undefined; // not ours to remove
        throw e;
      });
    }
    return await fn();
  } finally {
    names.delete(name);
    if (file !== undefined) await unlink(file).catch(() => undefined);
  }
}
