/**
 * ML-KEM (FIPS 203) and the X-Wing hybrid (ML-KEM-768 + X25519, draft-connolly-cfrg-xwing-kem) suites,
 * from `@noble/post-quantum`.
 *
 * Caveats:
 * - noble is audited, pure JavaScript; it aims for constant-time arithmetic but JavaScript gives no hard
 *   guarantee (JIT, garbage collector). See the README's Security section.
 * - Randomness comes from `crypto.getRandomValues` (the OS CSPRNG) unless a seed or encapsulation
 *   randomness is passed, which only the test vectors do.
 */
import { ml_kem768, ml_kem1024 } from '@noble/post-quantum/ml-kem.js';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { checkBytes, registerSuite, type KemSuite } from './kem.ts';

interface NobleKem {
  lengths: { publicKey?: number; secretKey?: number; cipherText?: number; seed?: number; msgRand?: number };
  keygen(seed?: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array };
  encapsulate(publicKey: Uint8Array, msg?: Uint8Array): { cipherText: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array;
}

function need(n: number | undefined, what: string): number {
  if (n === undefined) throw new Error(`noble suite is missing its ${what} length`);
  return n;
}

function nobleSuite(id: string, description: string, nistLevel: 1 | 3 | 5, kem: NobleKem): KemSuite {
  const lengths = {
    publicKey: need(kem.lengths.publicKey, 'publicKey'),
    secretKey: need(kem.lengths.secretKey, 'secretKey'),
    cipherText: need(kem.lengths.cipherText, 'cipherText'),
    sharedSecret: 32,
    seed: need(kem.lengths.seed, 'seed'),
    encapsRandomness: need(kem.lengths.msgRand, 'msgRand'),
  };
  return {
    id,
    description,
    nistLevel,
    lengths,
    available: () => true,
    keygen(seed) {
      if (seed !== undefined) checkBytes(`${id} keygen`, 'seed', seed, lengths.seed);
      const kp = kem.keygen(seed);
      return { publicKey: kp.publicKey, secretKey: kp.secretKey };
    },
    encapsulate(publicKey, randomness) {
      checkBytes(`${id} encapsulate`, 'public key', publicKey, lengths.publicKey);
      if (randomness !== undefined) checkBytes(`${id} encapsulate`, 'randomness', randomness, lengths.encapsRandomness);
      const out = kem.encapsulate(publicKey, randomness);
      return { cipherText: out.cipherText, sharedSecret: out.sharedSecret };
    },
    decapsulate(cipherText, secretKey) {
      checkBytes(`${id} decapsulate`, 'ciphertext', cipherText, lengths.cipherText);
      checkBytes(`${id} decapsulate`, 'secret key', secretKey, lengths.secretKey);
      return kem.decapsulate(cipherText, secretKey);
    },
  };
}

registerSuite(nobleSuite('ml-kem-768', 'ML-KEM-768 (FIPS 203), NIST level 3', 3, ml_kem768 as NobleKem));
registerSuite(nobleSuite('ml-kem-1024', 'ML-KEM-1024 (FIPS 203), NIST level 5', 5, ml_kem1024 as NobleKem));
registerSuite(
  nobleSuite('x-wing', 'X-Wing hybrid: ML-KEM-768 + X25519 (draft-connolly-cfrg-xwing-kem)', 3, ml_kem768_x25519 as NobleKem),
);
