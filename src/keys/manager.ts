/**
 * The key manager: the lifecycle of secret identities in a keychain.
 *
 * - initialize / isInitialized / delete / getPublicIdentity, as in the original master-key design.
 * - getSecretIdentity keeps decoded identities in memory for `cacheTtlMs` (absolute, counted from the
 *   keychain read, so another process's rotation or deletion is noticed within one TTL); expired and
 *   cleared entries are zeroized. Expiry is checked against the injectable clock on every access, and an
 *   unref'd real-time timer zeroizes an entry nobody touches again.
 * - unwrap opens a capsule with whichever slot of the identity holds the capsule's kid, so applications keep
 *   working while a rotation is half done.
 * - rotate replaces "regenerate" (which destroyed the only key): a new identity goes to a pending slot, every
 *   capsule sealed for the old key is re-sealed for the new one (compare-and-swap), the new key is promoted
 *   and only then is the old key removed. See `rotate` for the slots and the invariant.
 */
import {
  checkIdentityName,
  decodeSecretIdentity,
  DEFAULT_SUITE,
  encodePublicIdentity,
  recipientTag,
  encodeSecretIdentity,
  generateIdentity,
  parseCapsule,
  toPublicIdentity,
  unwrapKey,
  verifyCapsule,
  wipeSecretIdentity,
  wrapKey,
  type CapsuleHeader,
  type PublicIdentity,
  type SecretIdentity,
} from '../crypto/index.ts';
import {
  AlreadyInitializedError,
  CapsuleAuthError,
  CapsuleFormatError,
  InvalidArgumentError,
  KeychainEntryCorruptError,
  MongoCapsuleError,
  NotInitializedError,
  SignatureInvalidError,
  SignerUnknownError,
  isMongoCapsuleError,
} from '../errors.ts';
import type { CapsuleRepository, RecipientBinding } from './capsule-repository.ts';
import { withIdentityLock } from './identity-lock.ts';
import { equalBytes, type Keychain } from './keychain.ts';
import { defaultKeychain } from './secret-source.ts';

/** Milliseconds since the epoch; injectable so tests can move time. */
export type Clock = () => number;

export const DEFAULT_CACHE_TTL_MS = 5 * 60_000;

export interface KeyManagerOptions {
  /**
   * Where identities live. Default: the explicit opt-in MONGO_CAPSULE_SECRET_IDENTITY_FILE or
   * MONGO_CAPSULE_SECRET_IDENTITY when one is set in `env` (read-only, with a warning, as in the CLI),
   * else the OS keychain (service `mongo-capsule`).
   */
  keychain?: Keychain;
  /** Where the default keychain looks for the opt-in variables (default `process.env`); unused with `keychain`. */
  env?: NodeJS.ProcessEnv;
  /** How long a decoded identity stays in memory after a keychain read; 0 disables the cache. Default 5 min. */
  cacheTtlMs?: number;
  /** Clock for cache expiry and for the creation time of re-sealed capsules (default `Date.now`). */
  now?: Clock;
  /**
   * Public identities whose signing keys are trusted on every unwrap, besides the identity's own (for capsules
   * another owner signed). A capsule signed by any other key is refused.
   */
  trustedSigners?: readonly PublicIdentity[];
  /**
   * UNSAFE: also open unsigned capsules. Anyone who can write the capsule store and has the public file can
   * seal a CMK of their choosing in an unsigned capsule; only for a store nobody else can write. Warns on use.
   */
  allowUnsigned?: boolean;
  /** Where warnings go (an unsigned capsule opened under `allowUnsigned`); default `console.warn`. */
  onWarning?: (message: string) => void;
}

/**
 * Keychain slots of one identity. `active` is the identity everyone uses; `next` holds the new identity while
 * a rotation re-seals capsules; `prev` holds the old one from promotion until it is retired.
 */
export type Slot = 'active' | 'next' | 'prev';
const SLOTS: readonly Slot[] = ['active', 'next', 'prev'];

/** The keychain account of a slot: `<name>`, `<name>~next`, `<name>~prev` ('~' never occurs in names). */
export function slotAccount(name: string, slot: Slot): string {
  return slot === 'active' ? name : `${name}~${slot}`;
}

export interface UnwrapWithManagerOptions {
  /** Signer keys trusted besides the identity itself (whose own signer key is always trusted). */
  signers?: readonly PublicIdentity[];
  /** Reject unsigned capsules even when `allowUnsigned` is set on the manager. */
  requireSignature?: boolean;
  /** UNSAFE: open this capsule even when unsigned (see KeyManagerOptions.allowUnsigned). Warns on use. */
  allowUnsigned?: boolean;
}

export interface RotateOptions {
  /** Suite of the new KEM key (default: the old identity's). Ignored when resuming a started rotation. */
  suite?: string;
  /** Signers trusted when opening capsules besides the old and new identity (for capsules others sealed). */
  signers?: readonly PublicIdentity[];
  /** How often to re-list a repository whose capsules keep changing under us (default 5). */
  maxAttempts?: number;
  /** UNSAFE: also re-seal unsigned capsules (they stay unsigned). Default: an unsigned capsule stops the rotation before it starts. */
  allowUnsigned?: boolean;
  /**
   * Called once the new key is the active one and before the old key is retired, with the new public identity:
   * the moment to publish it (write the `.pub.json` seeders read). If it throws, the rotation stops there with
   * both keys still held; running it again resumes and calls it again.
   */
  onPromoted?: (publicIdentity: PublicIdentity) => Promise<void>;
  /**
   * Asked after the last sweep whether the old key may be retired now; when it answers false the old key stays
   * in the `prev` slot (capsules sealed for it still open) and running `rotate` again asks again. `current` counts
   * the capsules found sealed for the new key in `repositories` by this call. Default: retire only when
   * `current >= 1`, since a sweep that found nothing of the identity's proves nothing about where its capsules are.
   */
  retire?: (facts: { rewrapped: number; current: number }) => boolean | Promise<boolean>;
}

export interface RotationReport {
  name: string;
  oldKid: string | null;
  newKid: string;
  /** True when this call continued a rotation that an earlier call started. */
  resumed: boolean;
  /** A slot left damaged by an interrupted keychain write, whose key was held elsewhere or never used. */
  discardedDamagedSlot: Slot | null;
  /** Capsules re-sealed by this call, as `<repository>: <capsule>`. */
  rewrapped: string[];
  /** Capsules sealed for the new key when the rotation finished (those re-sealed now included). */
  current: number;
  /** Capsules sealed for other keys (other identities): left alone. */
  untouched: number;
  /** The new public identity (write it to `<name>.pub.json` so new capsules are sealed for it). */
  publicIdentity: PublicIdentity;
  /** False when `retire` declined: the old key is kept in the `prev` slot and the rotation is still pending. */
  retired: boolean;
}

export interface KeyStatus {
  name: string;
  initialized: boolean;
  suite: string | null;
  kid: string | null;
  signerKid: string | null;
  /** A rotation was interrupted: `keys rotate` finishes it. */
  rotationPending: boolean;
  slots: Record<Slot, string | null>;
}

interface CacheEntry {
  identity: SecretIdentity;
  expiresAt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class KeyManager {
  readonly keychain: Keychain;
  readonly cacheTtlMs: number;
  readonly #now: Clock;
  readonly #trustedSigners: readonly PublicIdentity[];
  readonly #allowUnsigned: boolean;
  readonly #warn: (message: string) => void;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #loading = new Map<string, Promise<SecretIdentity | undefined>>();
  /** Bumped by every eviction of an account; a read that started before the bump does not fill the cache. */
  readonly #generation = new Map<string, number>();

  constructor(options: KeyManagerOptions = {}) {
    this.keychain = options.keychain ?? defaultKeychain(options.env);
    this.cacheTtlMs = options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
    // The upper bound is what a Node timer can represent (about 24.8 days); longer delays would fire at once.
    if (!Number.isInteger(this.cacheTtlMs) || this.cacheTtlMs < 0 || this.cacheTtlMs > 2 ** 31 - 1) {
      throw new InvalidArgumentError('KeyManager: cacheTtlMs must be an integer from 0 to 2147483647');
    }
    this.#now = options.now ?? Date.now;
    this.#trustedSigners = [...(options.trustedSigners ?? [])];
    this.#allowUnsigned = options.allowUnsigned === true;
    this.#warn = options.onWarning ?? ((m) => console.warn(m));
  }

  /**
   * Create identity `name` (KEM key pair of `suite` + ML-DSA-87 signing key pair) and store its secret half
   * in the keychain. Refuses when the name is already taken, including by an unfinished rotation.
   * @example
   * const pub = await new KeyManager().initialize('default');
   * await writeFile('default.pub.json', encodePublicIdentity(pub));
   */
  async initialize(name = 'default', suite: string = DEFAULT_SUITE): Promise<PublicIdentity> {
    checkIdentityName('initialize', name);
    return withIdentityLock(this.keychain, name, () => this.#initialize(name, suite));
  }

  async #initialize(name: string, suite: string): Promise<PublicIdentity> {
    for (const slot of SLOTS) {
      if (await this.keychain.exists(slotAccount(name, slot))) {
        throw new AlreadyInitializedError(name, slot === 'active' ? {} : { hint: `a rotation of ${name} is unfinished: \`mongo-capsule keys status --name ${name}\` prints the \`keys rotate\` command (with every --capsules directory and --cluster) that finishes it` });
      }
    }
    const identity = generateIdentity(suite, { name });
    try {
      await this.#storeVerified(slotAccount(name, 'active'), identity);
      return toPublicIdentity(identity);
    } finally {
      wipeSecretIdentity(identity);
    }
  }

  async isInitialized(name = 'default'): Promise<boolean> {
    checkIdentityName('isInitialized', name);
    return this.keychain.exists(slotAccount(name, 'active'));
  }

  /**
   * The secret identity, from the cache or the keychain. The object is borrowed from the cache: do not wipe
   * it and do not keep it; it is zeroized when its cache entry expires, on `clearCache`, `delete` and `rotate`, and
   * when another process replaced that key in the keychain (an unwrap that misses checks). A capsule sealed for
   * another key wipes nothing.
   * Callers that need an identity of their own use `loadSecretIdentity` (secret-source.ts).
   */
  async getSecretIdentity(name = 'default'): Promise<SecretIdentity> {
    checkIdentityName('getSecretIdentity', name);
    const id = await this.#cached(name, 'active');
    if (id === undefined) throw new NotInitializedError(name);
    return id;
  }

  /**
   * The kids of the keys identity `name` holds (active, and an unfinished rotation's other slots): public facts,
   * from the cache or the keychain. Empty when the identity does not exist. A damaged slot is left out.
   */
  async heldKids(name = 'default'): Promise<string[]> {
    checkIdentityName('heldKids', name);
    const kids: string[] = [];
    for (const slot of SLOTS) {
      try {
        const id = await this.#cached(name, slot);
        if (id !== undefined) kids.push(id.kid);
      } catch (e) {
        if (!(e instanceof KeychainEntryCorruptError)) throw e;
      }
    }
    return kids;
  }

  async getPublicIdentity(name = 'default'): Promise<PublicIdentity> {
    return toPublicIdentity(await this.getSecretIdentity(name));
  }

  /** Zeroize and forget every cached identity. */
  clearCache(): void {
    for (const account of [...this.#cache.keys()]) this.#evict(account);
  }

  /**
   * Remove identity `name` from the keychain, every slot of it. Capsules sealed only for it become
   * unreadable: the CLI asks for `--yes`. Throws NotInitializedError when there was nothing to delete.
   */
  async delete(name = 'default'): Promise<void> {
    checkIdentityName('delete', name);
    return withIdentityLock(this.keychain, name, () => this.#delete(name));
  }

  async #delete(name: string): Promise<void> {
    let removed = false;
    for (const slot of SLOTS) {
      const account = slotAccount(name, slot);
      this.#evict(account);
      if (await this.keychain.delete(account)) removed = true;
    }
    if (!removed) throw new NotInitializedError(name);
  }

  /** Non-secret facts about identity `name` for `keys status`. */
  async status(name = 'default'): Promise<KeyStatus> {
    checkIdentityName('status', name);
    const slots = { active: null, next: null, prev: null } as Record<Slot, string | null>;
    let active: PublicIdentity | undefined;
    for (const slot of SLOTS) {
      const id = await this.#read(slotAccount(name, slot), name);
      if (id === undefined) continue;
      slots[slot] = id.kid;
      if (slot === 'active') active = toPublicIdentity(id);
      wipeSecretIdentity(id);
    }
    return {
      name,
      initialized: active !== undefined,
      suite: active?.suite ?? null,
      kid: active?.kid ?? null,
      signerKid: active?.signer.kid ?? null,
      rotationPending: slots.next !== null || slots.prev !== null,
      slots,
    };
  }

  /**
   * Verify and open a capsule with identity `name`; returns the 96-byte CMK (wipe it when done).
   * The slot whose kid the capsule names is used, so capsules already re-sealed by a running rotation open
   * too. The capsule must be signed by the identity's own signer key, a `trustedSigners` key or one of
   * `signers`: an unsigned capsule is refused (SignatureInvalidError) unless `allowUnsigned` is set, and one
   * signed by any other key too (SignerUnknownError), since anyone with the public file can seal a CMK.
   * @example
   * const cmk = await keys.unwrap(capsuleBytes, 'default');
   * try { await openEncryptedClient(cmk); } finally { cmk.fill(0); }
   */
  async unwrap(capsule: Uint8Array, name = 'default', options: UnwrapWithManagerOptions = {}): Promise<Uint8Array> {
    checkIdentityName('unwrap', name);
    const { header } = parseCapsule(capsule);
    const first = await this.#unwrapWithSlots(capsule, header, name, options);
    if (first.cmk !== undefined) return first.cmk;
    // A cached identity can be older than the capsule: another process may have rotated the key since. Read the
    // keychain again, once, before saying the key is not held. Only slots whose key did change are dropped from the
    // cache: a capsule for someone else's key (another recipient's) must not wipe identities callers borrowed.
    if (!(await this.#dropChangedSlots(name))) throw notHeld(header, name, first.held);
    const again = await this.#unwrapWithSlots(capsule, header, name, options);
    if (again.cmk !== undefined) return again.cmk;
    throw notHeld(header, name, again.held);
  }

  /**
   * Reads every slot of `name` from the keychain and evicts the cached ones that no longer match it (another
   * process rotated or replaced the key). True when something changed and was evicted.
   */
  async #dropChangedSlots(name: string): Promise<boolean> {
    let changed = false;
    for (const slot of SLOTS) {
      const account = slotAccount(name, slot);
      const cached = this.#cache.get(account)?.identity;
      let fresh: SecretIdentity | undefined;
      try {
        fresh = await this.#read(account, name);
      } catch (e) {
        if (!(e instanceof KeychainEntryCorruptError)) throw e;
        this.#evict(account);
        changed = true;
        continue;
      }
      try {
        if (cached === undefined ? fresh !== undefined : fresh?.kid !== cached.kid) {
          this.#evict(account);
          changed = true;
        }
      } finally {
        if (fresh !== undefined) wipeSecretIdentity(fresh);
      }
    }
    return changed;
  }

  /** Opens the capsule with the slot holding its kid; `cmk` undefined (and the kids held) when none does. */
  async #unwrapWithSlots(capsule: Uint8Array, header: CapsuleHeader, name: string, options: UnwrapWithManagerOptions): Promise<{ cmk?: Uint8Array; held: string[] }> {
    const held: string[] = [];
    let damaged: unknown;
    for (const slot of SLOTS) {
      let id: SecretIdentity | undefined;
      try {
        id = await this.#cached(name, slot);
      } catch (e) {
        // A slot torn by an interrupted rotation: the capsule may still be for a key another slot holds.
        if (!(e instanceof KeychainEntryCorruptError)) throw e;
        damaged ??= e;
        continue;
      }
      if (id === undefined) {
        if (slot === 'active' && damaged === undefined) throw new NotInitializedError(name);
        continue;
      }
      if (id.kid === header.kid) {
        if (!header.signed) this.#checkUnsignedAllowed(header, options.requireSignature !== true && (options.allowUnsigned ?? this.#allowUnsigned));
        const cmk = withTrustHint(header, () => unwrapKey(capsule, id, { signers: [...this.#trustedSigners, ...(options.signers ?? [])] }));
        return { cmk, held };
      }
      held.push(id.kid);
    }
    if (damaged !== undefined) throw damaged;
    return { held };
  }

  /** Throws for an unsigned capsule unless the caller opted in, and then warns. */
  #checkUnsignedAllowed(header: CapsuleHeader, allowed: boolean): void {
    if (!allowed) throw unsignedCapsule(header);
    this.#warn(`warning: capsule ${JSON.stringify(header.name)} is UNSIGNED and was opened only because unsigned capsules are allowed (allowUnsigned): anyone who can write the capsule store could have chosen its CMK`);
  }

  /**
   * Before a rotation touches the keychain: every capsule sealed for a key this identity holds must be signed
   * by a trusted key (or the caller allowed unsigned ones), so that no substituted CMK gets re-sealed and vouched for.
   */
  async #checkRotationSignatures(name: string, repositories: readonly CapsuleRepository[], options: RotateOptions): Promise<void> {
    const held: SecretIdentity[] = [];
    try {
      for (const slot of SLOTS) {
        try {
          const id = await this.#read(slotAccount(name, slot), name);
          if (id !== undefined) held.push(id);
        } catch (e) {
          // A torn slot is the rotation's own business (it knows which ones it may discard).
          if (!(e instanceof KeychainEntryCorruptError)) throw e;
        }
      }
      const kids = new Set(held.map((id) => id.kid));
      const trusted = [...held.map((id) => toPublicIdentity(id)), ...this.#trustedSigners, ...(options.signers ?? [])];
      const allowUnsigned = options.allowUnsigned ?? this.#allowUnsigned;
      for (const repo of repositories) {
        for (const stored of await repo.list()) {
          let header: CapsuleHeader;
          try {
            header = parseCapsule(stored.bytes).header;
          } catch {
            continue; // the rotation itself reports unreadable capsules, with their location
          }
          if (!kids.has(header.kid)) continue;
          try {
            if (!header.signed) this.#checkUnsignedAllowed(header, allowUnsigned);
            else withTrustHint(header, () => verifyCapsule(stored.bytes, trusted));
          } catch (e) {
            if (isMongoCapsuleError(e)) {
              throw new (e.constructor as typeof SignatureInvalidError)(`${repo.description}: ${e.message}; nothing was changed`, { ...(e.hint ? { hint: e.hint } : {}), cause: e });
            }
            throw e;
          }
        }
      }
    } finally {
      for (const id of held) wipeSecretIdentity(id);
    }
  }

  /**
   * Rotate the KEM and signing keys of identity `name` without ever losing access to a capsule.
   *
   * Slots: `active` (A, the current identity), `next` (P, the new one), `prev` (A again, kept during promotion).
   *   1. generate P and store it in `next` (read back before going on);
   *   2. for every capsule in `repositories` sealed for A: open it with A, seal the CMK for P (signed by P when
   *      the original was signed), check that P opens it, compare-and-swap it in;
   *   3. copy A to `prev`, write P to `active`, delete `next`;
   *   4. sweep the repositories once more (capsules sealed for A meanwhile), then, if `options.retire` agrees
 *      (by default: at least one capsule sealed for P was found), delete `prev`: A is retired. Otherwise A stays
 *      in `prev` and a later call (with more repositories) finishes the rotation.
 * A fresh rotation that fails before its first compare-and-swap deletes P again: the keychain is as it was.
   * Invariant: every capsule is sealed for A or P, and from step 1 until A's capsules are gone, both A and P are
   * in some slot. A crash at any point leaves a state that the next call recognises from the slots and finishes;
   * such a call only finishes the interrupted rotation (`resumed: true`); call again to rotate again.
   * Capsules not in `repositories` that are sealed for A become unreadable when A is retired.
   */
  async rotate(name: string, repositories: readonly CapsuleRepository[], options: RotateOptions = {}): Promise<RotationReport> {
    checkIdentityName('rotate', name);
    return withIdentityLock(this.keychain, name, async () => {
      await this.#checkRotationSignatures(name, repositories, options);
      return this.#rotate(name, repositories, options);
    });
  }

  async #rotate(name: string, repositories: readonly CapsuleRepository[], options: RotateOptions): Promise<RotationReport> {
    for (const slot of SLOTS) this.#evict(slotAccount(name, slot));
    const owned: SecretIdentity[] = [];
    const keep = (id: SecretIdentity | undefined) => {
      if (id !== undefined) owned.push(id);
      return id;
    };
    const report = { rewrapped: [] as string[], current: 0, untouched: 0, attempted: 0 };
    try {
      const slot = async (which: Slot) => {
        try {
          return { id: keep(await this.#read(slotAccount(name, which), name)), damaged: false };
        } catch (e) {
          if (e instanceof KeychainEntryCorruptError) return { id: undefined, damaged: true, error: e };
          throw e;
        }
      };
      const a = await slot('active');
      const n = await slot('next');
      const p = await slot('prev');
      // A crash in the middle of a keychain write can leave that one slot damaged. Each case below is a slot
      // that was being written and whose key is held by another slot or was not yet used for any capsule.
      let discardedDamagedSlot: Slot | null = null;
      if (n.damaged && !p.damaged && p.id === undefined && a.id !== undefined) {
        // Interrupted while storing the new key (step 1): it was read back before any capsule was sealed for it.
        await this.keychain.delete(slotAccount(name, 'next'));
        discardedDamagedSlot = 'next';
      } else if (p.damaged && a.id !== undefined && n.id !== undefined && a.id.kid !== n.id.kid) {
        // Interrupted while copying the old key to `prev` (step 3): `active` still holds it.
        discardedDamagedSlot = 'prev';
      } else if (a.damaged && n.id !== undefined && p.id !== undefined) {
        // Interrupted while writing the new key to `active` (step 3): `next` and `prev` hold both keys.
        discardedDamagedSlot = 'active';
      } else {
        for (const s of [a, n, p]) if (s.damaged) throw s.error!;
      }
      const next = n.id;
      const prev = p.id;
      const active = a.id;

      let oldId: SecretIdentity | undefined;
      let newId: SecretIdentity;
      let resumed = true;
      if (next === undefined && prev === undefined) {
        if (active === undefined) throw new NotInitializedError(name);
        oldId = active;
        newId = keep(generateIdentity(options.suite ?? active.suite, { name }))!;
        await this.#storeVerified(slotAccount(name, 'next'), newId);
        resumed = false;
      } else if (next !== undefined) {
        newId = next;
        if (active !== undefined && active.kid !== next.kid) {
          oldId = active;
          if (prev !== undefined && prev.kid !== active.kid) {
            throw inconsistent(name, 'the retired-key slot holds a key that is neither the current nor the new one');
          }
        } else {
          // Promotion started: `prev` must hold the old key (it is written before `active` is replaced).
          if (prev === undefined) throw inconsistent(name, 'the new key was promoted but the old key was not kept');
          oldId = prev;
        }
      } else {
        if (active === undefined) throw inconsistent(name, 'only the retired-key slot is left');
        oldId = prev;
        newId = active;
      }

      const sweep = async () => {
        report.current = 0;
        report.untouched = 0;
        for (const repo of repositories) await this.#rewrapRepository(repo, oldId, newId, options, report);
      };
      try {
        await sweep();
      } catch (e) {
        // Nothing was sealed for the new key yet (no swap was even tried): drop it, so that a failed start leaves
        // the keychain as it was instead of a pending rotation nobody was told about.
        if (!resumed && report.attempted === 0) await this.keychain.delete(slotAccount(name, 'next'));
        throw e;
      }
      if (active === undefined || active.kid !== newId.kid) {
        if (oldId !== undefined && (prev === undefined || prev.kid !== oldId.kid)) await this.#storeVerified(slotAccount(name, 'prev'), oldId);
        await this.#storeVerified(slotAccount(name, 'active'), newId);
      }
      await this.keychain.delete(slotAccount(name, 'next'));
      // Published before the old key is retired: a seeder that still read the old public file after retirement
      // would seal capsules nobody can open.
      await options.onPromoted?.(toPublicIdentity(newId));
      if (oldId !== undefined) await sweep();
      const facts = { rewrapped: report.rewrapped.length, current: report.current };
      const retired = oldId === undefined || (await (options.retire ?? ((f) => f.current >= 1))(facts));
      if (retired) await this.keychain.delete(slotAccount(name, 'prev'));
      return {
        name,
        oldKid: oldId?.kid ?? null,
        newKid: newId.kid,
        resumed,
        discardedDamagedSlot,
        rewrapped: report.rewrapped,
        current: report.current,
        untouched: report.untouched,
        publicIdentity: toPublicIdentity(newId),
        retired,
      };
    } finally {
      for (const id of owned) wipeSecretIdentity(id);
      for (const slot of SLOTS) this.#evict(slotAccount(name, slot));
    }
  }

  async #rewrapRepository(
    repo: CapsuleRepository,
    oldId: SecretIdentity | undefined,
    newId: SecretIdentity,
    options: RotateOptions,
    report: { rewrapped: string[]; current: number; untouched: number; attempted: number },
  ): Promise<void> {
    const maxAttempts = options.maxAttempts ?? 5;
    const trusted = [toPublicIdentity(newId), ...this.#trustedSigners, ...(options.signers ?? [])];
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      let conflicts = 0;
      let current = 0;
      let untouched = 0;
      for (const stored of await repo.list()) {
        let header: CapsuleHeader;
        try {
          header = parseCapsule(stored.bytes).header;
        } catch (e) {
          // Never retire a key while something that may be a capsule for it cannot be read.
          throw isMongoCapsuleError(e) ? new CapsuleFormatError(`${repo.description}: capsule ${stored.name}: ${e.message}`, { cause: e }) : e;
        }
        if (header.kid === newId.kid) {
          current++;
          continue;
        }
        if (oldId === undefined || header.kid !== oldId.kid) {
          untouched++;
          continue;
        }
        const { bytes: resealed, binding } = this.#reseal(stored.bytes, header, oldId, newId, trusted, options);
        report.attempted++;
        if (await repo.compareAndSwap(stored.name, stored.bytes, resealed, binding)) {
          report.rewrapped.push(`${repo.description}: ${stored.name}`);
          current++;
        } else {
          conflicts++;
        }
      }
      if (conflicts === 0) {
        report.current += current;
        report.untouched += untouched;
        return;
      }
    }
    throw new MongoCapsuleError('CAPSULE_CONFLICT', `${repo.description}: capsules kept changing during rotation (${maxAttempts} attempts)`, {
      hint: 'stop other writers (seeding, another rotation) and rerun the same `mongo-capsule keys rotate` command (every --capsules directory and --cluster again); nothing is lost, the rotation resumes',
    });
  }

  #reseal(bytes: Uint8Array, header: CapsuleHeader, oldId: SecretIdentity, newId: SecretIdentity, trusted: PublicIdentity[], options: RotateOptions): { bytes: Uint8Array; binding: RecipientBinding } {
    if (!header.signed) this.#checkUnsignedAllowed(header, options.allowUnsigned ?? this.#allowUnsigned);
    const cmk = withTrustHint(header, () => unwrapKey(bytes, oldId, { signers: trusted }));
    let check: Uint8Array | undefined;
    try {
      // Re-sign only what was signed: signing an unsigned capsule would vouch for a CMK nobody vouched for.
      const resealed = wrapKey(cmk, newId, {
        name: header.name,
        createdAt: new Date(this.#now()),
        ...(header.signed ? { signer: newId } : {}),
      });
      check = unwrapKey(resealed, newId);
      if (!equalBytes(check, cmk)) throw new CapsuleAuthError('rotation: the re-sealed capsule does not open to the same key');
      // For stores that keep several recipients per capsule: the new key, bound to the CMK (crypto/recipients.ts).
      const publicIdentity = encodePublicIdentity(toPublicIdentity(newId));
      return { bytes: resealed, binding: { publicIdentity, tag: recipientTag(cmk, header.name, publicIdentity) } };
    } finally {
      cmk.fill(0);
      check?.fill(0);
    }
  }

  /** Decode the identity stored in `account`, or undefined when there is none. The caller owns (and wipes) it. */
  async #read(account: string, name: string): Promise<SecretIdentity | undefined> {
    const bytes = await this.keychain.retrieve(account);
    if (bytes === undefined) return undefined;
    let id: SecretIdentity;
    try {
      id = decodeSecretIdentity(bytes);
    } catch (e) {
      throw new KeychainEntryCorruptError(`keychain entry ${account} does not hold a valid secret identity`, {
        hint: `restore it from a --secret-out backup with \`mongo-capsule keys migrate\`, or remove it with \`mongo-capsule keys delete --name ${name} --yes\``,
        cause: e,
      });
    } finally {
      bytes.fill(0);
    }
    if (id.name !== name) {
      wipeSecretIdentity(id);
      throw new KeychainEntryCorruptError(`keychain entry ${account} holds identity ${JSON.stringify(id.name)}, not ${JSON.stringify(name)}`);
    }
    return id;
  }

  /** Store and read back: a keychain that silently drops or alters a write must fail here, not later. */
  async #storeVerified(account: string, identity: SecretIdentity): Promise<void> {
    const encoded = new TextEncoder().encode(encodeSecretIdentity(identity));
    let back: Uint8Array | undefined;
    try {
      await this.keychain.store(account, encoded);
      back = await this.keychain.retrieve(account);
      if (back === undefined || !equalBytes(back, encoded)) {
        throw new KeychainEntryCorruptError(`keychain entry ${account} does not read back what was written`, {
          hint: `the keychain (${this.keychain.description}) altered or dropped the value; nothing depends on it yet, rerun the command`,
        });
      }
    } finally {
      encoded.fill(0);
      back?.fill(0);
    }
  }

  async #cached(name: string, slot: Slot): Promise<SecretIdentity | undefined> {
    const account = slotAccount(name, slot);
    const hit = this.#cache.get(account);
    if (hit !== undefined) {
      if (this.#now() < hit.expiresAt) return hit.identity;
      this.#evict(account);
    }
    const inFlight = this.#loading.get(account);
    if (inFlight !== undefined) return inFlight;
    const generation = this.#generation.get(account) ?? 0;
    const load = (async (): Promise<SecretIdentity | undefined> => {
      const id = await this.#read(account, name);
      if (id === undefined) return id;
      if ((this.#generation.get(account) ?? 0) !== generation) {
        // Evicted while this read was under way (delete, clearCache, rotate): what it read may be gone from the
        // keychain, so it must not enter the cache; ask the keychain again.
        wipeSecretIdentity(id);
        return this.#cached(name, slot);
      }
      const timer = setTimeout(() => this.#evict(account, id), this.cacheTtlMs);
      timer.unref?.();
      this.#cache.set(account, { identity: id, expiresAt: this.#now() + this.cacheTtlMs, timer });
      return id;
    })();
    this.#loading.set(account, load);
    try {
      return await load;
    } finally {
      if (this.#loading.get(account) === load) this.#loading.delete(account);
    }
  }

  /** Drops the cached identity of `account` (wiped), or with `only`, only if that is the one cached (its timer). */
  #evict(account: string, only?: SecretIdentity): void {
    if (only === undefined) {
      // Also invalidate a read still under way, so that it cannot put back what was just dropped.
      this.#generation.set(account, (this.#generation.get(account) ?? 0) + 1);
      this.#loading.delete(account);
    }
    const entry = this.#cache.get(account);
    if (entry === undefined || (only !== undefined && entry.identity !== only)) return;
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    this.#cache.delete(account);
    wipeSecretIdentity(entry.identity);
  }
}

function notHeld(header: CapsuleHeader, name: string, held: string[]): CapsuleAuthError {
  return new CapsuleAuthError(
    `capsule ${JSON.stringify(header.name)} is sealed for ${header.suite} key ${header.kid}, which identity ${JSON.stringify(name)} does not hold (it holds ${held.join(', ')})`,
    { hint: 'unwrap with the identity the capsule was sealed for (`mongo-capsule inspect` shows its kid), or re-seal the capsule' },
  );
}

const TRUST_HINT =
  'if you seeded it yourself from a machine without the identity, run `mongo-capsule endorse` on the owner\'s machine; ' +
  'if another owner signed it, trust their public identity (`--trust <pub.json>`, KeyManager option `trustedSigners`); ' +
  'otherwise someone replaced the capsule: restore it from a backup';

function unsignedCapsule(header: CapsuleHeader): SignatureInvalidError {
  return new SignatureInvalidError(
    `capsule ${JSON.stringify(header.name)} is not signed: anyone with the public identity can seal a CMK of their choosing, so it is refused`,
    { hint: `${TRUST_HINT}; only for a capsule store nobody else can write, opt in with \`--allow-unsigned\` (option \`allowUnsigned\`)` },
  );
}

/** Gives a signer the opener does not trust a hint that names the ways to trust it. */
function withTrustHint<T>(header: CapsuleHeader, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof SignerUnknownError) {
      throw new SignerUnknownError(`capsule ${JSON.stringify(header.name)} is signed by key ${header.signerKid}, which is not trusted`, { hint: TRUST_HINT, cause: e });
    }
    throw e;
  }
}

function inconsistent(name: string, why: string): KeychainEntryCorruptError {
  return new KeychainEntryCorruptError(`the keychain slots of identity ${JSON.stringify(name)} are inconsistent: ${why}`, {
    hint: 'inspect them with `mongo-capsule keys status`; restore the identity from a --secret-out backup if needed',
  });
}
