/**
 * KEM suite registry.
 *
 * Every key-encapsulation mechanism the capsule format can use satisfies one `KemSuite` shape and is
 * selected by a stable string id that is stored in every capsule and every identity file. Ids never change
 * meaning: a new parameter set or construction gets a new id.
 *
 * Caveats:
 * - Decapsulation with the wrong secret key does not fail for ML-KEM, X-Wing or NTRU (implicit rejection):
 *   it returns an unrelated shared secret. The capsule layer detects this with its AEAD tag.
 * - Suites backed by the native addon report `available() === false` when it is not built, and throw
 *   `NativeAddonMissingError` from every operation.
 */
import { InvalidArgumentError, UnknownSuiteError } from '../errors.ts';

export interface KemLengths {
  readonly publicKey: number;
  readonly secretKey: number;
  readonly cipherText: number;
  readonly sharedSecret: number;
  /** Length of the seed that `keygen(seed)` accepts; absent when the suite has no deterministic keygen. */
  readonly seed?: number;
  /** Length of the randomness that `encapsulate(pk, randomness)` accepts; absent when not supported. */
  readonly encapsRandomness?: number;
}

export interface KemKeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export interface Encapsulation {
  cipherText: Uint8Array;
  sharedSecret: Uint8Array;
}

export interface KemSuite {
  /** Stable id stored in capsules and identity files, e.g. `ml-kem-1024`. */
  readonly id: string;
  /** One line for humans: algorithm, standard, security level. */
  readonly description: string;
  /** NIST security category (1, 3 or 5). */
  readonly nistLevel: 1 | 3 | 5;
  readonly lengths: KemLengths;
  /** False when the implementation cannot run in this process (for example the native addon is not built). */
  available(): boolean;
  /** A new key pair from the OS CSPRNG, or deterministically from `seed` when the suite supports it. */
  keygen(seed?: Uint8Array): KemKeyPair;
  /** Encapsulate to `publicKey`. `randomness` exists for test vectors only; production callers omit it. */
  encapsulate(publicKey: Uint8Array, randomness?: Uint8Array): Encapsulation;
  /** Decapsulate. Never throws for a wrong key (implicit rejection); throws for wrong input lengths. */
  decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array;
}

const registry = new Map<string, KemSuite>();

/** The suite used when none is given. */
export const DEFAULT_SUITE = 'ml-kem-1024';

/** Add a suite to the registry. Ids are unique; registering the same id twice is a programming error. */
export function registerSuite(suite: KemSuite): void {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(suite.id)) {
    throw new InvalidArgumentError(`registerSuite: invalid suite id ${JSON.stringify(suite.id)}`);
  }
  if (registry.has(suite.id)) {
    throw new InvalidArgumentError(`registerSuite: suite ${suite.id} is already registered`);
  }
  registry.set(suite.id, suite);
}

/**
 * Look a suite up by id.
 * @example
 * const kem = getSuite('ml-kem-1024');
 * const { publicKey, secretKey } = kem.keygen();
 */
export function getSuite(id: string): KemSuite {
  const suite = registry.get(id);
  if (suite === undefined) throw new UnknownSuiteError(id, listSuiteIds());
  return suite;
}

/** Whether `id` is registered. A registered suite may still be unusable here: see `suiteAvailable`. */
export function hasSuite(id: string): boolean {
  return registry.has(id);
}

/**
 * Whether suite `id` is registered AND can run in this process (the NTRU suites need the native addon).
 * Guard on this, not on `hasSuite`, before using a suite.
 */
export function suiteAvailable(id: string): boolean {
  return registry.get(id)?.available() ?? false;
}

/** All registered suite ids, in registration order. */
export function listSuiteIds(): string[] {
  return [...registry.keys()];
}

export function listSuites(): KemSuite[] {
  return [...registry.values()];
}

/** Boundary check used by every suite: a byte array of exactly `length` bytes. */
export function checkBytes(op: string, what: string, value: unknown, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(`${op}: ${what} must be a Uint8Array, got ${value === null ? 'null' : typeof value}`);
  }
  if (length !== undefined && value.length !== length) {
    throw new InvalidArgumentError(`${op}: ${what} must be ${length} bytes, got ${value.length}`);
  }
}
