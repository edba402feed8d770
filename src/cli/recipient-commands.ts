/**
 * `keys grant` and `keys revoke`: who else opens a cluster's capsule. They are subcommands of `keys`;
 * `withRecipientCommands` adds them to the `keys` command (as backup-commands.ts does for the recovery ones).
 */
import { RecipientNotFoundError, UsageError } from '../errors.ts';
import { CapsuleStore, clusterLocatorOf, connect, DEFAULT_CAPSULE_NAME, DEFAULT_CAPSULE_NAMESPACE, grantRecipient, replayMarkKey, rotateCmk, type ReplayGuard } from '../mongo/index.ts';
import { FileCapsuleWatermarks } from '../keys/capsule-watermarks.ts';
import { copySecretIdentity, wipeSecretIdentity, type SecretIdentity } from '../crypto/index.ts';
import { millisFrom, parseCommandArgs, uriFrom } from './args.ts';
import { recordSealedInCluster } from './capsule-locations.ts';
import { loadPublicIdentityFile } from './crypto-commands.ts';
import { keyManagerFor } from './mongo-commands.ts';
import type { CliIO, Command } from './types.ts';

export const RECIPIENT_USAGE = `
  grant   --pub <file> [--capsule <name>] [--identity <identity>] [--uri <uri>] [--trust <pub file>]...
          [--capsules <db.coll>] [--key-vault <db.coll>] [--json]
          seal the cluster capsule's CMK for one more identity (its public file), signed by --identity (default
          "default", which must be a recipient); every recipient opens the same CMK with its own keychain. The
          new recipient must trust the granter's public identity (\`--trust\`, option \`trustedSigners\`)
  revoke  --kid <kid> [--capsule <name>] [--identity <identity>] [--uri <uri>] [--trust <pub file>]...
          [--client-wait-ms <ms>] [--capsules <db.coll>] [--key-vault <db.coll>]
          remove a recipient and rotate the CMK in the same step, so that the revoked key cannot open the new
          CMK; resumable (run it again after an interruption). What it cannot undo: whatever the revoked key
          already read (documents, the data keys themselves); see docs/keys.md "Revoking a recipient"`;

async function grant(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys grant', args, {
    pub: { type: 'string' },
    capsule: { type: 'string' },
    identity: { type: 'string' },
    uri: { type: 'string' },
    trust: { type: 'string', multiple: true },
    capsules: { type: 'string' },
    'key-vault': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.pub === undefined) throw new UsageError('keys grant: missing required option --pub <file> (the public identity to give access)', 'run `mongo-capsule keys --help` for usage');
  const uri = uriFrom('keys grant', values, io);
  const capsuleName = values.capsule ?? DEFAULT_CAPSULE_NAME;
  const identity = values.identity ?? 'default';
  const recipient = await loadPublicIdentityFile(values.pub);
  const km = await keyManagerFor(io, { trustedSigners: await Promise.all((values.trust ?? []).map(loadPublicIdentityFile)) });
  let r;
  let signer: SecretIdentity | undefined;
  try {
    // A copy of our own: the key manager wipes its cached identity when the cache time runs out, which a revocation
    // (it waits for running clients) can outlast.
    signer = copySecretIdentity(await km.getSecretIdentity(identity));
    r = await grantRecipient({
      uri,
      capsuleName,
      recipient,
      unwrap: (c) => km.unwrap(c, identity),
      replay: replayGuard(uri, values.capsules, capsuleName),
      signer,
      ...(values.capsules === undefined ? {} : { capsuleNamespace: values.capsules }),
      ...(values['key-vault'] === undefined ? {} : { keyVaultNamespace: values['key-vault'] }),
      onProgress: (m) => io.stderr.write(`${m}\n`),
    });
  } finally {
    if (signer !== undefined) wipeSecretIdentity(signer);
    km.clearCache();
  }
  await recordSealedInCluster(io, identity, uri, values.capsules);
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ capsule: r.capsuleName, kid: r.kid, added: r.added, recipients: r.recipientKids })}\n`);
  } else {
    io.stdout.write(`capsule ${r.capsuleName}: ${r.added ? `granted to key ${r.kid} (${recipient.name})` : `key ${r.kid} (${recipient.name}) already is a recipient (unchanged)`}\n`);
    io.stdout.write(`recipients: ${r.recipientKids.join(', ')}\n`);
    if (r.added) io.stdout.write(`${recipient.name} opens it with their own keychain once they trust your public identity (\`--trust ${identity}.pub.json\`, KeyManager option trustedSigners)\n`);
  }
  return 0;
}

async function revoke(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys revoke', args, {
    kid: { type: 'string' },
    capsule: { type: 'string' },
    identity: { type: 'string' },
    uri: { type: 'string' },
    trust: { type: 'string', multiple: true },
    'client-wait-ms': { type: 'string' },
    capsules: { type: 'string' },
    'key-vault': { type: 'string' },
  });
  const kid = values.kid;
  if (kid === undefined || !/^[0-9a-f]{32}$/.test(kid)) {
    throw new UsageError(`keys revoke: --kid must be the 32 hex digits of the recipient's key id${kid === undefined ? '' : `, not ${JSON.stringify(kid)}`}`, '`mongo-capsule doctor` lists the recipients of the capsule; `mongo-capsule inspect <pub file>` shows the kid of a public file');
  }
  const uri = uriFrom('keys revoke', values, io);
  const capsuleName = values.capsule ?? DEFAULT_CAPSULE_NAME;
  const identity = values.identity ?? 'default';
  const clientRefreshWaitMS = millisFrom('keys revoke', values, 'client-wait-ms');
  const namespaces = {
    ...(values.capsules === undefined ? {} : { capsuleNamespace: values.capsules }),
    ...(values['key-vault'] === undefined ? {} : { keyVaultNamespace: values['key-vault'] }),
  };
  const km = await keyManagerFor(io, { trustedSigners: await Promise.all((values.trust ?? []).map(loadPublicIdentityFile)) });
  let secret: SecretIdentity | undefined;
  try {
    secret = copySecretIdentity(await km.getSecretIdentity(identity));
    let r;
    try {
      r = await rotateCmk({
        uri,
        capsuleName,
        recipient: secret,
        signer: secret,
        unwrap: (c) => km.unwrap(c, identity),
        replay: replayGuard(uri, values.capsules, capsuleName),
        revokeKid: kid,
        ...namespaces,
        ...(clientRefreshWaitMS === undefined ? {} : { clientRefreshWaitMS }),
        onProgress: (m) => io.stderr.write(`${m}\n`),
      });
    } catch (e) {
      // A rerun after the revocation finished: say so rather than that the key is unknown.
      if (e instanceof RecipientNotFoundError && (await alreadyRevoked(uri, values.capsules, capsuleName, kid))) {
        io.stdout.write(`capsule ${capsuleName}: key ${kid} was already revoked (a CMK rotation left it out); nothing to do\n`);
        return 0;
      }
      throw e;
    }
    io.stdout.write(`capsule ${r.capsuleName}: key ${kid} revoked; the CMK was rotated${r.resumed ? ' (finished an interrupted revocation)' : ''} (generation ${r.generation})\n`);
    io.stdout.write(`recipients: ${r.recipientKids.join(', ')}\n`);
    io.stdout.write(`data keys moved ${r.rewrapped} (${r.fromProvider} → ${r.toProvider}); new values get fresh data keys (data-key epoch ${r.dataKeyEpoch}), query them with queryValues\n`);
    io.stdout.write(
      'the revoked key cannot open the new CMK nor the new data keys; it keeps whatever it already read, the earlier data keys included. Also remove its database user (with write access it could undo this), and stop trusting its public identity as a signer (--trust, trustedSigners)\n',
    );
    return 0;
  } finally {
    if (secret !== undefined) wipeSecretIdentity(secret);
    km.clearCache();
  }
}

/** The capsule's history shows a rotation that revoked `kid`. */
async function alreadyRevoked(uri: string, namespace: string | undefined, capsuleName: string, kid: string): Promise<boolean> {
  const client = await connect(uri, { purpose: 'reading the capsule history' });
  try {
    const store = new CapsuleStore(client, namespace === undefined ? {} : { namespace });
    return (await store.history(capsuleName)).some((h) => h.replacedBy === `cmk-rotation (revoked ${kid})`);
  } finally {
    await client.close().catch(() => {});
  }
}

/**
 * This machine's replay marks for the capsule (capsule-watermarks.ts): the grant or revocation refuses a live
 * capsule older than the newest opened here (a retired generation written back), and raises the mark otherwise.
 */
function replayGuard(uri: string, namespace: string | undefined, capsuleName: string): ReplayGuard {
  return { store: new FileCapsuleWatermarks(), key: replayMarkKey(clusterLocatorOf(uri), namespace ?? DEFAULT_CAPSULE_NAMESPACE, capsuleName) };
}

const RECIPIENT_SUBCOMMANDS: Record<string, (args: string[], io: CliIO) => Promise<number>> = { grant, revoke };

/** The `keys` command with `grant` and `revoke` added to its subcommands and its usage. */
export function withRecipientCommands(commands: Record<string, Command>): Record<string, Command> {
  const keys = commands.keys!;
  return {
    ...commands,
    keys: {
      summary: `${keys.summary}, grant, revoke`,
      usage: keys.usage.replace(/\n\nEnvironment:/, `${RECIPIENT_USAGE}\n\nEnvironment:`),
      run(args, io) {
        const sub = RECIPIENT_SUBCOMMANDS[args[0] ?? ''];
        return sub === undefined ? keys.run(args, io) : sub(args.slice(1), io);
      },
    },
  };
}
