/**
 * Typed errors shared by every layer. Each error carries a stable `code` that callers and the CLI can
 * switch on, a one-line message that says what failed, and a `hint` that says what to do about it.
 * Messages never contain secret material: no keys, no passwords, no connection strings with credentials.
 */

export type ErrorCode =
  // crypto
  | 'INVALID_ARGUMENT'
  | 'INVALID_KEY_LENGTH'
  | 'UNKNOWN_SUITE'
  | 'CAPSULE_FORMAT'
  | 'CAPSULE_AUTH'
  | 'SIGNATURE_INVALID'
  | 'SIGNER_UNKNOWN'
  | 'NATIVE_ADDON_MISSING'
  | 'IDENTITY_FORMAT'
  // keys
  | 'KEYCHAIN_UNAVAILABLE'
  | 'KEYCHAIN_ACCESS_DENIED'
  | 'ALREADY_INITIALIZED'
  | 'NOT_INITIALIZED'
  | 'KEYCHAIN_ENTRY_CORRUPT'
  | 'KEYCHAIN_READ_ONLY'
  | 'MIGRATION_VERIFY_FAILED'
  | 'LEGACY_KEY_UNSUPPORTED'
  | 'INSECURE_FILE_PERMISSIONS'
  | 'IDENTITY_LOCKED'
  | 'STATE_FILE_LOCKED'
  | RecoveryErrorCode
  // files and CLI
  | 'FILE_EXISTS'
  | 'FILE_NOT_FOUND'
  | 'USAGE'
  | 'INPUT_TOO_LARGE'
  // mongo
  | 'MONGO_UNREACHABLE'
  | 'MONGO_AUTH'
  | 'MONGO_COMMAND'
  | 'CAPSULE_NOT_FOUND'
  | 'CAPSULE_CONFLICT'
  | 'CSFLE_UNAVAILABLE'
  | 'TIMEOUT'
  | 'CMK_MISMATCH'
  | 'CMK_ROTATED'
  | 'ROTATION_INCOMPLETE'
  | 'CAPSULE_LOCATION_INVALID'
  | 'CAPSULE_LOCATIONS_CORRUPT'
  | 'KEY_NOT_RETIRED'
  // infra / scripts
  | 'CONFIG_INVALID'
  | 'PREREQUISITE_MISSING'
  // signatures and endorsement
  | 'CAPSULE_OTHER_KEY'
  | 'ENDORSE_REFUSED'
  | 'CAPSULE_REPLAY'
  | 'CAPSULE_WATERMARKS_CORRUPT'
  // several recipients per capsule
  | 'RECIPIENT_INVALID'
  | 'RECIPIENT_NOT_FOUND';

export interface MongoCapsuleErrorOptions {
  /** What the user can do about it; printed by the CLI under the message. */
  hint?: string;
  cause?: unknown;
}

export class MongoCapsuleError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: MongoCapsuleErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }
}

/** A caller passed something of the wrong type, length or shape. */
export class InvalidArgumentError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('INVALID_ARGUMENT', message, options);
  }
}

/** A key or payload has the wrong length for its role (for example a CMK that is not 96 bytes). */
export class InvalidKeyLengthError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('INVALID_KEY_LENGTH', message, options);
  }
}

export class UnknownSuiteError extends MongoCapsuleError {
  constructor(suite: string, known: readonly string[]) {
    super('UNKNOWN_SUITE', `unknown KEM suite ${JSON.stringify(suite)}`, {
      hint: `use one of: ${known.join(', ')}`,
    });
  }
}

/** The bytes are not a well-formed, canonical capsule (truncated, extended, wrong version, bad field). */
export class CapsuleFormatError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('CAPSULE_FORMAT', message, {
      hint: 'the file is not a mongo-capsule v1 capsule or was damaged; restore it from the cluster or a backup',
      ...options,
    });
  }
}

/** Decryption failed: the key does not belong to this capsule, or the capsule was modified. */
export class CapsuleAuthError extends MongoCapsuleError {
  constructor(message = 'capsule unwrap failed: wrong key or tampered capsule', options: MongoCapsuleErrorOptions = {}) {
    super('CAPSULE_AUTH', message, {
      hint: 'check that the identity (kid) matches the capsule (`mongo-capsule inspect`), and restore the capsule if it was modified',
      ...options,
    });
  }
}

export class SignatureInvalidError extends MongoCapsuleError {
  constructor(message = 'capsule signature verification failed: wrong signer key or tampered capsule', options: MongoCapsuleErrorOptions = {}) {
    super('SIGNATURE_INVALID', message, {
      hint: 'verify with the public file of the identity that signed it (signer kid in `mongo-capsule inspect`)',
      ...options,
    });
  }
}

export class SignerUnknownError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('SIGNER_UNKNOWN', message, options);
  }
}

export class NativeAddonMissingError extends MongoCapsuleError {
  constructor(suite: string, options: MongoCapsuleErrorOptions = {}) {
    super('NATIVE_ADDON_MISSING', `the ${suite} suite needs the native NTRU addon, which is not built`, {
      hint: 'run `npm run build:native` (needs a Rust toolchain), then try again',
      ...options,
    });
  }
}

export class IdentityFormatError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('IDENTITY_FORMAT', message, {
      hint: 'create a new identity with `mongo-capsule init` or `mongo-capsule keygen`',
      ...options,
    });
  }
}

export class FileExistsError extends MongoCapsuleError {
  constructor(path: string) {
    super('FILE_EXISTS', `refusing to overwrite existing file ${path}`, {
      hint: 'choose another path, or move the existing file away first if you really mean to replace it',
    });
  }
}

export class FileNotFoundError extends MongoCapsuleError {
  constructor(path: string, hint = 'check the path (relative paths are resolved from the current directory)') {
    super('FILE_NOT_FOUND', `file not found: ${path}`, { hint });
  }
}

export class UsageError extends MongoCapsuleError {
  constructor(message: string, hint = 'run `mongo-capsule --help` for usage') {
    super('USAGE', message, { hint });
  }
}

export function isMongoCapsuleError(e: unknown): e is MongoCapsuleError {
  return e instanceof MongoCapsuleError;
}

// ---- keys: keychain and key manager ----

/** No OS keychain can be reached (no Secret Service, no D-Bus session, no credential store). */
export class KeychainUnavailableError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('KEYCHAIN_UNAVAILABLE', message, options);
  }
}

/** The keychain exists but refused: locked, the unlock prompt was dismissed, or the user denied access. */
export class KeychainAccessDeniedError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('KEYCHAIN_ACCESS_DENIED', message, options);
  }
}

export class AlreadyInitializedError extends MongoCapsuleError {
  constructor(name: string, options: MongoCapsuleErrorOptions = {}) {
    super('ALREADY_INITIALIZED', `identity ${JSON.stringify(name)} already exists in the keychain`, {
      hint: `use it as it is, pick another --name, or rotate it with \`mongo-capsule keys rotate --name ${name}\``,
      ...options,
    });
  }
}

export class NotInitializedError extends MongoCapsuleError {
  constructor(name: string, options: MongoCapsuleErrorOptions = {}) {
    super('NOT_INITIALIZED', `identity ${JSON.stringify(name)} is not in the keychain`, {
      hint: `create it with \`mongo-capsule init --name ${name} --pub-out ${name}.pub.json\`, or import an old key file with \`mongo-capsule keys migrate --from <file>\``,
      ...options,
    });
  }
}

/** A keychain entry exists but does not hold what mongo-capsule wrote (damaged, partial, or foreign). */
export class KeychainEntryCorruptError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('KEYCHAIN_ENTRY_CORRUPT', message, options);
  }
}

/** The secret source is read-only (for example the identity comes from an environment variable). */
export class KeychainReadOnlyError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('KEYCHAIN_READ_ONLY', message, options);
  }
}

/** What the keychain returned after a migration differs from the file: the file is kept. */
export class MigrationVerifyError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('MIGRATION_VERIFY_FAILED', message, options);
  }
}

/** A legacy key file that cannot be turned into an identity (the file is left untouched). */
export class LegacyKeyUnsupportedError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('LEGACY_KEY_UNSUPPORTED', message, options);
  }
}

/** A file holding secret material is readable by other users, or is not a plain regular file. */
export class InsecureFilePermissionsError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('INSECURE_FILE_PERMISSIONS', message, options);
  }
}

// ---- mongo: servers, capsule store, CSFLE ----

/** No server answered within the selection timeout (wrong host or port, server down, network, TLS). */
export class MongoUnreachableError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('MONGO_UNREACHABLE', message, {
      hint: 'check the host, port and network (is the server running? is the port published?); `mongo-capsule doctor` tells what works',
      ...options,
    });
  }
}

/** The server rejected the credentials, or the user lacks a role the operation needs. */
export class MongoAuthError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('MONGO_AUTH', message, {
      hint: 'check the user name, password and authSource of the connection string, and the roles of that user',
      ...options,
    });
  }
}

/** A server command failed for a reason other than reachability or authentication. */
export class MongoCommandError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('MONGO_COMMAND', message, options);
  }
}

export class CapsuleNotFoundError extends MongoCapsuleError {
  constructor(name: string, where: string, options: MongoCapsuleErrorOptions = {}) {
    super('CAPSULE_NOT_FOUND', `no capsule named ${JSON.stringify(name)} in ${where}`, {
      hint: 'seed one with `mongo-capsule seed --uri <uri> --pub <file>`, or check --name and the database',
      ...options,
    });
  }
}

/** The stored capsule changed under us (another rotation won the compare-and-swap, or one is in progress). */
export class CapsuleConflictError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('CAPSULE_CONFLICT', message, {
      hint: 'another process changed the capsule; load it again and retry (a pending CMK rotation is finished by `mongo-capsule rotate-cmk`)',
      ...options,
    });
  }
}

/** The CSFLE addon (mongodb-client-encryption over libmongocrypt) cannot be loaded. */
export class CsfleUnavailableError extends MongoCapsuleError {
  constructor(message = 'client-side field level encryption is unavailable: mongodb-client-encryption cannot be loaded', options: MongoCapsuleErrorOptions = {}) {
    super('CSFLE_UNAVAILABLE', message, {
      hint: 'run `npm run setup` (it builds mongodb-client-encryption against libmongocrypt), then try again',
      ...options,
    });
  }
}

/** Something we waited for did not happen in time; the message says what and for how long. */
export class OperationTimeoutError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('TIMEOUT', message, options);
  }
}

// ---- infra: the Pulumi program ----

/** A stack configuration value (`mongo-capsule:<key>`) is malformed, out of range, or inconsistent. */
export class ConfigInvalidError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('CONFIG_INVALID', message, options);
  }
}

// ---- mongo: the CMK and the key vault ----

/**
 * The CMK a capsule holds does not decrypt the data keys it is meant to (libmongocrypt: "HMAC validation
 * failure"): the capsule and the key vault do not belong together.
 */
export class CmkMismatchError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('CMK_MISMATCH', message, {
      hint:
        'the capsule holds another CMK than the one these data keys were made with (a capsule restored from another cluster, or edited by hand): ' +
        'restore the capsule that belongs to this key vault, or point --capsules/--key-vault at the pair that belongs together; `mongo-capsule doctor` checks it',
      ...options,
    });
  }
}

/** A client holds the CMK of an older capsule generation and cannot switch to the current one on this path. */
export class CmkRotatedError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('CMK_ROTATED', message, {
      hint: 'retry the operation (the encrypted client has switched to the new CMK), or open a new encrypted client',
      ...options,
    });
  }
}

/** A CMK rotation started (pendingRotation is stored) but this run could not finish it. */
export class RotationIncompleteError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('ROTATION_INCOMPLETE', message, {
      hint: 'data stays readable meanwhile; rerun `mongo-capsule rotate-cmk` (same options) to finish the rotation, or `mongo-capsule rotate-cmk --abandon` to undo it',
      ...options,
    });
  }
}

// ---- keys: recovery shares (k-of-n backups of an identity) ----

export type RecoveryErrorCode =
  | 'RECOVERY_SHARE_FORMAT'
  | 'RECOVERY_SHARE_DAMAGED'
  | 'RECOVERY_SHARE_MISMATCH'
  | 'RECOVERY_SHARES_INSUFFICIENT'
  | 'RECOVERY_COMBINE_FAILED'
  | 'RECOVERY_SHARE_STALE'
  | 'RECOVERY_SHARE_SEALED'
  | 'RECOVERY_SHARE_WRONG_CUSTODIAN';

export interface RecoveryErrorOptions extends MongoCapsuleErrorOptions {
  /** The share (file name, or "stdin share 2") the error is about, when it is about one. */
  source?: string;
}

abstract class RecoveryError extends MongoCapsuleError {
  readonly source: string | undefined;
  constructor(code: RecoveryErrorCode, message: string, options: RecoveryErrorOptions) {
    super(code, message, options);
    this.source = options.source;
  }
}

/** Not a recovery share, or one that breaks the format (unknown or missing fields, non-canonical encodings). */
export class RecoveryShareFormatError extends RecoveryError {
  constructor(message: string, options: RecoveryErrorOptions = {}) {
    super('RECOVERY_SHARE_FORMAT', message, { hint: 'pass the share file exactly as `mongo-capsule keys backup` wrote it (or retype the printed share)', ...options });
  }
}

/** A share whose own integrity check (or a printed line's checksum) fails: it was altered or mistyped. */
export class RecoveryShareDamagedError extends RecoveryError {
  constructor(message: string, options: RecoveryErrorOptions = {}) {
    super('RECOVERY_SHARE_DAMAGED', message, { hint: 'use another copy of this share, or another custodian\'s share instead of it', ...options });
  }
}

/** Shares that do not belong together: two backups, another identity, the same share twice. */
export class RecoveryShareMismatchError extends RecoveryError {
  constructor(message: string, options: RecoveryErrorOptions = {}) {
    super('RECOVERY_SHARE_MISMATCH', message, { hint: 'pass only shares of one backup (same backup id, `keys restore` names it), each share once', ...options });
  }
}

/** Fewer shares than the backup's threshold. */
export class RecoverySharesInsufficientError extends RecoveryError {
  constructor(message: string, options: RecoveryErrorOptions = {}) {
    super('RECOVERY_SHARES_INSUFFICIENT', message, { hint: 'collect more shares of the same backup from its custodians', ...options });
  }
}

/** The shares are well-formed and agree, but do not combine to the secret the backup committed to. */
export class RecoveryCombineError extends RecoveryError {
  constructor(message: string, options: RecoveryErrorOptions = {}) {
    super('RECOVERY_COMBINE_FAILED', message, { hint: 'one share was altered with its check recomputed: combine other shares (pass more than the threshold to find the odd one out)', ...options });
  }
}

/** A backup of a key that is no longer the identity's active key (a rotation happened since). */
export class RecoveryShareStaleError extends RecoveryError {
  constructor(message: string, options: RecoveryErrorOptions = {}) {
    super('RECOVERY_SHARE_STALE', message, options);
  }
}

/** A sealed share whose custodian's key is not in this keychain: the custodian must open it. */
export class RecoveryShareSealedError extends RecoveryError {
  constructor(message: string, options: RecoveryErrorOptions = {}) {
    super('RECOVERY_SHARE_SEALED', message, { hint: 'send the share to its custodian, who opens it with `mongo-capsule keys open-share --share <file> --identity <custodian> --out <file>`', ...options });
  }
}

/** A sealed share opened with an identity that is not the custodian it was sealed for. */
export class RecoveryShareWrongCustodianError extends RecoveryError {
  constructor(message: string, options: RecoveryErrorOptions = {}) {
    super('RECOVERY_SHARE_WRONG_CUSTODIAN', message, { hint: 'open each share with the identity of the custodian it names (`custodianName` in the file)', ...options });
  }
}

// ---- files: bounded inputs ----

/** An input (file or stdin) is larger than anything of its kind can be: reading stopped at the limit. */
export class InputTooLargeError extends MongoCapsuleError {
  readonly limit: number;

  constructor(what: string, source: string, limit: number) {
    super('INPUT_TOO_LARGE', `${source} is too large to be ${what}: more than ${limit} bytes (the limit); reading stopped there`, {
      hint: `check that ${source} is the right file (${what} is at most ${limit} bytes)`,
    });
    this.limit = limit;
  }
}

/** A `--capsules` or `--cluster` location of `keys rotate` that cannot be searched: nothing was changed. */
export class CapsuleLocationError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('CAPSULE_LOCATION_INVALID', message, {
      hint: 'name the directories that hold the *.capsule files and the cluster that holds the capsules; the keychain is unchanged',
      ...options,
    });
  }
}

/** The record of where an identity's capsules live cannot be read: a rotation cannot prove what it searched. */
export class CapsuleLocationsCorruptError extends MongoCapsuleError {
  constructor(path: string, why: string, cause?: unknown) {
    super('CAPSULE_LOCATIONS_CORRUPT', `the capsule location record ${path} cannot be read: ${why}`, {
      hint: `repair or move the file away (it holds no secret; \`keys rotate\` then knows only the locations you name) and rerun`,
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

/** A key rotation kept the old key (in the `prev` slot) because it had no proof that no capsule needs it. */
export class KeyNotRetiredError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('KEY_NOT_RETIRED', message, options);
  }
}

/** A state file (capsule locations, replay marks) stayed locked by a live process longer than we wait. */
export class StateFileLockedError extends MongoCapsuleError {
  readonly lockPath: string;

  constructor(what: string, path: string, lockPath: string, holder: string, waitedMs: number) {
    super('STATE_FILE_LOCKED', `${what} ${path} is being updated by ${holder} (lock file ${lockPath}); waited ${Math.round(waitedMs / 1000)} s; nothing was changed`, {
      hint: `wait for that mongo-capsule command to finish, then rerun; if none is running, remove the lock (\`rm ${lockPath}\`) and rerun`,
    });
    this.lockPath = lockPath;
  }
}

// ---- mongo: who vouches for a capsule ----

/** `seed` found a capsule of that name already sealed for another key than the --pub it was given. */
export class CapsuleOwnedByOtherKeyError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('CAPSULE_OTHER_KEY', message, {
      hint: 'nothing was changed: the stored capsule and its data belong to that other key. Use its public file, pick another --capsule name, or pass --accept-existing to leave it and exit 0',
      ...options,
    });
  }
}

/** `endorse` will not re-key a capsule whose CMK already protects data keys (it never vouches for a CMK it did not make). */
export class EndorseRefusedError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('ENDORSE_REFUSED', message, options);
  }
}

/** A capsule older than one this machine already opened (replay of a generation a rotation retired). */
export class CapsuleReplayError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('CAPSULE_REPLAY', message, {
      hint: 'someone wrote back an older capsule: restore the newest one from a backup. If you restored an older backup on purpose, open it once with `acceptRollback: true` (CLI `--accept-rollback`)',
      ...options,
    });
  }
}

/**
 * The replay marks of this machine (capsule-watermarks.json) cannot be read. Refused rather than treated as
 * empty: an empty record would accept any older capsule generation again.
 */
export class CapsuleWatermarksCorruptError extends MongoCapsuleError {
  constructor(path: string, why: string, cause?: unknown) {
    super('CAPSULE_WATERMARKS_CORRUPT', `the capsule replay marks ${path} cannot be read: ${why}`, {
      hint: 'repair the file or move it away (it holds no secret); without it this machine accepts the next capsule it sees as the newest (trust on first use again)',
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

// ---- mongo: several recipients per capsule ----

/**
 * A recipient entry of a capsule is not bound to the capsule's current CMK: its tag does not verify, or its
 * public identity does not match the key its capsule is sealed for. Someone wrote it who does not hold the CMK
 * (or it is left from an older generation); nothing seals a new CMK for it.
 */
export class RecipientInvalidError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('RECIPIENT_INVALID', message, {
      hint: 'nothing was changed. Remove the entry with `mongo-capsule keys revoke --kid <kid>` (it also rotates the CMK), then grant that identity again if it should have access',
      ...options,
    });
  }
}

/** `keys revoke --kid` named a key that is not a recipient of the capsule. */
export class RecipientNotFoundError extends MongoCapsuleError {
  constructor(message: string, options: MongoCapsuleErrorOptions = {}) {
    super('RECIPIENT_NOT_FOUND', message, {
      hint: '`mongo-capsule doctor` lists the recipients of each capsule (their kids); `mongo-capsule inspect` shows the kid of a public file',
      ...options,
    });
  }
}
