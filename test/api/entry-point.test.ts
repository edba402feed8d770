/**
 * The package entry point (src/index.ts) as application code uses it: the README's one-call encrypted client,
 * with a KeyManager passed as `unwrap` and the identity held in a keychain.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Binary, type MongoClient } from 'mongodb';
import * as api from '../../src/index.ts';
import { connectTestClient, describeWithCsfle, server, uniqueDbName } from '../mongo/support/server.ts';

it('exports each layer and the typed errors from one module', () => {
  for (const name of ['KeyManager', 'MemoryKeychain', 'OsKeychain', 'openEncryptedClient', 'provisionCluster', 'rotateCmk', 'wrapKey', 'unwrapKey', 'generateIdentity', 'listSuiteIds', 'MongoCapsuleError', 'CapsuleAuthError']) {
    expect(api, name).toHaveProperty(name);
  }
  expect(api.listSuiteIds()).toEqual(expect.arrayContaining(['ml-kem-768', 'ml-kem-1024', 'x-wing']));
});

describeWithCsfle(`the README's encrypted client (${server.description})`, () => {
  const db = uniqueDbName('api');
  const keyVaultNamespace = `${db}.__keyVault`;
  const capsuleNamespace = `${db}.capsules`;
  const keys = new api.KeyManager({ keychain: new api.MemoryKeychain() });
  let plain: MongoClient;

  beforeAll(async () => {
    plain = await connectTestClient();
    const pub = await keys.initialize('default');
    const secret = await keys.getSecretIdentity('default');
    await api.provisionCluster({ uri: server.uri, capsuleName: 'default', recipient: pub, signer: secret, unwrap: keys, dataKeyAltNames: ['default'], capsuleNamespace, keyVaultNamespace });
  });
  afterAll(async () => {
    keys.clearCache();
    await plain?.db(db).dropDatabase();
    await plain?.close();
  });

  it('opens in one call with the key manager as unwrap, encrypts explicitly and decrypts automatically', async () => {
    {
      await using enc = await api.openEncryptedClient({ uri: server.uri, unwrap: keys, capsuleNamespace, keyVaultNamespace });
      await enc.client.db(db).collection('people').insertOne({ _id: 1 as never, ssn: await enc.encryptDeterministic('123-45-6789', 'default') });
      expect((await enc.client.db(db).collection('people').findOne({ _id: 1 as never }))!.ssn).toBe('123-45-6789');
    }
    const stored = await plain.db(db).collection('people').findOne({ _id: 1 as never });
    expect(stored!.ssn).toBeInstanceOf(Binary);
    expect((stored!.ssn as Binary).sub_type).toBe(6);
  });
});
