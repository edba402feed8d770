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
  // files and CLI
  | 'FILE_EXISTS'
  | 'FILE_NOT_FOUND'
  | 'USAGE'
  // mongo
  | 'MONGO_UNREACHABLE'
  | 'MONGO_AUTH'
  | 'MONGO_COMMAND'
  | 'CAPSULE_NOT_FOUND'
  | 'CAPSULE_CONFLICT'
  | 'CSFLE_UNAVAILABLE'
  | 'TIMEOUT'
  // infra / scripts
  | 'CONFIG_INVALID'
  | 'PREREQUISITE_MISSING';

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
  constructor(path: string, hint?: string) {
    super('FILE_NOT_FOUND', `file not found: ${path}`, hint === undefined ? {} : { hint });
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
