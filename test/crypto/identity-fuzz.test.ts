// Identity files are parsed from disk, the keychain and the environment: 10^5 mutated and random inputs to the two
// decoders produce only typed errors, and whatever still decodes is the same identity (same kids). Reproducible
// (xorshift32), so a failure can be replayed.
import { describe, expect, it } from 'vitest';
import { decodePublicIdentity, decodeSecretIdentity, encodePublicIdentity, encodeSecretIdentity, generateIdentity, toPublicIdentity } from '../../src/crypto/index.ts';
import { MongoCapsuleError } from '../../src/errors.ts';

function rng(seed: number) {
  return (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
}

const ODD_VALUES: unknown[] = [null, true, 0, -1, 1.5, 2 ** 53, '', 'x', 'ml-kem-1024', 'ml-dsa-87', '====', 'AAAA', [], {}, { a: 1 }, ['x'], 'mongo-capsule-public-identity'];

/** One mutant of `text` (an identity's JSON), by a strategy chosen from `i`. */
function mutate(text: string, i: number, rand: (n: number) => number): string | Uint8Array {
  switch (i % 6) {
    case 0: {
      const b = Buffer.from(text);
      for (let k = 0, m = 1 + rand(4); k < m; k++) b[rand(b.length)] = rand(256);
      return new Uint8Array(b);
    }
    case 1:
      return text.slice(0, rand(text.length));
    case 2: {
      const at = rand(text.length);
      return text.slice(0, at) + String.fromCharCode(...Array.from({ length: 1 + rand(8) }, () => 32 + rand(95))) + text.slice(at);
    }
    case 3: {
      // A field (top level or nested) replaced by a value of another type or deleted; or an unknown field added.
      const doc = JSON.parse(text) as Record<string, Record<string, unknown>>;
      const keys = Object.keys(doc);
      const key = keys[rand(keys.length)]!;
      const target = typeof doc[key] === 'object' && doc[key] !== null && rand(2) === 0 ? doc[key] : doc;
      const field = target === doc ? key : Object.keys(target)[rand(Object.keys(target).length)] ?? 'x';
      const r = rand(10);
      if (r === 0) delete target[field];
      else if (r === 1) target[`extra${rand(3)}`] = 1;
      else target[field] = ODD_VALUES[rand(ODD_VALUES.length)];
      return JSON.stringify(doc);
    }
    case 4:
      return crypto.getRandomValues(new Uint8Array(rand(300)));
    default:
      return JSON.stringify(ODD_VALUES[rand(ODD_VALUES.length)]);
  }
}

function expectTyped(fn: () => unknown, i: number): unknown {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof MongoCapsuleError)) throw new Error(`untyped error on input ${i}: ${String(e)}`);
    return undefined;
  }
}

describe('identity decoders under fuzzing', () => {
  it('decodePublicIdentity: 60,000 inputs, only typed errors, and what decodes is the same identity', () => {
    const id = generateIdentity('ml-kem-768', { name: 'fuzz' });
    const text = encodePublicIdentity(toPublicIdentity(id));
    const rand = rng(0x1234567);
    let decoded = 0;
    for (let i = 0; i < 60_000; i++) {
      const out = expectTyped(() => decodePublicIdentity(mutate(text, i, rand)), i) as ReturnType<typeof decodePublicIdentity> | undefined;
      if (out !== undefined) {
        decoded++;
        expect(out.kid).toBe(id.kid);
        expect(out.signer.kid).toBe(id.signer.kid);
      }
    }
    expect(decoded).toBeLessThan(60_000 / 6); // mostly rejections; the survivors are harmless edits (whitespace)
  }, 120_000);

  it('decodeSecretIdentity: 40,000 inputs, only typed errors, and what decodes is the same identity', () => {
    const id = generateIdentity('ml-kem-768', { name: 'fuzz' });
    const text = encodeSecretIdentity(id);
    const rand = rng(0x7654321);
    for (let i = 0; i < 40_000; i++) {
      const out = expectTyped(() => decodeSecretIdentity(mutate(text, i, rand)), i) as ReturnType<typeof decodeSecretIdentity> | undefined;
      if (out !== undefined) {
        expect(out.kid).toBe(id.kid);
        expect(out.signer.kid).toBe(id.signer.kid);
      }
    }
  }, 180_000);
});
