/**
 * `seed` over a capsule that already exists, sealed for another key than the --pub it is given: with or without
 * --identity, it says loudly that the capsule belongs to another key (naming both kids), exits non-zero and writes
 * nothing, unless --accept-existing. Real OS keychain (a test service), real test server.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Document, MongoClient } from 'mongodb';
import { decodePublicIdentity, type PublicIdentity } from '../../src/crypto/index.ts';
import { CapsuleOwnedByOtherKeyError } from '../../src/errors.ts';
import { provisionCluster } from '../../src/mongo/index.ts';
import { runCli, serverKeychainSkipReason } from '../support/cli.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server, uniqueDbName } from './support/server.ts';

const SERVICE = `mongo-capsule-test-seedx-${randomBytes(6).toString('hex')}`;
const reason = await serverKeychainSkipReason(server, SERVICE, "seed over another key's capsule needs");

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, ...env });

describeIf(reason === '', reason)(`seed over a capsule sealed for another key (${server.description})`, () => {
  const db = uniqueDbName('seedx');
  const capsuleNamespace = `${db}.capsules`;
  const owner = `own-${randomBytes(4).toString('hex')}`;
  const other = `alice-${randomBytes(4).toString('hex')}`;
  const capsule = 'app';
  const env = { MONGODB_URI: server.uri };
  let dir: string;
  let ownerFile: string;
  let otherFile: string;
  let ownerPub: PublicIdentity;
  let otherPub: PublicIdentity;
  let plain: MongoClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-seedx-'));
    plain = await connectTestClient();
    ownerFile = join(dir, `${owner}.pub.json`);
    otherFile = join(dir, `${other}.pub.json`);
    expect((await run(['init', '--name', owner, '--pub-out', ownerFile])).code).toBe(0);
    expect((await run(['init', '--name', other, '--pub-out', otherFile])).code).toBe(0);
    ownerPub = decodePublicIdentity(readFileSync(ownerFile));
    otherPub = decodePublicIdentity(readFileSync(otherFile));
    const seeded = await run(['seed', '--pub', ownerFile, '--capsule', capsule, '--identity', owner, '--capsules', capsuleNamespace], env);
    expect(seeded.code, seeded.stderr).toBe(0);
  });
  afterAll(async () => {
    await run(['keys', 'delete', '--name', owner, '--yes']);
    await run(['keys', 'delete', '--name', other, '--yes']);
    await plain?.db(db).dropDatabase();
    await plain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const capsules = () => plain.db(db).collection('capsules');
  const history = () => plain.db(db).collection('capsules.history');
  const recordedFor = (name: string): unknown[] => {
    const file = join(process.env.MONGO_CAPSULE_STATE_DIR ?? '', 'capsule-locations.json');
    if (!process.env.MONGO_CAPSULE_STATE_DIR || !existsSync(file)) return [];
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { services: Record<string, Record<string, unknown[]>> };
    return parsed.services[SERVICE]?.[name] ?? [];
  };

  for (const [label, extra] of [
    ['seed --identity <other> --pub other.pub.json', () => ['--identity', other]],
    ['seed --pub other.pub.json (no identity)', () => []],
  ] as const) {
    it(`${label}: refused with CAPSULE_OTHER_KEY naming both kids; nothing written; --accept-existing exits 0`, async () => {
      const before = (await capsules().findOne({ name: capsule })) as Document;
      const historyBefore = await history().countDocuments({});
      const r = await run(['seed', '--pub', otherFile, '--capsule', capsule, '--capsules', capsuleNamespace, ...extra()], env);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/^error: capsule app already exists and belongs to ANOTHER key/m);
      expect(r.stderr).toContain(ownerPub.kid);
      expect(r.stderr).toContain(otherPub.kid);
      expect(r.stderr).not.toMatch(/CAPSULE_AUTH|wrong key or tampered/);
      expect(r.stderr).toMatch(/^hint: .*--accept-existing/m);
      expect(r.stderr).toMatch(/^hint: .*--capsule/m);
      expect((await capsules().findOne({ name: capsule })) as Document).toEqual(before);
      expect(await history().countDocuments({})).toBe(historyBefore);
      expect(recordedFor(other)).toEqual([]);

      const ok = await run(['seed', '--pub', otherFile, '--capsule', capsule, '--capsules', capsuleNamespace, '--accept-existing', ...extra()], env);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stderr).toMatch(/WARNING: .*belongs to ANOTHER key/);
      expect(ok.stdout).toMatch(new RegExp(`kid ${ownerPub.kid}`));
      expect((await capsules().findOne({ name: capsule })) as Document).toEqual(before);
      expect(recordedFor(other)).toEqual([]);
    });
  }

  it('provisionCluster (npm run up, external mode) refuses it too, before opening it', async () => {
    const before = (await capsules().findOne({ name: capsule })) as Document;
    const err = await provisionCluster({
      uri: server.uri,
      capsuleName: capsule,
      recipient: otherPub,
      capsuleNamespace,
      unwrap: async () => {
        throw new Error('must not be asked to open a capsule sealed for another key');
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapsuleOwnedByOtherKeyError);
    expect((err as Error).message).toContain(ownerPub.kid);
    expect((err as Error).message).toContain(otherPub.kid);
    expect((await capsules().findOne({ name: capsule })) as Document).toEqual(before);
  });
});
