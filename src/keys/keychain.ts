/**
 * Where secret identities live: the OS keychain (Secret Service on Linux, Keychain on macOS, Credential
 * Manager on Windows) through `@napi-rs/keyring`, or memory for tests.
 *
 * Entries are addressed by service (`mongo-capsule`) and account (the identity name, plus slot suffixes the
 * key manager uses during rotation). Values are bytes, written with the keyring's binary API: JavaScript
 * strings cannot be wiped, byte arrays can.
 *
 * Size limits: Windows Credential Manager caps one credential blob at 2560 bytes, and an identity whose KEM
 * has no seed (NTRU: secret key + public key) encodes to about 3.9 KB. `OsKeychain` therefore splits every
 * value into chunks of at most 2048 bytes of payload plus a 22-byte chunk header, on every platform (one
 * layout everywhere, exercised by the Linux tests): chunk 0 at `<account>`, chunk i at `<account>#<i>`.
 * Every chunk carries the chunk count and a digest of the whole value, so a value whose chunks come from
 * two different writes (a crash halfway through an overwrite) is reported as damaged, never returned.
 *
 * Missing vs broken: the keyring's lookups answer "no such credential" (null) in situations where the store
 * itself is broken (for example a Secret Service without a default collection, where every write fails).
 * A miss is therefore only reported after a write/read/delete probe of a scratch entry has succeeded;
 * otherwise the caller gets `KeychainUnavailableError` or `KeychainAccessDeniedError` with a hint.
 */
import { createHash, randomBytes } from 'node:crypto';
import { AsyncEntry, type EntryOptions } from '@napi-rs/keyring';
import {
  InvalidArgumentError,
  KeychainAccessDeniedError,
  KeychainEntryCorruptError,
  KeychainUnavailableError,
  type MongoCapsuleError,
} from '../errors.ts';

/** The service name every mongo-capsule keychain entry is stored under. */
export const KEYCHAIN_SERVICE = 'mongo-capsule';

/** Account names: what identity names allow, plus `~` for the key manager's slot suffixes. */
const ACCOUNT = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,95}$/;

export function checkAccount(op: string, account: unknown): asserts account is string {
  if (typeof account !== 'string' || !ACCOUNT.test(account)) {
    throw new InvalidArgumentError(`${op}: keychain account must be 1-96 characters of letters, digits, '.', '_', '~' or '-', starting with a letter or digit`);
  }
}

/** A store of secret byte strings, one per account. Every method is async: OS keychains may block on I/O. */
export interface Keychain {
  /** For status output and error messages, e.g. "Secret Service (service mongo-capsule)". */
  readonly description: string;
  /** Store `secret` under `account`, replacing any previous value. The caller keeps ownership of `secret`. */
  store(account: string, secret: Uint8Array): Promise<void>;
  /**
   * The value stored under `account` (a fresh copy: wipe it when done), or `undefined` when there is
   * verifiably no such entry. A keychain that cannot be read throws; it never reports a miss instead.
   */
  retrieve(account: string): Promise<Uint8Array | undefined>;
  /** Remove `account`; resolves whether something was removed. */
  delete(account: string): Promise<boolean>;
  /** Whether `account` has an entry (without handing its value out). */
  exists(account: string): Promise<boolean>;
  /** True when the store only hands out what it was given (an identity from the environment): no writes. */
  readonly readOnly?: boolean;
  /** Set when other processes can reach the same entries (the OS keychain): identity locks then span processes. */
  readonly lockScope?: string;
}

/** A keychain in process memory, for tests and benchmarks. Values are copied in and out and wiped on delete. */
export class MemoryKeychain implements Keychain {
  readonly description = 'in-memory keychain';
  readonly #entries = new Map<string, Uint8Array>();

  async store(account: string, secret: Uint8Array): Promise<void> {
    checkAccount('MemoryKeychain.store', account);
    if (!(secret instanceof Uint8Array)) throw new InvalidArgumentError('MemoryKeychain.store: secret must be a Uint8Array');
    this.#entries.get(account)?.fill(0);
    this.#entries.set(account, Uint8Array.from(secret));
  }

  async retrieve(account: string): Promise<Uint8Array | undefined> {
    checkAccount('MemoryKeychain.retrieve', account);
    const v = this.#entries.get(account);
    return v === undefined ? undefined : Uint8Array.from(v);
  }

  async delete(account: string): Promise<boolean> {
    checkAccount('MemoryKeychain.delete', account);
    const v = this.#entries.get(account);
    if (v === undefined) return false;
    v.fill(0);
    this.#entries.delete(account);
    return true;
  }

  async exists(account: string): Promise<boolean> {
    checkAccount('MemoryKeychain.exists', account);
    return this.#entries.has(account);
  }

  /** Accounts currently stored, sorted (tests use it to check what rotation left behind). */
  accounts(): string[] {
    return [...this.#entries.keys()].sort();
  }
}

/**
 * One platform credential per account, bytes in and out, exactly as the platform answers: `get` resolves
 * null when the platform says there is no credential (which `OsKeychain` double-checks).
 */
export interface CredentialStore {
  readonly description: string;
  get(account: string): Promise<Uint8Array | null>;
  set(account: string, value: Uint8Array): Promise<void>;
  /** Resolves whether a credential was deleted. */
  delete(account: string): Promise<boolean>;
}

function platformName(platform: NodeJS.Platform): string {
  if (platform === 'darwin') return 'macOS Keychain';
  if (platform === 'win32') return 'Windows Credential Manager';
  if (platform === 'linux' || platform === 'freebsd') return 'Secret Service';
  return 'OS keychain';
}

const ENV_OPT_IN = 'on a machine without a keychain (CI, containers), opt in explicitly with MONGO_CAPSULE_SECRET_IDENTITY_FILE (see docs/keys.md)';

export function keychainUnavailableHint(platform: NodeJS.Platform = process.platform): string {
  if (platform === 'darwin') return `the login keychain must exist and be reachable from this session (not over plain ssh without \`security unlock-keychain\`); ${ENV_OPT_IN}`;
  if (platform === 'win32') return `Credential Manager needs a logged-on user profile (it is not available to services running as LocalSystem without one); ${ENV_OPT_IN}`;
  return (
    'a Secret Service must run in this D-Bus session: install gnome-keyring, dbus and libsecret-tools (`npm run setup` on Debian/Ubuntu), ' +
    'make sure DBUS_SESSION_BUS_ADDRESS is set (a desktop session, or `dbus-run-session -- <command>`), and unlock or create the login keyring ' +
    `(\`echo -n "$PASSWORD" | gnome-keyring-daemon --unlock --components=secrets\`); ${ENV_OPT_IN}`
  );
}

export function keychainAccessDeniedHint(platform: NodeJS.Platform = process.platform): string {
  if (platform === 'darwin') return 'allow access in the Keychain prompt (or unlock it with `security unlock-keychain`), then retry';
  if (platform === 'win32') return 'run as the user who created the identity; Credential Manager entries are per user';
  return (
    'the keyring is locked and no unlock prompt could be shown (no display): unlock it with ' +
    '`echo -n "$PASSWORD" | gnome-keyring-daemon --replace --unlock --components=secrets`; a keyring created with another password ' +
    'cannot be unlocked this way: in CI, point XDG_DATA_HOME at a fresh directory'
  );
}

/** Turn whatever the keyring threw into a typed error. The platform's text is kept (it never holds values). */
export function classifyKeyringError(op: string, where: string, e: unknown, platform: NodeJS.Platform = process.platform): MongoCapsuleError {
  const raw = e instanceof Error ? e.message : String(e);
  const detail = (raw.split('\n')[0] ?? '').slice(0, 240);
  const message = `keychain ${op} failed for ${where}: ${detail}`;
  if (/dismiss|denied|cancel|not allowed|interaction|authori[sz]|is locked|errSecAuthFailed/i.test(detail)) {
    return new KeychainAccessDeniedError(message, { hint: keychainAccessDeniedHint(platform), cause: e });
  }
  return new KeychainUnavailableError(message, { hint: keychainUnavailableHint(platform), cause: e });
}

/**
 * The OS credential store through `@napi-rs/keyring`. On Linux it is pinned to the Secret Service: the
 * keyring's automatic fallback, the kernel keyutils store, is per-boot memory (secrets would vanish at
 * reboot) and fails with AccessDenied in containers anyway.
 */
export class KeyringCredentialStore implements CredentialStore {
  readonly description: string;
  readonly service: string;
  readonly #options: EntryOptions = { linux: { store: 'secret-service' } };

  constructor(service: string = KEYCHAIN_SERVICE) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(service)) throw new InvalidArgumentError('KeyringCredentialStore: invalid service name');
    this.service = service;
    this.description = `${platformName(process.platform)} (service ${service})`;
  }

  #entry(op: string, account: string): AsyncEntry {
    try {
      return new AsyncEntry(this.service, account, this.#options);
    } catch (e) {
      throw classifyKeyringError(op, `${this.service}/${account}`, e);
    }
  }

  async get(account: string): Promise<Uint8Array | null> {
    const entry = this.#entry('read', account);
    let value: number[] | null;
    try {
      value = await entry.getSecret();
    } catch (e) {
      throw classifyKeyringError('read', `${this.service}/${account}`, e);
    }
    if (value === null || value === undefined) return null;
    const bytes = Uint8Array.from(value);
    value.fill(0);
    return bytes;
  }

  async set(account: string, value: Uint8Array): Promise<void> {
    const entry = this.#entry('write', account);
    try {
      await entry.setSecret(value);
    } catch (e) {
      throw classifyKeyringError('write', `${this.service}/${account}`, e);
    }
  }

  async delete(account: string): Promise<boolean> {
    const entry = this.#entry('delete', account);
    try {
      return (await entry.deleteCredential()) === true;
    } catch (e) {
      throw classifyKeyringError('delete', `${this.service}/${account}`, e);
    }
  }
}

const CHUNK_MAGIC = Uint8Array.from([0x4d, 0x43, 0x4b, 0x01]); // "MCK" v1
const CHUNK_HEADER = CHUNK_MAGIC.length + 1 + 1 + 16; // magic, index, count, digest
/** Windows Credential Manager: CRED_MAX_CREDENTIAL_BLOB_SIZE = 5 * 512 bytes. */
export const WINDOWS_MAX_BLOB_BYTES = 2560;
/** Payload bytes per chunk; with the header this stays well under the Windows blob limit. */
export const CHUNK_PAYLOAD_BYTES = 2048;
export const MAX_CHUNKS = 16;

function valueDigest(value: Uint8Array): Uint8Array {
  return createHash('sha256').update('mongo-capsule/keychain/v1\0').update(value).digest().subarray(0, 16);
}

function chunkAccount(account: string, index: number): string {
  // '#' cannot appear in an account, so chunk entries never collide with another account's entry.
  return index === 0 ? account : `${account}#${index}`;
}

export interface OsKeychainOptions {
  /** Service name (default `mongo-capsule`); tests use their own so that user keys are never touched. */
  service?: string;
  /** The platform store (default: `@napi-rs/keyring`); replaceable to test chunking and failures. */
  credentialStore?: CredentialStore;
  /** Payload bytes per chunk (default 2048). */
  chunkPayloadBytes?: number;
}

/** The OS keychain: chunked values, typed errors, and misses that are verified before being believed. */
export class OsKeychain implements Keychain {
  readonly description: string;
  readonly lockScope: string | undefined;
  readonly #store: CredentialStore;
  readonly #chunkBytes: number;

  constructor(options: OsKeychainOptions = {}) {
    this.#store = options.credentialStore ?? new KeyringCredentialStore(options.service ?? KEYCHAIN_SERVICE);
    this.description = this.#store.description;
    // A store passed in (tests) is private to this object; the platform's is shared by every process of the user.
    this.lockScope = options.credentialStore === undefined ? `os:${options.service ?? KEYCHAIN_SERVICE}` : undefined;
    this.#chunkBytes = options.chunkPayloadBytes ?? CHUNK_PAYLOAD_BYTES;
    if (!Number.isInteger(this.#chunkBytes) || this.#chunkBytes < 1 || this.#chunkBytes + CHUNK_HEADER > WINDOWS_MAX_BLOB_BYTES) {
      throw new InvalidArgumentError(`OsKeychain: chunkPayloadBytes must be 1-${WINDOWS_MAX_BLOB_BYTES - CHUNK_HEADER}`);
    }
  }

  async store(account: string, secret: Uint8Array): Promise<void> {
    checkAccount('OsKeychain.store', account);
    if (!(secret instanceof Uint8Array) || secret.length === 0) throw new InvalidArgumentError('OsKeychain.store: secret must be a non-empty Uint8Array');
    const count = Math.ceil(secret.length / this.#chunkBytes);
    if (count > MAX_CHUNKS) throw new InvalidArgumentError(`OsKeychain.store: value too large (${secret.length} bytes, at most ${MAX_CHUNKS * this.#chunkBytes})`);
    const digest = valueDigest(secret);
    // Chunk 0 last: it is the one a reader starts from, so a crash before it leaves the previous value's
    // chunk 0 pointing at chunks whose digest no longer matches, which reads as damaged, never as wrong bytes.
    for (let i = count - 1; i >= 0; i--) {
      const part = secret.subarray(i * this.#chunkBytes, Math.min(secret.length, (i + 1) * this.#chunkBytes));
      const blob = new Uint8Array(CHUNK_HEADER + part.length);
      blob.set(CHUNK_MAGIC, 0);
      blob[4] = i;
      blob[5] = count;
      blob.set(digest, 6);
      blob.set(part, CHUNK_HEADER);
      try {
        await this.#store.set(chunkAccount(account, i), blob);
      } finally {
        blob.fill(0);
      }
    }
    await this.#deleteChunksFrom(account, count);
  }

  async retrieve(account: string): Promise<Uint8Array | undefined> {
    checkAccount('OsKeychain.retrieve', account);
    const head = await this.#store.get(account);
    if (head === null) {
      await this.#verifyMiss();
      return undefined;
    }
    const parts: Uint8Array[] = [];
    try {
      const { count, digest } = this.#parseChunk(account, head, 0);
      parts.push(head.subarray(CHUNK_HEADER));
      for (let i = 1; i < count; i++) {
        const blob = await this.#store.get(chunkAccount(account, i));
        if (blob === null) {
          // The platform API also says "no such entry" when the store itself is broken: make sure it is not
          // before calling the entry damaged (a damaged rotation slot may be discarded).
          await this.#verifyMiss();
          throw new KeychainEntryCorruptError(`keychain entry ${account} is incomplete: chunk ${i + 1} of ${count} is missing`, { hint: corruptHint(account) });
        }
        const c = this.#parseChunk(account, blob, i);
        if (c.count !== count || !equalBytes(c.digest, digest)) {
          blob.fill(0);
          throw new KeychainEntryCorruptError(`keychain entry ${account} mixes chunks of two different values`, { hint: corruptHint(account) });
        }
        parts.push(blob.subarray(CHUNK_HEADER));
      }
      const value = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        value.set(p, at);
        at += p.length;
      }
      if (!equalBytes(valueDigest(value), digest)) {
        value.fill(0);
        throw new KeychainEntryCorruptError(`keychain entry ${account} is damaged (digest mismatch)`, { hint: corruptHint(account) });
      }
      return value;
    } finally {
      head.fill(0);
      for (const p of parts) p.fill(0);
    }
  }

  async delete(account: string): Promise<boolean> {
    checkAccount('OsKeychain.delete', account);
    const head = await this.#store.get(account);
    let count: number | undefined;
    if (head !== null) {
      if (head.length > CHUNK_HEADER && CHUNK_MAGIC.every((b, i) => head[i] === b) && head[4] === 0) count = head[5];
      head.fill(0);
    }
    // Chunk 0 first: once it is gone the entry reads as missing, whatever happens to the rest.
    const existed = await this.#store.delete(account);
    if (count !== undefined) {
      for (let i = 1; i < count; i++) await this.#store.delete(chunkAccount(account, i));
      await this.#deleteChunksFrom(account, count);
    } else {
      // Layout unknown (chunk 0 already gone after an interrupted delete, or foreign): leave no fragment behind.
      for (let i = 1; i < MAX_CHUNKS; i++) await this.#store.delete(chunkAccount(account, i));
    }
    return existed;
  }

  async exists(account: string): Promise<boolean> {
    checkAccount('OsKeychain.exists', account);
    const head = await this.#store.get(account);
    if (head === null) {
      await this.#verifyMiss();
      return false;
    }
    head.fill(0);
    return true;
  }

  /** Remove chunk entries `from`, `from + 1`, … left by a longer previous value or an interrupted delete. */
  async #deleteChunksFrom(account: string, from: number): Promise<void> {
    for (let i = Math.max(1, from); i < MAX_CHUNKS; i++) {
      if (!(await this.#store.delete(chunkAccount(account, i)))) break;
    }
  }

  #parseChunk(account: string, blob: Uint8Array, index: number): { count: number; digest: Uint8Array } {
    const ok =
      blob.length > CHUNK_HEADER &&
      CHUNK_MAGIC.every((b, i) => blob[i] === b) &&
      blob[4] === index &&
      blob[5]! >= 1 &&
      blob[5]! <= MAX_CHUNKS &&
      index < blob[5]!;
    if (!ok) {
      blob.fill(0);
      throw new KeychainEntryCorruptError(`keychain entry ${account} was not written by mongo-capsule or is damaged`, { hint: corruptHint(account) });
    }
    return { count: blob[5]!, digest: Uint8Array.from(blob.subarray(6, CHUNK_HEADER)) };
  }

  /**
   * The platform said "no such credential": believe it only if the store demonstrably works, by writing,
   * reading back and deleting a scratch entry whose account no real entry can have.
   */
  async #verifyMiss(): Promise<void> {
    const account = `#probe#${randomBytes(8).toString('hex')}`;
    const value = randomBytes(16);
    await this.#store.set(account, value);
    let back: Uint8Array | null = null;
    try {
      back = await this.#store.get(account);
    } finally {
      await this.#store.delete(account);
    }
    const same = back !== null && equalBytes(back, value);
    if (!same) {
      throw new KeychainUnavailableError(`${this.description} accepted a write but did not return it, so its answer "no such entry" cannot be trusted`, {
        hint: keychainUnavailableHint(),
      });
    }
  }
}

function corruptHint(account: string): string {
  return `the entry was modified outside mongo-capsule or a write was interrupted; if a rotation was running, rerun \`mongo-capsule keys rotate\`; otherwise restore the identity from its --secret-out backup (\`mongo-capsule keys migrate\`) after \`mongo-capsule keys delete --name ${account.split('~')[0]} --yes\``;
}

/** Constant-time for equal lengths; used for digests and read-back checks. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
