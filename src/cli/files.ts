/**
 * File input and output for the CLI: reading `-` as stdin, and writing to stdout for `-` or atomically to a
 * file (src/files.ts: never half-written, never silently replaced).
 */
import { readFile } from 'node:fs/promises';
import { UsageError } from '../errors.ts';
import { fileError, writeFileAtomic, type WriteOptions } from '../files.ts';
import type { CliIO } from './types.ts';

export { writeFileAtomic, type WriteOptions };

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
