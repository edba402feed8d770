/**
 * Secure deletion of a legacy key file (atomic, no-clobber writes are in src/files.ts).
 *
 * Secure deletion overwrites the file's bytes in place with random data, fsyncs, truncates, unlinks and
 * fsyncs the directory. One pass is enough for magnetic media; no number of passes is a guarantee on SSDs
 * (wear levelling), copy-on-write or journaling filesystems, snapshots or backups. It removes the copy that
 * the file system shows; treat a key that lived in a plaintext file as exposed and rotate it.
 */
import { randomFillSync } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FileNotFoundError, InsecureFilePermissionsError } from '../errors.ts';
import { syncDirectory } from '../files.ts';

/**
 * Checks that `path` can be securely deleted: a regular file (not a symbolic link, whose target would be
 * overwritten instead) with exactly one name (with hard links, the data would stay readable under the others).
 */
export async function checkDeletable(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FileNotFoundError(path);
    throw e;
  }
  if (st.isSymbolicLink()) {
    throw new InsecureFilePermissionsError(`${path} is a symbolic link; refusing to securely delete through it`, { hint: 'pass the path of the file itself' });
  }
  if (!st.isFile()) throw new InsecureFilePermissionsError(`${path} is not a regular file`);
  if (st.nlink > 1) {
    throw new InsecureFilePermissionsError(`${path} has ${st.nlink} hard links; deleting one name would leave the key readable under the others`, {
      hint: 'remove the other links first (`find / -samefile <file>`), then rerun',
    });
  }
}

/** Overwrite with random bytes, fsync, truncate, fsync, unlink, fsync the directory. */
export async function secureDelete(path: string): Promise<void> {
  await checkDeletable(path);
  const handle = await open(path, constants.O_RDWR | (constants.O_NOFOLLOW ?? 0));
  try {
    const st = await handle.stat();
    const block = new Uint8Array(Math.min(65536, Math.max(1, st.size)));
    for (let at = 0; at < st.size; at += block.length) {
      const n = Math.min(block.length, st.size - at);
      randomFillSync(block, 0, n);
      await handle.write(block, 0, n, at);
    }
    await handle.sync();
    await handle.truncate(0);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await unlink(path);
  await syncDirectory(dirname(path));
}
