/**
 * Handles an application keeps (a collection, a Db, the ClientEncryption, the client itself) follow a CMK
 * rotation: taken before `rotateCmk`, they keep decrypting old documents and writing new ones after libmongocrypt's
 * data-key cache expired; where a path cannot follow (a cursor already half read, a write that returned a
 * document), the error is typed and says what to do.
 */
import type { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { type Binary, ClientEncryption, ClientSession, Collection, Db, FindCursor, MongoClient } from 'mongodb';
import { openEncryptedClient, provisionCluster, RANDOM, rotateCmk, type EncryptedClient } from '../../src/mongo/index.ts';
import { CmkRotatedError } from '../../src/errors.ts';
import { describeWithCsfle, server } from './support/server.ts';
import { ownerOptions, testDatabase } from './support/fixture.ts';
import { describeIf } from '../support/skip.ts';
import { testIdentity } from './support/identity.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeWithCsfle(`handles kept across a CMK rotation (${server.description})`, () => {
  const t = testDatabase('stale');
  const { db, capsuleNamespace, keyVaultNamespace } = t;
  const owner = testIdentity('owner');
  const common = ownerOptions(t, owner);

  /** A capsule with `n` documents i = 0…n-1 holding a = 'value-i' (random encryption) in collection `name`. */
  async function seed(name: string, n: number): Promise<void> {
    await provisionCluster({ ...common, capsuleName: name, dataKeyAltNames: ['a'] });
    const enc = await openEncryptedClient({ ...common, capsuleName: name, refreshIntervalMS: 0 });
    try {
      for (let i = 0; i < n; i++) await enc.client.db(db).collection(name).insertOne({ i, a: await enc.encryptRandom(`value-${i}`, 'a') });
    } finally {
      await enc.close();
    }
  }

  /** A client without a refresh timer and with a 200 ms key cache: only its own checks notice a rotation. */
  const open = (name: string) => openEncryptedClient({ ...common, capsuleName: name, keyExpirationMS: 200, refreshIntervalMS: 0 });

  /** Rotates the CMK and waits until libmongocrypt's cache of the old data keys has expired. */
  async function rotateAndExpire(name: string): Promise<void> {
    await rotateCmk({ ...common, capsuleName: name });
    await sleep(400);
  }

  const values = (docs: readonly Record<string, unknown>[]) => docs.map((d) => d.a);

  it('a collection kept from before rotate-cmk keeps reading and writing after the key cache expired', async () => {
    const name = 'coll';
    await seed(name, 2);
    const enc = await open(name);
    try {
      const people = enc.client.db(db).collection(name);
      expect((await people.findOne({ i: 0 }))?.a).toBe('value-0');
      await rotateAndExpire(name);
      expect((await people.findOne({ i: 0 }))?.a).toBe('value-0');
      expect(enc.capsule.generation).toBe(2);
      await people.insertOne({ i: 2, a: await enc.encryptRandom('value-2', 'a') });
      expect(values(await people.find({}).sort({ i: 1 }).toArray())).toEqual(['value-0', 'value-1', 'value-2']);
      expect(((await people.distinct('a', {})) as string[]).sort()).toEqual(['value-0', 'value-1', 'value-2']);
      expect(await people.countDocuments({})).toBe(3);
    } finally {
      await enc.close();
    }
  });

  it('distinct and countDocuments on a kept collection switch too (first call after the expiry)', async () => {
    const name = 'distinct';
    await seed(name, 2);
    const enc = await open(name);
    try {
      const people = enc.client.db(db).collection(name);
      expect(((await people.distinct('a', {})) as string[]).sort()).toEqual(['value-0', 'value-1']);
      await rotateAndExpire(name);
      expect(((await people.distinct('a', {})) as string[]).sort()).toEqual(['value-0', 'value-1']);
      expect(enc.capsule.generation).toBe(2);
    } finally {
      await enc.close();
    }
  });

  it('a Db and the client kept from before the rotation hand out collections and aggregations that work after it', async () => {
    const name = 'db';
    await seed(name, 3);
    const enc = await open(name);
    try {
      const client = enc.client;
      const appDb = enc.client.db(db);
      expect(values(await appDb.collection(name).find({}).toArray())).toHaveLength(3);
      await rotateAndExpire(name);
      const pipeline = [{ $match: { i: { $gte: 1 } } }, { $sort: { i: -1 } }];
      expect(values(await appDb.collection(name).aggregate(pipeline).toArray())).toEqual(['value-2', 'value-1']);
      expect(values(await client.db(db).collection(name).find({ i: 0 }).toArray())).toEqual(['value-0']);
      expect(enc.client).toBe(client);
      expect(client).toBeInstanceOf(MongoClient);
      expect(appDb).toBeInstanceOf(Db);
      expect(appDb.collection(name)).toBeInstanceOf(Collection);
      expect(appDb.collection(name).find()).toBeInstanceOf(FindCursor);
      expect(appDb.collection(name).collectionName).toBe(name);
    } finally {
      await enc.close();
    }
  });

  it('a fresh find through enc.client right after a rotation works with the timer off, builders (sort, limit, project) replayed', async () => {
    const name = 'fresh';
    await seed(name, 3);
    const enc = await open(name);
    try {
      expect(values(await enc.client.db(db).collection(name).find({}).toArray())).toHaveLength(3);
      await rotateAndExpire(name);
      const docs = await enc.client.db(db).collection(name).find({}).sort({ i: -1 }).limit(2).project({ _id: 0, a: 1 }).toArray();
      expect(docs).toEqual([{ a: 'value-2' }, { a: 'value-1' }]);
      expect(enc.capsule.generation).toBe(2);
    } finally {
      await enc.close();
    }
  });

  it('a cursor iterated with for await, not yet delivering a document, switches and yields every document', async () => {
    const name = 'iter';
    await seed(name, 3);
    const enc = await open(name);
    try {
      const people = enc.client.db(db).collection(name);
      expect((await people.findOne({}))?.a).toMatch(/^value-/);
      await rotateAndExpire(name);
      const seen: unknown[] = [];
      for await (const d of people.find({}).sort({ i: 1 })) seen.push(d.a);
      expect(seen).toEqual(['value-0', 'value-1', 'value-2']);
    } finally {
      await enc.close();
    }
  });

  it('the ClientEncryption kept from before the rotation decrypts old values and encrypts new ones', async () => {
    const name = 'ce';
    await seed(name, 1);
    const enc = await open(name);
    try {
      const ce = enc.encryption;
      expect(ce).toBeInstanceOf(ClientEncryption);
      const old = (await t.plain.db(db).collection(name).findOne({ i: 0 }))!.a as Binary;
      expect(await ce.decrypt(old)).toBe('value-0');
      const keyId = await enc.dataKey('a');
      await rotateAndExpire(name);
      expect(await ce.decrypt(old)).toBe('value-0');
      expect(enc.encryption).toBe(ce);
      const fresh = await ce.encrypt('value-new', { algorithm: RANDOM, keyId });
      expect(await ce.decrypt(fresh)).toBe('value-new');
      expect(enc.capsule.generation).toBe(2);
    } finally {
      await enc.close();
    }
  });

  it('a cursor that already delivered documents fails across a rotation with CMK_ROTATED saying to re-run the query', async () => {
    const name = 'midway';
    await seed(name, 3);
    const enc = await open(name);
    try {
      const people = enc.client.db(db).collection(name);
      const cursor = people.find({}).sort({ i: 1 }).batchSize(1);
      expect((await cursor.next())?.a).toBe('value-0');
      await rotateAndExpire(name);
      const err = await (async () => {
        try {
          while ((await cursor.next()) !== null);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(CmkRotatedError);
      expect((err as CmkRotatedError).code).toBe('CMK_ROTATED');
      expect((err as CmkRotatedError).hint).toMatch(/re-run the query/);
      // Re-running it works: the client has switched to the new CMK.
      expect(values(await people.find({}).sort({ i: 1 }).toArray())).toEqual(['value-0', 'value-1', 'value-2']);
    } finally {
      await enc.close();
    }
  });

  it('a findOneAndUpdate whose returned document cannot be decrypted is not repeated: CMK_ROTATED says it was applied', async () => {
    const name = 'fam';
    await seed(name, 1);
    const enc = await open(name);
    try {
      const people = enc.client.db(db).collection(name);
      expect((await people.findOne({ i: 0 }))?.a).toBe('value-0');
      await rotateAndExpire(name);
      const err = await people.findOneAndUpdate({ i: 0 }, { $inc: { n: 1 } }, { returnDocument: 'after' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CmkRotatedError);
      expect((err as CmkRotatedError).message).toMatch(/was applied/);
      expect((err as CmkRotatedError).hint).toMatch(/read the document again/);
      // Applied exactly once, and the next read decrypts it.
      expect((await t.plain.db(db).collection(name).findOne({ i: 0 }))?.n).toBe(1);
      expect(await people.findOne({ i: 0 })).toMatchObject({ a: 'value-0', n: 1 });
    } finally {
      await enc.close();
    }
  });

  it('an EncryptedClient keeps one client object across a switch, and it reads through it', async () => {
    const name = 'stable';
    await seed(name, 1);
    let enc: EncryptedClient | undefined = await open(name);
    try {
      const before = enc.client;
      await rotateCmk({ ...common, capsuleName: name });
      expect(await enc.refresh()).toBe(true);
      expect(enc.client).toBe(before);
      expect((await before.db(db).collection(name).findOne({ i: 0 }))?.a).toBe('value-0');
    } finally {
      await enc.close();
      enc = undefined;
    }
  });

  it("a change stream's 'error' listeners can be removed again (each is wrapped to give the typed error)", async () => {
    const name = 'listeners';
    await seed(name, 0);
    const enc = await open(name);
    try {
      const stream = enc.client.db(db).collection(name).watch() as unknown as EventEmitter & { close(): Promise<void> };
      const f = () => {};
      const g = () => {};
      stream.on('error', f);
      stream.once('error', g);
      expect(stream.listenerCount('error')).toBe(2);
      stream.removeListener('error', f);
      stream.off('error', g);
      expect(stream.listenerCount('error')).toBe(0);
      await stream.close();
    } finally {
      await enc.close();
    }
  });

  describe('sessions kept across the rotation', () => {
    async function setUp(name: string): Promise<EncryptedClient> {
      await provisionCluster({ ...common, capsuleName: name, dataKeyAltNames: ['a'] });
      const enc = await open(name);
      await enc.client.db(db).collection(name).insertOne({ i: 0, a: await enc.encryptRandom('value-0', 'a') });
      return enc;
    }

    it('a session started before rotate-cmk keeps working with kept and new collections after the switch', async () => {
      const name = 'sess';
      const enc = await setUp(name);
      const session = enc.client.startSession();
      try {
        expect(session).toBeInstanceOf(ClientSession);
        const people = enc.client.db(db).collection(name);
        expect((await people.findOne({ i: 0 }, { session }))?.a).toBe('value-0');
        await rotateAndExpire(name);
        // The first read switches the client; the session follows it instead of failing "ClientSession must be from
        // the same MongoClient".
        expect((await people.findOne({ i: 0 }, { session }))?.a).toBe('value-0');
        expect(enc.capsule.generation).toBe(2);
        await people.insertOne({ i: 1, a: await enc.encryptRandom('value-1', 'a') }, { session });
        expect((await enc.client.db(db).collection(name).find({}, { session }).sort({ i: 1 }).toArray()).map((d) => d.a)).toEqual(['value-0', 'value-1']);
        expect(await people.countDocuments({}, { session })).toBe(2);
      } finally {
        await session.endSession();
        await enc.close();
      }
    });

    describeIf(server.capabilities.replicaSet, `change streams need a replica set, which ${server.description} is not: a change stream across a CMK rotation is not checked`)('change streams', () => {
      it('a change stream opened before rotate-cmk resumes on the new CMK: the event that failed comes again, none lost or doubled', async () => {
        const name = 'stream';
        const enc = await setUp(name);
        const stream = enc.client.db(db).collection(name).watch([], { fullDocument: 'updateLookup' });
        try {
          expect(await stream.tryNext()).toBeNull();
          await enc.client.db(db).collection(name).insertOne({ i: 1, a: await enc.encryptRandom('value-1', 'a') });
          const first = (await stream.next()) as { fullDocument?: { i: number; a: string } };
          expect(first.fullDocument).toMatchObject({ i: 1, a: 'value-1' });
          await rotateAndExpire(name);
          await enc.client.db(db).collection(name).insertOne({ i: 2, a: await enc.encryptRandom('value-2', 'a') });
          await enc.client.db(db).collection(name).insertOne({ i: 3, a: await enc.encryptRandom('value-3', 'a') });
          const after = [(await stream.next()) as { fullDocument?: { i: number; a: string } }, (await stream.next()) as { fullDocument?: { i: number; a: string } }];
          expect(after.map((e) => e.fullDocument)).toEqual([expect.objectContaining({ i: 2, a: 'value-2' }), expect.objectContaining({ i: 3, a: 'value-3' })]);
        } finally {
          await stream.close();
          await enc.close();
        }
      });
    });

    it('withSession hands out a session that follows the switch; a transaction begun before it gets CMK_ROTATED, nothing sent', async () => {
      const name = 'txn';
      const enc = await setUp(name);
      try {
        const people = enc.client.db(db).collection(name);
        await enc.client.withSession(async (session) => {
          await rotateAndExpire(name);
          expect((await people.findOne({ i: 0 }, { session }))?.a).toBe('value-0');
        });
        await rotateAndExpire(name);
        const session = enc.client.startSession();
        try {
          // Begun on the generation before the switch (startTransaction only changes the session's own state).
          session.startTransaction();
          expect(session.inTransaction()).toBe(true);
          expect(await enc.refresh()).toBe(true);
          const err = await people.insertOne({ i: 9 }, { session }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(CmkRotatedError);
          expect((err as CmkRotatedError).hint).toMatch(/transaction/);
          await session.abortTransaction().catch(() => {});
          expect(await t.plain.db(db).collection(name).countDocuments({ i: 9 })).toBe(0);
        } finally {
          await session.endSession();
        }
      } finally {
        await enc.close();
      }
    });
  });
});
