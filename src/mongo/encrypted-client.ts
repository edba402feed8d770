/**
 * An encrypted client in one call: load the capsule → unwrap it to the CMK (the key manager verifies the
 * signature) → a `MongoClient` that decrypts automatically (`bypassAutoEncryption: true`: explicit encryption,
 * automatic decryption, neither mongocryptd nor crypt_shared needed) plus a `ClientEncryption` for explicit
 * encryption with data keys looked up or created by alternate name.
 *
 * Key handling: the CMK is handed to libmongocrypt, which copies it when the clients are constructed; our
 * copies (the unwrapped bytes and the buffers in the options) are zeroed right after that. Consequence: a
 * closed EncryptedClient cannot be reconnected; open a new one.
 * While a CMK rotation is pending (see rotation.ts) both the live and the next CMK are loaded, so every data
 * key stays readable at every step of the rotation.
 *
 * Surviving a CMK rotation: libmongocrypt is given the CMKs once, when a MongoClient is built, and data keys
 * move to the next CMK's provider during a rotation. So the client watches the capsule (an unref'd timer, every
 * `refreshIntervalMS`; before creating a data key; and whenever libmongocrypt reports a KMS provider it lacks),
 * and when the capsule's generation or pending rotation changed it re-opens the capsule with the same unwrap,
 * builds a new MongoClient + ClientEncryption and swaps them in; `client` and `encryption` are stable stand-ins that
 * forward to the current ones, as do the Dbs, collections and cursors taken from them (stable-handles.ts). The
 * rotation waits one refresh interval after announcing the next CMK before it moves any key, so a client that
 * polls holds both CMKs before a key moves. Replaced clients stay open (collections taken from them keep working
 * with the keys they cached) until `close()`.
 */
import { type Binary, ClientEncryption, MongoClient, type KMSProviders, type MongoClientOptions } from 'mongodb';
import { parseCapsule } from '../crypto/index.ts';
import { CapsuleAuthError, CapsuleConflictError, CmkRotatedError, InvalidArgumentError } from '../errors.ts';
import { checkWatermark, FileCapsuleWatermarks, watermarkKey, type CapsuleWatermarkStore } from '../keys/capsule-watermarks.ts';
import { type CapsuleRecord, CapsuleStore } from './capsule-store.ts';
import { connect, DEFAULT_SERVER_SELECTION_TIMEOUT_MS, mongoError } from './connection.ts';
import { requireCsfle } from './csfle.ts';
import { cryptError, type DataKeyScope, DEFAULT_KEY_VAULT_NAMESPACE, findDataKeysOfEveryEpoch, getOrCreateDataKey } from './key-vault.ts';
import { isProviderMissing, stableHandles } from './stable-handles.ts';

export const DETERMINISTIC = 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic' as const;
export const RANDOM = 'AEAD_AES_256_CBC_HMAC_SHA_512-Random' as const;
export const DEFAULT_CAPSULE_NAME = 'default';
/** How often an open encrypted client checks whether its capsule's CMK was rotated. */
export const DEFAULT_REFRESH_INTERVAL_MS = 10_000;

/** Opens a capsule: verifies its signature and returns the 96-byte CMK (the caller wipes it). */
export type UnwrapFn = (capsule: Uint8Array) => Promise<Uint8Array>;
/**
 * A function, or an object with an `unwrap(capsule, identity?)` method (a KeyManager: then the identity
 * option of the caller names which keychain identity opens the capsule).
 */
export type Unwrapper = UnwrapFn | { unwrap(capsule: Uint8Array, identity?: string): Promise<Uint8Array> };

/** An unwrap function that can also say which kids it holds (a KeyManager's): the entry to try first. */
type HeldKidsFn = UnwrapFn & { heldKids?: () => Promise<string[]> };

export function toUnwrapFn(u: Unwrapper, identity?: string): UnwrapFn {
  if (typeof u === 'function') return u;
  if (u !== null && typeof u === 'object' && typeof u.unwrap === 'function') {
    const fn: HeldKidsFn = identity === undefined ? (c) => u.unwrap(c) : (c) => u.unwrap(c, identity);
    const held = (u as { heldKids?: unknown }).heldKids;
    if (typeof held === 'function') fn.heldKids = () => (held as (name?: string) => Promise<string[]>).call(u, identity);
    return fn;
  }
  throw new InvalidArgumentError('unwrap must be a function (capsule bytes → CMK) or an object with an unwrap method');
}

/** The local KMS providers for a capsule record; `wipe()` zeroes every key buffer. */
export interface CapsuleKeys {
  kmsProviders: KMSProviders;
  /** Provider for new data keys: the rotation target while one is pending, otherwise the live provider. */
  writeProvider: string;
  /** The live CMK (the same memory as its provider's key; wiped by `wipe`). */
  cmk: Uint8Array;
  /** The recipient whose capsule was opened (the unwrap's key). */
  kid: string;
  wipe(): void;
}

/** Where the replay marks live and which capsule is checked (see capsule-watermarks.ts). */
export interface ReplayGuard {
  store: CapsuleWatermarkStore;
  key: string;
  acceptRollback?: boolean;
}

/** A recipient the unwrap does not hold: another recipient's capsule may be for it. */
function isNotHeld(e: unknown): boolean {
  return e instanceof CapsuleAuthError && /wrong key \(capsule is for|does not hold/.test(e.message);
}

/**
 * Opens the recipient capsule of `record` that `open` holds the key of: every recipient's capsule is tried,
 * and one for a key the unwrap does not hold is passed over (anything else, a bad signature above all, stops).
 */
async function openRecipient(record: CapsuleRecord, open: UnwrapFn): Promise<{ cmk: Uint8Array; entry: CapsuleRecord['recipients'][number] }> {
  let entries = record.recipients.length > 0 ? record.recipients : [{ bytes: record.bytes, header: record.header, sha256: record.sha256, publicIdentity: null, tag: null }];
  const heldKids = (open as HeldKidsFn).heldKids;
  if (entries.length > 1 && heldKids !== undefined) {
    // Try the entries for keys the identity holds first: each miss costs the key manager a keychain re-read.
    const held = new Set(await heldKids().catch(() => [] as string[]));
    entries = [...entries.filter((e) => held.has(e.header.kid)), ...entries.filter((e) => !held.has(e.header.kid))];
  }
  let first: unknown;
  for (const entry of entries) {
    try {
      return { cmk: await open(entry.bytes), entry };
    } catch (e) {
      if (!isNotHeld(e)) throw e;
      first ??= e;
    }
  }
  if (entries.length === 1) throw first;
  throw new CapsuleAuthError(`capsule ${record.name} is sealed for keys ${entries.map((e) => e.header.kid).join(', ')}; the identity used holds none of them`, {
    hint: 'open it with an identity that is a recipient (option `identity`, CLI `--identity`), or have a recipient run `mongo-capsule keys grant --pub <your .pub.json>`',
    cause: first,
  });
}

/** Unwraps the live capsule (and a pending rotation's next capsule) into local KMS provider settings. */
export async function capsuleKeys(record: CapsuleRecord, unwrap: Unwrapper, replay?: ReplayGuard): Promise<CapsuleKeys> {
  const open = toUnwrapFn(unwrap);
  const buffers: Uint8Array[] = [];
  const wipe = () => {
    for (const b of buffers) b.fill(0);
  };
  try {
    const kmsProviders: Record<string, { key: Buffer }> = {};
    const { cmk: live, entry } = await openRecipient(record, open);
    buffers.push(live);
    // Only after the unwrap verified the signature: the mark is raised only by capsules the owner vouched for.
    // One mark per recipient: the first recipient keeps the mark capsules had before recipient lists; a granted
    // recipient's capsule is sealed later than the others of its generation, so it gets a mark of its own.
    if (replay) {
      const key = recipientMarkKey(replay.key, record.header.kid, entry.header.kid);
      await checkWatermark(replay.store, key, { createdAt: entry.header.createdAt.getTime(), sha256: entry.sha256 }, `capsule ${record.header.name}`, replay.acceptRollback);
    }
    kmsProviders[record.kmsProvider] = { key: asBuffer(live) };
    let writeProvider = record.kmsProvider;
    const pending = record.pendingRotation;
    if (pending) {
      // The next CMK sealed for the same recipient (a rotation started before recipient lists seals `next` only).
      const nextBytes = pending.recipients.length > 0 ? pending.recipients.find((r) => parseCapsule(r.bytes).header.kid === entry.header.kid)?.bytes : pending.next;
      if (nextBytes !== undefined) {
        const next = await open(nextBytes);
        buffers.push(next);
        kmsProviders[pending.toProvider] = { key: asBuffer(next) };
        writeProvider = pending.toProvider;
      }
    }
    return { kmsProviders: kmsProviders as unknown as KMSProviders, writeProvider, cmk: live, kid: entry.header.kid, wipe };
  } catch (e) {
    wipe();
    throw e;
  }
}

/** The replay mark of a capsule's first recipient (a granted recipient's is this plus `#<kid>`, see capsuleKeys). */
export function replayMarkKey(locator: string, namespace: string, capsuleName: string): string {
  return watermarkKey(locator, namespace, capsuleName);
}

/** The mark of recipient `kid` of a capsule whose first recipient is `primaryKid`, from the capsule's mark `base`. */
export function recipientMarkKey(base: string, primaryKid: string | undefined, kid: string): string {
  return primaryKid === undefined || kid === primaryKid ? base : `${base}#${kid}`;
}

/**
 * Where the data keys of a capsule's current epoch are looked up and made, by a holder of `providers` writing
 * under `writeProvider`. While a revocation is pending, the new epoch's keys belong under the next CMK only (the
 * revoked key never held it): one under the live provider would open with the CMK the revoked key holds. So they
 * are looked up there only, and an identity without the next CMK (a revoked first recipient, which opens the live
 * capsule until the swap) may not make one: `refuse` says why.
 */
export function epochKeyScope(
  record: Pick<CapsuleRecord, 'name' | 'dataKeyEpoch' | 'pendingRotation'>,
  providers: readonly string[],
  writeProvider: string,
): { scope: DataKeyScope; refuse?: CapsuleAuthError } {
  const epoch = record.dataKeyEpoch;
  const p = record.pendingRotation;
  if (p === null || p.revokedKid === null || epoch === 0) return { scope: { capsuleName: record.name, providers, epoch } };
  const scope = { capsuleName: record.name, providers: [p.toProvider], epoch };
  if (writeProvider === p.toProvider) return { scope };
  return {
    scope,
    refuse: new CapsuleAuthError(
      `capsule ${record.name}: a revocation (of ${p.revokedKid}) is pending, and the data keys of epoch ${epoch} can be made only under the next CMK, which this identity does not hold`,
      { hint: `an identity that stays a recipient makes them (or the revocation finishes first: \`mongo-capsule keys revoke --kid ${p.revokedKid} --capsule ${record.name}\`)` },
    ),
  };
}

/** Which CMKs a capsule record stands for: its generation, and the rotation in progress if any. */
function rotationState(record: Pick<CapsuleRecord, 'generation' | 'pendingRotation'>): string {
  return `${record.generation}:${record.pendingRotation?.id ?? ''}`;
}

/** A Buffer over the same memory, so wiping one wipes the other. */
function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export interface OpenEncryptedClientOptions {
  uri: string;
  /** Capsule name (default 'default'). */
  capsuleName?: string;
  /** Opens the capsule: a KeyManager-like object or a function. */
  unwrap: Unwrapper;
  /**
   * The keychain identity that opens the capsule when `unwrap` is a KeyManager (default 'default'): the client
   * opens the capsule's recipient entry sealed for a key this identity holds.
   */
  identity?: string;
  /** Default encryption.__keyVault. */
  keyVaultNamespace?: string;
  /** Default encryption.capsules. */
  capsuleNamespace?: string;
  /** Extra options of the encrypted MongoClient (autoEncryption is ours). */
  clientOptions?: Omit<MongoClientOptions, 'autoEncryption'>;
  /** Bound on finding a server (default 10 s). */
  serverSelectionTimeoutMS?: number;
  /**
   * How often to check the capsule for a CMK rotation (default 10 s; 0: only on the helpers' own checks).
   * Keep it below the rotation's wait (rotateCmk `clientRefreshWaitMS`).
   */
  refreshIntervalMS?: number;
  /** libmongocrypt's data-key cache lifetime (driver default 60 s; 0: never expire). */
  keyExpirationMS?: number;
  /**
   * Replay marks: refuse a capsule older than the newest this machine opened (default: a file under the state
   * directory; `false` disables the check).
   */
  watermarks?: CapsuleWatermarkStore | false;
  /** Open an older capsule on purpose (a restored backup) and lower the mark to it. */
  acceptRollback?: boolean;
}

export interface EncryptedClient extends AsyncDisposable {
  /**
   * Decrypts BinData subtype 6 fields automatically; writes whatever it is given (encrypt explicitly). Follows
   * CMK rotations: one object for the client's life, and the collections taken from it follow too.
   */
  readonly client: MongoClient;
  /** Explicit encryption and key-vault management (follows CMK rotations like `client`). */
  readonly encryption: ClientEncryption;
  /** The plain client used for the key vault and the capsule (no automatic decryption). */
  readonly keyVaultClient: MongoClient;
  /**
   * The capsule generation the current client holds, and its data-key epoch (raised by every revocation: new
   * values are encrypted with that epoch's data keys).
   */
  readonly capsule: { name: string; kid: string; generation: number; kmsProvider: string; dataKeyEpoch: number };
  /** The data key of this capsule with this alternate name, of the current data-key epoch, created on first use. */
  dataKey(altName: string): Promise<Binary>;
  /**
   * Deterministic encryption with the current epoch's data key (equal values give equal ciphertexts: queryable
   * by equality, among values written in the same epoch; see queryValues).
   */
  encryptDeterministic(value: unknown, keyAltName: string): Promise<Binary>;
  /**
   * The deterministic ciphertexts of `value` under data key `keyAltName` of every data-key epoch that has one:
   * the values to match with `$in` to find documents written before and after revocations alike. Creates no key
   * (empty when none exists yet: nothing can match).
   * @example
   * await coll.find({ ssn: { $in: await db.queryValues('123-45-6789', 'ssn') } }).toArray();
   */
  queryValues(value: unknown, keyAltName: string): Promise<Binary[]>;
  /** Randomized encryption (not queryable; prefer it for everything not queried by value). */
  encryptRandom(value: unknown, keyAltName: string): Promise<Binary>;
  decrypt<T = unknown>(value: Binary): Promise<T>;
  /** Checks the capsule now and switches to its current CMK(s) if they changed; true when it switched. */
  refresh(): Promise<boolean>;
  close(): Promise<void>;
}

/** One set of CMKs in use: the clients built for one capsule state. */
interface Generation {
  record: CapsuleRecord;
  state: string;
  client: MongoClient;
  encryption: ClientEncryption;
  writeProvider: string;
}

/** The capsule changed between looking a data key up and creating it: switch, then try again. */
class StaleGeneration extends Error {}

/**
 * @example
 * await using db = await openEncryptedClient({ uri, capsuleName: 'default', unwrap: (c) => keyManager.unwrap(c) });
 * await db.client.db('app').collection('people').insertOne({ ssn: await db.encryptDeterministic('123-45-6789', 'ssn') });
 */
export async function openEncryptedClient(options: OpenEncryptedClientOptions): Promise<EncryptedClient> {
  requireCsfle('openEncryptedClient');
  const {
    uri,
    capsuleName = DEFAULT_CAPSULE_NAME,
    keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE,
    capsuleNamespace,
    clientOptions = {},
    serverSelectionTimeoutMS = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    refreshIntervalMS = DEFAULT_REFRESH_INTERVAL_MS,
    keyExpirationMS,
  } = options;
  const unwrap = toUnwrapFn(options.unwrap, options.identity);
  const expiry = keyExpirationMS === undefined ? {} : { keyExpirationMS };
  const keyVaultClient = await connect(uri, { serverSelectionTimeoutMS, purpose: 'connecting to load the capsule' });
  const store = new CapsuleStore(keyVaultClient, capsuleNamespace === undefined ? {} : { namespace: capsuleNamespace });

  const marks = options.watermarks === undefined ? new FileCapsuleWatermarks() : options.watermarks;
  const markKey = replayMarkKey(store.locator, store.namespace, capsuleName);
  const replay = marks === false ? undefined : { store: marks, key: markKey, acceptRollback: options.acceptRollback === true };
  const build = async (record: CapsuleRecord): Promise<Generation> => {
    const keys = await capsuleKeys(record, unwrap, replay);
    let client: MongoClient | undefined;
    try {
      const autoEncryption = { keyVaultNamespace, kmsProviders: keys.kmsProviders, bypassAutoEncryption: true, keyVaultClient, ...expiry };
      client = new MongoClient(uri, { serverSelectionTimeoutMS, appName: 'mongo-capsule', ...clientOptions, autoEncryption });
      const encryption = new ClientEncryption(keyVaultClient, { keyVaultNamespace, kmsProviders: keys.kmsProviders, ...expiry });
      try {
        await client.connect();
      } catch (e) {
        throw mongoError(e, 'connecting the encrypted client', uri);
      }
      return { record, state: rotationState(record), client, encryption, writeProvider: keys.writeProvider };
    } catch (e) {
      await client?.close().catch(() => {});
      throw e;
    } finally {
      // libmongocrypt holds its own copies from here on.
      keys.wipe();
    }
  };

  let current: Generation;
  try {
    current = await build(await store.load(capsuleName));
  } catch (e) {
    await keyVaultClient.close().catch(() => {});
    throw e;
  }
  const replaced: MongoClient[] = [];
  let closed = false;
  let switching: Promise<boolean> | undefined;

  /** Loads the capsule; when it no longer matches `current`, builds and swaps in clients for it. */
  const refresh = (): Promise<boolean> => {
    if (closed) return Promise.resolve(false);
    switching ??= (async () => {
      try {
        const record = await store.load(capsuleName);
        if (rotationState(record) === current.state) return false;
        const next = await build(record);
        if (closed) {
          await next.client.close().catch(() => {});
          return false;
        }
        replaced.push(current.client);
        current = next;
        return true;
      } finally {
        switching = undefined;
      }
    })();
    return switching;
  };

  const timer = refreshIntervalMS > 0 ? setInterval(() => void refresh().catch(() => {}), refreshIntervalMS) : undefined;
  timer?.unref();

  /** Runs `op` on the current clients; when libmongocrypt lacks a provider, switches to the capsule's current CMKs once and retries. */
  const withCurrent = async <T>(what: string, op: (g: Generation) => Promise<T>): Promise<T> => {
    const g = current;
    try {
      return await op(g);
    } catch (e) {
      if (!isProviderMissing(e)) throw cryptError(e, what, capsuleName);
      const switched = g !== current || (await refresh());
      if (!switched) {
        throw new CapsuleConflictError(`${what}: the data key is under a KMS provider that capsule ${capsuleName} (generation ${current.record.generation}) does not hold`, {
          hint: 'the value was encrypted with another capsule\'s data key (open a client of that capsule), or its key was left under an abandoned rotation\'s provider (`mongo-capsule doctor` checks the key vault)',
          cause: e,
        });
      }
      try {
        return await op(current);
      } catch (e2) {
        if (!isProviderMissing(e2)) throw cryptError(e2, what, capsuleName);
        throw new CmkRotatedError(`${what}: capsule ${capsuleName} changed again while this client switched to its new CMK`, {
          hint: 'retry the operation: a CMK rotation or its abandonment is under way (`mongo-capsule doctor` shows it)',
          cause: e2,
        });
      }
    }
  };

  // Keyed by epoch and name: after a revocation the same name means a new data key.
  const dataKeys = new Map<string, Promise<Binary>>();
  const lookUp = async (altName: string, epoch: number): Promise<Binary> => {
    for (let attempt = 0; ; attempt++) {
      const g = current;
      if (g.record.dataKeyEpoch !== epoch) throw new StaleGeneration();
      const { scope, refuse } = epochKeyScope(g.record, providersOf(g), g.writeProvider);
      // A key created under a provider the capsule has moved past would be stranded: check right before creating.
      const beforeCreate = async () => {
        if (rotationState(await store.load(capsuleName)) !== g.state) throw new StaleGeneration();
        if (refuse !== undefined) throw refuse;
      };
      try {
        return await getOrCreateDataKey(g.encryption, keyVaultClient, altName, { provider: g.writeProvider, keyVaultNamespace, beforeCreate, scope });
      } catch (e) {
        if (!(e instanceof StaleGeneration)) throw e;
        if (attempt >= 3) {
          throw new CapsuleConflictError(`capsule ${capsuleName} keeps changing (CMK rotations); data key ${altName} was not created`, {
            hint: 'wait for the CMK rotation to finish (`mongo-capsule doctor` shows it), then retry',
          });
        }
        await refresh();
      }
    }
  };
  const dataKey = (altName: string): Promise<Binary> => {
    if (closed) return Promise.reject(new InvalidArgumentError('this encrypted client is closed', { hint: 'open a new encrypted client (openEncryptedClient)' }));
    const epoch = current.record.dataKeyEpoch;
    const key = `${epoch}/${altName}`;
    let p = dataKeys.get(key);
    if (p === undefined) {
      p = lookUp(altName, epoch).catch(async (e: unknown) => {
        dataKeys.delete(key);
        // The epoch moved on while the key was looked up: the key of the new one.
        if (e instanceof StaleGeneration) return dataKey(altName);
        throw e;
      });
      dataKeys.set(key, p);
    }
    return p;
  };
  const queryValues = async (value: unknown, keyAltName: string): Promise<Binary[]> => {
    if (closed) throw new InvalidArgumentError('this encrypted client is closed', { hint: 'open a new encrypted client (openEncryptedClient)' });
    const g = current;
    const keys = await findDataKeysOfEveryEpoch(keyVaultClient, keyVaultNamespace, { capsuleName, providers: providersOf(g), epoch: g.record.dataKeyEpoch }, keyAltName);
    const out: Binary[] = [];
    for (const { id } of keys) out.push(await withCurrent(`encrypting with data key ${keyAltName}`, (c) => c.encryption.encrypt(value, { algorithm: DETERMINISTIC, keyId: id })));
    return out;
  };
  const encrypt = async (value: unknown, keyAltName: string, algorithm: typeof DETERMINISTIC | typeof RANDOM) => {
    // By id rather than by alternate name: libmongocrypt then skips resolving the name on every call (a third of
    // the cost of a small deterministic encryption: 25 → 16 µs per call, measured on the test server).
    const keyId = await dataKey(keyAltName);
    return withCurrent(`encrypting with data key ${keyAltName}`, (g) => g.encryption.encrypt(value, { algorithm, keyId }));
  };
  const close = async () => {
    if (closed) return;
    closed = true;
    if (timer !== undefined) clearInterval(timer);
    await switching?.catch(() => {});
    for (const c of [current.client, ...replaced]) await c.close().catch(() => {});
    await keyVaultClient.close().catch(() => {});
  };
  // One client and one ClientEncryption for the life of this EncryptedClient, each forwarding to the current
  // generation: handles taken from them at start-up follow every switch (stable-handles.ts).
  const handles = stableHandles<Generation>({ current: () => current, switchFrom: async (g) => g !== current || (await refresh()), capsuleName });
  return {
    get client() {
      return handles.client;
    },
    get encryption() {
      return handles.encryption;
    },
    keyVaultClient,
    get capsule() {
      const r = current.record;
      return { name: r.name, kid: r.header.kid, generation: r.generation, kmsProvider: r.kmsProvider, dataKeyEpoch: r.dataKeyEpoch };
    },
    dataKey,
    encryptDeterministic: (value, keyAltName) => encrypt(value, keyAltName, DETERMINISTIC),
    encryptRandom: (value, keyAltName) => encrypt(value, keyAltName, RANDOM),
    queryValues,
    decrypt: <T>(value: Binary) => withCurrent('decrypting a value', async (g) => (await g.encryption.decrypt(value)) as T),
    refresh,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The providers a generation holds: the live one, and the pending rotation's target if any. */
function providersOf(g: Generation): string[] {
  return g.record.pendingRotation ? [g.record.kmsProvider, g.record.pendingRotation.toProvider] : [g.record.kmsProvider];
}
