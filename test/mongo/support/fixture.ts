/**
 * A test file's own database on the test server, for the integration tests that share one: its name and
 * namespaces, and a plain client (no automatic decryption) open from beforeAll to afterAll, which drops the
 * database. Call it inside the file's describe, so that the hooks are that describe's.
 */
import { afterAll, beforeAll } from 'vitest';
import type { MongoClient } from 'mongodb';
import type { TestIdentity } from './identity.ts';
import { connectTestClient, server, uniqueDbName } from './server.ts';

export interface TestDatabase {
  db: string;
  capsuleNamespace: string;
  keyVaultNamespace: string;
  /** The plain client; open only while the describe's tests run. */
  readonly plain: MongoClient;
}

export function testDatabase(prefix: string): TestDatabase {
  const db = uniqueDbName(prefix);
  let plain: MongoClient | undefined;
  beforeAll(async () => {
    plain = await connectTestClient();
  });
  afterAll(async () => {
    await plain?.db(db).dropDatabase();
    await plain?.close();
  });
  return {
    db,
    capsuleNamespace: `${db}.capsules`,
    keyVaultNamespace: `${db}.__keyVault`,
    get plain(): MongoClient {
      if (plain === undefined) throw new Error('testDatabase: the plain client is open only while the tests run');
      return plain;
    },
  };
}

/** What a provisioning or rotation call by `owner`, the capsule's one recipient and signer, takes in `t`. */
export function ownerOptions(t: TestDatabase, owner: TestIdentity) {
  return { uri: server.uri, recipient: owner.pub, signer: owner.secret, unwrap: owner.unwrap, capsuleNamespace: t.capsuleNamespace, keyVaultNamespace: t.keyVaultNamespace, clientRefreshWaitMS: 0 };
}
