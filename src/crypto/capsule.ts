/**
 * Capsule format v1: the 96-byte CSFLE local master key (CMK) sealed for one recipient public key.
 *
 * KEM-DEM in the style of RFC 9180 (HPKE) base mode:
 *   (ct, ss) = KEM.Encaps(pk)
 *   aad      = every byte before the AEAD ciphertext (header, KEM ciphertext length, KEM ciphertext)
 *   key‖iv   = HKDF-SHA-256(ikm = ss, salt = "mongo-capsule/v1", info = "mongo-capsule/v1/cmk" ‖ SHA-256(aad), L = 44)
 *   sealed   = AES-256-GCM(key, iv, CMK, aad)                        (96 bytes + 16-byte tag)
 *   sig      = ML-DSA-87.Sign(sk_sign, everything before it, ctx = "mongo-capsule/v1")   (optional)
 * The byte layout is specified in docs/capsule-format.md.
 *
 * Properties:
 * - Non-malleable: every stored byte is the KEM ciphertext or is authenticated by the AEAD (and by the
 *   signature when present); the parser accepts exactly one encoding per capsule (fixed or length-checked
 *   fields, reserved bits zero, no trailing bytes), so any flipped bit, truncation or extension is rejected.
 * - KEM decapsulation with a wrong key does not fail (implicit rejection); the AEAD tag check does, and the
 *   error says "wrong key or tampered capsule".
 * - The IV is derived, not stored: the key is fresh for every encapsulation, so (key, iv) never repeats.
 * - An unsigned capsule proves nothing about who made it: anyone with the public key can seal a CMK of
 *   their choosing. Seeding signs, and unwrapping verifies signatures against known signer keys.
 *
 * Caveats: AES-GCM and HKDF come from node:crypto (OpenSSL); KEMs and ML-DSA from the suite registry. Our
 * copies of shared secrets, derived keys and the CMK are wiped in `finally`; JavaScript cannot promise that
 * the engine made no other copies.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import {
  CapsuleAuthError,
  CapsuleFormatError,
  InvalidArgumentError,
  InvalidKeyLengthError,
  MongoCapsuleError,
  SignatureInvalidError,
  SignerUnknownError,
} from '../errors.ts';
import { checkBytes, getSuite, hasSuite, type Encapsulation, type KemSuite } from './kem.ts';
import { computeKid, KID_BYTES, SIGNATURE_ALGORITHM, type PublicIdentity, type SecretIdentity, type SignerPublic } from './identity.ts';

/** Length of the CSFLE local master key that capsules carry. */
export const CMK_LENGTH = 96;
export const CAPSULE_VERSION = 1;
const MAGIC = Uint8Array.from([0x4d, 0x43, 0x41, 0x50]); // "MCAP"
const FLAG_SIGNED = 0x01;
const TAG_LENGTH = 16;
const SEALED_LENGTH = CMK_LENGTH + TAG_LENGTH;
const SIGNATURE_LENGTH = 4627; // ML-DSA-87
const HKDF_SALT = 'mongo-capsule/v1';
const HKDF_INFO_PREFIX = 'mongo-capsule/v1/cmk';
const SIGNATURE_CONTEXT = new TextEncoder().encode('mongo-capsule/v1');
const CAPSULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const SUITE_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** The latest time a JavaScript Date can hold (ms since 1970): a creation time beyond it could not be shown. */
const MAX_CREATED_MS = 8_640_000_000_000_000n;

export interface CapsuleHeader {
  version: number;
  suite: string;
  /** kid of the recipient KEM public key (hex). */
  kid: string;
  name: string;
  createdAt: Date;
  signed: boolean;
  /** kid of the ML-DSA-87 key that signed the capsule, or null when unsigned. */
  signerKid: string | null;
}

export interface ParsedCapsule {
  header: CapsuleHeader;
  /** Bytes authenticated as AEAD associated data (header through KEM ciphertext). */
  aad: Uint8Array;
  kemCipherText: Uint8Array;
  sealed: Uint8Array;
  /** Bytes covered by the signature (everything before it); equals the whole capsule when unsigned. */
  signedPart: Uint8Array;
  signature: Uint8Array | null;
}

export interface WrapOptions {
  /** Capsule name: 1-255 of letters, digits, '.', '_', '-', starting with a letter or digit. */
  name: string;
  /** Creation time stored in the header; defaults to now. */
  createdAt?: Date;
  /** Sign the capsule with this identity's ML-DSA-87 key (recommended). */
  signer?: Pick<SecretIdentity, 'signer' | 'signerSecretKey'>;
  /** Fixed KEM randomness, for test vectors only. */
  encapsRandomness?: Uint8Array;
  /** Deterministic ML-DSA signing, for test vectors only (production signing is hedged with fresh randomness). */
  deterministicSignature?: boolean;
}

export interface UnwrapOptions {
  /**
   * Public keys trusted to have signed capsules. The recipient identity's own signer key is always trusted.
   * A signed capsule whose signer is not among them is rejected with SignerUnknownError.
   */
  signers?: ReadonlyArray<SignerPublic | PublicIdentity>;
  /** Reject capsules that carry no signature. */
  requireSignature?: boolean;
}

/** 96 fresh bytes from the OS CSPRNG: a new CSFLE local master key. Wipe it when done. */
export function generateCmk(): Uint8Array {
  return new Uint8Array(randomBytes(CMK_LENGTH));
}

function checkCapsuleName(op: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !CAPSULE_NAME.test(name)) {
    throw new InvalidArgumentError(
      `${op}: capsule name must be 1-255 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

function deriveKeyIv(sharedSecret: Uint8Array, aad: Uint8Array): { key: Buffer; iv: Buffer } {
  const info = Buffer.concat([Buffer.from(HKDF_INFO_PREFIX), createHash('sha256').update(aad).digest()]);
  const okm = Buffer.from(hkdfSync('sha256', sharedSecret, HKDF_SALT, info, 44));
  const key = Buffer.from(okm.subarray(0, 32));
  const iv = Buffer.from(okm.subarray(32, 44));
  okm.fill(0);
  return { key, iv };
}

/** Encapsulate, turning the KEM's own rejection of a malformed public key into a typed error. */
function encapsulateTo(op: string, suite: KemSuite, publicKey: Uint8Array, randomness?: Uint8Array): Encapsulation {
  try {
    return suite.encapsulate(publicKey, randomness);
  } catch (e) {
    if (e instanceof MongoCapsuleError) throw e;
    throw new InvalidArgumentError(`${op}: the ${suite.id} public key is not a valid key for its suite`, {
      hint: 'the public identity file is damaged; write it again with `mongo-capsule keys status --pub-out <file>`',
    });
  }
}

/**
 * Seal a 96-byte CMK for `recipient`. Returns the canonical capsule bytes.
 * @example
 * const cmk = generateCmk();
 * const capsule = wrapKey(cmk, publicIdentity, { name: 'default', signer: secretIdentity });
 * cmk.fill(0);
 */
export function wrapKey(cmk: Uint8Array, recipient: Pick<PublicIdentity, 'suite' | 'kid' | 'publicKey'>, options: WrapOptions): Uint8Array {
  const op = 'wrapKey';
  checkBytes(op, 'CMK', cmk);
  if (cmk.length !== CMK_LENGTH) {
    throw new InvalidKeyLengthError(`${op}: the payload must be the ${CMK_LENGTH}-byte CSFLE local master key, got ${cmk.length} bytes`, {
      hint: 'capsules carry exactly one CSFLE local master key; generate one with `generateCmk()`',
    });
  }
  checkCapsuleName(op, options.name);
  const suite = getSuite(recipient.suite);
  checkBytes(op, 'recipient public key', recipient.publicKey, suite.lengths.publicKey);
  const kid = computeKid(suite.id, recipient.publicKey);
  if (recipient.kid !== kid) throw new InvalidArgumentError(`${op}: recipient kid does not match its public key`);
  const createdAt = options.createdAt ?? new Date();
  const ms = createdAt.getTime();
  if (!Number.isSafeInteger(ms) || ms < 0) throw new InvalidArgumentError(`${op}: createdAt must be a valid date after 1970`);
  const signer = options.signer;
  if (signer !== undefined) {
    checkBytes(op, 'signer secret key', signer.signerSecretKey, ml_dsa87.lengths.secretKey);
    checkBytes(op, 'signer public key', signer.signer?.publicKey, ml_dsa87.lengths.publicKey);
    if (signer.signer.kid !== computeKid(SIGNATURE_ALGORITHM, signer.signer.publicKey)) {
      throw new InvalidArgumentError(`${op}: signer kid does not match its public key`);
    }
  }

  const nameBytes = Buffer.from(options.name, 'ascii');
  const suiteBytes = Buffer.from(suite.id, 'ascii');
  const head = Buffer.alloc(4 + 1 + 1 + 1 + suiteBytes.length + KID_BYTES + 1 + nameBytes.length + 8 + (signer ? KID_BYTES : 0));
  let o = 0;
  head.set(MAGIC, o), (o += 4);
  head[o++] = CAPSULE_VERSION;
  head[o++] = signer ? FLAG_SIGNED : 0;
  head[o++] = suiteBytes.length;
  head.set(suiteBytes, o), (o += suiteBytes.length);
  head.write(kid, o, 'hex'), (o += KID_BYTES);
  head[o++] = nameBytes.length;
  head.set(nameBytes, o), (o += nameBytes.length);
  head.writeBigUInt64BE(BigInt(ms), o), (o += 8);
  if (signer) head.write(signer.signer.kid, o, 'hex'), (o += KID_BYTES);

  const { cipherText, sharedSecret } = encapsulateTo(op, suite, recipient.publicKey, options.encapsRandomness);
  let key: Buffer | undefined;
  let iv: Buffer | undefined;
  try {
    const ctLen = Buffer.alloc(2);
    ctLen.writeUInt16BE(cipherText.length);
    const aad = Buffer.concat([head, ctLen, cipherText]);
    ({ key, iv } = deriveKeyIv(sharedSecret, aad));
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad);
    const sealed = Buffer.concat([cipher.update(cmk), cipher.final(), cipher.getAuthTag()]);
    const body = Buffer.concat([aad, sealed]);
    if (!signer) return new Uint8Array(body);
    const signature = ml_dsa87.sign(body, signer.signerSecretKey, {
      context: SIGNATURE_CONTEXT,
      ...(options.deterministicSignature ? { extraEntropy: false as const } : {}),
    });
    // A secret key that does not belong to the signer's public key would yield a capsule nobody can verify,
    // and so a CMK nobody can use: check before anything is stored.
    if (!ml_dsa87.verify(signature, body, signer.signer.publicKey, { context: SIGNATURE_CONTEXT })) {
      throw new InvalidArgumentError(`${op}: the signer's secret key does not match its public key`, {
        hint: 'the secret identity is damaged; restore it from the keychain or a backup',
      });
    }
    return new Uint8Array(Buffer.concat([body, signature]));
  } finally {
    sharedSecret.fill(0);
    key?.fill(0);
    iv?.fill(0);
  }
}

/**
 * Strictly parse capsule bytes without any key. Accepts exactly the canonical encoding; anything else
 * throws CapsuleFormatError. The input is never modified; the returned views alias it.
 */
export function parseCapsule(bytes: Uint8Array): ParsedCapsule {
  const fail = (why: string): never => {
    throw new CapsuleFormatError(`not a valid capsule: ${why}`);
  };
  if (!(bytes instanceof Uint8Array)) fail('expected bytes');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  const need = (n: number, what: string) => {
    if (buf.length - o < n) fail(`truncated in ${what}`);
  };
  need(6, 'magic');
  if (!buf.subarray(0, 4).equals(MAGIC)) fail('bad magic (not a mongo-capsule capsule)');
  o = 4;
  const version = buf[o++]!;
  if (version !== CAPSULE_VERSION) fail(`unsupported version ${version} (this build reads version ${CAPSULE_VERSION})`);
  const flags = buf[o++]!;
  if ((flags & ~FLAG_SIGNED) !== 0) fail('reserved flag bits are set');
  const signed = (flags & FLAG_SIGNED) !== 0;

  need(1, 'suite length');
  const suiteLen = buf[o++]!;
  need(suiteLen, 'suite id');
  const suiteId = buf.subarray(o, o + suiteLen).toString('latin1');
  o += suiteLen;
  if (!SUITE_ID.test(suiteId)) fail('malformed suite id');
  if (!hasSuite(suiteId)) fail(`unknown suite ${JSON.stringify(suiteId)}`);
  const suite = getSuite(suiteId);

  need(KID_BYTES, 'kid');
  const kid = buf.subarray(o, o + KID_BYTES).toString('hex');
  o += KID_BYTES;

  need(1, 'name length');
  const nameLen = buf[o++]!;
  need(nameLen, 'name');
  const name = buf.subarray(o, o + nameLen).toString('latin1');
  o += nameLen;
  if (!CAPSULE_NAME.test(name)) fail('malformed capsule name');

  need(8, 'creation time');
  const created = buf.readBigUInt64BE(o);
  o += 8;
  if (created > MAX_CREATED_MS) fail('creation time out of range');

  let signerKid: string | null = null;
  if (signed) {
    need(KID_BYTES, 'signer kid');
    signerKid = buf.subarray(o, o + KID_BYTES).toString('hex');
    o += KID_BYTES;
  }

  need(2, 'KEM ciphertext length');
  const ctLen = buf.readUInt16BE(o);
  o += 2;
  if (ctLen !== suite.lengths.cipherText) fail(`KEM ciphertext length ${ctLen} does not match suite ${suiteId}`);
  need(ctLen, 'KEM ciphertext');
  const kemCipherText = bytes.subarray(o, o + ctLen);
  o += ctLen;
  const aad = bytes.subarray(0, o);

  need(SEALED_LENGTH, 'sealed key');
  const sealed = bytes.subarray(o, o + SEALED_LENGTH);
  o += SEALED_LENGTH;
  const signedPart = bytes.subarray(0, o);

  let signature: Uint8Array | null = null;
  if (signed) {
    need(SIGNATURE_LENGTH, 'signature');
    signature = bytes.subarray(o, o + SIGNATURE_LENGTH);
    o += SIGNATURE_LENGTH;
  }
  if (o !== buf.length) fail(`${buf.length - o} unexpected trailing bytes`);

  return {
    header: { version, suite: suiteId, kid, name, createdAt: new Date(Number(created)), signed, signerKid },
    aad,
    kemCipherText,
    sealed,
    signedPart,
    signature,
  };
}

function verifySignature(parsed: ParsedCapsule, trusted: ReadonlyArray<SignerPublic>): void {
  const { signerKid } = parsed.header;
  const signer = trusted.find((s) => s.kid === signerKid);
  if (signer === undefined) {
    throw new SignerUnknownError(`capsule is signed by unknown key ${signerKid}`, {
      hint: 'pass the public identity file of the signer (`--verify <file.pub.json>`)',
    });
  }
  if (computeKid(SIGNATURE_ALGORITHM, signer.publicKey) !== signer.kid) {
    throw new InvalidArgumentError('unwrapKey: trusted signer kid does not match its public key');
  }
  const ok = ml_dsa87.verify(parsed.signature!, parsed.signedPart, signer.publicKey, { context: SIGNATURE_CONTEXT });
  if (!ok) throw new SignatureInvalidError();
}

/**
 * Open an already parsed capsule with a raw KEM secret key: decapsulate, derive, AEAD-decrypt.
 * Does not check kids or signatures (unwrapKey does); exposed for tests and tools.
 */
export function openParsedCapsule(parsed: ParsedCapsule, kemSecretKey: Uint8Array): Uint8Array {
  const suite = getSuite(parsed.header.suite);
  checkBytes('openParsedCapsule', 'KEM secret key', kemSecretKey, suite.lengths.secretKey);
  let sharedSecret: Uint8Array;
  try {
    sharedSecret = suite.decapsulate(parsed.kemCipherText, kemSecretKey);
  } catch (e) {
    // Implicit rejection covers most tampering; what a KEM still refuses outright (X-Wing: a low-order X25519
    // point) is the same failure to the caller.
    if (e instanceof MongoCapsuleError) throw e;
    throw new CapsuleAuthError();
  }
  let key: Buffer | undefined;
  let iv: Buffer | undefined;
  try {
    ({ key, iv } = deriveKeyIv(sharedSecret, parsed.aad));
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_LENGTH });
    decipher.setAAD(parsed.aad);
    decipher.setAuthTag(parsed.sealed.subarray(CMK_LENGTH));
    const head = decipher.update(parsed.sealed.subarray(0, CMK_LENGTH));
    let tail: Buffer;
    try {
      tail = decipher.final();
    } catch {
      head.fill(0);
      throw new CapsuleAuthError();
    }
    // Assembled in memory of its own: Buffer.concat would leave a copy in Node's shared allocation pool.
    const cmk = new Uint8Array(CMK_LENGTH);
    cmk.set(head);
    cmk.set(tail, head.length);
    head.fill(0);
    tail.fill(0);
    return cmk;
  } finally {
    sharedSecret.fill(0);
    key?.fill(0);
    iv?.fill(0);
  }
}

/**
 * Verify (when signed) and open a capsule with a secret identity. Returns the 96-byte CMK; wipe it when done.
 * @example
 * const cmk = unwrapKey(capsule, secretIdentity);
 * try { useKey(cmk); } finally { cmk.fill(0); }
 */
export function unwrapKey(
  bytes: Uint8Array,
  secret: Pick<SecretIdentity, 'suite' | 'kid' | 'kemSecretKey' | 'signer'>,
  options: UnwrapOptions = {},
): Uint8Array {
  const parsed = parseCapsule(bytes);
  const { header } = parsed;
  if (header.suite !== secret.suite || header.kid !== secret.kid) {
    throw new CapsuleAuthError(
      `capsule unwrap failed: wrong key (capsule is for ${header.suite} key ${header.kid}, identity is ${secret.suite} key ${secret.kid})`,
    );
  }
  if (header.signed) {
    const trusted: SignerPublic[] = [secret.signer];
    for (const s of options.signers ?? []) trusted.push('signer' in s ? s.signer : s);
    verifySignature(parsed, trusted);
  } else if (options.requireSignature) {
    throw new SignatureInvalidError('capsule is not signed, and a signature is required', { hint: UNSIGNED_HINT });
  }
  return openParsedCapsule(parsed, secret.kemSecretKey);
}

/** An unsigned capsule proves nothing about who made it: say how to get a signed one, and what the opt-out is. */
const UNSIGNED_HINT =
  'have the capsule sealed with a signature (`mongo-capsule wrap --sign-name <identity>`, `seed --sign-name <identity>`) and trust that signer with `--trust <pub.json>`; accept an unsigned capsule only knowingly, with `--allow-unsigned`';

/** Verify the signature of a capsule without opening it (no secret key needed). */
export function verifyCapsule(bytes: Uint8Array, signers: ReadonlyArray<SignerPublic | PublicIdentity>): CapsuleHeader {
  const parsed = parseCapsule(bytes);
  if (!parsed.header.signed) throw new SignatureInvalidError('capsule is not signed', { hint: UNSIGNED_HINT });
  verifySignature(parsed, signers.map((s) => ('signer' in s ? s.signer : s)));
  return parsed.header;
}

/** The header as plain JSON-able data (never any secret): what `mongo-capsule inspect` prints. */
export function describeCapsule(bytes: Uint8Array): Record<string, unknown> {
  const { header } = parseCapsule(bytes);
  return {
    format: 'mongo-capsule',
    version: header.version,
    name: header.name,
    suite: header.suite,
    kid: header.kid,
    createdAt: header.createdAt.toISOString(),
    signed: header.signed,
    signerKid: header.signerKid,
    signatureAlgorithm: header.signed ? SIGNATURE_ALGORITHM : null,
    size: bytes.length,
  };
}

/** The BSON-ready document form of a capsule (the `capsules` collection). `bytes` is the canonical encoding. */
export interface CapsuleDocument {
  name: string;
  version: number;
  suite: string;
  kid: string;
  signerKid: string | null;
  createdAt: Date;
  bytes: Uint8Array;
}

const DOCUMENT_FIELDS = ['name', 'version', 'suite', 'kid', 'signerKid', 'createdAt', 'bytes'] as const;

/** Document form of capsule bytes: the canonical bytes plus their header fields, for queries and indexes. */
export function capsuleToDocument(bytes: Uint8Array): CapsuleDocument {
  const { header } = parseCapsule(bytes);
  return {
    name: header.name,
    version: header.version,
    suite: header.suite,
    kid: header.kid,
    signerKid: header.signerKid,
    createdAt: header.createdAt,
    bytes: Uint8Array.from(bytes),
  };
}

/**
 * Capsule bytes from their document form. The header fields must agree exactly with the bytes, so the two
 * encodings round-trip. Fields other than the capsule's are rejected unless listed in `allowFields`
 * (for example `_id` or bookkeeping fields of a store).
 */
export function capsuleFromDocument(doc: unknown, allowFields: readonly string[] = ['_id']): Uint8Array {
  const fail = (why: string): never => {
    throw new CapsuleFormatError(`not a valid capsule document: ${why}`);
  };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail('expected an object');
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) {
    if (!(DOCUMENT_FIELDS as readonly string[]).includes(k) && !allowFields.includes(k)) fail(`unknown field ${k}`);
  }
  for (const k of DOCUMENT_FIELDS) if (!(k in d)) fail(`missing field ${k}`);
  const raw = d.bytes;
  let bytes: Uint8Array;
  if (raw instanceof Uint8Array) bytes = Uint8Array.from(raw);
  else if (typeof raw === 'object' && raw !== null && 'buffer' in raw && (raw as { buffer: unknown }).buffer instanceof Uint8Array) {
    // A BSON Binary (its `buffer` holds the bytes) without importing bson into the crypto core. Only the generic
    // subtype 0 that capsuleToDocument's bytes are stored as, so that one capsule has one document form.
    if ((raw as { sub_type?: unknown }).sub_type !== 0) fail('field bytes must be binary of subtype 0');
    bytes = Uint8Array.from((raw as { buffer: Uint8Array }).buffer);
  } else fail('field bytes must be binary');
  const expected = capsuleToDocument(bytes!);
  const created = d.createdAt;
  if (!(created instanceof Date) || created.getTime() !== expected.createdAt.getTime()) fail('createdAt does not match the capsule bytes');
  for (const k of ['name', 'version', 'suite', 'kid', 'signerKid'] as const) {
    if (d[k] !== expected[k]) fail(`${k} does not match the capsule bytes`);
  }
  return bytes!;
}
