/** Test doubles for the keys tests: an in-memory capsule repository and fault injection around keychains and repositories. */
import { decodeSecretIdentity, toPublicIdentity, wipeSecretIdentity, type PublicIdentity } from '../../src/crypto/identity.ts';
import { parseCapsule, unwrapKey } from '../../src/crypto/capsule.ts';
import type { CapsuleRepository, StoredCapsule } from '../../src/keys/capsule-repository.ts';
import { equalBytes, MemoryKeychain, type Keychain } from '../../src/keys/keychain.ts';

export class MemoryRepository implements CapsuleRepository {
  readonly description: string;
  capsules = new Map<string, Uint8Array>();
  constructor(description = 'memory repository') {
    this.description = description;
  }
  async list(): Promise<StoredCapsule[]> {
    return [...this.capsules].map(([name, bytes]) => ({ name, bytes: Uint8Array.from(bytes) }));
  }
  async compareAndSwap(name: string, expected: Uint8Array, next: Uint8Array): Promise<boolean> {
    const cur = this.capsules.get(name);
    if (cur === undefined || !equalBytes(cur, expected)) return false;
    this.capsules.set(name, Uint8Array.from(next));
    return true;
  }
}

export class InjectedFault extends Error {
  constructor(where: string) {
    super(`injected fault at ${where}`);
  }
}

/**
 * Counts every mutating operation (keychain store/delete, repository compareAndSwap) across the wrapped
 * objects, calls `afterEach` after each one, and fails the `failAt`-th one: before it takes effect
 * ('before') or after it took effect, losing the acknowledgement ('after').
 */
export class FaultPlan {
  ops = 0;
  failAt = Number.POSITIVE_INFINITY;
  mode: 'before' | 'after' = 'before';
  log: string[] = [];
  afterEach: ((where: string) => Promise<void>) | undefined;

  async step<T>(where: string, apply: () => Promise<T>): Promise<T> {
    const n = ++this.ops;
    this.log.push(where);
    if (n === this.failAt && this.mode === 'before') throw new InjectedFault(where);
    const result = await apply();
    if (this.afterEach) await this.afterEach(where);
    if (n === this.failAt && this.mode === 'after') throw new InjectedFault(where);
    return result;
  }
}

export class FaultyKeychain implements Keychain {
  readonly description = 'faulty keychain';
  constructor(
    readonly inner: Keychain,
    readonly plan: FaultPlan,
  ) {}
  store(account: string, secret: Uint8Array) {
    return this.plan.step(`store ${account}`, () => this.inner.store(account, secret));
  }
  delete(account: string) {
    return this.plan.step(`delete ${account}`, () => this.inner.delete(account));
  }
  retrieve(account: string) {
    return this.inner.retrieve(account);
  }
  exists(account: string) {
    return this.inner.exists(account);
  }
}

export class FaultyRepository implements CapsuleRepository {
  readonly description: string;
  constructor(
    readonly inner: CapsuleRepository,
    readonly plan: FaultPlan,
  ) {
    this.description = inner.description;
  }
  list() {
    return this.inner.list();
  }
  compareAndSwap(name: string, expected: Uint8Array, next: Uint8Array) {
    return this.plan.step(`cas ${this.description}/${name}`, () => this.inner.compareAndSwap(name, expected, next));
  }
}

/**
 * The invariant of rotation: every capsule in `repos` (except those sealed for `ignoreKids`, other identities)
 * opens, signature verified, with some identity currently held in `keychain`. Returns the capsules nothing opens.
 */
export async function unopenable(keychain: MemoryKeychain, repos: CapsuleRepository[], ignoreKids: string[] = []): Promise<string[]> {
  const ids = [];
  for (const account of keychain.accounts()) {
    const bytes = await keychain.retrieve(account);
    try {
      ids.push(decodeSecretIdentity(bytes!));
    } catch {
      // a damaged entry opens nothing
    }
  }
  const signers: PublicIdentity[] = ids.map((i) => toPublicIdentity(i));
  const bad: string[] = [];
  for (const repo of repos) {
    for (const c of await repo.list()) {
      if (ignoreKids.includes(parseCapsule(c.bytes).header.kid)) continue;
      const ok = ids.some((id) => {
        try {
          unwrapKey(c.bytes, id, { signers }).fill(0);
          return true;
        } catch {
          return false;
        }
      });
      if (!ok) bad.push(`${repo.description}/${c.name}`);
    }
  }
  for (const id of ids) wipeSecretIdentity(id);
  return bad;
}

/** A controllable clock. */
export function manualClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

export const isZero = (b: Uint8Array) => b.length > 0 && b.every((x) => x === 0);
