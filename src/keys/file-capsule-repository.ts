/**
 * A directory of capsule files as a `CapsuleRepository`, for `mongo-capsule keys rotate --capsules <dir>`.
 *
 * - A capsule is a regular file named `*.capsule` directly in the directory; its repository name is the file
 *   name. Other files are ignored, symbolic links are refused (rotation would write through them).
 * - compareAndSwap re-reads the file, compares it with the expected bytes, writes the new bytes to a temporary
 *   file in the same directory, fsyncs it, renames it over the capsule and fsyncs the directory: a reader
 *   (or a crash) sees the old capsule or the new one, never a mix. The file mode is preserved.
 * - Swaps within one process are serialized. Between processes there is a window between the comparison and
 *   the rename; run one rotation per directory at a time (the cluster repository has a real CAS).
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FileNotFoundError, InsecureFilePermissionsError, InvalidArgumentError } from '../errors.ts';
import type { CapsuleRepository, StoredCapsule } from './capsule-repository.ts';
import { equalBytes } from './keychain.ts';
import { INPUT_LIMITS, readFileBounded, syncDirectory } from '../files.ts';

export const CAPSULE_FILE_EXTENSION = '.capsule';

export class FileCapsuleRepository implements CapsuleRepository {
  readonly description: string;
  readonly directory: string;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(directory: string) {
    if (typeof directory !== 'string' || directory.length === 0) throw new InvalidArgumentError('FileCapsuleRepository: directory is required');
    this.directory = directory;
    this.description = `capsule directory ${directory}`;
  }

  async list(): Promise<StoredCapsule[]> {
    let names: string[];
    try {
      names = await readdir(this.directory);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FileNotFoundError(this.directory, 'pass the directory that holds the *.capsule files');
      throw e;
    }
    const out: StoredCapsule[] = [];
    for (const name of names.filter((n) => n.endsWith(CAPSULE_FILE_EXTENSION) && !n.startsWith('.')).sort()) {
      const path = join(this.directory, name);
      const st = await lstat(path);
      if (st.isSymbolicLink()) throw new InsecureFilePermissionsError(`${path} is a symbolic link; rotation only rewrites regular files`, { hint: 'replace the link with the file it points to' });
      if (!st.isFile()) continue;
      // Bounded like every other read: a huge or endless file named *.capsule is refused, not loaded.
      out.push({ name, bytes: await readFileBounded(path, INPUT_LIMITS.capsule, 'a capsule') });
    }
    return out;
  }

  compareAndSwap(name: string, expected: Uint8Array, next: Uint8Array): Promise<boolean> {
    const run = this.#queue.then(() => this.#swap(name, expected, next));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #swap(name: string, expected: Uint8Array, next: Uint8Array): Promise<boolean> {
    if (name.includes('/') || name.includes('\\') || name.startsWith('.') || !name.endsWith(CAPSULE_FILE_EXTENSION)) {
      throw new InvalidArgumentError(`FileCapsuleRepository: invalid capsule file name ${JSON.stringify(name)}`);
    }
    const path = join(this.directory, name);
    let current: Uint8Array;
    let mode: number;
    try {
      const st = await lstat(path);
      if (!st.isFile()) return false;
      mode = st.mode & 0o777;
      current = await readFileBounded(path, INPUT_LIMITS.capsule, 'a capsule');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || e instanceof FileNotFoundError) return false;
      throw e;
    }
    if (!equalBytes(current, expected)) return false;
    const tmp = join(this.directory, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    try {
      await handle.writeFile(next);
      await handle.chmod(mode);
      await handle.sync();
      await handle.close();
      await rename(tmp, path);
    } catch (e) {
      await handle.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await syncDirectory(this.directory);
    return true;
  }
}
