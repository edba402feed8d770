/**
 * Writing files without ever leaving a half-written one or silently replacing an existing one, for every layer
 * that writes (the CLI's outputs, migrated capsules, capsule directories). Every write goes to a temporary file in
 * the target directory, is fsynced, then linked into place (which fails if the target exists) or, only when the
 * caller explicitly allows replacing, renamed over it; the directory is fsynced last.
 *
 * And reading every input with a limit that fits what it holds, checked while reading: `/dev/zero` or a runaway
 * pipe ends in a typed error naming the limit, never in a process that fills its memory.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FileExistsError, FileNotFoundError, InputTooLargeError, MongoCapsuleError, UsageError } from './errors.ts';

/**
 * A file system error as a typed error naming the path (missing, not permitted, a directory, not a readable
 * file); errors that are not the file system's pass as they are.
 */
export function fileError(e: unknown, path: string, hint?: string): Error {
  if (e instanceof MongoCapsuleError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new FileNotFoundError(path, hint);
  if (code === 'ENOTDIR') return new FileNotFoundError(path, 'a part of the path is a file, not a directory; check the path');
  if (code === 'EACCES' || code === 'EPERM') {
    return new MongoCapsuleError('FILE_NOT_FOUND', `permission denied: ${path}`, { hint: 'check the file permissions' });
  }
  if (code === 'EISDIR') return new UsageError(`${path} is a directory, expected a file`, 'give the path of a file');
  if (code === 'ELOOP') return new UsageError(`${path}: too many levels of symbolic links`, 'check where the link points');
  if (code === 'ENXIO' || code === 'ENODEV' || code === 'EOPNOTSUPP') {
    return new UsageError(`${path} is not a file that can be read (a socket or a device without a reader)`, 'give the path of a regular file, or - for stdin');
  }
  if (typeof code === 'string' && e instanceof Error) {
    return new MongoCapsuleError('USAGE', `cannot use ${path}: ${code}`, { hint: 'check the path and the file', cause: e });
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** The most bytes each kind of input can hold, with room to spare; anything larger is not one. */
export const INPUT_LIMITS = Object.freeze({
  /** A capsule: header, KEM ciphertext (at most 1568 bytes), AES-GCM, an ML-DSA-87 signature (4627 bytes). */
  capsule: 64 * 1024,
  /** A public identity file: JSON with two base64 public keys (ML-DSA-87's is 2592 bytes). */
  publicIdentity: 64 * 1024,
  /** A secret identity file: JSON with seeds, secret and public keys. */
  secretIdentity: 64 * 1024,
  /** A raw key file (a 96-byte CSFLE master key, an NTRU key of about 1.6 KB, or a public key file). */
  keyFile: 64 * 1024,
  /** A JSON request on stdin (`provision --json`). */
  request: 1024 * 1024,
});

const CHUNK = 16 * 1024;

/**
 * Read a whole file, refusing at once a file larger than `limit` bytes: the size of a regular file is checked
 * first, and every other kind (a pipe, a device like /dev/zero) is read in chunks only until it exceeds the limit.
 * @example
 * const bytes = await readFileBounded('default.capsule', INPUT_LIMITS.capsule, 'a capsule');
 */
export async function readFileBounded(path: string, limit: number, what: string, hint?: string): Promise<Uint8Array> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY);
  } catch (e) {
    throw fileError(e, path, hint);
  }
  try {
    return await readHandleBounded(handle, limit, what, path);
  } catch (e) {
    throw fileError(e, path, hint);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Reads an open file to its end, at most `limit` bytes (the caller closes it); `source` names it in errors. */
export async function readHandleBounded(handle: FileHandle, limit: number, what: string, source: string): Promise<Uint8Array> {
  const st = await handle.stat();
  if (st.isDirectory()) throw new UsageError(`${source} is a directory, expected a file`, 'give the path of a file');
  if (st.isFile() && st.size > limit) throw new InputTooLargeError(what, source, limit);
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const buf = Buffer.alloc(CHUNK);
    const { bytesRead } = await handle.read(buf, 0, CHUNK, null);
    if (bytesRead === 0) break;
    total += bytesRead;
    chunks.push(buf.subarray(0, bytesRead));
    if (total > limit) {
      for (const c of chunks) c.fill(0);
      throw new InputTooLargeError(what, source, limit);
    }
  }
  const out = new Uint8Array(Buffer.concat(chunks, total));
  for (const c of chunks) c.fill(0); // the input may be a secret: keep one copy only
  return out;
}

/**
 * Fails now, before any side effect, when `path` could not be created later: its directory is missing, is not a
 * directory, or refuses a new file (permissions, a read-only file system). A probe file is created and removed.
 */
export async function checkCreatable(path: string): Promise<void> {
  const dir = dirname(path);
  const probe = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.probe`);
  let handle;
  try {
    handle = await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new FileNotFoundError(dir, `the output directory of ${path} does not exist; create it first`);
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new MongoCapsuleError('FILE_NOT_FOUND', `cannot create ${path}: its directory ${dir} is not writable`, { hint: 'choose a writable directory, or fix its permissions' });
    }
    throw fileError(e, dir);
  }
  await handle.close().catch(() => undefined);
  await unlink(probe).catch(() => undefined);
}

/** The same for a stream (stdin): it stops reading, and destroys the stream, once `limit` is exceeded. */
export async function readStreamBounded(stream: NodeJS.ReadableStream, limit: number, what: string, source = 'standard input'): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    total += b.length;
    chunks.push(b);
    if (total > limit) {
      for (const c of chunks) c.fill(0);
      throw new InputTooLargeError(what, source, limit);
    }
  }
  const out = new Uint8Array(Buffer.concat(chunks, total));
  for (const c of chunks) c.fill(0);
  return out;
}

/** A bounded read of a UTF-8 text file. */
export async function readTextFileBounded(path: string, limit: number, what: string, hint?: string): Promise<string> {
  return Buffer.from(await readFileBounded(path, limit, what, hint)).toString('utf8');
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
