/**
 * Issue 10 §1: `keys rotate` must never retire a key that a capsule still needs. A capsule seeded into the cluster,
 * then rotations that name a missing directory, a file, an unreachable cluster or only an empty directory: each
 * leaves the cluster capsule opening. Real OS keychain (test service), real test server.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MongoClient } from 'mongodb';
import { decodePublicIdentity } from '../../src/crypto/index.ts';
import { CapsuleLocations } from '../../src/keys/capsule-locations.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { CapsuleStore, openEncryptedClient, provisionCluster } from '../../src/mongo/index.ts';
import { runCli } from '../support/cli.ts';
import { osKeychainUnavailableReason } from '../support/os-keychain.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, describeWithCsfle, server, uniqueDbName } from './support/server.ts';

const SERVICE = `mongo-capsule-test-rotloc-${randomBytes(6).toString('hex')}`;
const keychainReason = await osKeychainUnavailableReason(SERVICE);
const reason = server.kind === 'none' ? server.reason : keychainReason === undefined ? '' : `keys rotate needs the OS keychain: ${keychainReason}`;

describeIf(reason === '', reason)(`keys rotate keeps the old key without evidence (${server.description})`, () => {
  const db = uniqueDbName('rotloc');
  const collection = `${db}.capsules`;
  let dir: string;
  let stateDir: string;
  let plain: MongoClient;
  let manager: KeyManager;

  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, MONGO_CAPSULE_STATE_DIR: stateDir, ...env });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-rotloc-'));
    stateDir = join(dir, 'state');
    plain = await connectTestClient();
    manager = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }), cacheTtlMs: 0 });
  });
  afterAll(async () => {
    for (const n of ['default', 'spare']) await run(['keys', 'delete', '--name', n, '--yes']);
    await plain?.db(db).dropDatabase();
    await plain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function expectUnchanged(name: string, kid: string) {
    const s = await manager.status(name);
    expect(s.kid).toBe(kid);
    expect(s.rotationPending).toBe(false);
    expect(s.slots).toEqual({ active: kid, next: null, prev: null });
  }

  it('the repro: a typo, a file, an unreachable cluster and an empty directory all leave the cluster capsule opening', async () => {
    const pub = join(dir, 'default.pub.json');
    expect((await run(['init', '--name', 'default', '--pub-out', pub])).code).toBe(0);
    const oldKid = decodePublicIdentity(readFileSync(pub)).kid;
    const seeded = await run(['seed', '--pub', pub, '--capsule', 'loss2', '--identity', 'default', '--capsules', collection], { MONGODB_URI: server.uri });
    expect(seeded.code).toBe(0);
    // Seeding recorded where the capsule lives, without credentials; the record is private to the user.
    const recorded = await new CapsuleLocations({ service: SERVICE, directory: stateDir }).list('default');
    expect(recorded).toEqual([expect.objectContaining({ kind: 'cluster', namespace: collection })]);
    expect(statSync(join(stateDir, 'capsule-locations.json')).mode & 0o777).toBe(0o600);
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    const store = new CapsuleStore(plain, { namespace: collection });
    const cmkBefore = await manager.unwrap((await store.load('loss2')).bytes, 'default');

    const typo = await run(['keys', 'rotate', '--capsules', join(dir, 'capsulez'), '--pub-out', pub, '--replace']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/capsulez: no such directory/);
    await expectUnchanged('default', oldKid);

    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    const notDir = await run(['keys', 'rotate', '--capsules', file, '--pub-out', pub, '--replace']);
    expect(notDir.code).toBe(1);
    expect(notDir.stderr).toMatch(/not-a-dir is not a directory/);
    await expectUnchanged('default', oldKid);

    const unreachable = await run(['keys', 'rotate', '--cluster', '--collection', collection, '--pub-out', pub, '--replace'], { MONGODB_URI: 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500' });
    expect(unreachable.code).toBe(1);
    await expectUnchanged('default', oldKid);
    expect(decodePublicIdentity(readFileSync(pub)).kid).toBe(oldKid);

    // Following the old hint with an empty directory: nothing re-sealed, so nothing proves the old key unused.
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    const refused = await run(['keys', 'rotate', '--name', 'default', '--capsules', empty, '--pub-out', pub, '--replace']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/old key of default was kept/);
    expect(refused.stderr).toMatch(new RegExp(`not searched: cluster .*collection ${collection}`));
    expect(refused.stderr).toMatch(new RegExp(`MONGODB_URI=.* mongo-capsule keys rotate --name default --cluster --collection ${collection} --capsules ${empty}`));
    expect(refused.stderr).not.toMatch(/retired/);
    const pending = await manager.status('default');
    expect(pending.slots.prev).toBe(oldKid);
    const cmkKept = await manager.unwrap((await store.load('loss2')).bytes, 'default');
    expect(Buffer.from(cmkKept).equals(Buffer.from(cmkBefore))).toBe(true);
    cmkKept.fill(0);

    // The printed command, with the cluster: the capsule is re-sealed and only then the old key retired.
    const done = await run(['keys', 'rotate', '--name', 'default', '--cluster', '--collection', collection, '--capsules', empty, '--pub-out', pub, '--replace'], { MONGODB_URI: server.uri });
    expect(done.stderr).toBe('');
    expect(done.code).toBe(0);
    expect(done.stdout).toMatch(/retired/);
    const newKid = decodePublicIdentity(readFileSync(pub)).kid;
    expect(newKid).not.toBe(oldKid);
    expect(await manager.status('default')).toMatchObject({ kid: newKid, rotationPending: false });
    const record = await store.load('loss2');
    expect(record.header.kid).toBe(newKid);
    const cmkAfter = await manager.unwrap(record.bytes, 'default');
    expect(Buffer.from(cmkAfter).equals(Buffer.from(cmkBefore))).toBe(true);
    cmkAfter.fill(0);
    cmkBefore.fill(0);
  });

  it('a later rotation retires once every recorded location is searched, and not before', async () => {
    const pub = join(dir, 'default.pub.json');
    const caps = join(dir, 'caps-b');
    mkdirSync(caps);
    // The directory is now recorded as well (the last rotation searched it): naming only the cluster is not enough.
    const onlyCluster = await run(['keys', 'rotate', '--name', 'default', '--cluster', '--collection', collection, '--pub-out', pub, '--replace'], { MONGODB_URI: server.uri });
    expect(onlyCluster.code).toBe(1);
    expect(onlyCluster.stderr).toMatch(/not searched: capsule directory .*empty/);
    const all = await run(['keys', 'rotate', '--name', 'default', '--cluster', '--collection', collection, '--capsules', join(dir, 'empty'), '--pub-out', pub, '--replace'], { MONGODB_URI: server.uri });
    expect(all.code).toBe(0);
    expect((await manager.status('default')).rotationPending).toBe(false);
  });

  it('--retire-unused retires without evidence, after saying what was searched', async () => {
    const pub = join(dir, 'spare.pub.json');
    expect((await run(['init', '--name', 'spare', '--pub-out', pub])).code).toBe(0);
    const empty = join(dir, 'spare-empty');
    mkdirSync(empty);
    const refused = await run(['keys', 'rotate', '--name', 'spare', '--capsules', empty, '--pub-out', pub, '--replace']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/no capsule sealed for this identity was found/);
    const forced = await run(['keys', 'rotate', '--name', 'spare', '--capsules', empty, '--pub-out', pub, '--replace', '--retire-unused']);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(new RegExp(`searched: capsule directory ${empty}`));
    expect(forced.stdout).toMatch(/retired by --retire-unused/);
    expect((await manager.status('spare')).rotationPending).toBe(false);
  });
});

describeWithCsfle(`keys rotate: data encrypted before a refused rotation still decrypts (${server.description})`, () => {
  const service = `mongo-capsule-test-rotloc-enc-${randomBytes(6).toString('hex')}`;
  const db = uniqueDbName('rotlocenc');
  const capsuleNamespace = `${db}.capsules`;
  const keyVaultNamespace = `${db}.__keyVault`;
  let dir: string;
  let plain: MongoClient;
  let km: KeyManager;

  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: service, MONGO_CAPSULE_STATE_DIR: join(dir, 'state'), ...env });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-rotloc-enc-'));
    plain = await connectTestClient();
    // The default cache: provisioning borrows the signer identity from it while it signs.
    km = new KeyManager({ keychain: new OsKeychain({ service }) });
  });
  afterAll(async () => {
    km?.clearCache();
    await run(['keys', 'delete', '--name', 'default', '--yes']);
    await plain?.db(db).dropDatabase();
    await plain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describeIf(keychainReason === undefined, `keys rotate needs the OS keychain: ${keychainReason ?? ''}`)('with the OS keychain', () => {
    it('refuses to retire with an empty directory, and the document decrypts before and after the full rotation', async () => {
      const pub = join(dir, 'default.pub.json');
      expect((await run(['init', '--name', 'default', '--pub-out', pub])).code).toBe(0);
      const unwrap = (c: Uint8Array) => km.unwrap(c, 'default');
      const recipient = decodePublicIdentity(readFileSync(pub));
      await provisionCluster({ uri: server.uri, capsuleName: 'loss2', recipient, signer: await km.getSecretIdentity('default'), unwrap, dataKeyAltNames: ['k'], capsuleNamespace, keyVaultNamespace });
      km.clearCache();
      const open = () => openEncryptedClient({ uri: server.uri, capsuleName: 'loss2', unwrap, capsuleNamespace, keyVaultNamespace });
      const enc = await open();
      try {
        await enc.client.db(db).collection('d').insertOne({ v: await enc.encryptDeterministic('kept', 'k') });
      } finally {
        await enc.close();
      }
      const empty = join(dir, 'empty');
      mkdirSync(empty);
      expect((await run(['keys', 'rotate', '--capsules', join(dir, 'capsulez'), '--pub-out', pub, '--replace'])).code).toBe(1);
      expect((await run(['keys', 'rotate', '--capsules', empty, '--pub-out', pub, '--replace'])).code).toBe(1);
      const decrypted = async () => {
        const again = await open();
        try {
          return (await again.client.db(db).collection('d').findOne({}))?.v;
        } finally {
          await again.close();
        }
      };
      expect(await decrypted()).toBe('kept');
      const done = await run(['keys', 'rotate', '--cluster', '--collection', capsuleNamespace, '--capsules', empty, '--pub-out', pub, '--replace'], { MONGODB_URI: server.uri });
      expect(done.stderr).toBe('');
      expect(done.code).toBe(0);
      expect((await km.status('default')).rotationPending).toBe(false);
      expect(await decrypted()).toBe('kept');
    });
  });
});
