/**
 * Where a command gets a secret identity from: the OS keychain, or, on machines that have none (CI runners,
 * containers), an explicit opt-in through the environment:
 *
 *   MONGO_CAPSULE_SECRET_IDENTITY_FILE=<path>   a secret identity file (`keygen --secret-out`), mode 0600/0400
 *   MONGO_CAPSULE_SECRET_IDENTITY=<json>        the secret identity itself (the file's content)
 *
 * Using either prints a warning on stderr every time. There is no silent fallback: without these variables
 * the keychain is used, and a keychain that cannot be reached is an error whose hint names the opt-in.
 * Prefer the _FILE form: a variable's value is visible to the process's children and, on Linux, in
 * /proc/<pid>/environ to the same user, and a JavaScript string cannot be wiped.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { copySecretIdentity, decodeSecretIdentity, wipeSecretIdentity, type SecretIdentity } from '../crypto/index.ts';
import {
  FileNotFoundError,
  InsecureFilePermissionsError,
  isMongoCapsuleError,
  KeychainReadOnlyError,
  NotInitializedError,
  UsageError,
} from '../errors.ts';
import { fileError, INPUT_LIMITS, readHandleBounded } from '../files.ts';
import { checkAccount, OsKeychain, type Keychain } from './keychain.ts';
import { KeyManager, type UnwrapWithManagerOptions } from './manager.ts';

export const SECRET_IDENTITY_ENV = 'MONGO_CAPSULE_SECRET_IDENTITY';
export const SECRET_IDENTITY_FILE_ENV = 'MONGO_CAPSULE_SECRET_IDENTITY_FILE';

export interface SecretSourceOptions {
  /** Environment to read the opt-in variables from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Where the opt-in warning goes (default: a line on `process.stderr`). */
  warn?: (message: string) => void;
  /** The keychain used when the environment does not opt in (default: the OS keychain). */
  keychain?: Keychain;
}

/**
 * A read-only keychain holding the one identity given through the environment. Accounts of other identities
 * are an error that says which identity the environment holds; rotation slots are simply absent.
 */
export class EnvironmentKeychain implements Keychain {
  readonly description: string;
  readonly readOnly = true;
  readonly identityName: string;
  readonly #encoded: Uint8Array;

  constructor(encoded: Uint8Array, origin: string) {
    // Decoding validates everything (format, lengths, kids) up front, so a bad variable fails at once.
    const id = decodeSecretIdentity(encoded);
    this.identityName = id.name;
    wipeSecretIdentity(id);
    this.#encoded = Uint8Array.from(encoded);
    this.description = `${origin} (explicit opt-in, read-only)`;
  }

  async retrieve(account: string): Promise<Uint8Array | undefined> {
    checkAccount('EnvironmentKeychain.retrieve', account);
    if (account === this.identityName) return Uint8Array.from(this.#encoded);
    const base = account.split('~')[0]!;
    if (base === this.identityName) return undefined;
    throw new NotInitializedError(base, {
      hint: `${this.description} holds identity ${JSON.stringify(this.identityName)}; use --name ${this.identityName}, or point it at the identity you need`,
    });
  }

  async exists(account: string): Promise<boolean> {
    checkAccount('EnvironmentKeychain.exists', account);
    return account === this.identityName;
  }

  async store(account: string, _secret: Uint8Array): Promise<void> {
    throw this.#readOnly('store', account);
  }

  async delete(account: string): Promise<boolean> {
    throw this.#readOnly('delete', account);
  }

  #readOnly(op: string, account: string): KeychainReadOnlyError {
    return new KeychainReadOnlyError(`cannot ${op} ${account}: the secret identity comes from ${this.description}`, {
      hint: `unset ${SECRET_IDENTITY_ENV} and ${SECRET_IDENTITY_FILE_ENV} to manage identities in the OS keychain`,
    });
  }
}

/**
 * Read a secret identity file: a regular file, not readable or writable by others (POSIX), at most
 * INPUT_LIMITS.secretIdentity bytes. One rule for every place a secret file is read (this opt-in, `unwrap
 * --secret`, `wrap --sign`): group read is tolerated (Kubernetes secrets with fsGroup); anything for "other", or
 * group write, is not. `label` says where the path came from ("--secret").
 */
export async function readSecretFile(path: string, label: string = SECRET_IDENTITY_FILE_ENV): Promise<Uint8Array> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FileNotFoundError(path, `${label} points at a file that does not exist`);
    throw fileError(e, path);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new InsecureFilePermissionsError(`${label}: ${path} is not a regular file`, { hint: 'give the path of the secret identity file itself' });
    if (process.platform !== 'win32' && (st.mode & 0o027) !== 0) {
      throw new InsecureFilePermissionsError(`${label}: ${path} is accessible by other users (mode ${(st.mode & 0o777).toString(8)})`, {
        hint: `restrict it: \`chmod 600 ${path}\` (Kubernetes: defaultMode 0400; Docker secrets: mode 0400)`,
      });
    }
    return await readHandleBounded(handle, INPUT_LIMITS.secretIdentity, 'a secret identity file', `${label}: ${path}`);
  } finally {
    await handle.close();
  }
}

/**
 * The environment opt-in, if any: a read-only keychain holding that identity, after printing the warning.
 * Returns undefined when neither variable is set.
 */
export async function environmentKeychain(options: SecretSourceOptions = {}): Promise<EnvironmentKeychain | undefined> {
  const env = options.env ?? process.env;
  const inline = env[SECRET_IDENTITY_ENV];
  const file = env[SECRET_IDENTITY_FILE_ENV];
  if (inline === undefined && file === undefined) return undefined;
  if (inline !== undefined && file !== undefined) {
    throw new UsageError(`both ${SECRET_IDENTITY_ENV} and ${SECRET_IDENTITY_FILE_ENV} are set`, 'set exactly one of them');
  }
  const variable = inline !== undefined ? SECRET_IDENTITY_ENV : SECRET_IDENTITY_FILE_ENV;
  const value = (inline ?? file)!;
  if (value.trim() === '') {
    // An empty value is usually a CI secret that was never configured: say so instead of ignoring it.
    throw new UsageError(`${variable} is set but empty`, 'configure the secret in your CI, or unset the variable to use the OS keychain');
  }
  const origin = inline !== undefined ? `environment variable ${SECRET_IDENTITY_ENV}` : `${SECRET_IDENTITY_FILE_ENV} (${file})`;
  const warn = options.warn ?? ((m: string) => process.stderr.write(`${m}\n`));
  warn(`warning: using the secret identity from ${origin} instead of the OS keychain; this opt-in is meant for CI and headless machines`);
  const bytes = inline !== undefined ? new TextEncoder().encode(inline) : await readSecretFile(file!);
  try {
    return new EnvironmentKeychain(bytes, origin);
  } catch (e) {
    // The decoder's messages never quote key material, but make the origin obvious.
    if (isMongoCapsuleError(e)) e.message = `${variable}: ${e.message}`;
    throw e;
  } finally {
    bytes.fill(0);
  }
}

/** The keychain a command should use: the environment opt-in when present (with its warning), else the OS keychain. */
export async function resolveKeychain(options: SecretSourceOptions = {}): Promise<Keychain> {
  return (await environmentKeychain(options)) ?? options.keychain ?? new OsKeychain();
}

/**
 * The secret identity `name` for a one-shot command (the CLI's `unwrap --name`, `wrap --sign-name`): from the
 * environment opt-in or the keychain. The caller owns the result and wipes it (`wipeSecretIdentity`).
 * @example
 * const id = await loadSecretIdentity('default', { env: io.env, warn: (m) => io.stderr.write(`${m}\n`) });
 * try { cmk = unwrapKey(capsule, id); } finally { wipeSecretIdentity(id); }
 */
export async function loadSecretIdentity(name = 'default', options: SecretSourceOptions = {}): Promise<SecretIdentity> {
  const manager = new KeyManager({ keychain: await resolveKeychain(options), cacheTtlMs: 0 });
  const borrowed = await manager.getSecretIdentity(name);
  // Hand out an independent copy and zeroize the manager's at once.
  const copy = copySecretIdentity(borrowed);
  manager.clearCache();
  return copy;
}

/**
 * Verify and open a capsule with identity `name` from the environment opt-in or the keychain, choosing the
 * keychain slot by the capsule's kid (so it also opens capsules already re-sealed by an unfinished rotation).
 * Returns the 96-byte CMK; wipe it when done.
 */
export async function unwrapWithKeychain(
  capsule: Uint8Array,
  name = 'default',
  options: SecretSourceOptions & UnwrapWithManagerOptions = {},
): Promise<Uint8Array> {
  const manager = new KeyManager({ keychain: await resolveKeychain(options), cacheTtlMs: 0 });
  try {
    return await manager.unwrap(capsule, name, {
      ...(options.signers ? { signers: options.signers } : {}),
      ...(options.requireSignature ? { requireSignature: true } : {}),
      ...(options.allowUnsigned ? { allowUnsigned: true } : {}),
    });
  } finally {
    manager.clearCache();
  }
}

/**
 * The keychain of a `KeyManager` constructed without one: the environment opt-in when either variable is set in
 * `env` (the same read-only identity, checks and warning as the CLI's `resolveKeychain`), else the OS keychain.
 * The constructor is synchronous and the file is read on first use, so a broken opt-in is reported then, never
 * replaced by the OS keychain.
 */
export function defaultKeychain(env: NodeJS.ProcessEnv = process.env): Keychain {
  if (env[SECRET_IDENTITY_ENV] === undefined && env[SECRET_IDENTITY_FILE_ENV] === undefined) return new OsKeychain();
  return new DeferredEnvironmentKeychain(env);
}

class DeferredEnvironmentKeychain implements Keychain {
  readonly description: string;
  readonly readOnly = true;
  readonly #env: NodeJS.ProcessEnv;
  #resolved: Promise<EnvironmentKeychain> | undefined;

  constructor(env: NodeJS.ProcessEnv) {
    this.#env = { [SECRET_IDENTITY_ENV]: env[SECRET_IDENTITY_ENV], [SECRET_IDENTITY_FILE_ENV]: env[SECRET_IDENTITY_FILE_ENV] };
    const file = env[SECRET_IDENTITY_FILE_ENV];
    const origin = file !== undefined ? `${SECRET_IDENTITY_FILE_ENV} (${file})` : `environment variable ${SECRET_IDENTITY_ENV}`;
    this.description = `${origin} (explicit opt-in, read-only)`;
  }

  #keychain(): Promise<EnvironmentKeychain> {
    // A failed read is not cached: fixing the file or variable and retrying works in the same process.
    this.#resolved ??= environmentKeychain({ env: this.#env }).then((k) => k!).catch((e: unknown) => {
      this.#resolved = undefined;
      throw e;
    });
    return this.#resolved;
  }

  async retrieve(account: string): Promise<Uint8Array | undefined> {
    return (await this.#keychain()).retrieve(account);
  }

  async exists(account: string): Promise<boolean> {
    return (await this.#keychain()).exists(account);
  }

  async store(account: string, secret: Uint8Array): Promise<void> {
    return (await this.#keychain()).store(account, secret);
  }

  async delete(account: string): Promise<boolean> {
    return (await this.#keychain()).delete(account);
  }
}
