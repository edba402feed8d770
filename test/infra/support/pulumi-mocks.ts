/**
 * Pulumi mocks for the program tests: set once per test file (each file runs in its own process), every
 * registration recorded with its inputs, and the resource options the engine would act on
 * (additionalSecretOutputs, dependencies), which `MockResourceArgs` does not carry, read from the request.
 */
import * as pulumi from '@pulumi/pulumi';
import { MockMonitor } from '@pulumi/pulumi/runtime/mocks.js';

export interface Registration {
  type: string;
  name: string;
  custom: boolean;
  inputs: Record<string, any>;
  /** Filled from the RegisterResourceRequest. */
  additionalSecretOutputs: string[];
  dependencies: string[];
  deleteBeforeReplace: boolean;
  parent: string;
  urn: string;
}

export interface MockOptions {
  config?: Record<string, string>;
  secretKeys?: string[];
  project?: string;
  stack?: string;
}

export const FAKE_KID = '00112233445566778899aabbccddeeff';
export const FAKE_DATA_KEY_ID = '6f0e1c2a-0000-4000-8000-000000000001';

function fakeState(type: string, inputs: Record<string, any>): Record<string, any> {
  switch (type) {
    case 'docker:index/remoteImage:RemoteImage':
      return { ...inputs, imageId: `sha256:${'ab'.repeat(32)}`, repoDigest: `mongo@sha256:${'cd'.repeat(32)}` };
    case 'pulumi-nodejs:dynamic:SecretBytes': {
      // Deterministic but distinct per length, shaped like the real thing.
      const bytes = Buffer.alloc(inputs.length as number, inputs.length === 756 ? 0x4b : 0x50);
      return { ...inputs, value: bytes.toString(inputs.encoding as BufferEncoding) };
    }
    case 'pulumi-nodejs:dynamic:ProvisionRun':
      return { ...inputs, kid: FAKE_KID, dataKeyIds: { [String(inputs.capsuleName)]: FAKE_DATA_KEY_ID }, seededCapsule: true };
    default:
      return inputs;
  }
}

export async function installMocks(options: MockOptions = {}): Promise<{ registrations: Registration[] }> {
  const registrations: Registration[] = [];
  type RequestOptions = Pick<Registration, 'additionalSecretOutputs' | 'dependencies' | 'deleteBeforeReplace' | 'parent'>;
  const requests = new Map<string, RequestOptions>();

  const original = MockMonitor.prototype.registerResource;
  MockMonitor.prototype.registerResource = function (this: MockMonitor, req: any, callback: any) {
    requests.set(`${req.getType()}::${req.getName()}`, {
      additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
      dependencies: req.getDependenciesList(),
      deleteBeforeReplace: req.getDeletebeforereplace(),
      parent: req.getParent(),
    });
    return original.call(this, req, callback);
  };

  pulumi.runtime.setAllConfig(options.config ?? {}, options.secretKeys ?? []);
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const extra = requests.get(`${args.type}::${args.name}`) ?? { additionalSecretOutputs: [], dependencies: [], deleteBeforeReplace: false, parent: '' };
        const urn = `urn:pulumi:${options.stack ?? 'dev'}::${options.project ?? 'mongo-capsule'}::${args.type}::${args.name}`;
        registrations.push({ type: args.type, name: args.name, custom: args.custom ?? false, inputs: args.inputs, urn, ...extra });
        return { id: args.custom ? `${args.name}-id` : undefined, state: fakeState(args.type, args.inputs) };
      },
      call(args) {
        return args.inputs;
      },
    },
    options.project ?? 'mongo-capsule',
    options.stack ?? 'dev',
    false,
  );
  return { registrations };
}

/** Resolves to an Output's value (tests run without preview, so values are known). */
export function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((v) => (resolve(v), v)));
}

export function ofType(registrations: readonly Registration[], type: string): Registration[] {
  return registrations.filter((r) => r.type === type);
}

export function one(registrations: readonly Registration[], type: string): Registration {
  const found = ofType(registrations, type);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0]!;
}

export const TYPES = {
  container: 'docker:index/container:Container',
  network: 'docker:index/network:Network',
  volume: 'docker:index/volume:Volume',
  remoteImage: 'docker:index/remoteImage:RemoteImage',
  secretBytes: 'pulumi-nodejs:dynamic:SecretBytes',
  provisionRun: 'pulumi-nodejs:dynamic:ProvisionRun',
  replicaSet: 'mongo-capsule:index:ReplicaSet',
  provisioning: 'mongo-capsule:index:Provisioning',
} as const;

// How the mock monitor hands over secret inputs: { [SPECIAL_SIG_KEY]: SECRET_SIG, value }.
const SPECIAL_SIG_KEY = '4dabf18193072939515e22adb298388d';
const SECRET_SIG = '1b47061264138c4ac30d75fd1eb44270';

/** True when an input value arrived marked as a Pulumi secret. */
export function isSecretInput(v: unknown): boolean {
  return typeof v === 'object' && v !== null && (v as Record<string, unknown>)[SPECIAL_SIG_KEY] === SECRET_SIG;
}

/** The value of a secret input; fails the test when the input is not marked secret. */
export function secretInput(v: unknown): any {
  if (!isSecretInput(v)) throw new Error(`expected a secret input, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return (v as { value: unknown }).value;
}
