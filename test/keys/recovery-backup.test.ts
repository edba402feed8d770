/**
 * Backup and restore against the real OS keychain (a test service of its own): share files all-or-nothing even
 * when a write fails or the process dies between two files, a restore that fails leaves nothing stored, and a
 * backup of a rotated-out key is refused as stale.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, expect, it } from 'vitest';
import { decodePublicIdentity, encodePublicIdentity, generateCmk, generateIdentity, toPublicIdentity, wipeSecretIdentity, wrapKey } from '../../src/crypto/index.ts';
import { AlreadyInitializedError, FileNotFoundError, NotInitializedError, RecoveryShareStaleError } from '../../src/errors.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { backupIdentity, backupStatusLine, listBackups, readSealedShare, restoreIdentity, shareFileNames, type PublicFile } from '../../src/keys/recovery-backup.ts';
import { combineShares, decodeShareFile, type RecoveryShare } from '../../src/keys/recovery-shares.ts';
import { openSealedShare } from '../../src/keys/recovery-sealed.ts';
import { osKeychainUnavailableReason } from '../support/os-keychain.ts';
import { describeIf } from '../support/skip.ts';
import { FaultPlan, FaultyKeychain, InjectedFault, MemoryRepository } from './support.ts';

const SERVICE = `mongo-capsule-test-backup-${randomBytes(6).toString('hex')}`;
const reason = await osKeychainUnavailableReason(SERVICE);

describeIf(reason === undefined, `recovery backups against the OS keychain: ${reason ?? ''}`)('recovery backups against the OS keychain', () => {
  const keychain = new OsKeychain({ service: SERVICE });
  const manager = new KeyManager({ keychain, cacheTtlMs: 0 });
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let name: string;
  let pub: PublicFile;

  const readShares = (paths: string[]): RecoveryShare[] => paths.filter((p) => p.endsWith('.json')).map((p) => decodeShareFile(readFileSync(p), p));
  const shareFiles = (d: string) => readdirSync(d).filter((f) => f.includes('.share-'));

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-backup-'));
    env = { MONGO_CAPSULE_STATE_DIR: join(dir, 'state') };
    name = `bk-${randomBytes(4).toString('hex')}`;
    const identity = await manager.initialize(name, 'ml-kem-768');
    pub = { path: join(dir, `${name}.pub.json`), identity };
    writeFileSync(pub.path, encodePublicIdentity(identity));
  });
  afterEach(async () => {
    await manager.delete(name).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  afterAll(() => manager.clearCache());

  it('writes n share files of mode 0600 after checking the public file, records the backup, restores from any k', async () => {
    const out = join(dir, 'out');
    mkdirSync(out);
    const r = await backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: out, publicFile: pub, printable: true, env });
    expect(r.checked).toMatch(/opened a probe sealed for it and its signature verified/);
    expect(r.files.map((f) => f.slice(out.length + 1))).toEqual(shareFileNames(name, 3, true));
    for (const f of r.files) expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(readdirSync(out).sort()).toEqual(shareFileNames(name, 3, true).sort()); // no staging left behind
    expect(await backupStatusLine(name, pub.identity.kid, env)).toMatch(new RegExp(`^backup: 2-of-3 shares of the active key, backup ${r.backup.backupId}`));
    expect(JSON.stringify(await listBackups(name, env))).not.toMatch(/share"/);

    await manager.delete(name);
    const shares = readShares([r.files[2]!, r.files[0]!]);
    const restored = await restoreIdentity({ keychain, name, shares, publicFile: pub, env });
    expect(restored.alreadyPresent).toBe(false);
    expect((await manager.status(name)).kid).toBe(pub.identity.kid);
    const again = await restoreIdentity({ keychain, name, shares: readShares([r.files[1]!, r.files[2]!]), env });
    expect(again.alreadyPresent).toBe(true);
  });

  it('refuses when any share file exists, before writing any', async () => {
    const names = shareFileNames(name, 3, false);
    writeFileSync(join(dir, names[2]!), 'mine');
    await expect(backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: dir, env })).rejects.toMatchObject({ code: 'FILE_EXISTS', message: expect.stringMatching(/already exists; nothing was written/) });
    expect(shareFiles(dir)).toEqual([names[2]]);
    expect(readFileSync(join(dir, names[2]!), 'utf8')).toBe('mine');
    await expect(backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: join(dir, 'nope'), env })).rejects.toBeInstanceOf(FileNotFoundError);
    const other: PublicFile = { path: 'other.pub.json', identity: toPublicIdentity(generateIdentity('ml-kem-768', { name })) };
    await expect(backupIdentity({ keychain, name, threshold: 2, shares: 2, outDir: join(dir, 'out2'), publicFile: other, env })).rejects.toThrow(/other\.pub\.json is key [0-9a-f]{32} .*, but identity .* is key [0-9a-f]{32} .*; nothing was written/);
  });

  it('a write that fails at the k-th file leaves no share file; a kill there leaves none either, and a rerun writes a whole set', async () => {
    let snapshot: string | undefined;
    const faults = {
      beforeWrite: async (i: number) => {
        if (i !== 2) return;
        snapshot = join(dir, 'killed');
        cpSync(join(dir, 'out'), snapshot, { recursive: true }); // what a kill at this moment leaves on disk
        throw new InjectedFault('write 2');
      },
    };
    mkdirSync(join(dir, 'out'));
    await expect(backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: join(dir, 'out'), env, faults })).rejects.toBeInstanceOf(InjectedFault);
    expect(readdirSync(join(dir, 'out'))).toEqual([]);
    expect(shareFiles(snapshot!)).toEqual([]);
    expect(await listBackups(name, env)).toEqual([]);
    const rerun = await backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: snapshot!, env });
    expect(rerun.resumed).toBe(false);
    expect(readdirSync(snapshot!).sort()).toEqual(shareFileNames(name, 3, false).sort()); // the staged leftovers are gone
  });

  it('a kill between two links into place: the rerun finishes the same backup; an error there undoes the links', async () => {
    let snapshot: string | undefined;
    let expectedId: string | undefined;
    const out = join(dir, 'out');
    mkdirSync(out);
    const faults = {
      beforeLink: async (i: number) => {
        if (i !== 2) return;
        snapshot = join(dir, 'killed');
        cpSync(out, snapshot, { recursive: true });
        expectedId = /backup-([0-9a-f]{32})/.exec(readdirSync(out).find((f) => f.endsWith('.staging'))!)![1];
        throw new InjectedFault('link 2');
      },
    };
    await expect(backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: out, env, faults })).rejects.toBeInstanceOf(InjectedFault);
    expect(readdirSync(out)).toEqual([]);
    // cpSync copies rather than links, so re-create the one published link the kill left behind.
    const staging = readdirSync(snapshot!).find((f) => f.endsWith('.staging'))!;
    const first = shareFileNames(name, 3, false)[0]!;
    rmSync(join(snapshot!, first));
    linkSync(join(snapshot!, staging, first), join(snapshot!, first));
    const rerun = await backupIdentity({ keychain, name, threshold: 3, shares: 5, outDir: snapshot!, env });
    expect(rerun.resumed).toBe(true);
    expect(rerun.backup.backupId).toBe(expectedId);
    expect(readdirSync(snapshot!).sort()).toEqual(shareFileNames(name, 3, false).sort());
    expect(new Set(readShares(rerun.files).map((s) => s.backupId))).toEqual(new Set([expectedId]));
  });

  it('a sealed backup killed between two links is finished by the rerun: sealed files, custodians recorded, they open and combine', async () => {
    const custodians = ['alice', 'bob', 'carol'].map((who) => generateIdentity('x-wing', { name: who }));
    const custodianFiles: PublicFile[] = custodians.map((c) => ({ path: `${c.name}.pub.json`, identity: toPublicIdentity(c) }));
    const out = join(dir, 'out');
    mkdirSync(out);
    let snapshot: string | undefined;
    const faults = {
      beforeLink: async (i: number) => {
        if (i !== 2) return;
        snapshot = join(dir, 'killed');
        cpSync(out, snapshot, { recursive: true });
        throw new InjectedFault('link 2');
      },
    };
    await expect(backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: out, env, faults, custodians: custodianFiles })).rejects.toBeInstanceOf(InjectedFault);
    expect(readdirSync(out)).toEqual([]);
    const staging = readdirSync(snapshot!).find((f) => f.endsWith('.staging'))!;
    const first = shareFileNames(name, 3, false)[0]!;
    rmSync(join(snapshot!, first));
    linkSync(join(snapshot!, staging, first), join(snapshot!, first));
    const rerun = await backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: snapshot!, env });
    expect(rerun.resumed).toBe(true);
    expect(rerun.backup.custodians).toEqual(custodians.map((c) => ({ name: c.name, kid: c.kid })));
    expect((await listBackups(name, env)).pop()!.custodians).toEqual(rerun.backup.custodians);
    const opened = rerun.files.map((f, i) => {
      const sealed = readSealedShare(readFileSync(f), f);
      expect(sealed?.custodian.kid).toBe(custodians[i]!.kid);
      return openSealedShare(sealed!, custodians[i]!);
    });
    const { identity } = await combineShares(opened.slice(1), name);
    expect(identity.kid).toBe(pub.identity.kid);
    wipeSecretIdentity(identity);
    for (const c of custodians) wipeSecretIdentity(c);
    await expect(backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: join(dir, 'none'), env, custodians: custodianFiles.slice(0, 2) })).rejects.toThrow(/2 custodians for 3 shares; nothing was written/);
  });

  it('damaged backup records: keys status says so, and a backup stops before writing any share', async () => {
    mkdirSync(join(dir, 'state', 'recovery-backups'), { recursive: true });
    writeFileSync(join(dir, 'state', 'recovery-backups', `${name}.json`), '{"format":"mongo-capsule-backup-records","backups":[null]}');
    expect(await backupStatusLine(name, pub.identity.kid, env)).toMatch(/^backup: unknown \(the backup records .* are damaged\)/);
    await expect(backupIdentity({ keychain, name, threshold: 2, shares: 2, outDir: dir, env })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect(shareFiles(dir)).toEqual([]);
  });

  it('a restore whose keychain write fails stores nothing', async () => {
    const r = await backupIdentity({ keychain, name, threshold: 2, shares: 2, outDir: dir, env });
    await manager.delete(name);
    const plan = new FaultPlan();
    plan.failAt = 1;
    plan.mode = 'after'; // the write took effect, then the acknowledgement was lost
    await expect(restoreIdentity({ keychain: new FaultyKeychain(keychain, plan), name, shares: readShares(r.files), env })).rejects.toBeInstanceOf(InjectedFault);
    expect(await keychain.exists(name)).toBe(false);
    await expect(manager.getSecretIdentity(name)).rejects.toBeInstanceOf(NotInitializedError);
  });

  it('after keys rotate, the old shares are refused as stale: with the new key in the keychain, and with only its public file', async () => {
    const r = await backupIdentity({ keychain, name, threshold: 2, shares: 3, outDir: dir, publicFile: pub, env });
    const repo = new MemoryRepository();
    const cmk = generateCmk();
    const old = await manager.getSecretIdentity(name);
    repo.capsules.set('app', wrapKey(cmk, old, { name: 'app', signer: old }));
    const rotated = await manager.rotate(name, [repo]);
    writeFileSync(pub.path, encodePublicIdentity(rotated.publicIdentity));
    const newPub: PublicFile = { path: pub.path, identity: decodePublicIdentity(readFileSync(pub.path)) };
    expect(await backupStatusLine(name, rotated.newKid, env)).toMatch(/^backup: none of the active key .*is of retired key/);

    await expect(restoreIdentity({ keychain, name, shares: readShares(r.files.slice(0, 2)), env })).rejects.toThrow(RecoveryShareStaleError);
    await manager.delete(name);
    const stale = restoreIdentity({ keychain, name, shares: readShares(r.files.slice(1)), publicFile: newPub, env });
    await expect(stale).rejects.toThrow(/rebuild key .* but .* names key .*: the identity was rotated after this backup/);
    expect(await keychain.exists(name)).toBe(false);
    // A capsule re-sealed for the new key cannot be opened by the old one: refused before anything is stored.
    const capsule = { path: 'app.capsule', bytes: repo.capsules.get('app')! };
    await expect(restoreIdentity({ keychain, name, shares: readShares(r.files.slice(1)), capsule, env })).rejects.toThrow(/sealed for key .*; the shares .* cannot open it/);
    expect(await keychain.exists(name)).toBe(false);
    // Explicitly asked for: stored, into the empty slot only.
    const forced = await restoreIdentity({ keychain, name, shares: readShares(r.files.slice(1)), publicFile: newPub, allowStale: true, env });
    expect(forced.publicIdentity.kid).toBe(r.backup.kid);
    expect(forced.checked.join('\n')).toMatch(/stored anyway \(--allow-stale\)/);
  });

  it('refuses to restore over a rotation in progress and from a read-only keychain', async () => {
    const r = await backupIdentity({ keychain, name, threshold: 2, shares: 2, outDir: dir, env });
    await keychain.store(`${name}~next`, new Uint8Array([1]));
    try {
      await expect(restoreIdentity({ keychain, name, shares: readShares(r.files), env })).rejects.toBeInstanceOf(AlreadyInitializedError);
      await expect(backupIdentity({ keychain, name, threshold: 2, shares: 2, outDir: dir, env })).rejects.toThrow(/rotation .* is unfinished/);
    } finally {
      await keychain.delete(`${name}~next`);
    }
    const readOnly = { ...keychain, readOnly: true, description: 'env', store: keychain.store.bind(keychain), retrieve: keychain.retrieve.bind(keychain), delete: keychain.delete.bind(keychain), exists: keychain.exists.bind(keychain) };
    await expect(restoreIdentity({ keychain: readOnly, name, shares: readShares(r.files), env })).rejects.toMatchObject({ code: 'KEYCHAIN_READ_ONLY' });
  });
});
