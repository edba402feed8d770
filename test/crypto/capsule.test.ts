import { describe, expect, it } from 'vitest';
import {
  CMK_LENGTH,
  capsuleFromDocument,
  computeKid,
  decodePublicIdentity,
  encodePublicIdentity,
  capsuleToDocument,
  describeCapsule,
  generateCmk,
  generateIdentity,
  listSuites,
  openParsedCapsule,
  parseCapsule,
  toPublicIdentity,
  unwrapKey,
  verifyCapsule,
  wrapKey,
} from '../../src/crypto/index.ts';
import {
  CapsuleAuthError,
  CapsuleFormatError,
  IdentityFormatError,
  InvalidArgumentError,
  InvalidKeyLengthError,
  MongoCapsuleError,
  SignatureInvalidError,
  SignerUnknownError,
} from '../../src/errors.ts';
import { describeIf } from '../support/skip.ts';

const suites = listSuites();
const nobleSuites = suites.filter((s) => s.available());
const missing = suites.filter((s) => !s.available()).map((s) => s.id);

function expectRejected(fn: () => unknown): MongoCapsuleError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MongoCapsuleError);
    return e as MongoCapsuleError;
  }
  throw new Error('expected the capsule to be rejected, but it was accepted');
}

function fixture(suite: string, signed: boolean) {
  const id = generateIdentity(suite);
  const cmk = generateCmk();
  const capsule = wrapKey(cmk, toPublicIdentity(id), { name: 'fixture', ...(signed ? { signer: id } : {}) });
  return { id, cmk, capsule };
}

describe('capsule round trip', () => {
  for (const suite of nobleSuites) {
    for (const signed of [false, true]) {
      it(`${suite.id}${signed ? ' signed' : ''}: unwrap returns the wrapped key`, () => {
        const { id, cmk, capsule } = fixture(suite.id, signed);
        const out = unwrapKey(capsule, id);
        expect(out).toHaveLength(CMK_LENGTH);
        expect(Buffer.from(out).equals(Buffer.from(cmk))).toBe(true);
        const header = parseCapsule(capsule).header;
        expect(header).toMatchObject({ version: 1, suite: suite.id, kid: id.kid, name: 'fixture', signed });
        expect(header.signerKid).toBe(signed ? id.signer.kid : null);
      });
    }
  }

  it('two wraps of the same key differ (fresh encapsulation each time)', () => {
    const id = generateIdentity('ml-kem-1024');
    const cmk = generateCmk();
    const a = wrapKey(cmk, id, { name: 'x', createdAt: new Date(0) });
    const b = wrapKey(cmk, id, { name: 'x', createdAt: new Date(0) });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });
});

const ntruSuites = suites.filter((s) => s.id.startsWith('ntru'));
if (ntruSuites.length > 0) {
  describeIf(missing.length === 0, `native NTRU addon not built (${missing.join(', ')}): run \`npm run build:native\``)('capsule round trip, native suites', () => {
    for (const suite of ntruSuites) {
      it(`${suite.id}: round trip and wrong key`, () => {
        const { id, cmk, capsule } = fixture(suite.id, true);
        expect(Buffer.from(unwrapKey(capsule, id)).equals(Buffer.from(cmk))).toBe(true);
        const other = generateIdentity(suite.id);
        expect(() => openParsedCapsule(parseCapsule(capsule), other.kemSecretKey)).toThrow(CapsuleAuthError);
      });
    }
  });
}

describe('wrong key', () => {
  for (const suite of nobleSuites) {
    it(`${suite.id}: another identity is refused by kid, and the AEAD catches it without the kid check`, () => {
      const { capsule } = fixture(suite.id, false);
      const other = generateIdentity(suite.id);
      const byKid = expectRejected(() => unwrapKey(capsule, other));
      expect(byKid).toBeInstanceOf(CapsuleAuthError);
      expect(byKid.message).toContain('wrong key');
      // Implicit rejection: decapsulation "succeeds" with a wrong key; only the AEAD tag reveals it.
      const parsed = parseCapsule(capsule);
      const byTag = expectRejected(() => openParsedCapsule(parsed, other.kemSecretKey));
      expect(byTag).toBeInstanceOf(CapsuleAuthError);
      expect(byTag.message).toBe('capsule unwrap failed: wrong key or tampered capsule');
    });
  }

  it('an identity of another suite is refused', () => {
    const { capsule } = fixture('ml-kem-768', false);
    expect(() => unwrapKey(capsule, generateIdentity('ml-kem-1024'))).toThrow(CapsuleAuthError);
  });
});

describe('signatures', () => {
  it('a capsule signed by another identity needs that signer to be trusted', () => {
    const recipient = generateIdentity('ml-kem-1024');
    const signer = generateIdentity('ml-kem-1024');
    const capsule = wrapKey(generateCmk(), recipient, { name: 'x', signer });
    expect(() => unwrapKey(capsule, recipient)).toThrow(SignerUnknownError);
    expect(unwrapKey(capsule, recipient, { signers: [toPublicIdentity(signer)] })).toHaveLength(96);
    expect(verifyCapsule(capsule, [signer]).signerKid).toBe(signer.signer.kid);
  });

  it('a signer whose kid is forged onto another key does not verify', () => {
    const recipient = generateIdentity('ml-kem-1024');
    const signer = generateIdentity('ml-kem-1024');
    const impostor = generateIdentity('ml-kem-1024');
    const capsule = wrapKey(generateCmk(), recipient, { name: 'x', signer });
    const forged = { ...impostor.signer, kid: signer.signer.kid };
    expect(() => unwrapKey(capsule, recipient, { signers: [forged] })).toThrow(InvalidArgumentError);
  });

  it('requireSignature refuses unsigned capsules', () => {
    const { id, capsule } = fixture('ml-kem-1024', false);
    expect(() => unwrapKey(capsule, id, { requireSignature: true })).toThrow(SignatureInvalidError);
  });
});

describe('bad input to wrapKey', () => {
  const id = generateIdentity('ml-kem-768');
  it.each([0, 32, 95, 97, 128])('a %d-byte payload is a clear error', (n) => {
    const e = expectRejected(() => wrapKey(new Uint8Array(n), id, { name: 'x' }));
    expect(e).toBeInstanceOf(InvalidKeyLengthError);
    expect(e.message).toContain('96-byte CSFLE local master key');
  });
  it.each(['', ' x', 'a/b', 'é', '-x', 'x'.repeat(256)])('capsule name %j is refused', (name) => {
    expect(() => wrapKey(generateCmk(), id, { name })).toThrow(InvalidArgumentError);
  });
  it('a recipient whose kid does not match its key is refused', () => {
    expect(() => wrapKey(generateCmk(), { ...toPublicIdentity(id), kid: '00'.repeat(16) }, { name: 'x' })).toThrow(InvalidArgumentError);
  });
});

describe('inputs are never mutated', () => {
  for (const suite of nobleSuites) {
    it(suite.id, () => {
      const id = generateIdentity(suite.id);
      const cmk = generateCmk();
      const cmkCopy = Uint8Array.from(cmk);
      const pk = Uint8Array.from(id.publicKey);
      const capsule = wrapKey(cmk, id, { name: 'x', signer: id });
      expect(cmk).toEqual(cmkCopy);
      expect(id.publicKey).toEqual(pk);
      const capsuleCopy = Uint8Array.from(capsule);
      const sk = Uint8Array.from(id.kemSecretKey);
      unwrapKey(capsule, id);
      expect(capsule).toEqual(capsuleCopy);
      expect(id.kemSecretKey).toEqual(sk);
      const tampered = Uint8Array.from(capsule);
      tampered[tampered.length - 200]! ^= 0x10;
      const tamperedCopy = Uint8Array.from(tampered);
      expectRejected(() => unwrapKey(tampered, id));
      expect(tampered).toEqual(tamperedCopy);
    });
  }
});

describe('truncated, extended, empty and random inputs', () => {
  const { id, capsule } = fixture('ml-kem-768', true);
  it('every truncation is a format error', () => {
    for (let len = 0; len < capsule.length; len++) {
      expect(() => parseCapsule(capsule.subarray(0, len))).toThrow(CapsuleFormatError);
    }
  });
  it('extensions are format errors', () => {
    for (const extra of [1, 2, 16, 4627, 10_000]) {
      const longer = new Uint8Array(capsule.length + extra);
      longer.set(capsule);
      expect(() => unwrapKey(longer, id)).toThrow(CapsuleFormatError);
    }
  });
  it('empty input and non-bytes are format errors', () => {
    expect(() => parseCapsule(new Uint8Array(0))).toThrow(CapsuleFormatError);
    expect(() => parseCapsule('MCAP' as unknown as Uint8Array)).toThrow(CapsuleFormatError);
  });
  it('random inputs are format errors', () => {
    for (let i = 0; i < 2000; i++) {
      const junk = crypto.getRandomValues(new Uint8Array(1 + (i % 7000)));
      expect(() => parseCapsule(junk)).toThrow(CapsuleFormatError);
    }
  });
  it('an unknown version, reserved flag or suite is refused', () => {
    const v2 = Uint8Array.from(capsule);
    v2[4] = 2;
    expect(() => parseCapsule(v2)).toThrow(/unsupported version 2/);
    const flag = Uint8Array.from(capsule);
    flag[5]! |= 0x80;
    expect(() => parseCapsule(flag)).toThrow(/reserved flag/);
    const suite = Uint8Array.from(capsule);
    suite[7] = 'z'.charCodeAt(0);
    expect(() => parseCapsule(suite)).toThrow(/unknown suite/);
  });
});

describe('document encoding', () => {
  const { capsule } = fixture('ml-kem-1024', true);
  it('round-trips exactly', () => {
    const doc = capsuleToDocument(capsule);
    expect(doc).toMatchObject({ name: 'fixture', version: 1, suite: 'ml-kem-1024' });
    expect(Buffer.from(capsuleFromDocument({ _id: 'x', ...doc })).equals(Buffer.from(capsule))).toBe(true);
  });
  it('accepts a BSON-Binary-like value for bytes', () => {
    const doc = { ...capsuleToDocument(capsule), bytes: { buffer: Uint8Array.from(capsule), sub_type: 0 } };
    expect(capsuleFromDocument(doc)).toEqual(capsule);
  });
  it('accepts binary of subtype 0 only, so that a capsule has one document form', () => {
    for (const sub_type of [4, 6, undefined]) {
      const doc = { ...capsuleToDocument(capsule), bytes: { buffer: Uint8Array.from(capsule), sub_type } };
      expect(() => capsuleFromDocument(doc)).toThrow(/subtype 0/);
    }
  });
  it('rejects header fields that disagree with the bytes, and unknown fields', () => {
    const doc = capsuleToDocument(capsule);
    expect(() => capsuleFromDocument({ ...doc, name: 'other' })).toThrow(/name does not match/);
    expect(() => capsuleFromDocument({ ...doc, createdAt: new Date(0) })).toThrow(/createdAt/);
    expect(() => capsuleFromDocument({ ...doc, extra: 1 })).toThrow(/unknown field extra/);
    expect(capsuleFromDocument({ ...doc, extra: 1 }, ['extra'])).toEqual(capsule);
    const { kid: _kid, ...noKid } = doc;
    expect(() => capsuleFromDocument(noKid)).toThrow(/missing field kid/);
  });
});

describe('inspect', () => {
  it('describes the header and contains no key material', () => {
    const { id, cmk, capsule } = fixture('ml-kem-1024', true);
    const described = describeCapsule(capsule);
    expect(described).toMatchObject({ format: 'mongo-capsule', version: 1, kid: id.kid, signerKid: id.signer.kid, size: capsule.length });
    const text = JSON.stringify(described);
    for (const secret of [cmk, id.kemSecretKey, id.kemSeed!, id.signerSeed]) {
      expect(text).not.toContain(Buffer.from(secret).toString('hex').slice(0, 16));
      expect(text).not.toContain(Buffer.from(secret).toString('base64').slice(0, 16));
    }
  });
});

describe('inputs a KEM or a Date refuses outright', () => {
  it('x-wing: a low-order X25519 point in the ciphertext is "wrong key or tampered capsule", not an untyped error', () => {
    const { id, capsule } = fixture('x-wing', false);
    const { kemCipherText } = parseCapsule(capsule);
    const xAt = kemCipherText.byteOffset - capsule.byteOffset + kemCipherText.length - 32;
    for (const point of [new Uint8Array(32), Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0))]) {
      const tampered = Uint8Array.from(capsule);
      tampered.set(point, xAt);
      expect(() => unwrapKey(tampered, id)).toThrow(CapsuleAuthError);
    }
  });

  it('a public key the KEM rejects is a typed error when read and when wrapped for', () => {
    const id = generateIdentity('ml-kem-768');
    const pub = toPublicIdentity(id);
    // FIPS 203 modulus check: a coefficient of 0xfff (>= q) cannot come from a valid encoding.
    const bad = Uint8Array.from(pub.publicKey);
    bad[0] = 0xff;
    bad[1] = 0x0f;
    const badPub = { ...pub, publicKey: bad, kid: computeKid(pub.suite, bad) };
    expect(() => wrapKey(generateCmk(), badPub, { name: 'x' })).toThrow(InvalidArgumentError);
    expect(() => decodePublicIdentity(encodePublicIdentity(badPub))).toThrow(IdentityFormatError);
  });

  it('a signer whose kid or secret key does not belong to its public key is refused before anything is sealed', () => {
    const a = generateIdentity('ml-kem-768');
    const b = generateIdentity('ml-kem-768');
    const pub = toPublicIdentity(a);
    expect(() => wrapKey(generateCmk(), pub, { name: 'x', signer: { ...a, signer: { ...a.signer, kid: 'not-hex' } } })).toThrow(/signer kid does not match/);
    expect(() => wrapKey(generateCmk(), pub, { name: 'x', signer: { ...a, signerSecretKey: b.signerSecretKey } })).toThrow(/secret key does not match its public key/);
  });

  it('a creation time beyond what a Date holds is a format error', () => {
    const { capsule } = fixture('ml-kem-768', false);
    const { header, aad, kemCipherText } = parseCapsule(capsule);
    const timeAt = aad.length - kemCipherText.length - 2 - 8 - (header.signed ? 16 : 0);
    const tampered = Uint8Array.from(capsule);
    new DataView(tampered.buffer).setBigUint64(timeAt, 8_640_000_000_000_001n);
    expect(() => parseCapsule(tampered)).toThrow(/creation time out of range/);
    new DataView(tampered.buffer).setBigUint64(timeAt, 8_640_000_000_000_000n);
    expect(parseCapsule(tampered).header.createdAt.getTime()).toBe(8_640_000_000_000_000);
  });

  it('no copy of the CMK stays behind in Node\'s shared Buffer pool after unwrap', () => {
    const id = generateIdentity('ml-kem-768');
    const cmk = generateCmk();
    const needle = Buffer.alloc(32); // alloc, unlike from(), never takes memory from the pool
    needle.set(cmk.subarray(0, 32));
    const capsule = wrapKey(cmk, toPublicIdentity(id), { name: 'x' });
    const out = unwrapKey(capsule, id);
    const view = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength); // no copy
    expect(view(out).equals(view(cmk))).toBe(true);
    out.fill(0);
    // The pool is the ArrayBuffer that small unsafe allocations are carved from.
    const pool = Buffer.from(Buffer.allocUnsafe(1).buffer);
    expect(pool.indexOf(needle)).toBe(-1);
    cmk.fill(0);
  });
});
