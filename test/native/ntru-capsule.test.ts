/**
 * The capsule format works unchanged with the NTRU suites: identities, wrap, unwrap, and the typed
 * rejection of a wrong key or a tampered capsule (implicit rejection in the KEM, caught by the AEAD).
 */
import { expect, it } from 'vitest';
import { CapsuleAuthError } from '../../src/errors.ts';
import { getSuite } from '../../src/crypto/kem.ts';
import '../../src/crypto/index.ts';
import {
  decodeSecretIdentity,
  encodeSecretIdentity,
  generateIdentity,
  toPublicIdentity,
  wipeSecretIdentity,
} from '../../src/crypto/identity.ts';
import { describeCapsule, generateCmk, openParsedCapsule, parseCapsule, unwrapKey, wrapKey } from '../../src/crypto/capsule.ts';
import { describeIf } from '../support/skip.ts';

for (const id of ['ntru-hps-4096-821', 'ntru-hrss-701']) {
  const suite = getSuite(id);

  describeIf(suite.available(), `${id}: native addon not built (run \`npm run build:native\`), NTRU capsules not checked`)(
    `${id} capsules`,
    () => {
      it('round-trip a signed capsule through an identity that went through its secret file encoding', () => {
        const owner = generateIdentity(id, { name: 'ntru-owner' });
        const restored = decodeSecretIdentity(encodeSecretIdentity(owner));
        const cmk = generateCmk();
        const capsule = wrapKey(cmk, toPublicIdentity(owner), { name: 'ntru-capsule', signer: owner });
        expect(describeCapsule(capsule)).toMatchObject({ suite: id, kid: owner.kid, signed: true });
        expect(parseCapsule(capsule).kemCipherText.length).toBe(suite.lengths.cipherText);
        expect(unwrapKey(capsule, restored)).toEqual(cmk);
        wipeSecretIdentity(owner);
        wipeSecretIdentity(restored);
      });

      it('reject a wrong key with CapsuleAuthError, both by kid and by the AEAD after implicit rejection', () => {
        const owner = generateIdentity(id, { name: 'ntru-owner' });
        const stranger = generateIdentity(id, { name: 'ntru-stranger' });
        const cmk = generateCmk();
        const capsule = wrapKey(cmk, toPublicIdentity(owner), { name: 'ntru-capsule' });
        expect(() => unwrapKey(capsule, stranger)).toThrow(CapsuleAuthError);
        // Bypass the kid check: NTRU decapsulation with the stranger's key returns a secret without
        // throwing, and only the AEAD tag tells that it is the wrong one.
        expect(() => openParsedCapsule(parseCapsule(capsule), stranger.kemSecretKey)).toThrow(CapsuleAuthError);
        expect(() => openParsedCapsule(parseCapsule(capsule), stranger.kemSecretKey)).toThrow('wrong key or tampered capsule');
        expect(openParsedCapsule(parseCapsule(capsule), owner.kemSecretKey)).toEqual(cmk);
      });

      it('reject a flipped bit in the KEM ciphertext with CapsuleAuthError', () => {
        const owner = generateIdentity(id, { name: 'ntru-owner' });
        const capsule = wrapKey(generateCmk(), toPublicIdentity(owner), { name: 'ntru-capsule' });
        const { aad } = parseCapsule(capsule);
        // The AEAD's associated data ends with the KEM ciphertext; flip bits in its first and last bytes.
        for (const at of [aad.length - suite.lengths.cipherText, aad.length - 1]) {
          const tampered = Uint8Array.from(capsule);
          tampered[at]! ^= 0x01;
          expect(() => unwrapKey(tampered, owner)).toThrow(CapsuleAuthError);
        }
      });
    },
  );
}
