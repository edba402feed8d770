/**
 * Without the built addon the NTRU suites stay registered, report `available() === false`, and every
 * operation throws one clear NativeAddonMissingError that names the build command. The addon directory is
 * pointed at an empty folder, so this runs whether or not the addon is built here.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MongoCapsuleError, NativeAddonMissingError } from '../../src/errors.ts';

const emptyDir = mkdtempSync(join(tmpdir(), 'mongo-capsule-no-addon-'));
// A file that exists but is not a loadable library must be reported the same way.
writeFileSync(join(emptyDir, 'ntru-hrss-701.node'), 'not a shared library');
const previous = process.env.MONGO_CAPSULE_NATIVE_DIR;
process.env.MONGO_CAPSULE_NATIVE_DIR = emptyDir;
const { getSuite, hasSuite, listSuiteIds, suiteAvailable } = await import('../../src/crypto/kem.ts');
const { ntruKatResponseFile } = await import('../../src/crypto/ntru.ts');
await import('../../src/crypto/ml-kem.ts');

afterAll(() => {
  if (previous === undefined) delete process.env.MONGO_CAPSULE_NATIVE_DIR;
  else process.env.MONGO_CAPSULE_NATIVE_DIR = previous;
  rmSync(emptyDir, { recursive: true, force: true });
});

describe('NTRU suites without the native addon', () => {
  for (const id of ['ntru-hps-4096-821', 'ntru-hrss-701']) {
    it(`${id}: registered, unavailable, and every operation names \`npm run build:native\``, () => {
      expect(listSuiteIds()).toContain(id);
      const suite = getSuite(id);
      expect(suite.available()).toBe(false);
      // Registered is not usable: tests and callers guard on suiteAvailable.
      expect(hasSuite(id)).toBe(true);
      expect(suiteAvailable(id)).toBe(false);
      const { publicKey, secretKey, cipherText } = suite.lengths;
      const ops: Array<() => unknown> = [
        () => suite.keygen(),
        () => suite.encapsulate(new Uint8Array(publicKey)),
        () => suite.decapsulate(new Uint8Array(cipherText), new Uint8Array(secretKey)),
        () => ntruKatResponseFile(id),
      ];
      for (const op of ops) {
        let caught: unknown;
        try {
          op();
        } catch (e) {
          caught = e;
        }
        expect(caught).toBeInstanceOf(NativeAddonMissingError);
        const err = caught as MongoCapsuleError;
        expect(err.code).toBe('NATIVE_ADDON_MISSING');
        expect(err.message).toContain(id);
        expect(err.hint).toContain('npm run build:native');
        expect(err.cause).toBeInstanceOf(Error);
      }
    });
  }

  it('leaves the other suites working', () => {
    for (const id of ['ml-kem-768', 'ml-kem-1024', 'x-wing']) expect(suiteAvailable(id), id).toBe(true);
    const kem = getSuite('ml-kem-1024');
    const { publicKey, secretKey } = kem.keygen();
    const { cipherText, sharedSecret } = kem.encapsulate(publicKey);
    expect(kem.decapsulate(cipherText, secretKey)).toEqual(sharedSecret);
  });
});
