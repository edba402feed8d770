/**
 * The program with the default configuration (docker mode, 1 member), under Pulumi's mocks: every requirement
 * of DESIGN.md §6 that shows in resource inputs, and the stack outputs.
 */
import * as pulumi from '@pulumi/pulumi';
import { MongoClient } from 'mongodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { HEALTHCHECK_EVAL, KEYFILE_LENGTH, KEYFILE_PATH, ROOT_PASSWORD_PATH } from '../../infra/mongod.ts';
import { writePublicIdentity, type PublicIdentityFile } from './support/identity.ts';
import { FAKE_KID, installMocks, one, ofType, promiseOf, secretInput, TYPES, type Registration } from './support/pulumi-mocks.ts';

let registrations: Registration[];
let program: Record<string, pulumi.Output<any>>;
let identity: PublicIdentityFile;

beforeAll(async () => {
  identity = await writePublicIdentity();
  ({ registrations } = await installMocks({ config: { 'mongo-capsule:publicKeyPath': identity.path } }));
  program = await import('../../infra/index.ts');
  await promiseOf(program.kid!);
});

function container(): Registration {
  return one(registrations, TYPES.container);
}

/** The uploads reach the engine as one secret (they hold the keyfile and the password). */
function uploads(): any[] {
  return secretInput(container().inputs.uploads);
}

describe('program, docker mode, 1 member', () => {
  it('creates the components with their type tokens, children named after them', () => {
    expect(one(registrations, TYPES.replicaSet).name).toBe('mongo');
    expect(one(registrations, TYPES.provisioning).name).toBe('provisioning');
    const replicaSetUrn = one(registrations, TYPES.replicaSet).urn;
    for (const r of [...ofType(registrations, TYPES.container), ...ofType(registrations, TYPES.volume), one(registrations, TYPES.network)]) {
      expect(r.name.startsWith('mongo-')).toBe(true);
      expect(r.parent).toBe(replicaSetUrn);
    }
  });

  it('pulls the pinned image once and keeps it on destroy', () => {
    const image = one(registrations, TYPES.remoteImage);
    expect(image.inputs).toMatchObject({ name: 'mongo:6', keepLocally: true });
    // A plain name, no pullTriggers and no forceRemove: the provider uses an image the engine already has as it is
    // (only a missing one is pulled), so a local-only `mongo-capsule:image` works offline (npm run up checks it first).
    expect(image.inputs.pullTriggers).toBeUndefined();
    expect(image.inputs.forceRemove).toBeUndefined();
    expect(container().inputs.image).toMatch(/^sha256:/);
  });

  it('runs mongod with --replSet rs0, the keyfile, --bind_ip_all and its own port', () => {
    expect(container().inputs.command).toEqual(['mongod', '--replSet', 'rs0', '--keyFile', KEYFILE_PATH, '--bind_ip_all', '--port', '27017']);
    expect(container().inputs.entrypoints).toBeUndefined(); // the image's entrypoint drops to uid 999
    expect(container().inputs.user).toBeUndefined();
  });

  it('uploads one keyfile of 1008 base64 characters as 999:999 mode 0400, generated once as a secret', () => {
    const keyfile = ofType(registrations, TYPES.secretBytes).find((r) => r.name === 'mongo-keyfile')!;
    expect(keyfile.inputs).toMatchObject({ length: 756, encoding: 'base64' });
    expect(keyfile.additionalSecretOutputs).toContain('value');
    const upload = uploads().find((u) => u.file === KEYFILE_PATH);
    expect(upload).toMatchObject({ owner: '999', group: '999', permissions: '0400' });
    const content = upload.content;
    expect(content).toHaveLength(KEYFILE_LENGTH);
    expect(content).toMatch(/^[A-Za-z0-9+/]+$/);
  });

  it('creates the root user on member 0 from a password file, never from an environment value', async () => {
    const password = await promiseOf(program.connectionString!.apply((s: string) => new URL(s).password));
    expect(container().inputs.envs).toEqual(['MONGO_INITDB_ROOT_USERNAME=root', `MONGO_INITDB_ROOT_PASSWORD_FILE=${ROOT_PASSWORD_PATH}`]);
    const upload = uploads().find((u) => u.file === ROOT_PASSWORD_PATH);
    expect(upload).toMatchObject({ owner: '999', group: '999', permissions: '0400' });
    expect(upload.content).toBe(password);
    const rootPassword = ofType(registrations, TYPES.secretBytes).find((r) => r.name === 'mongo-root-password')!;
    expect(rootPassword.inputs).toMatchObject({ length: 32, encoding: 'hex' });
    expect(rootPassword.additionalSecretOutputs).toContain('value');
  });

  it('never puts the password on a command line, in the environment, a label or a health check', async () => {
    const password = await promiseOf(program.connectionString!.apply((s: string) => new URL(s).password));
    expect(password).toMatch(/^[0-9a-f]{64}$/);
    for (const r of registrations) {
      const { uploads, __provider, ...visible } = r.inputs;
      if (r.type === TYPES.provisionRun) {
        // Secret inputs of the provisioning step (checked below).
        delete visible.rootPassword;
        delete visible.uri;
      }
      if (r.type === TYPES.secretBytes) delete visible.value;
      expect(JSON.stringify(visible)).not.toContain(password);
      if (typeof __provider === 'string') expect(__provider).not.toContain(password);
    }
  });

  it('checks health with mongosh hello (no credentials) and restarts unless stopped', () => {
    expect(container().inputs.healthcheck.tests).toEqual(['CMD', 'mongosh', '--quiet', '--port', '27017', '--eval', HEALTHCHECK_EVAL]);
    expect(container().inputs.restart).toBe('unless-stopped');
    expect(container().inputs.wait).toBe(true);
  });

  it('publishes the port on 127.0.0.1 only, the same inside and out', () => {
    expect(container().inputs.ports).toEqual([{ internal: 27017, external: 27017, ip: '127.0.0.1', protocol: 'tcp' }]);
  });

  it('keeps /data/db and /data/configdb on named volumes, on its own network', () => {
    const volumes = ofType(registrations, TYPES.volume).map((v) => v.inputs.name).sort();
    expect(volumes).toEqual(['mongo-capsule-dev-0-configdb', 'mongo-capsule-dev-0-db']);
    expect(container().inputs.volumes).toEqual([
      { volumeName: 'mongo-capsule-dev-0-db', containerPath: '/data/db' },
      { volumeName: 'mongo-capsule-dev-0-configdb', containerPath: '/data/configdb' },
    ]);
    expect(one(registrations, TYPES.network).inputs.name).toBe('mongo-capsule-dev-net');
    expect(container().inputs.networksAdvanced).toEqual([{ name: 'mongo-capsule-dev-net', aliases: ['mongo-capsule-dev-0'] }]);
    expect(container().inputs.name).toBe('mongo-capsule-dev-0');
  });

  it('removes a named Docker object before creating its replacement (names are unique per host)', () => {
    for (const r of registrations.filter((x) => [TYPES.container, TYPES.volume, TYPES.network].includes(x.type as never))) {
      expect(r.deleteBeforeReplace).toBe(true);
    }
  });

  it('provisions after the containers, with the member list and the credentials as secrets', () => {
    const run = one(registrations, TYPES.provisionRun);
    const password = secretInput(run.inputs.rootPassword);
    expect(password).toMatch(/^[0-9a-f]{64}$/);
    expect(secretInput(run.inputs.uri)).toBe(`mongodb://root:${password}@127.0.0.1:27017/?directConnection=true&authSource=admin`);
    expect(run.inputs).toMatchObject({
      mode: 'docker',
      members: ['localhost:27017'],
      rootUsername: 'root',
      capsuleName: 'default',
      recipient: identity.text,
      sign: true,
      dataKeyAltNames: ['default'],
      deleteCapsuleOnDestroy: false,
    });
    expect(run.additionalSecretOutputs).toEqual(expect.arrayContaining(['uri', 'rootPassword']));
    expect(run.dependencies.some((d) => d.endsWith(`${TYPES.container}::${container().name}`))).toBe(true);
    expect(typeof run.inputs.__provider).toBe('string');
  });

  it('exports a secret connection string with directConnection=true that the driver accepts', async () => {
    expect(await pulumi.isSecret(program.connectionString!)).toBe(true);
    const uri = await promiseOf(program.connectionString!);
    expect(uri).toMatch(/^mongodb:\/\/root:[0-9a-f]{64}@127\.0\.0\.1:27017\/\?directConnection=true&authSource=admin$/);
    const client = new MongoClient(uri); // parses only; never connects
    expect(client.options.hosts.map(String)).toEqual(['127.0.0.1:27017']);
    expect(client.options.directConnection).toBe(true);
    await client.close();
  });

  it('exports the capsule name, kid and members', async () => {
    expect(await promiseOf(program.capsuleName!)).toBe('default');
    expect(await promiseOf(program.kid!)).toBe(FAKE_KID);
    expect(await promiseOf(program.members!)).toEqual(['localhost:27017']);
    expect(await pulumi.isSecret(program.members!)).toBe(false);
  });
});
