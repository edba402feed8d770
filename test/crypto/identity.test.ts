import { describe, expect, it } from 'vitest';
import {
  computeKid,
  copySecretIdentity,
  decodePublicIdentity,
  decodeSecretIdentity,
  encodePublicIdentity,
  encodeSecretIdentity,
  generateIdentity,
  listSuites,
  toPublicIdentity,
  wipeSecretIdentity,
} from '../../src/crypto/index.ts';
import { IdentityFormatError, InvalidArgumentError, UnknownSuiteError } from '../../src/errors.ts';

const available = listSuites().filter((s) => s.available());

describe('identities', () => {
  for (const suite of available) {
    it(`${suite.id}: public and secret encodings round-trip and re-derive the same keys`, () => {
      const id = generateIdentity(suite.id, { name: 'ops-team' });
      const pub = decodePublicIdentity(encodePublicIdentity(toPublicIdentity(id)));
      expect(pub).toEqual(toPublicIdentity(id));
      const sec = decodeSecretIdentity(encodeSecretIdentity(id));
      expect(sec.kid).toBe(id.kid);
      expect(sec.kemSecretKey).toEqual(id.kemSecretKey);
      expect(sec.signerSecretKey).toEqual(id.signerSecretKey);
      expect(id.kid).toBe(computeKid(suite.id, id.publicKey));
      expect(id.kid).toMatch(/^[0-9a-f]{32}$/);
    });
  }

  it('the secret encoding of a seeded suite is small enough for every OS keychain', () => {
    const text = encodeSecretIdentity(generateIdentity('ml-kem-1024'));
    expect(text.length).toBeLessThan(1024);
  });

  it('a public identity contains no secret', () => {
    const id = generateIdentity('ml-kem-1024');
    const text = encodePublicIdentity(toPublicIdentity(id));
    for (const secret of [id.kemSeed!, id.signerSeed, id.kemSecretKey.subarray(0, 32)]) {
      expect(text).not.toContain(Buffer.from(secret).toString('base64').slice(0, 12));
    }
  });

  it('wiping zeroes every secret byte but not the public copy', () => {
    const id = generateIdentity('x-wing');
    const pub = toPublicIdentity(id);
    wipeSecretIdentity(id);
    for (const b of [id.kemSeed!, id.kemSecretKey, id.signerSeed, id.signerSecretKey]) expect(b.every((x) => x === 0)).toBe(true);
    expect(pub.publicKey.some((x) => x !== 0)).toBe(true);
  });

  it('bad names and suites are typed errors', () => {
    expect(() => generateIdentity('ml-kem-1024', { name: '../etc' })).toThrow(InvalidArgumentError);
    expect(() => generateIdentity('rsa-2048')).toThrow(UnknownSuiteError);
  });
});

describe('strict decoding', () => {
  const id = generateIdentity('ml-kem-768');
  const pub = JSON.parse(encodePublicIdentity(toPublicIdentity(id))) as Record<string, unknown>;
  const sec = JSON.parse(encodeSecretIdentity(id)) as Record<string, unknown>;

  const cases: Array<[string, () => unknown, RegExp]> = [
    ['not JSON', () => decodePublicIdentity('{'), /not valid JSON/],
    ['unknown field', () => decodePublicIdentity(JSON.stringify({ ...pub, extra: 1 })), /unknown field identity.extra/],
    ['missing field', () => decodePublicIdentity(JSON.stringify({ ...pub, kid: undefined })), /missing field identity.kid/],
    ['wrong kid', () => decodePublicIdentity(JSON.stringify({ ...pub, kid: '00'.repeat(16) })), /kid does not match/],
    ['wrong version', () => decodePublicIdentity(JSON.stringify({ ...pub, version: 2 })), /unsupported version 2/],
    ['short key', () => decodePublicIdentity(JSON.stringify({ ...pub, publicKey: 'AAAA' })), /must decode to 1184 bytes/],
    ['secret given as public', () => decodePublicIdentity(JSON.stringify(sec)), /this is a secret identity file/],
    ['public given as secret', () => decodeSecretIdentity(JSON.stringify(pub)), /this is a public identity file/],
    ['non-canonical base64', () => decodeSecretIdentity(JSON.stringify({ ...sec, signer: { ...(sec.signer as object), seed: 'A' } })), /base64/],
    [
      'kid that does not match the seed',
      () => decodeSecretIdentity(JSON.stringify({ ...sec, kid: computeKid('ml-kem-768', new Uint8Array(1184)) })),
      /does not match the keys/,
    ],
  ];
  it.each(cases)('%s', (_name, fn, message) => {
    expect(fn).toThrow(IdentityFormatError);
    expect(fn).toThrow(message);
  });

  it('a JSON syntax error does not echo the secret input', () => {
    const text = encodeSecretIdentity(id).replace('}', '},');
    try {
      decodeSecretIdentity(text);
      throw new Error('accepted');
    } catch (e) {
      expect((e as Error).message).not.toContain(Buffer.from(id.kemSeed!).toString('base64').slice(0, 8));
    }
  });
});

describe('copySecretIdentity', () => {
  it('copies every field into buffers of its own: wiping the original leaves the copy whole', () => {
    const id = generateIdentity('ml-kem-768', { name: 'copy' });
    const copy = copySecretIdentity(id);
    const encoded = encodeSecretIdentity(id);
    wipeSecretIdentity(id);
    expect(encodeSecretIdentity(copy)).toBe(encoded);
    expect(copy.signerSecretKey.some((b) => b !== 0)).toBe(true);
  });
});
