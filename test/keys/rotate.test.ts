import { describe, expect, it } from 'vitest';
import { generateCmk, parseCapsule, unwrapKey, wrapKey } from '../../src/crypto/capsule.ts';
import { encodeSecretIdentity, generateIdentity, toPublicIdentity, type PublicIdentity } from '../../src/crypto/identity.ts';
import { MemoryKeychain } from '../../src/keys/keychain.ts';
import { KeyManager } from '../../src/keys/manager.ts';
import { FaultPlan, FaultyKeychain, FaultyRepository, InjectedFault, MemoryRepository, unopenable } from './support.ts';

interface World {
  keychain: MemoryKeychain;
  repos: MemoryRepository[];
  cmks: Map<string, Uint8Array>;
  oldPub: PublicIdentity;
  foreign: PublicIdentity;
}

/** Identity "default" with two repositories: signed and unsigned capsules for it, and one for another identity. */
async function world(): Promise<World> {
  const keychain = new MemoryKeychain();
  const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain });
  const oldPub = await manager.initialize('default', 'ml-kem-768');
  const signer = await manager.getSecretIdentity('default');
  const stranger = generateIdentity('ml-kem-768', { name: 'other' });
  const cmks = new Map<string, Uint8Array>();
  const repoA = new MemoryRepository('repo-a');
  const repoB = new MemoryRepository('repo-b');
  const add = (repo: MemoryRepository, name: string, to: PublicIdentity, signed: boolean) => {
    const cmk = generateCmk();
    cmks.set(`${repo.description}/${name}`, cmk);
    repo.capsules.set(name, wrapKey(cmk, to, { name, ...(signed ? { signer } : {}) }));
  };
  add(repoA, 'one.capsule', oldPub, true);
  add(repoA, 'two.capsule', oldPub, false);
  add(repoB, 'three.capsule', oldPub, true);
  add(repoB, 'foreign.capsule', stranger, true);
  manager.clearCache();
  return { keychain, repos: [repoA, repoB], cmks, oldPub, foreign: toPublicIdentity(stranger) };
}

/** After a completed rotation: one identity, new kid, every own capsule re-sealed and opening to its original CMK. */
async function expectRotated(w: World, expectedSigned: Record<string, boolean>) {
  expect(w.keychain.accounts()).toEqual(['default']);
  const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain });
  const id = await manager.getSecretIdentity('default');
  expect(id.kid).not.toBe(w.oldPub.kid);
  for (const repo of w.repos) {
    for (const c of await repo.list()) {
      const header = parseCapsule(c.bytes).header;
      if (c.name === 'foreign.capsule') {
        expect(header.kid).toBe(w.foreign.kid);
        continue;
      }
      expect(header.kid).toBe(id.kid);
      expect(header.name).toBe(c.name);
      expect(header.signed).toBe(expectedSigned[c.name]);
      if (header.signed) expect(header.signerKid).toBe(id.signer.kid);
      expect(unwrapKey(c.bytes, id)).toEqual(w.cmks.get(`${repo.description}/${c.name}`));
    }
  }
  manager.clearCache();
}

const SIGNED = { 'one.capsule': true, 'two.capsule': false, 'three.capsule': true };

describe('KeyManager.rotate', () => {
  it('re-seals every capsule of the identity, keeps signed/unsigned as it was, leaves others alone, retires the old key', async () => {
    const w = await world();
    const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain });
    const report = await manager.rotate('default', w.repos);
    expect(report).toMatchObject({ oldKid: w.oldPub.kid, resumed: false, current: 3, untouched: 1, discardedDamagedSlot: null });
    expect(report.rewrapped.sort()).toEqual(['repo-a: one.capsule', 'repo-a: two.capsule', 'repo-b: three.capsule']);
    expect(report.publicIdentity.kid).toBe(report.newKid);
    expect(report.publicIdentity.suite).toBe('ml-kem-768');
    await expectRotated(w, SIGNED);
  });

  it('can move to another suite', async () => {
    const w = await world();
    const report = await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', w.repos, { suite: 'x-wing' });
    expect(report.publicIdentity.suite).toBe('x-wing');
    await expectRotated(w, SIGNED);
  });

  it('refuses to rotate an identity that does not exist', async () => {
    const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: new MemoryKeychain() });
    await expect(manager.rotate('default', [])).rejects.toMatchObject({ code: 'NOT_INITIALIZED' });
  });

  it('stops before retiring the old key when a capsule cannot be parsed, and names it', async () => {
    const w = await world();
    w.repos[0]!.capsules.set('junk.capsule', new Uint8Array([1, 2, 3]));
    const err = await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', w.repos).catch((e) => e);
    expect(err).toMatchObject({ code: 'CAPSULE_FORMAT' });
    expect(err.message).toContain('junk.capsule');
    expect(w.keychain.accounts()).toEqual(['default', 'default~next']);
    w.repos[0]!.capsules.delete('junk.capsule');
    expect(await unopenable(w.keychain, w.repos, [w.foreign.kid])).toEqual([]);
    expect((await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', w.repos)).resumed).toBe(true);
    await expectRotated(w, SIGNED);
  });

  it('rejects capsules whose signer is not trusted, unless passed as a signer', async () => {
    const w = await world();
    const seeder = generateIdentity('ml-kem-768', { name: 'seeder' });
    const cmk = generateCmk();
    w.cmks.set('repo-a/seeded.capsule', cmk);
    w.repos[0]!.capsules.set('seeded.capsule', wrapKey(cmk, w.oldPub, { name: 'seeded.capsule', signer: seeder }));
    await expect(new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', w.repos)).rejects.toMatchObject({ code: 'SIGNER_UNKNOWN' });
    await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', w.repos, { signers: [toPublicIdentity(seeder)] });
    await expectRotated(w, { ...SIGNED, 'seeded.capsule': true });
  });

  it('retries a compare-and-swap that lost a race, then gives up with a typed error if it keeps losing', async () => {
    const w = await world();
    let losses = 1;
    const racy = new MemoryRepository('racy');
    racy.capsules = w.repos[0]!.capsules;
    racy.compareAndSwap = async (name, expected, next) => {
      if (losses-- > 0) return false;
      return MemoryRepository.prototype.compareAndSwap.call(racy, name, expected, next);
    };
    await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', [racy, w.repos[1]!]);
    await expectRotated(w, SIGNED);

    const w2 = await world();
    const hostile = new MemoryRepository('hostile');
    hostile.capsules = w2.repos[0]!.capsules;
    hostile.compareAndSwap = async () => false;
    await expect(new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w2.keychain }).rotate('default', [hostile], { maxAttempts: 3 })).rejects.toMatchObject({ code: 'CAPSULE_CONFLICT' });
    expect(await unopenable(w2.keychain, w2.repos, [w2.foreign.kid])).toEqual([]);
  });

  it('re-seals capsules sealed for the old key after promotion (final sweep)', async () => {
    const w = await world();
    const plan = new FaultPlan();
    const keychain = new FaultyKeychain(w.keychain, plan);
    // A seeder still using the old public file adds a capsule right after the new key is promoted.
    let injected = false;
    plan.afterEach = async (where) => {
      if (where === 'store default' && !injected) {
        injected = true;
        const cmk = generateCmk();
        w.cmks.set('repo-b/late.capsule', cmk);
        w.repos[1]!.capsules.set('late.capsule', wrapKey(cmk, w.oldPub, { name: 'late.capsule' }));
      }
    };
    await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain }).rotate('default', w.repos);
    expect(injected).toBe(true);
    await expectRotated(w, { ...SIGNED, 'late.capsule': false });
  });
});

describe('KeyManager.rotate under failures', () => {
  // Every mutating step (keychain store/delete, capsule compare-and-swap) is made to fail in turn, both before
  // it takes effect and after it took effect (lost acknowledgement). After every single step of every run, every
  // capsule must open with some key in the keychain; after the failure, a plain rerun must finish the rotation.
  for (const mode of ['before', 'after'] as const) {
    it(`converges from a failure at any step (${mode} the step takes effect)`, async () => {
      let failAt = 1;
      let completedWithoutFault = false;
      const seen: string[] = [];
      while (!completedWithoutFault) {
        const w = await world();
        const plan = new FaultPlan();
        plan.failAt = failAt;
        plan.mode = mode;
        plan.afterEach = async (where) => {
          const bad = await unopenable(w.keychain, w.repos, [w.foreign.kid]);
          if (bad.length > 0) throw new Error(`invariant broken after "${where}": ${bad.join(', ')}`);
        };
        const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: new FaultyKeychain(w.keychain, plan) });
        const repos = w.repos.map((r) => new FaultyRepository(r, plan));
        try {
          await manager.rotate('default', repos);
          completedWithoutFault = true;
          expect(plan.ops).toBeLessThan(failAt);
        } catch (e) {
          expect(e).toBeInstanceOf(InjectedFault);
          seen.push(plan.log[failAt - 1]!);
          expect(await unopenable(w.keychain, w.repos, [w.foreign.kid])).toEqual([]);
          // Rerun (no more faults); the invariant is still checked after every step.
          plan.failAt = Number.POSITIVE_INFINITY;
          const report = await manager.rotate('default', repos);
          if (mode === 'after' && plan.log[failAt - 1] === 'delete default~prev') {
            // The rotation had completed; only its acknowledgement was lost, so the rerun rotates once more.
            expect(report.resumed).toBe(false);
          } else {
            expect(report.resumed).toBe(!(mode === 'before' && failAt === 1));
            expect(report.oldKid).toBe(w.oldPub.kid);
          }
        }
        await expectRotated(w, SIGNED);
        failAt++;
      }
      // store next, 3 swaps, store prev, store active, delete next, delete prev
      expect(seen).toEqual([
        'store default~next',
        'cas repo-a/one.capsule',
        'cas repo-a/two.capsule',
        'cas repo-b/three.capsule',
        'store default~prev',
        'store default',
        'delete default~next',
        'delete default~prev',
      ]);
    });
  }

  it('finishes when the write of a slot was torn (damaged entry), whichever slot it was', async () => {
    const damaged = new TextEncoder().encode('{"format":"mongo-capsule-secret-identity","torn');
    for (const slot of ['next', 'prev', 'active'] as const) {
      const w = await world();
      const plan = new FaultPlan();
      // Stop right before the write of `slot`, then leave that slot damaged as a torn write would.
      const target = slot === 'active' ? 'store default' : `store default~${slot}`;
      plan.afterEach = async () => undefined;
      const keychain = new FaultyKeychain(w.keychain, plan);
      const originalStore = keychain.store.bind(keychain);
      keychain.store = async (account, secret) => {
        if (`store ${account}` === target) {
          await w.keychain.store(account, damaged);
          throw new InjectedFault(target);
        }
        return originalStore(account, secret);
      };
      await expect(new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain }).rotate('default', w.repos)).rejects.toBeInstanceOf(InjectedFault);
      expect(await unopenable(w.keychain, w.repos, [w.foreign.kid])).toEqual([]);
      const report = await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', w.repos);
      expect(report.discardedDamagedSlot).toBe(slot);
      await expectRotated(w, SIGNED);
    }
  });

  it('refuses to guess when the slots are inconsistent', async () => {
    const keychain = new MemoryKeychain();
    const lone = generateIdentity('ml-kem-768', { name: 'default' });
    await keychain.store('default~next', new TextEncoder().encode(encodeSecretIdentity(lone)));
    await expect(new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain }).rotate('default', [])).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
    expect(keychain.accounts()).toEqual(['default~next']);
  });
});

describe('KeyManager.rotate: retiring the old key needs evidence', () => {
  it('a start that fails before its first swap leaves the keychain as it was', async () => {
    const w = await world();
    const broken = { description: 'missing directory', list: () => Promise.reject(new Error('ENOENT')), compareAndSwap: () => Promise.resolve(false) };
    await expect(new KeyManager({ keychain: w.keychain }).rotate('default', [broken])).rejects.toThrow('ENOENT');
    expect(w.keychain.accounts()).toEqual(['default']);
    expect((await new KeyManager({ keychain: w.keychain }).status('default')).kid).toBe(w.oldPub.kid);
  });

  it('finding no capsule of the identity keeps the old key in prev; a later call with the capsules retires it', async () => {
    const w = await world();
    const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain });
    const nothing = await manager.rotate('default', [new MemoryRepository('empty')]);
    expect(nothing).toMatchObject({ retired: false, current: 0, rewrapped: [] });
    expect((await manager.status('default')).slots).toEqual({ active: nothing.newKid, next: null, prev: w.oldPub.kid });
    const c = (await w.repos[0]!.list())[0]!;
    expect(await manager.unwrap(c.bytes, 'default')).toEqual(w.cmks.get(`repo-a/${c.name}`));
    const resumed = await manager.rotate('default', w.repos);
    expect(resumed).toMatchObject({ retired: true, resumed: true, newKid: nothing.newKid });
    await expectRotated(w, SIGNED);
  });

  it('retire: an explicit decision overrides the default', async () => {
    const w = await world();
    const kept = await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', w.repos, { retire: () => false });
    expect(kept.retired).toBe(false);
    expect(w.keychain.accounts().sort()).toEqual(['default', 'default~prev']);
    const forced = await new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain: w.keychain }).rotate('default', [], { retire: () => true });
    expect(forced.retired).toBe(true);
    await expectRotated(w, SIGNED);
  });
});
