/**
 * The program with 3 members and a custom base port, under Pulumi's mocks: same port inside and out, advertised
 * names that resolve on the host and in the network, one keyfile on every member, the root user on member 0 only.
 */
import * as pulumi from '@pulumi/pulumi';
import { MongoClient } from 'mongodb';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { HEALTHCHECK_EVAL, KEYFILE_PATH, ROOT_PASSWORD_PATH } from '../../infra/mongod.ts';
import { writePublicIdentity } from './support/identity.ts';
import { installMocks, one, ofType, promiseOf, secretInput, TYPES, type Registration } from './support/pulumi-mocks.ts';

// This host maps *.localhost to loopback (as systemd-resolved does); the program checks it before creating anything.
vi.mock('node:dns/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:dns/promises')>();
  return {
    ...real,
    lookup: async (host: string, options: unknown) =>
      host.endsWith('.localhost') ? [{ address: '127.0.0.1', family: 4 }] : real.lookup(host, options as never),
  };
});

let registrations: Registration[];
let program: Record<string, pulumi.Output<any>>;
const names = ['mongo-capsule-ci-0', 'mongo-capsule-ci-1', 'mongo-capsule-ci-2'];
const hosts = names.map((n) => `${n}.localhost`);

beforeAll(async () => {
  const identity = await writePublicIdentity();
  ({ registrations } = await installMocks({
    stack: 'ci',
    config: {
      'mongo-capsule:publicKeyPath': identity.path,
      'mongo-capsule:members': '3',
      'mongo-capsule:basePort': '28017',
      'mongo-capsule:capsuleName': 'orders',
    },
  }));
  program = await import('../../infra/index.ts');
  await promiseOf(program.kid!);
});

function containers(): Registration[] {
  return ofType(registrations, TYPES.container).sort((a, b) => a.inputs.name.localeCompare(b.inputs.name));
}

describe('program, docker mode, 3 members', () => {
  it('runs three members, each on its own port, published on 127.0.0.1 with the same number inside', () => {
    expect(containers().map((c) => c.inputs.name)).toEqual(names);
    containers().forEach((c, i) => {
      const port = 28017 + i;
      expect(c.inputs.command).toEqual(['mongod', '--replSet', 'rs0', '--keyFile', KEYFILE_PATH, '--bind_ip_all', '--port', String(port)]);
      expect(c.inputs.ports).toEqual([{ internal: port, external: port, ip: '127.0.0.1', protocol: 'tcp' }]);
      expect(c.inputs.healthcheck.tests).toEqual(['CMD', 'mongosh', '--quiet', '--port', String(port), '--eval', HEALTHCHECK_EVAL]);
      expect(c.inputs.restart).toBe('unless-stopped');
    });
  });

  it('gives each member its advertised name as a network alias on one network', () => {
    const network = one(registrations, TYPES.network).inputs.name;
    containers().forEach((c, i) => {
      expect(c.inputs.networksAdvanced).toEqual([{ name: network, aliases: [names[i], hosts[i]] }]);
    });
  });

  it('puts the same keyfile on every member, as 999:999 mode 0400', () => {
    const keyfiles = containers().map((c) => (secretInput(c.inputs.uploads) as any[]).find((u) => u.file === KEYFILE_PATH));
    for (const k of keyfiles) expect(k).toMatchObject({ owner: '999', group: '999', permissions: '0400' });
    expect(new Set(keyfiles.map((k) => k.content)).size).toBe(1);
    expect(ofType(registrations, TYPES.secretBytes).filter((r) => r.inputs.length === 756)).toHaveLength(1);
  });

  it('creates the root user on member 0 only; the others start empty', () => {
    const [first, ...others] = containers();
    expect(first!.inputs.envs).toEqual(['MONGO_INITDB_ROOT_USERNAME=root', `MONGO_INITDB_ROOT_PASSWORD_FILE=${ROOT_PASSWORD_PATH}`]);
    expect((secretInput(first!.inputs.uploads) as any[]).map((u) => u.file)).toEqual([KEYFILE_PATH, ROOT_PASSWORD_PATH]);
    for (const c of others) {
      expect(c.inputs.envs ?? []).toEqual([]);
      expect((secretInput(c.inputs.uploads) as any[]).map((u) => u.file)).toEqual([KEYFILE_PATH]);
    }
  });

  it('gives every member its own two named volumes', () => {
    expect(ofType(registrations, TYPES.volume).map((v) => v.inputs.name).sort()).toEqual(
      names.flatMap((n) => [`${n}-configdb`, `${n}-db`]).sort(),
    );
  });

  it('initiates with the explicit advertised member list and waits for all three containers', () => {
    const run = one(registrations, TYPES.provisionRun);
    expect(run.inputs.members).toEqual(hosts.map((h, i) => `${h}:${28017 + i}`));
    const password = secretInput(run.inputs.rootPassword);
    expect(secretInput(run.inputs.uri)).toBe(`mongodb://root:${password}@${hosts.map((h, i) => `${h}:${28017 + i}`).join(',')}/?replicaSet=rs0&authSource=admin`);
    expect(run.inputs.capsuleName).toBe('orders');
    for (const c of containers()) {
      expect(run.dependencies.some((d) => d.endsWith(`${TYPES.container}::${c.name}`))).toBe(true);
    }
  });

  it('exports a secret seed-list URI with replicaSet=rs0 and never directConnection', async () => {
    expect(await pulumi.isSecret(program.connectionString!)).toBe(true);
    const uri: string = await promiseOf(program.connectionString!);
    expect(uri).not.toContain('directConnection');
    const client = new MongoClient(uri); // parses only; never connects
    expect(client.options.hosts.map(String)).toEqual(hosts.map((h, i) => `${h}:${28017 + i}`));
    expect(client.options.replicaSet).toBe('rs0');
    expect(client.options.credentials?.source).toBe('admin');
    await client.close();
    expect(await promiseOf(program.members!)).toEqual(hosts.map((h, i) => `${h}:${28017 + i}`));
    expect(await promiseOf(program.capsuleName!)).toBe('orders');
  });
});
