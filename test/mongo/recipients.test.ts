/**
 * Several recipients per capsule, against the real test server: every recipient opens the same CMK, a grant adds
 * one, a revocation rotates the CMK past one, rotations re-seal for all of them (resumably), and entries written
 * by someone without the CMK (or left from an older generation) never get a new CMK.
 */
import { describe, expect, it, vi } from 'vitest';
import { Binary, ClientEncryption, type Document } from 'mongodb';
import { encodePublicIdentity, generateCmk, parseCapsule, recipientTag, unwrapKey, wrapKey } from '../../src/crypto/index.ts';
import { CapsuleAuthError, CapsuleConflictError, InvalidArgumentError, RecipientInvalidError, RecipientNotFoundError } from '../../src/errors.ts';
import { KeyManager, MemoryKeychain } from '../../src/keys/index.ts';
import { abandonCmkRotation, capsuleKeys, CapsuleStore, type EncryptedClient, grantRecipient, openEncryptedClient, provisionCluster, rotateCmk, sha256Hex } from '../../src/mongo/index.ts';
import { describeWithCsfle, server } from './support/server.ts';
import { ownerOptions, testDatabase } from './support/fixture.ts';
import { testIdentity, type TestIdentity } from './support/identity.ts';

class SimulatedCrash extends Error {}

describeWithCsfle(`several recipients per capsule (${server.description})`, () => {
  const t = testDatabase('recipients');
  const { db, capsuleNamespace, keyVaultNamespace } = t;
  const alice = testIdentity('alice');
  const bob = testIdentity('bob');
  const carol = testIdentity('carol');
  const mallory = testIdentity('mallory');
  const team = [alice, bob, carol];
  /** A team member's unwrap: trusts the signers of the whole team, as team members configure it. */
  const opener = (id: TestIdentity) => async (c: Uint8Array) => unwrapKey(c, id.secret, { signers: team.map((t) => t.pub) });
  const ns = { capsuleNamespace, keyVaultNamespace };
  const common = { uri: server.uri, ...ns, clientRefreshWaitMS: 0 };

  const capsules = () => t.plain.db(db).collection('capsules');

  async function seedFor(name: string, recipients: TestIdentity[], signer = recipients[0]!): Promise<void> {
    await provisionCluster({
      uri: server.uri,
      ...ns,
      capsuleName: name,
      recipient: recipients[0]!.pub,
      additionalRecipients: recipients.slice(1).map((r) => r.pub),
      signer: signer.secret,
      unwrap: opener(recipients[0]!),
      dataKeyAltNames: ['ssn'],
    });
  }

  async function write(name: string, id: TestIdentity, values: string[]): Promise<void> {
    const enc = await openEncryptedClient({ uri: server.uri, ...ns, capsuleName: name, unwrap: opener(id), watermarks: false });
    try {
      for (const v of values) await enc.client.db(db).collection('data').insertOne({ capsule: name, v: await enc.encryptRandom(v, 'ssn') });
    } finally {
      await enc.close();
    }
  }

  async function read(name: string, id: TestIdentity): Promise<string[]> {
    const enc = await openEncryptedClient({ uri: server.uri, ...ns, capsuleName: name, unwrap: opener(id), watermarks: false });
    try {
      return (await enc.client.db(db).collection('data').find({ capsule: name }).toArray()).map((d) => d.v as string).sort();
    } finally {
      await enc.close();
    }
  }

  async function snapshot(name: string): Promise<{ capsule: Document | null; keys: number; history: number }> {
    return {
      capsule: await capsules().findOne({ name }, { projection: { _id: 0 } }),
      keys: await t.plain.db(db).collection('__keyVault').countDocuments({}),
      history: await t.plain.db(db).collection('capsules.history').countDocuments({ name }),
    };
  }

  it('two identities sealed at seeding read and write the same documents, each with its own key', async () => {
    await seedFor('pair', [alice, bob]);
    await write('pair', alice, ['a1']);
    await write('pair', bob, ['b1']);
    expect(await read('pair', alice)).toEqual(['a1', 'b1']);
    expect(await read('pair', bob)).toEqual(['a1', 'b1']);
    // One CMK: both recipients' capsules open to the same bytes.
    const record = await new CapsuleStore(t.plain, { namespace: capsuleNamespace }).load('pair');
    expect(record.recipients.map((r) => r.header.kid)).toEqual([alice.pub.kid, bob.pub.kid]);
    const [ka, kb] = await Promise.all([capsuleKeys(record, opener(alice)), capsuleKeys(record, opener(bob))]);
    try {
      expect(Buffer.from(ka.cmk).equals(Buffer.from(kb.cmk))).toBe(true);
      expect([ka.kid, kb.kid]).toEqual([alice.pub.kid, bob.pub.kid]);
    } finally {
      ka.wipe();
      kb.wipe();
    }
    // Someone who is no recipient opens nothing, and is told which keys it is sealed for.
    await expect(capsuleKeys(record, opener(carol))).rejects.toThrow(new RegExp(`sealed for keys ${alice.pub.kid}, ${bob.pub.kid}`));
  });

  it('20 concurrent seeders of a two-recipient capsule end with one CMK that both open', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        provisionCluster({ uri: server.uri, ...ns, capsuleName: 'race', recipient: alice.pub, additionalRecipients: [bob.pub], signer: alice.secret, unwrap: opener(alice), dataKeyAltNames: ['ssn'] }),
      ),
    );
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.dataKeyIds.ssn)).size).toBe(1);
    expect(await capsules().countDocuments({ name: 'race' })).toBe(1);
    await write('race', alice, ['x']);
    expect(await read('race', bob)).toEqual(['x']);
  });

  it('grant: a recipient adds another identity (idempotent); a non-recipient cannot grant; nothing changes on refusal', async () => {
    await seedFor('granted', [alice]);
    await write('granted', alice, ['before-grant']);
    await expect(read('granted', bob)).rejects.toThrow(CapsuleAuthError);
    const before = await snapshot('granted');
    await expect(grantRecipient({ uri: server.uri, ...ns, capsuleName: 'granted', recipient: mallory.pub, unwrap: opener(mallory), signer: mallory.secret })).rejects.toThrow(CapsuleAuthError);
    expect(await snapshot('granted')).toEqual(before);

    const g = await grantRecipient({ uri: server.uri, ...ns, capsuleName: 'granted', recipient: bob.pub, unwrap: opener(alice), signer: alice.secret, recipientUnwrap: opener(bob) });
    expect(g).toMatchObject({ added: true, recipientKids: [alice.pub.kid, bob.pub.kid] });
    expect(await read('granted', bob)).toEqual(['before-grant']);
    const again = await grantRecipient({ uri: server.uri, ...ns, capsuleName: 'granted', recipient: bob.pub, unwrap: opener(alice), signer: alice.secret });
    expect(again.added).toBe(false);
    // Bob, granted, grants Carol in turn.
    await grantRecipient({ uri: server.uri, ...ns, capsuleName: 'granted', recipient: carol.pub, unwrap: opener(bob), signer: bob.secret });
    expect(await read('granted', carol)).toEqual(['before-grant']);
  });

  it('rotate-cmk re-seals the new CMK for every recipient, and survives a crash at each step', async () => {
    await seedFor('rot', [alice, bob, carol]);
    await write('rot', carol, ['c1']);
    for (const step of ['prepared', 'rewrapped', 'swapped'] as const) {
      const gen = (await capsules().findOne({ name: 'rot' }))!.generation as number;
      await expect(
        rotateCmk({ ...common, capsuleName: 'rot', signer: bob.secret, unwrap: opener(bob), afterStep: (s) => {
          if (s === step) throw new SimulatedCrash(s);
        } }),
      ).rejects.toThrow(SimulatedCrash);
      // Mid-rotation, every recipient still reads everything.
      for (const id of team) expect(await read('rot', id)).toEqual(['c1']);
      const r = await rotateCmk({ ...common, capsuleName: 'rot', signer: carol.secret, unwrap: opener(carol) });
      // After a crash past the swap the rotation is complete and the rerun is a rotation of its own.
      expect(r).toMatchObject({ resumed: step !== 'swapped', generation: step === 'swapped' ? gen + 2 : gen + 1 });
      expect(r.recipientKids).toEqual([alice.pub.kid, bob.pub.kid, carol.pub.kid]);
    }
    await write('rot', alice, ['a1']);
    for (const id of team) expect(await read('rot', id)).toEqual(['a1', 'c1']);
  });

  it('revoke: the CMK is rotated past the revoked key, everyone else reads everything; resumable after a crash', async () => {
    await seedFor('rev', [alice, bob, carol]);
    await write('rev', bob, ['by-bob']);
    const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
    const old = await store.load('rev');
    const bobsOldEntry = old.recipients.find((e) => e.header.kid === bob.pub.kid)!;

    // Refusals write nothing: revoking oneself, or a key that is no recipient.
    const before = await snapshot('rev');
    await expect(rotateCmk({ ...common, capsuleName: 'rev', signer: alice.secret, unwrap: opener(alice), revokeKid: alice.pub.kid })).rejects.toThrow(InvalidArgumentError);
    await expect(rotateCmk({ ...common, capsuleName: 'rev', signer: alice.secret, unwrap: opener(alice), revokeKid: mallory.pub.kid })).rejects.toThrow(RecipientNotFoundError);
    expect(await snapshot('rev')).toEqual(before);

    // Crash right after the revocation was recorded: Bob is off the live list already; a rerun finishes.
    await expect(
      rotateCmk({ ...common, capsuleName: 'rev', signer: alice.secret, unwrap: opener(alice), revokeKid: bob.pub.kid, afterStep: (s) => {
        if (s === 'prepared') throw new SimulatedCrash(s);
      } }),
    ).rejects.toThrow(SimulatedCrash);
    const mid = await store.load('rev');
    expect(mid.recipients.map((e) => e.header.kid)).toEqual([alice.pub.kid, carol.pub.kid]);
    expect(mid.pendingRotation?.revokedKid).toBe(bob.pub.kid);
    expect(mid.pendingRotation!.recipients.map((r) => parseCapsule(r.bytes).header.kid)).toEqual([alice.pub.kid, carol.pub.kid]);
    const r = await rotateCmk({ ...common, capsuleName: 'rev', signer: alice.secret, unwrap: opener(alice), revokeKid: bob.pub.kid });
    expect(r).toMatchObject({ resumed: true, revokedKid: bob.pub.kid, recipientKids: [alice.pub.kid, carol.pub.kid], generation: old.generation + 1 });

    await expect(read('rev', bob)).rejects.toThrow(CapsuleAuthError);
    await write('rev', carol, ['after-revoke']);
    expect(await read('rev', alice)).toEqual(['after-revoke', 'by-bob']);
    expect(await read('rev', carol)).toEqual(['after-revoke', 'by-bob']);

    // Bob (who can write the database) puts his old entry back: he opens only the retired CMK, and the next
    // rotation refuses to seal for him, writing nothing.
    await capsules().updateOne({ name: 'rev' }, { $push: { recipients: { kid: bob.pub.kid, bytes: new Binary(bobsOldEntry.bytes), sha256: bobsOldEntry.sha256, publicIdentity: bobsOldEntry.publicIdentity, tag: new Binary(bobsOldEntry.tag!) } } } as never);
    const planted = await snapshot('rev');
    await expect(rotateCmk({ ...common, capsuleName: 'rev', signer: alice.secret, unwrap: opener(alice) })).rejects.toThrow(RecipientInvalidError);
    expect(await snapshot('rev')).toEqual(planted);
    const k = await capsuleKeys(await store.load('rev'), opener(bob));
    try {
      const live = await capsuleKeys(await store.load('rev'), opener(alice));
      expect(Buffer.from(k.cmk).equals(Buffer.from(live.cmk))).toBe(false);
      live.wipe();
    } finally {
      k.wipe();
    }
  });

  it('revoke: writes after it use fresh data keys, so the revoked key, with the old CMK and a copy of the key vault, decrypts none of them', async () => {
    await seedFor('epoch', [alice, bob, carol]);
    const data = t.plain.db(db).collection('data');
    const open = (id: TestIdentity) => openEncryptedClient({ uri: server.uri, ...ns, capsuleName: 'epoch', unwrap: opener(id), watermarks: false, refreshIntervalMS: 0 });
    const insertWith = async (enc: EncryptedClient, n: string) => {
      await data.insertOne({ capsule: 'epoch', n, v: await enc.encryptDeterministic('same value', 'ssn'), r: await enc.encryptRandom(`random ${n}`, 'ssn') });
      return enc.capsule.dataKeyEpoch;
    };
    const insert = async (id: TestIdentity, n: string) => {
      const enc = await open(id);
      try {
        return await insertWith(enc, n);
      } finally {
        await enc.close();
      }
    };
    expect(await insert(bob, 'before')).toBe(0);
    // A client that stays open across the revocation, holding the data key of epoch 0 already.
    const carolsLive = await open(carol);
    await carolsLive.dataKey('ssn');
    // What a member can keep: the CMK it opened, and a copy of the key vault it could read.
    const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
    const bobsKeys = await capsuleKeys(await store.load('epoch'), opener(bob));
    await t.plain.db(db).collection('bobsVault').insertMany(await t.plain.db(db).collection('__keyVault').find({}).toArray());
    try {
      // Revoked, with a crash right after the revocation was recorded: writes made meanwhile are closed to Bob too.
      await expect(
        rotateCmk({ ...common, capsuleName: 'epoch', signer: alice.secret, unwrap: opener(alice), revokeKid: bob.pub.kid, afterStep: (s) => {
          if (s === 'prepared') throw new SimulatedCrash(s);
        } }),
      ).rejects.toThrow(SimulatedCrash);
      expect(await insert(carol, 'during')).toBe(1);
      const r = await rotateCmk({ ...common, capsuleName: 'epoch', signer: alice.secret, unwrap: opener(alice), revokeKid: bob.pub.kid });
      expect(r.dataKeyEpoch).toBe(1);
      expect(await insert(carol, 'after')).toBe(1);
      expect(await carolsLive.refresh()).toBe(true);
      expect(await insertWith(carolsLive, 'live')).toBe(1);

      const stored = async (n: string) => (await data.findOne({ capsule: 'epoch', n }))!;
      for (const vault of [`${db}.bobsVault`, keyVaultNamespace]) {
        const bobs = new ClientEncryption(t.plain, { keyVaultNamespace: vault, kmsProviders: bobsKeys.kmsProviders });
        if (vault !== keyVaultNamespace) {
          // The attack is real: with his copy Bob still decrypts what was written before the revocation.
          expect(await bobs.decrypt((await stored('before')).v)).toBe('same value');
        }
        for (const n of ['during', 'after', 'live']) {
          for (const field of ['v', 'r']) await expect(bobs.decrypt((await stored(n))[field])).rejects.toThrow();
        }
      }

      // Alice and Carol read everything, and find every document by value across the epochs with queryValues.
      for (const id of [alice, carol]) {
        const enc = await openEncryptedClient({ uri: server.uri, ...ns, capsuleName: 'epoch', unwrap: opener(id), watermarks: false });
        try {
          const values = await enc.queryValues('same value', 'ssn');
          expect(values).toHaveLength(2);
          const found = await enc.client.db(db).collection('data').find({ capsule: 'epoch', v: { $in: values } }).sort({ n: 1 }).toArray();
          expect(found.map((d) => [d.n, d.v, d.r])).toEqual([
            ['after', 'same value', 'random after'],
            ['before', 'same value', 'random before'],
            ['during', 'same value', 'random during'],
            ['live', 'same value', 'random live'],
          ]);
          // No key of that name in any epoch: nothing to match, and no key is made by asking.
          const keysBefore = await t.plain.db(db).collection('__keyVault').countDocuments({});
          expect(await enc.queryValues('same value', 'never-made')).toEqual([]);
          expect(await t.plain.db(db).collection('__keyVault').countDocuments({})).toBe(keysBefore);
          // The current epoch alone finds only what was written since the revocation.
          expect(await enc.client.db(db).collection('data').countDocuments({ capsule: 'epoch', v: await enc.encryptDeterministic('same value', 'ssn') })).toBe(3);
        } finally {
          await enc.close();
        }
      }
      // A rotation that revokes nobody keeps the epoch.
      expect((await rotateCmk({ ...common, capsuleName: 'epoch', signer: alice.secret, unwrap: opener(alice) })).dataKeyEpoch).toBe(1);
    } finally {
      bobsKeys.wipe();
      await carolsLive.close();
    }
  });

  it('a revoked first recipient, still opening the live capsule until the swap, cannot make the new epoch\'s data keys', async () => {
    await seedFor('first', [bob, alice, carol], alice);
    await expect(
      rotateCmk({ ...common, capsuleName: 'first', signer: alice.secret, unwrap: opener(alice), revokeKid: bob.pub.kid, afterStep: (s) => {
        if (s === 'prepared') throw new SimulatedCrash(s);
      } }),
    ).rejects.toThrow(SimulatedCrash);
    const vault = t.plain.db(db).collection('__keyVault');
    const keysBefore = await vault.countDocuments({});
    const bobs = await openEncryptedClient({ uri: server.uri, ...ns, capsuleName: 'first', unwrap: opener(bob), watermarks: false, refreshIntervalMS: 0 });
    try {
      expect(bobs.capsule.dataKeyEpoch).toBe(1);
      await expect(bobs.encryptRandom('x', 'fresh')).rejects.toThrow(CapsuleAuthError);
      await expect(bobs.encryptRandom('x', 'fresh')).rejects.toThrow(/next CMK/);
    } finally {
      await bobs.close();
    }
    expect(await vault.countDocuments({})).toBe(keysBefore);
    await rotateCmk({ ...common, capsuleName: 'first', signer: alice.secret, unwrap: opener(alice), revokeKid: bob.pub.kid });
    await write('first', carol, ['fresh-after']);
    expect(await read('first', alice)).toEqual(['fresh-after']);
  });

  it('abandoning a revocation is refused unless asked by name: it would leave the revoked key holding the live CMK', async () => {
    await seedFor('undo', [alice, bob]);
    await write('undo', bob, ['by-bob']);
    await expect(
      rotateCmk({ ...common, capsuleName: 'undo', signer: alice.secret, unwrap: opener(alice), revokeKid: bob.pub.kid, afterStep: (s) => {
        if (s === 'prepared') throw new SimulatedCrash(s);
      } }),
    ).rejects.toThrow(SimulatedCrash);
    const before = await snapshot('undo');
    // Granting meanwhile is refused too, pointing at the command that finishes the revocation.
    await expect(grantRecipient({ uri: server.uri, ...ns, capsuleName: 'undo', recipient: carol.pub, unwrap: opener(alice), signer: alice.secret })).rejects.toThrow(CapsuleConflictError);
    await expect(grantRecipient({ uri: server.uri, ...ns, capsuleName: 'undo', recipient: carol.pub, unwrap: opener(alice), signer: alice.secret })).rejects.toMatchObject({ hint: expect.stringContaining(`keys revoke --kid ${bob.pub.kid}`) });
    const refused = abandonCmkRotation({ uri: server.uri, ...ns, capsuleName: 'undo', unwrap: opener(alice) });
    await expect(refused).rejects.toThrow(CapsuleConflictError);
    await expect(refused).rejects.toThrow(new RegExp(`revokes ${bob.pub.kid}`));
    expect(await snapshot('undo')).toEqual(before);
    // Asked by name, it is undone: the CMK stays, which Bob holds, so he is back on the list, and can be revoked again.
    const undone = await abandonCmkRotation({ uri: server.uri, ...ns, capsuleName: 'undo', unwrap: opener(alice), undoRevocation: true });
    expect(undone.abandoned).toBe(true);
    const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
    expect((await store.load('undo')).recipients.map((e) => e.header.kid)).toEqual([alice.pub.kid, bob.pub.kid]);
    expect(await read('undo', bob)).toEqual(['by-bob']);
    const again = await rotateCmk({ ...common, capsuleName: 'undo', signer: alice.secret, unwrap: opener(alice), revokeKid: bob.pub.kid });
    expect(again).toMatchObject({ resumed: false, revokedKid: bob.pub.kid, recipientKids: [alice.pub.kid], dataKeyEpoch: 2 });
    await expect(read('undo', bob)).rejects.toThrow(CapsuleAuthError);
    expect(await read('undo', alice)).toEqual(['by-bob']);
  });

  it('a recipient entry planted by a database writer (no CMK) never gets the next CMK: rotation refuses, writing nothing', async () => {
    await seedFor('planted', [alice]);
    // Mallory seals a CMK of her own for herself and tags it with that CMK: a perfectly formed entry.
    const cmk = generateCmk();
    const text = encodePublicIdentity(mallory.pub);
    const bytes = wrapKey(cmk, mallory.pub, { name: 'planted', signer: mallory.secret });
    await capsules().updateOne({ name: 'planted' }, { $push: { recipients: { kid: mallory.pub.kid, bytes: new Binary(bytes), sha256: sha256Hex(bytes), publicIdentity: text, tag: new Binary(recipientTag(cmk, 'planted', text)) } } } as never);
    cmk.fill(0);
    const before = await snapshot('planted');
    await expect(rotateCmk({ ...common, capsuleName: 'planted', signer: alice.secret, unwrap: opener(alice) })).rejects.toThrow(RecipientInvalidError);
    expect(await snapshot('planted')).toEqual(before);
    // Swapping her key into a real recipient's stored public identity fails too (the tag names the exact text).
    await capsules().updateOne({ name: 'planted' }, { $pull: { recipients: { kid: mallory.pub.kid } } } as never);
    await capsules().updateOne({ name: 'planted' }, { $set: { publicIdentity: text } });
    await expect(rotateCmk({ ...common, capsuleName: 'planted', signer: alice.secret, unwrap: opener(alice) })).rejects.toThrow(RecipientInvalidError);
    expect((await capsules().findOne({ name: 'planted' }))?.pendingRotation).toBeUndefined();
    // The entries are Alice's own to read: her client still works throughout.
    await write('planted', alice, ['still']);
  });

  describe('with KeyManagers (the keychain identities applications use)', () => {
    it('a key manager opens its own entry first: no keychain re-reads for the other recipients\' entries', async () => {
      const keychain = new MemoryKeychain();
      const km = new KeyManager({ keychain, trustedSigners: [alice.pub] });
      const erinPub = await km.initialize('erin', 'ml-kem-768');
      await seedFor('erin', [alice, bob, carol]);
      await grantRecipient({ uri: server.uri, ...ns, capsuleName: 'erin', recipient: erinPub, unwrap: opener(alice), signer: alice.secret });
      await write('erin', bob, ['for-erin']);
      const fresh = new KeyManager({ keychain, trustedSigners: [alice.pub] });
      const reads = vi.spyOn(keychain, 'retrieve');
      const enc = await openEncryptedClient({ uri: server.uri, ...ns, capsuleName: 'erin', unwrap: fresh, identity: 'erin', watermarks: false });
      try {
        expect(enc.capsule.generation).toBeGreaterThan(0);
        expect((await enc.client.db(db).collection('data').find({ capsule: 'erin' }).toArray()).map((d) => d.v)).toEqual(['for-erin']);
      } finally {
        await enc.close();
      }
      // erin's entry is the fourth: one read per slot of erin, not a re-read of every slot per entry passed over.
      expect(reads).toHaveBeenCalledTimes(3);
    });

    it('openEncryptedClient({ identity }) opens the entry of that identity; a KEM-key rotation of a granted recipient re-seals its entry only', async () => {
      const keychain = new MemoryKeychain();
      const km = new KeyManager({ keychain, trustedSigners: [alice.pub] });
      const danPub = await km.initialize('dan', 'ml-kem-768');
      await seedFor('dan', [alice]);
      await grantRecipient({ uri: server.uri, ...ns, capsuleName: 'dan', recipient: danPub, unwrap: opener(alice), signer: alice.secret });
      await write('dan', alice, ['for-dan']);
      const open = async () => {
        const enc = await openEncryptedClient({ uri: server.uri, ...ns, capsuleName: 'dan', unwrap: km, identity: 'dan', watermarks: false });
        try {
          return { kid: enc.capsule.kid, values: (await enc.client.db(db).collection('data').find({ capsule: 'dan' }).toArray()).map((d) => d.v) };
        } finally {
          await enc.close();
        }
      };
      expect((await open()).values).toEqual(['for-dan']);
      // Without the identity option the key manager's default identity is used, which is no recipient.
      await expect(openEncryptedClient({ uri: server.uri, ...ns, capsuleName: 'dan', unwrap: km, watermarks: false })).rejects.toThrow(/is not in the keychain/);

      const store = new CapsuleStore(t.plain, { namespace: capsuleNamespace });
      const aliceEntry = (await store.load('dan')).recipients[0]!;
      const report = await km.rotate('dan', [store.recipientView()]);
      expect(report).toMatchObject({ retired: true, rewrapped: [`${store.description}: dan`] });
      const after = await store.load('dan');
      expect(after.recipients[0]!.sha256).toBe(aliceEntry.sha256); // Alice's entry untouched
      expect(after.recipients[1]!.header.kid).toBe(report.newKid);
      expect((await open()).values).toEqual(['for-dan']);
      // The re-sealed entry is bound to the CMK: a CMK rotation by Alice seals for Dan's new key.
      const r = await rotateCmk({ ...common, capsuleName: 'dan', signer: alice.secret, unwrap: opener(alice) });
      expect(r.recipientKids).toEqual([alice.pub.kid, report.newKid]);
      expect((await open()).values).toEqual(['for-dan']);
      km.clearCache();
    });
  });
});
