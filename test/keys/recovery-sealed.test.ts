/**
 * Sealed shares (share file version 2) at the format level: they open to the very share that was sealed, for each
 * KEM suite of the project; the AEAD refuses a sealed share whose signature was recomputed over changed bytes (only
 * the owner could do that, but the seal must not depend on the signature alone); a wrong custodian is typed; fuzzed
 * files give typed errors only.
 */
import { randomInt } from 'node:crypto';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { expect, it } from 'vitest';
import { generateIdentity, toPublicIdentity, wipeSecretIdentity } from '../../src/crypto/index.ts';
import { isMongoCapsuleError, RecoveryShareDamagedError, RecoveryShareFormatError, RecoveryShareWrongCustodianError } from '../../src/errors.ts';
import { readSealedShare } from '../../src/keys/recovery-backup.ts';
import { combineShares, decodeShareInput, splitIdentity } from '../../src/keys/recovery-shares.ts';
import { decodeSealedShare, openSealedShare, sealShare } from '../../src/keys/recovery-sealed.ts';

const CONTEXT = new TextEncoder().encode('mongo-capsule/recovery-share/v2');

it.each(['ml-kem-768', 'ml-kem-1024', 'x-wing'])('a share sealed for a %s custodian opens to the same bytes and the shares combine', async (suite) => {
  const owner = generateIdentity('ml-kem-768', { name: 'owner' });
  const custodian = generateIdentity(suite, { name: 'cust' });
  const shares = await splitIdentity(owner, { threshold: 2, shares: 2 });
  const opened = shares.map((s, i) => openSealedShare(decodeSealedShare(JSON.parse(sealShare(s, toPublicIdentity(custodian), owner)), `s${i}`), custodian));
  expect(opened.map((s) => Buffer.from(s.share).toString('hex'))).toEqual(shares.map((s) => Buffer.from(s.share).toString('hex')));
  const { identity } = await combineShares(opened, 'owner');
  expect(identity.kid).toBe(owner.kid);
  for (const id of [owner, custodian, identity]) wipeSecretIdentity(id);
});

it('the seal itself refuses changed bytes even under a recomputed signature; another identity is the wrong custodian', async () => {
  const owner = generateIdentity('ml-kem-768', { name: 'owner' });
  const alice = generateIdentity('ml-kem-768', { name: 'alice' });
  const bob = generateIdentity('ml-kem-768', { name: 'bob' });
  const [share] = await splitIdentity(owner, { threshold: 2, shares: 2 });
  const doc = JSON.parse(sealShare(share!, toPublicIdentity(alice), owner));
  expect(() => openSealedShare(decodeSealedShare(doc, 'f'), bob)).toThrow(RecoveryShareWrongCustodianError);
  const sealed = Buffer.from(doc.sealed, 'base64');
  sealed[0]! ^= 1;
  const changed = { ...doc, sealed: sealed.toString('base64') };
  const fields = Object.keys(doc).filter((k) => k !== 'signature');
  changed.signature = Buffer.from(ml_dsa87.sign(new TextEncoder().encode(JSON.stringify(fields.map((f) => changed[f]))), owner.signerSecretKey, { context: CONTEXT })).toString('base64');
  const parsed = decodeSealedShare(changed, 'changed');
  expect(() => openSealedShare(parsed, alice)).toThrow(RecoveryShareDamagedError);
  expect(() => openSealedShare(parsed, alice)).toThrow(/does not open with custodian alice's key/);
  expect(() => decodeSealedShare({ ...doc, extra: 1 }, 'x')).toThrow(RecoveryShareFormatError);
  expect(() => decodeSealedShare({ ...doc, signerPublicKey: Buffer.from(bob.signer.publicKey).toString('base64') }, 'x')).toThrow(RecoveryShareDamagedError);
  for (const id of [owner, alice, bob]) wipeSecretIdentity(id);
});

it('fuzzed sealed share files give typed errors only, and whatever opens is the very share that was sealed', async () => {
  const owner = generateIdentity('x-wing', { name: 'owner' });
  const alice = generateIdentity('x-wing', { name: 'alice' });
  const [share] = await splitIdentity(owner, { threshold: 2, shares: 2 });
  const text = Buffer.from(sealShare(share!, toPublicIdentity(alice), owner));
  const expected = Buffer.from(share!.share).toString('hex');
  let opened = 0;
  let typed = 0;
  for (let n = 0; n < 3000; n++) {
    const bytes = Buffer.from(text);
    const mode = n % 3;
    if (mode === 0) bytes[randomInt(bytes.length)] = randomInt(256);
    else if (mode === 1) bytes[randomInt(bytes.length)]! ^= 1 << randomInt(8);
    const input = mode === 2 ? bytes.subarray(0, randomInt(bytes.length)) : bytes;
    try {
      // As keys restore reads a share file: not a sealed share, then it must fail as a plain one.
      const sealed = readSealedShare(input, 'fuzz');
      if (sealed === undefined) {
        decodeShareInput(input, 'fuzz');
        throw new Error('a damaged sealed share decoded as a plain share');
      }
      const s = openSealedShare(sealed, alice);
      expect(Buffer.from(s.share).toString('hex')).toBe(expected);
      opened++;
    } catch (e) {
      if (!isMongoCapsuleError(e)) throw e;
      typed++;
    }
  }
  expect(opened + typed).toBe(3000);
  expect(typed).toBeGreaterThan(2900);
  for (const id of [owner, alice]) wipeSecretIdentity(id);
}, 120_000);
