/**
 * Recipient tags: what binds an extra recipient of a capsule to the capsule's CMK.
 *
 * A capsule name can be sealed for several identities (each gets its own v1 capsule of the same CMK). When the
 * CMK is rotated, whoever rotates seals the new CMK for every recipient's public identity, read from the
 * capsule document. That list must not be something a database writer can extend: an entry for an attacker's
 * key (or a revoked recipient's old entry, written back) would get the next CMK. So every entry carries
 *
 *   tag = HMAC-SHA-256(key = HKDF-SHA-256(ikm = CMK, salt = "mongo-capsule/v1", info = "mongo-capsule/v1/recipient"),
 *                      msg = "mongo-capsule/v1/recipient\0" ‖ capsule name ‖ "\0" ‖ public identity text)
 *
 * Only a holder of the CMK can make it, and it names the exact public identity text stored beside it. A
 * rotation verifies every tag with the live CMK before sealing for anyone; an entry from an older generation
 * (made under an older CMK) fails, as does any entry made by someone who never held the CMK.
 * What the tag does not do: it vouches for nothing towards the opener (an attacker who chose a CMK can tag with
 * it); openers rely on the capsule's ML-DSA signature, as for any capsule.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../errors.ts';
import { CMK_LENGTH } from './capsule.ts';

export const RECIPIENT_TAG_LENGTH = 32;
const SALT = 'mongo-capsule/v1';
const INFO = 'mongo-capsule/v1/recipient';

/** The tag of `publicIdentityText` (a `.pub.json` text, exactly as stored) as a recipient of capsule `capsuleName`. */
export function recipientTag(cmk: Uint8Array, capsuleName: string, publicIdentityText: string): Uint8Array {
  if (!(cmk instanceof Uint8Array) || cmk.length !== CMK_LENGTH) throw new InvalidArgumentError(`recipientTag: the CMK must be ${CMK_LENGTH} bytes`);
  const key = new Uint8Array(hkdfSync('sha256', cmk, SALT, INFO, 32));
  try {
    const mac = createHmac('sha256', key);
    mac.update(`${INFO}\0${capsuleName}\0`);
    mac.update(publicIdentityText);
    return new Uint8Array(mac.digest());
  } finally {
    key.fill(0);
  }
}

/** True when `tag` is the recipient tag of `publicIdentityText` for capsule `capsuleName` under `cmk`. */
export function verifyRecipientTag(cmk: Uint8Array, capsuleName: string, publicIdentityText: string, tag: Uint8Array | null | undefined): boolean {
  if (!(tag instanceof Uint8Array) || tag.length !== RECIPIENT_TAG_LENGTH) return false;
  return timingSafeEqual(recipientTag(cmk, capsuleName, publicIdentityText), tag);
}
