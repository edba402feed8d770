import { afterAll, beforeAll, expect, it } from 'vitest';
import { Binary, type MongoClient } from 'mongodb';
import { ensureKeyVaultIndex, openEncryptedClient, provisionCluster, type EncryptedClient } from '../../src/mongo/index.ts';
import { CapsuleAuthError, CapsuleNotFoundError } from '../../src/errors.ts';
import { connectTestClient, describeWithCsfle, server, uniqueDbName } from './support/server.ts';
import { testIdentity } from './support/identity.ts';

describeWithCsfle(`encrypted client (${server.description})`, () => {
  const db = uniqueDbName('csfle');
  const capsuleNamespace = `${db}.capsules`;
  const keyVaultNamespace = `${db}.__keyVault`;
  const owner = testIdentity('owner');
  let plain: MongoClient;
  let enc: EncryptedClient;

  beforeAll(async () => {
    plain = await connectTestClient();
    const provisioned = await provisionCluster({
      uri: server.uri,
      capsuleName: 'app',
      recipient: owner.pub,
      signer: owner.secret,
      unwrap: owner.unwrap,
      dataKeyAltNames: ['ssn', 'notes'],
      capsuleNamespace,
      keyVaultNamespace,
    });
    expect(provisioned.created).toBe(true);
    expect(Object.keys(provisioned.dataKeyIds).sort()).toEqual(['notes', 'ssn']);
    enc = await openEncryptedClient({ uri: server.uri, capsuleName: 'app', unwrap: owner.unwrap, capsuleNamespace, keyVaultNamespace });
  });
  afterAll(async () => {
    await enc?.close();
    await plain?.db(db).dropDatabase();
    await plain?.close();
  });

  it('provisioning again changes nothing and returns the same data keys', async () => {
    const again = await provisionCluster({
      uri: server.uri,
      capsuleName: 'app',
      recipient: owner.pub,
      unwrap: owner.unwrap,
      dataKeyAltNames: ['ssn', 'notes'],
      capsuleNamespace,
      keyVaultNamespace,
    });
    expect(again.created).toBe(false);
    expect(await plain.db(db).collection('__keyVault').countDocuments()).toBe(2);
    expect(await plain.db(db).collection('capsules').countDocuments()).toBe(1);
    const ids = (await plain.db(db).collection('__keyVault').find({}).toArray()).map((k) => (k._id as unknown as Binary).toUUID().toHexString(true)).sort();
    expect(Object.values(again.dataKeyIds).sort()).toEqual(ids);
  });

  it('stores an encrypted field as BinData subtype 6, readable only through the encrypted client', async () => {
    const people = enc.client.db(db).collection('people');
    await people.insertOne({ _id: 1 as never, name: 'Ada', ssn: await enc.encryptDeterministic('123-45-6789', 'ssn'), notes: await enc.encryptRandom({ a: 1 }, 'notes') });

    const raw = await plain.db(db).collection('people').findOne({ _id: 1 as never });
    expect(raw!.ssn).toBeInstanceOf(Binary);
    expect(raw!.ssn.sub_type).toBe(6);
    expect(raw!.notes.sub_type).toBe(6);
    expect(Buffer.from(raw!.ssn.value()).includes(Buffer.from('123-45-6789'))).toBe(false);
    expect(raw!.name).toBe('Ada');

    const decrypted = await people.findOne({ _id: 1 as never });
    expect(decrypted).toEqual({ _id: 1, name: 'Ada', ssn: '123-45-6789', notes: { a: 1 } });
    expect(await enc.decrypt(raw!.ssn)).toBe('123-45-6789');
  });

  it('deterministic encryption is queryable by equality; random is not repeatable', async () => {
    const a = await enc.encryptDeterministic('same', 'ssn');
    const b = await enc.encryptDeterministic('same', 'ssn');
    expect(Buffer.from(a.value())).toEqual(Buffer.from(b.value()));
    const r1 = await enc.encryptRandom('same', 'notes');
    const r2 = await enc.encryptRandom('same', 'notes');
    expect(Buffer.from(r1.value())).not.toEqual(Buffer.from(r2.value()));
    const people = enc.client.db(db).collection('people');
    await people.insertOne({ _id: 2 as never, ssn: a });
    const found = await people.findOne({ ssn: await enc.encryptDeterministic('same', 'ssn') });
    expect(found?._id).toBe(2);
  });

  it('creates a data key on first use, once', async () => {
    const [k1, k2] = await Promise.all([enc.dataKey('fresh'), enc.dataKey('fresh')]);
    expect(k1.toUUID().toHexString()).toBe(k2.toUUID().toHexString());
    expect(await plain.db(db).collection('__keyVault').countDocuments({ keyAltNames: 'app/fresh' })).toBe(1);
  });

  it('another identity cannot open the client', async () => {
    const stranger = testIdentity('stranger');
    await expect(openEncryptedClient({ uri: server.uri, capsuleName: 'app', unwrap: stranger.unwrap, capsuleNamespace, keyVaultNamespace })).rejects.toBeInstanceOf(CapsuleAuthError);
    await expect(openEncryptedClient({ uri: server.uri, capsuleName: 'nope', unwrap: owner.unwrap, capsuleNamespace, keyVaultNamespace })).rejects.toBeInstanceOf(CapsuleNotFoundError);
  });

  it('zeroizes the CMK it unwrapped', async () => {
    const seen: Uint8Array[] = [];
    const client = await openEncryptedClient({
      uri: server.uri,
      capsuleName: 'app',
      unwrap: async (c) => {
        const k = await owner.unwrap(c);
        seen.push(k);
        return k;
      },
      capsuleNamespace,
      keyVaultNamespace,
    });
    try {
      expect(seen).toHaveLength(1);
      expect(seen[0]!.every((b) => b === 0)).toBe(true);
      // ...and libmongocrypt still has its own copy.
      const v = await client.encryptDeterministic('still works', 'ssn');
      expect(await client.decrypt(v)).toBe('still works');
    } finally {
      await client.close();
    }
  });

  it('key vault index: unique partial where supported, otherwise a warning and the fallback', async () => {
    const warnings: string[] = [];
    const r = await ensureKeyVaultIndex(plain, { keyVaultNamespace, onWarning: (w) => warnings.push(w) });
    if (server.capabilities.partialIndexes) {
      expect(r.uniqueAltNames).toBe(true);
      expect(warnings).toEqual([]);
      const idx = (await plain.db(db).collection('__keyVault').indexes()).find((i) => i.name === 'keyAltNames_1');
      expect(idx?.partialFilterExpression).toEqual({ keyAltNames: { $exists: true } });
    } else {
      expect(r.uniqueAltNames).toBe(false);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/cannot create the unique partial index/);
      // The fallback still refuses a second key with the same single alternate name.
      const dup = { _id: new Binary(Buffer.alloc(16, 7), 4), keyAltNames: ['app/ssn'], keyMaterial: new Binary(Buffer.alloc(1)), creationDate: new Date(), updateDate: new Date(), status: 0, masterKey: { provider: 'local' } };
      if (r.fallbackIndex) await expect(plain.db(db).collection('__keyVault').insertOne(dup as never)).rejects.toThrow(/duplicate key/i);
    }
  });
});
