/**
 * CLI commands for identities kept in the OS keychain: `init` and `keys status|delete|rotate|migrate`.
 * Importing this module also lets `unwrap --name` and `wrap --sign-name` read identities from the keychain
 * (or from the explicit environment opt-in; see src/keys/secret-source.ts).
 */
import { readFile } from 'node:fs/promises';
import {
  decodePublicIdentity,
  DEFAULT_SUITE,
  encodePublicIdentity,
  type PublicIdentity,
  type SecretIdentity,
} from '../crypto/index.ts';
import { FileExistsError, NotInitializedError, UsageError } from '../errors.ts';
import { FileCapsuleRepository } from '../keys/file-capsule-repository.ts';
import { KEYCHAIN_SERVICE, OsKeychain, type Keychain } from '../keys/keychain.ts';
import { KeyManager } from '../keys/manager.ts';
import { migrateLegacySecret } from '../keys/migrate.ts';
import { loadSecretIdentity as loadFromSource, resolveKeychain } from '../keys/secret-source.ts';
import { assertNoPendingCmkRotation, CapsuleStore, connect, DEFAULT_CAPSULE_NAMESPACE } from '../mongo/index.ts';
import type { CapsuleRepository } from '../keys/capsule-repository.ts';
import { parseCommandArgs, required, uriFrom } from './args.ts';
import { setKeychainResolver } from './crypto-commands.ts';
import { writeFileAtomic } from './files.ts';
import type { CliIO, Command } from './types.ts';

/** Selects another keychain service than `mongo-capsule` (separate profiles; the tests use their own). */
export const KEYCHAIN_SERVICE_ENV = 'MONGO_CAPSULE_KEYCHAIN_SERVICE';

function osKeychain(env: NodeJS.ProcessEnv): Keychain {
  return new OsKeychain({ service: env[KEYCHAIN_SERVICE_ENV] || KEYCHAIN_SERVICE });
}

function warner(io: Pick<CliIO, 'stderr'>): (message: string) => void {
  return (message) => io.stderr.write(`${message}\n`);
}

async function keychainFor(io: CliIO): Promise<Keychain> {
  return resolveKeychain({ env: io.env, warn: warner(io), keychain: osKeychain(io.env) });
}

/**
 * The secret identity `name` from the environment opt-in or the OS keychain, for one-shot commands.
 * The caller owns the result and must wipe it (`wipeSecretIdentity`).
 */
export function loadSecretIdentity(name: string, io: Pick<CliIO, 'env' | 'stderr'>): Promise<SecretIdentity> {
  return loadFromSource(name, { env: io.env, warn: warner(io), keychain: osKeychain(io.env) });
}

setKeychainResolver((name, io) => loadSecretIdentity(name, io));

function describeIdentity(pub: PublicIdentity): string {
  return `identity ${pub.name}: suite ${pub.suite}, kid ${pub.kid}, signer kid ${pub.signer.kid}`;
}

/** Write a public identity file: never replacing a different file unless `replace`; equal content is left alone. */
async function writePublicFile(path: string, pub: PublicIdentity, replace: boolean): Promise<void> {
  const text = encodePublicIdentity(pub);
  if (!replace) {
    const existing = await readFile(path, 'utf8').catch(() => undefined);
    if (existing !== undefined) {
      if (existing === text) return;
      throw new FileExistsError(path);
    }
  }
  await writeFileAtomic(path, text, { mode: 0o644, replace });
}

async function checkPublicTarget(path: string, replace: boolean, acceptable: PublicIdentity[]): Promise<void> {
  if (replace) return;
  const existing = await readFile(path, 'utf8').catch(() => undefined);
  if (existing === undefined) return;
  if (acceptable.some((p) => encodePublicIdentity(p) === existing)) return;
  throw new FileExistsError(path);
}

const init: Command = {
  summary: 'create an identity whose secret keys live in the OS keychain',
  usage: `Usage: mongo-capsule init --pub-out <file> [--name <identity>] [--suite <id>]

Creates an identity (a KEM key pair and an ML-DSA-87 signing key pair). The secret keys go to the OS keychain
(service "mongo-capsule", account = the identity name); the public identity is written to --pub-out (safe to
share and commit). Refuses when the identity already exists or the file exists.

  --name <identity>   identity name (default "default")
  --suite <id>        KEM suite (default ${DEFAULT_SUITE}); see \`mongo-capsule suites\`
  --pub-out <file>    where to write the public identity, e.g. default.pub.json`,
  async run(args, io) {
    const { values } = parseCommandArgs('init', args, { name: { type: 'string' }, suite: { type: 'string' }, 'pub-out': { type: 'string' } });
    const pubOut = required('init', values, 'pub-out');
    if (pubOut === '-') throw new UsageError('init: --pub-out must be a file');
    await checkPublicTarget(pubOut, false, []);
    const manager = new KeyManager({ keychain: await keychainFor(io) });
    const pub = await manager.initialize(values.name ?? 'default', values.suite ?? DEFAULT_SUITE);
    await writePublicFile(pubOut, pub, false);
    io.stdout.write(`${describeIdentity(pub)}\nsecret keys: ${manager.keychain.description}\npublic: ${pubOut}\n`);
    return 0;
  },
};

const KEYS_USAGE = `Usage: mongo-capsule keys <subcommand> [options]

  status  [--name <identity>] [--json] [--pub-out <file>]
          what the keychain holds for the identity (kids only, never secrets); --pub-out writes its public file
  delete  --name <identity> --yes
          remove the identity from the keychain; capsules sealed only for it become unreadable
  rotate  [--name <identity>] (--capsules <dir>... | --cluster [--uri <uri>] [--collection <db.coll>]) --pub-out <file>
          [--replace] [--suite <id>] [--trust <pub file>]... [--allow-unsigned]
          new keys for the identity: every capsule sealed for the old key is re-sealed for the new one (the
          *.capsule files in each --capsules directory; with --cluster the capsules stored in the cluster at
          MONGODB_URI or --uri, collection default ${DEFAULT_CAPSULE_NAMESPACE}), then the old key is retired;
          an interrupted rotation is finished by running it again
  migrate --from <file> [--name <identity>] [--public <file>] [--capsule-out <file>] [--keep-file]
          move a file-based secret into the keychain, verify it, then securely delete the file:
          a secret identity file (keygen --secret-out); a raw NTRU secret key (needs --public: its raw public
          key or .pub.json); a raw 96-byte CSFLE master key (sealed into --capsule-out for --name instead)

Environment: MONGO_CAPSULE_SECRET_IDENTITY_FILE / MONGO_CAPSULE_SECRET_IDENTITY use an identity from the
environment instead of the keychain (explicit opt-in for CI; read-only; prints a warning).`;

async function status(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys status', args, { name: { type: 'string' }, json: { type: 'boolean' }, 'pub-out': { type: 'string' } });
  const manager = new KeyManager({ keychain: await keychainFor(io), cacheTtlMs: 0 });
  const s = await manager.status(values.name ?? 'default');
  if (values['pub-out'] !== undefined) {
    if (!s.initialized) throw new UsageError(`keys status: identity ${s.name} is not initialized, there is no public identity to write`);
    await writePublicFile(values['pub-out'], await manager.getPublicIdentity(s.name), false);
    manager.clearCache();
  }
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ ...s, keychain: manager.keychain.description }, null, 2)}\n`);
  } else {
    io.stdout.write(`keychain: ${manager.keychain.description}\n`);
    if (!s.initialized) io.stdout.write(`identity ${s.name}: not initialized\n`);
    else io.stdout.write(`identity ${s.name}: suite ${s.suite}, kid ${s.kid}, signer kid ${s.signerKid}\n`);
    if (s.rotationPending) {
      io.stdout.write(`rotation unfinished (new key ${s.slots.next ?? s.slots.active}, old key ${s.slots.prev ?? s.slots.active}): run \`mongo-capsule keys rotate\` again to finish it\n`);
    }
  }
  return s.initialized ? 0 : 3;
}

async function remove(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys delete', args, { name: { type: 'string' }, yes: { type: 'boolean' } });
  const name = required('keys delete', values, 'name');
  if (!values.yes) {
    throw new UsageError(`keys delete: deleting identity ${name} makes every capsule sealed only for it unreadable; add --yes to confirm`, 'rotate instead (`mongo-capsule keys rotate`) if you want new keys');
  }
  const manager = new KeyManager({ keychain: await keychainFor(io) });
  await manager.delete(name);
  io.stdout.write(`identity ${name} deleted from ${manager.keychain.description}\n`);
  return 0;
}

async function rotate(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys rotate', args, {
    name: { type: 'string' },
    capsules: { type: 'string', multiple: true },
    cluster: { type: 'boolean' },
    uri: { type: 'string' },
    collection: { type: 'string' },
    'pub-out': { type: 'string' },
    replace: { type: 'boolean' },
    suite: { type: 'string' },
    verify: { type: 'string', multiple: true },
    trust: { type: 'string', multiple: true },
    'allow-unsigned': { type: 'boolean' },
  });
  const name = values.name ?? 'default';
  const dirs = values.capsules ?? [];
  if ((values.uri !== undefined || values.collection !== undefined) && !values.cluster) {
    throw new UsageError('keys rotate: --uri and --collection go with --cluster', 'add --cluster to re-seal the capsules stored in the cluster');
  }
  if (values.cluster && !values.uri && !io.env.MONGODB_URI) {
    throw new UsageError('keys rotate: --cluster needs a connection string', 'set MONGODB_URI (preferred: a password on a command line is visible to other users) or pass --uri');
  }
  const clusterUri = values.cluster ? uriFrom('keys rotate', values, io) : undefined;
  if (dirs.length === 0 && clusterUri === undefined) {
    throw new UsageError('keys rotate: missing --capsules <dir> or --cluster', 'name every place that holds capsules sealed for this identity: capsule directories, the cluster, or both');
  }
  const pubOut = required('keys rotate', values, 'pub-out');
  const manager = new KeyManager({ keychain: await keychainFor(io) });
  const before = await manager.status(name);
  if (!before.initialized && !before.rotationPending) throw new NotInitializedError(name);
  const signers = await Promise.all([...(values.trust ?? []), ...(values.verify ?? [])].map(async (p) => decodePublicIdentity(await readFile(p))));
  // Fail before changing anything when the public file cannot be written afterwards.
  if (!values.replace && !before.rotationPending) await checkPublicTarget(pubOut, false, []);
  // Connect before the rotation starts: an unreachable cluster must stop it while nothing has changed.
  const client = clusterUri === undefined ? undefined : await connect(clusterUri, { purpose: 're-sealing the capsules stored in the cluster' });
  let report;
  try {
    const repositories: CapsuleRepository[] = dirs.map((d) => new FileCapsuleRepository(d));
    if (client !== undefined) {
      const store = new CapsuleStore(client, values.collection === undefined ? {} : { namespace: values.collection });
      await assertNoPendingCmkRotation(store, Object.values(before.slots).filter((k): k is string => k !== null));
      repositories.push(store);
    }
    report = await manager.rotate(name, repositories, {
      ...(values.suite ? { suite: values.suite } : {}),
      signers,
      ...(values['allow-unsigned'] ? { allowUnsigned: true } : {}),
      // Before the old key is retired; a refusal here (the file exists, no --replace) keeps both keys.
      onPromoted: (pub) => writePublicFile(pubOut, pub, values.replace === true),
    });
  } finally {
    await client?.close().catch(() => {});
  }
  if (report.resumed) io.stdout.write('finished an interrupted rotation\n');
  if (report.discardedDamagedSlot) io.stdout.write(`discarded a damaged ${report.discardedDamagedSlot} slot left by the interruption (its key was held elsewhere or never used)\n`);
  io.stdout.write(`re-sealed ${report.rewrapped.length} capsule(s); ${report.current} now sealed for the new key; ${report.untouched} for other keys left alone\n`);
  for (const r of report.rewrapped) io.stdout.write(`  ${r}\n`);
  io.stdout.write(`${describeIdentity(report.publicIdentity)} (old kid ${report.oldKid ?? 'unknown'}, retired)\npublic: ${pubOut}\n`);
  if (report.resumed) io.stdout.write('run `mongo-capsule keys rotate` again to rotate once more\n');
  return 0;
}

async function migrate(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys migrate', args, {
    from: { type: 'string' },
    name: { type: 'string' },
    public: { type: 'string' },
    'capsule-out': { type: 'string' },
    'capsule-name': { type: 'string' },
    'keep-file': { type: 'boolean' },
  });
  const from = required('keys migrate', values, 'from');
  if (from === '-') throw new UsageError('keys migrate: --from must be a file (it is deleted afterwards)');
  const publicKey = values.public === undefined ? undefined : new Uint8Array(await readFile(values.public));
  const result = await migrateLegacySecret(from, {
    keychain: await keychainFor(io),
    ...(values.name !== undefined ? { name: values.name } : {}),
    ...(publicKey !== undefined ? { publicKey } : {}),
    ...(values['capsule-out'] !== undefined ? { capsuleOut: values['capsule-out'] } : {}),
    ...(values['capsule-name'] !== undefined ? { capsuleName: values['capsule-name'] } : {}),
    keepFile: values['keep-file'] === true,
  });
  if (result.kind === 'csfle-master-key') {
    io.stdout.write(`sealed the master key in ${from} into ${result.capsuleOut} for ${describeIdentity(result.publicIdentity)}\n`);
  } else {
    io.stdout.write(`${result.alreadyPresent ? 'already in the keychain' : 'stored in the keychain'}: ${describeIdentity(result.publicIdentity)}\n`);
  }
  io.stdout.write(result.deleted ? `${from}: overwritten and deleted\n` : `${from}: kept (--keep-file); delete it securely yourself\n`);
  io.stdout.write('the key lived in a plaintext file: consider `mongo-capsule keys rotate` so that no copy of it matters\n');
  return 0;
}

const SUBCOMMANDS: Record<string, (args: string[], io: CliIO) => Promise<number>> = { status, delete: remove, rotate, migrate };

const keys: Command = {
  summary: 'identities in the OS keychain: status, delete, rotate, migrate',
  usage: KEYS_USAGE,
  async run(args, io) {
    const [sub, ...rest] = args;
    const run = sub === undefined ? undefined : SUBCOMMANDS[sub];
    if (run === undefined) throw new UsageError(`keys: ${sub === undefined ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(sub)}`}`, 'run `mongo-capsule keys --help` for usage');
    return run(rest, io);
  },
};

export const keysCommands: Record<string, Command> = { init, keys };
