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
 */
import { Binary, MongoServerError, type ClientEncryption, type Collection, type Document, type MongoClient } from 'mongodb';
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

/**
 * The data key with this alternate name, created under `provider` when absent. Returns its id (UUID, BSON
 * Binary subtype 4).
 * @example
 * const id = await getOrCreateDataKey(encryption, client, 'ssn', { provider: 'local' });
 */
export async function getOrCreateDataKey(
  encryption: ClientEncryption,
  client: MongoClient,
  altName: string,
  {
    provider,
    keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE,
    beforeCreate,
  }: {
    provider: string;
    keyVaultNamespace?: string;
    /** Runs when the key is absent, right before it is created; throw to refuse (for example a stale provider). */
    beforeCreate?: () => Promise<void>;
  },
): Promise<Binary> {
  if (typeof altName !== 'string' || altName.length === 0) throw mongoError(new Error('data key alternate name must be a non-empty string'), 'getOrCreateDataKey');
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
