import { readFileSync } from 'node:fs';
import { BSON } from 'mongodb';
import { describe, expect, it } from 'vitest';
import {
  capsuleFromDocument,
  computeKid,
  decodePublicIdentity,
  decodeSecretIdentity,
  generateIdentity,
  MongoCapsuleError,
  unwrapKey,
  type SignerPublic,
} from '../../src/index.ts';
import { buildNegativeVectors, type CapsuleVector, type NegativeEntry } from '../support/capsule-vectors.ts';

const read = (name: string) => JSON.parse(readFileSync(new URL(`../../docs/${name}`, import.meta.url), 'utf8'));
const vectors = (read('capsule-v1-vectors.json') as { vectors: CapsuleVector[] }).vectors;
const file = read('capsule-v1-negative-vectors.json') as { entries: NegativeEntry[] };
const spec = readFileSync(new URL('../../docs/capsule-format.md', import.meta.url), 'utf8');

/** Run what a reader does with the entry; returns the code of the error it throws, or 'accepted'. */
function outcome(entry: NegativeEntry): string {
  try {
    if (entry.kind === 'capsule') {
      const r = entry.recipient;
      const id = generateIdentity(r.suite, { kemSeed: Buffer.from(r.kemSeed, 'hex'), signerSeed: Buffer.from(r.signerSeed, 'hex') });
      const signers = entry.trustedSigners.map((hex): SignerPublic => {
        const publicKey = new Uint8Array(Buffer.from(hex, 'hex'));
        return { algorithm: 'ml-dsa-87', kid: computeKid('ml-dsa-87', publicKey), publicKey };
      });
      unwrapKey(new Uint8Array(Buffer.from(entry.capsule, 'hex')), id, { signers, requireSignature: entry.requireSignature });
    } else if (entry.kind === 'document') {
      capsuleFromDocument(BSON.EJSON.parse(JSON.stringify(entry.document), { relaxed: true }));
    } else if (entry.kind === 'public-identity') {
      decodePublicIdentity(entry.text);
    } else {
      decodeSecretIdentity(entry.text);
    }
    return 'accepted';
  } catch (e) {
    return e instanceof MongoCapsuleError ? e.code : `untyped ${(e as Error).name}: ${(e as Error).message}`;
  }
}

describe('negative vectors (docs/capsule-v1-negative-vectors.json)', () => {
  it('are exactly what the generator derives from the positive vectors', () => {
    expect(buildNegativeVectors(vectors)).toEqual(file.entries);
  });

  it('have unique ids and cover every kind and every expected code', () => {
    const ids = file.entries.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(file.entries.map((e) => e.kind))).toEqual(new Set(['capsule', 'document', 'public-identity', 'secret-identity']));
    expect(new Set(file.entries.map((e) => e.error))).toEqual(
      new Set(['CAPSULE_FORMAT', 'CAPSULE_AUTH', 'SIGNATURE_INVALID', 'SIGNER_UNKNOWN', 'IDENTITY_FORMAT', 'UNKNOWN_SUITE', 'INVALID_ARGUMENT']),
    );
  });

  for (const entry of file.entries) {
    it(`${entry.id}: ${entry.change} → ${entry.error}`, () => {
      expect(outcome(entry)).toBe(entry.error);
    });
  }

  it('the unchanged inputs they start from are accepted (so each rejection is the change’s doing)', () => {
    const v = vectors.find((x) => x.name === 'vector-768-signed')!;
    const id = generateIdentity(v.suite, { kemSeed: Buffer.from(v.kemSeed, 'hex'), signerSeed: Buffer.from(v.signerSeed, 'hex') });
    expect(Buffer.from(unwrapKey(new Uint8Array(Buffer.from(v.capsule, 'hex')), id, { requireSignature: true })).toString('hex')).toBe(v.cmk);
    const doc = file.entries.find((e) => e.id === 'document/unknown-field')!;
    if (doc.kind !== 'document') throw new Error('unexpected kind');
    const { comment: _, ...clean } = doc.document;
    expect(Buffer.from(capsuleFromDocument(BSON.EJSON.parse(JSON.stringify(clean), { relaxed: true }))).toString('hex')).toBe(v.capsule);
    for (const kind of ['public-identity', 'secret-identity'] as const) {
      const e = file.entries.find((x) => x.id === `${kind}/unknown-field`)!;
      if (e.kind !== kind) throw new Error('unexpected kind');
      const { comment: __, ...text } = JSON.parse(e.text) as Record<string, unknown>;
      const decoded = kind === 'public-identity' ? decodePublicIdentity(JSON.stringify(text)) : decodeSecretIdentity(JSON.stringify(text));
      expect(decoded.kid).toBe(v.kid);
    }
  });

  it('are listed in docs/capsule-format.md', () => {
    expect(spec).toContain('capsule-v1-negative-vectors.json');
  });
});
