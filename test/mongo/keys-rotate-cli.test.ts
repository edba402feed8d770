/**
 * `mongo-capsule keys rotate --cluster`: KEM-key rotation of the capsules stored in a cluster (and in capsule
 * directories in the same run), through the CLI, with the identity in the real OS keychain under a test service.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MongoClient } from 'mongodb';
import { decodePublicIdentity, generateCmk, parseCapsule } from '../../src/crypto/index.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { CapsuleStore } from '../../src/mongo/index.ts';
import { runCli, serverKeychainSkipReason } from '../support/cli.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server, uniqueDbName } from './support/server.ts';

const SERVICE = `mongo-capsule-test-rotate-${randomBytes(6).toString('hex')}`;
const reason = await serverKeychainSkipReason(server, SERVICE, 'keys rotate --cluster needs');

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, ...env });

describeIf(reason === '', reason)(`keys rotate --cluster (${server.description})`, () => {
  const db = uniqueDbName('kemcli');
  const collection = `${db}.capsules`;
  const name = `rot-${randomBytes(4).toString('hex')}`;
  const env = { MONGODB_URI: server.uri };
  let dir: string;
  let plain: MongoClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-rotate-cli-'));
    plain = await connectTestClient();
  });
  afterAll(async () => {
    await run(['keys', 'delete', '--name', name, '--yes']);
    await plain?.db(db).dropDatabase();
    await plain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses incomplete options before touching anything', async () => {
    for (const [args, message] of [
      [['keys', 'rotate', '--name', name, '--uri', server.uri, '--pub-out', join(dir, 'x.json')], /--uri and --collection go with --cluster/],
      [['keys', 'rotate', '--name', name, '--cluster', '--pub-out', join(dir, 'x.json')], /--cluster needs a connection string/],
      [['keys', 'rotate', '--name', name, '--pub-out', join(dir, 'x.json')], /missing --capsules <dir> or --cluster/],
    ] as const) {
      const r = await run([...args], {});
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/\nhint: /);
    }
  });

  it('re-seals the cluster capsule and the capsule files for the new key; the CMK stays the same', async () => {
    const pub = join(dir, `${name}.pub.json`);
    expect((await run(['init', '--name', name, '--pub-out', pub])).code).toBe(0);
    const before = decodePublicIdentity(readFileSync(pub));
    expect((await run(['seed', '--pub', pub, '--name', 'app', '--sign-name', name, '--capsules', collection], env)).code).toBe(0);
    const caps = join(dir, 'caps');
    mkdirSync(caps);
    const cmkFile = join(dir, 'cmk.bin');
    writeFileSync(cmkFile, generateCmk(), { mode: 0o600 });
    expect((await run(['wrap', '--pub', pub, '--in', cmkFile, '--out', join(caps, 'file.capsule'), '--sign-name', name])).code).toBe(0);

    const manager = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }), cacheTtlMs: 0 });
    const store = new CapsuleStore(plain, { namespace: collection });
    const cmkBefore = await manager.unwrap((await store.load('app')).bytes, name);

    const unreachable = await run(['keys', 'rotate', '--name', name, '--cluster', '--capsules', caps, '--pub-out', pub, '--replace'], { MONGODB_URI: 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500' });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^error: .*re-sealing the capsules stored in the cluster/m);
    expect((await manager.status(name)).rotationPending).toBe(false);
    expect(parseCapsule(new Uint8Array(readFileSync(join(caps, 'file.capsule')))).header.kid).toBe(before.kid);

    const r = await run(['keys', 'rotate', '--name', name, '--cluster', '--collection', collection, '--capsules', caps, '--pub-out', pub, '--replace'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/re-sealed 2 capsule\(s\)/);
    const after = decodePublicIdentity(readFileSync(pub));
    expect(after.kid).not.toBe(before.kid);

    const record = await store.load('app');
    expect(record.header.kid).toBe(after.kid);
    expect(record.header.signerKid).toBe(after.signer.kid);
    const cmkAfter = await manager.unwrap(record.bytes, name);
    expect(Buffer.from(cmkAfter).equals(Buffer.from(cmkBefore))).toBe(true);
    expect(parseCapsule(new Uint8Array(readFileSync(join(caps, 'file.capsule')))).header.kid).toBe(after.kid);
    cmkBefore.fill(0);
    cmkAfter.fill(0);
  });
});
