/**
 * `keys backup` / `keys restore` end to end: the identity in the real OS keychain (a test service of its own), the
 * cluster's capsule in the real test server, and, where CSFLE is available, documents written before the keychain
 * was lost. A restore from k of n shares (one of them typed back from its printed form) opens the capsule and
 * decrypts them; k−1 shares, mixed backups and a share with one flipped character fail, naming the share, with
 * nothing stored; shares sealed for custodians whose keys live in another keychain are opened there one by one and
 * restore the same key; after `keys rotate` the old shares are refused as stale.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MongoClient } from 'mongodb';
import { decodePublicIdentity, wipeSecretIdentity } from '../../src/crypto/index.ts';
import { KeyManager, loadSecretIdentity, OsKeychain } from '../../src/keys/index.ts';
import { CapsuleStore, csfleStatus, openEncryptedClient, provisionCluster } from '../../src/mongo/index.ts';
import { runCli } from '../support/cli.ts';
import { osKeychainUnavailableReason } from '../support/os-keychain.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server, uniqueDbName } from '../mongo/support/server.ts';

const SERVICE = `mongo-capsule-test-restore-${randomBytes(6).toString('hex')}`;
const keychainReason = await osKeychainUnavailableReason(SERVICE);
const reason = server.kind === 'none' ? server.reason : keychainReason === undefined ? '' : `keys backup/restore needs the OS keychain: ${keychainReason}`;
const csfle = csfleStatus();
if (reason === '' && !csfle.available) console.warn(`[skipped] keys restore: decrypting documents written before needs mongodb-client-encryption: ${csfle.reason ?? ''}`);

describeIf(reason === '', reason)(`keys backup and keys restore (${server.description})`, () => {
  const db = uniqueDbName('restore');
  const capsuleNamespace = `${db}.capsules`;
  const keyVaultNamespace = `${db}.__keyVault`;
  const name = `rec-${randomBytes(4).toString('hex')}`;
  const keychain = new OsKeychain({ service: SERVICE });
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let plain: MongoClient;
  let pubPath: string;
  let files: string[];

  const run = (args: string[], stdin = '', service = SERVICE) => runCli(args, { ...env, MONGO_CAPSULE_KEYCHAIN_SERVICE: service }, stdin);
  const inKeychain = async () => (await run(['keys', 'status', '--name', name])).code === 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-restore-'));
    env = { MONGO_CAPSULE_STATE_DIR: join(dir, 'state'), MONGODB_URI: server.uri };
    plain = await connectTestClient();
    pubPath = join(dir, `${name}.pub.json`);
    expect((await run(['init', '--name', name, '--pub-out', pubPath])).code).toBe(0);
  });
  afterAll(async () => {
    await run(['keys', 'delete', '--name', name, '--yes']);
    await plain?.db(db).dropDatabase();
    await plain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('seeds the cluster, writes documents, and backs the identity up 2-of-3 (with printed shares)', async () => {
    const manager = new KeyManager({ keychain, cacheTtlMs: 0 });
    const signer = await loadSecretIdentity(name, { keychain, env: {} });
    const provisioned = await provisionCluster({
      uri: server.uri,
      capsuleName: 'app',
      recipient: decodePublicIdentity(readFileSync(pubPath)),
      signer,
      unwrap: (c) => manager.unwrap(c, name),
      capsuleNamespace,
      keyVaultNamespace,
      ...(csfle.available ? { dataKeyAltNames: ['ssn'] } : {}),
    });
    wipeSecretIdentity(signer);
    expect(provisioned.created).toBe(true);
    if (csfle.available) {
      const enc = await openEncryptedClient({ uri: server.uri, capsuleName: 'app', unwrap: (c) => manager.unwrap(c, name), capsuleNamespace, keyVaultNamespace });
      try {
        await enc.client.db(db).collection('people').insertOne({ _id: 1 as never, ssn: await enc.encryptDeterministic('123-45-6789', 'ssn') });
      } finally {
        await enc.close();
      }
    }

    const out = join(dir, 'shares');
    mkdirSync(out);
    const r = await run(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', out, '--pub', pubPath, '--printable']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`checked: ${pubPath.replace(/[.]/g, '\\.')}: kid [0-9a-f]{32} and signer kid`));
    expect(r.stdout).toMatch(/3 shares, any 2 restore it/);
    files = readdirSync(out).sort().map((f) => join(out, f));
    expect(files).toHaveLength(6);
    const again = await run(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exist; nothing was written/);
    const status = await run(['keys', 'status', '--name', name]);
    expect(status.stdout).toMatch(/^backup: 2-of-3 shares of the active key, backup [0-9a-f]{32}/m);
  });

  it('with the keychain lost: k−1 shares, mixed backups and a damaged share fail, naming the share, and store nothing', async () => {
    const [json1, json2, json3] = files.filter((f) => f.endsWith('.json'));
    const other = join(dir, 'other');
    mkdirSync(other);
    expect((await run(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', other])).code).toBe(0);
    const foreign = readdirSync(other).map((f) => join(other, f)).find((f) => f.includes('share-3-of-3'))!;
    expect((await run(['keys', 'delete', '--name', name, '--yes'])).code).toBe(0);

    const few = await run(['keys', 'restore', '--name', name, '--share', json1!, '--pub', pubPath]);
    expect(few.code).toBe(1);
    expect(few.stderr).toMatch(/error: backup [0-9a-f]{32} needs 2 of its 3 shares; 1 given \(share 1\)/);

    const mixed = await run(['keys', 'restore', '--name', name, '--share', json1!, '--share', json2!, '--share', foreign]);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toContain(`${foreign} (share 3 of 3 of backup`);
    expect(mixed.stderr).toContain(`share: ${foreign}`);

    const text = readFileSync(json3!, 'utf8');
    const at = text.indexOf('"share": "') + 20;
    const damaged = join(dir, 'damaged.json');
    writeFileSync(damaged, text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1), { mode: 0o600 });
    const bad = await run(['keys', 'restore', '--name', name, '--share', json1!, '--share', damaged]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`error: ${damaged.replace(/[.]/g, '\\.')}: the share is damaged`));
    expect(await inKeychain()).toBe(false);
  });

  it('a fresh keychain restored from 2 of 3 shares (one typed back) opens the cluster capsule and decrypts what was written before', async () => {
    const store = new CapsuleStore(plain, { namespace: capsuleNamespace });
    const capsuleFile = join(dir, 'app.capsule');
    writeFileSync(capsuleFile, (await store.load('app')).bytes);
    const printed = readFileSync(files.find((f) => f.endsWith('share-2-of-3.txt'))!, 'utf8');
    const typed = printed.split('\n').filter((l) => !l.startsWith('#')).join('\n').toLowerCase();
    const json1 = files.find((f) => f.endsWith('share-1-of-3.json'))!;
    const r = await run(['keys', 'restore', '--name', name, '--share', json1, '--stdin', '--pub', pubPath, '--capsule', capsuleFile], typed);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/checked: 2 shares of backup [0-9a-f]{32} \(2-of-3\) combined to the committed secret/);
    expect(r.stdout).toMatch(/capsule "app" opened, signature verified/);
    expect(r.stdout).toMatch(/^stored in the keychain: identity /m);
    const again = await run(['keys', 'restore', '--name', name, '--share', json1, '--share', files.find((f) => f.endsWith('share-3-of-3.json'))!]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^already present: /m);

    const manager = new KeyManager({ keychain, cacheTtlMs: 0 });
    const cmk = await manager.unwrap((await store.load('app')).bytes, name);
    expect(cmk.length).toBe(96);
    cmk.fill(0);
    if (csfle.available) {
      const enc = await openEncryptedClient({ uri: server.uri, capsuleName: 'app', unwrap: (c) => manager.unwrap(c, name), capsuleNamespace, keyVaultNamespace });
      try {
        expect((await enc.client.db(db).collection('people').findOne({ _id: 1 as never }))!.ssn).toBe('123-45-6789');
      } finally {
        await enc.close();
      }
    }
    expect((await manager.status(name)).kid).toBe(decodePublicIdentity(readFileSync(pubPath)).kid);
  });

  it('shares sealed for custodians on other machines: each opens their own, and the restored key opens the capsule and decrypts', async () => {
    const custodianService = `${SERVICE}-custodians`;
    const pubs = ['alice', 'bob'].map((who) => join(dir, `${who}-${name}.pub.json`));
    const who = ['alice', 'bob'].map((w) => `${w}-${name}`);
    try {
      for (const [i, p] of pubs.entries()) expect((await run(['init', '--name', who[i]!, '--pub-out', p], '', custodianService)).code).toBe(0);
      const out = join(dir, 'sealed');
      mkdirSync(out);
      const b = await run(['keys', 'backup', '--name', name, '--shares', '2', '--threshold', '2', '--out-dir', out, '--pub', pubPath, '--custodian', pubs[0]!, '--custodian', pubs[1]!]);
      expect(b.stderr).toBe('');
      expect(b.code).toBe(0);
      expect((await run(['keys', 'delete', '--name', name, '--yes'])).code).toBe(0);
      const sealedFiles = readdirSync(out).sort().map((f) => join(out, f));
      const notHere = await run(['keys', 'restore', '--name', name, ...sealedFiles.flatMap((f) => ['--share', f]), '--pub', pubPath]);
      expect(notHere.code).toBe(1);
      expect(notHere.stderr).toMatch(/RECOVERY_SHARE_SEALED|whose key is not in/);
      const opened = sealedFiles.map((f, i) => join(dir, `opened-${i + 1}.json`));
      for (const [i, f] of sealedFiles.entries()) {
        expect((await run(['keys', 'open-share', '--share', f, '--identity', who[i]!, '--out', opened[i]!, '--pub', pubPath], '', custodianService)).code).toBe(0);
      }
      const store = new CapsuleStore(plain, { namespace: capsuleNamespace });
      const capsuleFile = join(dir, 'app-sealed.capsule');
      writeFileSync(capsuleFile, (await store.load('app')).bytes);
      const r = await run(['keys', 'restore', '--name', name, ...opened.flatMap((f) => ['--share', f]), '--pub', pubPath, '--capsule', capsuleFile]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/capsule "app" opened, signature verified/);
      if (csfle.available) {
        const manager = new KeyManager({ keychain, cacheTtlMs: 0 });
        const enc = await openEncryptedClient({ uri: server.uri, capsuleName: 'app', unwrap: (c) => manager.unwrap(c, name), capsuleNamespace, keyVaultNamespace });
        try {
          expect((await enc.client.db(db).collection('people').findOne({ _id: 1 as never }))!.ssn).toBe('123-45-6789');
        } finally {
          await enc.close();
        }
      }
    } finally {
      for (const w of who) await run(['keys', 'delete', '--name', w, '--yes'], '', custodianService);
    }
  });

  it('after keys rotate the old shares are refused as stale, and keys status says the active key has no backup', async () => {
    const rot = await run(['keys', 'rotate', '--name', name, '--cluster', '--collection', capsuleNamespace, '--pub-out', pubPath, '--replace']);
    expect(rot.stderr).toBe('');
    expect(rot.code).toBe(0);
    const status = await run(['keys', 'status', '--name', name]);
    expect(status.stdout).toMatch(/^backup: none of the active key [0-9a-f]{32}; the last backup .* is of retired key/m);
    const shares = files.filter((f) => f.endsWith('.json')).slice(0, 2).flatMap((f) => ['--share', f]);
    const held = await run(['keys', 'restore', '--name', name, ...shares]);
    expect(held.code).toBe(1);
    expect(held.stderr).toMatch(/error: the keychain already holds identity .* with key [0-9a-f]{32}; the shares .* are of key [0-9a-f]{32}: a backup made before a rotation/);

    expect((await run(['keys', 'delete', '--name', name, '--yes'])).code).toBe(0);
    const lost = await run(['keys', 'restore', '--name', name, ...shares, '--pub', pubPath]);
    expect(lost.code).toBe(1);
    expect(lost.stderr).toMatch(/the identity was rotated after this backup/);
    expect(lost.stderr).toMatch(/hint: restore from a backup of the current key/);
    expect(await inKeychain()).toBe(false);
  });

  it('usage errors: counts out of range, missing shares', async () => {
    for (const [args, message] of [
      [['keys', 'backup', '--name', name, '--shares', '17', '--threshold', '2', '--out-dir', dir], /--shares must be a whole number from 2 to 16/],
      [['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '4', '--out-dir', dir], /--threshold 4 is larger than --shares 3/],
      [['keys', 'restore', '--name', name], /missing --share <file> \(one per share\) or --stdin/],
    ] as const) {
      const r = await run([...args]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  });
});
