import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MongoClient } from 'mongodb';
import { parseCapsule, wrapKey, generateCmk } from '../../src/crypto/index.ts';
import { CapsuleStore, provisionCluster, seedCapsule, sha256Hex, type CapsuleKeys } from '../../src/mongo/index.ts';
import { CapsuleAuthError, CapsuleNotFoundError, CapsuleOwnedByOtherKeyError } from '../../src/errors.ts';
import { connectTestClient, describeWithServer, server, uniqueDbName } from './support/server.ts';
import { testIdentity } from './support/identity.ts';

/** The hex of the single local key a seeder learned (copied before it is wiped). */
function keyOf(keys: CapsuleKeys): string {
  const providers = Object.values(keys.kmsProviders) as { key: Buffer }[];
  expect(providers).toHaveLength(1);
  return Buffer.from(providers[0]!.key).toString('hex');
}

describeWithServer(`capsule store (${server.description})`, () => {
  const db = uniqueDbName('capsules');
  const namespace = `${db}.capsules`;
  let client: MongoClient;
  let store: CapsuleStore;
  const alice = testIdentity('alice');
  const mallory = testIdentity('mallory');

  beforeAll(async () => {
    client = await connectTestClient();
    store = new CapsuleStore(client, { namespace });
  });
  afterAll(async () => {
    await client?.db(db).dropDatabase();
    await client?.close();
  });

  it('seeding twice keeps the first capsule', async () => {
    const first = await seedCapsule(store, { name: 'twice', recipient: alice.pub, signer: alice.secret, unwrap: alice.unwrap });
    const second = await seedCapsule(store, { name: 'twice', recipient: alice.pub, signer: alice.secret, unwrap: alice.unwrap });
    try {
      expect(first.created).toBe(true);
      expect(second.created).toBe(false);
      expect(second.record.sha256).toBe(first.record.sha256);
      expect(keyOf(second.keys!)).toEqual(keyOf(first.keys!));
      expect(await client.db(db).collection('capsules').countDocuments({ name: 'twice' })).toBe(1);
    } finally {
      first.keys?.wipe();
      second.keys?.wipe();
    }
  });

  it('20 concurrent seeders end with exactly one capsule and all learn the same CMK', async () => {
    // Separate store instances (separate index bookkeeping), one shared connection pool.
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        seedCapsule(new CapsuleStore(client, { namespace }), { name: 'race', recipient: alice.pub, signer: alice.secret, unwrap: alice.unwrap }),
      ),
    );
    try {
      expect(results.filter((r) => r.created)).toHaveLength(1);
      const keys = new Set(results.map((r) => keyOf(r.keys!)));
      expect(keys.size).toBe(1);
      expect([...keys][0]).toHaveLength(192); // 96 bytes
      expect(await client.db(db).collection('capsules').countDocuments({ name: 'race' })).toBe(1);
      expect(new Set(results.map((r) => r.record.sha256)).size).toBe(1);
    } finally {
      for (const r of results) r.keys?.wipe();
    }
  });

  it('stores the canonical bytes as BinData plus queryable header fields', async () => {
    const { record } = await seedCapsule(store, { name: 'doc-shape', recipient: alice.pub, signer: alice.secret });
    const raw = await client.db(db).collection('capsules').findOne({ kid: alice.pub.kid, name: 'doc-shape' });
    expect(raw).not.toBeNull();
    expect(raw!.bytes._bsontype).toBe('Binary');
    expect(raw!.bytes.sub_type).toBe(0);
    expect(Buffer.from(raw!.bytes.value())).toEqual(Buffer.from(record.bytes));
    expect(raw!.suite).toBe('ml-kem-1024');
    expect(raw!.signerKid).toBe(alice.pub.signer.kid);
    expect(raw!.sha256).toBe(sha256Hex(record.bytes));
    expect(raw!.kmsProvider).toBe('local:g1_doc_2dshape');
    expect(raw!.generation).toBe(1);
  });

  it('load, list and history', async () => {
    await seedCapsule(store, { name: 'listed', recipient: alice.pub });
    const loaded = await store.load('listed');
    expect(parseCapsule(loaded.bytes).header.name).toBe('listed');
    expect(loaded.header.kid).toBe(alice.pub.kid);
    expect((await store.list()).map((c) => c.name)).toContain('listed');
    const history = await store.history('listed');
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({ generation: 1, sha256: loaded.sha256, replacedAt: null });
    await expect(store.load('absent')).rejects.toBeInstanceOf(CapsuleNotFoundError);
  });

  it('replaces only by compare-and-swap (CapsuleRepository)', async () => {
    const { record } = await seedCapsule(store, { name: 'cas', recipient: alice.pub, signer: alice.secret });
    const cmk = generateCmk();
    const next = wrapKey(cmk, alice.pub, { name: 'cas', signer: alice.secret });
    const other = wrapKey(cmk, alice.pub, { name: 'cas', signer: alice.secret });
    cmk.fill(0);
    expect(await store.compareAndSwap('cas', other, next)).toBe(false); // stale expectation
    expect((await store.load('cas')).sha256).toBe(record.sha256);
    expect(await store.compareAndSwap('cas', record.bytes, next)).toBe(true);
    expect(await store.compareAndSwap('cas', record.bytes, other)).toBe(false); // lost the race
    const now = await store.load('cas');
    expect(now.sha256).toBe(sha256Hex(next));
    expect(now.generation).toBe(2);
    const history = await store.history('cas');
    expect(history.map((h) => [h.generation, h.replacedBy])).toEqual([
      [1, 'kem-rotation'],
      [2, null],
    ]);
    // History keeps metadata only: no capsule bytes of retired versions.
    const rawHistory = await client.db(db).collection('capsules.history').find({ name: 'cas' }).toArray();
    expect(rawHistory.every((h) => !('bytes' in h))).toBe(true);
  });

  it('wrong identity: a clear error and nothing written', async () => {
    const kvNamespace = `${db}.__keyVault`;
    await seedCapsule(store, { name: 'owned', recipient: alice.pub, signer: alice.secret });
    const before = await client.db(db).collection('capsules').find({}).toArray();
    // Existing capsule sealed for another key than the recipient: refused as such, before it is opened.
    await expect(
      provisionCluster({ uri: server.uri, capsuleName: 'owned', recipient: mallory.pub, unwrap: mallory.unwrap, capsuleNamespace: namespace, keyVaultNamespace: kvNamespace }),
    ).rejects.toThrow(CapsuleOwnedByOtherKeyError);
    // Existing capsule, the right recipient, an identity that does not open it.
    await expect(
      provisionCluster({ uri: server.uri, capsuleName: 'owned', recipient: alice.pub, unwrap: mallory.unwrap, capsuleNamespace: namespace, keyVaultNamespace: kvNamespace }),
    ).rejects.toThrow(CapsuleAuthError);
    // New capsule sealed for someone the given identity cannot open.
    await expect(
      provisionCluster({ uri: server.uri, capsuleName: 'sealed-for-alice', recipient: alice.pub, unwrap: mallory.unwrap, capsuleNamespace: namespace, keyVaultNamespace: kvNamespace }),
    ).rejects.toThrow(/wrong key|does not open/);
    expect(await client.db(db).collection('capsules').find({}).toArray()).toEqual(before);
    expect(await client.db(db).collection('__keyVault').countDocuments()).toBe(0);
  });
});
