/**
 * Interoperability with an independent NTRU implementation: liboqs (PQClean's C code compiled to WASM,
 * `@openforge-sh/liboqs`). Encapsulate with one, decapsulate with the other, in both directions, with keys
 * from both sides. Matching secrets show that keys, ciphertexts and the KEM are the same round-3 scheme.
 *
 * liboqs needs Node >= 22; on the project's Node 20 it runs as a child of the pinned Node 22 that
 * `npm run setup -- --only oracle` caches (test/support/liboqs-peer.ts), in-process on Node >= 22.
 */
import { afterAll, expect, it } from 'vitest';
import { getSuite } from '../../src/crypto/kem.ts';
import '../../src/crypto/ntru.ts';
import { describeIf } from '../support/skip.ts';
import { openLiboqsPeer } from '../support/liboqs-peer.ts';

const anyNative = getSuite('ntru-hps-4096-821').available() || getSuite('ntru-hrss-701').available();
// The oracle only starts when some addon is there to check against it.
const opened = anyNative ? await openLiboqsPeer() : { skip: 'no native NTRU addon' };
const peer = 'peer' in opened ? opened.peer : undefined;
afterAll(async () => {
  await peer?.close();
});
if (peer !== undefined) console.warn(`[info] NTRU interop peer: ${peer.via}`);

if ('broken' in opened) {
  // Installed but not running is a defect of the setup, not a missing capability.
  it('the liboqs oracle starts', () => {
    throw new Error(opened.broken);
  });
}

const ROUNDS = 10;

for (const [id, oqsName] of [
  ['ntru-hps-4096-821', 'NTRU-HPS-4096-821'],
  ['ntru-hrss-701', 'NTRU-HRSS-701'],
] as const) {
  const suite = getSuite(id);
  const reason = !suite.available()
    ? `${id}: native addon not built (run \`npm run build:native\`), interop with liboqs not checked`
    : `${id}: interop with liboqs ${oqsName} not checked: ${'skip' in opened ? opened.skip : 'broken' in opened ? opened.broken : ''}`;

  describeIf(suite.available() && peer !== undefined, reason)(`${id} interoperates with liboqs ${oqsName}`, () => {
    it('liboqs keys: we encapsulate, liboqs decapsulates', async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const kp = await peer!.keygen(id);
        const ours = suite.encapsulate(kp.publicKey);
        expect(await peer!.decapsulate(id, ours.cipherText, kp.secretKey)).toEqual(ours.sharedSecret);
        // And our decapsulation accepts the liboqs secret key format.
        expect(suite.decapsulate(ours.cipherText, kp.secretKey)).toEqual(ours.sharedSecret);
      }
    });

    it('our keys: liboqs encapsulates, we decapsulate', async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const kp = suite.keygen();
        const theirs = await peer!.encapsulate(id, kp.publicKey);
        expect(suite.decapsulate(theirs.ciphertext, kp.secretKey)).toEqual(theirs.sharedSecret);
        expect(await peer!.decapsulate(id, theirs.ciphertext, kp.secretKey)).toEqual(theirs.sharedSecret);
      }
    });

    it('both reject a wrong key implicitly, with the same pseudorandom secret', async () => {
      const mine = suite.keygen();
      const other = await peer!.keygen(id);
      const { cipherText, sharedSecret } = suite.encapsulate(mine.publicKey);
      const oursWrong = suite.decapsulate(cipherText, other.secretKey);
      expect(oursWrong).not.toEqual(sharedSecret);
      // The rejection secret is a hash of the PRF key in the secret key and the ciphertext, specified by
      // the scheme, so two correct implementations agree on it too.
      expect(await peer!.decapsulate(id, cipherText, other.secretKey)).toEqual(oursWrong);
    });
  });
}
