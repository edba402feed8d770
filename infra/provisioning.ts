/**
 * `Provisioning`: everything after the containers, as one idempotent step (DESIGN.md §3.2): wait for the members
 * → initiate `rs0` with an explicit member list → wait for a writable primary → root user → generate the CSFLE
 * master key, seal it into a capsule for the recipient (signed) and seed it → create the data key(s).
 *
 * The work is done by `src/mongo` and `src/crypto` through the project CLI (`mongo-capsule provision`), run by
 * a small dynamic provider (see `provisioner.ts` for why a child process). A second `pulumi up` with the same
 * inputs changes nothing; `pulumi destroy` removes a capsule from an external cluster only when
 * `deleteCapsuleOnDestroy` is set and this stack seeded it.
 */
import { fileURLToPath } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import { InvalidArgumentError } from '../src/errors.ts';
import { DEFAULTS, type Mode } from './config.ts';
import { SECRET_OUTPUT_KEYS, provisioner, type ProvisionInputs } from './provisioner.ts';

export const PROVISIONING_TYPE = 'mongo-capsule:index:Provisioning';
/** Type token of the dynamic resource that does the work. */
export const PROVISION_RUN_TYPE = 'pulumi-nodejs:dynamic:ProvisionRun';
export const DEFAULT_PROVISION_TIMEOUT_MS = 180_000;
export const DEFAULT_CLI_PATH = fileURLToPath(new URL('../bin/mongo-capsule', import.meta.url));

export interface ProvisioningArgs {
  /** `docker`: the cluster was just created by `ReplicaSet`; `external`: an existing cluster (e.g. Atlas). */
  readonly mode: Mode;
  /**
   * Connection string usable from this machine, credentials included (docker mode: the root user; external
   * mode: the operator's). Treated as a secret.
   */
  readonly uri: pulumi.Input<string>;
  /** docker mode: advertised `host:port` of every member, for replSetInitiate. Omit for external clusters. */
  readonly members?: pulumi.Input<pulumi.Input<string>[]>;
  /** docker mode: the root user created on member 0 (created here if the image's init phase did not). */
  readonly rootUser?: { readonly username: pulumi.Input<string>; readonly password: pulumi.Input<string> };
  /** Name of the capsule in the cluster (default `default`). */
  readonly capsuleName?: pulumi.Input<string>;
  /** The recipient's public identity file, as text (`<name>.pub.json`). */
  readonly recipient: pulumi.Input<string>;
  /** Sign the capsule with the identity's ML-DSA key from the OS keychain (default true). */
  readonly sign?: pulumi.Input<boolean>;
  /** keyAltNames of the data key(s) to create (default `[capsuleName]`). */
  readonly dataKeyAltNames?: pulumi.Input<pulumi.Input<string>[]>;
  /** Upper bound for the whole step, in milliseconds (default 180 000). */
  readonly timeoutMs?: pulumi.Input<number>;
  /** external mode: remove the capsule on `pulumi destroy` (default false). */
  readonly deleteCapsuleOnDestroy?: pulumi.Input<boolean>;
  /** Path of `bin/mongo-capsule` (default: the one of this checkout). */
  readonly cliPath?: string;
}

/** The dynamic resource that runs the provisioning; `Provisioning` is its component wrapper. */
export class ProvisionRun extends pulumi.dynamic.Resource {
  declare readonly capsuleName: pulumi.Output<string>;
  declare readonly kid: pulumi.Output<string>;
  declare readonly dataKeyIds: pulumi.Output<Record<string, string>>;
  declare readonly seededCapsule: pulumi.Output<boolean>;

  constructor(name: string, props: { [K in keyof ProvisionInputs]: pulumi.Input<ProvisionInputs[K]> }, opts: pulumi.CustomResourceOptions = {}) {
    super(
      provisioner,
      name,
      { ...props, kid: undefined, dataKeyIds: undefined, seededCapsule: undefined },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), ...SECRET_OUTPUT_KEYS] },
      undefined,
      'ProvisionRun',
    );
  }
}

export class Provisioning extends pulumi.ComponentResource {
  readonly capsuleName: pulumi.Output<string>;
  /** Key id of the recipient the capsule is sealed for. */
  readonly kid: pulumi.Output<string>;
  /** keyAltName → id (UUID string) of each data key in the key vault. */
  readonly dataKeyIds: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: ProvisioningArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super(PROVISIONING_TYPE, name, {}, opts);
    const capsuleName = args.capsuleName ?? DEFAULTS.capsuleName;
    const a = {
      ...args,
      capsuleName,
      sign: args.sign ?? DEFAULTS.sign,
      dataKeyAltNames: args.dataKeyAltNames ?? pulumi.output(capsuleName).apply((n) => [n]),
      timeoutMs: args.timeoutMs ?? DEFAULT_PROVISION_TIMEOUT_MS,
      deleteCapsuleOnDestroy: args.deleteCapsuleOnDestroy ?? DEFAULTS.deleteCapsuleOnDestroy,
      cliPath: args.cliPath ?? DEFAULT_CLI_PATH,
    };
    if (a.mode !== 'docker' && a.mode !== 'external') throw new InvalidArgumentError(`Provisioning ${name}: mode must be docker or external`);
    if (a.mode === 'docker' && (a.members === undefined || a.rootUser === undefined)) {
      throw new InvalidArgumentError(`Provisioning ${name}: docker mode needs members and rootUser`);
    }
    if (a.mode === 'external' && (a.members !== undefined || a.rootUser !== undefined)) {
      throw new InvalidArgumentError(`Provisioning ${name}: an external cluster is neither initiated nor given a root user; omit members and rootUser`);
    }

    const run = new ProvisionRun(
      `${name}-run`,
      {
        cliPath: a.cliPath,
        mode: a.mode,
        uri: pulumi.secret(a.uri),
        members: a.members === undefined ? null : pulumi.output(a.members),
        rootUsername: a.rootUser?.username ?? null,
        rootPassword: a.rootUser ? pulumi.secret(a.rootUser.password) : null,
        capsuleName: a.capsuleName,
        recipient: a.recipient,
        sign: a.sign,
        dataKeyAltNames: pulumi.output(a.dataKeyAltNames),
        timeoutMs: a.timeoutMs,
        deleteCapsuleOnDestroy: a.deleteCapsuleOnDestroy,
      },
      // The component's dependsOn is passed on to the resource that does the work, so it waits for it explicitly.
      { parent: this, ...(opts.dependsOn === undefined ? {} : { dependsOn: opts.dependsOn }) },
    );
    this.capsuleName = run.capsuleName;
    this.kid = run.kid;
    this.dataKeyIds = run.dataKeyIds;
    this.registerOutputs({ capsuleName: this.capsuleName, kid: this.kid, dataKeyIds: this.dataKeyIds });
  }
}
