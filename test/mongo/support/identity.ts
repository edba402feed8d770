/** In-memory identities for the integration tests: the key manager's job, without a keychain. */
import { generateIdentity, toPublicIdentity, unwrapKey, type PublicIdentity, type SecretIdentity } from '../../../src/crypto/index.ts';

export interface TestIdentity {
  secret: SecretIdentity;
  pub: PublicIdentity;
  /** Verifies and opens a capsule like KeyManager.unwrap does. */
  unwrap: (capsule: Uint8Array) => Promise<Uint8Array>;
}

export function testIdentity(name = 'test'): TestIdentity {
  const secret = generateIdentity('ml-kem-1024', { name });
  return { secret, pub: toPublicIdentity(secret), unwrap: async (c) => unwrapKey(c, secret) };
}
