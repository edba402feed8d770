/**
 * The CSFLE key vault (default `encryption.__keyVault`): its index, and data keys looked up or created by
 * alternate name.
 *
 * The unique index on `keyAltNames` is partial (`$exists: true`): keys without alternate names must not collide
 * on a missing value. Servers that cannot build partial indexes (FerretDB 1.x answers error 238) get a plain
 * warning and this documented fallback:
 * 1. a unique *sparse* index on `keyAltNames` is tried instead. FerretDB 1.x accepts it but compares whole arrays
 *    rather than elements; since this module gives every data key exactly one alternate name, that still refuses a
 *    second key with the same name;
 * 2. in any case `getOrCreateDataKey` looks up, creates, then looks again; if a concurrent creator produced a
 *    second key with the same name, every caller keeps the oldest key (smallest creationDate, then _id) and the
 *    newer ones lose the alternate name (they are kept, never deleted: nothing encrypted with them is lost).
 *    Deterministic encryption by alternate name therefore converges on one key.
 *
 * Data keys belong to one capsule. Several capsules (several CMKs) may share a key vault, and alternate names
 * are unique across the whole vault, so a key created for a capsule is named `<capsule>/<name>` (capsule names
 * hold no '/') and is looked up only among keys under that capsule's KMS providers (`local:g<n>_<capsule>`).
 * Keys made before that scheme carry the bare `<name>`: they are still found, but only under the capsule's own
 * providers, so a client of one capsule never picks up another capsule's key of the same name.
 *
 * Data-key epochs. A recipient that was revoked knew the CMK, so it may have kept the data keys themselves (a
 * copy of the key vault opened with the old CMK). Rotating the CMK rewraps the same data keys, which does not
 * close them. So a revocation raises the capsule's data-key epoch (capsule-store.ts), and new values are
 * encrypted with the data keys of the current epoch, created under the next CMK: `<capsule>@<epoch>/<name>` for
 * epochs from 1 (capsule names hold neither '@' nor '/'); epoch 0 keeps the names above. Keys of earlier epochs
 * stay, rewrapped like every key, so everything written before still decrypts. Deterministic ciphertexts differ
 * between epochs: an equality query matches a value of any epoch with `$in` over one ciphertext per epoch
 * (`EncryptedClient.queryValues`).
 */
import { Binary, MongoServerError, type ClientEncryption, type Collection, type Document, type MongoClient } from 'mongodb';
import { CmkMismatchError } from '../errors.ts';
import { kmsProviderName } from './capsule-store.ts';
import { DURABLE, mongoError, parseNamespace } from './connection.ts';

export const DEFAULT_KEY_VAULT_NAMESPACE = 'encryption.__keyVault';
const DUPLICATE_KEY = 11000;

export interface KeyVaultIndexResult {
  /** True when the unique partial index on keyAltNames exists (created now or before). */
  uniqueAltNames: boolean;
  /** True when the server refused the partial index and the sparse fallback index was created instead. */
  fallbackIndex: boolean;
  /** Set when the server could not build it; the fallback of getOrCreateDataKey applies. */
  warning?: string;
}

/** Creates the unique partial index on keyAltNames (idempotent); warns instead of failing where unsupported. */
export async function ensureKeyVaultIndex(
  client: MongoClient,
  { keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE, onWarning }: { keyVaultNamespace?: string; onWarning?: (message: string) => void } = {},
): Promise<KeyVaultIndexResult> {
  const coll = keyVaultCollection(client, keyVaultNamespace);
  try {
    await coll.createIndex({ keyAltNames: 1 }, { unique: true, partialFilterExpression: { keyAltNames: { $exists: true } }, name: 'keyAltNames_1' });
    return { uniqueAltNames: true, fallbackIndex: false };
  } catch (e) {
    if (!(e instanceof MongoServerError) || !isUnsupportedIndexOption(e)) throw mongoError(e, `creating the keyAltNames index of ${keyVaultNamespace}`);
    let fallbackIndex = false;
    try {
      await coll.createIndex({ keyAltNames: 1 }, { unique: true, sparse: true, name: 'keyAltNames_1' });
      fallbackIndex = true;
    } catch {
      // Nothing more to try: the convergence in getOrCreateDataKey still applies.
    }
    const warning =
      `this server cannot create the unique partial index on ${keyVaultNamespace}.keyAltNames (${e.codeName ?? `code ${String(e.code)}`}); ` +
      `${fallbackIndex ? 'a unique sparse index was created instead, and ' : ''}concurrent creators of a data key converge on the oldest key`;
    onWarning?.(warning);
    return { uniqueAltNames: false, fallbackIndex, warning };
  }
}

function isUnsupportedIndexOption(e: MongoServerError): boolean {
  // 238 NotImplemented (FerretDB), 197 InvalidIndexSpecificationOption, 67 CannotCreateIndex.
  return e.code === 238 || e.code === 197 || e.code === 67 || /partialFilterExpression|not (yet )?(implemented|supported)/i.test(e.message);
}

/** Does the key vault have the unique index? (for `doctor`) */
export async function hasKeyVaultIndex(client: MongoClient, keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE): Promise<boolean> {
  try {
    const indexes = await keyVaultCollection(client, keyVaultNamespace).indexes();
    return indexes.some((i) => i.unique === true && i.key?.keyAltNames === 1);
  } catch (e) {
    if (e instanceof MongoServerError && e.code === 26) return false; // NamespaceNotFound
    throw mongoError(e, `reading the indexes of ${keyVaultNamespace}`);
  }
}

export function keyVaultCollection(client: MongoClient, keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE): Collection {
  const { db, collection } = parseNamespace(keyVaultNamespace, 'key vault');
  return client.db(db, DURABLE).collection(collection);
}

/** Which capsule a data key belongs to: its name, and the providers its keys can be under right now. */
export interface DataKeyScope {
  capsuleName: string;
  /** The live provider and, during a CMK rotation, the pending one. */
  providers: readonly string[];
  /** The data-key epoch (default 0): the capsule's `dataKeyEpoch` for new values. */
  epoch?: number;
}

/** The alternate name a data key of capsule `capsuleName` is stored under (epoch 0). */
export function scopedAltName(capsuleName: string, altName: string): string {
  return `${capsuleName}/${altName}`;
}

/** The alternate name of capsule `capsuleName`'s data key `altName` of data-key epoch `epoch`. */
export function epochAltName(capsuleName: string, altName: string, epoch: number): string {
  return epoch === 0 ? scopedAltName(capsuleName, altName) : `${capsuleName}@${epoch}/${altName}`;
}

/** Is `provider` one of capsule `capsuleName`'s (any generation)? */
export function isCapsuleProvider(capsuleName: string, provider: unknown): boolean {
  if (typeof provider !== 'string') return false;
  const escaped = kmsProviderName(capsuleName, 0).slice('local:g0_'.length);
  const m = /^local:g[0-9]+_(.*)$/.exec(provider);
  return m !== null && m[1] === escaped;
}

function inScope(scope: DataKeyScope, doc: Document): boolean {
  const provider = (doc.masterKey as Document | undefined)?.provider;
  return scope.providers.includes(provider as string) || isCapsuleProvider(scope.capsuleName, provider);
}

/**
 * The ids of capsule `scope.capsuleName`'s data keys with these (unscoped) alternate names, of epoch `scope.epoch`,
 * read from the key vault without any CMK: the scoped name wins over a bare legacy one, then the oldest key.
 */
export async function findDataKeys(client: MongoClient, keyVaultNamespace: string, scope: DataKeyScope, altNames: readonly string[]): Promise<Map<string, Binary>> {
  const epoch = scope.epoch ?? 0;
  const found = await lookUpKeys(client, keyVaultNamespace, scope, altNames.map((name) => ({ name, epoch })));
  return new Map(altNames.flatMap((n) => {
    const id = found.get(`${epoch}/${n}`);
    return id === undefined ? [] : [[n, id] as const];
  }));
}

/**
 * The ids of data key `altName` of every epoch from 0 to `scope.epoch` that has one, oldest epoch first: the keys
 * a value of that name may have been encrypted with (one read of the key vault).
 */
export async function findDataKeysOfEveryEpoch(client: MongoClient, keyVaultNamespace: string, scope: DataKeyScope, altName: string): Promise<{ epoch: number; id: Binary }[]> {
  const epochs = Array.from({ length: (scope.epoch ?? 0) + 1 }, (_, i) => i);
  const found = await lookUpKeys(client, keyVaultNamespace, scope, epochs.map((epoch) => ({ name: altName, epoch })));
  return epochs.flatMap((epoch) => {
    const id = found.get(`${epoch}/${altName}`);
    return id === undefined ? [] : [{ epoch, id }];
  });
}

/** The best key for each (name, epoch) wanted, keyed `<epoch>/<name>`, in one query. */
async function lookUpKeys(client: MongoClient, keyVaultNamespace: string, scope: DataKeyScope, keys: readonly { name: string; epoch: number }[]): Promise<Map<string, Binary>> {
  const wanted = new Map<string, { key: string; scoped: boolean }>();
  for (const { name, epoch } of keys) {
    const key = `${epoch}/${name}`;
    wanted.set(epochAltName(scope.capsuleName, name, epoch), { key, scoped: true });
    // Bare legacy names predate epochs: they are keys of epoch 0.
    if (epoch === 0 && !wanted.has(name)) wanted.set(name, { key, scoped: false });
  }
  let docs: Document[];
  try {
    docs = await keyVaultCollection(client, keyVaultNamespace)
      .find({ keyAltNames: { $in: [...wanted.keys()] } }, { projection: { _id: 1, keyAltNames: 1, creationDate: 1, 'masterKey.provider': 1 } })
      .toArray();
  } catch (e) {
    throw mongoError(e, `looking up the data keys of capsule ${scope.capsuleName}`);
  }
  const best = new Map<string, { id: Binary; scoped: boolean; created: number }>();
  for (const d of docs) {
    if (!inScope(scope, d)) continue;
    for (const alt of (d.keyAltNames as string[] | undefined) ?? []) {
      const w = wanted.get(alt);
      if (w === undefined) continue;
      const cand = { id: d._id as Binary, scoped: w.scoped, created: (d.creationDate as Date | undefined)?.getTime() ?? 0 };
      const cur = best.get(w.key);
      if (cur === undefined || (cand.scoped && !cur.scoped) || (cand.scoped === cur.scoped && cand.created < cur.created)) best.set(w.key, cand);
    }
  }
  return new Map([...best].map(([k, v]) => [k, v.id]));
}

/**
 * Proves that the CMKs given to `encryption` decrypt the data keys under `provider` (each key once: encrypting
 * a constant with a key makes libmongocrypt decrypt it; nothing is written). Returns how many were checked,
 * at most `limit`. CmkMismatchError names the first key that does not decrypt.
 */
export async function verifyDataKeys(
  encryption: ClientEncryption,
  client: MongoClient,
  { keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE, provider, capsuleName, limit = Number.POSITIVE_INFINITY }: { keyVaultNamespace?: string; provider: string; capsuleName: string; limit?: number },
): Promise<number> {
  let ids: Binary[];
  try {
    const cursor = keyVaultCollection(client, keyVaultNamespace).find({ 'masterKey.provider': provider }, { projection: { _id: 1 } }).sort({ _id: 1 });
    if (Number.isFinite(limit)) cursor.limit(limit);
    ids = (await cursor.toArray()).map((d) => d._id as unknown as Binary);
  } catch (e) {
    throw mongoError(e, `reading the data keys of capsule ${capsuleName}`);
  }
  for (const keyId of ids) {
    try {
      await encryption.encrypt(0, { algorithm: 'AEAD_AES_256_CBC_HMAC_SHA_512-Random', keyId });
    } catch (e) {
      if (isHmacFailure(e)) {
        throw new CmkMismatchError(
          `the CMK of capsule ${capsuleName} does not decrypt data key ${keyId.toUUID().toHexString(true)} (provider ${provider}) in ${keyVaultNamespace}`,
          { cause: e },
        );
      }
      throw mongoError(e, `checking data key ${keyId.toUUID().toHexString(true)} of capsule ${capsuleName}`);
    }
  }
  return ids.length;
}

/** libmongocrypt's words for "this CMK did not make this data key" (or the key material was altered). */
export function isHmacFailure(e: unknown): boolean {
  return e instanceof Error && /HMAC validation failure/i.test(e.message);
}

/** A typed error for a failed encryption or decryption: CmkMismatchError for an HMAC failure. */
export function cryptError(e: unknown, what: string, capsuleName: string): Error {
  if (isHmacFailure(e)) {
    return new CmkMismatchError(`${what}: the CMK of capsule ${capsuleName} does not decrypt the data key (HMAC validation failure)`, { cause: e });
  }
  return mongoError(e, what);
}

/**
 * The data key with this alternate name, created under `provider` when absent. Returns its id (UUID, BSON
 * Binary subtype 4). With `scope`, the key is the capsule's own (see the top of this file); without it (legacy
 * callers), the bare alternate name across the whole key vault.
 * @example
 * const id = await getOrCreateDataKey(encryption, client, 'ssn', { provider, scope: { capsuleName: 'default', providers: [provider] } });
 */
export async function getOrCreateDataKey(
  encryption: ClientEncryption,
  client: MongoClient,
  altName: string,
  {
    provider,
    keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE,
    beforeCreate,
    scope,
  }: {
    provider: string;
    keyVaultNamespace?: string;
    /** The capsule the key belongs to: scoped lookup and name. */
    scope?: DataKeyScope;
    /** Runs when the key is absent, right before it is created; throw to refuse (for example a stale provider). */
    beforeCreate?: () => Promise<void>;
  },
): Promise<Binary> {
  if (typeof altName !== 'string' || altName.length === 0) throw mongoError(new Error('data key alternate name must be a non-empty string'), 'getOrCreateDataKey');
  if (scope !== undefined) {
    const found = (await findDataKeys(client, keyVaultNamespace, scope, [altName])).get(altName);
    if (found !== undefined) return found;
    await beforeCreate?.();
    const stored = epochAltName(scope.capsuleName, altName, scope.epoch ?? 0);
    try {
      await encryption.createDataKey(provider as 'local', { keyAltNames: [stored] });
    } catch (e) {
      if (!(e instanceof MongoServerError && e.code === DUPLICATE_KEY)) throw mongoError(e, `creating data key ${altName} of capsule ${scope.capsuleName}`);
    }
    return converge(client, keyVaultNamespace, stored);
  }
  const existing = await encryption.getKeyByAltName(altName).catch((e: unknown) => {
    throw mongoError(e, `looking up data key ${altName}`);
  });
  if (existing) return existing._id;
  await beforeCreate?.();
  try {
    await encryption.createDataKey(provider as 'local', { keyAltNames: [altName] });
  } catch (e) {
    // The unique index refused a second key with this name: a concurrent creator won; use theirs.
    if (!(e instanceof MongoServerError && e.code === DUPLICATE_KEY)) throw mongoError(e, `creating data key ${altName}`);
  }
  return converge(client, keyVaultNamespace, altName);
}

/** Keeps the oldest key carrying `altName` and strips the name from any newer duplicates. */
async function converge(client: MongoClient, keyVaultNamespace: string, altName: string): Promise<Binary> {
  const coll = keyVaultCollection(client, keyVaultNamespace);
  let keys: Document[];
  try {
    keys = await coll.find({ keyAltNames: altName }, { projection: { _id: 1, creationDate: 1 } }).toArray();
  } catch (e) {
    throw mongoError(e, `looking up data key ${altName}`);
  }
  if (keys.length === 0) throw mongoError(new Error(`data key ${altName} vanished right after it was created`), 'getOrCreateDataKey');
  keys.sort((a, b) => {
    const t = (a.creationDate as Date).getTime() - (b.creationDate as Date).getTime();
    return t !== 0 ? t : Buffer.compare(Buffer.from((a._id as Binary).buffer), Buffer.from((b._id as Binary).buffer));
  });
  const [keep, ...losers] = keys;
  for (const k of losers) {
    try {
      await coll.updateOne({ _id: k._id }, { $pull: { keyAltNames: altName } } as Document);
    } catch (e) {
      throw mongoError(e, `removing the duplicate alternate name ${altName}`);
    }
  }
  return keep!._id as Binary;
}
