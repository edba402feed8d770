import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import { connect, directConnectionUri, ensureReplicaSet, ensureRootUser, provisionCluster, waitForWritablePrimary } from '../../src/mongo/index.ts';
import { MongoAuthError, MongoCommandError } from '../../src/errors.ts';
import { connectTestClient, describeWithReplicaSet, describeWithServer, server, uniqueDbName } from './support/server.ts';
import { testIdentity } from './support/identity.ts';

describeWithReplicaSet(`replica set rs0 with keyfile and auth (${server.description})`, () => {
  let client: MongoClient;
  let member: string;

  beforeAll(async () => {
    client = await connectTestClient();
    const hello = await client.db('admin').command({ hello: 1 });
    member = String(hello.me ?? hello.primary);
  });
  afterAll(async () => {
    await client?.close();
  });

  it('is a replica set named rs0 with a writable primary', async () => {
    const hello = await waitForWritablePrimary(client, { timeoutMs: 30_000 });
    expect(hello.setName).toBe('rs0');
    expect(hello.isWritablePrimary).toBe(true);
  });

  it('ensureReplicaSet is idempotent on an initiated set', async () => {
    const direct = await connect(directConnectionUri(server.uri, member));
    try {
      const progress: string[] = [];
      const state = await ensureReplicaSet(direct, { setName: 'rs0', members: [{ host: member }], timeoutMs: 30_000, onProgress: (m) => progress.push(m) });
      expect(state).toMatchObject({ setName: 'rs0', initiated: false });
      expect(state.members.map((h) => h.toLowerCase())).toContain(member.toLowerCase());
      expect(progress.join('\n')).toMatch(/already initiated/);
      await expect(ensureReplicaSet(direct, { setName: 'other', members: [{ host: member }] })).rejects.toThrow(/belongs to replica set "rs0"/);
    } finally {
      await direct.close();
    }
  });

  it('ensureRootUser creates once, then leaves the user alone; the password never shows', async () => {
    const username = `u_${randomBytes(3).toString('hex')}`;
    const password = randomBytes(18).toString('base64url');
    expect(await ensureRootUser(client, { username, password, roles: ['readAnyDatabase'] })).toEqual({ created: true });
    expect(await ensureRootUser(client, { username, password: 'another-password', roles: ['readAnyDatabase'] })).toEqual({ created: false });
    const hostPart = server.uri.replace(/^mongodb:\/\/[^@]*@/, '');
    const asUser = new MongoClient(`mongodb://${username}:${encodeURIComponent(password)}@${hostPart}`, { serverSelectionTimeoutMS: 5000 });
    try {
      await asUser.connect();
      expect((await asUser.db('admin').command({ connectionStatus: 1 })).authInfo.authenticatedUsers[0].user).toBe(username);
    } finally {
      await asUser.close();
      await client.db('admin').command({ dropUser: username });
    }
  });

  it('wrong password: MongoAuthError without the password', async () => {
    const hostPart = server.uri.replace(/^mongodb:\/\/[^@]*@/, '');
    const err = await connect(`mongodb://root:wrong-${'x'.repeat(12)}@${hostPart}`, { serverSelectionTimeoutMS: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoAuthError);
    expect((err as Error).message).not.toContain('wrong-xxxx');
  });

  it('keyfile/auth: an unauthenticated client cannot read', async () => {
    const hostPart = server.uri.replace(/^mongodb:\/\/[^@]*@/, '');
    const anon = new MongoClient(`mongodb://${hostPart}`, { serverSelectionTimeoutMS: 5000 });
    try {
      await expect(anon.db('admin').command({ listDatabases: 1 })).rejects.toThrow(/requires authentication|Unauthorized/i);
    } finally {
      await anon.close();
    }
  });

  it('provisionCluster with replicaSet and rootUser re-runs as a no-op, and transactions work', async () => {
    const db = uniqueDbName('provision_rs');
    const owner = testIdentity();
    const rootPassword = randomBytes(18).toString('base64url');
    const options = {
      uri: server.uri,
      replicaSet: { name: 'rs0', members: [{ host: member }] },
      rootUser: { username: `root_${randomBytes(3).toString('hex')}`, password: rootPassword },
      recipient: owner.pub,
      unwrap: owner.unwrap,
      capsuleNamespace: `${db}.capsules`,
      keyVaultNamespace: `${db}.__keyVault`,
    };
    const progress: string[] = [];
    const first = await provisionCluster({ ...options, onProgress: (m) => progress.push(m) });
    const second = await provisionCluster(options);
    expect(first).toMatchObject({ created: true, rootUserCreated: true, replicaSet: { name: 'rs0', initiated: false } });
    expect(second).toMatchObject({ created: false, rootUserCreated: false, kid: first.kid });
    expect(progress.join('\n')).not.toContain(rootPassword);
    const session = client.startSession();
    try {
      await session.withTransaction(async () => {
        await client.db(db).collection('t').insertOne({ a: 1 }, { session });
      });
    } finally {
      await session.endSession();
      await client.db('admin').command({ dropUser: options.rootUser.username });
      await client.db(db).dropDatabase();
    }
  });
});

describeWithServer(`replica-set admin on a server that is not a replica set member (${server.description})`, () => {
  it('ensureReplicaSet says what is wrong instead of initiating', async () => {
    if (server.capabilities.replicaSet) {
      // A real replica set is covered above; there is no standalone server in this run.
      const c = await connectTestClient();
      try {
        expect((await c.db('admin').command({ hello: 1 })).setName).toBe('rs0');
      } finally {
        await c.close();
      }
      return;
    }
    const client = await connectTestClient();
    try {
      const err = await ensureReplicaSet(client, { members: [{ host: '127.0.0.1:27017' }], timeoutMs: 2000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MongoCommandError);
      expect((err as MongoCommandError).message).toMatch(/not running as a replica set member/);
      expect((err as MongoCommandError).hint).toMatch(/--replSet rs0/);
    } finally {
      await client.close();
    }
  });
});
