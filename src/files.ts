/**
 * Writing files without ever leaving a half-written one or silently replacing an existing one, for every layer
 * that writes (the CLI's outputs, migrated capsules, capsule directories). Every write goes to a temporary file in
 * the target directory, is fsynced, then linked into place (which fails if the target exists) or, only when the
 * caller explicitly allows replacing, renamed over it; the directory is fsynced last.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FileExistsError, FileNotFoundError, MongoCapsuleError, UsageError } from './errors.ts';

/** A file system error as a typed error naming the path (missing, not permitted, a directory); others as they are. */
export function fileError(e: unknown, path: string, hint?: string): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new FileNotFoundError(path, hint);
  if (code === 'EACCES' || code === 'EPERM') {
    return new MongoCapsuleError('FILE_NOT_FOUND', `permission denied: ${path}`, { hint: 'check the file permissions' });
  }
  if (code === 'EISDIR') return new UsageError(`${path} is a directory, expected a file`);
  return e instanceof Error ? e : new Error(String(e));
}

export interface WriteOptions {
  /** File mode of a newly written file (default 0o644; secrets use 0o600). */
  mode?: number;
  /** Replace an existing file (atomically). Without it an existing file is never touched. */
  replace?: boolean;
}

/**
 * Atomically write `data` to `path`: the target either keeps its old state or has all of `data`.
 * @example
 * await writeFileAtomic('default.capsule', capsule);                   // FileExistsError if it exists
 * await writeFileAtomic('cmk.bin', cmk, { mode: 0o600, replace: true });
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, options: WriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o644;
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let handle;
  try {
    handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FileNotFoundError(dirname(path), 'the output directory does not exist; create it first');
    throw fileError(e, dirname(path));
  }
  try {
    await handle.writeFile(data);
    await handle.chmod(mode); // the umask may have narrowed the mode; make it exact
    await handle.sync();
  } catch (e) {
    await handle.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await handle.close();
  try {
    if (options.replace) {
      await rename(tmp, path);
    } else {
      await link(tmp, path); // fails with EEXIST instead of replacing
      await unlink(tmp);
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new FileExistsError(path);
    throw fileError(e, path);
  }
  await syncDirectory(dirname(path));
}

/** fsync a directory so that a rename, link or unlink in it is durable (skipped where unsupported). */
export async function syncDirectory(dir: string): Promise<void> {
  let h;
  try {
    h = await open(dir, constants.O_RDONLY);
    await h.sync();
  } catch {
    /* best effort: not every platform can open a directory */
  } finally {
    await h?.close().catch(() => undefined);
  }
}
