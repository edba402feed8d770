/**
 * CLI commands that talk to MongoDB: seed, rotate-cmk, doctor. The connection string comes from --uri or,
 * better (it keeps passwords off command lines and out of shell history), from the MONGODB_URI variable.
 */
import { type PublicIdentity, type SecretIdentity } from '../crypto/index.ts';
import { isMongoCapsuleError, UsageError } from '../errors.ts';
import { KeyManager } from '../keys/manager.ts';
import { KEYCHAIN_SERVICE, OsKeychain } from '../keys/keychain.ts';
import { resolveKeychain } from '../keys/secret-source.ts';
import { KEYCHAIN_SERVICE_ENV } from './keys-commands.ts';
import {
  CapsuleStore,
  connect,
  csfleStatus,
  DEFAULT_CAPSULE_NAME,
  DEFAULT_KEY_VAULT_NAMESPACE,
  describeHosts,
  hasKeyVaultIndex,
  provisionCluster,
  rotateCmk,
  DEFAULT_CAPSULE_NAMESPACE,
} from '../mongo/index.ts';
import { parseCommandArgs, uriFrom } from './args.ts';
import { loadPublicIdentityFile } from './crypto-commands.ts';
import type { CliIO, Command } from './types.ts';

const URI_HELP = `  --uri <uri>              connection string; default: the MONGODB_URI environment variable
                           (prefer the variable: a password on a command line is visible to other users)`;
const NAMESPACE_HELP = `  --capsules <db.coll>     capsule collection (default ${DEFAULT_CAPSULE_NAMESPACE})
  --key-vault <db.coll>    CSFLE key vault (default ${DEFAULT_KEY_VAULT_NAMESPACE})`;


function keyManagerFor(io: CliIO): Promise<KeyManager> {
  // Same sources as the keys commands: the environment opt-in, else the OS keychain (service overridable).
  return resolveKeychain({
    env: io.env,
    warn: (m) => io.stderr.write(`${m}\n`),
    keychain: new OsKeychain({ service: io.env[KEYCHAIN_SERVICE_ENV] || KEYCHAIN_SERVICE }),
  }).then((keychain) => new KeyManager({ keychain }));
}

function say(io: CliIO, line: string): void {
  io.stdout.write(`${line}\n`);
}

const seed: Command = {
  summary: 'seal a new CSFLE master key for a public identity and store it in a cluster (once)',
  usage: `Usage: mongo-capsule seed [--uri <uri>] --pub <file> [--name <capsule>] [--sign-name <identity>] [--json]

Seals a fresh 96-byte CSFLE master key for the public identity in <file> and stores the capsule in the
cluster, unless a capsule with that name already exists (then nothing changes). Needs no keychain: the
operator only needs the public file. Prints the capsule name and the recipient kid.

${URI_HELP}
  --pub <file>             public identity file (<name>.pub.json from \`mongo-capsule init\`)
  --name <capsule>         capsule name (default "${DEFAULT_CAPSULE_NAME}")
  --sign-name <identity>   sign the capsule with this identity from the OS keychain, and check that it opens
${NAMESPACE_HELP}
  --json                   print {"capsule", "kid", "created"} as JSON
`,
  async run(args, io) {
    const { values } = parseCommandArgs('seed', args, {
      uri: { type: 'string' },
      pub: { type: 'string' },
      name: { type: 'string' },
      'sign-name': { type: 'string' },
      capsules: { type: 'string' },
      'key-vault': { type: 'string' },
      json: { type: 'boolean' },
    });
    const uri = uriFrom('seed', values, io);
    if (values.pub === undefined) throw new UsageError('seed: missing required option --pub <file>', 'run `mongo-capsule seed --help` for usage');
    const recipient = await loadPublicIdentityFile(values.pub);
    let signer: SecretIdentity | undefined;
    let km: KeyManager | undefined;
    const signName = values['sign-name'];
    if (signName !== undefined) {
      km = await keyManagerFor(io);
      signer = await km.getSecretIdentity(signName);
    }
    let result;
    try {
      result = await provisionCluster({
        uri,
        capsuleName: values.name ?? DEFAULT_CAPSULE_NAME,
        recipient,
        ...(signer === undefined ? {} : { signer }),
        ...(km === undefined || signName === undefined ? {} : { unwrap: (c: Uint8Array) => km.unwrap(c, signName) }),
        ...(values.capsules === undefined ? {} : { capsuleNamespace: values.capsules }),
        ...(values['key-vault'] === undefined ? {} : { keyVaultNamespace: values['key-vault'] }),
        onProgress: (m) => io.stderr.write(`${m}\n`),
      });
    } finally {
      km?.clearCache(); // wipes the decoded identity, on failure too
    }
    if (values.json) {
      say(io, JSON.stringify({ capsule: result.capsuleName, kid: result.kid, created: result.created }));
    } else {
      say(io, `capsule ${result.capsuleName}`);
      say(io, `kid ${result.kid}`);
      say(io, result.created ? 'created' : 'already present (unchanged)');
    }
    return 0;
  },
};

const rotate: Command = {
  summary: 'rotate the CSFLE master key of a capsule (resumes an interrupted rotation)',
  usage: `Usage: mongo-capsule rotate-cmk [--uri <uri>] [--name <identity>] [--capsule <name>]

Generates a new CSFLE master key, moves every data key to it (rewrapManyDataKey), and replaces the capsule,
sealed and signed for the identity from the OS keychain. Safe to interrupt: rerunning finishes a pending
rotation, and data stays readable throughout. Needs mongodb-client-encryption (\`npm run setup\`).

${URI_HELP}
  --name <identity>        identity in the OS keychain (default "default")
  --capsule <name>         capsule name (default "${DEFAULT_CAPSULE_NAME}")
${NAMESPACE_HELP}
`,
  async run(args, io) {
    const { values } = parseCommandArgs('rotate-cmk', args, {
      uri: { type: 'string' },
      name: { type: 'string' },
      capsule: { type: 'string' },
      capsules: { type: 'string' },
      'key-vault': { type: 'string' },
    });
    const uri = uriFrom('rotate-cmk', values, io);
    const identity = values.name ?? 'default';
    const km = await keyManagerFor(io);
    try {
      const secret = await km.getSecretIdentity(identity);
      const r = await rotateCmk({
        uri,
        capsuleName: values.capsule ?? DEFAULT_CAPSULE_NAME,
        recipient: secret,
        signer: secret,
        unwrap: (c) => km.unwrap(c, identity),
        ...(values.capsules === undefined ? {} : { capsuleNamespace: values.capsules }),
        ...(values['key-vault'] === undefined ? {} : { keyVaultNamespace: values['key-vault'] }),
        onProgress: (m) => io.stderr.write(`${m}\n`),
      });
      say(io, `capsule ${r.capsuleName}: CMK rotated${r.resumed ? ' (finished an interrupted rotation)' : ''}`);
      say(io, `kid ${r.kid}`);
      say(io, `data keys moved ${r.rewrapped} (${r.fromProvider} → ${r.toProvider})`);
      return 0;
    } finally {
      km.clearCache();
    }
  },
};

type Check = { status: 'ok' | 'warn' | 'fail'; what: string; detail: string };

const doctor: Command = {
  summary: 'check what works and what is missing: server, auth, key vault, capsule, identity, libmongocrypt',
  usage: `Usage: mongo-capsule doctor [--uri <uri>] [--capsule <name>] [--name <identity>]

Prints one line per check (ok / warn / FAIL) and exits 1 when any check fails. Changes nothing.

${URI_HELP}
  --capsule <name>         capsule to look for (default "${DEFAULT_CAPSULE_NAME}")
  --name <identity>        identity expected in the OS keychain (default "default")
${NAMESPACE_HELP}
`,
  async run(args, io) {
    const { values } = parseCommandArgs('doctor', args, {
      uri: { type: 'string' },
      capsule: { type: 'string' },
      name: { type: 'string' },
      capsules: { type: 'string' },
      'key-vault': { type: 'string' },
    });
    const uri = uriFrom('doctor', values, io);
    const capsuleName = values.capsule ?? DEFAULT_CAPSULE_NAME;
    const identity = values.name ?? 'default';
    const keyVault = values['key-vault'] ?? DEFAULT_KEY_VAULT_NAMESPACE;
    const checks: Check[] = [];
    const add = (status: Check['status'], what: string, detail: string) => {
      checks.push({ status, what, detail });
      io.stdout.write(`${status === 'fail' ? 'FAIL' : status.padEnd(4)}  ${what.padEnd(14)} ${detail}\n`);
    };
    const why = (e: unknown) => (isMongoCapsuleError(e) ? `${e.message}${e.hint ? ` (${e.hint})` : ''}` : e instanceof Error ? e.message : String(e));

    const csfle = csfleStatus();
    const client = await connect(uri, { serverSelectionTimeoutMS: 5000 }).catch((e: unknown) => {
      add('fail', 'server', why(e));
      return undefined;
    });
    let capsuleKid: string | undefined;
    if (client) {
      try {
        const admin = client.db('admin');
        const hello = await admin.command({ hello: 1 });
        const build = await admin.command({ buildInfo: 1 }).catch(() => ({}) as Record<string, unknown>);
        const product = typeof build.ferretdbVersion === 'string' ? `FerretDB ${build.ferretdbVersion}` : `MongoDB ${String(build.version ?? '?')}`;
        const topology = typeof hello.setName === 'string' ? `replica set ${hello.setName}${hello.isWritablePrimary ? ', writable primary' : ', no writable primary here'}` : 'standalone (no replica set)';
        add(typeof hello.setName === 'string' ? 'ok' : 'warn', 'server', `${product} at ${describeHosts(uri)}: ${topology}`);

        const status = await admin.command({ connectionStatus: 1 }).catch(() => undefined);
        const users = (status?.authInfo?.authenticatedUsers ?? []) as { user: string; db: string }[];
        if (users.length > 0) add('ok', 'auth', `authenticated as ${users.map((u) => `${u.user}@${u.db}`).join(', ')}`);
        else add('warn', 'auth', 'not authenticated (no credentials in the connection string, or the server has auth off)');

        try {
          const indexed = await hasKeyVaultIndex(client, keyVault);
          if (indexed) add('ok', 'key vault', `${keyVault} has a unique index on keyAltNames`);
          else add('warn', 'key vault', `${keyVault} has no unique index on keyAltNames (created by provisioning; servers without partial indexes use the documented fallback)`);
        } catch (e) {
          add('fail', 'key vault', why(e));
        }

        try {
          const store = new CapsuleStore(client, values.capsules === undefined ? {} : { namespace: values.capsules });
          const record = await store.find(capsuleName);
          if (record === null) add('fail', 'capsule', `no capsule ${capsuleName} in ${store.namespace} (seed one with \`mongo-capsule seed\`)`);
          else {
            capsuleKid = record.header.kid;
            const pending = record.pendingRotation ? `; a CMK rotation is pending since ${record.pendingRotation.startedAt.toISOString()} (run rotate-cmk to finish it)` : '';
            add(pending ? 'warn' : 'ok', 'capsule', `${capsuleName}: suite ${record.header.suite}, kid ${record.header.kid}, ${record.header.signed ? 'signed' : 'UNSIGNED'}, generation ${record.generation}${pending}`);
          }
        } catch (e) {
          add('fail', 'capsule', why(e));
        }
      } catch (e) {
        add('fail', 'server', why(e));
      } finally {
        await client.close().catch(() => {});
      }
    }

    try {
      const km = await keyManagerFor(io);
      let pub: PublicIdentity | undefined;
      try {
        pub = await km.getPublicIdentity(identity);
      } finally {
        km.clearCache();
      }
      if (capsuleKid !== undefined && pub.kid !== capsuleKid) add('fail', 'identity', `${identity} has kid ${pub.kid}, but the capsule is sealed for ${capsuleKid}`);
      else add('ok', 'identity', `${identity}: suite ${pub.suite}, kid ${pub.kid}${capsuleKid ? ' (opens the capsule)' : ''}`);
    } catch (e) {
      add('fail', 'identity', why(e));
    }

    if (csfle.available) add('ok', 'libmongocrypt', `mongodb-client-encryption loads (libmongocrypt ${csfle.libmongocryptVersion ?? '?'})`);
    else add('fail', 'libmongocrypt', `mongodb-client-encryption cannot be loaded: ${csfle.reason ?? '?'} (run \`npm run setup\`)`);

    return checks.some((c) => c.status === 'fail') ? 1 : 0;
  },
};

export const mongoCommands: Record<string, Command> = {
  seed,
  'rotate-cmk': rotate,
  doctor,
};
