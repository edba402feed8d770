import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkWatermark, FileCapsuleWatermarks, MemoryCapsuleWatermarks, watermarkKey } from '../../src/keys/capsule-watermarks.ts';
import { CapsuleWatermarksCorruptError } from '../../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'mc-marks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('capsule watermarks', () => {
  for (const [kind, make] of [
    ['memory', () => new MemoryCapsuleWatermarks()],
    ['file', () => new FileCapsuleWatermarks(join(dir, `${Math.random()}`, 'marks.json'))],
  ] as const) {
    it(`${kind}: refuses an older capsule or the same time with other bytes; acceptRollback lowers the mark`, async () => {
      const store = make();
      const key = watermarkKey('h1:27017/rs0', 'encryption.capsules', 'default');
      await checkWatermark(store, key, { createdAt: 1000, sha256: 'a' }, 'capsule default');
      await checkWatermark(store, key, { createdAt: 2000, sha256: 'b' }, 'capsule default');
      await checkWatermark(store, key, { createdAt: 2000, sha256: 'b' }, 'capsule default');
      await expect(checkWatermark(store, key, { createdAt: 1000, sha256: 'a' }, 'capsule default')).rejects.toMatchObject({ code: 'CAPSULE_REPLAY' });
      await expect(checkWatermark(store, key, { createdAt: 2000, sha256: 'c' }, 'capsule default')).rejects.toMatchObject({ code: 'CAPSULE_REPLAY' });
      await checkWatermark(store, watermarkKey('h2:27017/', 'encryption.capsules', 'default'), { createdAt: 1, sha256: 'z' }, 'other cluster');
      await checkWatermark(store, key, { createdAt: 1000, sha256: 'a' }, 'capsule default', true);
      expect(await store.get(key)).toEqual({ createdAt: 1000, sha256: 'a' });
    });
  }

  it('file: a damaged record is a typed error, never an empty record that would accept any older capsule', async () => {
    const path = join(dir, 'damaged', 'marks.json');
    const key = watermarkKey('h/', 'n.c', 'x');
    await new FileCapsuleWatermarks(path).raise(key, { createdAt: 5, sha256: 'e' });
    for (const garbage of ['{"truncated": ', '[]', 'null', '\xff\xfe']) {
      writeFileSync(path, Buffer.from(garbage, 'latin1'));
      const err = await new FileCapsuleWatermarks(path).get(key).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CapsuleWatermarksCorruptError);
      expect((err as CapsuleWatermarksCorruptError).code).toBe('CAPSULE_WATERMARKS_CORRUPT');
      expect((err as CapsuleWatermarksCorruptError).hint).toMatch(/move it away/);
    }
  });

  it('file: mode 0600, and concurrent writers never lower a mark', async () => {
    const path = join(dir, 'shared', 'marks.json');
    const key = watermarkKey('h/', 'n.c', 'x');
    await Promise.all(Array.from({ length: 10 }, (_, i) => new FileCapsuleWatermarks(path).raise(key, { createdAt: i, sha256: String(i) })));
    expect(await new FileCapsuleWatermarks(path).get(key)).toEqual({ createdAt: 9, sha256: '9' });
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});
