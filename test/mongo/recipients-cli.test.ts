/**
 * A team on one cluster through the CLI, with every identity in the real OS keychain (a test service of its own):
 * `seed --pub a --pub b`, `keys grant`, a recovery identity that exists only as shares and is restored on a "fresh"
 * keychain, and `keys revoke` (resumable, idempotent) after which the revoked key opens nothing while everyone
 * else reads every document.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MongoClient } from 'mongodb';
import { decodePublicIdentity, type PublicIdentity } from '../../src/crypto/index.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { openEncryptedClient } from '../../src/mongo/index.ts';
import { runCli, serverKeychainSkipReason } from '../support/cli.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server, uniqueDbName } from './support/server.ts';

const SERVICE = `mongo-capsule-test-team-${randomBytes(6).toString('hex')}`;
const reason = await serverKeychainSkipReason(server, SERVICE, 'team CLI tests need', { csfle: true });

const run = (args: string[]) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, MONGODB_URI: server.uri });

describeIf(reason === '', reason)(`a team shares a capsule through the CLI (${server.description})`, () => {
  const db = uniqueDbName('team');
  const ns = ['--capsules', `${db}.capsules`, '--key-vault', `${db}.__keyVault`];
  const tag = randomBytes(3).toString('hex');
  const [alice, bob, carol, recovery] = ['alice', 'bob', 'carol', 'recovery'].map((n) => `${n}-${tag}`) as [string, string, string, string];
  const capsule = 'team';
  let dir: string;
  let plain: MongoClient;
  const pubs = new Map<string, PublicIdentity>();
  const pubFile = (n: string) => join(dir, `${n}.pub.json`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-team-'));
    plain = await connectTestClient();
    for (const n of [alice, bob, carol, recovery]) {
      expect((await run(['init', '--name', n, '--pub-out', pubFile(n)])).code).toBe(0);
      pubs.set(n, decodePublicIdentity(readFileSync(pubFile(n))));
    }
  });
  afterAll(async () => {
    for (const n of [alice, bob, carol, recovery]) await run(['keys', 'delete', '--name', n, '--yes']);
    await plain?.db(db).dropDatabase();
    await plain?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A member's application: its keychain identity, trusting the whole team's signers. */
  async function client(identity: string) {
    const keys = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }), trustedSigners: [...pubs.values()] });
    const enc = await openEncryptedClient({ uri: server.uri, capsuleName: capsule, capsuleNamespace: `${db}.capsules`, keyVaultNamespace: `${db}.__keyVault`, unwrap: keys, identity, refreshIntervalMS: 0 });
    return { enc, keys };
  }
  async function write(identity: string, v: string): Promise<void> {
    const { enc, keys } = await client(identity);
    try {
      await enc.client.db(db).collection('data').insertOne({ v: await enc.encryptRandom(v, 'notes') });
    } finally {
      await enc.close();
      keys.clearCache();
    }
  }
  async function read(identity: string): Promise<string[]> {
    const { enc, keys } = await client(identity);
    try {
      return (await enc.client.db(db).collection('data').find({}).toArray()).map((d) => d.v as string).sort();
    } finally {
      await enc.close();
      keys.clearCache();
    }
  }

  it('seed, grant, a recovery identity restored from shares, and revoke', async () => {
    const seeded = await run(['seed', '--pub', pubFile(alice), '--pub', pubFile(bob), '--identity', alice, '--capsule', capsule, ...ns]);
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(seeded.stdout).toContain(`recipients ${pubs.get(alice)!.kid}, ${pubs.get(bob)!.kid}`);
    await write(alice, 'from-alice');
    await write(bob, 'from-bob');
    expect(await read(bob)).toEqual(['from-alice', 'from-bob']);

    // Seeding again with a --pub that is no recipient adds nothing and says how to add it.
    const again = await run(['seed', '--pub', pubFile(alice), '--pub', pubFile(carol), '--capsule', capsule, ...ns]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`keys grant --capsule ${capsule} --pub ${pubFile(carol)}`);
    await expect(read(carol)).rejects.toThrow(/holds none of them|does not hold/);

    // Bob grants Carol, once he trusts Alice, who signed his entry; granting twice changes nothing.
    const untrusted = await run(['keys', 'grant', '--pub', pubFile(carol), '--identity', bob, '--capsule', capsule, ...ns]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain('which is not trusted');
    const granted = await run(['keys', 'grant', '--pub', pubFile(carol), '--identity', bob, '--trust', pubFile(alice), '--capsule', capsule, ...ns]);
    expect(granted.code, granted.stderr).toBe(0);
    expect(granted.stdout).toContain(`granted to key ${pubs.get(carol)!.kid}`);
    expect((await run(['keys', 'grant', '--pub', pubFile(carol), '--identity', bob, '--trust', pubFile(alice), '--capsule', capsule, ...ns])).stdout).toContain('already is a recipient');
    expect(await read(carol)).toEqual(['from-alice', 'from-bob']);
    const doctor = await run(['doctor', '--identity', alice, '--capsule', capsule, ...ns]);
    expect(doctor.stdout).toMatch(new RegExp(`recipients +${pubs.get(alice)!.kid} \\(${alice}\\), ${pubs.get(bob)!.kid} \\(${bob}\\), ${pubs.get(carol)!.kid} \\(${carol}\\)`));

    // A recovery identity: granted, split into shares, deleted from the keychain, later restored from 2 of 3.
    expect((await run(['keys', 'grant', '--pub', pubFile(recovery), '--identity', alice, '--capsule', capsule, ...ns])).code).toBe(0);
    const shares = join(dir, 'shares');
    mkdirSync(shares, { mode: 0o700 });
    const backup = await run(['keys', 'backup', '--name', recovery, '--shares', '3', '--threshold', '2', '--out-dir', shares, '--pub', pubFile(recovery)]);
    expect(backup.code, backup.stderr).toBe(0);
    expect((await run(['keys', 'delete', '--name', recovery, '--yes'])).code).toBe(0);
    await expect(read(recovery)).rejects.toThrow(/not in the keychain/);
    const restored = await run(['keys', 'restore', '--name', recovery, '--share', join(shares, `${recovery}.share-1-of-3.json`), '--share', join(shares, `${recovery}.share-3-of-3.json`), '--pub', pubFile(recovery)]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await read(recovery)).toEqual(['from-alice', 'from-bob']);

    // Alice revokes Bob: the CMK is rotated past his key.
    const bobKid = pubs.get(bob)!.kid;
    const revoked = await run(['keys', 'revoke', '--kid', bobKid, '--identity', alice, '--capsule', capsule, '--client-wait-ms', '0', ...ns]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(`key ${bobKid} revoked`);
    expect(revoked.stdout).not.toContain(bobKid + ',');
    expect(revoked.stdout).toContain('new values get fresh data keys (data-key epoch 1)');
    expect((await run(['doctor', '--identity', alice, '--capsule', capsule, ...ns])).stdout).toMatch(/^ok    epoch +data-key epoch 1: new values use this epoch's data keys/m);
    await expect(read(bob)).rejects.toThrow(/holds none of them|does not hold/);
    await write(carol, 'after-revoke');
    for (const who of [alice, carol, recovery]) expect(await read(who)).toEqual(['after-revoke', 'from-alice', 'from-bob']);
    // --undo-revocation only goes with --abandon.
    const lone = await run(['rotate-cmk', '--undo-revocation', '--identity', alice, '--capsule', capsule, ...ns]);
    expect(lone.code).toBe(1);
    expect(lone.stderr).toContain('error: rotate-cmk: --undo-revocation goes with --abandon');
    // Running it again is safe.
    const rerun = await run(['keys', 'revoke', '--kid', bobKid, '--identity', alice, '--capsule', capsule, '--client-wait-ms', '0', ...ns]);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stdout).toContain('already revoked');
    // A kid that never was a recipient is a typed error.
    const unknown = await run(['keys', 'revoke', '--kid', '0'.repeat(32), '--identity', alice, '--capsule', capsule, ...ns]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(`has no recipient ${'0'.repeat(32)}`);
  });
});
