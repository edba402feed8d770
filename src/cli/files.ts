/**
 * File input and output for the CLI: reading `-` as stdin, and writing without ever leaving a half-written
 * file or silently replacing an existing one. Every write goes to a temporary file in the target directory,
 * is fsynced, then linked into place (which fails if the target exists) or renamed over it when the caller
 * explicitly allows replacing.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FileExistsError, FileNotFoundError, MongoCapsuleError, UsageError } from '../errors.ts';
import type { CliIO } from './types.ts';

/** Read a file, or standard input for `-`. Missing files are a typed error naming the path. */
export async function readInput(path: string, io: Pick<CliIO, 'stdin'>, hint?: string): Promise<Uint8Array> {
  if (path === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array));
    return new Uint8Array(Buffer.concat(chunks));
  }
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw fileError(e, path, hint);
  }
}

export async function readTextFile(path: string, hint?: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw fileError(e, path, hint);
  }
}

function fileError(e: unknown, path: string, hint?: string): Error {
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

/** Atomically write `data` to `path`: the target either keeps its old state or has all of `data`. */
export async function writeFileAtomic(path: string, data: Uint8Array | string, options: WriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o644;
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let handle;
  try {
    handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FileNotFoundError(dirname(path), 'the output directory does not exist; create it first');
    throw fileError(e, dirname(path));
  }
  try {
    await handle.writeFile(data);
    await handle.chmod(mode); // the umask may have narrowed or widened nothing; make it exact
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

async function syncDirectory(dir: string): Promise<void> {
  // Makes the new directory entry durable; not supported on every platform, where it is harmless to skip.
  try {
    const h = await open(dir, constants.O_RDONLY);
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    /* best effort */
  }
}

/** Write to a file (atomically) or to stdout for `-`. Secrets are never written to a terminal. */
export async function writeOutput(
  path: string,
  data: Uint8Array | string,
  io: Pick<CliIO, 'stdout'>,
  options: WriteOptions & { secret?: boolean } = {},
): Promise<void> {
  if (path === '-') {
    if (options.secret && (io.stdout as NodeJS.WriteStream).isTTY) {
      throw new UsageError('refusing to print secret key material to a terminal', 'redirect the output to a file or a pipe, or use --out <file>');
    }
    // The stream may hold on to the chunk after the callback; hand it a copy so the caller can wipe its own.
    const chunk = typeof data === 'string' ? data : Buffer.from(data);
    await new Promise<void>((resolve, reject) => io.stdout.write(chunk, (err) => (err ? reject(err) : resolve())));
    return;
  }
  await writeFileAtomic(path, data, options);
}
