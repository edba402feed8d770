/**
 * Interoperability with an independent NTRU implementation: liboqs (PQClean's C code compiled to WASM,
 * `@openforge-sh/liboqs`). Encapsulate with one, decapsulate with the other, in both directions, with keys
 * from both sides. Matching secrets show that keys, ciphertexts and the KEM are the same round-3 scheme.
 */
import { afterAll, expect, it } from 'vitest';
import { getSuite } from '../../src/crypto/kem.ts';
import '../../src/crypto/ntru.ts';
import { describeIf } from '../support/skip.ts';

interface OqsKem {
  generateKeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array };
  encapsulate(publicKey: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(ciphertext: Uint8Array, secretKey: Uint8Array): Uint8Array;
  destroy(): void;
}

const peers = new Map<string, OqsKem>();
let oqsError = '';
try {
  const oqs = await import('@openforge-sh/liboqs');
  peers.set('ntru-hps-4096-821', (await oqs.createNTRUHps4096821()) as OqsKem);
  peers.set('ntru-hrss-701', (await oqs.createNTRUHrss701()) as OqsKem);
} catch (e) {
  oqsError = (e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND'
    ? 'the on-demand oracle @openforge-sh/liboqs is not installed (it asks for Node >= 22, so it is no dependency); `npm install --no-save @openforge-sh/liboqs@0.14.3` enables this check'
    : e instanceof Error ? e.message : String(e);
}
afterAll(() => {
  for (const peer of peers.values()) peer.destroy();
});

const ROUNDS = 10;

for (const [id, oqsName] of [
  ['ntru-hps-4096-821', 'NTRU-HPS-4096-821'],
  ['ntru-hrss-701', 'NTRU-HRSS-701'],
] as const) {
  const suite = getSuite(id);
  const reason = !suite.available()
    ? `${id}: native addon not built (run \`npm run build:native\`), interop with liboqs not checked`
    : `${id}: liboqs WASM (${oqsName}) did not load: ${oqsError}`;

  describeIf(suite.available() && peers.has(id), reason)(`${id} interoperates with liboqs ${oqsName}`, () => {
    it('liboqs keys: we encapsulate, liboqs decapsulates', () => {
      const peer = peers.get(id)!;
      for (let i = 0; i < ROUNDS; i++) {
        const kp = peer.generateKeyPair();
        const ours = suite.encapsulate(kp.publicKey);
        expect(peer.decapsulate(ours.cipherText, kp.secretKey)).toEqual(ours.sharedSecret);
        // And our decapsulation accepts the liboqs secret key format.
        expect(suite.decapsulate(ours.cipherText, kp.secretKey)).toEqual(ours.sharedSecret);
      }
    });

    it('our keys: liboqs encapsulates, we decapsulate', () => {
      const peer = peers.get(id)!;
      for (let i = 0; i < ROUNDS; i++) {
        const kp = suite.keygen();
        const theirs = peer.encapsulate(kp.publicKey);
        expect(suite.decapsulate(theirs.ciphertext, kp.secretKey)).toEqual(theirs.sharedSecret);
        expect(peer.decapsulate(theirs.ciphertext, kp.secretKey)).toEqual(theirs.sharedSecret);
      }
    });

    it('both reject a wrong key implicitly, with the same pseudorandom secret', () => {
      const peer = peers.get(id)!;
      const mine = suite.keygen();
      const other = peer.generateKeyPair();
      const { cipherText, sharedSecret } = suite.encapsulate(mine.publicKey);
      const oursWrong = suite.decapsulate(cipherText, other.secretKey);
      expect(oursWrong).not.toEqual(sharedSecret);
      // The rejection secret is a hash of the PRF key in the secret key and the ciphertext, specified by
      // the scheme, so two correct implementations agree on it too.
      expect(peer.decapsulate(cipherText, other.secretKey)).toEqual(oursWrong);
    });
  });
}
