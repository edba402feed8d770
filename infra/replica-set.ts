/**
 * `ReplicaSet`: a keyfile-secured `rs0` of 1 or 3 `mongod` containers on one Docker network, meeting every
 * requirement of DESIGN.md §6 that Docker can express. What the containers need is computed by the plain
 * functions of `mongod.ts` and `topology.ts`; this file only wires resources.
 *
 * The set is not initiated here: `Provisioning` does that (and the rest) once every member reports healthy.
 */
import * as docker from '@pulumi/docker';
import * as pulumi from '@pulumi/pulumi';
import { InvalidArgumentError } from '../src/errors.ts';
import { DEFAULTS } from './config.ts';
import { buildConnectionString } from './connection-string.ts';
import {
  HEALTHCHECK_TIMING,
  HEALTHY_TIMEOUT_SECONDS,
  KEYFILE_RANDOM_BYTES,
  ROOT_PASSWORD_RANDOM_BYTES,
  ROOT_USERNAME,
  healthcheckTest,
  memberEnvironment,
  memberUploads,
  mongodCommand,
} from './mongod.ts';
import { SecretBytes } from './secret-bytes.ts';
import { REPLICA_SET_NAME, clientAddresses, hostsFileLine, planMembers, replicaSetAddresses, type MemberPlan } from './topology.ts';

export interface ReplicaSetArgs {
  /**
   * Prefix of every Docker object name (containers, network, volumes), e.g. `mongo-capsule-dev`. Plain value:
   * names are part of the resource graph. Lowercase letters, digits and '-'.
   */
  readonly prefix: string;
  /** Number of members, 1 or 3 (default 1). Plain value: it decides how many resources exist. */
  readonly members?: 1 | 3;
  /** Docker image of every member (default `mongo:6`). */
  readonly image?: pulumi.Input<string>;
  /** Port of member 0 inside and outside its container; member i uses basePort + i (default 27017). */
  readonly basePort?: number;
  /** Extra labels on every container, network and volume. */
  readonly labels?: Readonly<Record<string, string>>;
}

export const REPLICA_SET_TYPE = 'mongo-capsule:index:ReplicaSet';

export class ReplicaSet extends pulumi.ComponentResource {
  /** The members as planned (names, ports, advertised addresses). */
  readonly plan: readonly MemberPlan[];
  /** Advertised `host:port` of every member, in order (for replSetInitiate and for people). */
  readonly memberAddresses: pulumi.Output<string[]>;
  /** Root connection string that works from the host, known once every member is healthy. Secret. */
  readonly connectionString: pulumi.Output<string>;
  readonly rootUsername: pulumi.Output<string>;
  /** Secret. */
  readonly rootPassword: pulumi.Output<string>;
  /** For 3 members: the /etc/hosts line that makes the advertised names resolve on any host. */
  readonly hostsFileLine: pulumi.Output<string | undefined>;

  constructor(name: string, args: ReplicaSetArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super(REPLICA_SET_TYPE, name, {}, opts);
    const { prefix, members, image, basePort, labels } = {
      ...args,
      members: args.members ?? DEFAULTS.members,
      image: args.image ?? DEFAULTS.image,
      basePort: args.basePort ?? DEFAULTS.basePort,
      labels: args.labels ?? {},
    };
    if (members !== 1 && members !== 3) throw new InvalidArgumentError(`ReplicaSet ${name}: members must be 1 or 3, got ${String(members)}`);
    if (!/^[a-z0-9][a-z0-9-]{0,55}$/.test(prefix)) {
      throw new InvalidArgumentError(`ReplicaSet ${name}: prefix must be lowercase letters, digits and '-', got ${JSON.stringify(prefix)}`);
    }
    this.plan = planMembers({ prefix, members, basePort });
    const allLabels = { 'mongo-capsule.prefix': prefix, ...labels };
    const labelList = (extra: Record<string, string> = {}) =>
      Object.entries({ ...allLabels, ...extra }).map(([label, value]) => ({ label, value }));

    // One keyfile for every member (§6.1), one root password; both generated once and kept as secrets.
    const keyfile = new SecretBytes(`${name}-keyfile`, { length: KEYFILE_RANDOM_BYTES, encoding: 'base64' }, { parent: this });
    const rootPassword = new SecretBytes(`${name}-root-password`, { length: ROOT_PASSWORD_RANDOM_BYTES, encoding: 'hex' }, { parent: this });

    // keepLocally: the image is shared with everything else on the machine; destroy must not delete it.
    const remoteImage = new docker.RemoteImage(`${name}-image`, { name: image, keepLocally: true }, { parent: this });
    // Docker names are unique per host, so a replacement must remove the old object before creating the new one
    // (Pulumi's default order, create first, would collide on the name).
    const named = { parent: this, deleteBeforeReplace: true };
    const network = new docker.Network(`${name}-network`, { name: `${prefix}-net`, driver: 'bridge', labels: labelList() }, named);

    const containers = this.plan.map((m) => {
      const volume = (kind: 'db' | 'configdb') =>
        new docker.Volume(
          `${name}-${m.index}-${kind}`,
          { name: `${m.containerName}-${kind}`, labels: labelList({ 'mongo-capsule.member': String(m.index) }) },
          named,
        );
      const dataVolume = volume('db');
      const configVolume = volume('configdb');
      return new docker.Container(
        `${name}-${m.index}`,
        {
          name: m.containerName,
          hostname: m.containerName,
          image: remoteImage.imageId,
          command: mongodCommand(m.port),
          envs: memberEnvironment(m.index),
          // Marked secret here as well as on SecretBytes, so the uploads never reach the state in plaintext.
          uploads: memberUploads(m.index, pulumi.secret(keyfile.value), pulumi.secret(rootPassword.value)),
          ports: [{ internal: m.port, external: m.port, ip: '127.0.0.1', protocol: 'tcp' }],
          networksAdvanced: [{ name: network.name, aliases: m.networkAliases }],
          volumes: [
            { volumeName: dataVolume.name, containerPath: '/data/db' },
            { volumeName: configVolume.name, containerPath: '/data/configdb' },
          ],
          healthcheck: { tests: healthcheckTest(m.port), ...HEALTHCHECK_TIMING },
          restart: 'unless-stopped',
          // `pulumi up` moves on only once the member answers ping.
          wait: true,
          waitTimeout: HEALTHY_TIMEOUT_SECONDS,
          // Let mongod shut down cleanly (it flushes the journal) before the container is removed.
          destroyGraceSeconds: 30,
          labels: labelList({ 'mongo-capsule.member': String(m.index) }),
        },
        named,
      );
    });

    const clientHosts = clientAddresses(this.plan);
    const uriOptions: Record<string, string> =
      members === 1 ? { directConnection: 'true' } : { replicaSet: REPLICA_SET_NAME };
    this.memberAddresses = pulumi.output(replicaSetAddresses(this.plan));
    this.rootUsername = pulumi.output(ROOT_USERNAME);
    this.rootPassword = pulumi.secret(rootPassword.value);
    // Resolved only once every container is healthy (it depends on their ids), so whoever uses it, provisioning
    // first, waits for all members.
    this.connectionString = pulumi.secret(
      pulumi.all([rootPassword.value, ...containers.map((c) => c.id)]).apply(([password]) =>
        buildConnectionString({ hosts: clientHosts, username: ROOT_USERNAME, password, options: { ...uriOptions, authSource: 'admin' } }),
      ),
    );
    this.hostsFileLine = pulumi.output(hostsFileLine(this.plan));

    this.registerOutputs({
      memberAddresses: this.memberAddresses,
      connectionString: this.connectionString,
      rootUsername: this.rootUsername,
      rootPassword: this.rootPassword,
      hostsFileLine: this.hostsFileLine,
    });
  }
}
