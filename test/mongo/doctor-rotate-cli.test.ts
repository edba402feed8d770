/**
 * `doctor` and `rotate-cmk` through the CLI, with identities in the real OS keychain under a test service:
 * signatures and the CMK-vs-key-vault proof in doctor, a stuck rotation abandoned, unambiguous flags.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Binary, type MongoClient } from 'mongodb';
import { capsuleToDocument, decodePublicIdentity, generateCmk, wrapKey } from '../../src/crypto/index.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { CapsuleStore, provisionCluster, rotateCmk, sha256Hex } from '../../src/mongo/index.ts';
import { runCli, serverKeychainSkipReason } from '../support/cli.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server, uniqueDbName } from './support/server.ts';

const SERVICE = `mongo-capsule-test-doctor-${randomBytes(6).toString('hex')}`;
const reason = await serverKeychainSkipReason(server, SERVICE, 'doctor/rotate-cmk CLI tests need', { csfle: true });

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, MONGODB_URI: server.uri, ...env });

class SimulatedCrash extends Error {}

describeIf(reason === '', reason)(`doctor and rotate-cmk (${server.description})`, () => {
  const db = uniqueDbName('doctor');
  const capsules = `${db}.capsules`;
  const keyVault = `${db}.__keyVault`;
  const owner = `own-${randomBytes(4).toString('hex')}`;
  const other = `oth-${randomBytes(4).toString('hex')}`;
  const ns = ['--capsules', capsules, '--key-vault', keyVault];
  let dir: string;
  let plain: MongoClient;
  let km: KeyManager;
  const pubFile = (n: string) => join(dir, `${n}.pub.json`);
  const unwrap = (c: Uint8Array) => km.unwrap(c, owner);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-doctor-'));
    plain = await connectTestClient();
    expect((await run(['init', '--name', owner, '--pub-out', pubFile(owner)])).code).toBe(0);
    expect((await run(['init', '--name', other, '--pub-out', pubFile(other)])).code).toBe(0);
    km = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }) });
  });
  afterAll(async () => {
    km?.clearCache();
    for (const n of [owner, other]) await run(['keys', 'delete', '--name', n, '--yes']);
    await plain?.db(db).dropDatabase();
    await plain?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function provision(name: string): Promise<void> {
    const secret = await km.getSecretIdentity(owner);
    await provisionCluster({ uri: server.uri, capsuleName: name, recipient: secret, signer: secret, unwrap, dataKeyAltNames: ['k'], capsuleNamespace: capsules, keyVaultNamespace: keyVault });
  }

  /** Stores `bytes` as capsule `name`'s live version by hand (what a restore or a manual edit does). */
  async function overwrite(name: string, bytes: Uint8Array): Promise<void> {
    const d = capsuleToDocument(bytes);
    await plain.db(db).collection('capsules').updateOne({ name }, { $set: { ...d, bytes: new Binary(d.bytes), sha256: sha256Hex(d.bytes) } });
  }

  it('doctor: a healthy signed capsule whose CMK opens its data key', async () => {
    await provision('good');
    const r = await run(['doctor', '--capsule', 'good', '--identity', owner, ...ns]);
    expect(r.stdout).toMatch(/^ok    signature +signed by own-/m);
    expect(r.stdout).toMatch(/^ok    cmk +the CMK of capsule good decrypts its 1 data key\(s\)/m);
    expect(r.code).toBe(0);
  });

  it('doctor: an unsigned capsule, or one signed by an untrusted key, is a FAIL; --trust accepts a signer', async () => {
    expect((await run(['seed', '--pub', pubFile(owner), '--capsule', 'unsigned', '--capsules', capsules])).code).toBe(0);
    const u = await run(['doctor', '--capsule', 'unsigned', '--identity', owner, ...ns]);
    expect(u.stdout).toMatch(/^FAIL  signature +capsule unsigned is UNSIGNED/m);
    expect(u.code).toBe(1);

    const cmk = generateCmk();
    const foreign = wrapKey(cmk, decodePublicIdentity(readFileSync(pubFile(owner))), { name: 'foreign', signer: await km.getSecretIdentity(other) });
    cmk.fill(0);
    await new CapsuleStore(plain, { namespace: capsules }).seed(foreign);
    const f = await run(['doctor', '--capsule', 'foreign', '--identity', owner, ...ns]);
    expect(f.stdout).toMatch(/^FAIL  signature +capsule foreign is signed by [0-9a-f]+, which is neither/m);
    expect(f.code).toBe(1);
    const t = await run(['doctor', '--capsule', 'foreign', '--identity', owner, '--trust', pubFile(other), ...ns]);
    expect(t.stdout).toMatch(/^ok    signature +signed by the trusted signer in /m);
    expect(t.code).toBe(0);
  });

  it('a capsule whose CMK does not open the key vault: doctor FAILs, rotate-cmk refuses before writing', async () => {
    await provision('restored');
    const cmk = generateCmk();
    const secret = await km.getSecretIdentity(owner);
    await overwrite('restored', wrapKey(cmk, secret, { name: 'restored', signer: secret }));
    cmk.fill(0);
    const d = await run(['doctor', '--capsule', 'restored', '--identity', owner, ...ns]);
    expect(d.stdout).toMatch(/^FAIL  cmk +the CMK of capsule restored does not decrypt data key [0-9a-f-]+ .*another CMK than the one these data keys were made with/m);
    expect(d.code).toBe(1);

    const before = await plain.db(db).collection('capsules').findOne({ name: 'restored' });
    const r = await run(['rotate-cmk', '--capsule', 'restored', '--identity', owner, '--client-wait-ms', '0', ...ns]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: the CMK of capsule restored does not decrypt data key/m);
    expect(r.stderr).toMatch(/^hint: the capsule holds another CMK/m);
    expect(r.stderr).not.toMatch(/HMAC/);
    expect(await plain.db(db).collection('capsules').findOne({ name: 'restored' })).toEqual(before);
  });

  it('a pending rotation is a WARN naming both ways out; rotate-cmk --abandon undoes it', async () => {
    await provision('pending');
    const secret = await km.getSecretIdentity(owner);
    await expect(
      rotateCmk({ uri: server.uri, capsuleName: 'pending', recipient: secret, signer: secret, unwrap, capsuleNamespace: capsules, keyVaultNamespace: keyVault, clientRefreshWaitMS: 0, afterStep: (s) => { if (s === 'rewrapped') throw new SimulatedCrash('stop'); } }),
    ).rejects.toBeInstanceOf(SimulatedCrash);
    const d = await run(['doctor', '--capsule', 'pending', '--identity', owner, ...ns]);
    expect(d.stdout).toMatch(/^warn  capsule +pending: .*CMK rotation [0-9a-f]+ pending since .*`mongo-capsule rotate-cmk --capsule pending`.*`mongo-capsule rotate-cmk --abandon --capsule pending`/m);
    expect(d.stdout).toMatch(/^ok    cmk +the CMK of capsule pending decrypts its 1 data key\(s\)/m);
    expect(d.code).toBe(0);

    // A KEM-key rotation meanwhile says what blocks it and how to finish, instead of retrying until it gives up.
    const activeBefore = (await km.status(owner)).slots.active;
    const k = await run(['keys', 'rotate', '--name', owner, '--cluster', '--collection', capsules, '--pub-out', join(dir, 'k.pub.json'), '--replace']);
    expect(k.code).toBe(1);
    expect(k.stderr).toMatch(/^error: a CMK rotation is pending on capsule\(s\) pending in /m);
    expect(k.stderr).toMatch(new RegExp(`^hint: finish it first with \`mongo-capsule rotate-cmk --capsule pending --capsules ${capsules}\``, 'm'));
    expect(k.stderr).not.toMatch(/kept changing/);
    expect(await km.status(owner)).toMatchObject({ rotationPending: false, slots: { active: activeBefore } });

    const a = await run(['rotate-cmk', '--abandon', '--capsule', 'pending', '--identity', owner, ...ns]);
    expect(a.stderr).not.toMatch(/^error/m);
    expect(a.stdout).toMatch(/^capsule pending: CMK rotation [0-9a-f]+ abandoned\ndata keys moved back 1 /m);
    expect(a.code).toBe(0);
    const doc = await plain.db(db).collection('capsules').findOne({ name: 'pending' });
    expect(doc?.pendingRotation).toBeUndefined();
    expect((await run(['doctor', '--capsule', 'pending', '--identity', owner, ...ns])).stdout).toMatch(/^ok    capsule +pending: .*generation 1$/m);
  });

  it('--capsule and --identity mean the same in seed and rotate-cmk; --name keeps working; a contradiction is a usage error', async () => {
    const bad = await run(['rotate-cmk', '--name', owner, '--identity', other, '--capsule', 'good', ...ns]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--identity .* and --name .* name different things/);
    const byName = await run(['rotate-cmk', '--name', owner, '--capsule', 'good', '--client-wait-ms', '0', ...ns]);
    expect(byName.stdout).toMatch(/^capsule good: CMK rotated/m);
    const byIdentity = await run(['rotate-cmk', '--identity', owner, '--capsule', 'good', '--client-wait-ms', '0', ...ns]);
    expect(byIdentity.stdout).toMatch(/^capsule good: CMK rotated/m);
    const s = await run(['seed', '--pub', pubFile(owner), '--capsule', 'flags', '--identity', owner, '--capsules', capsules, '--json']);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ capsule: 'flags', created: true });
    expect((await plain.db(db).collection('capsules').findOne({ name: 'flags' }))?.signerKid).toBe((await km.getPublicIdentity(owner)).signer.kid);
    expect((await run(['seed', '--pub', pubFile(owner), '--capsule', 'x', '--name', 'y', '--capsules', capsules])).code).toBe(1);
  });

  it('seed --key-vault creates the key vault index there; doctor says how when it is missing', async () => {
    const kv = `${db}.otherVault`;
    const missing = await run(['doctor', '--capsule', 'good', '--identity', owner, '--capsules', capsules, '--key-vault', kv]);
    expect(missing.stdout).toMatch(new RegExp(`^warn  key vault +${kv} has no unique index on keyAltNames: \`seed\` alone does not create it; \`mongo-capsule seed --key-vault ${kv}\``, 'm'));
    expect(missing.stdout).not.toMatch(/created by provisioning/);
    const s = await run(['seed', '--pub', pubFile(owner), '--capsule', 'good', '--capsules', capsules, '--key-vault', kv]);
    expect(s.code).toBe(0);
    expect(s.stderr).toMatch(new RegExp(`key vault ${kv}: unique (sparse )?index on keyAltNames ready`));
    expect((await plain.db(db).collection('otherVault').indexes()).some((i) => i.unique === true && i.key.keyAltNames === 1)).toBe(true);
    expect((await run(['doctor', '--capsule', 'good', '--identity', owner, '--capsules', capsules, '--key-vault', kv])).stdout).toMatch(new RegExp(`^ok    key vault +${kv} has a unique index`, 'm'));
  });
});
