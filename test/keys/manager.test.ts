import { afterEach, describe, expect, it, vi } from 'vitest';
import { generateCmk, wrapKey } from '../../src/crypto/capsule.ts';
import { encodeSecretIdentity, generateIdentity, toPublicIdentity } from '../../src/crypto/identity.ts';
import { MemoryKeychain } from '../../src/keys/keychain.ts';
import { KeyManager, slotAccount } from '../../src/keys/manager.ts';
import { isZero, manualClock } from './support.ts';

function setup(ttl = 60_000) {
  const keychain = new MemoryKeychain();
  const clock = manualClock();
  const manager = new KeyManager({ allowUnsigned: true, onWarning: () => {}, keychain, cacheTtlMs: ttl, now: clock.now });
  const reads = vi.spyOn(keychain, 'retrieve');
  return { keychain, clock, manager, reads };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('KeyManager lifecycle', () => {
  it('initializes once, reports it, and refuses a second initialization', async () => {
    const { manager, keychain } = setup();
    expect(await manager.isInitialized('default')).toBe(false);
    const pub = await manager.initialize('default', 'ml-kem-768');
    expect(pub.suite).toBe('ml-kem-768');
    expect(await manager.isInitialized('default')).toBe(true);
    expect(keychain.accounts()).toEqual(['default']);
    await expect(manager.initialize('default')).rejects.toMatchObject({ code: 'ALREADY_INITIALIZED' });
    expect((await manager.getPublicIdentity('default')).kid).toBe(pub.kid);
  });

  it('stores only what an identity file holds, never a public-only or foreign value', async () => {
    const { manager, keychain } = setup();
    await manager.initialize('alice');
    const stored = new TextDecoder().decode(await keychain.retrieve('alice'));
    expect(JSON.parse(stored).format).toBe('mongo-capsule-secret-identity');
    await keychain.store('bob', new TextEncoder().encode(stored)); // alice's identity under bob's account
    await expect(manager.getSecretIdentity('bob')).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
    await keychain.store('carol', new TextEncoder().encode('{"format":"x"}'));
    await expect(manager.getSecretIdentity('carol')).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
  });

  it('throws NotInitialized for an unknown identity and validates names', async () => {
    const { manager } = setup();
    await expect(manager.getSecretIdentity('nobody')).rejects.toMatchObject({ code: 'NOT_INITIALIZED' });
    await expect(manager.delete('nobody')).rejects.toMatchObject({ code: 'NOT_INITIALIZED' });
    await expect(manager.getSecretIdentity('../etc')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(manager.initialize('a~next')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('delete removes every slot and zeroizes the cached identity', async () => {
    const { manager, keychain } = setup();
    await manager.initialize('default');
    await keychain.store(slotAccount('default', 'next'), new TextEncoder().encode(encodeSecretIdentity(generateIdentity('ml-kem-768', { name: 'default' }))));
    const id = await manager.getSecretIdentity('default');
    await manager.delete('default');
    expect(keychain.accounts()).toEqual([]);
    expect(isZero(id.kemSecretKey) && isZero(id.signerSecretKey) && isZero(id.signerSeed)).toBe(true);
    expect(await manager.isInitialized('default')).toBe(false);
  });

  it('reports status with kids only and flags an unfinished rotation', async () => {
    const { manager, keychain } = setup();
    const pub = await manager.initialize('default');
    expect(await manager.status('default')).toMatchObject({ initialized: true, kid: pub.kid, rotationPending: false, slots: { active: pub.kid, next: null, prev: null } });
    const next = generateIdentity('ml-kem-1024', { name: 'default' });
    await keychain.store('default~next', new TextEncoder().encode(encodeSecretIdentity(next)));
    const s = await manager.status('default');
    expect(s.rotationPending).toBe(true);
    expect(s.slots.next).toBe(next.kid);
    expect(JSON.stringify(s)).not.toMatch(/seed|secret/i);
    await expect(manager.initialize('default')).rejects.toMatchObject({ code: 'ALREADY_INITIALIZED' });
  });
});

describe('KeyManager cache', () => {
  it('reads the keychain once while the entry is fresh', async () => {
    const { manager, reads } = setup();
    await manager.initialize('default');
    reads.mockClear();
    const a = await manager.getSecretIdentity('default');
    const b = await manager.getSecretIdentity('default');
    expect(b).toBe(a);
    expect(reads).toHaveBeenCalledTimes(1);
  });

  it('deduplicates concurrent loads', async () => {
    const { manager, reads } = setup();
    await manager.initialize('default');
    reads.mockClear();
    const all = await Promise.all(Array.from({ length: 8 }, () => manager.getSecretIdentity('default')));
    expect(new Set(all).size).toBe(1);
    expect(reads).toHaveBeenCalledTimes(1);
  });

  it('expires after the TTL on the injected clock, zeroizing the cached buffers', async () => {
    const { manager, clock, reads } = setup(10_000);
    await manager.initialize('default');
    reads.mockClear();
    const first = await manager.getSecretIdentity('default');
    const kem = Uint8Array.from(first.kemSecretKey);
    clock.advance(9_999);
    expect(await manager.getSecretIdentity('default')).toBe(first);
    expect(reads).toHaveBeenCalledTimes(1);
    clock.advance(1);
    const second = await manager.getSecretIdentity('default');
    expect(reads).toHaveBeenCalledTimes(2);
    expect(second).not.toBe(first);
    expect(isZero(first.kemSecretKey)).toBe(true);
    expect(isZero(first.kemSeed!)).toBe(true);
    expect(isZero(first.signerSeed)).toBe(true);
    expect(isZero(first.signerSecretKey)).toBe(true);
    expect(second.kemSecretKey).toEqual(kem);
  });

  it('zeroizes an untouched entry when its real-time timer fires', async () => {
    vi.useFakeTimers();
    const { manager } = setup(5_000);
    await manager.initialize('default');
    const id = await manager.getSecretIdentity('default');
    vi.advanceTimersByTime(4_999);
    expect(isZero(id.kemSecretKey)).toBe(false);
    vi.advanceTimersByTime(1);
    expect(isZero(id.kemSecretKey)).toBe(true);
  });

  it('clearCache zeroizes every cached identity', async () => {
    const { manager, reads } = setup();
    await manager.initialize('a');
    await manager.initialize('b');
    const a = await manager.getSecretIdentity('a');
    const b = await manager.getSecretIdentity('b');
    manager.clearCache();
    expect(isZero(a.kemSecretKey) && isZero(b.kemSecretKey) && isZero(a.signerSecretKey)).toBe(true);
    reads.mockClear();
    const again = await manager.getSecretIdentity('a');
    expect(reads).toHaveBeenCalledTimes(1);
    expect(isZero(again.kemSecretKey)).toBe(false);
  });

  it('rejects TTLs a timer cannot represent', () => {
    for (const cacheTtlMs of [-1, 1.5, Number.POSITIVE_INFINITY, 2 ** 31]) {
      expect(() => new KeyManager({ keychain: new MemoryKeychain(), cacheTtlMs })).toThrow(/cacheTtlMs/);
    }
  });

  it('with a TTL of 0 reads the keychain on every use', async () => {
    const { manager, reads } = setup(0);
    const pub = await manager.initialize('default');
    const capsule = wrapKey(generateCmk(), pub, { name: 'c' });
    reads.mockClear();
    (await manager.unwrap(capsule)).fill(0);
    (await manager.unwrap(capsule)).fill(0);
    expect(reads).toHaveBeenCalledTimes(2);
  });
});

describe('KeyManager.unwrap', () => {
  it('verifies the signature and returns the CMK, signed by the identity itself by default', async () => {
    const { manager } = setup();
    await manager.initialize('default');
    const id = await manager.getSecretIdentity('default');
    const cmk = generateCmk();
    const capsule = wrapKey(cmk, id, { name: 'default', signer: id });
    expect(await manager.unwrap(capsule)).toEqual(cmk);
    expect(await manager.unwrap(capsule, 'default', { requireSignature: true })).toEqual(cmk);
  });

  it('rejects a capsule signed by an untrusted key unless that signer is passed', async () => {
    const { manager } = setup();
    const pub = await manager.initialize('default');
    const other = generateIdentity('ml-kem-768', { name: 'seeder' });
    const capsule = wrapKey(generateCmk(), pub, { name: 'x', signer: other });
    await expect(manager.unwrap(capsule)).rejects.toMatchObject({ code: 'SIGNER_UNKNOWN' });
    expect((await manager.unwrap(capsule, 'default', { signers: [toPublicIdentity(other)] })).length).toBe(96);
  });

  it('rejects unsigned capsules when a signature is required', async () => {
    const { manager } = setup();
    const pub = await manager.initialize('default');
    const capsule = wrapKey(generateCmk(), pub, { name: 'x' });
    await expect(manager.unwrap(capsule, 'default', { requireSignature: true })).rejects.toMatchObject({ code: 'SIGNATURE_INVALID' });
  });

  it('names both kids when the capsule is for another key', async () => {
    const { manager } = setup();
    const pub = await manager.initialize('default');
    const stranger = generateIdentity('ml-kem-1024', { name: 'x' });
    const capsule = wrapKey(generateCmk(), stranger, { name: 'c' });
    const err = await manager.unwrap(capsule).catch((e) => e);
    expect(err).toMatchObject({ code: 'CAPSULE_AUTH' });
    expect(err.message).toContain(stranger.kid);
    expect(err.message).toContain(pub.kid);
  });

  it('a capsule for another key does not wipe a borrowed identity, nor re-read unchanged slots twice', async () => {
    const { manager, reads } = setup();
    await manager.initialize('default');
    const borrowed = await manager.getSecretIdentity('default');
    const stranger = generateIdentity('ml-kem-768', { name: 'x' });
    reads.mockClear();
    await expect(manager.unwrap(wrapKey(generateCmk(), stranger, { name: 'c' }))).rejects.toMatchObject({ code: 'CAPSULE_AUTH' });
    // The empty next/prev slots (2), then one fresh read per slot to see whether another process rotated the key
    // (3); nothing changed, so there is no second pass.
    expect(reads).toHaveBeenCalledTimes(5);
    expect(isZero(borrowed.kemSecretKey)).toBe(false);
    expect(isZero(borrowed.signerSecretKey)).toBe(false);
    // The borrowed identity still signs: the CMK it seals opens.
    const cmk = generateCmk();
    expect(await manager.unwrap(wrapKey(cmk, borrowed, { name: 'd', signer: borrowed }))).toEqual(cmk);
  });

  it('finds a key another process stored after the cache was filled', async () => {
    const { manager, keychain } = setup();
    await manager.initialize('default');
    const before = await manager.getSecretIdentity('default');
    const replaced = generateIdentity('ml-kem-1024', { name: 'default' });
    await keychain.store('default', new TextEncoder().encode(encodeSecretIdentity(replaced)));
    const cmk = generateCmk();
    expect(await manager.unwrap(wrapKey(cmk, replaced, { name: 'c', signer: replaced }))).toEqual(cmk);
    // The old identity is gone from the keychain: its cached copy was dropped and zeroized.
    expect(isZero(before.kemSecretKey)).toBe(true);
  });

  it('rejects a tampered capsule with a typed error', async () => {
    const { manager } = setup();
    const pub = await manager.initialize('default');
    const capsule = wrapKey(generateCmk(), pub, { name: 'c' });
    capsule[capsule.length - 3]! ^= 1;
    await expect(manager.unwrap(capsule)).rejects.toMatchObject({ code: 'CAPSULE_AUTH' });
    await expect(manager.unwrap(capsule.subarray(0, 10))).rejects.toMatchObject({ code: 'CAPSULE_FORMAT' });
  });

  it('throws NotInitialized when the identity is missing', async () => {
    const { manager } = setup();
    const stranger = generateIdentity('ml-kem-768', { name: 'default' });
    await expect(manager.unwrap(wrapKey(generateCmk(), stranger, { name: 'c' }))).rejects.toMatchObject({ code: 'NOT_INITIALIZED' });
  });

  it('opens capsules already re-sealed for the pending key of an unfinished rotation', async () => {
    const { manager, keychain } = setup();
    await manager.initialize('default');
    const next = generateIdentity('ml-kem-1024', { name: 'default' });
    await keychain.store('default~next', new TextEncoder().encode(encodeSecretIdentity(next)));
    const cmk = generateCmk();
    expect(await manager.unwrap(wrapKey(cmk, next, { name: 'c', signer: next }))).toEqual(cmk);
  });

  it('still opens capsules for the other slots when an interrupted rotation left `active` damaged', async () => {
    const { manager, keychain } = setup();
    const old = await manager.initialize('default');
    const next = generateIdentity('ml-kem-1024', { name: 'default' });
    await keychain.store('default~next', new TextEncoder().encode(encodeSecretIdentity(next)));
    await keychain.store('default~prev', (await keychain.retrieve('default'))!);
    await keychain.store('default', new TextEncoder().encode('{"torn'));
    const cmk = generateCmk();
    expect(await manager.unwrap(wrapKey(cmk, next, { name: 'c', signer: next }))).toEqual(cmk);
    expect(await manager.unwrap(wrapKey(cmk, old, { name: 'c' }))).toEqual(cmk);
    const stranger = generateIdentity('ml-kem-768', { name: 'x' });
    await expect(manager.unwrap(wrapKey(cmk, stranger, { name: 'c' }))).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
  });
});

describe('KeyManager.unwrap signatures', () => {
  it('requires a trusted signature by default; trustedSigners, per-call signers and allowUnsigned (which warns) are the opt-ins', async () => {
    const keychain = new MemoryKeychain();
    const pub = await new KeyManager({ keychain }).initialize('default', 'ml-kem-768');
    const other = generateIdentity('ml-kem-768', { name: 'other' });
    const cmk = generateCmk();
    const unsigned = wrapKey(cmk, pub, { name: 'u' });
    const foreign = wrapKey(cmk, pub, { name: 'f', signer: other });
    const strict = new KeyManager({ keychain });
    await expect(strict.unwrap(unsigned)).rejects.toMatchObject({ code: 'SIGNATURE_INVALID', hint: expect.stringMatching(/mongo-capsule endorse.*--trust <pub\.json>/) });
    await expect(strict.unwrap(foreign)).rejects.toMatchObject({ code: 'SIGNER_UNKNOWN', hint: expect.stringMatching(/--trust <pub\.json>/) });
    expect(await strict.unwrap(foreign, 'default', { signers: [toPublicIdentity(other)] })).toEqual(cmk);
    expect(await new KeyManager({ keychain, trustedSigners: [toPublicIdentity(other)] }).unwrap(foreign)).toEqual(cmk);
    const warnings: string[] = [];
    expect(await strict.unwrap(unsigned, 'default', { allowUnsigned: true })).toEqual(cmk);
    const lax = new KeyManager({ keychain, allowUnsigned: true, onWarning: (m) => warnings.push(m) });
    expect(await lax.unwrap(unsigned)).toEqual(cmk);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/UNSIGNED/);
    await expect(lax.unwrap(unsigned, 'default', { requireSignature: true })).rejects.toMatchObject({ code: 'SIGNATURE_INVALID' });
    strict.clearCache();
    lax.clearCache();
  });
});
