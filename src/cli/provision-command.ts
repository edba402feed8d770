/**
 * `provision` and `deprovision`: the machine interface that `pulumi up` and `pulumi destroy` drive
 * (infra/provisioner.ts). One JSON request on stdin, because it holds secrets (root password, a connection
 * string with credentials) that must never be on a command line; one JSON answer on stdout; progress lines on
 * stderr; failures as everywhere in the CLI (message and hint on stderr, exit code 1), never echoing the request.
 *
 * The work itself is `provisionCluster` (src/mongo/provision.ts); the keychain supplies the signer and the
 * unwrap that proves the new capsule opens.
 */
import { recordSealedInCluster } from './capsule-locations.ts';
import { decodePublicIdentity, type SecretIdentity } from '../crypto/index.ts';
import { ConfigInvalidError, InvalidArgumentError, isMongoCapsuleError, UsageError } from '../errors.ts';
import { KEYCHAIN_SERVICE, OsKeychain } from '../keys/keychain.ts';
import { KeyManager } from '../keys/manager.ts';
import { resolveKeychain } from '../keys/secret-source.ts';
import { CapsuleStore, connect, DEFAULT_SERVER_SELECTION_TIMEOUT_MS, describeHosts, mongoError, parseNamespace, provisionCluster } from '../mongo/index.ts';
import { parseCommandArgs } from './args.ts';
import { KEYCHAIN_SERVICE_ENV } from './keys-commands.ts';
import type { CliIO, Command } from './types.ts';

/** Version of the request format; infra/provisioner.ts sends the same number. */
export const PROVISION_PROTOCOL = 1;
const MAX_REQUEST_BYTES = 1 << 20;

export interface ProvisionRequest {
  protocol: 1;
  uri: string;
  replicaSet: { members: string[] } | null;
  rootUser: { username: string; password: string } | null;
  capsuleName: string;
  /** The recipient's public identity file (`<name>.pub.json` text). */
  recipient: string;
  sign: boolean;
  dataKeyAltNames: string[];
  timeoutMs: number;
}

export interface DeprovisionRequest {
  protocol: 1;
  uri: string;
  capsuleName: string;
  /** Only a capsule still sealed for this kid is removed. */
  kid: string;
  timeoutMs: number;
}

async function readRequest(command: string, io: Pick<CliIO, 'stdin'>): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of io.stdin) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    size += b.length;
    if (size > MAX_REQUEST_BYTES) throw new UsageError(`${command}: the request on stdin is larger than ${MAX_REQUEST_BYTES} bytes`, HINT);
    chunks.push(b);
  }
  const text = Buffer.concat(chunks);
  try {
    const value: unknown = JSON.parse(text.toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch {
    // Never quote the input: it holds secrets.
    throw new UsageError(`${command}: stdin must hold one JSON object (the request)`, HINT);
  } finally {
    text.fill(0);
    for (const c of chunks) c.fill(0);
  }
}

const HINT = 'this command is driven by `pulumi up` (infra/); see docs/infra.md';

function bad(command: string, field: string, expected: string): UsageError {
  return new UsageError(`${command}: request field "${field}" must be ${expected}`, HINT);
}

function str(command: string, r: Record<string, unknown>, field: string): string {
  const v = r[field];
  if (typeof v !== 'string' || v.length === 0) throw bad(command, field, 'a non-empty string');
  return v;
}

function int(command: string, r: Record<string, unknown>, field: string): number {
  const v = r[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1_000 || v > 3_600_000) throw bad(command, field, 'milliseconds from 1000 to 3600000');
  return v;
}

function strings(command: string, v: unknown, field: string): string[] {
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s.length === 0)) throw bad(command, field, 'an array of non-empty strings');
  return v as string[];
}

function checkProtocol(command: string, r: Record<string, unknown>): void {
  if (r.protocol !== PROVISION_PROTOCOL) {
    throw new UsageError(`${command}: unsupported request protocol ${JSON.stringify(r.protocol)} (this CLI speaks ${PROVISION_PROTOCOL})`, 'use the infra/ program of the same checkout as this CLI');
  }
}

export function parseProvisionRequest(r: Record<string, unknown>): ProvisionRequest {
  const c = 'provision';
  checkProtocol(c, r);
  let replicaSet: ProvisionRequest['replicaSet'] = null;
  if (r.replicaSet !== null && r.replicaSet !== undefined) {
    if (typeof r.replicaSet !== 'object') throw bad(c, 'replicaSet', 'an object or null');
    replicaSet = { members: strings(c, (r.replicaSet as Record<string, unknown>).members, 'replicaSet.members') };
    if (replicaSet.members.length === 0) throw bad(c, 'replicaSet.members', 'a non-empty array');
  }
  let rootUser: ProvisionRequest['rootUser'] = null;
  if (r.rootUser !== null && r.rootUser !== undefined) {
    if (typeof r.rootUser !== 'object') throw bad(c, 'rootUser', 'an object or null');
    const u = r.rootUser as Record<string, unknown>;
    rootUser = { username: str(c, u, 'username'), password: str(c, u, 'password') };
  }
  if (typeof r.sign !== 'boolean') throw bad(c, 'sign', 'true or false');
  return {
    protocol: PROVISION_PROTOCOL,
    uri: str(c, r, 'uri'),
    replicaSet,
    rootUser,
    capsuleName: str(c, r, 'capsuleName'),
    recipient: str(c, r, 'recipient'),
    sign: r.sign,
    dataKeyAltNames: strings(c, r.dataKeyAltNames, 'dataKeyAltNames'),
    timeoutMs: int(c, r, 'timeoutMs'),
  };
}

export function parseDeprovisionRequest(r: Record<string, unknown>): DeprovisionRequest {
  const c = 'deprovision';
  checkProtocol(c, r);
  return { protocol: PROVISION_PROTOCOL, uri: str(c, r, 'uri'), capsuleName: str(c, r, 'capsuleName'), kid: str(c, r, 'kid'), timeoutMs: int(c, r, 'timeoutMs') };
}

async function keyManagerFor(io: CliIO): Promise<KeyManager> {
  const keychain = await resolveKeychain({
    env: io.env,
    warn: (m) => io.stderr.write(`${m}\n`),
    keychain: new OsKeychain({ service: io.env[KEYCHAIN_SERVICE_ENV] || KEYCHAIN_SERVICE }),
  });
  return new KeyManager({ keychain });
}

function requireJsonFlag(command: string, args: string[]): void {
  const { values } = parseCommandArgs(command, args, { json: { type: 'boolean' } });
  if (values.json !== true) throw new UsageError(`${command}: pass --json; the request is read from stdin`, HINT);
}

const provision: Command = {
  summary: 'provision a cluster from a JSON request on stdin (driven by `pulumi up`)',
  usage: `Usage: mongo-capsule provision --json < request.json

What \`pulumi up\` runs after the containers are healthy: initiate the replica set with its member list, wait
for a writable primary, make sure the root user exists, seal a new CSFLE master key into a signed capsule for the
recipient and seed it (once), then create the data keys. Idempotent. The request (a JSON object on stdin, since it
holds credentials) carries: protocol, uri, replicaSet {members}, rootUser {username, password}, capsuleName,
recipient (the .pub.json text), sign, dataKeyAltNames, timeoutMs. Prints {"capsuleName", "kid", "created",
"dataKeyIds"} as JSON; progress goes to stderr. Signing and the proof that the capsule opens use the recipient's
identity from the OS keychain (or MONGO_CAPSULE_SECRET_IDENTITY).`,
  async run(args, io) {
    requireJsonFlag('provision', args);
    const req = parseProvisionRequest(await readRequest('provision', io));
    const recipient = decodePublicIdentity(req.recipient);
    const km = await keyManagerFor(io);
    try {
      // The identity's secret half, when this machine has it: it signs the capsule and proves that it opens.
      let hasSecret: boolean;
      try {
        hasSecret = await km.isInitialized(recipient.name);
      } catch (e) {
        if (req.sign || !isMongoCapsuleError(e)) throw e;
        hasSecret = false;
      }
      let signer: SecretIdentity | undefined;
      if (hasSecret) {
        const secret = await km.getSecretIdentity(recipient.name);
        if (secret.kid !== recipient.kid) {
          throw new InvalidArgumentError(
            `provision: the public identity file (kid ${recipient.kid}) is not the identity ${JSON.stringify(recipient.name)} of the keychain (kid ${secret.kid})`,
            { hint: `rewrite the public file with \`mongo-capsule keys status --name ${recipient.name} --pub-out <file>\`, or point mongo-capsule:publicKeyPath at the right file` },
          );
        }
        if (!req.sign) {
          // An unsigned capsule is refused by every opener, this machine's included; signing is free here.
          throw new ConfigInvalidError(`provision: mongo-capsule:sign is false, but identity ${JSON.stringify(recipient.name)} is on this machine: the unsigned capsule would be refused by every client; nothing was written`, {
            hint: 'remove `mongo-capsule:sign false` (signing is the default); unsigned seeding is only for a machine without the identity, followed by `mongo-capsule endorse` on the owner\'s machine',
          });
        }
        signer = secret;
      } else if (!req.sign) {
        io.stderr.write(
          `WARNING: capsule ${req.capsuleName} is seeded UNSIGNED (mongo-capsule:sign false) and nothing will open it yet: ` +
            `the owner of identity ${JSON.stringify(recipient.name)} must run \`mongo-capsule endorse --capsule ${req.capsuleName}\` on the machine that holds it\n`,
        );
      } else {
        throw new InvalidArgumentError(`provision: cannot sign the capsule: identity ${JSON.stringify(recipient.name)} is not in the keychain of this machine`, {
          hint: 'run `npm run init` on this machine (or set MONGO_CAPSULE_SECRET_IDENTITY_FILE); `mongo-capsule:sign false` seeds an unsigned capsule that nothing opens until its owner runs `mongo-capsule endorse`',
        });
      }
      io.stderr.write(`provisioning ${describeHosts(req.uri)}, capsule ${req.capsuleName} for key ${recipient.kid}\n`);
      const result = await provisionCluster({
        uri: req.uri,
        ...(req.replicaSet ? { replicaSet: { members: req.replicaSet.members.map((host) => ({ host })) } } : {}),
        ...(req.rootUser ? { rootUser: req.rootUser } : {}),
        capsuleName: req.capsuleName,
        recipient,
        ...(signer === undefined ? {} : { signer }),
        ...(hasSecret ? { unwrap: (capsule: Uint8Array) => km.unwrap(capsule, recipient.name) } : {}),
        dataKeyAltNames: req.dataKeyAltNames,
        timeoutMs: req.timeoutMs,
        serverSelectionTimeoutMS: Math.min(req.timeoutMs, DEFAULT_SERVER_SELECTION_TIMEOUT_MS),
        onProgress: (m) => io.stderr.write(`${m}\n`),
      });
      if (hasSecret) await recordSealedInCluster(io, recipient.name, req.uri);
      if (req.replicaSet && result.replicaSet && !result.replicaSet.initiated) {
        // An existing set keeps its membership (changing it is a reconfiguration, not provisioning). Members or
        // ports that differ mean the layout changed after the cluster was created: say so instead of exporting a
        // connection string that does not match the cluster.
        const wanted = req.replicaSet.members.map((h) => h.toLowerCase()).sort();
        const actual = result.replicaSet.members.map((h) => h.toLowerCase()).sort();
        if (wanted.join(',') !== actual.join(',')) {
          throw new ConfigInvalidError(
            `provision: replica set ${result.replicaSet.name} has members ${result.replicaSet.members.join(', ')}, not ${req.replicaSet.members.join(', ')}`,
            { hint: 'members or basePort changed after the cluster was created: restore them, or recreate the cluster (`npm run down`, then `npm run up`; its data is lost)' },
          );
        }
      }
      io.stdout.write(`${JSON.stringify({ capsuleName: result.capsuleName, kid: result.kid, created: result.created, dataKeyIds: result.dataKeyIds })}\n`);
      return 0;
    } finally {
      km.clearCache();
    }
  },
};

const deprovision: Command = {
  summary: 'remove a capsule that provision seeded, from a JSON request on stdin (driven by `pulumi destroy`)',
  usage: `Usage: mongo-capsule deprovision --json < request.json

What \`pulumi destroy\` runs for an external cluster when mongo-capsule:deleteCapsuleOnDestroy is true. Removes
the capsule named in the request (protocol, uri, capsuleName, kid, timeoutMs) only while it is still sealed for
that kid; a capsule that was rotated or replaced since is left in place. Data keys are not touched: without the
capsule, data encrypted under its master key can no longer be read. Prints {"deleted": true|false} as JSON.`,
  async run(args, io) {
    requireJsonFlag('deprovision', args);
    const req = parseDeprovisionRequest(await readRequest('deprovision', io));
    const client = await connect(req.uri, {
      serverSelectionTimeoutMS: Math.min(req.timeoutMs, DEFAULT_SERVER_SELECTION_TIMEOUT_MS),
      purpose: 'connecting to remove the capsule',
    });
    try {
      const store = new CapsuleStore(client);
      const record = await store.find(req.capsuleName);
      let deleted = false;
      if (record === null) {
        io.stderr.write(`capsule ${req.capsuleName} is not there; nothing to remove\n`);
      } else if (record.header.kid !== req.kid) {
        io.stderr.write(`capsule ${req.capsuleName} is now sealed for key ${record.header.kid}, not ${req.kid}: left in place\n`);
      } else {
        // Compare-and-delete on the exact document just checked (same bytes, no rotation in progress): a rotation
        // that lands in between wins, and nothing is removed. The history collection is kept as the audit trail.
        const { db, collection } = parseNamespace(store.namespace, 'deprovision');
        try {
          const r = await client
            .db(db)
            .collection(collection)
            .deleteOne({ name: req.capsuleName, sha256: record.sha256, pendingRotation: { $exists: false } });
          deleted = r.deletedCount === 1;
        } catch (e) {
          throw mongoError(e, `removing capsule ${req.capsuleName}`);
        }
        io.stderr.write(deleted ? `removed capsule ${req.capsuleName}\n` : `capsule ${req.capsuleName} changed meanwhile: left in place\n`);
      }
      io.stdout.write(`${JSON.stringify({ deleted })}\n`);
      return 0;
    } finally {
      await client.close().catch(() => {});
    }
  },
};

export const provisionCommands: Record<string, Command> = { provision, deprovision };
