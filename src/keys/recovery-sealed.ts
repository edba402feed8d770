/**
 * Sealed recovery shares (share file version 2): one share of a backup sealed for one custodian's public identity,
 * so that shares can be mailed, and signed by the identity being backed up, so that a swapped or altered share is
 * detected before anything is combined.
 *
 * - Sealing is the capsule construction (docs/capsule-format.md) with labels of its own: the custodian's KEM
 *   encapsulates a shared secret, HKDF-SHA-256 derives an AES-256-GCM key and IV from it and from a digest of every
 *   public field (the associated data), and the share bytes are encrypted under them. Only the custodian's secret
 *   key opens it; a ciphertext moved under another header does not open.
 * - The identity's ML-DSA-87 key signs every field (public fields, KEM ciphertext, sealed bytes). The signer's
 *   public key travels in the file and must hash to `signerKid`; after combining, the rebuilt identity must hold
 *   that very signer key (recovery-shares.ts checks the signer kid), so a share signed by anyone else is caught.
 * - A custodian opens their share into a plain share file (version 1); restore then takes it like any other.
 * Format: docs/keys.md, "Sealed shares".
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, timingSafeEqual } from 'node:crypto';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { computeKid, getSuite, SIGNATURE_ALGORITHM, type PublicIdentity, type SecretIdentity } from '../crypto/index.ts';
import { RecoveryShareDamagedError, RecoveryShareFormatError, RecoveryShareWrongCustodianError } from '../errors.ts';
import { materialLength, SHARE_FORMAT, type RecoveryShare } from './recovery-shares.ts';

export const SEALED_SHARE_VERSION = 2;
const SEAL_SALT = 'mongo-capsule/recovery-share/v2';
const SEAL_INFO = 'mongo-capsule/recovery-share/v2/seal';
const DIGEST_LABEL = 'mongo-capsule/recovery-share/v2/share\0';
const SIGNATURE_CONTEXT = new TextEncoder().encode('mongo-capsule/recovery-share/v2');
const TAG_LENGTH = 16;
const FIELDS = [
  'format', 'version', 'name', 'suite', 'kid', 'signerKid', 'threshold', 'shares', 'index', 'backupId', 'createdAt', 'commitment',
  'custodianName', 'custodianSuite', 'custodianKid', 'shareDigest', 'signerPublicKey', 'kemCipherText', 'sealed', 'signature',
] as const;
/** The fields the AEAD authenticates as associated data: everything before the sealed bytes. */
const AAD_FIELDS = FIELDS.slice(0, FIELDS.indexOf('sealed'));
const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SUITE = /^[a-z0-9-]{1,40}$/;

/** A sealed share as read from its file: public fields checked and the signature verified; the share still sealed. */
export interface SealedShare {
  source: string;
  name: string;
  suite: string;
  kid: string;
  signerKid: string;
  threshold: number;
  shares: number;
  index: number;
  backupId: string;
  createdAt: string;
  commitment: Uint8Array;
  custodian: { name: string; suite: string; kid: string };
  shareDigest: string;
  kemCipherText: Uint8Array;
  sealed: Uint8Array;
  /** The associated data the AEAD authenticates. */
  aad: Uint8Array;
}

const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function digestOf(share: Uint8Array): string {
  return createHash('sha256').update(DIGEST_LABEL).update(share).digest('hex');
}

function encodeValues(doc: Record<string, unknown>, fields: readonly string[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(fields.map((f) => doc[f])));
}

function deriveKeyIv(sharedSecret: Uint8Array, aad: Uint8Array): { key: Buffer; iv: Buffer } {
  const info = Buffer.concat([Buffer.from(SEAL_INFO), createHash('sha256').update(aad).digest()]);
  const okm = Buffer.from(hkdfSync('sha256', sharedSecret, SEAL_SALT, info, 44));
  const key = Buffer.from(okm.subarray(0, 32));
  const iv = Buffer.from(okm.subarray(32, 44));
  okm.fill(0);
  return { key, iv };
}

/** Whether a parsed JSON share document is a sealed share (version 2). */
export function isSealedShareDocument(doc: unknown): boolean {
  return typeof doc === 'object' && doc !== null && (doc as Record<string, unknown>).format === SHARE_FORMAT && (doc as Record<string, unknown>).version === SEALED_SHARE_VERSION;
}

/**
 * JSON text of share `s` sealed for `custodian` and signed by `signer` (the identity the backup is of).
 * @example
 * const text = sealShare(shares[0], alicePub, identity);
 */
export function sealShare(s: RecoveryShare, custodian: PublicIdentity, signer: SecretIdentity): string {
  if (s.form !== 'file' || s.kid !== signer.kid || s.signerKid !== signer.signer.kid) throw new RecoveryShareFormatError('sealShare: the share is not a share file of the signing identity');
  const suite = getSuite(custodian.suite);
  if (computeKid(suite.id, custodian.publicKey) !== custodian.kid) throw new RecoveryShareFormatError(`sealShare: custodian ${custodian.name}'s kid does not match its public key`);
  const { cipherText, sharedSecret } = suite.encapsulate(custodian.publicKey);
  const doc: Record<string, unknown> = {
    format: SHARE_FORMAT,
    version: SEALED_SHARE_VERSION,
    name: s.name,
    suite: s.suite,
    kid: s.kid,
    signerKid: s.signerKid,
    threshold: s.threshold,
    shares: s.shares,
    index: s.index,
    backupId: s.backupId,
    createdAt: s.createdAt,
    commitment: hex(s.commitment),
    custodianName: custodian.name,
    custodianSuite: custodian.suite,
    custodianKid: custodian.kid,
    shareDigest: digestOf(s.share),
    signerPublicKey: b64(signer.signer.publicKey),
    kemCipherText: b64(cipherText),
  };
  const aad = encodeValues(doc, AAD_FIELDS);
  const { key, iv } = deriveKeyIv(sharedSecret, aad);
  try {
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad);
    doc.sealed = b64(Buffer.concat([cipher.update(s.share), cipher.final(), cipher.getAuthTag()]));
  } finally {
    sharedSecret.fill(0);
    key.fill(0);
    iv.fill(0);
  }
  const message = encodeValues(doc, FIELDS.slice(0, -1));
  doc.signature = b64(ml_dsa87.sign(message, signer.signerSecretKey, { context: SIGNATURE_CONTEXT }));
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function canonical(value: unknown, field: string, length: number | undefined, bad: (why: string) => never): Uint8Array {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) bad(`field ${field} must be base64`);
  const bytes = new Uint8Array(Buffer.from(value as string, 'base64'));
  if (b64(bytes) !== value || (length !== undefined && bytes.length !== length)) bad(`field ${field} must be canonical base64${length === undefined ? '' : ` of ${length} bytes`}`);
  return bytes;
}

/**
 * Parse a sealed share and verify it as far as the public fields go: the format, the signer key against
 * `signerKid`, and the signature over every field. Errors are typed and name `source`.
 */
export function decodeSealedShare(doc: Record<string, unknown>, source: string): SealedShare {
  const bad = (why: string): never => {
    throw new RecoveryShareFormatError(`${source}: ${why}`, { source });
  };
  for (const k of Object.keys(doc)) if (!(FIELDS as readonly string[]).includes(k)) bad(`unknown field ${JSON.stringify(k.slice(0, 40))} in a sealed share`);
  for (const k of FIELDS) if (!(k in doc)) bad(`missing field ${k} in a sealed share`);
  const str = (f: string, re: RegExp, what: string): string => {
    const v = doc[f];
    if (typeof v !== 'string' || !re.test(v)) bad(`field ${f} must be ${what}`);
    return v as string;
  };
  const int = (f: string): number => {
    const v = doc[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 255) bad(`field ${f} must be an integer from 1 to 255`);
    return v as number;
  };
  const name = str('name', NAME, 'an identity name');
  const suite = str('suite', SUITE, 'a suite id');
  const kid = str('kid', HEX32, '32 lowercase hex digits');
  const signerKid = str('signerKid', HEX32, '32 lowercase hex digits');
  const backupId = str('backupId', HEX32, '32 lowercase hex digits');
  const createdAt = str('createdAt', ISO_TIME, 'a UTC time like 2026-01-02T03:04:05.678Z');
  const commitment = str('commitment', HEX64, '64 lowercase hex digits');
  const custodianName = str('custodianName', NAME, 'an identity name');
  const custodianSuite = str('custodianSuite', SUITE, 'a suite id');
  const custodianKid = str('custodianKid', HEX32, '32 lowercase hex digits');
  const shareDigest = str('shareDigest', HEX64, '64 lowercase hex digits');
  const threshold = int('threshold');
  const shares = int('shares');
  const index = int('index');
  if (threshold < 2 || threshold > shares || shares > 16 || index > shares) bad(`threshold ${threshold}, shares ${shares}, index ${index} are outside 2 ≤ threshold ≤ shares ≤ 16, index ≤ shares`);
  const signerPublicKey = canonical(doc.signerPublicKey, 'signerPublicKey', ml_dsa87.lengths.publicKey, bad);
  const signature = canonical(doc.signature, 'signature', ml_dsa87.lengths.signature, bad);
  let shareLength: number;
  let kemCipherText: Uint8Array;
  try {
    shareLength = materialLength(suite) + 1;
    kemCipherText = canonical(doc.kemCipherText, 'kemCipherText', getSuite(custodianSuite).lengths.cipherText, bad);
  } catch (e) {
    if (e instanceof RecoveryShareFormatError) throw e;
    return bad(`unknown suite (${suite} or custodian suite ${custodianSuite})`);
  }
  const sealed = canonical(doc.sealed, 'sealed', shareLength + TAG_LENGTH, bad);
  // Checked before the meaning of the fields, so that an altered share says "damaged" rather than what the change hit.
  const verified = ml_dsa87.verify(signature, encodeValues(doc, FIELDS.slice(0, -1)), signerPublicKey, { context: SIGNATURE_CONTEXT });
  if (!verified || computeKid(SIGNATURE_ALGORITHM, signerPublicKey) !== signerKid) {
    throw new RecoveryShareDamagedError(`${source}: the sealed share's signature does not verify with the identity's signer key ${signerKid}: the share was damaged, altered or swapped`, { source });
  }
  return {
    source,
    name,
    suite,
    kid,
    signerKid,
    threshold,
    shares,
    index,
    backupId,
    createdAt,
    commitment: new Uint8Array(Buffer.from(commitment, 'hex')),
    custodian: { name: custodianName, suite: custodianSuite, kid: custodianKid },
    shareDigest,
    kemCipherText,
    sealed,
    aad: encodeValues(doc, AAD_FIELDS),
  };
}

/**
 * Open sealed share `s` with the custodian's secret identity. The identity must be the custodian the share names
 * (RecoveryShareWrongCustodianError otherwise); a share that does not open is damaged. The caller wipes the share.
 */
export function openSealedShare(s: SealedShare, custodian: SecretIdentity): RecoveryShare {
  if (custodian.kid !== s.custodian.kid) {
    throw new RecoveryShareWrongCustodianError(
      `${s.source} is sealed for custodian ${s.custodian.name} (key ${s.custodian.kid}), not for identity ${custodian.name} (key ${custodian.kid})`,
      { source: s.source, hint: `send it to custodian ${s.custodian.name}, who opens it with \`mongo-capsule keys open-share --share <file> --identity ${s.custodian.name} --out <file>\`` },
    );
  }
  const suite = getSuite(custodian.suite);
  const sharedSecret = suite.decapsulate(s.kemCipherText, custodian.kemSecretKey);
  const { key, iv } = deriveKeyIv(sharedSecret, s.aad);
  sharedSecret.fill(0);
  const body = s.sealed.subarray(0, s.sealed.length - TAG_LENGTH);
  let share: Uint8Array;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_LENGTH });
    decipher.setAAD(s.aad);
    decipher.setAuthTag(s.sealed.subarray(s.sealed.length - TAG_LENGTH));
    const a = decipher.update(body);
    const b = decipher.final();
    share = new Uint8Array(a.length + b.length);
    share.set(a);
    share.set(b, a.length);
    a.fill(0);
  } catch {
    throw new RecoveryShareDamagedError(`${s.source}: the sealed share does not open with custodian ${custodian.name}'s key although it names that key: it was damaged`, { source: s.source });
  } finally {
    key.fill(0);
    iv.fill(0);
  }
  const digest = Buffer.from(digestOf(share), 'hex');
  if (!timingSafeEqual(digest, Buffer.from(s.shareDigest, 'hex')) || share[share.length - 1] === 0) {
    share.fill(0);
    throw new RecoveryShareDamagedError(`${s.source}: the opened share does not match its signed digest: it was altered`, { source: s.source });
  }
  return {
    source: s.source,
    form: 'file',
    name: s.name,
    suite: s.suite,
    kid: s.kid,
    signerKid: s.signerKid,
    threshold: s.threshold,
    shares: s.shares,
    index: s.index,
    backupId: s.backupId,
    createdAt: s.createdAt,
    commitment: Uint8Array.from(s.commitment),
    share,
  };
}

/** Whether `text` is the sealed form of share `s` (used to read back what a backup staged). */
export function sealedMatches(sealed: SealedShare, s: RecoveryShare): boolean {
  return sealed.backupId === s.backupId && sealed.index === s.index && sealed.kid === s.kid && sealed.shareDigest === digestOf(s.share);
}
