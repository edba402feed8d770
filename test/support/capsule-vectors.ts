/**
 * Capsule v1 test vectors: fixed inputs in, every intermediate value and the capsule bytes out.
 * Used by `scripts/gen-capsule-vectors.ts` to write docs/capsule-v1-vectors.json and by the tests to check
 * that file. The key schedule is recomputed here independently of src/crypto/capsule.ts (straight from the
 * specification in docs/capsule-format.md), so a drift between code and document is caught.
 */
import { createHash, hkdfSync } from 'node:crypto';
import {
  encodePublicIdentity,
  encodeSecretIdentity,
  generateIdentity,
  getSuite,
  toPublicIdentity,
  wipeSecretIdentity,
  wrapKey,
} from '../../src/crypto/index.ts';

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
  /** The ML-DSA-87 public key (2592 bytes) derived from `signerSeed`, so a verifier can be tested alone. */
  signerPublicKey: string;
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
  // Appended, never inserted: the vectors above are a published contract and keep their positions.
  { suite: 'ml-kem-768', signed: true, name: 'vector-768-signed', createdAt: '2026-01-01T00:00:00.000Z' },
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
    signerPublicKey: hex(id.signer.publicKey),
    signerKid: spec.signed ? id.signer.kid : null,
    kemCipherText: hex(cipherText),
    sharedSecret: hex(sharedSecret),
    aadSha256: createHash('sha256').update(aad).digest('hex'),
    aeadKey: hex(okm.subarray(0, 32)),
    aeadIv: hex(okm.subarray(32, 44)),
    capsule: hex(capsule),
  };
}

/**
 * Negative vectors: inputs a reader must reject, each with the error code it must produce. Derived from the
 * ml-kem-768 vectors by changes stated in `change`; the expected codes are written down here from the
 * specification (section 4 of docs/capsule-format.md), not taken from running the code, so the tests that
 * replay the file are a check of the implementation and not of itself.
 */
export interface NegativeRecipient {
  suite: string;
  kemSeed: string;
  signerSeed: string;
}

export interface NegativeCapsuleEntry {
  id: string;
  kind: 'capsule';
  change: string;
  /** The vector the capsule was derived from. */
  base: string;
  capsule: string;
  /** Opened with the secret identity derived from these seeds (section 4). */
  recipient: NegativeRecipient;
  /** ML-DSA-87 public keys (hex) trusted besides the recipient identity's own signing key. */
  trustedSigners: string[];
  requireSignature: boolean;
  error: string;
}

export interface NegativeDocumentEntry {
  id: string;
  kind: 'document';
  change: string;
  base: string;
  /** The document in MongoDB Extended JSON v2 (canonical): `{"$date": …}`, `{"$binary": {base64, subType}}`. */
  document: Record<string, unknown>;
  error: string;
}

export interface NegativeIdentityEntry {
  id: string;
  kind: 'public-identity' | 'secret-identity';
  change: string;
  /** The identity file's text. */
  text: string;
  error: string;
}

export type NegativeEntry = NegativeCapsuleEntry | NegativeDocumentEntry | NegativeIdentityEntry;

/** Field offsets of a capsule by the layout of section 2 alone. */
export function capsuleFields(capsule: Uint8Array): Record<string, { at: number; size: number }> {
  const b = Buffer.from(capsule);
  const signed = (b[5]! & 1) === 1;
  const s = b[6]!;
  const fields: Record<string, { at: number; size: number }> = {
    magic: { at: 0, size: 4 },
    version: { at: 4, size: 1 },
    flags: { at: 5, size: 1 },
    suiteLength: { at: 6, size: 1 },
    suite: { at: 7, size: s },
    kid: { at: 7 + s, size: 16 },
    nameLength: { at: 23 + s, size: 1 },
  };
  const n = b[23 + s]!;
  fields.name = { at: 24 + s, size: n };
  fields.createdAt = { at: 24 + s + n, size: 8 };
  let o = 32 + s + n;
  if (signed) (fields.signerKid = { at: o, size: 16 }), (o += 16);
  fields.kemCipherTextLength = { at: o, size: 2 };
  const ct = b.readUInt16BE(o);
  fields.kemCipherText = { at: o + 2, size: ct };
  fields.sealed = { at: o + 2 + ct, size: 112 };
  if (signed) fields.signature = { at: o + 2 + ct + 112, size: 4627 };
  return fields;
}

const OTHER_KEM_SEED = 0x20;
const OTHER_SIGNER_SEED = 0x60;

export function buildNegativeVectors(vectors: CapsuleVector[]): NegativeEntry[] {
  const unsigned = vectors.find((v) => v.name === 'vector-768')!;
  const signed = vectors.find((v) => v.name === 'vector-768-signed')!;
  const suite = getSuite('ml-kem-768');
  const own: NegativeRecipient = { suite: unsigned.suite, kemSeed: unsigned.kemSeed, signerSeed: unsigned.signerSeed };
  const otherKem: NegativeRecipient = { ...own, kemSeed: hex(pattern(suite.lengths.seed!, OTHER_KEM_SEED)) };
  const otherSigner: NegativeRecipient = { ...own, signerSeed: hex(pattern(32, OTHER_SIGNER_SEED)) };
  const otherKemId = generateIdentity('ml-kem-768', { kemSeed: pattern(suite.lengths.seed!, OTHER_KEM_SEED), signerSeed: pattern(32, 0x40) });
  const otherSignerId = generateIdentity('ml-kem-768', { kemSeed: pattern(suite.lengths.seed!, 0x00), signerSeed: pattern(32, OTHER_SIGNER_SEED) });
  const entries: NegativeEntry[] = [];

  const capsuleEntry = (
    id: string,
    base: CapsuleVector,
    change: string,
    bytes: Uint8Array,
    error: string,
    opts: { recipient?: NegativeRecipient; trustedSigners?: string[]; requireSignature?: boolean } = {},
  ) =>
    entries.push({
      id,
      kind: 'capsule',
      change,
      base: base.name,
      capsule: hex(bytes),
      recipient: opts.recipient ?? own,
      trustedSigners: opts.trustedSigners ?? [],
      requireSignature: opts.requireSignature ?? false,
      error,
    });
  const edit = (base: CapsuleVector, f: (b: Buffer, fields: ReturnType<typeof capsuleFields>) => Buffer | void): Buffer => {
    const b = Buffer.from(base.capsule, 'hex');
    return f(b, capsuleFields(b)) ?? b;
  };
  const flip = (base: CapsuleVector, field: string, byte: number | 'last', bit: number) =>
    edit(base, (b, fields) => {
      const { at, size } = fields[field]!;
      b[at + (byte === 'last' ? size - 1 : byte)]! ^= 1 << bit;
    });

  for (const [tag, base] of [['unsigned', unsigned], ['signed', signed]] as const) {
    // What a change to authenticated bytes produces once the parser accepts them: the signature is checked
    // before any decryption, so a signed capsule reports it; an unsigned one fails the AEAD tag.
    const tampered = tag === 'signed' ? 'SIGNATURE_INVALID' : 'CAPSULE_AUTH';
    const L = Buffer.from(base.capsule, 'hex').length;
    capsuleEntry(`${tag}/truncated-1`, base, 'last byte removed', edit(base, (b) => b.subarray(0, L - 1)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/truncated-header`, base, 'only the bytes before the KEM ciphertext', edit(base, (b, f) => b.subarray(0, f.kemCipherText!.at)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/truncated-5`, base, 'only the first 5 bytes', edit(base, (b) => b.subarray(0, 5)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/empty`, base, 'no bytes at all', new Uint8Array(0), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/extended-1`, base, 'one 0x00 byte appended', edit(base, (b) => Buffer.concat([b, Buffer.alloc(1)])), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/magic`, base, 'bit 0 of magic byte 0 flipped', flip(base, 'magic', 0, 0), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/version-0`, base, 'version 1 changed to 0 (bit 0)', flip(base, 'version', 0, 0), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/version-3`, base, 'version 1 changed to 3 (bit 1)', flip(base, 'version', 0, 1), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/version-2`, base, 'version 1 changed to 2', edit(base, (b) => void (b[4] = 2)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/flags-bit0`, base, `flags bit 0 flipped (${tag === 'signed' ? 'signed capsule read as unsigned' : 'unsigned capsule read as signed'}): the layout no longer lines up`, flip(base, 'flags', 0, 0), 'CAPSULE_FORMAT');
    for (const bit of [1, 7]) {
      capsuleEntry(`${tag}/flags-bit${bit}`, base, `reserved flags bit ${bit} set`, flip(base, 'flags', 0, bit), 'CAPSULE_FORMAT');
    }
    capsuleEntry(`${tag}/suite-length`, base, 'suite id length 10 changed to 11 (the suite id takes a kid byte)', flip(base, 'suiteLength', 0, 0), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/suite-length-0`, base, 'suite id length set to 0', edit(base, (b) => void (b[6] = 0)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/suite-unknown`, base, "suite id 'ml-kem-768' changed to 'ml-kem-769' (well formed, unknown)", flip(base, 'suite', 'last', 0), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/suite-bad-char`, base, "suite id 'ml-kem-768' changed to 'Ml-kem-768' (upper case)", flip(base, 'suite', 0, 5), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/kid`, base, 'bit 0 of the recipient kid flipped (no longer the recipient key)', flip(base, 'kid', 0, 0), 'CAPSULE_AUTH');
    capsuleEntry(`${tag}/name-length`, base, 'name length +1 (the name takes a created-at byte 0x00)', edit(base, (b, f) => void (b[f.nameLength!.at]! += 1)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/name-length-0`, base, 'name length set to 0', edit(base, (b, f) => void (b[f.nameLength!.at] = 0)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/name-bad-char`, base, "first name character 'v' changed to '/'", edit(base, (b, f) => void (b[f.name!.at] = 0x2f)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/name-bad-first`, base, "first name character changed to '.' (allowed only after the first)", edit(base, (b, f) => void (b[f.name!.at] = 0x2e)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/name-non-ascii`, base, 'first name character changed to 0xe9', edit(base, (b, f) => void (b[f.name!.at] = 0xe9)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/name-valid-change`, base, "first name character 'v' changed to 'w' (still a valid name)", flip(base, 'name', 0, 0), tampered);
    capsuleEntry(`${tag}/created-at`, base, 'lowest bit of created at flipped (still in range)', flip(base, 'createdAt', 'last', 0), tampered);
    capsuleEntry(`${tag}/created-at-range`, base, 'created at set to 8.64e15 + 1 ms', edit(base, (b, f) => void b.writeBigUInt64BE(8_640_000_000_000_001n, f.createdAt!.at)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/created-at-top-bit`, base, 'top bit of created at set', flip(base, 'createdAt', 0, 7), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/ct-length`, base, 'KEM ciphertext length 1088 changed to 1089', flip(base, 'kemCipherTextLength', 'last', 0), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/ct-length-x-wing`, base, 'KEM ciphertext length 1088 changed to 1120 (another suite\'s)', edit(base, (b, f) => void b.writeUInt16BE(1120, f.kemCipherTextLength!.at)), 'CAPSULE_FORMAT');
    capsuleEntry(`${tag}/ct-first`, base, 'bit 0 of the first KEM ciphertext byte flipped', flip(base, 'kemCipherText', 0, 0), tampered);
    capsuleEntry(`${tag}/ct-last`, base, 'bit 7 of the last KEM ciphertext byte flipped', flip(base, 'kemCipherText', 'last', 7), tampered);
    capsuleEntry(`${tag}/sealed-first`, base, 'bit 0 of the first sealed-CMK byte flipped', flip(base, 'sealed', 0, 0), tampered);
    capsuleEntry(`${tag}/tag-last`, base, 'bit 7 of the last AEAD tag byte flipped', flip(base, 'sealed', 'last', 7), tampered);
    capsuleEntry(`${tag}/wrong-key`, base, 'opened by another ml-kem-768 identity (KEM seed bytes 0x20 + i)', Buffer.from(base.capsule, 'hex'), 'CAPSULE_AUTH', { recipient: otherKem });
    capsuleEntry(
      `${tag}/wrong-key-matching-kid`,
      base,
      "recipient kid replaced by the other identity's kid, opened by that identity: the kid matches, the AEAD tag does not",
      edit(base, (b, f) => void b.write(otherKemId.kid, f.kid!.at, 'hex')),
      tampered,
      { recipient: otherKem },
    );
  }

  // Unsigned only.
  capsuleEntry('unsigned/signature-required', unsigned, 'unchanged, but the reader requires a signature', Buffer.from(unsigned.capsule, 'hex'), 'SIGNATURE_INVALID', { requireSignature: true });
  capsuleEntry('unsigned/extended-signature', unsigned, '4627 zero bytes appended (flags still say unsigned)', edit(unsigned, (b) => Buffer.concat([b, Buffer.alloc(4627)])), 'CAPSULE_FORMAT');

  // Signed only.
  capsuleEntry('signed/signer-kid', signed, 'bit 0 of the signer kid flipped (no trusted key has it)', flip(signed, 'signerKid', 0, 0), 'SIGNER_UNKNOWN');
  capsuleEntry('signed/signature-first', signed, 'bit 0 of the first signature byte flipped', flip(signed, 'signature', 0, 0), 'SIGNATURE_INVALID');
  capsuleEntry('signed/signature-last', signed, 'bit 7 of the last signature byte flipped', flip(signed, 'signature', 'last', 7), 'SIGNATURE_INVALID');
  capsuleEntry('signed/signature-removed', signed, 'the 4627 signature bytes removed, flags still say signed', edit(signed, (b, f) => b.subarray(0, f.signature!.at)), 'CAPSULE_FORMAT');
  const stripped = edit(signed, (b, f) =>
    Buffer.concat([b.subarray(0, 5), Buffer.from([0]), b.subarray(6, f.signerKid!.at), b.subarray(f.kemCipherTextLength!.at, f.signature!.at)]),
  );
  capsuleEntry('signed/stripped', signed, 'signature, signer kid and signed flag removed (a well-formed unsigned capsule whose AAD changed)', stripped, 'CAPSULE_AUTH');
  capsuleEntry('signed/stripped-required', signed, 'as signed/stripped, and the reader requires a signature', stripped, 'SIGNATURE_INVALID', { requireSignature: true });
  capsuleEntry('signed/wrong-signer', signed, 'unchanged, opened by an identity with the same KEM key and another signing key (seed bytes 0x60 + i), no other signer trusted', Buffer.from(signed.capsule, 'hex'), 'SIGNER_UNKNOWN', { recipient: otherSigner });
  capsuleEntry(
    'signed/signer-kid-substituted',
    signed,
    "signer kid replaced by the kid of another trusted signing key (seed bytes 0x60 + i): the signature does not verify under that key",
    edit(signed, (b, f) => void b.write(otherSignerId.signer.kid, f.signerKid!.at, 'hex')),
    'SIGNATURE_INVALID',
    { trustedSigners: [hex(otherSignerId.signer.publicKey)] },
  );

  // Document form (section 5).
  const docOf = (v: CapsuleVector, subType = '00'): Record<string, unknown> => ({
    name: v.name,
    version: 1,
    suite: v.suite,
    kid: v.kid,
    signerKid: v.signerKid,
    createdAt: { $date: v.createdAt },
    bytes: { $binary: { base64: Buffer.from(v.capsule, 'hex').toString('base64'), subType } },
  });
  const docEntry = (id: string, base: CapsuleVector, change: string, document: Record<string, unknown>) =>
    entries.push({ id, kind: 'document', change, base: base.name, document, error: 'CAPSULE_FORMAT' });
  docEntry('document/unknown-field', signed, 'an extra field `comment`', { ...docOf(signed), comment: 'x' });
  docEntry('document/missing-field', signed, 'field `signerKid` removed', (({ signerKid: _, ...d }) => d)(docOf(signed)));
  docEntry('document/name', signed, 'name disagrees with the bytes', { ...docOf(signed), name: 'vector-768' });
  docEntry('document/suite', signed, 'suite disagrees with the bytes', { ...docOf(signed), suite: 'ml-kem-1024' });
  docEntry('document/kid', signed, 'kid disagrees with the bytes', { ...docOf(signed), kid: otherKemId.kid });
  docEntry('document/signer-kid', signed, 'signerKid null for a signed capsule', { ...docOf(signed), signerKid: null });
  docEntry('document/signer-kid-unsigned', unsigned, 'signerKid set for an unsigned capsule', { ...docOf(unsigned), signerKid: signed.signerKid });
  docEntry('document/version', signed, 'version 2', { ...docOf(signed), version: 2 });
  docEntry('document/created-at', signed, 'createdAt one millisecond later than the bytes', { ...docOf(signed), createdAt: { $date: '2026-01-01T00:00:00.001Z' } });
  docEntry('document/created-at-string', signed, 'createdAt a string, not a date', { ...docOf(signed), createdAt: signed.createdAt });
  docEntry('document/bytes-subtype', signed, 'bytes of binary subtype 0x80 (user defined) instead of 0', docOf(signed, '80'));
  docEntry('document/bytes-string', signed, 'bytes a hex string, not binary', { ...docOf(signed), bytes: signed.capsule });
  docEntry('document/bytes-invalid', signed, 'bytes truncated by one byte (fields still match the original)', {
    ...docOf(signed),
    bytes: { $binary: { base64: Buffer.from(signed.capsule, 'hex').subarray(0, -1).toString('base64'), subType: '00' } },
  });

  // Identity files (section 7), from the identity of the ml-kem-768 vectors.
  const id = generateIdentity('ml-kem-768', { name: 'vectors', kemSeed: Buffer.from(own.kemSeed, 'hex'), signerSeed: Buffer.from(own.signerSeed, 'hex') });
  const pub = JSON.parse(encodePublicIdentity(toPublicIdentity(id))) as Record<string, any>;
  const sec = JSON.parse(encodeSecretIdentity(id)) as Record<string, any>;
  const idEntry = (kind: 'public-identity' | 'secret-identity', name: string, change: string, f: (d: Record<string, any>) => void, error = 'IDENTITY_FORMAT') => {
    const d = structuredClone(kind === 'public-identity' ? pub : sec);
    f(d);
    entries.push({ id: `${kind}/${name}`, kind, change, text: `${JSON.stringify(d, null, 2)}\n`, error });
  };
  // The last character of a padded base64 value carries unused low bits; a canonical encoding has them zero.
  const nonCanonical = (s: string) => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const i = s.replace(/=+$/, '').length - 1;
    return s.slice(0, i) + alphabet[alphabet.indexOf(s[i]!) ^ 1] + s.slice(i + 1);
  };
  for (const kind of ['public-identity', 'secret-identity'] as const) {
    idEntry(kind, 'unknown-field', 'an extra top-level field `comment`', (d) => void (d.comment = 'x'));
    idEntry(kind, 'unknown-signer-field', 'an extra field `signer.comment`', (d) => void (d.signer.comment = 'x'));
    idEntry(kind, 'missing-field', 'field `kid` removed', (d) => void delete d.kid);
    idEntry(kind, 'kid', 'kid does not match the KEM public key (first hex digit changed)', (d) => void (d.kid = (d.kid[0] === '0' ? '1' : '0') + d.kid.slice(1)));
    idEntry(kind, 'signer-kid', 'signer.kid does not match the signing key', (d) => void (d.signer.kid = otherSignerId.signer.kid));
    idEntry(kind, 'version', 'version 2', (d) => void (d.version = 2));
    idEntry(kind, 'signer-algorithm', "signer.algorithm 'ml-dsa-65'", (d) => void (d.signer.algorithm = 'ml-dsa-65'));
    idEntry(kind, 'suite-unknown', "suite 'ml-kem-512'", (d) => void (d.suite = 'ml-kem-512'), 'UNKNOWN_SUITE');
    idEntry(kind, 'name-bad-char', "name 'vec/tors'", (d) => void (d.name = 'vec/tors'), 'INVALID_ARGUMENT');
    idEntry(kind, 'name-too-long', 'name of 65 characters', (d) => void (d.name = 'a'.repeat(65)), 'INVALID_ARGUMENT');
  }
  idEntry('public-identity', 'format', 'format of a secret identity', (d) => void (d.format = 'mongo-capsule-secret-identity'));
  idEntry('public-identity', 'base64-non-canonical', 'publicKey: the unused low bits of the last base64 character set', (d) => void (d.publicKey = nonCanonical(d.publicKey)));
  idEntry('public-identity', 'base64-url', "publicKey in the URL-safe alphabet ('+' → '-', '/' → '_')", (d) => void (d.publicKey = d.publicKey.replace(/\+/g, '-').replace(/\//g, '_')));
  idEntry('public-identity', 'base64-unpadded', "publicKey: its '=' padding removed", (d) => void (d.publicKey = d.publicKey.replace(/=+$/, '')));
  idEntry('public-identity', 'base64-whitespace', 'publicKey: a line break inserted after 76 characters', (d) => void (d.publicKey = `${d.publicKey.slice(0, 76)}\n${d.publicKey.slice(76)}`));
  idEntry('public-identity', 'public-key-length', 'publicKey one byte short (1183 bytes, canonical base64)', (d) => void (d.publicKey = Buffer.from(d.publicKey, 'base64').subarray(1).toString('base64')));
  idEntry('public-identity', 'signer-public-key-length', 'signer.publicKey one byte short (2591 bytes)', (d) => void (d.signer.publicKey = Buffer.from(d.signer.publicKey, 'base64').subarray(1).toString('base64')));
  idEntry('secret-identity', 'format', 'format of a public identity', (d) => void (d.format = 'mongo-capsule-public-identity'));
  idEntry('secret-identity', 'base64-non-canonical', 'signer.seed: the unused low bits of the last base64 character set', (d) => void (d.signer.seed = nonCanonical(d.signer.seed)));
  idEntry('secret-identity', 'kem-seed-length', 'kem.seed of 63 bytes', (d) => void (d.kem.seed = Buffer.from(d.kem.seed, 'base64').subarray(1).toString('base64')));
  idEntry('secret-identity', 'kem-unknown-field', 'kem.secretKey added next to kem.seed', (d) => void (d.kem.secretKey = d.kem.seed));
  idEntry('secret-identity', 'kid-other-seed', 'kem.seed of another identity (the stored kid no longer matches the derived key)', (d) => void (d.kem.seed = Buffer.from(pattern(64, OTHER_KEM_SEED)).toString('base64')));
  idEntry('secret-identity', 'signer-seed-other', 'signer.seed of another identity (the stored signer kid no longer matches)', (d) => void (d.signer.seed = Buffer.from(pattern(32, OTHER_SIGNER_SEED)).toString('base64')));
  wipeSecretIdentity(id);
  return entries;
}
