/**
 * Issue 10 §2: someone who can write the capsule collection and has the (public) `.pub.json` replaces the signed
 * capsule with one wrapping a CMK they chose: unsigned, or signed by an identity of their own. The default
 * client, the CLI `unwrap`, `rotate-cmk` and `keys rotate --cluster` must each refuse it and write nothing.
 * Real OS keychain (a test service), real test server, CSFLE.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Binary, type Document, type MongoClient } from 'mongodb';
import { capsuleToDocument, decodePublicIdentity, encodePublicIdentity, generateCmk, generateIdentity, toPublicIdentity, wrapKey, type PublicIdentity } from '../../src/crypto/index.ts';
import { CapsuleReplayError, SignatureInvalidError, SignerUnknownError } from '../../src/errors.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { openEncryptedClient, provisionCluster, sha256Hex } from '../../src/mongo/index.ts';
import { runCli, serverKeychainSkipReason } from '../support/cli.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server, uniqueDbName } from './support/server.ts';

const SERVICE = `mongo-capsule-test-subst-${randomBytes(6).toString('hex')}`;
const reason = await serverKeychainSkipReason(server, SERVICE, 'capsule substitution tests need', { csfle: true });

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, ...env });

describeIf(reason === '', reason)(`capsule substitution (${server.description})`, () => {
  const db = uniqueDbName('subst');
  const capsuleNamespace = `${db}.capsules`;
  const keyVaultNamespace = `${db}.__keyVault`;
  const name = `own-${randomBytes(4).toString('hex')}`;
  const capsule = 'app';
  const env = { MONGODB_URI: server.uri };
  let dir: string;
  let pubFile: string;
  let pub: PublicIdentity;
  let plain: MongoClient;
  let km: KeyManager;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-subst-'));
    plain = await connectTestClient();
    km = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }) });
    pubFile = join(dir, `${name}.pub.json`);
    expect((await run(['init', '--name', name, '--pub-out', pubFile])).code).toBe(0);
    pub = decodePublicIdentity(readFileSync(pubFile));
    const seeded = await run(['seed', '--pub', pubFile, '--capsule', capsule, '--identity', name, '--capsules', capsuleNamespace], env);
    expect(seeded.code, seeded.stderr).toBe(0);
  });
  afterAll(async () => {
    km?.clearCache();
    await run(['keys', 'delete', '--name', name, '--yes']);
    await plain?.db(db).dropDatabase();
    await plain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const capsules = () => plain.db(db).collection('capsules');

  /** The attacker's move: a well-formed capsule document (header fields, bytes, sha256) wrapping their CMK. */
  async function substitute(signer: 'none' | 'foreign'): Promise<Uint8Array> {
    const cmk = generateCmk();
    const foreign = generateIdentity('ml-kem-1024', { name: 'mallory' });
    const bytes = wrapKey(cmk, pub, { name: capsule, ...(signer === 'foreign' ? { signer: foreign } : {}) });
    cmk.fill(0);
    const d = capsuleToDocument(bytes);
    await capsules().updateOne({ name: capsule }, { $set: { ...d, bytes: new Binary(d.bytes), sha256: sha256Hex(d.bytes) } });
    return bytes;
  }

  for (const [kind, errorClass, code] of [
    ['none', SignatureInvalidError, /is not signed/],
    ['foreign', SignerUnknownError, /which is not trusted/],
  ] as const) {
    it(`refuses a capsule ${kind === 'none' ? 'replaced by an unsigned one' : 'replaced by one signed by a foreign identity'}, everywhere, writing nothing`, async () => {
      const original = (await capsules().findOne({ name: capsule })) as Document;
      const forged = await substitute(kind);
      try {
        const before = (await capsules().findOne({ name: capsule })) as Document;
        const slotsBefore = (await km.status(name)).slots;

        const err = await openEncryptedClient({ uri: server.uri, capsuleName: capsule, capsuleNamespace, keyVaultNamespace, unwrap: (c) => km.unwrap(c, name) }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(errorClass);
        expect((err as SignatureInvalidError).hint).toMatch(/--trust <pub\.json>/);
        expect((err as SignatureInvalidError).hint).toMatch(/mongo-capsule endorse/);

        const inFile = join(dir, `forged-${kind}.capsule`);
        const outFile = join(dir, `forged-${kind}.cmk`);
        writeFileSync(inFile, forged);
        const u = await run(['unwrap', '--name', name, '--in', inFile, '--out', outFile]);
        expect(u.code).not.toBe(0);
        expect(u.stderr).toMatch(code);
        expect(existsSync(outFile)).toBe(false);

        const r = await run(['rotate-cmk', '--identity', name, '--capsule', capsule, '--capsules', capsuleNamespace, '--key-vault', keyVaultNamespace, '--client-wait-ms', '0'], env);
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(code);

        const k = await run(['keys', 'rotate', '--name', name, '--cluster', '--collection', capsuleNamespace, '--pub-out', join(dir, 'new.pub.json')], env);
        expect(k.code).not.toBe(0);
        expect(k.stderr).toMatch(code);
        expect(k.stderr).toMatch(/nothing was changed/);

        const after = (await capsules().findOne({ name: capsule })) as Document;
        expect(after).toEqual(before);
        expect(after.pendingRotation).toBeUndefined();
        expect((await km.status(name)).slots).toEqual(slotsBefore);
        expect(existsSync(join(dir, 'new.pub.json'))).toBe(false);
      } finally {
        await capsules().replaceOne({ name: capsule }, original);
      }
    });
  }

  it('still opens the capsule its owner signed, and an unsigned one only with the named opt-in (which warns)', async () => {
    const db1 = await openEncryptedClient({ uri: server.uri, capsuleName: capsule, capsuleNamespace, keyVaultNamespace, unwrap: (c) => km.unwrap(c, name) });
    await db1.close();
    const original = (await capsules().findOne({ name: capsule })) as Document;
    await substitute('none');
    try {
      const warnings: string[] = [];
      const lax = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }), allowUnsigned: true, onWarning: (m) => warnings.push(m) });
      const db2 = await openEncryptedClient({ uri: server.uri, capsuleName: capsule, capsuleNamespace, keyVaultNamespace, unwrap: (c) => lax.unwrap(c, name) });
      await db2.close();
      lax.clearCache();
      expect(warnings.join('\n')).toMatch(/UNSIGNED/);
    } finally {
      await capsules().replaceOne({ name: capsule }, original);
    }
  });

  it('seed --pub without the identity stores a capsule nothing opens until the owner runs endorse (a fresh, signed CMK)', async () => {
    const seeded = await run(['seed', '--pub', pubFile, '--capsule', 'remote', '--capsules', capsuleNamespace], env);
    expect(seeded.code).toBe(0);
    expect(seeded.stderr).toMatch(/WARNING: capsule remote is stored UNSIGNED/);
    expect(seeded.stderr).toMatch(/mongo-capsule endorse --capsule remote/);
    const open = () => openEncryptedClient({ uri: server.uri, capsuleName: 'remote', capsuleNamespace, keyVaultNamespace, unwrap: (c) => km.unwrap(c, name) });
    await expect(open()).rejects.toBeInstanceOf(SignatureInvalidError);
    const unsigned = (await capsules().findOne({ name: 'remote' })) as Document;

    const e = await run(['endorse', '--identity', name, '--capsule', 'remote', '--capsules', capsuleNamespace, '--key-vault', keyVaultNamespace], env);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/capsule remote: endorsed/);
    const endorsed = (await capsules().findOne({ name: 'remote' })) as Document;
    expect(endorsed.sha256).not.toBe(unsigned.sha256);
    expect(endorsed.signerKid).toBe(pub.signer.kid);
    await (await open()).close();

    const again = await run(['endorse', '--identity', name, '--capsule', 'remote', '--capsules', capsuleNamespace, '--key-vault', keyVaultNamespace], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already endorsed/);
    expect(((await capsules().findOne({ name: 'remote' })) as Document).sha256).toBe(endorsed.sha256);
  });

  it('endorse refuses an unsigned capsule whose CMK already has data keys, and changes nothing', async () => {
    expect((await run(['seed', '--pub', pubFile, '--capsule', 'used', '--capsules', capsuleNamespace], env)).code).toBe(0);
    const lax = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }), allowUnsigned: true, onWarning: () => {} });
    await provisionCluster({ uri: server.uri, capsuleName: 'used', recipient: pub, capsuleNamespace, keyVaultNamespace, dataKeyAltNames: ['k'], unwrap: (c) => lax.unwrap(c, name) });
    lax.clearCache();
    const before = (await capsules().findOne({ name: 'used' })) as Document;
    const e = await run(['endorse', '--identity', name, '--capsule', 'used', '--capsules', capsuleNamespace, '--key-vault', keyVaultNamespace], env);
    expect(e.code).not.toBe(0);
    expect(e.stderr).toMatch(/1 data key\(s\) .* are under its CMK; nothing was changed/);
    expect(e.stderr).toMatch(/hint: /);
    expect((await capsules().findOne({ name: 'used' })) as Document).toEqual(before);
  });

  it('seed over a capsule sealed for another key says so and exits non-zero unless --accept-existing', async () => {
    const otherFile = join(dir, 'alice.pub.json');
    writeFileSync(otherFile, encodePublicIdentity(toPublicIdentity(generateIdentity('ml-kem-1024', { name: 'alice' }))));
    const before = (await capsules().findOne({ name: capsule })) as Document;
    const r = await run(['seed', '--pub', otherFile, '--capsule', capsule, '--capsules', capsuleNamespace], env);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/belongs to ANOTHER key/);
    expect(r.stderr).toMatch(/--accept-existing/);
    const ok = await run(['seed', '--pub', otherFile, '--capsule', capsule, '--capsules', capsuleNamespace, '--accept-existing'], env);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toMatch(/WARNING: .*belongs to ANOTHER key/);
    expect((await capsules().findOne({ name: capsule })) as Document).toEqual(before);
  });

  it('after rotate-cmk, writing the old (validly signed) capsule back is refused by the default client; acceptRollback opens it', async () => {
    const gen = 'gen';
    expect((await run(['seed', '--pub', pubFile, '--capsule', gen, '--identity', name, '--capsules', capsuleNamespace], env)).code).toBe(0);
    const open = (extra = {}) => openEncryptedClient({ uri: server.uri, capsuleName: gen, capsuleNamespace, keyVaultNamespace, unwrap: (c) => km.unwrap(c, name), ...extra });
    await (await open()).close();
    const old = (await capsules().findOne({ name: gen })) as Document;
    const r = await run(['rotate-cmk', '--identity', name, '--capsule', gen, '--capsules', capsuleNamespace, '--key-vault', keyVaultNamespace, '--client-wait-ms', '0'], env);
    expect(r.code, r.stderr).toBe(0);
    const rotated = (await capsules().findOne({ name: gen })) as Document;
    expect((rotated.createdAt as Date).getTime()).toBeGreaterThan((old.createdAt as Date).getTime());
    await (await open()).close();

    await capsules().replaceOne({ name: gen }, old);
    const err = await open().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapsuleReplayError);
    expect((err as CapsuleReplayError).code).toBe('CAPSULE_REPLAY');
    expect((err as CapsuleReplayError).hint).toMatch(/acceptRollback/);
    expect((await capsules().findOne({ name: gen })) as Document).toEqual(old);
    const rr = await run(['rotate-cmk', '--identity', name, '--capsule', gen, '--capsules', capsuleNamespace, '--key-vault', keyVaultNamespace, '--client-wait-ms', '0'], env);
    expect(rr.code).not.toBe(0);
    expect(rr.stderr).toMatch(/already opened a newer one/);
    expect((await capsules().findOne({ name: gen })) as Document).toEqual(old);
    // keys grant would seal the retired CMK for someone new, keys revoke would rotate from it: both refuse.
    const newcomer = join(dir, 'newcomer.pub.json');
    writeFileSync(newcomer, encodePublicIdentity(toPublicIdentity(generateIdentity('ml-kem-768', { name: 'newcomer' }))));
    const ns = ['--capsule', gen, '--capsules', capsuleNamespace, '--key-vault', keyVaultNamespace];
    for (const args of [['keys', 'grant', '--pub', newcomer, '--identity', name, ...ns], ['keys', 'revoke', '--kid', '0'.repeat(32), '--identity', name, '--client-wait-ms', '0', ...ns]]) {
      const refused = await run(args, env);
      expect(refused.code, `${args[1]}: ${refused.stdout}`).toBe(1);
      expect(refused.stderr, args[1]).toMatch(/already opened a newer one/);
      expect((await capsules().findOne({ name: gen })) as Document).toEqual(old);
    }
    // doctor reports it, and a KEM rotation must not launder it: re-sealed, the old CMK would carry a new time.
    const doctor = await run(['doctor', '--identity', name, '--capsule', gen, '--capsules', capsuleNamespace, '--key-vault', keyVaultNamespace], env);
    expect(doctor.code).not.toBe(0);
    expect(doctor.stdout).toMatch(/FAIL\s+replay\s+.*already opened a newer one/);
    const slots = (await km.status(name)).slots;
    const kr = await run(['keys', 'rotate', '--name', name, '--cluster', '--collection', capsuleNamespace, '--pub-out', pubFile, '--replace'], env);
    expect(kr.code).not.toBe(0);
    expect(kr.stderr).toMatch(/already opened a newer one/);
    expect((await km.status(name)).slots).toEqual(slots);
    expect((await capsules().findOne({ name: gen })) as Document).toEqual(old);
    await (await open({ acceptRollback: true })).close();
    await (await open()).close(); // the mark now follows the restored backup
  });
});
