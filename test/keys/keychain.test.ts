import { describe, expect, it } from 'vitest';
import {
  classifyKeyringError,
  MemoryKeychain,
  OsKeychain,
  WINDOWS_MAX_BLOB_BYTES,
  type CredentialStore,
} from '../../src/keys/keychain.ts';

/** A platform store in memory that can misbehave like the real ones do. */
class FakeStore implements CredentialStore {
  readonly description = 'fake store';
  readonly entries = new Map<string, Uint8Array>();
  /** Lookups answer "no credential" whatever is stored (a Secret Service without a default collection). */
  blindReads = false;
  /** Writes fail with this platform message. */
  failWrites: string | undefined;
  async get(account: string) {
    if (this.blindReads) return null;
    const v = this.entries.get(account);
    return v === undefined ? null : Uint8Array.from(v);
  }
  async set(account: string, value: Uint8Array) {
    if (this.failWrites) throw classifyKeyringError('write', account, new Error(this.failWrites), 'linux');
    if (value.length > WINDOWS_MAX_BLOB_BYTES) throw new Error('blob larger than the Windows limit');
    this.entries.set(account, Uint8Array.from(value));
  }
  async delete(account: string) {
    return this.entries.delete(account);
  }
}

const bytes = (n: number, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('MemoryKeychain', () => {
  it('copies values in and out and wipes on delete', async () => {
    const k = new MemoryKeychain();
    const v = bytes(40);
    await k.store('a', v);
    v.fill(0);
    const out = await k.retrieve('a');
    expect(out).toEqual(bytes(40));
    out!.fill(1);
    expect(await k.retrieve('a')).toEqual(bytes(40));
    expect(await k.exists('a')).toBe(true);
    expect(await k.delete('a')).toBe(true);
    expect(await k.delete('a')).toBe(false);
    expect(await k.retrieve('a')).toBeUndefined();
    await expect(k.store('#chunk', v)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('OsKeychain chunking', () => {
  it('keeps a small value in one entry', async () => {
    const store = new FakeStore();
    const k = new OsKeychain({ credentialStore: store });
    await k.store('default', bytes(500));
    expect([...store.entries.keys()]).toEqual(['default']);
    expect(await k.retrieve('default')).toEqual(bytes(500));
  });

  it('splits an NTRU-sized identity across entries under the Windows blob limit and joins it back', async () => {
    const store = new FakeStore();
    const k = new OsKeychain({ credentialStore: store });
    const value = bytes(3900);
    await k.store('default', value);
    expect([...store.entries.keys()].sort()).toEqual(['default', 'default#1']);
    for (const blob of store.entries.values()) expect(blob.length).toBeLessThanOrEqual(WINDOWS_MAX_BLOB_BYTES);
    expect(await k.retrieve('default')).toEqual(value);
    expect(await k.delete('default')).toBe(true);
    expect(store.entries.size).toBe(0);
  });

  it('removes chunks left over by a longer previous value', async () => {
    const store = new FakeStore();
    const k = new OsKeychain({ credentialStore: store, chunkPayloadBytes: 100 });
    await k.store('a', bytes(450));
    expect(store.entries.size).toBe(5);
    await k.store('a', bytes(150, 9));
    expect([...store.entries.keys()].sort()).toEqual(['a', 'a#1']);
    expect(await k.retrieve('a')).toEqual(bytes(150, 9));
  });

  it('leaves no chunk behind after an interrupted delete is repeated', async () => {
    const store = new FakeStore();
    const k = new OsKeychain({ credentialStore: store, chunkPayloadBytes: 100 });
    await k.store('a', bytes(450));
    store.entries.delete('a'); // the interrupted delete removed chunk 0 and chunk 1, then stopped
    store.entries.delete('a#1');
    expect(await k.retrieve('a')).toBeUndefined();
    expect(await k.delete('a')).toBe(false);
    expect(store.entries.size).toBe(0);
  });

  it('reports a value mixed from two writes (interrupted overwrite) as damaged, never returns it', async () => {
    const store = new FakeStore();
    const k = new OsKeychain({ credentialStore: store, chunkPayloadBytes: 100 });
    await k.store('a', bytes(250, 1));
    const oldHead = store.entries.get('a')!;
    await k.store('a', bytes(250, 2));
    store.entries.set('a', oldHead); // the new chunks were written, chunk 0 was not
    await expect(k.retrieve('a')).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
  });

  it('reports a missing chunk, a foreign value and a flipped bit as damaged', async () => {
    const store = new FakeStore();
    const k = new OsKeychain({ credentialStore: store, chunkPayloadBytes: 100 });
    await k.store('a', bytes(250));
    store.entries.delete('a#2');
    await expect(k.retrieve('a')).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
    store.entries.set('b', new TextEncoder().encode('hunter2'));
    await expect(k.retrieve('b')).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
    await k.store('c', bytes(50));
    store.entries.get('c')![30]! ^= 0x10;
    const err = await k.retrieve('c').catch((e) => e);
    expect(err).toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
    expect(err.message).not.toMatch(/[0-9a-f]{32}/); // no value bytes in the message
  });

  it('believes a miss only after a scratch entry round-trips', async () => {
    const store = new FakeStore();
    const k = new OsKeychain({ credentialStore: store });
    expect(await k.retrieve('nobody')).toBeUndefined();
    expect(await k.exists('nobody')).toBe(false);
    expect(store.entries.size).toBe(0); // the probe cleaned up
  });

  it('turns "no credential" from a store that cannot write into KEYCHAIN_UNAVAILABLE, not a miss', async () => {
    const store = new FakeStore();
    store.blindReads = true;
    store.failWrites = "Couldn't access platform storage: Secret Service: no result found";
    const k = new OsKeychain({ credentialStore: store });
    const err = await k.retrieve('default').catch((e) => e);
    expect(err).toMatchObject({ code: 'KEYCHAIN_UNAVAILABLE' });
    expect(err.hint).toMatch(/gnome-keyring/);
    await expect(k.exists('default')).rejects.toMatchObject({ code: 'KEYCHAIN_UNAVAILABLE' });
  });

  it('turns "no credential" from a store that accepts writes but never returns them into KEYCHAIN_UNAVAILABLE', async () => {
    const store = new FakeStore();
    store.blindReads = true;
    const err = await new OsKeychain({ credentialStore: store }).retrieve('default').catch((e) => e);
    expect(err).toMatchObject({ code: 'KEYCHAIN_UNAVAILABLE' });
    expect(store.entries.size).toBe(0);
  });

  it('a chunk that reads as missing from a store that is broken is KEYCHAIN_UNAVAILABLE, not a damaged entry', async () => {
    // Damaged would let a rotation discard a slot whose key capsules may already be sealed for.
    const store = new FakeStore();
    const k = new OsKeychain({ credentialStore: store, chunkPayloadBytes: 100 });
    await k.store('multi', new Uint8Array(250).fill(7));
    const get = store.get.bind(store);
    store.get = async (account: string) => (account === 'multi' ? get(account) : null); // only chunk 0 answers
    await expect(k.retrieve('multi')).rejects.toMatchObject({ code: 'KEYCHAIN_UNAVAILABLE' });
    store.get = get;
    store.entries.delete([...store.entries.keys()].find((a) => a !== 'multi')!); // a chunk really gone
    await expect(k.retrieve('multi')).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
  });

  it('rejects values too large and chunk sizes beyond the Windows limit', async () => {
    const k = new OsKeychain({ credentialStore: new FakeStore(), chunkPayloadBytes: 100 });
    await expect(k.store('a', bytes(100 * 16 + 1))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(k.store('a', new Uint8Array(0))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(() => new OsKeychain({ credentialStore: new FakeStore(), chunkPayloadBytes: 2600 })).toThrow(/chunkPayloadBytes/);
  });
});

describe('classifyKeyringError', () => {
  const cases: Array<[string, string, string]> = [
    ["Couldn't access platform storage: Secret Service: unlock prompt was dismissed", 'linux', 'KEYCHAIN_ACCESS_DENIED'],
    ["Couldn't access platform storage: AccessDenied", 'linux', 'KEYCHAIN_ACCESS_DENIED'],
    ['Platform failure: DBus error: Using X11 for dbus-daemon autolaunch was disabled at compile time, set your DBUS_SESSION_BUS_ADDRESS instead', 'linux', 'KEYCHAIN_UNAVAILABLE'],
    ["Couldn't access platform storage: Secret Service: no result found", 'linux', 'KEYCHAIN_UNAVAILABLE'],
    ['Platform failure: The user name or passphrase you entered is not correct. (errSecAuthFailed)', 'darwin', 'KEYCHAIN_ACCESS_DENIED'],
    ['Platform failure: User interaction is not allowed.', 'darwin', 'KEYCHAIN_ACCESS_DENIED'],
    ["Couldn't access platform storage: A specified logon session does not exist.", 'win32', 'KEYCHAIN_UNAVAILABLE'],
  ];
  for (const [message, platform, code] of cases) {
    it(`${platform}: ${message.slice(0, 60)} → ${code}`, () => {
      const e = classifyKeyringError('read', 'mongo-capsule/default', new Error(message), platform as NodeJS.Platform);
      expect(e.code).toBe(code);
      expect(e.message).toContain('mongo-capsule/default');
      expect(e.hint).toBeTruthy();
    });
  }

  it('hints name what to install or start on each platform', () => {
    const linux = classifyKeyringError('read', 'x', new Error('Platform failure: DBus error'), 'linux');
    expect(linux.hint).toMatch(/gnome-keyring/);
    expect(linux.hint).toMatch(/dbus-run-session/);
    expect(linux.hint).toMatch(/MONGO_CAPSULE_SECRET_IDENTITY_FILE/);
    expect(classifyKeyringError('read', 'x', new Error('Platform failure'), 'darwin').hint).toMatch(/keychain/i);
    expect(classifyKeyringError('read', 'x', new Error('Platform failure'), 'win32').hint).toMatch(/Credential Manager/);
    expect(classifyKeyringError('read', 'x', new Error('prompt dismissed'), 'linux').hint).toMatch(/--unlock/);
  });
});
