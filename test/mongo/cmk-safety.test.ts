/**
 * Issue 10 §3: a capsule whose CMK does not open the key vault's data keys is caught before anything is written;
 * a stuck rotation can be abandoned; data keys are scoped to their capsule; clients survive a CMK rotation.
 */
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { expect, it } from 'vitest';
import { Binary, type Document } from 'mongodb';
import { capsuleToDocument, generateCmk, wrapKey } from '../../src/crypto/index.ts';
import {
  abandonCmkRotation,
  CapsuleStore,
  kmsProviderName,
  openEncryptedClient,
  provisionCluster,
  proveCapsuleCmk,
  rotateCmk,
  sha256Hex,
} from '../../src/mongo/index.ts';
import { CmkMismatchError, RotationIncompleteError } from '../../src/errors.ts';
import { describeWithCsfle, server } from './support/server.ts';
import { ownerOptions, testDatabase } from './support/fixture.ts';
import { testIdentity } from './support/identity.ts';

class SimulatedCrash extends Error {}

describeWithCsfle(`CMK and key vault safety (${server.description})`, () => {
  const t = testDatabase('cmksafety');
  const { db, capsuleNamespace, keyVaultNamespace } = t;
  const owner = testIdentity('owner');
  const common = ownerOptions(t, owner);

  const capsules = () => t.plain.db(db).collection('capsules');
  const keyVault = () => t.plain.db(db).collection('__keyVault');

  async function seedData(name: string, n: number, keyNames = [`${name}-a`]): Promise<void> {
    await provisionCluster({ ...common, capsuleName: name, dataKeyAltNames: keyNames });
    const enc = await openEncryptedClient({ ...common, capsuleName: name });
    try {
      for (let i = 0; i < n; i++) await enc.client.db(db).collection('data').insertOne({ capsule: name, i, a: await enc.encryptRandom(`value-${i}`, keyNames[0]!) });
    } finally {
      await enc.close();
    }
  }

  /**
   * What a restore from another cluster (or a bad manual edit) does: the capsule document now holds another
   * CMK, validly sealed and signed for the owner, while the key vault keeps the keys made with the old one.
   */
  async function replaceCmk(name: string): Promise<void> {
    const cmk = generateCmk();
    const d = capsuleToDocument(wrapKey(cmk, owner.pub, { name, signer: owner.secret }));
    cmk.fill(0);
    await capsules().updateOne({ name }, { $set: { ...d, bytes: new Binary(d.bytes), sha256: sha256Hex(d.bytes) } });
  }

  it('rotate-cmk proves the CMK opens the data keys before writing anything (typed error, nothing written)', async () => {
    const name = 'foreign-cmk';
    await seedData(name, 2);
    await replaceCmk(name);
    const before = (await capsules().findOne({ name })) as Document;
    const keysBefore = await keyVault().find({}).sort({ _id: 1 }).toArray();
    const err = await rotateCmk({ ...common, capsuleName: name }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CmkMismatchError);
    expect((err as CmkMismatchError).message).toMatch(/does not decrypt data key/);
    expect((err as CmkMismatchError).hint).toMatch(/another CMK than the one these data keys were made with/);
    const after = (await capsules().findOne({ name })) as Document;
    expect(after.pendingRotation).toBeUndefined();
    expect(after.sha256).toBe(before.sha256);
    expect(await keyVault().find({}).sort({ _id: 1 }).toArray()).toEqual(keysBefore);
    await expect(proveCapsuleCmk(t.plain, await new CapsuleStore(t.plain, { namespace: capsuleNamespace }).load(name), { unwrap: owner.unwrap, keyVaultNamespace })).rejects.toBeInstanceOf(CmkMismatchError);
  });

  it('reading with a CMK that does not match is a typed error, not a raw HMAC failure', async () => {
    const name = 'foreign-cmk';
    const raw = await t.plain.db(db).collection('data').findOne({ capsule: name });
    const enc = await openEncryptedClient({ ...common, capsuleName: name });
    try {
      await expect(enc.decrypt(raw!.a as Binary)).rejects.toBeInstanceOf(CmkMismatchError);
      await expect(enc.encryptRandom('x', `${name}-a`)).rejects.toBeInstanceOf(CmkMismatchError);
    } finally {
      await enc.close();
    }
  });

  it('a stuck pending rotation (started before the check existed) names the way out, and --abandon undoes it', async () => {
    const name = 'stuck';
    await seedData(name, 1);
    // Start a rotation, crash after the rewrap was recorded, then break the live CMK: what older versions left.
    await expect(rotateCmk({ ...common, capsuleName: name, afterStep: (s) => { if (s === 'prepared') throw new SimulatedCrash('stop'); } })).rejects.toBeInstanceOf(SimulatedCrash);
    const pending = (await capsules().findOne({ name }))!.pendingRotation as Document;
    const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
    // The owner's live CMK no longer matches the key vault: finishing cannot work.
    const live = await store.load(name);
    await replaceCmk(name);
    expect((await store.load(name)).sha256).not.toBe(live.sha256);

    const err = await rotateCmk({ ...common, capsuleName: name }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CmkMismatchError);
    expect((err as CmkMismatchError).message).toMatch(new RegExp(`pending CMK rotation ${pending.id as string} cannot finish`));
    expect((err as CmkMismatchError).hint).toMatch(/rotate-cmk --abandon --capsule stuck/);

    const r = await abandonCmkRotation({ ...common, capsuleName: name });
    expect(r).toMatchObject({ abandoned: true, rotationId: pending.id, movedBack: 0 });
    expect((await capsules().findOne({ name }))!.pendingRotation).toBeUndefined();
    // Abandoning again: nothing to do.
    await expect(abandonCmkRotation({ ...common, capsuleName: name })).resolves.toMatchObject({ abandoned: false });
  });

  it('abandon moves keys already moved back to the live CMK, crash-safe and resumable', async () => {
    const name = 'abandon';
    await seedData(name, 3, [`${name}-a`, `${name}-b`]);
    const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
    const before = await store.load(name);
    await expect(rotateCmk({ ...common, capsuleName: name, afterStep: (s) => { if (s === 'rewrapped') throw new SimulatedCrash('stop'); } })).rejects.toBeInstanceOf(SimulatedCrash);
    const providers = async () => (await keyVault().find({ keyAltNames: { $regex: `^${name}/` } }).toArray()).map((k) => k.masterKey.provider as string);
    expect(await providers()).toEqual([kmsProviderName(name, 2), kmsProviderName(name, 2)]);
    // Crash while abandoning, after the keys moved back and before pendingRotation is removed.
    await expect(abandonCmkRotation({ ...common, capsuleName: name, afterRewrap: () => { throw new SimulatedCrash('stop'); } })).rejects.toBeInstanceOf(SimulatedCrash);
    expect(await providers()).toEqual([before.kmsProvider, before.kmsProvider]);
    expect((await store.load(name)).pendingRotation).not.toBeNull();
    const r = await abandonCmkRotation({ ...common, capsuleName: name });
    expect(r.abandoned).toBe(true);
    const after = await store.load(name);
    expect(after.pendingRotation).toBeNull();
    expect(after.sha256).toBe(before.sha256);
    expect(after.generation).toBe(before.generation);
    const enc = await openEncryptedClient({ ...common, capsuleName: name });
    try {
      const docs = await enc.client.db(db).collection('data').find({ capsule: name }).sort({ i: 1 }).toArray();
      expect(docs.map((d) => d.a)).toEqual(['value-0', 'value-1', 'value-2']);
    } finally {
      await enc.close();
    }
    // And a later rotation works normally.
    await expect(rotateCmk({ ...common, capsuleName: name })).resolves.toMatchObject({ resumed: false, rewrapped: 2, generation: before.generation + 1 });
  });

  it('a network drop after the rotation started says so, and that a rerun finishes it', async () => {
    const name = 'netdrop';
    await seedData(name, 1);
    const [host, port] = new URL(server.uri).host.split(':') as [string, string];
    const sockets = new Set<Socket>();
    const proxy = createServer((c) => {
      const up = createConnection(Number(port), host);
      sockets.add(c).add(up);
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxied = server.uri.replace(`${host}:${port}`, `127.0.0.1:${(proxy.address() as AddressInfo).port}`);
    const cut = () => {
      proxy.close();
      for (const s of sockets) s.destroy();
    };
    const err = await rotateCmk({ ...common, uri: proxied, capsuleName: name, serverSelectionTimeoutMS: 1000, afterStep: (s) => { if (s === 'prepared') cut(); } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RotationIncompleteError);
    expect((err as RotationIncompleteError).message).toMatch(/the CMK rotation [0-9a-f]+ started but did not finish/);
    expect((err as RotationIncompleteError).hint).toMatch(/rerun `mongo-capsule rotate-cmk`.*to finish/);
    await expect(rotateCmk({ ...common, capsuleName: name })).resolves.toMatchObject({ resumed: true, generation: 2 });
  });

  it('data keys are scoped to their capsule: the same alternate name in two capsules gives two keys', async () => {
    await seedData('default', 1, ['default']);
    await provisionCluster({ ...common, capsuleName: 'loss' });
    const def = await openEncryptedClient({ ...common, capsuleName: 'default' });
    const loss = await openEncryptedClient({ ...common, capsuleName: 'loss' });
    try {
      const v = await loss.encryptRandom('mine', 'default');
      expect(await loss.decrypt(v)).toBe('mine');
      const [kd, kl] = [await def.dataKey('default'), await loss.dataKey('default')];
      expect(kd.toUUID().toHexString()).not.toBe(kl.toUUID().toHexString());
      const lossKey = await keyVault().findOne({ _id: kl as never });
      expect(lossKey?.masterKey.provider).toBe(kmsProviderName('loss', 1));
      expect(lossKey?.keyAltNames).toEqual(['loss/default']);
      // And provisioning the same name for both capsules also keeps them apart.
      const p = await provisionCluster({ ...common, capsuleName: 'loss', dataKeyAltNames: ['default'] });
      expect(p.dataKeyIds.default).toBe(kl.toUUID().toHexString(true));
    } finally {
      await def.close();
      await loss.close();
    }
  });

  it('a key vault made before scoped names keeps working: a bare-named key is found under its own capsule only', async () => {
    const name = 'legacy';
    await provisionCluster({ ...common, capsuleName: name });
    const enc = await openEncryptedClient({ ...common, capsuleName: name });
    try {
      // What an older version stored: the bare alternate name.
      const id = await enc.encryption.createDataKey(kmsProviderName(name, 1) as 'local', { keyAltNames: ['legacy-ssn'] });
      const v = await enc.encryptDeterministic('x', 'legacy-ssn');
      expect((await enc.dataKey('legacy-ssn')).toUUID().toHexString()).toBe(id.toUUID().toHexString());
      expect(await enc.decrypt(v)).toBe('x');
      expect(await keyVault().countDocuments({ keyAltNames: `${name}/legacy-ssn` })).toBe(0);
    } finally {
      await enc.close();
    }
    // Another capsule does not pick it up: a key of its own, scoped.
    const other = await openEncryptedClient({ ...common, capsuleName: 'loss' });
    try {
      const id = await other.dataKey('legacy-ssn');
      expect((await keyVault().findOne({ _id: id as never }))?.keyAltNames).toEqual(['loss/legacy-ssn']);
    } finally {
      await other.close();
    }
  });

  it('a client stays open across rotate-cmk and the key cache expiry: it keeps decrypting old documents and writing new ones', async () => {
    const name = 'survivor';
    await seedData(name, 2);
    // A short cache lifetime stands in for the driver's 60 s; no timer, so only the client's own checks act.
    const enc = await openEncryptedClient({ ...common, capsuleName: name, keyExpirationMS: 200, refreshIntervalMS: 0 });
    const col = () => enc.client.db(db).collection('data');
    try {
      expect((await col().find({ capsule: name }).sort({ i: 1 }).toArray()).map((d) => d.a)).toEqual(['value-0', 'value-1']);
      const oldDoc = await t.plain.db(db).collection('data').findOne({ capsule: name, i: 0 });
      await rotateCmk({ ...common, capsuleName: name });
      await new Promise((r) => setTimeout(r, 400));
      // Explicit helpers: libmongocrypt lacks the new provider, the client switches and carries on.
      expect(await enc.decrypt(oldDoc!.a as Binary)).toBe('value-0');
      await col().insertOne({ capsule: name, i: 2, a: await enc.encryptRandom('value-2', `${name}-a`) });
      expect(enc.capsule.generation).toBe(2);
      await new Promise((r) => setTimeout(r, 400));
      // Automatic decryption through db.client (the getter returns the current client).
      expect((await col().find({ capsule: name }).sort({ i: 1 }).toArray()).map((d) => d.a)).toEqual(['value-0', 'value-1', 'value-2']);
      // A second rotation, noticed by the timer-less client through refresh().
      await rotateCmk({ ...common, capsuleName: name });
      expect(await enc.refresh()).toBe(true);
      await new Promise((r) => setTimeout(r, 400));
      expect((await col().find({ capsule: name }).sort({ i: 1 }).toArray()).map((d) => d.a)).toEqual(['value-0', 'value-1', 'value-2']);
    } finally {
      await enc.close();
    }
  });

  it('with its timer, a running client follows a rotation before any key moves (auto-decryption never fails)', async () => {
    const name = 'timer';
    await seedData(name, 1);
    const enc = await openEncryptedClient({ ...common, capsuleName: name, keyExpirationMS: 100, refreshIntervalMS: 100 });
    let reads = 0;
    let failures = 0;
    let stop = false;
    const reader = (async () => {
      while (!stop) {
        try {
          const d = await enc.client.db(db).collection('data').findOne({ capsule: name });
          if (d?.a === 'value-0') reads++;
        } catch {
          failures++;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      await rotateCmk({ ...common, capsuleName: name, clientRefreshWaitMS: 500 });
      await new Promise((r) => setTimeout(r, 500));
      stop = true;
      await reader;
      expect(failures).toBe(0);
      expect(reads).toBeGreaterThan(5);
      expect(enc.capsule.generation).toBe(2);
    } finally {
      stop = true;
      await enc.close();
    }
  });
});
