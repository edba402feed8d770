import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkWatermark, FileCapsuleWatermarks, MemoryCapsuleWatermarks, watermarkKey } from '../../src/keys/capsule-watermarks.ts';

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

  it('file: mode 0600, and concurrent writers never lower a mark', async () => {
    const path = join(dir, 'shared', 'marks.json');
    const key = watermarkKey('h/', 'n.c', 'x');
    await Promise.all(Array.from({ length: 10 }, (_, i) => new FileCapsuleWatermarks(path).raise(key, { createdAt: i, sha256: String(i) })));
    expect(await new FileCapsuleWatermarks(path).get(key)).toEqual({ createdAt: 9, sha256: '9' });
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});
