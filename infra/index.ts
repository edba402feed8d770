/**
 * The Pulumi program (`pulumi up` from the project root; Pulumi.yaml points here).
 *
 * docker mode (default): a `ReplicaSet` of 1 or 3 members, then `Provisioning` against it.
 * external mode: `Provisioning` only, against `mongo-capsule:uri` (no Docker resource at all).
 *
 * Stack outputs: `connectionString` (secret, works from the host), `capsuleName`, `kid`, `members`.
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import { ConfigInvalidError, isMongoCapsuleError } from '../src/errors.ts';
import { CONFIG_NAMESPACE, checkExternalUri, loadRecipient, parseStackConfig, unknownConfigKeys, type StackConfig } from './config.ts';
import { Provisioning } from './provisioning.ts';
import { ReplicaSet } from './replica-set.ts';
import { hostsFileLine, planMembers, resourcePrefix, unresolvedMemberHosts } from './topology.ts';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Expected failures end the program with their message and hint only (no stack trace, no source dump). */
function fail(e: unknown): never {
  if (isMongoCapsuleError(e)) throw new pulumi.RunError(e.hint ? `${e.message}\nhint: ${e.hint}` : e.message);
  throw e;
}

function readConfig(): { config: StackConfig; uri: pulumi.Output<string> | undefined } {
  const cfg = new pulumi.Config(CONFIG_NAMESPACE);
  const uri = cfg.getSecret('uri');
  const config = parseStackConfig(
    {
      mode: cfg.get('mode'),
      members: cfg.get('members'),
      image: cfg.get('image'),
      basePort: cfg.get('basePort'),
      publicKeyPath: cfg.get('publicKeyPath'),
      capsuleName: cfg.get('capsuleName'),
      sign: cfg.get('sign'),
      deleteCapsuleOnDestroy: cfg.get('deleteCapsuleOnDestroy'),
      hasUri: uri !== undefined,
    },
    PROJECT_ROOT,
  );
  return { config, uri };
}

async function loadSetup() {
  const { config, uri } = readConfig();
  const recipient = await loadRecipient(config.publicKeyPath, (p) => readFile(p, 'utf8'));
  return { config, uri, recipient };
}
const { config, uri, recipient } = await loadSetup().catch(fail);

for (const k of unknownConfigKeys(Object.keys(pulumi.runtime.allConfig()))) {
  pulumi.log.warn(`unknown configuration key ${k} is ignored (see docs/infra.md for the keys)`);
}

let connectionString: pulumi.Output<string>;
let members: pulumi.Output<string[]>;
let provisioning: Provisioning;

if (config.mode === 'docker') {
  const prefix = resourcePrefix(pulumi.getProject(), pulumi.getStack());
  // Before anything is created: 3 members advertise names that this host must resolve to 127.0.0.1, or
  // neither provisioning nor the exported connection string can reach them.
  const plan = planMembers({ prefix, members: config.members, basePort: config.basePort });
  const unresolved = await unresolvedMemberHosts(plan, (host) => lookup(host, { all: true }));
  if (unresolved.length > 0) {
    fail(
      new ConfigInvalidError(`the replica-set member names ${unresolved.join(', ')} do not resolve to 127.0.0.1 on this host`, {
        hint: `add this line to /etc/hosts (once, as root): ${hostsFileLine(plan)}`,
      }),
    );
  }
  const replicaSet = new ReplicaSet('mongo', {
    prefix,
    members: config.members,
    image: config.image,
    basePort: config.basePort,
    labels: { 'mongo-capsule.stack': pulumi.getStack() },
  });
  provisioning = new Provisioning(
    'provisioning',
    {
      mode: 'docker',
      uri: replicaSet.connectionString,
      members: replicaSet.memberAddresses,
      rootUser: { username: replicaSet.rootUsername, password: replicaSet.rootPassword },
      capsuleName: config.capsuleName,
      recipient: recipient.text,
      sign: config.sign,
    },
    { dependsOn: [replicaSet] },
  );
  connectionString = replicaSet.connectionString;
  members = replicaSet.memberAddresses;
} else {
  // Validated inside apply: the value is a secret and is never echoed, only judged.
  const externalUri = uri!.apply((u) => {
    try {
      checkExternalUri(u);
    } catch (e) {
      fail(e);
    }
    return u;
  });
  provisioning = new Provisioning('provisioning', {
    mode: 'external',
    uri: externalUri,
    capsuleName: config.capsuleName,
    recipient: recipient.text,
    sign: config.sign,
    deleteCapsuleOnDestroy: config.deleteCapsuleOnDestroy,
  });
  connectionString = pulumi.secret(externalUri);
  members = pulumi.output([]);
}

export { connectionString, members };
export const capsuleName = provisioning.capsuleName;
export const kid = provisioning.kid;
