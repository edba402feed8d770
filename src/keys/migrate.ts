/**
 * Moving file-based secrets into the keychain (`mongo-capsule keys migrate --from <file>`).
 *
 * Recognised files, by content:
 * - secret identity (`keygen --secret-out`, JSON): stored under its own name.
 * - raw NTRU secret key of the first prototype (NTRU-HPS-4096-821: 1590 bytes; NTRU-HRSS-701: 1450 bytes):
 *   such a key holds f, f_p and h^-1 but not the public key h, which cannot be recomputed through the KEM
 *   API; the matching public key must be given (raw bytes, 1230 / 1138, or a `.pub.json`). The pair is checked
 *   (encapsulate to the public key, decapsulate with the secret key). The prototype had no signing key, so a
 *   fresh ML-DSA-87 key is generated; the result is an ordinary identity under `--name`.
 * - raw CSFLE local master key (96 bytes, raw or base64; what MongoDB's local-KMS tutorials keep in a file):
 *   it is a CMK, not an identity. It is sealed into a capsule for identity `--name` (signed by it), written to
 *   `--capsule-out`, and the capsule is opened again with the keychain's identity before the file is deleted.
 * - 32 bytes (raw or base64): the 256-bit master key of the original master-key design. It protected other
 *   data with a symmetric cipher; nothing here is sealed to it and a KEM key cannot be derived from it without
 *   keeping it alive, so it is refused and left untouched.
 *
 * After storing, the keychain entry is read back and must equal what was written byte for byte; only then is
 * the file securely deleted (see secure-file.ts). A rerun after a crash finds the entry already there, checks
 * that it holds the same key, and finishes the deletion.
 */
import { INPUT_LIMITS, readFileBounded } from '../files.ts';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import {
  checkIdentityName,
  CMK_LENGTH,
  computeKid,
  decodePublicIdentity,
  decodeSecretIdentity,
  encodeSecretIdentity,
  getSuite,
  parseCapsule,
  SIGNATURE_ALGORITHM,
  toPublicIdentity,
  wipeSecretIdentity,
  wrapKey,
  type PublicIdentity,
  type SecretIdentity,
} from '../crypto/index.ts';
import {
  AlreadyInitializedError,
  KeychainReadOnlyError,
  LegacyKeyUnsupportedError,
  MigrationVerifyError,
  UsageError,
} from '../errors.ts';
import { equalBytes, type Keychain } from './keychain.ts';
import { withIdentityLock } from './identity-lock.ts';
import { KeyManager, slotAccount } from './manager.ts';
import { writeFileAtomic } from '../files.ts';
import { checkDeletable, secureDelete } from './secure-file.ts';

/** Raw NTRU secret key lengths of the prototype's parameter sets, with their suite ids. */
export const LEGACY_NTRU_SECRET_KEYS: ReadonlyArray<{ secretKey: number; publicKey: number; suite: string }> = [
  { secretKey: 1590, publicKey: 1230, suite: 'ntru-hps-4096-821' },
  { secretKey: 1450, publicKey: 1138, suite: 'ntru-hrss-701' },
];
export const LEGACY_MASTER_KEY_LENGTH = 32;

export type LegacyKind = 'secret-identity' | 'ntru-secret-key' | 'csfle-master-key' | 'master-key-32';

export interface MigrateOptions {
  keychain: Keychain;
  /** Identity name: must match a secret identity file; names a raw NTRU key; seals a raw CMK (default "default"). */
  name?: string;
  /** Public key for a raw NTRU secret key: raw bytes or the content of a `.pub.json`. */
  publicKey?: Uint8Array;
  /** Raw CMK only: where to write the capsule (refused if it exists). */
  capsuleOut?: string;
  /** Raw CMK only: the capsule name in its header (default: the identity name). */
  capsuleName?: string;
  /** Keep the file (skip the secure deletion). */
  keepFile?: boolean;
  /** Clock for the capsule's creation time. */
  now?: () => number;
}

export interface MigrationResult {
  kind: LegacyKind;
  name: string;
  /** The identity now in the keychain (for a raw CMK: the identity the capsule is sealed for). */
  publicIdentity: PublicIdentity;
  /** True when the keychain already held this key (a rerun after an interruption). */
  alreadyPresent: boolean;
  /** The capsule written for a raw CMK. */
  capsuleOut: string | null;
  deleted: boolean;
}

/** Raw bytes or base64 text of exactly `length` bytes; undefined otherwise. */
function rawOrBase64(data: Uint8Array, length: number): Uint8Array | undefined {
  if (data.length === length) return Uint8Array.from(data);
  const text = Buffer.from(data).toString('latin1').trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  if (bytes.length === length && Buffer.from(bytes).toString('base64') === text) return bytes;
  bytes.fill(0);
  return undefined;
}

export function detectLegacyKind(data: Uint8Array): LegacyKind | undefined {
  let i = 0;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09)) i++;
  if (data[i] === 0x7b /* { */) return 'secret-identity';
  if (LEGACY_NTRU_SECRET_KEYS.some((k) => k.secretKey === data.length)) return 'ntru-secret-key';
  for (const [length, kind] of [
    [CMK_LENGTH, 'csfle-master-key'],
    [LEGACY_MASTER_KEY_LENGTH, 'master-key-32'],
  ] as const) {
    const bytes = rawOrBase64(data, length);
    if (bytes !== undefined) {
      bytes.fill(0);
      return kind;
    }
  }
  return undefined;
}

function publicKeyFor(suite: string, expectedLength: number, given: Uint8Array | undefined): Uint8Array {
  if (given === undefined) {
    throw new LegacyKeyUnsupportedError(
      `a raw ${suite} secret key does not contain its public key, so it cannot become an identity on its own; the file was left untouched`,
      { hint: `pass the matching public key with --public <file> (raw ${expectedLength} bytes, or a .pub.json)` },
    );
  }
  if (given.length === expectedLength) return Uint8Array.from(given);
  const pub = decodePublicIdentity(given);
  if (pub.suite !== suite) throw new UsageError(`--public is a ${pub.suite} identity, but the secret key is ${suite}`);
  return pub.publicKey;
}

/** Assemble an identity from a raw NTRU key pair and a fresh signing key; decoding its encoding checks the pair. */
function identityFromNtru(name: string, secretKey: Uint8Array, publicKeyInput: Uint8Array | undefined): SecretIdentity {
  const spec = LEGACY_NTRU_SECRET_KEYS.find((k) => k.secretKey === secretKey.length)!;
  const publicKey = publicKeyFor(spec.suite, spec.publicKey, publicKeyInput);
  getSuite(spec.suite); // UnknownSuiteError / NativeAddonMissingError when the NTRU addon is not built
  const signerSeed = crypto.getRandomValues(new Uint8Array(32));
  const signer = ml_dsa87.keygen(signerSeed);
  const draft: SecretIdentity = {
    name,
    suite: spec.suite,
    kid: computeKid(spec.suite, publicKey),
    publicKey,
    signer: { algorithm: SIGNATURE_ALGORITHM, kid: computeKid(SIGNATURE_ALGORITHM, signer.publicKey), publicKey: signer.publicKey },
    kemSeed: undefined,
    kemSecretKey: Uint8Array.from(secretKey),
    signerSeed,
    signerSecretKey: signer.secretKey,
  };
  const text = encodeSecretIdentity(draft);
  wipeSecretIdentity(draft);
  return decodeSecretIdentity(text);
}

/**
 * Import the secret in `path` into the keychain, verify it, then securely delete the file.
 * @example
 * const r = await migrateLegacySecret('old/default.secret.json', { keychain: new OsKeychain() });
 */
export async function migrateLegacySecret(path: string, options: MigrateOptions): Promise<MigrationResult> {
  // A read-only source (the environment opt-in) answers reads, so "already present" would look true, and the file
  // (perhaps the very file it reads) would be deleted: refuse before anything happens.
  if (options.keychain.readOnly) {
    throw new KeychainReadOnlyError(`keys migrate: ${options.keychain.description} is read-only; ${path} was left untouched`, {
      hint: 'unset MONGO_CAPSULE_SECRET_IDENTITY and MONGO_CAPSULE_SECRET_IDENTITY_FILE to migrate into the OS keychain',
    });
  }
  if (!options.keepFile) await checkDeletable(path);
  const data = await readFileBounded(path, INPUT_LIMITS.keyFile, 'a key file');
  try {
    const kind = detectLegacyKind(data);
    if (kind === undefined) {
      throw new LegacyKeyUnsupportedError(`${path} is not a key file mongo-capsule knows (${data.length} bytes); it was left untouched`, {
        hint: 'supported: a secret identity file (keygen --secret-out), a raw NTRU-HPS-4096-821 / NTRU-HRSS-701 secret key, or a 96-byte CSFLE local master key',
      });
    }
    if (kind === 'master-key-32') {
      throw new LegacyKeyUnsupportedError(
        `${path} holds a 32-byte symmetric master key (the original master-key design); no capsule is sealed to it and it cannot become a KEM identity, so it was left untouched`,
        { hint: 'create a new identity with `mongo-capsule init`; keep the old key wherever the data it encrypted still needs it, and delete it once that data is re-encrypted' },
      );
    }
    if (kind === 'csfle-master-key') return await migrateRawCmk(path, data, options);

    let identity: SecretIdentity;
    if (kind === 'secret-identity') {
      identity = decodeSecretIdentity(data);
      if (options.name !== undefined && options.name !== identity.name) {
        wipeSecretIdentity(identity);
        throw new UsageError(`${path} holds identity ${JSON.stringify(identity.name)}, not ${JSON.stringify(options.name)}`, 'omit --name, or pass the name stored in the file');
      }
    } else {
      const name = options.name ?? 'default';
      checkIdentityName('migrate', name);
      identity = identityFromNtru(name, data, options.publicKey);
    }
    try {
      const alreadyPresent = await withIdentityLock(options.keychain, identity.name, () => storeAndVerify(options.keychain, identity, kind === 'secret-identity'));
      if (!options.keepFile) await secureDelete(path);
      return { kind, name: identity.name, publicIdentity: toPublicIdentity(identity), alreadyPresent, capsuleOut: null, deleted: !options.keepFile };
    } finally {
      wipeSecretIdentity(identity);
    }
  } finally {
    data.fill(0);
  }
}

/** Store `identity` under its name unless that entry already holds the same KEM key; then read back and compare. */
async function storeAndVerify(keychain: Keychain, identity: SecretIdentity, wholeIdentity: boolean): Promise<boolean> {
  const account = slotAccount(identity.name, 'active');
  for (const slot of ['next', 'prev'] as const) {
    if (await keychain.exists(slotAccount(identity.name, slot))) {
      throw new AlreadyInitializedError(identity.name, { hint: `a rotation of ${identity.name} is unfinished: finish it with \`mongo-capsule keys rotate\` first` });
    }
  }
  const existing = await keychain.retrieve(account);
  if (existing !== undefined) {
    let same = false;
    try {
      const held = decodeSecretIdentity(existing);
      // A secret identity file must match whole (its signing key too: deleting the file would lose a different
      // one). A raw NTRU key has no signing key; a rerun generates another, so only its KEM key must match.
      same =
        held.kid === identity.kid &&
        equalBytes(held.kemSecretKey, identity.kemSecretKey) &&
        (!wholeIdentity || (held.signer.kid === identity.signer.kid && equalBytes(held.signerSeed, identity.signerSeed)));
      wipeSecretIdentity(held);
    } catch {
      same = false;
    } finally {
      existing.fill(0);
    }
    if (!same) {
      throw new AlreadyInitializedError(identity.name, {
        hint: 'the keychain holds a different key under that name: migrate under another name (--name), or delete that identity first if it is unused',
      });
    }
    return true;
  }
  const expected = new TextEncoder().encode(encodeSecretIdentity(identity));
  let back: Uint8Array | undefined;
  try {
    await keychain.store(account, expected);
    back = await keychain.retrieve(account);
    if (back === undefined || !equalBytes(back, expected)) {
      await keychain.delete(account).catch(() => undefined);
      throw new MigrationVerifyError(`the keychain did not return identity ${JSON.stringify(identity.name)} as written; the file was kept`, {
        hint: `check the keychain (${keychain.description}) and rerun the migration`,
      });
    }
    return false;
  } finally {
    expected.fill(0);
    back?.fill(0);
  }
}

async function migrateRawCmk(path: string, data: Uint8Array, options: MigrateOptions): Promise<MigrationResult> {
  const name = options.name ?? 'default';
  checkIdentityName('migrate', name);
  if (options.capsuleOut === undefined) {
    throw new LegacyKeyUnsupportedError(`${path} holds a raw 96-byte CSFLE local master key; it is sealed into a capsule, not stored in the keychain`, {
      hint: `pass --capsule-out <file> to seal it for identity ${name} (the file is deleted once the capsule opens again)`,
    });
  }
  const cmk = rawOrBase64(data, CMK_LENGTH)!;
  const manager = new KeyManager({ keychain: options.keychain, cacheTtlMs: 0, ...(options.now ? { now: options.now } : {}) });
  let opened: Uint8Array | undefined;
  try {
    const identity = await manager.getSecretIdentity(name);
    const capsule = wrapKey(cmk, identity, {
      name: options.capsuleName ?? name,
      signer: identity,
      createdAt: new Date((options.now ?? Date.now)()),
    });
    const publicIdentity = toPublicIdentity(identity);
    manager.clearCache();
    parseCapsule(capsule);
    await writeFileAtomic(options.capsuleOut, capsule, { mode: 0o644 });
    // Open the capsule with what the keychain holds now, from the file just written.
    opened = await manager.unwrap(await readFileBounded(options.capsuleOut, INPUT_LIMITS.capsule, 'a capsule'), name);
    if (!equalBytes(opened, cmk)) {
      throw new MigrationVerifyError(`the capsule written to ${options.capsuleOut} does not open to the key in ${path}; the key file was kept`);
    }
    if (!options.keepFile) await secureDelete(path);
    return { kind: 'csfle-master-key', name, publicIdentity, alreadyPresent: false, capsuleOut: options.capsuleOut, deleted: !options.keepFile };
  } finally {
    cmk.fill(0);
    opened?.fill(0);
    manager.clearCache();
  }
}
