import { expect, it } from 'vitest';
import { CapsuleStore, openEncryptedClient, provisionCluster, rotateCmk, type RotationStep } from '../../src/mongo/index.ts';
import { describeWithCsfle, server } from './support/server.ts';
import { ownerOptions, testDatabase } from './support/fixture.ts';
import { testIdentity } from './support/identity.ts';

class SimulatedCrash extends Error {}

describeWithCsfle(`CMK rotation (${server.description})`, () => {
  const t = testDatabase('rotation');
  const { db, capsuleNamespace, keyVaultNamespace } = t;
  const owner = testIdentity('owner');
  const common = ownerOptions(t, owner);

  /** Provisions capsule `name` with two data keys and writes `n` encrypted documents. */
  async function seedData(name: string, n: number): Promise<void> {
    await provisionCluster({ ...common, capsuleName: name, dataKeyAltNames: [`${name}-a`, `${name}-b`] });
    const enc = await openEncryptedClient({ ...common, capsuleName: name });
    try {
      const docs = [];
      for (let i = 0; i < n; i++) {
        docs.push({ capsule: name, i, a: await enc.encryptDeterministic(`value-${i}`, `${name}-a`), b: await enc.encryptRandom({ i }, `${name}-b`) });
      }
      await enc.client.db(db).collection('data').insertMany(docs);
    } finally {
      await enc.close();
    }
  }

  async function expectAllDecrypt(name: string, n: number): Promise<void> {
    const enc = await openEncryptedClient({ ...common, capsuleName: name });
    try {
      const docs = await enc.client.db(db).collection('data').find({ capsule: name }).sort({ i: 1 }).toArray();
      expect(docs).toHaveLength(n);
      docs.forEach((d, i) => {
        expect(d.a).toBe(`value-${i}`);
        expect(d.b).toEqual({ i });
      });
    } finally {
      await enc.close();
    }
  }

  it('rotates the CMK: data keys move to the next generation provider, old data still decrypts', async () => {
    await seedData('plain-rotation', 5);
    const r = await rotateCmk({ ...common, capsuleName: 'plain-rotation' });
    expect(r).toMatchObject({ resumed: false, fromProvider: 'local:g1_plain_2drotation', toProvider: 'local:g2_plain_2drotation', rewrapped: 2, generation: 2, kid: owner.pub.kid });
    const keys = await t.plain.db(db).collection('__keyVault').find({ keyAltNames: { $in: ['plain-rotation/plain-rotation-a', 'plain-rotation/plain-rotation-b'] } }).toArray();
    expect(keys.map((k) => k.masterKey.provider)).toEqual([r.toProvider, r.toProvider]);
    await expectAllDecrypt('plain-rotation', 5);
    // New data keys after the rotation go under the new provider.
    const enc = await openEncryptedClient({ ...common, capsuleName: 'plain-rotation' });
    try {
      await enc.dataKey('plain-rotation-c');
      const k = await t.plain.db(db).collection('__keyVault').findOne({ keyAltNames: 'plain-rotation/plain-rotation-c' });
      expect(k?.masterKey.provider).toBe(r.toProvider);
    } finally {
      await enc.close();
    }
    // And a second rotation continues the sequence.
    const r2 = await rotateCmk({ ...common, capsuleName: 'plain-rotation' });
    expect(r2.toProvider).toBe('local:g3_plain_2drotation');
    await expectAllDecrypt('plain-rotation', 5);
    const history = await new CapsuleStore(t.plain, { namespace: capsuleNamespace }).history('plain-rotation');
    expect(history.map((h) => [h.generation, h.kmsProvider, h.replacedBy])).toEqual([
      [1, 'local:g1_plain_2drotation', 'cmk-rotation'],
      [2, 'local:g2_plain_2drotation', 'cmk-rotation'],
      [3, 'local:g3_plain_2drotation', null],
    ]);
  });

  for (const step of ['prepared', 'rewrapped', 'swapped'] as RotationStep[]) {
    it(`a crash after "${step}": everything decrypts meanwhile, and re-running converges`, async () => {
      const name = `crash-${step}`;
      await seedData(name, 4);
      await expect(
        rotateCmk({
          ...common,
          capsuleName: name,
          afterStep: (s) => {
            if (s === step) throw new SimulatedCrash(`crash after ${s}`);
          },
        }),
      ).rejects.toBeInstanceOf(SimulatedCrash);

      // Between the crash and the re-run, applications keep working.
      await expectAllDecrypt(name, 4);
      const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
      const mid = await store.load(name);
      expect(mid.pendingRotation === null).toBe(step === 'swapped');

      const again = await rotateCmk({ ...common, capsuleName: name });
      // Before the swap the re-run finishes the started rotation; after it there is nothing pending, so the
      // re-run is a fresh (harmless) rotation.
      expect(again.resumed).toBe(step !== 'swapped');
      expect(again.toProvider).toMatch(step === 'swapped' ? /^local:g3_/ : /^local:g2_/);
      const done = await store.load(name);
      expect(done.pendingRotation).toBeNull();
      const providers = (await t.plain.db(db).collection('__keyVault').find({ keyAltNames: { $in: [`${name}/${name}-a`, `${name}/${name}-b`] } }).toArray()).map((k) => k.masterKey.provider);
      expect(providers).toEqual([done.kmsProvider, done.kmsProvider]);
      await expectAllDecrypt(name, 4);
    });
  }

  it('a KEM-key swap waits while a CMK rotation is pending', async () => {
    const name = 'pending-blocks-kem';
    await seedData(name, 1);
    await expect(rotateCmk({ ...common, capsuleName: name, afterStep: () => Promise.reject(new SimulatedCrash('stop')) })).rejects.toBeInstanceOf(SimulatedCrash);
    const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
    const live = await store.load(name);
    expect(live.pendingRotation).not.toBeNull();
    // Same CMK resealed (what KEM-key rotation does): refused while the rotation is pending.
    expect(await store.compareAndSwap(name, live.bytes, live.pendingRotation!.next)).toBe(false);
    await rotateCmk({ ...common, capsuleName: name });
    await expectAllDecrypt(name, 1);
  });

  it('a rotation by an identity that cannot open the capsule, or for another key, changes nothing', async () => {
    const name = 'wrong-identity';
    await seedData(name, 2);
    const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
    const before = await store.load(name);
    const stranger = testIdentity('stranger');
    // Someone else's identity: it would seal (and prove) a next CMK for itself; the live capsule refuses it first.
    await expect(rotateCmk({ ...common, capsuleName: name, recipient: owner.pub, signer: stranger.secret, unwrap: stranger.unwrap })).rejects.toThrow(/wrong key|not sealed|does not/i);
    // The owner's unwrap, but sealing the new CMK for another key: refused before anything is written.
    await expect(rotateCmk({ ...common, capsuleName: name, recipient: stranger.pub })).rejects.toMatchObject({ code: 'CAPSULE_CONFLICT' });
    const after = await store.load(name);
    expect(after.pendingRotation).toBeNull();
    expect(after.sha256).toBe(before.sha256);
    // The owner is not locked out: it still opens and rotates.
    await expect(rotateCmk({ ...common, capsuleName: name })).resolves.toMatchObject({ resumed: false, generation: before.generation + 1 });
    await expectAllDecrypt(name, 2);
  });

  it('a client opened before a rotation creates new data keys under the current CMK, never the old one', async () => {
    const name = 'stale-client';
    await seedData(name, 1);
    const early = await openEncryptedClient({ ...common, capsuleName: name, refreshIntervalMS: 0 });
    try {
      await rotateCmk({ ...common, capsuleName: name });
      // An existing key is found, not created: fine. A new one must not land under the old provider: the client
      // notices the rotation right before creating it and switches to the new CMK first.
      await expect(early.dataKey(`${name}-a`)).resolves.toBeDefined();
      await expect(early.dataKey(`${name}-new`)).resolves.toBeDefined();
      expect(early.capsule.generation).toBe(2);
      const created = await t.plain.db(db).collection('__keyVault').findOne({ keyAltNames: `${name}/${name}-new` });
      expect(created?.masterKey.provider).toBe('local:g2_stale_2dclient');
    } finally {
      await early.close();
    }
    const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
    const live = await store.load(name);
    const providers = (await t.plain.db(db).collection('__keyVault').find({ keyAltNames: { $regex: `^${name}/` } }).toArray()).map((k) => k.masterKey.provider);
    expect(new Set(providers)).toEqual(new Set([live.kmsProvider]));
  });

  it('provisioning again without an identity finds the existing data keys, and names a missing one', async () => {
    const name = 'no-identity-rerun';
    await seedData(name, 1);
    const { unwrap: _unwrap, signer: _signer, ...withoutIdentity } = common;
    const again = await provisionCluster({ ...withoutIdentity, capsuleName: name, dataKeyAltNames: [`${name}-a`, `${name}-b`] });
    expect(Object.keys(again.dataKeyIds).sort()).toEqual([`${name}-a`, `${name}-b`]);
    expect(again.created).toBe(false);
    await expect(provisionCluster({ ...withoutIdentity, capsuleName: name, dataKeyAltNames: [`${name}-c`] })).rejects.toThrow(new RegExp(`creating data key\\(s\\) ${name}-c needs the identity`));
  });
});

