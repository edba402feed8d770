/**
 * `keys rotate --cluster` is repeatable: an identity whose capsules live in two clusters (here two capsule
 * collections of the test server, which are two locations as the record counts them) is rotated in one run.
 * Every cluster is resolved and read before the keychain changes; each is re-sealed; the old key is retired only
 * when all are done; the single `--cluster` form keeps working and the hints name every cluster.
 * Real OS keychain (test service), real test server.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MongoClient } from 'mongodb';
import { decodePublicIdentity } from '../../src/crypto/index.ts';
import { CapsuleLocations } from '../../src/keys/capsule-locations.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { CapsuleStore } from '../../src/mongo/index.ts';
import { runCli, serverKeychainSkipReason } from '../support/cli.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server, uniqueDbName } from './support/server.ts';

const SERVICE = `mongo-capsule-test-rotcl-${randomBytes(6).toString('hex')}`;
const reason = await serverKeychainSkipReason(server, SERVICE, 'keys rotate needs');

describeIf(reason === '', reason)(`keys rotate with several --cluster (${server.description})`, () => {
  const dbA = uniqueDbName('rotcla');
  const dbB = uniqueDbName('rotclb');
  const nsA = `${dbA}.capsules`;
  const nsB = `${dbB}.capsules`;
  const name = 'multi';
  let dir: string;
  let stateDir: string;
  let pub: string;
  let plain: MongoClient;
  let manager: KeyManager;

  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, MONGO_CAPSULE_STATE_DIR: stateDir, ...env });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-rotcl-'));
    stateDir = join(dir, 'state');
    pub = join(dir, `${name}.pub.json`);
    plain = await connectTestClient();
    manager = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }), cacheTtlMs: 0 });
  });
  afterAll(async () => {
    manager?.clearCache();
    await run(['keys', 'delete', '--name', name, '--yes']);
    await plain?.db(dbA).dropDatabase();
    await plain?.db(dbB).dropDatabase();
    await plain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const storeA = () => new CapsuleStore(plain, { namespace: nsA });
  const storeB = () => new CapsuleStore(plain, { namespace: nsB });
  const kidOf = async (s: CapsuleStore, capsule: string) => (await s.load(capsule)).header.kid;
  const cmkOf = async (s: CapsuleStore, capsule: string) => Buffer.from(await manager.unwrap((await s.load(capsule)).bytes, name));

  async function expectUnchanged(kid: string) {
    const s = await manager.status(name);
    expect(s.slots).toEqual({ active: kid, next: null, prev: null });
    expect(await kidOf(storeA(), 'a')).toBe(kid);
    expect(await kidOf(storeB(), 'b')).toBe(kid);
  }

  it('checks every cluster first, re-seals each, and retires the old key only when all are done', async () => {
    expect((await run(['init', '--name', name, '--pub-out', pub])).code).toBe(0);
    const oldKid = decodePublicIdentity(readFileSync(pub)).kid;
    for (const [capsule, ns] of [['a', nsA], ['b', nsB]] as const) {
      const seeded = await run(['seed', '--pub', pub, '--capsule', capsule, '--identity', name, '--capsules', ns], { MONGODB_URI: server.uri });
      expect(seeded.code, seeded.stderr).toBe(0);
    }
    expect((await new CapsuleLocations({ service: SERVICE, directory: stateDir }).list(name)).map((l) => (l.kind === 'cluster' ? l.namespace : l.path)).sort()).toEqual([nsA, nsB].sort());
    const cmkA = await cmkOf(storeA(), 'a');
    const cmkB = await cmkOf(storeB(), 'b');
    const rotate = (...clusters: string[]) => ['keys', 'rotate', '--name', name, ...clusters, '--pub-out', pub, '--replace'];

    // A second cluster whose variable is not set, or that cannot be reached: nothing changes anywhere.
    const unset = await run(rotate('--cluster', '--collection', nsA, '--cluster', `NOT_SET_URI:${nsB}`), { MONGODB_URI: server.uri });
    expect(unset.code).toBe(1);
    expect(unset.stderr).toMatch(/--cluster NOT_SET_URI:.*the environment variable NOT_SET_URI is not set/);
    expect(unset.stderr).toMatch(/^hint: .*keychain is unchanged/m);
    await expectUnchanged(oldKid);
    const unreachable = await run(rotate('--cluster', '--collection', nsA, '--cluster', `DOWN_URI:${nsB}`), { MONGODB_URI: server.uri, DOWN_URI: 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500' });
    expect(unreachable.code).toBe(1);
    await expectUnchanged(oldKid);
    // A connection string as the value would put its password in the process list: refused, and not echoed.
    const inline = await run(rotate('--cluster', 'mongodb://u:s3cret-pw@127.0.0.1:1/'), {});
    expect(inline.code).toBe(1);
    expect(inline.stderr).toMatch(/name of an environment variable/);
    expect(inline.stderr).not.toContain('s3cret-pw');
    await expectUnchanged(oldKid);

    // The single-flag form still works; it re-seals the capsule it finds, but keeps the old key: the other
    // recorded collection was not searched. The hint names both clusters.
    const one = await run(rotate('--cluster', '--collection', nsA), { MONGODB_URI: server.uri });
    expect(one.code).toBe(1);
    expect(one.stderr).toMatch(/old key of multi was kept/);
    expect(one.stderr).toMatch(new RegExp(`not searched: cluster .*collection ${nsB}`));
    expect(one.stderr).toContain(`mongo-capsule keys rotate --name multi --cluster --collection ${nsA} --cluster MONGODB_URI:${nsB}`);
    const newKid = decodePublicIdentity(readFileSync(pub)).kid;
    expect(newKid).not.toBe(oldKid);
    expect(await kidOf(storeA(), 'a')).toBe(newKid);
    expect(await kidOf(storeB(), 'b')).toBe(oldKid);
    expect((await manager.status(name)).slots.prev).toBe(oldKid);

    // The printed command: both clusters searched, b re-sealed, then the old key retired.
    const both = await run(rotate('--cluster', '--collection', nsA, '--cluster', `MONGODB_URI:${nsB}`), { MONGODB_URI: server.uri });
    expect(both.stderr).toBe('');
    expect(both.code).toBe(0);
    expect(both.stdout).toMatch(/retired/);
    expect(both.stdout).toMatch(new RegExp(`searched: cluster .*collection ${nsA}; cluster .*collection ${nsB}`));
    expect(await manager.status(name)).toMatchObject({ kid: newKid, rotationPending: false, slots: { active: newKid, next: null, prev: null } });
    expect(await kidOf(storeB(), 'b')).toBe(newKid);
    expect((await cmkOf(storeA(), 'a')).equals(cmkA)).toBe(true);
    expect((await cmkOf(storeB(), 'b')).equals(cmkB)).toBe(true);

    // A fresh rotation over two clusters named only by variables: both re-sealed in one run, old key retired.
    const again = await run(rotate('--cluster', `FIRST_URI:${nsA}`, '--cluster', `SECOND_URI:${nsB}`), { FIRST_URI: server.uri, SECOND_URI: server.uri });
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/re-sealed 2 capsule\(s\)/);
    expect(again.stdout).toMatch(/retired/);
    const thirdKid = decodePublicIdentity(readFileSync(pub)).kid;
    expect(thirdKid).not.toBe(newKid);
    expect(await manager.status(name)).toMatchObject({ kid: thirdKid, slots: { active: thirdKid, next: null, prev: null } });
    expect(await kidOf(storeA(), 'a')).toBe(thirdKid);
    expect(await kidOf(storeB(), 'b')).toBe(thirdKid);
    expect((await cmkOf(storeA(), 'a')).equals(cmkA)).toBe(true);
    expect((await cmkOf(storeB(), 'b')).equals(cmkB)).toBe(true);
    cmkA.fill(0);
    cmkB.fill(0);
  });
});
