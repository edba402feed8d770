/**
 * Capsule v1 test vectors: fixed inputs in, every intermediate value and the capsule bytes out.
 * Used by `scripts/gen-capsule-vectors.ts` to write docs/capsule-v1-vectors.json and by the tests to check
 * that file. The key schedule is recomputed here independently of src/crypto/capsule.ts (straight from the
 * specification in docs/capsule-format.md), so a drift between code and document is caught.
 */
import { createHash, hkdfSync } from 'node:crypto';
import { generateIdentity, getSuite, toPublicIdentity, wrapKey } from '../../src/crypto/index.ts';

export interface VectorSpec {
  suite: string;
  signed: boolean;
  name: string;
  createdAt: string;
}

export interface CapsuleVector extends VectorSpec {
  kemSeed: string;
  signerSeed: string;
  encapsRandomness: string;
  cmk: string;
  publicKey: string;
  kid: string;
  signerPublicKeySha256: string;
  signerKid: string | null;
  kemCipherText: string;
  sharedSecret: string;
  aadSha256: string;
  aeadKey: string;
  aeadIv: string;
  capsule: string;
}

export const VECTOR_SPECS: VectorSpec[] = [
  { suite: 'ml-kem-768', signed: false, name: 'vector-768', createdAt: '2026-01-01T00:00:00.000Z' },
  { suite: 'ml-kem-1024', signed: false, name: 'vector-1024', createdAt: '2026-01-01T00:00:00.000Z' },
  { suite: 'ml-kem-1024', signed: true, name: 'vector-1024-signed', createdAt: '2026-01-01T00:00:00.000Z' },
  { suite: 'x-wing', signed: false, name: 'vector-x-wing', createdAt: '2026-01-01T00:00:00.000Z' },
  { suite: 'x-wing', signed: true, name: 'vector-x-wing-signed', createdAt: '2026-01-01T00:00:00.000Z' },
];

/** Byte i of a fixed input is (start + i) mod 256. */
export function pattern(length: number, start: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (start + i) & 0xff);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

export function buildVector(spec: VectorSpec): CapsuleVector {
  const suite = getSuite(spec.suite);
  const kemSeed = pattern(suite.lengths.seed!, 0x00);
  const signerSeed = pattern(32, 0x40);
  const encapsRandomness = pattern(suite.lengths.encapsRandomness!, 0x80);
  const cmk = pattern(96, 0xc0);
  const id = generateIdentity(spec.suite, { name: 'vectors', kemSeed, signerSeed });
  const capsule = wrapKey(cmk, toPublicIdentity(id), {
    name: spec.name,
    createdAt: new Date(spec.createdAt),
    encapsRandomness,
    deterministicSignature: true,
    ...(spec.signed ? { signer: id } : {}),
  });
  // Independent recomputation of the key schedule from the specification.
  const { cipherText, sharedSecret } = suite.encapsulate(id.publicKey, encapsRandomness);
  const aadLength = capsule.length - 112 - (spec.signed ? 4627 : 0);
  const aad = capsule.subarray(0, aadLength);
  const info = Buffer.concat([Buffer.from('mongo-capsule/v1/cmk'), createHash('sha256').update(aad).digest()]);
  const okm = Buffer.from(hkdfSync('sha256', sharedSecret, 'mongo-capsule/v1', info, 44));
  return {
    ...spec,
    kemSeed: hex(kemSeed),
    signerSeed: hex(signerSeed),
    encapsRandomness: hex(encapsRandomness),
    cmk: hex(cmk),
    publicKey: hex(id.publicKey),
    kid: id.kid,
    signerPublicKeySha256: createHash('sha256').update(id.signer.publicKey).digest('hex'),
    signerKid: spec.signed ? id.signer.kid : null,
    kemCipherText: hex(cipherText),
    sharedSecret: hex(sharedSecret),
    aadSha256: createHash('sha256').update(aad).digest('hex'),
    aeadKey: hex(okm.subarray(0, 32)),
    aeadIv: hex(okm.subarray(32, 44)),
    capsule: hex(capsule),
  };
}
