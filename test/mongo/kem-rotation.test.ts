import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MongoClient } from 'mongodb';
import { KeyManager } from '../../src/keys/manager.ts';
import { MemoryKeychain } from '../../src/keys/keychain.ts';
import { CapsuleStore, openEncryptedClient, provisionCluster, rotateCmk } from '../../src/mongo/index.ts';
import { connectTestClient, describeWithCsfle, server, uniqueDbName } from './support/server.ts';

// KEM-key rotation is the key manager's; the cluster takes part through CapsuleStore (a CapsuleRepository).
describeWithCsfle(`KEM-key rotation of capsules in the cluster (${server.description})`, () => {
  const db = uniqueDbName('kem');
  const capsuleNamespace = `${db}.capsules`;
  const keyVaultNamespace = `${db}.__keyVault`;
  let plain: MongoClient;
  let km: KeyManager;

  beforeAll(async () => {
    plain = await connectTestClient();
    km = new KeyManager({ keychain: new MemoryKeychain() });
    await km.initialize('ops');
  });
  afterAll(async () => {
    km?.clearCache();
    await plain?.db(db).dropDatabase();
    await plain?.close();
  });

  const unwrap = (c: Uint8Array) => km.unwrap(c, 'ops');

  it('re-seals the cluster capsule for the new key; encrypted data still decrypts', async () => {
    const before = await km.getPublicIdentity('ops');
    await provisionCluster({ uri: server.uri, capsuleName: 'kem', recipient: before, signer: await km.getSecretIdentity('ops'), unwrap, dataKeyAltNames: ['k'], capsuleNamespace, keyVaultNamespace });
    const enc = await openEncryptedClient({ uri: server.uri, capsuleName: 'kem', unwrap, capsuleNamespace, keyVaultNamespace });
    try {
      await enc.client.db(db).collection('d').insertOne({ v: await enc.encryptDeterministic('kept', 'k') });
    } finally {
      await enc.close();
    }

    const store = new CapsuleStore(plain, { namespace: capsuleNamespace });
    const report = await km.rotate('ops', [store]);
    expect(report.oldKid).toBe(before.kid);
    expect(report.rewrapped).toEqual([`capsules in ${capsuleNamespace}: kem`]);
    const live = await store.load('kem');
    expect(live.header.kid).toBe(report.newKid);
    expect(live.generation).toBe(2);
    expect((await store.history('kem')).map((h) => [h.kid, h.replacedBy])).toEqual([
      [before.kid, 'kem-rotation'],
      [report.newKid, null],
    ]);

    const after = await openEncryptedClient({ uri: server.uri, capsuleName: 'kem', unwrap, capsuleNamespace, keyVaultNamespace });
    try {
      expect((await after.client.db(db).collection('d').findOne({}))?.v).toBe('kept');
    } finally {
      await after.close();
    }
  });

  it('is refused while a CMK rotation is pending, and the old key is not retired', async () => {
    const store = new CapsuleStore(plain, { namespace: capsuleNamespace });
    const secret = await km.getSecretIdentity('ops');
    await expect(
      rotateCmk({ uri: server.uri, capsuleName: 'kem', recipient: secret, signer: secret, unwrap, capsuleNamespace, keyVaultNamespace, afterStep: () => Promise.reject(new Error('simulated crash')) }),
    ).rejects.toThrow('simulated crash');
    const pendingKid = (await store.load('kem')).header.kid;
    const refused = await km.rotate('ops', [store], { maxAttempts: 2 }).catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/kept changing during rotation/);
    expect((await km.status('ops')).slots.active).toBe(secret.kid);
    // Whatever the key manager recorded, the capsule and its pending rotation still open with 'ops'.
    const finished = await rotateCmk({ uri: server.uri, capsuleName: 'kem', recipient: await km.getSecretIdentity('ops'), unwrap, capsuleNamespace, keyVaultNamespace, clientRefreshWaitMS: 0 });
    expect(finished.resumed).toBe(true);
    expect(pendingKid).toBe(secret.kid);
    const enc = await openEncryptedClient({ uri: server.uri, capsuleName: 'kem', unwrap, capsuleNamespace, keyVaultNamespace });
    try {
      expect((await enc.client.db(db).collection('d').findOne({}))?.v).toBe('kept');
    } finally {
      await enc.close();
    }
  });
});
