import { createDecipheriv, createHash, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { describe, expect, it } from 'vitest';
import { generateIdentity, parseCapsule, unwrapKey } from '../../src/crypto/index.ts';
import { buildVector, pattern, VECTOR_SPECS, type CapsuleVector } from '../support/capsule-vectors.ts';

const file = JSON.parse(readFileSync(new URL('../../docs/capsule-v1-vectors.json', import.meta.url), 'utf8')) as {
  vectors: CapsuleVector[];
};
const spec = readFileSync(new URL('../../docs/capsule-format.md', import.meta.url), 'utf8');

describe('capsule v1 test vectors (docs/capsule-v1-vectors.json)', () => {
  it('cover every spec', () => {
    expect(file.vectors.map((v) => `${v.suite}/${v.signed}`)).toEqual(VECTOR_SPECS.map((s) => `${s.suite}/${s.signed}`));
  });

  for (const stored of file.vectors) {
    describe(`${stored.suite}${stored.signed ? ' signed' : ''}`, () => {
      it('regenerating from the fixed inputs gives the same bytes and intermediates', () => {
        const spec = VECTOR_SPECS.find((s) => s.name === stored.name)!;
        expect(buildVector(spec)).toEqual(stored);
      });

      it('the stored intermediates agree with the capsule by the specification alone (node:crypto, no project code)', () => {
        const capsule = Buffer.from(stored.capsule, 'hex');
        const ct = Buffer.from(stored.kemCipherText, 'hex');
        const signatureLength = stored.signed ? 4627 : 0;
        const sealedAt = capsule.length - signatureLength - 112;
        // Layout: the AAD ends with the 2-byte ciphertext length and the KEM ciphertext, then the sealed key.
        expect(capsule.subarray(sealedAt - ct.length, sealedAt).equals(ct)).toBe(true);
        expect(capsule.readUInt16BE(sealedAt - ct.length - 2)).toBe(ct.length);
        const aad = capsule.subarray(0, sealedAt);
        expect(createHash('sha256').update(aad).digest('hex')).toBe(stored.aadSha256);
        // kid(alg, pk) = SHA-256("mongo-capsule/kid/v1" 0x00 alg 0x00 pk)[0..16], stored right after the suite id.
        const kid = createHash('sha256').update(`mongo-capsule/kid/v1\0${stored.suite}\0`).update(Buffer.from(stored.publicKey, 'hex')).digest().subarray(0, 16).toString('hex');
        expect(kid).toBe(stored.kid);
        expect(capsule.subarray(7 + stored.suite.length, 7 + stored.suite.length + 16).toString('hex')).toBe(kid);
        // Key schedule: HKDF-SHA-256(ss, salt "mongo-capsule/v1", info "mongo-capsule/v1/cmk" ‖ SHA-256(aad), 44).
        const info = Buffer.concat([Buffer.from('mongo-capsule/v1/cmk'), createHash('sha256').update(aad).digest()]);
        const okm = Buffer.from(hkdfSync('sha256', Buffer.from(stored.sharedSecret, 'hex'), 'mongo-capsule/v1', info, 44));
        expect(okm.subarray(0, 32).toString('hex')).toBe(stored.aeadKey);
        expect(okm.subarray(32).toString('hex')).toBe(stored.aeadIv);
        // AES-256-GCM open of the sealed key with the AAD gives the CMK.
        const decipher = createDecipheriv('aes-256-gcm', okm.subarray(0, 32), okm.subarray(32), { authTagLength: 16 });
        decipher.setAAD(aad);
        decipher.setAuthTag(capsule.subarray(sealedAt + 96, sealedAt + 112));
        const cmk = Buffer.concat([decipher.update(capsule.subarray(sealedAt, sealedAt + 96)), decipher.final()]);
        expect(cmk.toString('hex')).toBe(stored.cmk);
      });

      it('the signer public key is the ML-DSA-87 key of the FIPS 204 seed ξ, and a signature verifies under it alone', () => {
        const signerPublicKey = Buffer.from(stored.signerPublicKey, 'hex');
        expect(signerPublicKey.length).toBe(2592);
        expect(createHash('sha256').update(signerPublicKey).digest('hex')).toBe(stored.signerPublicKeySha256);
        // ML-DSA.KeyGen_internal(ξ), straight from the ML-DSA implementation, not through the project's identity code.
        expect(Buffer.from(ml_dsa87.keygen(Buffer.from(stored.signerSeed, 'hex')).publicKey).toString('hex')).toBe(stored.signerPublicKey);
        const capsule = Buffer.from(stored.capsule, 'hex');
        const signerKid = createHash('sha256').update('mongo-capsule/kid/v1\0ml-dsa-87\0').update(signerPublicKey).digest().subarray(0, 16).toString('hex');
        if (!stored.signed) {
          expect(stored.signerKid).toBeNull();
          expect(capsule[5]).toBe(0);
          return;
        }
        expect(capsule[5]).toBe(1);
        expect(stored.signerKid).toBe(signerKid);
        // Layout: the signer kid follows the 8-byte creation time, which follows the name.
        const nameAt = 7 + stored.suite.length + 16 + 1;
        const signerKidAt = nameAt + stored.name.length + 8;
        expect(capsule.subarray(signerKidAt, signerKidAt + 16).toString('hex')).toBe(signerKid);
        const signature = capsule.subarray(capsule.length - 4627);
        const signedPart = capsule.subarray(0, capsule.length - 4627);
        const context = Buffer.from('mongo-capsule/v1');
        expect(ml_dsa87.verify(signature, signedPart, signerPublicKey, { context })).toBe(true);
        // Pure ML-DSA with the context string: the same signature does not verify without it.
        expect(ml_dsa87.verify(signature, signedPart, signerPublicKey)).toBe(false);
        // Deterministic signing (rnd = 32 zero bytes) is what makes the vector reproducible; a hedged signature of
        // the same bytes differs and verifies all the same.
        const secretKey = ml_dsa87.keygen(Buffer.from(stored.signerSeed, 'hex')).secretKey;
        expect(Buffer.from(ml_dsa87.sign(signedPart, secretKey, { context, extraEntropy: false })).equals(signature)).toBe(true);
        const hedged = ml_dsa87.sign(signedPart, secretKey, { context });
        expect(Buffer.from(hedged).equals(signature)).toBe(false);
        expect(ml_dsa87.verify(hedged, signedPart, signerPublicKey, { context })).toBe(true);
      });

      it('the stored capsule opens to the stored key', () => {
        const id = generateIdentity(stored.suite, {
          kemSeed: Buffer.from(stored.kemSeed, 'hex'),
          signerSeed: Buffer.from(stored.signerSeed, 'hex'),
        });
        expect(id.kid).toBe(stored.kid);
        const capsule = new Uint8Array(Buffer.from(stored.capsule, 'hex'));
        const header = parseCapsule(capsule).header;
        expect(header.createdAt.toISOString()).toBe(stored.createdAt);
        expect(Buffer.from(unwrapKey(capsule, id, { requireSignature: stored.signed })).toString('hex')).toBe(stored.cmk);
        expect(stored.cmk).toBe(Buffer.from(pattern(96, 0xc0)).toString('hex'));
      });
    });
  }
});

describe('docs/capsule-format.md', () => {
  it('shows the header of the first vector byte for byte', () => {
    const v = file.vectors[0]!;
    const block = /<!-- vector-header:start -->([\s\S]*?)<!-- vector-header:end -->/.exec(spec);
    expect(block, 'the worked example block is missing from the document').not.toBeNull();
    const hexInDoc = [...block![1]!.matchAll(/^\s*\|\s*\d+\s*\|\s*\d+\s*\|[^|]*\|\s*`([0-9a-f]+)`/gm)].map((m) => m[1]).join('');
    const headerLen = hexInDoc.length / 2;
    expect(headerLen).toBeGreaterThan(30);
    expect(hexInDoc).toBe(v.capsule.slice(0, headerLen * 2));
  });

  it('states the constants the code uses', () => {
    for (const constant of ['mongo-capsule/v1', 'mongo-capsule/v1/cmk', 'mongo-capsule/kid/v1', '4d434150', '4627', '2592', '5c2e2f2f5e5c', 'draft-connolly-cfrg-xwing-kem-08']) {
      expect(spec).toContain(constant);
    }
  });
});
