/**
 * Where capsules live, as seen by KEM-key rotation: a directory of capsule files, the `capsules`
 * collection of a cluster, or anything else that can list capsules and swap one atomically.
 */
export interface StoredCapsule {
  name: string;
  bytes: Uint8Array;
}

/**
 * What binds the recipient of a re-sealed capsule to its CMK (crypto/recipients.ts): the recipient's public
 * identity text and its recipient tag. Stores that keep several recipients per capsule (a cluster's capsule
 * collection) keep it beside the capsule; a directory of capsule files has no use for it.
 */
export interface RecipientBinding {
  publicIdentity: string;
  tag: Uint8Array;
}

export interface CapsuleRepository {
  /** Human-readable description for progress and errors (never contains credentials). */
  readonly description: string;
  /** Every capsule currently stored. */
  list(): Promise<StoredCapsule[]>;
  /**
   * Replace capsule `name` with `next` if and only if its stored bytes still equal `expected`.
   * Resolves false (and changes nothing) when it no longer does.
   */
  compareAndSwap(name: string, expected: Uint8Array, next: Uint8Array, binding?: RecipientBinding): Promise<boolean>;
}
