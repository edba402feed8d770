import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MongoClient } from 'mongodb';
import { encodePublicIdentity, encodeSecretIdentity } from '../../src/crypto/index.ts';
import { main } from '../../src/cli.ts';
import { captureCli } from '../support/cli.ts';
import { connectTestClient, describeWithCsfle, server, uniqueDbName } from './support/server.ts';
import { testIdentity } from './support/identity.ts';


// rotate-cmk and the libmongocrypt line of doctor need CSFLE; seed alone would not.
describeWithCsfle(`mongo CLI commands (${server.description})`, () => {
  const db = uniqueDbName('cli');
  const capsules = `${db}.capsules`;
  const keyVault = `${db}.__keyVault`;
  const id = testIdentity('ops');
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let plain: MongoClient;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-cli-'));
    await writeFile(join(dir, 'ops.pub.json'), encodePublicIdentity(id.pub));
    await writeFile(join(dir, 'ops.secret.json'), encodeSecretIdentity(id.secret), { mode: 0o600 });
    // The documented headless opt-in stands in for the OS keychain; the URI comes from the environment.
    env = { MONGODB_URI: server.uri, MONGO_CAPSULE_SECRET_IDENTITY_FILE: join(dir, 'ops.secret.json') };
    plain = await connectTestClient();
  });
  afterAll(async () => {
    await plain?.db(db).dropDatabase();
    await plain?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('seed prints the capsule name and kid, and is a no-op the second time', async () => {
    const first = captureCli({ MONGODB_URI: server.uri });
    expect(await main(['seed', '--pub', join(dir, 'ops.pub.json'), '--name', 'cli', '--capsules', capsules, '--json'], first.io)).toBe(0);
    expect(JSON.parse(first.out())).toEqual({ capsule: 'cli', kid: id.pub.kid, created: true, recipients: [id.pub.kid] });

    const second = captureCli({ MONGODB_URI: server.uri });
    expect(await main(['seed', '--pub', join(dir, 'ops.pub.json'), '--name', 'cli', '--capsules', capsules], second.io)).toBe(0);
    expect(second.out()).toBe(`capsule cli\nkid ${id.pub.kid}\nalready present (unchanged)\n`);
    expect(await plain.db(db).collection('capsules').countDocuments({ name: 'cli' })).toBe(1);
  });

  it('seed --sign-name signs with the identity and checks that the capsule opens', async () => {
    const run = captureCli(env);
    expect(await main(['seed', '--pub', join(dir, 'ops.pub.json'), '--name', 'cli-signed', '--sign-name', 'ops', '--capsules', capsules], run.io)).toBe(0);
    const doc = await plain.db(db).collection('capsules').findOne({ name: 'cli-signed' });
    expect(doc?.signerKid).toBe(id.pub.signer.kid);
  });

  it('rotate-cmk rotates with the identity from the secret source', async () => {
    const run = captureCli(env);
    expect(await main(['rotate-cmk', '--name', 'ops', '--capsule', 'cli-signed', '--capsules', capsules, '--key-vault', keyVault, '--client-wait-ms', '0'], run.io)).toBe(0);
    expect(run.out()).toMatch(/capsule cli-signed: CMK rotated\nkid [0-9a-f]+\ndata keys moved 0 /);
    const doc = await plain.db(db).collection('capsules').findOne({ name: 'cli-signed' });
    expect(doc?.generation).toBe(2);
  });

  it('doctor reports each check and exits 0 when nothing fails', async () => {
    const run = captureCli(env);
    const code = await main(['doctor', '--capsule', 'cli-signed', '--name', 'ops', '--capsules', capsules, '--key-vault', keyVault], run.io);
    const out = run.out();
    for (const what of ['server', 'auth', 'key vault', 'capsule', 'identity', 'signature', 'cmk', 'libmongocrypt']) expect(out).toMatch(new RegExp(`^(ok  |warn|FAIL)  ${what}`, 'm'));
    expect(out).toMatch(/^ok    capsule +cli-signed: suite ml-kem-1024, kid [0-9a-f]+, signed, generation 2$/m);
    expect(out).toMatch(/^ok    epoch +data-key epoch 0 \(no revocation yet\)$/m);
    expect(out).toMatch(/^ok    identity +ops: .*the capsule is sealed for it/m);
    expect(out).toMatch(/^ok    signature +signed by ops/m);
    expect(out).toMatch(/^ok    cmk +capsule cli-signed has no data key/m);
    expect(code).toBe(0);
  });

  it('doctor fails clearly for a missing capsule and an unreachable server', async () => {
    const missing = captureCli(env);
    expect(await main(['doctor', '--capsule', 'absent', '--name', 'ops', '--capsules', capsules], missing.io)).toBe(1);
    expect(missing.out()).toMatch(/^FAIL  capsule +no capsule absent/m);

    const down = captureCli({ ...env, MONGODB_URI: 'mongodb://admin:hunter2-secret@127.0.0.1:9/?serverSelectionTimeoutMS=500' });
    expect(await main(['doctor', '--name', 'ops'], down.io)).toBe(1);
    expect(down.out()).toMatch(/^FAIL  server +connecting: no MongoDB server answered \(127\.0\.0\.1:9\)/m);
    expect(down.out() + down.err()).not.toContain('hunter2-secret');
  });

  it('without a connection string: a usage error naming MONGODB_URI', async () => {
    const run = captureCli({});
    expect(await main(['doctor'], run.io)).toBe(1);
    expect(run.err()).toMatch(/error: doctor: no connection string\nhint: set MONGODB_URI/);
  });
});
