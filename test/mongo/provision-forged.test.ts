/**
 * Issue 10 §2, provisioning: someone who can write the capsule collection plants a forged capsule, then the owner
 * provisions again (`npm run up`, external mode, `seed --identity`). An unsigned capsule wrapping a CMK of the
 * attacker's choosing, one signed by a foreign ML-DSA key, and a replay of an older, validly signed generation
 * (after a rotate-cmk) must each be refused with a typed error, and nothing written: no data key, no capsule
 * change, no history entry. Every path: `provisionCluster`, the `provision --json` CLI and `seed`.
 * Real OS keychain (a test service), real test server, CSFLE.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Binary, type Document, type MongoClient } from 'mongodb';
import { capsuleToDocument, decodePublicIdentity, generateCmk, generateIdentity, wrapKey, type PublicIdentity } from '../../src/crypto/index.ts';
import { CapsuleReplayError, SignatureInvalidError, SignerUnknownError } from '../../src/errors.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { isCapsuleProvider, provisionCluster, sha256Hex } from '../../src/mongo/index.ts';
import { runCli, serverKeychainSkipReason } from '../support/cli.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server } from './support/server.ts';

const SERVICE = `mongo-capsule-test-provforge-${randomBytes(6).toString('hex')}`;
const reason = await serverKeychainSkipReason(server, SERVICE, 'forged-capsule provisioning tests need', { csfle: true });

const run = (args: string[], stdin = '') => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, MONGODB_URI: server.uri }, stdin);

describeIf(reason === '', reason)(`provisioning refuses forged capsules (${server.description})`, () => {
  // `provision --json` (what `npm run up` and external mode run) uses the default namespaces, so every capsule
  // here has a name of its own in encryption.capsules, and data keys are counted by the capsule they belong to.
  const tag = randomBytes(4).toString('hex');
  const name = `prov-${tag}`;
  let dir: string;
  let pubFile: string;
  let pubText: string;
  let pub: PublicIdentity;
  let plain: MongoClient;
  let km: KeyManager;

  const capsules = () => plain.db('encryption').collection('capsules');
  const history = () => plain.db('encryption').collection('capsules.history');
  const keyVault = () => plain.db('encryption').collection('__keyVault');

  const provisionRequest = (capsuleName: string) =>
    JSON.stringify({ protocol: 1, uri: server.uri, replicaSet: null, rootUser: null, capsuleName, recipient: pubText, sign: true, dataKeyAltNames: ['k1', 'k2'], timeoutMs: 60_000 });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-provforge-'));
    plain = await connectTestClient();
    km = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }) });
    pubFile = join(dir, `${name}.pub.json`);
    expect((await run(['init', '--name', name, '--pub-out', pubFile])).code).toBe(0);
    pubText = readFileSync(pubFile, 'utf8');
    pub = decodePublicIdentity(pubText);
  });
  afterAll(async () => {
    km?.clearCache();
    await run(['keys', 'delete', '--name', name, '--yes']);
    if (plain) {
      const names = (await capsules().find({ name: { $regex: `-${tag}$` } }).toArray()).map((d) => String(d.name));
      await capsules().deleteMany({ name: { $in: names } });
      await history().deleteMany({ name: { $in: names } });
      const keys = await keyVault().find({}).toArray();
      const ours = keys.filter((k) => names.some((n) => isCapsuleProvider(n, (k.masterKey as { provider?: unknown } | undefined)?.provider)));
      if (ours.length > 0) await keyVault().deleteMany({ _id: { $in: ours.map((k) => k._id) } });
      await plain.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** The owner provisions as `npm run up` does: a signed capsule and its data key k1. */
  async function provisioned(capsuleName: string): Promise<void> {
    const r = await run(['provision', '--json'], JSON.stringify({ ...JSON.parse(provisionRequest(capsuleName)), dataKeyAltNames: ['k1'] }));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ capsuleName, created: true });
  }

  /** Everything provisioning could write for `capsuleName`: the capsule, its history, the data keys under it. */
  async function snapshot(capsuleName: string) {
    const keys = (await keyVault().find({}).toArray()).filter((k) => isCapsuleProvider(capsuleName, (k.masterKey as { provider?: unknown } | undefined)?.provider));
    return {
      capsule: (await capsules().findOne({ name: capsuleName })) as Document,
      history: await history().find({ name: capsuleName }).sort({ _id: 1 }).toArray(),
      dataKeys: keys.map((k) => ({ id: k._id, altNames: k.keyAltNames as unknown, provider: (k.masterKey as { provider?: unknown }).provider })),
      keyVaultSize: await keyVault().countDocuments({}),
    };
  }

  /** The three provisioning paths, each refused with `errorClass` / `message`; nothing written by any of them. */
  async function refusedEverywhere(capsuleName: string, errorClass: new (...a: never[]) => Error, message: RegExp): Promise<void> {
    const before = await snapshot(capsuleName);

    const err = await provisionCluster({ uri: server.uri, capsuleName, recipient: pub, signer: await km.getSecretIdentity(name), unwrap: (c) => km.unwrap(c, name), dataKeyAltNames: ['k1', 'k2'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(errorClass);
    expect((err as Error).message).toMatch(message);
    expect((err as { hint?: string }).hint).toBeTruthy();

    const p = await run(['provision', '--json'], provisionRequest(capsuleName));
    expect(p.code).not.toBe(0);
    expect(p.stderr).toMatch(message);
    expect(p.stderr).toMatch(/^hint: /m);
    expect(p.stdout).toBe('');

    const s = await run(['seed', '--pub', pubFile, '--identity', name, '--capsule', capsuleName, '--key-vault', 'encryption.__keyVault']);
    expect(s.code).not.toBe(0);
    expect(s.stderr).toMatch(message);

    const after = await snapshot(capsuleName);
    expect(after.capsule).toEqual(before.capsule);
    expect(after.history).toEqual(before.history);
    expect(after.dataKeys).toEqual(before.dataKeys);
    expect(after.keyVaultSize).toBe(before.keyVaultSize);
  }

  for (const [kind, errorClass, message] of [
    ['unsigned', SignatureInvalidError, /is not signed/],
    ['foreign', SignerUnknownError, /which is not trusted/],
  ] as const) {
    it(`refuses a planted ${kind === 'unsigned' ? 'unsigned capsule' : 'capsule signed by a foreign ML-DSA key'} wrapping the attacker's CMK for the owner's key`, async () => {
      const capsuleName = `${kind}-${tag}`;
      await provisioned(capsuleName);
      // The attacker's move: a well-formed capsule for the owner's public key, wrapping a CMK they chose.
      const cmk = generateCmk();
      const mallory = generateIdentity('ml-kem-1024', { name: 'mallory' });
      const bytes = wrapKey(cmk, pub, { name: capsuleName, ...(kind === 'foreign' ? { signer: mallory } : {}) });
      cmk.fill(0);
      const d = capsuleToDocument(bytes);
      await capsules().updateOne({ name: capsuleName }, { $set: { ...d, bytes: new Binary(d.bytes), sha256: sha256Hex(d.bytes) } });
      await refusedEverywhere(capsuleName, errorClass, message);
    });
  }

  it('refuses a replay of an older, validly signed generation after rotate-cmk, before any data key is made under it', async () => {
    const capsuleName = `replay-${tag}`;
    await provisioned(capsuleName);
    const old = (await capsules().findOne({ name: capsuleName })) as Document;
    const r = await run(['rotate-cmk', '--identity', name, '--capsule', capsuleName, '--client-wait-ms', '0']);
    expect(r.code, r.stderr).toBe(0);
    const rotated = (await capsules().findOne({ name: capsuleName })) as Document;
    expect((rotated.createdAt as Date).getTime()).toBeGreaterThan((old.createdAt as Date).getTime());
    // Written back whole: signed by the owner, sealed for the owner's key, only older.
    await capsules().replaceOne({ name: capsuleName }, old);
    await refusedEverywhere(capsuleName, CapsuleReplayError, /already opened a newer one/);
  });
});
