/**
 * `mongo-capsule provision|deprovision --json`, the CLI side of the provisioning step: the request protocol, its
 * errors (which never echo the request), and a real run against the test server when there is one.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { runCli } from '../support/cli.ts';
import { parseProvisionRequest } from '../../src/cli/provision-command.ts';
import { encodePublicIdentity, encodeSecretIdentity, generateIdentity, toPublicIdentity, wipeSecretIdentity } from '../../src/crypto/index.ts';
import { UsageError } from '../../src/errors.ts';
import { describeIf } from '../support/skip.ts';
import { MongoClient } from 'mongodb';
import { CapsuleStore } from '../../src/mongo/index.ts';
import { DEFAULT_CLI_PATH } from '../../infra/provisioning.ts';
import { provisioner, type ProvisionInputs } from '../../infra/provisioner.ts';
import { loadLikeTheHost } from './support/dynamic-host.ts';

const cli = (args: string[], stdin: string, env: NodeJS.ProcessEnv = {}) => runCli(args, { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdin);

const SECRET = 'hunter2-very-secret-password';

function request(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    protocol: 1,
    uri: `mongodb://root:${SECRET}@127.0.0.1:1/?directConnection=true&authSource=admin`,
    replicaSet: { members: ['localhost:27017'] },
    rootUser: { username: 'root', password: SECRET },
    capsuleName: 'default',
    recipient: '{}',
    sign: true,
    dataKeyAltNames: ['default'],
    timeoutMs: 60_000,
    ...over,
  };
}

describe('provision request protocol', () => {
  it('parses a complete request', () => {
    expect(parseProvisionRequest(request())).toMatchObject({ replicaSet: { members: ['localhost:27017'] }, rootUser: { username: 'root' }, sign: true });
    expect(parseProvisionRequest(request({ replicaSet: null, rootUser: null }))).toMatchObject({ replicaSet: null, rootUser: null });
  });

  it.each([
    [{ protocol: 2 }, 'unsupported request protocol 2'],
    [{ uri: '' }, 'request field "uri" must be a non-empty string'],
    [{ sign: 'yes' }, 'request field "sign" must be true or false'],
    [{ timeoutMs: 5 }, 'request field "timeoutMs"'],
    [{ replicaSet: { members: [] } }, 'request field "replicaSet.members" must be a non-empty array'],
    [{ rootUser: { username: 'root' } }, 'request field "password"'],
    [{ dataKeyAltNames: [''] }, 'request field "dataKeyAltNames"'],
  ])('rejects %j naming the field, never quoting a value', (over, message) => {
    let error: unknown;
    try {
      parseProvisionRequest(request(over));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toContain(message);
    expect((error as Error).message).not.toContain(SECRET);
  });

  it('refuses input that is not one JSON object without echoing it, and requires --json', async () => {
    const notJson = await cli(['provision', '--json'], `password=${SECRET}`);
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toContain('stdin must hold one JSON object');
    expect(notJson.stderr).not.toContain(SECRET);
    const noFlag = await cli(['provision'], JSON.stringify(request()));
    expect(noFlag.code).toBe(1);
    expect(noFlag.stderr).toContain('pass --json');
  });

  it('fails on an unreachable server with a typed error that holds no credential', async () => {
    const id = generateIdentity('ml-kem-1024');
    const pub = encodePublicIdentity(toPublicIdentity(id));
    const secret = encodeSecretIdentity(id);
    wipeSecretIdentity(id);
    const r = await cli(['provision', '--json'], JSON.stringify(request({ recipient: pub, dataKeyAltNames: [], timeoutMs: 2_000 })), {
      MONGO_CAPSULE_SECRET_IDENTITY: secret,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: /);
    expect(r.stderr).not.toContain(SECRET);
    expect(r.stdout).toBe('');
  }, 60_000);
});

const server = inject('mongoServer');

describeIf(server.kind !== 'none', server.reason || 'no MongoDB test server')('provision and deprovision against the test server', () => {
  it('seeds a signed capsule once, is idempotent, and removes only the capsule it seeded', async () => {
    const id = generateIdentity('ml-kem-1024', { name: 'infra' });
    const pub = encodePublicIdentity(toPublicIdentity(id));
    const secret = encodeSecretIdentity(id);
    const kid = id.kid;
    const signerKid = id.signer.kid;
    wipeSecretIdentity(id);
    const env = { MONGO_CAPSULE_SECRET_IDENTITY: secret };
    const capsuleName = `infra-${randomBytes(4).toString('hex')}`;
    // External-mode shape: no initiate, no root user (the test server has neither); no data keys (they need CSFLE).
    const req = request({ uri: server.uri, replicaSet: null, rootUser: null, capsuleName, recipient: pub, dataKeyAltNames: [] });

    const first = await cli(['provision', '--json'], JSON.stringify(req), env);
    expect(first.stderr).not.toMatch(/^error/m);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual({ capsuleName, kid, created: true, dataKeyIds: {} });
    // What `npm run up` and external mode store is signed by the identity (the default `sign: true`).
    const plain = await MongoClient.connect(server.uri);
    try {
      const stored = await new CapsuleStore(plain).load(capsuleName);
      expect(stored.header.signed).toBe(true);
      expect(stored.header.signerKid).toBe(signerKid);
    } finally {
      await plain.close();
    }
    // `sign: false` where the identity is at hand would store a capsule every opener refuses: refused, nothing written.
    const unsignedName = `${capsuleName}-u`;
    const unsigned = await cli(['provision', '--json'], JSON.stringify({ ...req, capsuleName: unsignedName, sign: false }), env);
    expect(unsigned.code).not.toBe(0);
    expect(unsigned.stderr).toMatch(/mongo-capsule:sign is false/);
    const check = await MongoClient.connect(server.uri);
    try {
      expect(await new CapsuleStore(check).find(unsignedName)).toBeNull();
    } finally {
      await check.close();
    }

    const second = await cli(['provision', '--json'], JSON.stringify(req), env);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toEqual({ capsuleName, kid, created: false, dataKeyIds: {} });

    const removeReq = (k: string) => JSON.stringify({ protocol: 1, uri: server.uri, capsuleName, kid: k, timeoutMs: 30_000 });
    const wrongKid = await cli(['deprovision', '--json'], removeReq('0'.repeat(32)));
    expect(wrongKid.code).toBe(0);
    expect(JSON.parse(wrongKid.stdout)).toEqual({ deleted: false });
    expect(wrongKid.stderr).toContain('left in place');

    const removed = await cli(['deprovision', '--json'], removeReq(kid));
    expect(removed.code).toBe(0);
    expect(JSON.parse(removed.stdout)).toEqual({ deleted: true });
    const again = await cli(['deprovision', '--json'], removeReq(kid));
    expect(JSON.parse(again.stdout)).toEqual({ deleted: false });
  }, 120_000);

  it('runs end to end: the serialized provider spawns bin/mongo-capsule, which provisions; destroy removes what it seeded', async () => {
    const id = generateIdentity('ml-kem-1024', { name: 'infra-e2e' });
    const pub = encodePublicIdentity(toPublicIdentity(id));
    const secret = encodeSecretIdentity(id);
    const kid = id.kid;
    wipeSecretIdentity(id);
    const saved = process.env.MONGO_CAPSULE_SECRET_IDENTITY;
    process.env.MONGO_CAPSULE_SECRET_IDENTITY = secret; // the provider passes the user's environment on
    try {
      const { provider } = await loadLikeTheHost(provisioner);
      const inputs: ProvisionInputs = {
        cliPath: DEFAULT_CLI_PATH,
        mode: 'external',
        uri: server.uri,
        members: null,
        rootUsername: null,
        rootPassword: null,
        capsuleName: `infra-e2e-${randomBytes(4).toString('hex')}`,
        recipient: pub,
        sign: true,
        dataKeyAltNames: [],
        timeoutMs: 60_000,
        deleteCapsuleOnDestroy: true,
      };
      const created = await provider.create(inputs);
      expect(created.outs).toMatchObject({ kid, seededCapsule: true, dataKeyIds: {} });
      expect(await provider.diff!(created.id, created.outs!, inputs)).toMatchObject({ changes: false });
      const again = await provider.update!(created.id, created.outs!, inputs);
      expect(again.outs).toMatchObject({ kid, seededCapsule: true });
      await provider.delete!(created.id, created.outs!);
      const gone = await cli(['deprovision', '--json'], JSON.stringify({ protocol: 1, uri: server.uri, capsuleName: inputs.capsuleName, kid, timeoutMs: 30_000 }));
      expect(JSON.parse(gone.stdout)).toEqual({ deleted: false });
    } finally {
      if (saved === undefined) delete process.env.MONGO_CAPSULE_SECRET_IDENTITY;
      else process.env.MONGO_CAPSULE_SECRET_IDENTITY = saved;
    }
  }, 180_000);
});
