/**
 * CLI commands for identities kept in the OS keychain: `init` and `keys status|delete|rotate|migrate`.
 * Importing this module also lets `unwrap --name` and `wrap --sign-name` read identities from the keychain
 * (or from the explicit environment opt-in; see src/keys/secret-source.ts).
 */
import { stat } from 'node:fs/promises';
import type { MongoClient } from 'mongodb';
import {
  DEFAULT_SUITE,
  encodePublicIdentity,
  type PublicIdentity,
  type SecretIdentity,
} from '../crypto/index.ts';
import { CapsuleLocationError, FileExistsError, KeyNotRetiredError, MongoCapsuleError, NotInitializedError, UsageError } from '../errors.ts';
import { describeLocation, locationId, type CapsuleLocation, type ClusterLocation } from '../keys/capsule-locations.ts';
import { FileCapsuleRepository } from '../keys/file-capsule-repository.ts';
import { KEYCHAIN_SERVICE, OsKeychain, type Keychain } from '../keys/keychain.ts';
import { KeyManager } from '../keys/manager.ts';
import { migrateLegacySecret } from '../keys/migrate.ts';
import { backupStatus, backupStatusLine } from '../keys/recovery-backup.ts';
import { loadSecretIdentity as loadFromSource, resolveKeychain } from '../keys/secret-source.ts';
import { assertNoPendingCmkRotation, CapsuleStore, connect, DEFAULT_CAPSULE_NAMESPACE } from '../mongo/index.ts';
import type { CapsuleRepository } from '../keys/capsule-repository.ts';
import { assertNotOlder, FileCapsuleWatermarks, watermarkKey } from '../keys/capsule-watermarks.ts';
import { parseCommandArgs, required, uriFrom } from './args.ts';
import { capsuleLocationsFor, clusterLocation, directoryLocation } from './capsule-locations.ts';
import { loadPublicIdentityFile, setKeychainResolver } from './crypto-commands.ts';
import { checkCreatable, INPUT_LIMITS, readExistingText, readInput, writeFileAtomic } from './files.ts';
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
    const existing = await readExistingText(path, INPUT_LIMITS.publicIdentity, 'a public identity file');
    if (existing !== undefined) {
      if (existing === text) return;
      throw new FileExistsError(path);
    }
  }
  await writeFileAtomic(path, text, { mode: 0o644, replace });
}

async function checkPublicTarget(path: string, replace: boolean, acceptable: PublicIdentity[]): Promise<void> {
  if (replace) return;
  const existing = await readExistingText(path, INPUT_LIMITS.publicIdentity, 'a public identity file');
  if (existing === undefined) return checkCreatable(path);
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
          what the keychain holds for the identity (kids only, never secrets) and whether the active key has a
          current recovery backup (stale after a rotation); --pub-out writes its public file
  delete  --name <identity> --yes
          remove the identity from the keychain; capsules sealed only for it become unreadable
  rotate  [--name <identity>] (--capsules <dir>... | --cluster [VAR[:<db.coll>]]... [--uri <uri>] [--collection <db.coll>])
          --pub-out <file> [--replace] [--suite <id>] [--verify <pub file>]... [--trust <pub file>]... [--allow-unsigned]
          [--retire-unused] [--accept-rollback]
          new keys for the identity: every capsule sealed for the old key is re-sealed for the new one (the
          *.capsule files in each --capsules directory; with --cluster the capsules stored in the cluster at
          MONGODB_URI or --uri, collection --collection, default ${DEFAULT_CAPSULE_NAMESPACE}), then the old key is retired;
          --cluster is repeatable: --cluster VAR is the cluster whose connection string is in the environment
          variable VAR, --cluster VAR:db.coll the same in another collection; every cluster is connected to and
          read before the keychain changes, and the old key is retired only after all of them are re-sealed;
          an interrupted rotation is finished by running it again. The old key is retired only when a capsule
          sealed for the new key was found and every location recorded for the identity was searched; otherwise
          it is kept and the command exits 1 naming what is missing (--retire-unused: retire anyway)
          A cluster capsule older than the one this machine last opened (a replayed generation) is refused
          before anything changes (--accept-rollback: a restore you made on purpose)
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
    const backup = s.kid === null ? null : await backupStatus(s.name, s.kid, io.env);
    io.stdout.write(`${JSON.stringify({ ...s, keychain: manager.keychain.description, backup }, null, 2)}\n`);
  } else {
    io.stdout.write(`keychain: ${manager.keychain.description}\n`);
    if (!s.initialized) io.stdout.write(`identity ${s.name}: not initialized\n`);
    else io.stdout.write(`identity ${s.name}: suite ${s.suite}, kid ${s.kid}, signer kid ${s.signerKid}\n`);
    io.stdout.write(await backupStatusLine(s.name, s.kid, io.env));
    if (s.rotationPending) {
      const recorded = await capsuleLocationsFor(io).list(s.name).catch(() => []);
      io.stdout.write(`rotation unfinished (new key ${s.slots.next ?? s.slots.active}, old key ${s.slots.prev ?? s.slots.active}): finish it with \`${finishCommand(s.name, recorded, '<name>.pub.json', true)}\`, naming every directory and cluster that holds its capsules${recorded.length === 0 ? '' : ` (recorded: ${recorded.map(describeLocation).join('; ')})`}\n`);
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

/** One `--cluster` of `keys rotate`, resolved: where its connection string came from and which collection. */
interface ClusterArg {
  /** For messages: `--cluster` or `--cluster STAGING_URI:app.capsules`. */
  flag: string;
  uri: string;
  namespace: string;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `--cluster` takes an optional value, which node's parser cannot express: a bare `--cluster` (the next word is
 * another option, or there is none) becomes `--cluster=` (the empty value: the cluster at --uri / MONGODB_URI).
 */
function withBareClusterFlags(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return [...out, ...args.slice(i)];
    if (a === '--cluster' && (i + 1 >= args.length || args[i + 1]!.startsWith('-'))) out.push('--cluster=');
    else out.push(a);
  }
  return out;
}

/**
 * The clusters of `keys rotate`, every one resolved before anything changes. `--cluster` alone is the cluster at
 * --uri / MONGODB_URI in --collection (default ${DEFAULT_CAPSULE_NAMESPACE}); `--cluster VAR` is the cluster whose
 * connection string is in the environment variable VAR, `--cluster VAR:db.coll` the same in another collection.
 * A connection string itself is refused as a value: it would put credentials on the command line.
 */
function clusterArgs(values: { cluster?: string[] | undefined; uri?: string | undefined; collection?: string | undefined }, io: CliIO): ClusterArg[] {
  const out: ClusterArg[] = [];
  const defaultNamespace = values.collection ?? DEFAULT_CAPSULE_NAMESPACE;
  for (const raw of values.cluster ?? []) {
    if (raw === '') {
      if (!values.uri && !io.env.MONGODB_URI) {
        throw new UsageError('keys rotate: --cluster needs a connection string', 'set MONGODB_URI (preferred: a password on a command line is visible to other users) or pass --uri');
      }
      out.push({ flag: '--cluster', uri: uriFrom('keys rotate', values, io), namespace: defaultNamespace });
      continue;
    }
    if (raw.includes('://')) {
      // Not echoed: it may hold a password.
      throw new UsageError(
        'keys rotate: --cluster takes the name of an environment variable that holds the connection string, not the connection string itself (a password on a command line is visible to other users)',
        'put it in a variable and name that: STAGING_URI=\'mongodb://…\' mongo-capsule keys rotate --cluster STAGING_URI …; a bare --cluster uses MONGODB_URI',
      );
    }
    const colon = raw.indexOf(':');
    const variable = colon < 0 ? raw : raw.slice(0, colon);
    const namespace = colon < 0 ? defaultNamespace : raw.slice(colon + 1);
    if (!ENV_NAME.test(variable) || !/^[^.\s]+\.[^\s]+$/.test(namespace)) {
      throw new UsageError(`keys rotate: --cluster ${JSON.stringify(raw)} is not VAR or VAR:db.collection`, 'name the environment variable that holds the connection string, optionally followed by :<db.collection>, e.g. --cluster STAGING_URI:encryption.capsules');
    }
    const uri = io.env[variable];
    if (uri === undefined || uri.length === 0) {
      throw new CapsuleLocationError(`keys rotate: --cluster ${raw}: the environment variable ${variable} is not set`, {
        hint: `set ${variable} to the connection string of that cluster (e.g. ${variable}='mongodb://<user>:<password>@host:27017/') and rerun; the keychain is unchanged`,
      });
    }
    out.push({ flag: `--cluster ${raw}`, uri, namespace });
  }
  return out;
}

async function rotate(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys rotate', withBareClusterFlags(args), {
    name: { type: 'string' },
    capsules: { type: 'string', multiple: true },
    cluster: { type: 'string', multiple: true },
    uri: { type: 'string' },
    collection: { type: 'string' },
    'pub-out': { type: 'string' },
    replace: { type: 'boolean' },
    suite: { type: 'string' },
    verify: { type: 'string', multiple: true },
    'retire-unused': { type: 'boolean' },
    trust: { type: 'string', multiple: true },
    'allow-unsigned': { type: 'boolean' },
    'accept-rollback': { type: 'boolean' },
  });
  const name = values.name ?? 'default';
  const dirs = values.capsules ?? [];
  if ((values.uri !== undefined || values.collection !== undefined) && (values.cluster ?? []).length === 0) {
    throw new UsageError('keys rotate: --uri and --collection go with --cluster', 'add --cluster to re-seal the capsules stored in the cluster');
  }
  // Every --cluster resolved (and, below, connected to) before the keychain is touched.
  const clusters = clusterArgs(values, io);
  if (dirs.length === 0 && clusters.length === 0) {
    throw new UsageError('keys rotate: missing --capsules <dir> or --cluster', 'name every place that holds capsules sealed for this identity: capsule directories, the cluster, or both');
  }
  const pubOut = required('keys rotate', values, 'pub-out');
  // Every location is checked before the keychain is touched: a typo must not leave a new key behind.
  const searched: CapsuleLocation[] = [];
  for (const d of dirs) {
    const st = await stat(d).catch((e: NodeJS.ErrnoException) => e);
    if (st instanceof Error) {
      throw new CapsuleLocationError(`keys rotate: --capsules ${d}: ${st.code === 'ENOENT' ? 'no such directory' : `cannot be read (${st.code ?? st.message})`}`);
    }
    if (!st.isDirectory()) throw new CapsuleLocationError(`keys rotate: --capsules ${d} is not a directory`, { hint: 'pass the directory that holds the *.capsule files, not a file; the keychain is unchanged' });
    searched.push(directoryLocation(d));
  }
  // One search per distinct cluster and collection (the same one named twice is searched once).
  const clusterSearches: (ClusterArg & { location: ClusterLocation })[] = [];
  for (const c of clusters) {
    const location = clusterLocation(c.uri, c.namespace);
    if (searched.some((l) => locationId(l) === locationId(location))) continue;
    searched.push(location);
    clusterSearches.push({ ...c, location });
  }
  const locations = capsuleLocationsFor(io);
  const recorded = await locations.list(name);
  const searchedIds = new Set(searched.map(locationId));
  const unsearched = recorded.filter((l) => !searchedIds.has(locationId(l)));

  const manager = new KeyManager({ keychain: await keychainFor(io) });
  const before = await manager.status(name);
  if (!before.initialized && !before.rotationPending) throw new NotInitializedError(name);
  const signers = await Promise.all([...(values.trust ?? []), ...(values.verify ?? [])].map(loadPublicIdentityFile));
  // Fail before changing anything when the public file cannot be written afterwards.
  if (!values.replace && !before.rotationPending) await checkPublicTarget(pubOut, false, []);
  // Connect to every cluster before the rotation starts: an unreachable one must stop it while nothing has changed.
  const clients = new Map<string, MongoClient>();
  const finish = finishCommand(name, [...searched, ...unsearched], pubOut, values.replace === true);
  let report;
  try {
    const repositories: CapsuleRepository[] = dirs.map((d) => new FileCapsuleRepository(d));
    const held = new Set(Object.values(before.slots).filter((k): k is string => k !== null));
    const marks = new FileCapsuleWatermarks();
    for (const c of clusterSearches) {
      let client = clients.get(c.uri);
      if (client === undefined) {
        client = await connect(c.uri, { purpose: `re-sealing the capsules stored in the cluster (${c.flag})` });
        clients.set(c.uri, client);
      }
      const store = new CapsuleStore(client, { namespace: c.namespace });
      await assertNoPendingCmkRotation(store, [...held]);
      // Reading the collection now proves it can be searched, before a key is written. A re-seal gives a capsule
      // a new creation time, so a replayed older generation must be refused here: re-sealed, it would pass every
      // later replay check.
      for (const record of await store.list()) {
        const mine = record.recipients.find((e) => held.has(e.header.kid));
        if (mine === undefined || values['accept-rollback']) continue;
        assertNotOlder(await marks.get(watermarkKey(store.locator, store.namespace, record.name)), { createdAt: mine.header.createdAt.getTime(), sha256: mine.sha256 }, `capsule ${record.name} (${describeLocation(c.location)})`);
      }
      // Every recipient's capsule is one stored capsule to the rotation: this identity's entries are re-sealed,
      // whether it is a capsule's first recipient or one granted later.
      repositories.push(store.recipientView());
    }
    try {
      report = await manager.rotate(name, repositories, {
        ...(values.suite ? { suite: values.suite } : {}),
        signers,
        ...(values['allow-unsigned'] ? { allowUnsigned: true } : {}),
        // Before the old key is retired; a refusal here (the file exists, no --replace) keeps both keys.
        onPromoted: async (pub) => {
          await writePublicFile(pubOut, pub, values.replace === true);
          await locations.record(name, searched);
        },
        retire: ({ current }) => values['retire-unused'] === true || (current >= 1 && unsearched.length === 0),
      });
    } catch (e) {
      const after = await manager.status(name).catch(() => undefined);
      if (after?.rotationPending && e instanceof MongoCapsuleError) {
        throw new MongoCapsuleError(e.code, e.message, {
          cause: e,
          hint: `${e.hint ? `${e.hint}; ` : ''}a rotation of ${name} is pending (both keys are kept, every capsule still opens): finish it with \`${finish}\``,
        });
      }
      throw e;
    }
  } finally {
    for (const client of clients.values()) await client.close().catch(() => {});
  }
  if (report.resumed && report.retired) io.stdout.write('finished an interrupted rotation\n');
  if (report.discardedDamagedSlot) io.stdout.write(`discarded a damaged ${report.discardedDamagedSlot} slot left by the interruption (its key was held elsewhere or never used)\n`);
  io.stdout.write(`re-sealed ${report.rewrapped.length} capsule(s); ${report.current} now sealed for the new key; ${report.untouched} for other keys left alone\n`);
  for (const r of report.rewrapped) io.stdout.write(`  ${r}\n`);
  io.stdout.write(`searched: ${searched.map(describeLocation).join('; ')}\n`);
  if (!report.retired) {
    io.stdout.write(`${describeIdentity(report.publicIdentity)} is active; old kid ${report.oldKid ?? 'unknown'} is kept (not retired)\npublic: ${pubOut}\n`);
    const why = [
      ...(report.current === 0 ? ['no capsule sealed for this identity was found in the searched locations'] : []),
      ...(unsearched.length > 0 ? [`recorded location(s) not searched: ${unsearched.map(describeLocation).join('; ')}`] : []),
    ];
    throw new KeyNotRetiredError(`keys rotate: the old key of ${name} was kept: ${why.join('; ')}`, {
      hint:
        `capsules sealed for the old key still open. Name every place that holds capsules of ${name} and run \`${finish}\`; ` +
        'if you are sure nothing else holds one, add --retire-unused to retire the old key anyway',
    });
  }
  io.stdout.write(`${describeIdentity(report.publicIdentity)} (old kid ${report.oldKid ?? 'unknown'}, retired${values['retire-unused'] && (report.current === 0 || unsearched.length > 0) ? ' by --retire-unused' : ''})\npublic: ${pubOut}\n`);
  if (report.resumed) io.stdout.write('run `mongo-capsule keys rotate` again to rotate once more\n');
  return 0;
}

/**
 * The `keys rotate` command that searches `locations`, every cluster included: the first through MONGODB_URI and a
 * bare `--cluster`, each further one through `--cluster VAR:db.coll`, where VAR is MONGODB_URI for another
 * collection of the same cluster and MONGODB_URI_2, _3, … for other clusters. The connection strings are left
 * for the user to fill in, since they hold credentials.
 */
export function finishCommand(name: string, locations: readonly CapsuleLocation[], pubOut: string, replace: boolean): string {
  const dirs = [...new Set(locations.filter((l) => l.kind === 'directory').map((l) => l.path))];
  const clusters: ClusterLocation[] = [];
  for (const l of locations) if (l.kind === 'cluster' && !clusters.some((c) => locationId(c) === locationId(l))) clusters.push(l);
  const where = (c: ClusterLocation) => locationId({ ...c, namespace: '' });
  const variables = new Map<string, string>();
  for (const c of clusters) if (!variables.has(where(c))) variables.set(where(c), variables.size === 0 ? 'MONGODB_URI' : `MONGODB_URI_${variables.size + 1}`);
  const parts: string[] = [];
  for (const c of clusters) {
    const v = variables.get(where(c))!;
    if (!parts.some((p) => p.startsWith(`${v}=`))) parts.push(`${v}=${exampleUri(c)}`);
  }
  parts.push('mongo-capsule keys rotate', `--name ${name}`);
  clusters.forEach((c, i) => {
    if (i === 0) parts.push('--cluster', ...(c.namespace === DEFAULT_CAPSULE_NAMESPACE ? [] : [`--collection ${c.namespace}`]));
    else parts.push(`--cluster ${variables.get(where(c))!}:${c.namespace}`);
  });
  for (const d of dirs) parts.push(`--capsules ${shellQuote(d)}`);
  parts.push(`--pub-out ${shellQuote(pubOut)}`);
  if (replace) parts.push('--replace');
  return parts.join(' ');
}

function exampleUri(c: ClusterLocation): string {
  const rs = c.replicaSet === undefined ? '' : `?replicaSet=${c.replicaSet}`;
  return c.srvHost !== undefined ? `'mongodb+srv://<user>:<password>@${c.srvHost}/${rs}'` : `'mongodb://<user>:<password>@${c.hosts.join(',')}/${rs}'`;
}

function shellQuote(s: string): string {
  return /^[\w./:@=+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
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
  const publicKey = values.public === undefined ? undefined : await readInput(values.public, io, undefined, INPUT_LIMITS.keyFile, 'a public key file');
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
