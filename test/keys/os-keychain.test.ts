/**
 * The OS keychain for real: @napi-rs/keyring against the Secret Service that `npm test` starts (a private D-Bus
 * session with a fresh gnome-keyring; see scripts/test.mjs). Everything uses a random test-only service name, so
 * a user's own `mongo-capsule` entries are never read or touched. Without a reachable keychain these tests skip
 * and print why.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { generateCmk, parseCapsule, wrapKey } from '../../src/crypto/capsule.ts';
import { encodeSecretIdentity, generateIdentity } from '../../src/crypto/identity.ts';
import { FileCapsuleRepository } from '../../src/keys/file-capsule-repository.ts';
import { KeyringCredentialStore, OsKeychain, WINDOWS_MAX_BLOB_BYTES } from '../../src/keys/keychain.ts';
import { KeyManager } from '../../src/keys/manager.ts';
import { migrateLegacySecret } from '../../src/keys/migrate.ts';
import { describeIf } from '../support/skip.ts';

const SERVICE = `mongo-capsule-test-${randomBytes(6).toString('hex')}`;

async function probe(): Promise<string | undefined> {
  if (process.platform === 'linux' && !process.env.DBUS_SESSION_BUS_ADDRESS) {
    return 'no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset): run the tests with `npm test`, which starts one with gnome-keyring (install it with `npm run setup`)';
  }
  try {
    const k = new OsKeychain({ service: SERVICE });
    const value = randomBytes(24);
    await k.store('probe', value);
    const back = await k.retrieve('probe');
    await k.delete('probe');
    if (back === undefined || !Buffer.from(back).equals(value)) return 'the OS keychain did not return a value it accepted';
    return undefined;
  } catch (e) {
    return `the OS keychain is not usable here: ${e instanceof Error ? e.message : String(e)}`;
  }
}

const reason = await probe();
const describeKeychain = describeIf(reason === undefined, `OS keychain tests: ${reason ?? ''}`);
const store = reason === undefined ? new KeyringCredentialStore(SERVICE) : undefined;
const used = new Set<string>();
const account = (base: string) => {
  const a = `${base}-${randomBytes(4).toString('hex')}`;
  used.add(a);
  return a;
};

afterAll(async () => {
  if (store === undefined) return;
  const k = new OsKeychain({ credentialStore: store });
  for (const a of used) for (const slot of ['', '~next', '~prev']) await k.delete(`${a}${slot}`).catch(() => undefined);
});

describeKeychain('OS keychain (real Secret Service / Keychain / Credential Manager)', () => {
  it('stores, reads back, reports existence and deletes', async () => {
    const k = new OsKeychain({ service: SERVICE });
    const a = account('basic');
    const value = randomBytes(300);
    await k.store(a, value);
    expect(await k.exists(a)).toBe(true);
    expect(Buffer.from((await k.retrieve(a))!)).toEqual(value);
    expect(await k.delete(a)).toBe(true);
    expect(await k.retrieve(a)).toBeUndefined();
    expect(await k.exists(a)).toBe(false);
    expect(await k.delete(a)).toBe(false);
  });

  it('reports a verified miss for an account that was never written', async () => {
    expect(await new OsKeychain({ service: SERVICE }).retrieve(account('never'))).toBeUndefined();
  });

  it('chunks an NTRU-sized secret identity across entries, each under the Windows blob limit', async () => {
    const k = new OsKeychain({ service: SERVICE });
    const a = account('ntru');
    const value = randomBytes(3900);
    await k.store(a, value);
    const head = await store!.get(a);
    const second = await store!.get(`${a}#1`);
    expect(head!.length).toBeLessThanOrEqual(WINDOWS_MAX_BLOB_BYTES);
    expect(second!.length).toBeLessThanOrEqual(WINDOWS_MAX_BLOB_BYTES);
    expect(Buffer.from((await k.retrieve(a))!)).toEqual(value);
    await k.store(a, randomBytes(100));
    expect(await store!.get(`${a}#1`)).toBeNull();
    await k.delete(a);
    expect(await store!.get(a)).toBeNull();
  });

  it('reports an entry that mongo-capsule did not write as damaged', async () => {
    const a = account('foreign');
    await store!.set(a, new TextEncoder().encode('not ours'));
    await expect(new OsKeychain({ service: SERVICE }).retrieve(a)).rejects.toMatchObject({ code: 'KEYCHAIN_ENTRY_CORRUPT' });
  });

  it('runs the key manager end to end: initialize, unwrap with the cache, rotate a capsule directory, delete', async () => {
    const name = account('mgr');
    const manager = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }) });
    const pub = await manager.initialize(name);
    await expect(manager.initialize(name)).rejects.toMatchObject({ code: 'ALREADY_INITIALIZED' });
    const dir = mkdtempSync(join(tmpdir(), 'mc-os-rotate-'));
    try {
      const signer = await manager.getSecretIdentity(name);
      const cmk = generateCmk();
      writeFileSync(join(dir, 'a.capsule'), wrapKey(cmk, pub, { name: 'a', signer }));
      expect(await manager.unwrap(readFileSync(join(dir, 'a.capsule')), name)).toEqual(cmk);
      const report = await manager.rotate(name, [new FileCapsuleRepository(dir)]);
      const rotated = new Uint8Array(readFileSync(join(dir, 'a.capsule')));
      expect(parseCapsule(rotated).header.kid).toBe(report.newKid);
      expect(await manager.unwrap(rotated, name)).toEqual(cmk);
      expect((await manager.status(name)).slots).toEqual({ active: report.newKid, next: null, prev: null });
      await manager.delete(name);
      expect(await manager.isInitialized(name)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('migrates a --secret-out file into the keychain and deletes the file', async () => {
    const name = account('mig');
    const dir = mkdtempSync(join(tmpdir(), 'mc-os-migrate-'));
    try {
      const id = generateIdentity('ml-kem-1024', { name });
      const file = join(dir, 'id.secret.json');
      writeFileSync(file, encodeSecretIdentity(id), { mode: 0o600 });
      const keychain = new OsKeychain({ service: SERVICE });
      const r = await migrateLegacySecret(file, { keychain });
      expect(r).toMatchObject({ kind: 'secret-identity', deleted: true });
      expect(new TextDecoder().decode(await keychain.retrieve(name))).toBe(encodeSecretIdentity(id));
      expect(() => readFileSync(file)).toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const haveDbus = spawnSync('sh', ['-c', 'command -v dbus-run-session && command -v gnome-keyring-daemon && command -v secret-tool'], { encoding: 'utf8' }).status === 0;
describeIf(process.platform === 'linux' && haveDbus, 'Secret Service failure modes: needs dbus-run-session, gnome-keyring-daemon and secret-tool (`npm run setup`)')(
  'Secret Service failure modes, as typed errors (each in its own process)',
  () => {
    // A child process gets its own environment; the code under test runs there and prints the error code.
    const script = `
      const { OsKeychain } = await import(${JSON.stringify(new URL('../../src/keys/keychain.ts', import.meta.url).href)});
      try { await new OsKeychain({ service: 'mongo-capsule-test-failure' }).retrieve('default'); console.log('OK'); }
      catch (e) { console.log(e.code); }`;
    const runChild = (shell: string, env: NodeJS.ProcessEnv) => {
      const node = `${JSON.stringify(process.execPath)} --import tsx -e "$SCRIPT"`;
      const r = spawnSync('sh', ['-c', shell.replace('NODE', node)], { env: { ...env, SCRIPT: script }, encoding: 'utf8', timeout: 30_000 });
      return r.stdout.trim().split('\n').pop();
    };

    it('no D-Bus session → KEYCHAIN_UNAVAILABLE (not "missing")', () => {
      const env = { ...process.env, DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent/bus' };
      expect(runChild('NODE', env)).toBe('KEYCHAIN_UNAVAILABLE');
    });

    it('a locked keyring whose unlock prompt cannot be shown → KEYCHAIN_ACCESS_DENIED', () => {
      const home = mkdtempSync(join(tmpdir(), 'mc-locked-'));
      try {
        const env = { ...process.env, XDG_DATA_HOME: join(home, 'data'), XDG_RUNTIME_DIR: home, DISPLAY: '' };
        // First session: create the login keyring with one password. Second: start the daemon without unlocking.
        const created = spawnSync(
          'dbus-run-session',
          ['--', 'sh', '-c', 'printf first | gnome-keyring-daemon --unlock --components=secrets >/dev/null && printf x | secret-tool store --label=t service mongo-capsule-test-failure account seed'],
          { env, timeout: 30_000 },
        );
        expect(created.status).toBe(0);
        expect(runChild("dbus-run-session -- sh -c 'gnome-keyring-daemon --start --components=secrets >/dev/null; exec \"$0\" \"$@\"' sh -c 'NODE'", env)).toBe('KEYCHAIN_ACCESS_DENIED');
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    });

    it('a Secret Service without a default keyring (reads say "none", writes fail) → KEYCHAIN_UNAVAILABLE', () => {
      const home = mkdtempSync(join(tmpdir(), 'mc-nocollection-'));
      try {
        const env = { ...process.env, XDG_DATA_HOME: join(home, 'data'), XDG_RUNTIME_DIR: home, DISPLAY: '' };
        expect(runChild("dbus-run-session -- sh -c 'gnome-keyring-daemon --start --components=secrets >/dev/null; exec \"$0\" \"$@\"' sh -c 'NODE'", env)).toBe('KEYCHAIN_UNAVAILABLE');
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    });
  },
);
