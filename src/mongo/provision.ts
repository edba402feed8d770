/**
 * Provisioning a cluster for mongo-capsule: the one idempotent call the Pulumi program and the scripts make.
 *
 * ```ts
 * provisionCluster(options: ProvisionOptions): Promise<ProvisionResult>
 *
 * interface ProvisionOptions {
 *   uri: string;                                   // connection string (credentials allowed; never logged)
 *   replicaSet?: { name?: string;                  // default 'rs0'
 *                  members: { host: string; priority?: number }[] };  // initiate if needed, via members[0] directly
 *   rootUser?: { username: string; password: string };  // created on admin if absent (localhost exception or auth)
 *   capsuleName?: string;                          // default 'default'
 *   recipient: PublicIdentity;                     // the identity the CMK is sealed for (public part only)
 *   additionalRecipients?: PublicIdentity[];       // further identities a new capsule is sealed for (same CMK)
 *   signer?: Pick<SecretIdentity, 'signer' | 'signerSecretKey'>;  // signs a newly sealed capsule (recommended)
 *   unwrap?: Unwrapper;                            // (capsule) => CMK; needed to verify a new capsule before it is
 *                                                  // stored, and to create data keys when the capsule already exists
 *   dataKeyAltNames?: string[];                    // data keys to get or create (needs mongodb-client-encryption)
 *   keyVaultNamespace?: string;                    // default 'encryption.__keyVault'
 *   capsuleNamespace?: string;                     // default 'encryption.capsules'
 *   timeoutMs?: number;                            // bound on waiting for a writable primary (default 60 s)
 *   serverSelectionTimeoutMS?: number;             // bound on finding a server (default 10 s)
 *   watermarks?: CapsuleWatermarkStore | false;    // replay marks (default: the file under the state directory)
 *   acceptRollback?: boolean;                      // open an older capsule on purpose (a restored backup)
 *   acceptExisting?: boolean;                      // a capsule of that name sealed for another key than
 *                                                  // `recipient` is left alone instead of refused (never opened)
 *   onProgress?: (message: string) => void;        // human-readable steps; never contains secrets
 * }
 *
 * interface ProvisionResult {
 *   capsuleName: string;
 *   kid: string;                                   // recipient key id of the live capsule
 *   recipientKids: string[];                       // every recipient of the live capsule, kid first
 *   created: boolean;                              // true when this call sealed and stored the capsule
 *   kmsProvider: string;                           // named local KMS provider, 'local:g<generation>_<capsule>'
 *   dataKeyIds: Record<string, string>;            // alt name → data key UUID (hex with dashes)
 *   replicaSet?: { name: string; initiated: boolean; members: string[] };
 *   rootUserCreated?: boolean;
 *   keyVaultIndex: 'unique-partial' | 'unique-sparse-fallback' | 'none' | 'skipped';
 * }
 * ```
 *
 * Steps: [initiate the replica set → wait for a writable primary → root user] → capsule: load it, or generate a
 * CMK, seal it for `recipient`, prove it opens with `unwrap`, insert-if-absent (a concurrent seeder may win: then
 * its capsule is used) → key-vault index → data keys. Every step is skipped when already done, so re-running
 * after a crash converges. The CMK is wiped before returning. Nothing is written when the capsule that exists
 * cannot be opened with `unwrap` (wrong identity, or not signed by a key it trusts), when it is older than the
 * generation this machine last opened (a replay: CapsuleReplayError, see capsule-watermarks.ts), when it is
 * sealed for another key than `recipient` (CapsuleOwnedByOtherKeyError naming both kids, unless
 * `acceptExisting`), or when CSFLE is needed and unavailable.
 */
import { timingSafeEqual } from 'node:crypto';
import { ClientEncryption, type Binary, type KMSProviders, type MongoClient } from 'mongodb';
import { encodePublicIdentity, generateCmk, recipientTag, wrapKey, type PublicIdentity, type SecretIdentity } from '../crypto/index.ts';
import { CapsuleAuthError, CapsuleOwnedByOtherKeyError, InvalidArgumentError } from '../errors.ts';
import { CapsuleStore, type CapsuleRecord, type SealedRecipient } from './capsule-store.ts';
import { connect, DEFAULT_SERVER_SELECTION_TIMEOUT_MS, directConnectionUri, mongoError } from './connection.ts';
import { requireCsfle } from './csfle.ts';
import { checkWatermark, FileCapsuleWatermarks, watermarkKey, type CapsuleWatermarkStore } from '../keys/capsule-watermarks.ts';
import { capsuleKeys, DEFAULT_CAPSULE_NAME, epochKeyScope, toUnwrapFn, type CapsuleKeys, type ReplayGuard, type Unwrapper } from './encrypted-client.ts';
import { DEFAULT_KEY_VAULT_NAMESPACE, ensureKeyVaultIndex, findDataKeys, getOrCreateDataKey } from './key-vault.ts';
import { DEFAULT_PRIMARY_TIMEOUT_MS, DEFAULT_REPLICA_SET_NAME, ensureReplicaSet, ensureRootUser, type ReplicaSetMember } from './replica-set.ts';

export interface ProvisionOptions {
  uri: string;
  replicaSet?: { name?: string; members: ReplicaSetMember[] };
  rootUser?: { username: string; password: string };
  capsuleName?: string;
  recipient: PublicIdentity;
  /** Further identities a newly sealed capsule is sealed for too (each opens the same CMK). */
  additionalRecipients?: PublicIdentity[];
  signer?: Pick<SecretIdentity, 'signer' | 'signerSecretKey'>;
  unwrap?: Unwrapper;
  dataKeyAltNames?: string[];
  keyVaultNamespace?: string;
  capsuleNamespace?: string;
  timeoutMs?: number;
  serverSelectionTimeoutMS?: number;
  /**
   * Replay marks, as for openEncryptedClient: an existing capsule older than the newest generation this machine
   * opened is refused before anything is written (default: a file under the state directory; `false`: no check).
   * A capsule this call seals raises the mark.
   */
  watermarks?: CapsuleWatermarkStore | false;
  /** Open an older capsule on purpose (a restored backup) and lower the mark to it. */
  acceptRollback?: boolean;
  /** Leave a capsule of that name sealed for another key than `recipient` alone (it is never opened) instead of refusing. */
  acceptExisting?: boolean;
  onProgress?: (message: string) => void;
}

export interface ProvisionResult {
  capsuleName: string;
  kid: string;
  /** Every recipient kid of the live capsule, `kid` first. */
  recipientKids: string[];
  created: boolean;
  kmsProvider: string;
  dataKeyIds: Record<string, string>;
  replicaSet?: { name: string; initiated: boolean; members: string[] };
  rootUserCreated?: boolean;
  keyVaultIndex: 'unique-partial' | 'unique-sparse-fallback' | 'none' | 'skipped';
}

export async function provisionCluster(options: ProvisionOptions): Promise<ProvisionResult> {
  const {
    uri,
    capsuleName = DEFAULT_CAPSULE_NAME,
    recipient,
    dataKeyAltNames = [],
    keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE,
    capsuleNamespace,
    timeoutMs = DEFAULT_PRIMARY_TIMEOUT_MS,
    serverSelectionTimeoutMS = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    onProgress,
  } = options;
  if (recipient === null || typeof recipient !== 'object' || typeof recipient.kid !== 'string') {
    throw new InvalidArgumentError('provisionCluster: recipient must be a public identity (suite, kid, publicKey)');
  }
  if (!Array.isArray(dataKeyAltNames) || dataKeyAltNames.some((n) => typeof n !== 'string' || n.length === 0)) {
    throw new InvalidArgumentError('provisionCluster: dataKeyAltNames must be non-empty strings');
  }
  const unwrap = options.unwrap === undefined ? undefined : toUnwrapFn(options.unwrap);
  // Fail before changing anything when the data keys cannot be made here.
  if (dataKeyAltNames.length > 0) requireCsfle('creating data keys');

  const result: Partial<ProvisionResult> = {};
  if (options.replicaSet || options.rootUser) {
    const members = options.replicaSet?.members;
    const adminUri = members && members.length > 0 ? directConnectionUri(uri, members[0]!.host) : uri;
    const admin = await connect(adminUri, { serverSelectionTimeoutMS, purpose: 'connecting to initiate the replica set' });
    let primaryHost: string | undefined;
    try {
      if (options.replicaSet) {
        const rs = await ensureReplicaSet(admin, {
          setName: options.replicaSet.name ?? DEFAULT_REPLICA_SET_NAME,
          members: options.replicaSet.members,
          timeoutMs,
          ...(onProgress === undefined ? {} : { onProgress }),
        });
        result.replicaSet = { name: rs.setName, initiated: rs.initiated, members: rs.members };
        primaryHost = rs.primary;
      }
      if (options.rootUser) {
        const { created } = await withPrimary(admin, uri, result.replicaSet === undefined ? undefined : primaryHost, serverSelectionTimeoutMS, (c) => ensureRootUser(c, options.rootUser!));
        onProgress?.(created ? `created user ${options.rootUser.username} on admin` : `user ${options.rootUser.username} already exists`);
        result.rootUserCreated = created;
      }
    } finally {
      await admin.close().catch(() => {});
    }
  }

  const client = await connect(uri, { serverSelectionTimeoutMS, purpose: 'connecting to provision the capsule' });
  try {
    const store = new CapsuleStore(client, capsuleNamespace === undefined ? {} : { namespace: capsuleNamespace });
    const marks = options.watermarks === undefined ? new FileCapsuleWatermarks() : options.watermarks;
    // Checked (and raised) only after `unwrap` verified the capsule's signature, as the encrypted client does.
    const replay: ReplayGuard | undefined = marks === false ? undefined : { store: marks, key: watermarkKey(store.locator, store.namespace, capsuleName), acceptRollback: options.acceptRollback === true };
    let keys: CapsuleKeys | undefined;
    try {
      const existing = await store.find(capsuleName);
      let created = false;
      let record: CapsuleRecord;
      if (existing === null) {
        // A concurrent seeder may have stored one for another key: only a capsule sealed for `recipient` is opened.
        const seeded = await seedCapsule(store, {
          name: capsuleName,
          recipient,
          additionalRecipients: options.additionalRecipients ?? [],
          ...(options.signer === undefined ? {} : { signer: options.signer }),
          ...(unwrap === undefined ? {} : { unwrap }),
          ...(replay === undefined ? {} : { replay }),
        });
        created = seeded.created;
        record = seeded.record;
        keys = seeded.keys;
        if (!created) ownedBy(record, recipient, options.acceptExisting === true, onProgress);
        onProgress?.(created ? `sealed a new CMK into capsule ${capsuleName} for key ${recipient.kid}` : `capsule ${capsuleName} was seeded concurrently; using it`);
      } else {
        record = existing;
        onProgress?.(`capsule ${capsuleName} exists (key ${record.header.kid}, generation ${record.generation})`);
        // Opening it proves the identity before anything else is written.
        if (ownedBy(record, recipient, options.acceptExisting === true, onProgress) && unwrap) keys = await capsuleKeys(record, unwrap, replay);
      }

      let keyVaultIndex: ProvisionResult['keyVaultIndex'] = 'skipped';
      const dataKeyIds: Record<string, string> = {};
      if (dataKeyAltNames.length > 0 && keys === undefined) {
        // Without a way to open the capsule (an unsigned seed by an operator who holds only the public file)
        // data keys cannot be made, but ones that exist need no CMK: a re-run must converge, not fail.
        const found = await existingDataKeys(client, keyVaultNamespace, record, dataKeyAltNames);
        const missing = dataKeyAltNames.filter((n) => found[n] === undefined);
        if (missing.length > 0) {
          throw new InvalidArgumentError(`provisionCluster: creating data key(s) ${missing.join(', ')} needs the identity that opens capsule ${capsuleName}`, {
            hint: 'provision on a machine whose keychain holds the identity (`npm run init` there, or MONGO_CAPSULE_SECRET_IDENTITY_FILE)',
          });
        }
        Object.assign(dataKeyIds, found);
        onProgress?.(`data keys exist: ${dataKeyAltNames.join(', ')} (nothing to create, so no key was needed)`);
      } else if (dataKeyAltNames.length > 0 && keys !== undefined) {
        const { kmsProviders, writeProvider } = keys;
        const index = await ensureKeyVaultIndex(client, { keyVaultNamespace, ...(onProgress === undefined ? {} : { onWarning: (w: string) => onProgress(`warning: ${w}`) }) });
        keyVaultIndex = index.uniqueAltNames ? 'unique-partial' : index.fallbackIndex ? 'unique-sparse-fallback' : 'none';
        const encryption = new ClientEncryption(client, { keyVaultNamespace, kmsProviders });
        const { scope, refuse } = epochKeyScope(record, Object.keys(kmsProviders), writeProvider);
        const beforeCreate = refuse === undefined ? undefined : () => Promise.reject(refuse);
        for (const altName of dataKeyAltNames) {
          const id = await getOrCreateDataKey(encryption, client, altName, { provider: writeProvider, keyVaultNamespace, scope, ...(beforeCreate === undefined ? {} : { beforeCreate }) });
          dataKeyIds[altName] = id.toUUID().toHexString(true);
        }
        onProgress?.(`data keys ready: ${dataKeyAltNames.join(', ')}`);
      }
      return {
        ...result,
        capsuleName,
        kid: record.header.kid,
        recipientKids: record.recipients.map((r) => r.header.kid),
        created,
        kmsProvider: record.kmsProvider,
        dataKeyIds,
        keyVaultIndex,
      };
    } finally {
      keys?.wipe();
    }
  } catch (e) {
    throw mongoError(e, 'provisioning');
  } finally {
    await client.close().catch(() => {});
  }
}

export interface SeedCapsuleOptions {
  name: string;
  recipient: PublicIdentity;
  /** Further recipients of the same CMK. */
  additionalRecipients?: readonly PublicIdentity[];
  signer?: Pick<SecretIdentity, 'signer' | 'signerSecretKey'>;
  /**
   * When given, the new capsule is proven to open before it is stored, and a capsule seeded concurrently by
   * someone else is opened to return its keys. Without it `keys` is returned only when this call created it.
   */
  unwrap?: (capsule: Uint8Array) => Promise<Uint8Array>;
  /**
   * Replay marks: a capsule seeded concurrently by someone else is checked against them once `unwrap` opened it;
   * the capsule this call stores raises the mark (only when `unwrap` proved it opens).
   */
  replay?: ReplayGuard;
}

/**
 * Insert-if-absent of a freshly sealed CMK. Concurrent seeders of one name: one capsule is stored and, given
 * `unwrap`, every caller gets the keys of that one capsule (its own CMK when it won, the winner's otherwise).
 * The caller wipes `keys`.
 */
export async function seedCapsule(store: CapsuleStore, options: SeedCapsuleOptions): Promise<{ created: boolean; record: CapsuleRecord; keys?: CapsuleKeys }> {
  const { name, recipient, signer, unwrap, replay, additionalRecipients = [] } = options;
  const kids = new Set([recipient.kid]);
  for (const r of additionalRecipients) {
    if (kids.has(r.kid)) throw new InvalidArgumentError(`seeding capsule ${name}: recipient ${r.kid} (${r.name}) is named twice`);
    kids.add(r.kid);
  }
  const cmk = generateCmk();
  try {
    const createdAt = new Date(); // one creation time for every recipient's capsule (replay marks compare them)
    const sealFor = (pub: PublicIdentity): SealedRecipient => {
      const text = encodePublicIdentity(pub);
      return { bytes: wrapKey(cmk, pub, { name, createdAt, ...(signer === undefined ? {} : { signer }) }), publicIdentity: text, tag: recipientTag(cmk, name, text) };
    };
    const primary = sealFor(recipient);
    if (unwrap) await proveOpens(primary.bytes, cmk, unwrap);
    const { created, record } = await store.seed(primary.bytes, {
      binding: { publicIdentity: primary.publicIdentity!, tag: primary.tag! },
      others: additionalRecipients.map(sealFor),
    });
    if (!created) return unwrap && record.recipients.some((e) => e.header.kid === recipient.kid) ? { created, record, keys: await capsuleKeys(record, unwrap, replay) } : { created, record };
    // Ours is the newest generation of this capsule: a later write-back of an older one must be refused.
    if (unwrap && replay) await checkWatermark(replay.store, replay.key, { createdAt: record.header.createdAt.getTime(), sha256: record.sha256 }, `capsule ${name}`, replay.acceptRollback);
    // Ours won: no need to unwrap again; hand over a copy of the CMK we sealed.
    const copy = Uint8Array.from(cmk);
    const key = Buffer.from(copy.buffer, copy.byteOffset, copy.byteLength);
    return {
      created,
      record,
      keys: { kmsProviders: { [record.kmsProvider]: { key } } as unknown as KMSProviders, writeProvider: record.kmsProvider, cmk: copy, kid: recipient.kid, wipe: () => copy.fill(0) },
    };
  } finally {
    cmk.fill(0);
  }
}

/**
 * True when the stored capsule is sealed for `recipient`. Otherwise it belongs to another key: refused with both
 * kids named (nothing was written), or, with `acceptExisting`, left alone (false: it is not opened).
 */
function ownedBy(record: CapsuleRecord, recipient: Pick<PublicIdentity, 'kid'>, acceptExisting: boolean, onProgress?: (m: string) => void): boolean {
  if (record.recipients.some((e) => e.header.kid === recipient.kid)) return true;
  const message = `capsule ${record.name} already exists and belongs to ANOTHER key (kid ${record.recipients.map((e) => e.header.kid).join(', ')}), not to the recipient (kid ${recipient.kid})`;
  if (!acceptExisting) {
    throw new CapsuleOwnedByOtherKeyError(`${message}; nothing was changed`, {
      hint:
        `the stored capsule and the data under its CMK belong to key ${record.header.kid}. Seed with that key's public file, ` +
        `choose another capsule name (\`--capsule <name>\`), or accept the existing capsule as it is (\`--accept-existing\`; \`acceptExisting: true\` in provisionCluster)`,
    });
  }
  onProgress?.(`${message}: left unchanged and not opened (acceptExisting)`);
  return false;
}

/** The capsule about to be stored opens, with the caller's own unwrap, to the CMK we sealed. */
async function proveOpens(bytes: Uint8Array, cmk: Uint8Array, unwrap: (c: Uint8Array) => Promise<Uint8Array>): Promise<void> {
  let opened: Uint8Array | undefined;
  try {
    opened = await unwrap(bytes);
  } catch (e) {
    throw new CapsuleAuthError('the new capsule does not open with the given identity (unwrap failed); nothing was written', { cause: e });
  }
  try {
    if (opened.length !== cmk.length || !timingSafeEqual(opened, cmk)) {
      throw new CapsuleAuthError('the new capsule opens to a different key with the given identity; nothing was written');
    }
  } finally {
    opened.fill(0);
  }
}

/**
 * Runs `fn` against the primary: through `admin` (a direct connection to the first member) when that member is
 * the primary or no set is involved, else through a direct connection to the primary the set names (after a
 * failover, users can only be created there).
 */
async function withPrimary<T>(admin: MongoClient, uri: string, primary: string | undefined, serverSelectionTimeoutMS: number, fn: (c: MongoClient) => Promise<T>): Promise<T> {
  const hello = primary === undefined ? undefined : await admin.db('admin').command({ hello: 1 }).catch(() => undefined);
  if (primary === undefined || primary === '' || hello?.isWritablePrimary === true) return fn(admin);
  const direct = await connect(directConnectionUri(uri, primary), { serverSelectionTimeoutMS, purpose: `connecting to the primary ${primary}` });
  try {
    return await fn(direct);
  } finally {
    await direct.close().catch(() => {});
  }
}

/** Ids of capsule `record`'s data keys with these alternate names, read from the key vault (no CMK involved). */
async function existingDataKeys(client: MongoClient, keyVaultNamespace: string, record: CapsuleRecord, altNames: readonly string[]): Promise<Record<string, string>> {
  const providers = record.pendingRotation ? [record.kmsProvider, record.pendingRotation.toProvider] : [record.kmsProvider];
  const found = await findDataKeys(client, keyVaultNamespace, epochKeyScope(record, providers, '').scope, altNames);
  return Object.fromEntries([...found].map(([n, id]) => [n, id.toUUID().toHexString(true)]));
}
