/**
 * The program in external mode, under Pulumi's mocks: no Docker resource at all, provisioning only, against the
 * secret `uri`, and no capsule deletion on destroy unless asked.
 */
import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { writePublicIdentity, type PublicIdentityFile } from './support/identity.ts';
import { installMocks, one, promiseOf, secretInput, TYPES, type Registration } from './support/pulumi-mocks.ts';

const URI = 'mongodb+srv://operator:s3cr%40t-pass@cluster0.example.net/?retryWrites=true';
let registrations: Registration[];
let program: Record<string, pulumi.Output<any>>;
let identity: PublicIdentityFile;

beforeAll(async () => {
  identity = await writePublicIdentity('ops');
  ({ registrations } = await installMocks({
    stack: 'atlas',
    config: {
      'mongo-capsule:mode': 'external',
      'mongo-capsule:uri': URI,
      'mongo-capsule:publicKeyPath': identity.path,
      'mongo-capsule:sign': 'false',
    },
    secretKeys: ['mongo-capsule:uri'],
  }));
  program = await import('../../infra/index.ts');
  await promiseOf(program.kid!);
});

describe('program, external mode', () => {
  it('creates no Docker resource, no keyfile and no replica set', () => {
    expect(registrations.filter((r) => r.type.startsWith('docker:'))).toEqual([]);
    expect(registrations.filter((r) => r.type === TYPES.secretBytes || r.type === TYPES.replicaSet)).toEqual([]);
  });

  it('provisions the existing cluster with the secret URI, without initiate or root user', () => {
    const run = one(registrations, TYPES.provisionRun);
    expect(secretInput(run.inputs.uri)).toBe(URI);
    expect(run.inputs).toMatchObject({
      mode: 'external',
      members: null,
      rootUsername: null,
      rootPassword: null,
      recipient: identity.text,
      sign: false,
      deleteCapsuleOnDestroy: false,
    });
    expect(run.additionalSecretOutputs).toEqual(expect.arrayContaining(['uri']));
    for (const r of registrations) {
      const { uri: _uri, ...rest } = r.inputs;
      // The whole password, raw and encoded: a short fragment can occur by chance in a base64 public key.
      for (const secret of ['s3cr@t-pass', 's3cr%40t-pass']) expect(JSON.stringify(rest)).not.toContain(secret);
    }
  });

  it('exports the operator URI as a secret and no members', async () => {
    expect(await pulumi.isSecret(program.connectionString!)).toBe(true);
    expect(await promiseOf(program.connectionString!)).toBe(URI);
    expect(await promiseOf(program.members!)).toEqual([]);
    expect(await promiseOf(program.capsuleName!)).toBe('default');
  });
});
