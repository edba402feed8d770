/**
 * The native NTRU suites: sizes, round trips, implicit rejection, input checks, and the NIST known-answer
 * test (the whole 100-record response file regenerated with the NIST DRBG, compared by SHA-256).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { getSuite } from '../../src/crypto/kem.ts';
import { NTRU_SUITE_IDS, ntruKatResponseFile } from '../../src/crypto/ntru.ts';
import { describeIf } from '../support/skip.ts';

interface KatDigests {
  full: string;
  firstRecord: string;
}
const DIGESTS = JSON.parse(readFileSync(new URL('./ntru-kat-digests.json', import.meta.url), 'utf8')) as Record<string, KatDigests>;

// From the round-3 specification (and DESIGN.md §5).
const EXPECTED: Record<string, { algorithm: string; publicKey: number; secretKey: number; cipherText: number; nistLevel: number }> = {
  'ntru-hps-4096-821': { algorithm: 'ntruhps4096821', publicKey: 1230, secretKey: 1590, cipherText: 1230, nistLevel: 5 },
  'ntru-hrss-701': { algorithm: 'ntruhrss701', publicKey: 1138, secretKey: 1450, cipherText: 1138, nistLevel: 3 },
};

const sha256 = (s: string | Uint8Array) => createHash('sha256').update(s).digest('hex');

it('registers both NTRU suites whether or not the addon is built', () => {
  expect(NTRU_SUITE_IDS).toEqual(['ntru-hps-4096-821', 'ntru-hrss-701']);
  for (const id of NTRU_SUITE_IDS) {
    const suite = getSuite(id);
    expect(suite.lengths.seed).toBeUndefined();
    expect(suite.lengths.encapsRandomness).toBeUndefined();
    expect(suite.nistLevel).toBe(EXPECTED[id]!.nistLevel);
  }
});

for (const id of NTRU_SUITE_IDS) {
  const suite = getSuite(id);
  const expected = EXPECTED[id]!;

  describeIf(suite.available(), `${id}: native addon not built (run \`npm run build:native\`)`)(`${id} (native)`, () => {
    it('has the sizes of the round-3 specification', () => {
      expect(suite.lengths).toEqual({ publicKey: expected.publicKey, secretKey: expected.secretKey, cipherText: expected.cipherText, sharedSecret: 32 });
      const { publicKey, secretKey } = suite.keygen();
      expect(publicKey).toBeInstanceOf(Uint8Array);
      expect(publicKey.length).toBe(expected.publicKey);
      expect(secretKey.length).toBe(expected.secretKey);
      const { cipherText, sharedSecret } = suite.encapsulate(publicKey);
      expect(cipherText.length).toBe(expected.cipherText);
      expect(sharedSecret.length).toBe(32);
    });

    it('round-trips, with fresh keys and secrets every time', () => {
      const a = suite.keygen();
      const b = suite.keygen();
      expect(Buffer.from(a.publicKey).equals(Buffer.from(b.publicKey))).toBe(false);
      expect(Buffer.from(a.secretKey).equals(Buffer.from(b.secretKey))).toBe(false);
      for (let i = 0; i < 5; i++) {
        const e1 = suite.encapsulate(a.publicKey);
        const e2 = suite.encapsulate(a.publicKey);
        expect(Buffer.from(e1.cipherText).equals(Buffer.from(e2.cipherText))).toBe(false);
        expect(Buffer.from(e1.sharedSecret).equals(Buffer.from(e2.sharedSecret))).toBe(false);
        expect(suite.decapsulate(e1.cipherText, a.secretKey)).toEqual(e1.sharedSecret);
        expect(suite.decapsulate(e2.cipherText, a.secretKey)).toEqual(e2.sharedSecret);
      }
    });

    it('implicit rejection: a wrong key or a modified ciphertext gives another secret, without throwing', () => {
      const mine = suite.keygen();
      const other = suite.keygen();
      const { cipherText, sharedSecret } = suite.encapsulate(mine.publicKey);
      const wrong = suite.decapsulate(cipherText, other.secretKey);
      expect(wrong.length).toBe(32);
      expect(wrong).not.toEqual(sharedSecret);
      // Rejection is deterministic: the same wrong input always yields the same pseudorandom secret.
      expect(suite.decapsulate(cipherText, other.secretKey)).toEqual(wrong);

      for (const at of [0, cipherText.length >> 1, cipherText.length - 2]) {
        const tampered = Uint8Array.from(cipherText);
        tampered[at]! ^= 0x01;
        const got = suite.decapsulate(tampered, mine.secretKey);
        expect(got).not.toEqual(sharedSecret);
        expect(got).not.toEqual(wrong);
      }
    });

    it('does not mutate its inputs', () => {
      const { publicKey, secretKey } = suite.keygen();
      const pk = Uint8Array.from(publicKey);
      const sk = Uint8Array.from(secretKey);
      const { cipherText } = suite.encapsulate(publicKey);
      const ct = Uint8Array.from(cipherText);
      suite.decapsulate(cipherText, secretKey);
      expect(publicKey).toEqual(pk);
      expect(secretKey).toEqual(sk);
      expect(cipherText).toEqual(ct);
    });

    it('rejects wrong lengths and types with an InvalidArgumentError naming the operation', () => {
      const { publicKey, secretKey } = suite.keygen();
      const { cipherText } = suite.encapsulate(publicKey);
      expect(() => suite.encapsulate(publicKey.subarray(1))).toThrow(InvalidArgumentError);
      expect(() => suite.encapsulate(publicKey.subarray(1))).toThrow(`${id} encapsulate: public key must be ${expected.publicKey} bytes, got ${expected.publicKey - 1}`);
      expect(() => suite.decapsulate(cipherText, secretKey.subarray(2))).toThrow(`${id} decapsulate: secret key must be ${expected.secretKey} bytes`);
      expect(() => suite.decapsulate(new Uint8Array(cipherText.length + 1), secretKey)).toThrow(`${id} decapsulate: ciphertext must be`);
      expect(() => suite.encapsulate('not bytes' as unknown as Uint8Array)).toThrow(`${id} encapsulate: public key must be a Uint8Array`);
    });

    it('refuses a seed or caller-supplied randomness (no deterministic NTRU in production)', () => {
      const { publicKey } = suite.keygen();
      expect(() => suite.keygen(new Uint8Array(32))).toThrow(InvalidArgumentError);
      expect(() => suite.keygen(new Uint8Array(32))).toThrow(`${id} keygen: seeded key generation is not supported`);
      expect(() => suite.encapsulate(publicKey, new Uint8Array(32))).toThrow(`${id} encapsulate: caller-supplied randomness is not supported`);
    });

    it('reproduces the NIST known-answer response file (100 records, NIST AES-256-CTR DRBG)', () => {
      const rsp = ntruKatResponseFile(id);
      const records = rsp.split('\n\n');
      // Header, 100 records, and the empty string after the final blank line.
      expect(records).toHaveLength(102);
      expect(records[0]).toBe(`# ${expected.algorithm}`);
      expect(records[1]!.split('\n')[1]).toBe(
        'seed = 061550234D158C5EC95595FE04EF7A25767F2E24CC2BC479D09D86DC9ABCFDE7056A8C266F9EF97ED08541DBD2E1FFA1',
      );
      expect(records[100]!.startsWith('count = 99\n')).toBe(true);
      expect(sha256(`${records[1]}\n`)).toBe(DIGESTS[id]!.firstRecord);
      expect(sha256(rsp)).toBe(DIGESTS[id]!.full);
    });
  });
}
