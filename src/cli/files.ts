/**
 * File input and output for the CLI: reading `-` as stdin, and writing to stdout for `-` or atomically to a
 * file (src/files.ts: never half-written, never silently replaced).
 */
import { lstat, stat } from 'node:fs/promises';
import { FileExistsError, UsageError } from '../errors.ts';
import { checkCreatable, fileError, INPUT_LIMITS, readFileBounded, readStreamBounded, readTextFileBounded, writeFileAtomic, type WriteOptions } from '../files.ts';
import type { CliIO } from './types.ts';

export { checkCreatable, INPUT_LIMITS, writeFileAtomic, type WriteOptions };

/** An output path that exists (even as a dangling link) is refused before any work is done. */
export async function refuseExisting(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined) return;
  if (st.isDirectory()) throw directoryOutput(path);
  throw new FileExistsError(path);
}

function directoryOutput(path: string): UsageError {
  return new UsageError(`${path} is a directory; an output must be the path of a file (for example ${path.replace(/\/+$/, '')}/default.capsule)`, 'give the full path of the file to write');
}

/**
 * Read a file, or standard input for `-`, at most `limit` bytes (checked while reading). Missing files, directories
 * and inputs over the limit are typed errors naming the path.
 */
export async function readInput(
  path: string,
  io: Pick<CliIO, 'stdin'>,
  hint?: string,
  limit: number = INPUT_LIMITS.capsule,
  what = 'this input',
): Promise<Uint8Array> {
  if (path === '-') return readStreamBounded(io.stdin, limit, what);
  return readFileBounded(path, limit, what, hint);
}

/** Read a text file of at most `limit` bytes (default: the size of a public identity file). */
export async function readTextFile(path: string, hint?: string, limit: number = INPUT_LIMITS.publicIdentity, what = 'a public identity file'): Promise<string> {
  if (path === '-') throw new UsageError(`${what} must be read from a file, not from standard input (-)`, 'give the path of the file');
  return readTextFileBounded(path, limit, what, hint);
}

/** An existing file's text for a comparison (undefined when there is none), bounded like every read. */
export async function readExistingText(path: string, limit: number, what: string): Promise<string | undefined> {
  try {
    return await readTextFileBounded(path, limit, what);
  } catch (e) {
    if ((e as { code?: unknown }).code === 'FILE_NOT_FOUND' && !/permission denied/.test((e as Error).message)) return undefined;
    throw e;
  }
}

export { fileError };

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
  if ((await stat(path).catch(() => undefined))?.isDirectory()) throw directoryOutput(path);
  await writeFileAtomic(path, data, options);
}
