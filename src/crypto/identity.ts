/**
 * Identities: a KEM key pair (the capsule recipient) plus an ML-DSA-87 (FIPS 204) signing key pair.
 *
 * - The public identity (`<name>.pub.json`) is safe to commit or share.
 * - The secret identity is what the OS keychain (or a `--secret-out` file) holds. Where a scheme has a
 *   deterministic key generation from a seed (ML-KEM, X-Wing, ML-DSA), only the seed is stored: it is
 *   short enough for every OS keychain, and the full keys are re-derived on load. Suites without one
 *   (NTRU) store the secret key and the public key.
 * - kid = first 16 bytes of SHA-256("mongo-capsule/kid/v1" 0x00 algorithm-id 0x00 public-key), in hex.
 *   It names a public key; it is not secret and reveals nothing about the secret key.
 *
 * Decoding is strict: unknown fields, wrong lengths, or a kid that does not match the keys are rejected.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { IdentityFormatError, InvalidArgumentError } from '../errors.ts';
import { DEFAULT_SUITE, getSuite, type KemSuite } from './kem.ts';

export const SIGNATURE_ALGORITHM = 'ml-dsa-87';
export const KID_BYTES = 16;
const PUBLIC_FORMAT = 'mongo-capsule-public-identity';
const SECRET_FORMAT = 'mongo-capsule-secret-identity';
const IDENTITY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface SignerPublic {
  algorithm: typeof SIGNATURE_ALGORITHM;
  kid: string;
  publicKey: Uint8Array;
}

export interface PublicIdentity {
  name: string;
  suite: string;
  kid: string;
  publicKey: Uint8Array;
  signer: SignerPublic;
}

export interface SecretIdentity extends PublicIdentity {
  /** KEM seed, for suites with deterministic key generation. */
  kemSeed: Uint8Array | undefined;
  kemSecretKey: Uint8Array;
  signerSeed: Uint8Array;
  signerSecretKey: Uint8Array;
}

/** Key id of a public key: 16 bytes of a domain-separated SHA-256, as lowercase hex. */
export function computeKid(algorithm: string, publicKey: Uint8Array): string {
  const h = createHash('sha256');
  h.update('mongo-capsule/kid/v1\0');
  h.update(`${algorithm}\0`);
  h.update(publicKey);
  return h.digest().subarray(0, KID_BYTES).toString('hex');
}

export function checkIdentityName(op: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !IDENTITY_NAME.test(name)) {
    throw new InvalidArgumentError(
      `${op}: identity name must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

export interface GenerateIdentityOptions {
  name?: string;
  /** Fixed KEM seed (test vectors only). */
  kemSeed?: Uint8Array;
  /** Fixed ML-DSA seed (test vectors only). */
  signerSeed?: Uint8Array;
}

/**
 * A new identity from the OS CSPRNG.
 * @example
 * const id = generateIdentity('ml-kem-1024', { name: 'default' });
 * await writeFile('default.pub.json', encodePublicIdentity(toPublicIdentity(id)));
 */
export function generateIdentity(suiteId: string = DEFAULT_SUITE, options: GenerateIdentityOptions = {}): SecretIdentity {
  const name = options.name ?? 'default';
  checkIdentityName('generateIdentity', name);
  const suite = getSuite(suiteId);
  let kemSeed: Uint8Array | undefined;
  if (suite.lengths.seed !== undefined) {
    kemSeed = options.kemSeed ? Uint8Array.from(options.kemSeed) : crypto.getRandomValues(new Uint8Array(suite.lengths.seed));
  } else if (options.kemSeed !== undefined) {
    throw new InvalidArgumentError(`generateIdentity: suite ${suiteId} has no seeded key generation`);
  }
  const kem = suite.keygen(kemSeed);
  const signerSeed = options.signerSeed ? Uint8Array.from(options.signerSeed) : crypto.getRandomValues(new Uint8Array(32));
  return assembleSecret(name, suiteId, kemSeed, kem.publicKey, kem.secretKey, signerSeed);
}

function assembleSecret(
  name: string,
  suiteId: string,
  kemSeed: Uint8Array | undefined,
  kemPublicKey: Uint8Array,
  kemSecretKey: Uint8Array,
  signerSeed: Uint8Array,
): SecretIdentity {
  if (signerSeed.length !== 32) throw new InvalidArgumentError('generateIdentity: signer seed must be 32 bytes');
  const signer = ml_dsa87.keygen(signerSeed);
  return {
    name,
    suite: suiteId,
    kid: computeKid(suiteId, kemPublicKey),
    publicKey: kemPublicKey,
    signer: { algorithm: SIGNATURE_ALGORITHM, kid: computeKid(SIGNATURE_ALGORITHM, signer.publicKey), publicKey: signer.publicKey },
    kemSeed,
    kemSecretKey,
    signerSeed,
    signerSecretKey: signer.secretKey,
  };
}

/** The shareable half of an identity (a copy: wiping the secret identity does not affect it). */
export function toPublicIdentity(id: PublicIdentity): PublicIdentity {
  return {
    name: id.name,
    suite: id.suite,
    kid: id.kid,
    publicKey: Uint8Array.from(id.publicKey),
    signer: { algorithm: id.signer.algorithm, kid: id.signer.kid, publicKey: Uint8Array.from(id.signer.publicKey) },
  };
}

/**
 * An independent copy of a secret identity (its own buffers: wiping one leaves the other intact), for a caller
 * that must keep it while the original may be wiped (a key manager's cache entry expiring).
 */
export function copySecretIdentity(id: SecretIdentity): SecretIdentity {
  return {
    ...toPublicIdentity(id),
    kemSeed: id.kemSeed === undefined ? undefined : Uint8Array.from(id.kemSeed),
    kemSecretKey: Uint8Array.from(id.kemSecretKey),
    signerSeed: Uint8Array.from(id.signerSeed),
    signerSecretKey: Uint8Array.from(id.signerSecretKey),
  };
}

/** Overwrite every secret byte of an identity with zeros. The object must not be used afterwards. */
export function wipeSecretIdentity(id: SecretIdentity): void {
  id.kemSeed?.fill(0);
  id.kemSecretKey.fill(0);
  id.signerSeed.fill(0);
  id.signerSecretKey.fill(0);
}

const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');

function fromB64(op: string, field: string, value: unknown, length?: number): Uint8Array {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw new IdentityFormatError(`${op}: field ${field} must be base64`);
  }
  // Decoded into memory of its own: Buffer.from(…, 'base64') would leave a copy of a secret field in Node's
  // shared allocation pool, out of reach of wipeSecretIdentity.
  const decoded = Buffer.alloc(Buffer.byteLength(value, 'base64'));
  const bytes = new Uint8Array(decoded.buffer, decoded.byteOffset, decoded.write(value, 'base64'));
  const fail = (message: string): never => {
    bytes.fill(0);
    throw new IdentityFormatError(message);
  };
  if (b64(bytes) !== value) fail(`${op}: field ${field} is not canonical base64`);
  if (length !== undefined && bytes.length !== length) fail(`${op}: field ${field} must decode to ${length} bytes, got ${bytes.length}`);
  return bytes;
}

function expectObject(op: string, where: string, value: unknown, keys: readonly string[], optional: readonly string[] = []): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new IdentityFormatError(`${op}: ${where} must be a JSON object`);
  }
  const obj = value as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!keys.includes(k) && !optional.includes(k)) throw new IdentityFormatError(`${op}: unknown field ${where}.${k}`);
  }
  for (const k of keys) if (!(k in obj)) throw new IdentityFormatError(`${op}: missing field ${where}.${k}`);
  return obj;
}

function parseJson(op: string, text: string | Uint8Array): unknown {
  // TextDecoder reads the bytes in place; Buffer.from would copy a secret identity into the shared pool.
  const s = typeof text === 'string' ? text : new TextDecoder().decode(text);
  try {
    return JSON.parse(s);
  } catch {
    // The parser's message can quote the input, which for a secret identity is key material.
    throw new IdentityFormatError(`${op}: not valid JSON`);
  }
}

function checkSuite(op: string, suiteId: unknown): string {
  if (typeof suiteId !== 'string') throw new IdentityFormatError(`${op}: suite must be a string`);
  getSuite(suiteId);
  return suiteId;
}

/** JSON text of a public identity (`<name>.pub.json`). */
export function encodePublicIdentity(id: PublicIdentity): string {
  const doc = {
    format: PUBLIC_FORMAT,
    version: 1,
    name: id.name,
    suite: id.suite,
    kid: id.kid,
    publicKey: b64(id.publicKey),
    signer: { algorithm: id.signer.algorithm, kid: id.signer.kid, publicKey: b64(id.signer.publicKey) },
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** Parse and check a public identity: every field present and known, lengths right, kids matching the keys. */
export function decodePublicIdentity(text: string | Uint8Array): PublicIdentity {
  const op = 'decodePublicIdentity';
  const json = parseJson(op, text);
  const format = (json as { format?: unknown } | null)?.format;
  if (format !== PUBLIC_FORMAT) {
    throw new IdentityFormatError(
      format === SECRET_FORMAT
        ? `${op}: this is a secret identity file, not a public one`
        : `${op}: not a mongo-capsule public identity (format ${JSON.stringify(format)})`,
    );
  }
  const doc = expectObject(op, 'identity', json, ['format', 'version', 'name', 'suite', 'kid', 'publicKey', 'signer']);
  if (doc.version !== 1) throw new IdentityFormatError(`${op}: unsupported version ${JSON.stringify(doc.version)}`);
  checkIdentityName(op, doc.name);
  const suiteId = checkSuite(op, doc.suite);
  const suite = getSuite(suiteId);
  const publicKey = fromB64(op, 'publicKey', doc.publicKey, suite.lengths.publicKey);
  const s = expectObject(op, 'signer', doc.signer, ['algorithm', 'kid', 'publicKey']);
  if (s.algorithm !== SIGNATURE_ALGORITHM) throw new IdentityFormatError(`${op}: unsupported signer algorithm ${JSON.stringify(s.algorithm)}`);
  const signerPublicKey = fromB64(op, 'signer.publicKey', s.publicKey, ml_dsa87.lengths.publicKey);
  const id: PublicIdentity = {
    name: doc.name,
    suite: suiteId,
    kid: computeKid(suiteId, publicKey),
    publicKey,
    signer: { algorithm: SIGNATURE_ALGORITHM, kid: computeKid(SIGNATURE_ALGORITHM, signerPublicKey), publicKey: signerPublicKey },
  };
  if (doc.kid !== id.kid) throw new IdentityFormatError(`${op}: kid does not match the public key`);
  if (s.kid !== id.signer.kid) throw new IdentityFormatError(`${op}: signer kid does not match the signer public key`);
  checkKemAccepts(op, suite, publicKey);
  return id;
}

/**
 * A trial encapsulation: the KEM's own validation of a public key (FIPS 203's modulus check for ML-KEM, a
 * non-low-order X25519 point for X-Wing), so that a damaged key fails when the file is read, not when it is used.
 */
function checkKemAccepts(op: string, suite: KemSuite, publicKey: Uint8Array): void {
  if (!suite.available()) return; // the native addon is missing; any use reports that more usefully
  let probe;
  try {
    probe = suite.encapsulate(publicKey);
  } catch {
    throw new IdentityFormatError(`${op}: the ${suite.id} public key is not a valid key for its suite (the file is damaged)`);
  }
  probe.sharedSecret.fill(0);
}

/** JSON text holding the secret identity. Handle it like a private key. */
export function encodeSecretIdentity(id: SecretIdentity): string {
  const kem = id.kemSeed !== undefined ? { seed: b64(id.kemSeed) } : { secretKey: b64(id.kemSecretKey), publicKey: b64(id.publicKey) };
  const doc = {
    format: SECRET_FORMAT,
    version: 1,
    name: id.name,
    suite: id.suite,
    kid: id.kid,
    kem,
    signer: { algorithm: SIGNATURE_ALGORITHM, kid: id.signer.kid, seed: b64(id.signerSeed) },
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** Parse a secret identity and re-derive its keys; the stored kids must match the derived keys. */
export function decodeSecretIdentity(text: string | Uint8Array): SecretIdentity {
  const op = 'decodeSecretIdentity';
  const json = parseJson(op, text);
  const format = (json as { format?: unknown } | null)?.format;
  if (format !== SECRET_FORMAT) {
    throw new IdentityFormatError(
      format === PUBLIC_FORMAT
        ? `${op}: this is a public identity file; the secret keys are in the keychain or the --secret-out file`
        : `${op}: not a mongo-capsule secret identity (format ${JSON.stringify(format)})`,
    );
  }
  const doc = expectObject(op, 'identity', json, ['format', 'version', 'name', 'suite', 'kid', 'kem', 'signer']);
  if (doc.version !== 1) throw new IdentityFormatError(`${op}: unsupported version ${JSON.stringify(doc.version)}`);
  checkIdentityName(op, doc.name);
  const suiteId = checkSuite(op, doc.suite);
  const suite = getSuite(suiteId);
  const s = expectObject(op, 'signer', doc.signer, ['algorithm', 'kid', 'seed']);
  if (s.algorithm !== SIGNATURE_ALGORITHM) throw new IdentityFormatError(`${op}: unsupported signer algorithm ${JSON.stringify(s.algorithm)}`);
  const signerSeed = fromB64(op, 'signer.seed', s.seed, 32);
  const decoded: Uint8Array[] = [signerSeed];
  try {
    return decodeSecretKeys(op, doc, suite, signerSeed, decoded);
  } catch (e) {
    for (const b of decoded) b.fill(0);
    throw e;
  }
}

/** The keys of a secret identity from its decoded document; everything decoded is pushed to `decoded`. */
function decodeSecretKeys(op: string, doc: Record<string, unknown>, suite: KemSuite, signerSeed: Uint8Array, decoded: Uint8Array[]): SecretIdentity {
  const s = doc.signer as Record<string, unknown>;
  checkIdentityName(op, doc.name);
  let id: SecretIdentity;
  if (suite.lengths.seed !== undefined) {
    const k = expectObject(op, 'kem', doc.kem, ['seed']);
    const kemSeed = fromB64(op, 'kem.seed', k.seed, suite.lengths.seed);
    decoded.push(kemSeed);
    const kp = suite.keygen(kemSeed);
    decoded.push(kp.secretKey);
    id = assembleSecret(doc.name, suite.id, kemSeed, kp.publicKey, kp.secretKey, signerSeed);
  } else {
    const k = expectObject(op, 'kem', doc.kem, ['secretKey', 'publicKey']);
    const secretKey = fromB64(op, 'kem.secretKey', k.secretKey, suite.lengths.secretKey);
    decoded.push(secretKey);
    const publicKey = fromB64(op, 'kem.publicKey', k.publicKey, suite.lengths.publicKey);
    // Without a seed the public key cannot be re-derived, so prove the pair belongs together instead.
    const probe = suite.encapsulate(publicKey);
    const back = suite.decapsulate(probe.cipherText, secretKey);
    const matches = back.length === probe.sharedSecret.length && timingSafeEqual(back, probe.sharedSecret);
    probe.sharedSecret.fill(0);
    back.fill(0);
    if (!matches) throw new IdentityFormatError(`${op}: the KEM secret key does not match its public key; the secret identity is damaged`);
    id = assembleSecret(doc.name, suite.id, undefined, publicKey, secretKey, signerSeed);
  }
  decoded.push(id.signerSecretKey);
  if (doc.kid !== id.kid || s.kid !== id.signer.kid) {
    throw new IdentityFormatError(`${op}: stored kid does not match the keys; the secret identity is damaged`);
  }
  return id;
}
