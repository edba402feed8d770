/**
 * CLI commands that talk to MongoDB: seed, rotate-cmk, doctor. The connection string comes from --uri or,
 * better (it keeps passwords off command lines and out of shell history), from the MONGODB_URI variable.
 */
import { recordSealedInCluster } from './capsule-locations.ts';
import { copySecretIdentity, encodePublicIdentity, generateCmk, parseCapsule, recipientTag, toPublicIdentity, verifyCapsule, wipeSecretIdentity, wrapKey, type PublicIdentity, type SecretIdentity } from '../crypto/index.ts';
import { CapsuleOwnedByOtherKeyError, EndorseRefusedError, isMongoCapsuleError, UsageError } from '../errors.ts';
import { KeyManager, type KeyManagerOptions } from '../keys/manager.ts';
import { KEYCHAIN_SERVICE, OsKeychain } from '../keys/keychain.ts';
import { resolveKeychain } from '../keys/secret-source.ts';
import { KEYCHAIN_SERVICE_ENV } from './keys-commands.ts';
import {
  abandonCmkRotation,
  CapsuleStore,
  connect,
  DEFAULT_CLIENT_REFRESH_WAIT_MS,
  ensureKeyVaultIndex,
  proveCapsuleCmk,
  type CapsuleRecord,
  csfleStatus,
  DEFAULT_CAPSULE_NAME,
  DEFAULT_KEY_VAULT_NAMESPACE,
  describeHosts,
  hasKeyVaultIndex,
  provisionCluster,
  rotateCmk,
  DEFAULT_CAPSULE_NAMESPACE,
  isCapsuleProvider,
  keyVaultCollection,
  clusterLocatorOf,
  replayMarkKey,
} from '../mongo/index.ts';
import { assertNotOlder, FileCapsuleWatermarks, watermarkKey } from '../keys/capsule-watermarks.ts';
import { millisFrom, parseCommandArgs, uriFrom } from './args.ts';
import { loadPublicIdentityFile } from './crypto-commands.ts';
import type { CliIO, Command } from './types.ts';

const URI_HELP = `  --uri <uri>              connection string; default: the MONGODB_URI environment variable
                           (prefer the variable: a password on a command line is visible to other users)`;
const NAMESPACE_HELP = `  --capsules <db.coll>     capsule collection (default ${DEFAULT_CAPSULE_NAMESPACE})
  --key-vault <db.coll>    CSFLE key vault (default ${DEFAULT_KEY_VAULT_NAMESPACE})`;


export function keyManagerFor(io: CliIO, options: Pick<KeyManagerOptions, 'trustedSigners' | 'allowUnsigned'> = {}): Promise<KeyManager> {
  // Same sources as the keys commands: the environment opt-in, else the OS keychain (service overridable).
  return resolveKeychain({
    env: io.env,
    warn: (m) => io.stderr.write(`${m}\n`),
    keychain: new OsKeychain({ service: io.env[KEYCHAIN_SERVICE_ENV] || KEYCHAIN_SERVICE }),
  }).then((keychain) => new KeyManager({ keychain, ...options, onWarning: (m) => io.stderr.write(`${m}\n`) }));
}

/**
 * One value from a preferred flag and its older alias (`--capsule` / `--identity` next to the `--name` each
 * command has always had); giving both with different values is ambiguous, so it is a usage error.
 */
function alias(command: string, values: Record<string, unknown>, preferred: string, old: string): string | undefined {
  const a = values[preferred] as string | undefined;
  const b = values[old] as string | undefined;
  if (a !== undefined && b !== undefined && a !== b) {
    throw new UsageError(`${command}: --${preferred} ${a} and --${old} ${b} name different things; give only --${preferred}`, `run \`mongo-capsule ${command} --help\` for usage`);
  }
  return a ?? b;
}

function say(io: CliIO, line: string): void {
  io.stdout.write(`${line}\n`);
}

const seed: Command = {
  summary: 'seal a new CSFLE master key for a public identity and store it in a cluster (once)',
  usage: `Usage: mongo-capsule seed [--uri <uri>] --pub <file>... [--capsule <name>] [--identity <identity>] [--json]

Seals a fresh 96-byte CSFLE master key for the public identity in <file> and stores the capsule in the
cluster, unless a capsule with that name already exists (then nothing changes). Needs no keychain: the
operator only needs the public file. Prints the capsule name and the recipient kid. With several --pub the
same CMK is sealed for each of them (recipients of one capsule; \`keys grant\` adds one later).

${URI_HELP}
  --pub <file>             public identity file (<name>.pub.json from \`mongo-capsule init\`); repeatable: every
                           identity named opens the capsule with its own keychain
  --capsule <name>         capsule name (default "${DEFAULT_CAPSULE_NAME}"); --name <capsule> is the older spelling
  --identity <identity>    sign the capsule with this identity from the OS keychain, and check that it opens;
                           --sign-name <identity> is the older spelling
  --capsules <db.coll>     capsule collection (default ${DEFAULT_CAPSULE_NAMESPACE})
  --key-vault <db.coll>    also create the unique keyAltNames index of this CSFLE key vault
  --accept-existing        exit 0 even when the capsule already exists sealed for another key than --pub
  --json                   print {"capsule", "kid", "created"} as JSON

Without --identity the capsule is stored UNSIGNED, and nothing opens an unsigned capsule (anyone who can
write the capsule collection could have made it): the owner of the identity runs \`mongo-capsule endorse\`
once on their machine, which replaces it with a fresh CMK signed by them.
`,
  async run(args, io) {
    const { values } = parseCommandArgs('seed', args, {
      uri: { type: 'string' },
      pub: { type: 'string', multiple: true },
      name: { type: 'string' },
      capsule: { type: 'string' },
      'sign-name': { type: 'string' },
      identity: { type: 'string' },
      capsules: { type: 'string' },
      'key-vault': { type: 'string' },
      'accept-existing': { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const capsuleName = alias('seed', values, 'capsule', 'name') ?? DEFAULT_CAPSULE_NAME;
    const uri = uriFrom('seed', values, io);
    const pubFiles = values.pub ?? [];
    if (pubFiles.length === 0) throw new UsageError('seed: missing required option --pub <file>', 'run `mongo-capsule seed --help` for usage');
    const [recipient, ...others] = await Promise.all(pubFiles.map(loadPublicIdentityFile)) as [PublicIdentity, ...PublicIdentity[]];
    let signer: SecretIdentity | undefined;
    let km: KeyManager | undefined;
    const signName = alias('seed', values, 'identity', 'sign-name');
    if (signName !== undefined) {
      km = await keyManagerFor(io);
      signer = await km.getSecretIdentity(signName);
    }
    let result;
    try {
      result = await provisionCluster({
        uri,
        capsuleName,
        recipient,
        additionalRecipients: others,
        ...(signer === undefined ? {} : { signer }),
        ...(km === undefined || signName === undefined ? {} : { unwrap: (c: Uint8Array) => km.unwrap(c, signName) }),
        ...(values.capsules === undefined ? {} : { capsuleNamespace: values.capsules }),
        ...(values['key-vault'] === undefined ? {} : { keyVaultNamespace: values['key-vault'] }),
        // Refused (CAPSULE_OTHER_KEY, both kids named, nothing written) unless accepted; never opened then.
        ...(values['accept-existing'] ? { acceptExisting: true } : {}),
        onProgress: (m) => io.stderr.write(`${m}\n`),
      });
    } finally {
      km?.clearCache(); // wipes the decoded identity, on failure too
    }
    const ours = result.recipientKids.includes(recipient.kid);
    if (signName !== undefined && ours) await recordSealedInCluster(io, recipient.name, uri, values.capsules);
    const keyVault = values['key-vault'];
    if (keyVault !== undefined) {
      // Seeding alone creates no data key, so it used to ignore this flag; the index is what it can prepare.
      const client = await connect(uri, { purpose: 'connecting to create the key vault index' });
      try {
        const index = await ensureKeyVaultIndex(client, { keyVaultNamespace: keyVault, onWarning: (w) => io.stderr.write(`warning: ${w}\n`) });
        io.stderr.write(`key vault ${keyVault}: ${index.uniqueAltNames ? 'unique index on keyAltNames ready' : index.fallbackIndex ? 'unique sparse index on keyAltNames ready (fallback)' : 'no unique index possible on this server'}\n`);
      } finally {
        await client.close().catch(() => {});
      }
    }
    if (!ours) {
      // Only reached with --accept-existing: provisionCluster refuses it otherwise.
      io.stderr.write(`WARNING: capsule ${result.capsuleName} already exists and belongs to ANOTHER key (kid ${result.recipientKids.join(', ')}), not to ${pubFiles[0]} (kid ${recipient.kid}); it was left unchanged (--accept-existing)\n`);
    } else if (!result.created) {
      // Seeding never adds a recipient to a capsule that exists (that needs the CMK): say which ones it lacks.
      const missing = others.map((p, i) => ({ p, file: pubFiles[i + 1]! })).filter(({ p }) => !result.recipientKids.includes(p.kid));
      if (missing.length > 0) {
        const message = `capsule ${result.capsuleName} already exists; ${missing.map(({ p, file }) => `${file} (kid ${p.kid})`).join(', ')} ${missing.length === 1 ? 'is' : 'are'} not among its recipients, and seeding does not add recipients`;
        if (!values['accept-existing']) {
          throw new CapsuleOwnedByOtherKeyError(message, {
            hint: `a recipient adds them with ${missing.map(({ file }) => `\`mongo-capsule keys grant --capsule ${result.capsuleName} --pub ${file}\``).join(', ')}; nothing was changed (--accept-existing: exit 0 anyway)`,
          });
        }
        io.stderr.write(`WARNING: ${message} (--accept-existing)\n`);
      }
    }
    if (result.created && signer === undefined) {
      io.stderr.write(
        `WARNING: capsule ${result.capsuleName} is stored UNSIGNED and nothing will open it yet.\n` +
          `WARNING: the owner of identity ${JSON.stringify(recipient.name)} must run \`mongo-capsule endorse --capsule ${result.capsuleName}\` once on the machine that holds it.\n`,
      );
    }
    if (values.json) {
      say(io, JSON.stringify({ capsule: result.capsuleName, kid: result.kid, created: result.created, recipients: result.recipientKids }));
    } else {
      say(io, `capsule ${result.capsuleName}`);
      say(io, `kid ${result.kid}`);
      if (result.recipientKids.length > 1) say(io, `recipients ${result.recipientKids.join(', ')}`);
      say(io, result.created ? 'created' : 'already present (unchanged)');
    }
    return 0;
  },
};

const rotate: Command = {
  summary: 'rotate the CSFLE master key of a capsule (resumes an interrupted rotation, or abandons it)',
  usage: `Usage: mongo-capsule rotate-cmk [--uri <uri>] [--capsule <name>] [--identity <identity>] [--abandon [--undo-revocation]]

Generates a new CSFLE master key, moves every data key to it (rewrapManyDataKey), and replaces the capsule,
sealed and signed for the identity from the OS keychain. Before writing anything it proves that the capsule
opens and that its CMK decrypts the capsule's data keys. Safe to interrupt: rerunning finishes a pending
rotation, and data stays readable throughout; --abandon undoes a pending rotation instead (the CMK stays).
Running encrypted clients follow the rotation. Needs mongodb-client-encryption (\`npm run setup\`).

${URI_HELP}
  --capsule <name>         capsule name (default "${DEFAULT_CAPSULE_NAME}")
  --identity <identity>    identity in the OS keychain (default "default"); --name <identity> is the older spelling
  --trust <pub.json>       also accept a capsule signed by this public identity (repeatable)
  --allow-unsigned         UNSAFE: also open an unsigned capsule (warns)
  --accept-rollback        rotate even when the capsule is older than one this machine already opened
  --abandon                undo the pending rotation: move the data keys already moved back, keep the live CMK
  --undo-revocation        with --abandon: undo a rotation that revokes a recipient (keys revoke) too; refused
                           without it, since the revoked key holds the live CMK (finish it with keys revoke)
  --client-wait-ms <ms>    wait after announcing the new CMK, before moving keys, so running encrypted clients
                           load it (default ${DEFAULT_CLIENT_REFRESH_WAIT_MS}; 0 when no client runs)
${NAMESPACE_HELP}
`,
  async run(args, io) {
    const { values } = parseCommandArgs('rotate-cmk', args, {
      uri: { type: 'string' },
      name: { type: 'string' },
      identity: { type: 'string' },
      capsule: { type: 'string' },
      abandon: { type: 'boolean' },
      'undo-revocation': { type: 'boolean' },
      trust: { type: 'string', multiple: true },
      'allow-unsigned': { type: 'boolean' },
      'accept-rollback': { type: 'boolean' },
      'client-wait-ms': { type: 'string' },
      capsules: { type: 'string' },
      'key-vault': { type: 'string' },
    });
    const uri = uriFrom('rotate-cmk', values, io);
    const identity = alias('rotate-cmk', values, 'identity', 'name') ?? 'default';
    const capsuleName = values.capsule ?? DEFAULT_CAPSULE_NAME;
    const clientRefreshWaitMS = millisFrom('rotate-cmk', values, 'client-wait-ms');
    const namespaces = {
      ...(values.capsules === undefined ? {} : { capsuleNamespace: values.capsules }),
      ...(values['key-vault'] === undefined ? {} : { keyVaultNamespace: values['key-vault'] }),
    };
    const km = await keyManagerFor(io, {
      trustedSigners: await Promise.all((values.trust ?? []).map(loadPublicIdentityFile)),
      allowUnsigned: values['allow-unsigned'] === true,
    });
    let owned: SecretIdentity | undefined;
    try {
      if (values['undo-revocation'] === true && values.abandon !== true) {
        throw new UsageError('rotate-cmk: --undo-revocation goes with --abandon (it undoes a pending revocation)', 'run `mongo-capsule rotate-cmk --help` for usage');
      }
      if (values.abandon) {
        const r = await abandonCmkRotation({
          uri,
          capsuleName,
          unwrap: (c) => km.unwrap(c, identity),
          ...namespaces,
          undoRevocation: values['undo-revocation'] === true,
          onProgress: (m) => io.stderr.write(`${m}\n`),
        });
        say(io, r.abandoned ? `capsule ${r.capsuleName}: CMK rotation ${r.rotationId ?? ''} abandoned` : `capsule ${r.capsuleName}: no CMK rotation pending (nothing to abandon)`);
        say(io, `data keys moved back ${r.movedBack} (provider ${r.kmsProvider}, generation ${r.generation})`);
        return 0;
      }
      // A copy of our own: the key manager wipes its cached identity when the cache time runs out, which a rotation
      // (it waits for running clients) can outlast.
      const secret = copySecretIdentity(await km.getSecretIdentity(identity));
      owned = secret;
      // A CMK a rotation retired must not come back through rotate-cmk either: the rotation checks the live capsule
      // against the replay mark the encrypted clients of this machine keep, and raises it to the new capsule.
      const r = await rotateCmk({
        uri,
        capsuleName,
        recipient: secret,
        signer: secret,
        unwrap: (c) => km.unwrap(c, identity),
        replay: {
          store: new FileCapsuleWatermarks(),
          key: replayMarkKey(clusterLocatorOf(uri), values.capsules ?? DEFAULT_CAPSULE_NAMESPACE, capsuleName),
          acceptRollback: values['accept-rollback'] === true,
        },
        ...namespaces,
        ...(clientRefreshWaitMS === undefined ? {} : { clientRefreshWaitMS }),
        onProgress: (m) => io.stderr.write(`${m}\n`),
      });
      say(io, `capsule ${r.capsuleName}: CMK rotated${r.resumed ? ' (finished an interrupted rotation)' : ''}`);
      say(io, `kid ${r.kid}`);
      say(io, `data keys moved ${r.rewrapped} (${r.fromProvider} → ${r.toProvider})`);
      return 0;
    } finally {
      if (owned !== undefined) wipeSecretIdentity(owned);
      km.clearCache();
    }
  },
};

/** The identity name a stored `.pub.json` text gives (display only; rotations verify it against the CMK). */
function recipientName(text: string): string {
  try {
    const name = (JSON.parse(text) as { name?: unknown }).name;
    return typeof name === 'string' ? name : '?';
  } catch {
    return '?';
  }
}

type Check = { status: 'ok' | 'warn' | 'fail'; what: string; detail: string };

const doctor: Command = {
  summary: 'check what works and what is missing: server, auth, key vault, capsule, signature, CMK, identity, libmongocrypt',
  usage: `Usage: mongo-capsule doctor [--uri <uri>] [--capsule <name>] [--identity <identity>] [--trust <pub.json>]...

Prints one line per check (ok / warn / FAIL) and exits 1 when any check fails. Changes nothing.
The capsule must be signed by the identity or by a --trust'ed signer, and its CMK must decrypt the capsule's
data keys in the key vault (this unwraps the capsule with the identity from the OS keychain).

${URI_HELP}
  --capsule <name>         capsule to look for (default "${DEFAULT_CAPSULE_NAME}")
  --identity <identity>    identity expected in the OS keychain (default "default"); --name <identity> is the
                           older spelling
  --trust <pub.json>       also accept capsules signed by this public identity (repeatable)
${NAMESPACE_HELP}
`,
  async run(args, io) {
    const { values } = parseCommandArgs('doctor', args, {
      uri: { type: 'string' },
      capsule: { type: 'string' },
      name: { type: 'string' },
      identity: { type: 'string' },
      trust: { type: 'string', multiple: true },
      capsules: { type: 'string' },
      'key-vault': { type: 'string' },
    });
    const uri = uriFrom('doctor', values, io);
    const capsuleName = values.capsule ?? DEFAULT_CAPSULE_NAME;
    const identity = alias('doctor', values, 'identity', 'name') ?? 'default';
    const keyVault = values['key-vault'] ?? DEFAULT_KEY_VAULT_NAMESPACE;
    const trusted = new Map<string, string>();
    const signers: PublicIdentity[] = [];
    for (const file of values.trust ?? []) {
      const signer = await loadPublicIdentityFile(file);
      signers.push(signer);
      trusted.set(signer.signer.kid, file);
    }
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
    let record: CapsuleRecord | undefined;
    try {
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
            else {
              add(
                'warn',
                'key vault',
                `${keyVault} has no unique index on keyAltNames: \`seed\` alone does not create it; \`mongo-capsule seed --key-vault ${keyVault}\` (or provisioning with data keys) does. ` +
                  'Without it, concurrent creators of a data key converge on the oldest key',
              );
            }
          } catch (e) {
            add('fail', 'key vault', why(e));
          }

          try {
            const store = new CapsuleStore(client, values.capsules === undefined ? {} : { namespace: values.capsules });
            const found = await store.find(capsuleName);
            if (found === null) add('fail', 'capsule', `no capsule ${capsuleName} in ${store.namespace} (seed one with \`mongo-capsule seed\`)`);
            else {
              record = found;
              const h = found.header;
              const p = found.pendingRotation;
              const pending = p
                ? p.revokedKid !== null
                  ? `; CMK rotation ${p.id} revoking ${p.revokedKid} pending since ${p.startedAt.toISOString()} (${p.phase}): finish it with \`mongo-capsule keys revoke --kid ${p.revokedKid} --capsule ${capsuleName}\``
                  : `; CMK rotation ${p.id} pending since ${p.startedAt.toISOString()} (${p.phase}): finish it with \`mongo-capsule rotate-cmk --capsule ${capsuleName}\` or undo it with \`mongo-capsule rotate-cmk --abandon --capsule ${capsuleName}\``
                : '';
              add(pending ? 'warn' : 'ok', 'capsule', `${capsuleName}: suite ${h.suite}, kid ${h.kid}, ${h.signed ? 'signed' : 'UNSIGNED'}, generation ${found.generation}${pending}`);
              add(
                'ok',
                'epoch',
                found.dataKeyEpoch === 0
                  ? 'data-key epoch 0 (no revocation yet)'
                  : `data-key epoch ${found.dataKeyEpoch}: new values use this epoch's data keys (${found.dataKeyEpoch} revocation(s)); query by equality with queryValues`,
              );
              if (found.recipients.length > 1) {
                add('ok', 'recipients', found.recipients.map((e) => `${e.header.kid}${e.publicIdentity === null ? '' : ` (${recipientName(e.publicIdentity)})`}`).join(', '));
              }
              // A validly signed but older generation (a replay of a capsule a rotation retired) opens fine: only the
              // mark of the newest generation this machine opened tells it apart.
              try {
                const mark = await new FileCapsuleWatermarks().get(watermarkKey(store.locator, store.namespace, capsuleName));
                assertNotOlder(mark, { createdAt: h.createdAt.getTime(), sha256: found.sha256 }, `capsule ${capsuleName}`);
                add('ok', 'replay', mark === undefined ? 'this machine has not opened this capsule before: nothing to compare with' : 'not older than the generation this machine last opened');
              } catch (e) {
                add('fail', 'replay', why(e));
              }
            }
          } catch (e) {
            add('fail', 'capsule', why(e));
          }
        } catch (e) {
          add('fail', 'server', why(e));
        }
      }

      let pub: PublicIdentity | undefined;
      const km = await keyManagerFor(io).catch((e: unknown) => {
        add('fail', 'identity', why(e));
        return undefined;
      });
      try {
        if (km) {
          try {
            pub = await km.getPublicIdentity(identity);
            if (record !== undefined && pub.kid !== record.header.kid) add('fail', 'identity', `${identity} has kid ${pub.kid}, but the capsule is sealed for ${record.header.kid}`);
            else add('ok', 'identity', `${identity}: suite ${pub.suite}, kid ${pub.kid}${record ? ' (the capsule is sealed for it)' : ''}`);
          } catch (e) {
            add('fail', 'identity', why(e));
          }
        }

        if (record !== undefined) {
          const h = record.header;
          // Whoever can write the capsule collection could put an unsigned capsule there holding a CMK of their
          // choosing; only a signature by a key the opener trusts rules that out.
          if (!h.signed || h.signerKid === null) {
            add('fail', 'signature', `capsule ${capsuleName} is UNSIGNED: anyone who can write ${values.capsules ?? DEFAULT_CAPSULE_NAMESPACE} could have chosen its CMK; openers refuse it unless they opt into unsigned capsules`);
          } else if (pub !== undefined && h.signerKid === pub.signer.kid) {
            add('ok', 'signature', `signed by ${identity} (signer kid ${h.signerKid})`);
          } else if (trusted.has(h.signerKid)) {
            add('ok', 'signature', `signed by the trusted signer in ${trusted.get(h.signerKid)!} (signer kid ${h.signerKid})`);
          } else {
            add('fail', 'signature', `capsule ${capsuleName} is signed by ${h.signerKid}, which is neither ${identity}'s signing key${pub ? ` (${pub.signer.kid})` : ''} nor a --trust'ed one`);
          }
        }

        if (record !== undefined && client && km && pub !== undefined && pub.kid === record.header.kid) {
          if (csfle.available) add(...(await checkCmk(client, record, keyVault, (c) => km.unwrap(c, identity, signers.length > 0 ? { signers } : {}), why)));
          else add('warn', 'cmk', 'not checked against the key vault: that needs mongodb-client-encryption (see libmongocrypt below)');
        }
      } finally {
        km?.clearCache();
      }
    } finally {
      await client?.close().catch(() => {});
    }

    if (csfle.available) add('ok', 'libmongocrypt', `mongodb-client-encryption loads (libmongocrypt ${csfle.libmongocryptVersion ?? '?'})`);
    else add('fail', 'libmongocrypt', `mongodb-client-encryption cannot be loaded: ${csfle.reason ?? '?'} (run \`npm run setup\`)`);

    return checks.some((c) => c.status === 'fail') ? 1 : 0;
  },
};

/** Doctor's proof that the capsule's CMK(s) decrypt its data keys (at most 1000 per provider are tried). */
async function checkCmk(
  client: Parameters<typeof proveCapsuleCmk>[0],
  record: CapsuleRecord,
  keyVault: string,
  unwrap: (c: Uint8Array) => Promise<Uint8Array>,
  why: (e: unknown) => string,
): Promise<[Check['status'], string, string]> {
  try {
    const { checked, providers } = await proveCapsuleCmk(client, record, { unwrap, keyVaultNamespace: keyVault, limit: 1000 });
    if (checked === 0) return ['ok', 'cmk', `capsule ${record.name} has no data key in ${keyVault} yet (nothing to check its CMK against)`];
    return ['ok', 'cmk', `the CMK of capsule ${record.name} decrypts its ${checked} data key(s) in ${keyVault} (${providers.join(', ')})`];
  } catch (e) {
    const pending = record.pendingRotation ? `; the pending rotation cannot finish: undo it with \`mongo-capsule rotate-cmk --abandon --capsule ${record.name}\`` : '';
    return ['fail', 'cmk', `${why(e)}${pending}`];
  }
}

const endorse: Command = {
  summary: "vouch for a capsule seeded without the identity: replace it with a fresh CMK signed by its owner",
  usage: `Usage: mongo-capsule endorse [--uri <uri>] [--capsule <name>] [--identity <identity>] [--trust <pub.json>]...

Run once by the owner of the identity, on the machine that holds it, after \`seed --pub\` stored an unsigned
capsule from elsewhere. The unsigned CMK is never trusted (anyone who can write the capsule collection could
have chosen it): the capsule is replaced (compare-and-swap) by a FRESH CMK sealed for the same key and signed
by the identity. Refused when data keys already exist under the capsule's CMK. A capsule already signed by the
identity or a --trust'ed key is left alone ("already endorsed").

${URI_HELP}
  --capsule <name>         capsule name (default "${DEFAULT_CAPSULE_NAME}")
  --identity <identity>    identity in the OS keychain that signs (default "default")
  --trust <pub.json>       a capsule signed by this public identity counts as endorsed (repeatable)
${NAMESPACE_HELP}
`,
  async run(args, io) {
    const { values } = parseCommandArgs('endorse', args, {
      uri: { type: 'string' },
      capsule: { type: 'string' },
      identity: { type: 'string' },
      trust: { type: 'string', multiple: true },
      capsules: { type: 'string' },
      'key-vault': { type: 'string' },
    });
    const uri = uriFrom('endorse', values, io);
    const identity = values.identity ?? 'default';
    const capsuleName = values.capsule ?? DEFAULT_CAPSULE_NAME;
    const keyVault = values['key-vault'] ?? DEFAULT_KEY_VAULT_NAMESPACE;
    const trusted = await Promise.all((values.trust ?? []).map(loadPublicIdentityFile));
    const km = await keyManagerFor(io);
    const client = await connect(uri, { purpose: 'endorsing the capsule' });
    try {
      const secret = await km.getSecretIdentity(identity);
      const owner = toPublicIdentity(secret);
      const store = new CapsuleStore(client, values.capsules === undefined ? {} : { namespace: values.capsules });
      const record = await store.load(capsuleName);
      const { header } = parseCapsule(record.bytes);
      const signers = [owner, ...trusted];
      if (header.signed && signers.some((s) => s.signer.kid === header.signerKid)) {
        verifyCapsule(record.bytes, signers); // a bad signature by a trusted key is an error, not "endorsed"
        say(io, `capsule ${capsuleName}: already endorsed (signed by ${header.signerKid})`);
        return 0;
      }
      if (header.kid !== owner.kid) {
        throw new EndorseRefusedError(`capsule ${capsuleName} is sealed for key ${header.kid}, not for identity ${identity} (${owner.kid}); nothing was changed`, {
          hint: 'run endorse as the owner of the key the capsule is sealed for (`--identity <name>`), or seed it again for the right public file',
        });
      }
      if (record.pendingRotation !== null) {
        throw new EndorseRefusedError(`capsule ${capsuleName} has a pending CMK rotation; nothing was changed`, { hint: 'finish or abandon it first (`mongo-capsule rotate-cmk`, `--abandon`)' });
      }
      const keys = await keyVaultCollection(client, keyVault).find({}, { projection: { 'masterKey.provider': 1 } }).toArray();
      const inUse = keys.filter((k) => isCapsuleProvider(capsuleName, (k.masterKey as { provider?: unknown } | undefined)?.provider)).length;
      if (inUse > 0) {
        throw new EndorseRefusedError(`capsule ${capsuleName} is not signed by a trusted key, yet ${inUse} data key(s) in ${keyVault} are under its CMK; nothing was changed`, {
          hint: 'endorse never vouches for a CMK it did not make, and replacing it would strand those keys: if you know where the capsule came from, restore the signed capsule from a backup; otherwise treat the data keys as compromised',
        });
      }
      const cmk = generateCmk();
      let opened: Uint8Array | undefined;
      try {
        const next = wrapKey(cmk, owner, { name: capsuleName, signer: secret });
        opened = await km.unwrap(next, identity);
        const publicIdentity = encodePublicIdentity(owner);
        // Sealed for the owner only: the other recipients of an unsigned capsule were listed by whoever seeded
        // it, and endorsing must not vouch for them. The owner grants them, from their public files, afterwards.
        await store.replace(capsuleName, record.bytes, next, { reason: 'endorse', binding: { publicIdentity, tag: recipientTag(cmk, capsuleName, publicIdentity) }, recipients: [] });
      } finally {
        cmk.fill(0);
        opened?.fill(0);
      }
      say(io, `capsule ${capsuleName}: endorsed (fresh CMK, sealed for ${owner.kid}, signed by ${owner.signer.kid})`);
      const dropped = record.recipients.slice(1).map((e) => e.header.kid);
      if (dropped.length > 0) {
        say(io, `the unsigned capsule also listed recipient(s) ${dropped.join(', ')}: they were not carried over (nobody vouched for that list)`);
        say(io, `grant each one you know, from their public file: mongo-capsule keys grant --capsule ${capsuleName} --pub <their .pub.json>`);
      }
      return 0;
    } finally {
      km.clearCache();
      await client.close().catch(() => {});
    }
  },
};

export const mongoCommands: Record<string, Command> = {
  seed,
  endorse,
  'rotate-cmk': rotate,
  doctor,
};
