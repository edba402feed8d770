/**
 * Replay protection for capsules: a local high-water mark per (cluster, capsule namespace, capsule name) of the
 * newest capsule this machine has opened (its signed `createdAt`, and its sha256). A database writer cannot forge
 * the owner's signature, but could write back an older capsule the owner once signed, whose CMK a rotation
 * retired; the mark refuses that. It is trust-on-first-use, per machine and per state directory.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CapsuleReplayError, CapsuleWatermarksCorruptError, FileNotFoundError } from '../errors.ts';
import { readFileBounded, writeFileAtomic } from '../files.ts';
import { stateDir } from '../state-dir.ts';
import { withFileLock } from './file-lock.ts';

export interface CapsuleWatermark {
  /** The capsule header's createdAt, ms since the epoch (covered by the signature). */
  createdAt: number;
  sha256: string;
}

export interface CapsuleWatermarkStore {
  get(key: string): Promise<CapsuleWatermark | undefined>;
  /** Raise the mark of `key` to `mark` if it is newer; never lowers it. */
  raise(key: string, mark: CapsuleWatermark, options?: { replace?: boolean }): Promise<void>;
}

/** The key of one capsule: a credential-free cluster locator, the capsule namespace and the capsule name. */
export function watermarkKey(locator: string, namespace: string, name: string): string {
  return JSON.stringify([locator, namespace, name]);
}

function newer(a: CapsuleWatermark, b: CapsuleWatermark | undefined): boolean {
  return b === undefined || a.createdAt > b.createdAt;
}

/**
 * Throws CapsuleReplayError when `seen` is older than the mark (or as old with other bytes), unless
 * `acceptRollback`; otherwise raises the mark.
 */
export async function checkWatermark(store: CapsuleWatermarkStore, key: string, seen: CapsuleWatermark, what: string, acceptRollback = false): Promise<void> {
  const mark = await store.get(key);
  if (!acceptRollback) assertNotOlder(mark, seen, what);
  if (acceptRollback && mark !== undefined && !newer(seen, mark) && seen.sha256 !== mark.sha256) {
    await store.raise(key, seen, { replace: true });
    return;
  }
  await store.raise(key, seen);
}

/** Throws CapsuleReplayError when `seen` is older than `mark`, or as old with other bytes; raises nothing. */
export function assertNotOlder(mark: CapsuleWatermark | undefined, seen: CapsuleWatermark, what: string): void {
  if (mark !== undefined && (seen.createdAt < mark.createdAt || (seen.createdAt === mark.createdAt && seen.sha256 !== mark.sha256))) {
    throw new CapsuleReplayError(
      `${what} was created ${new Date(seen.createdAt).toISOString()}, but this machine already opened a newer one (created ${new Date(mark.createdAt).toISOString()}): an older generation was written back`,
    );
  }
}

/** In memory (tests, short-lived processes). */
export class MemoryCapsuleWatermarks implements CapsuleWatermarkStore {
  readonly #marks = new Map<string, CapsuleWatermark>();
  async get(key: string): Promise<CapsuleWatermark | undefined> {
    return this.#marks.get(key);
  }
  async raise(key: string, mark: CapsuleWatermark, options: { replace?: boolean } = {}): Promise<void> {
    if (options.replace || newer(mark, this.#marks.get(key))) this.#marks.set(key, { ...mark });
  }
}

/** Far more marks than any machine keeps (about 150 bytes each); a larger file is not ours. */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

/**
 * JSON under the state directory (mode 0600, atomic replace). Every raise is a read-merge-max-write under
 * `<file>.lock` (src/keys/file-lock.ts), so concurrent processes neither lower a mark nor lose one.
 */
export class FileCapsuleWatermarks implements CapsuleWatermarkStore {
  readonly path: string;
  constructor(path = join(stateDir(), 'capsule-watermarks.json')) {
    this.path = path;
  }

  async #read(): Promise<Record<string, CapsuleWatermark>> {
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(await readFileBounded(this.path, MAX_FILE_BYTES, 'the capsule replay marks'));
    } catch (e) {
      if (e instanceof FileNotFoundError) return {};
      if (e instanceof TypeError) throw new CapsuleWatermarksCorruptError(this.path, 'not UTF-8 text', e);
      throw e;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new CapsuleWatermarksCorruptError(this.path, 'not valid JSON', e);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CapsuleWatermarksCorruptError(this.path, 'not a JSON object');
    return parsed as Record<string, CapsuleWatermark>;
  }

  async get(key: string): Promise<CapsuleWatermark | undefined> {
    const m = (await this.#read())[key];
    return m !== undefined && typeof m.createdAt === 'number' && typeof m.sha256 === 'string' ? m : undefined;
  }

  async raise(key: string, mark: CapsuleWatermark, options: { replace?: boolean } = {}): Promise<void> {
    const settled = (current: CapsuleWatermark | undefined) =>
      options.replace ? current?.sha256 === mark.sha256 && current.createdAt === mark.createdAt : !newer(mark, current);
    // Already as high (the usual case when a capsule is opened again): no lock, no write.
    if (settled((await this.#read())[key])) return;
    await mkdir(join(this.path, '..'), { recursive: true, mode: 0o700 });
    await withFileLock(
      this.path,
      async () => {
        const all = await this.#read();
        if (settled(all[key])) return;
        all[key] = { createdAt: mark.createdAt, sha256: mark.sha256 };
        await writeFileAtomic(this.path, `${JSON.stringify(all, null, 2)}\n`, { mode: 0o600, replace: true });
      },
      { what: 'the capsule replay marks' },
    );
  }
}
