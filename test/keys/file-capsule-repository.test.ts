import { chmodSync, mkdtempSync, truncateSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InputTooLargeError } from '../../src/errors.ts';
import { FileCapsuleRepository } from '../../src/keys/file-capsule-repository.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mc-repo-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const b = (s: string) => new TextEncoder().encode(s);

describe('FileCapsuleRepository', () => {
  it('lists *.capsule regular files only, by file name', async () => {
    writeFileSync(join(dir, 'b.capsule'), 'B');
    writeFileSync(join(dir, 'a.capsule'), 'A');
    writeFileSync(join(dir, 'default.pub.json'), '{}');
    writeFileSync(join(dir, '.a.capsule.123.tmp'), 'tmp');
    const list = await new FileCapsuleRepository(dir).list();
    expect(list.map((c) => c.name)).toEqual(['a.capsule', 'b.capsule']);
    expect(new TextDecoder().decode(list[0]!.bytes)).toBe('A');
  });

  it('refuses a *.capsule file larger than any capsule with a typed error, without loading it', async () => {
    const path = join(dir, 'huge.capsule');
    writeFileSync(path, '');
    truncateSync(path, 1024 ** 3); // sparse: 1 GiB on paper, nothing on disk
    const err = await new FileCapsuleRepository(dir).list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputTooLargeError);
    expect((err as InputTooLargeError).code).toBe('INPUT_TOO_LARGE');
    expect(await new FileCapsuleRepository(dir).compareAndSwap('huge.capsule', b('x'), b('y')).catch((e: unknown) => e)).toBeInstanceOf(InputTooLargeError);
  });

  it('swaps only when the bytes still match, atomically, keeping the mode and leaving no temporary file', async () => {
    const path = join(dir, 'a.capsule');
    writeFileSync(path, 'old');
    chmodSync(path, 0o640);
    const repo = new FileCapsuleRepository(dir);
    expect(await repo.compareAndSwap('a.capsule', b('stale'), b('new'))).toBe(false);
    expect(readFileSync(path, 'utf8')).toBe('old');
    expect(await repo.compareAndSwap('a.capsule', b('old'), b('new'))).toBe(true);
    expect(readFileSync(path, 'utf8')).toBe('new');
    expect(statSync(path).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['a.capsule']);
    expect(await repo.compareAndSwap('gone.capsule', b('x'), b('y'))).toBe(false);
  });

  it('serializes concurrent swaps of one file: exactly one wins', async () => {
    writeFileSync(join(dir, 'a.capsule'), 'v0');
    const repo = new FileCapsuleRepository(dir);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => repo.compareAndSwap('a.capsule', b('v0'), b(`v${i + 1}`))));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('refuses symbolic links and names outside the directory', async () => {
    writeFileSync(join(dir, 'real'), 'x');
    symlinkSync(join(dir, 'real'), join(dir, 'link.capsule'));
    const repo = new FileCapsuleRepository(dir);
    await expect(repo.list()).rejects.toMatchObject({ code: 'INSECURE_FILE_PERMISSIONS' });
    await expect(repo.compareAndSwap('../x.capsule', b('x'), b('y'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(new FileCapsuleRepository(join(dir, 'missing')).list()).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });
});
