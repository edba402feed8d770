/**
 * `keys status` (text and --json) says whether the active key has a current backup, from the records `keys backup`
 * keeps under the state directory (public facts only); after `keys rotate` it says the backup is stale, and a
 * restore of those shares says that they restore an older generation of the key. Real OS keychain, test service.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodePublicIdentity } from '../../src/crypto/index.ts';
import { runCli } from '../support/cli.ts';
import { osKeychainUnavailableReason } from '../support/os-keychain.ts';
import { describeIf } from '../support/skip.ts';

const SERVICE = `mongo-capsule-test-bkstatus-${randomBytes(6).toString('hex')}`;
const reason = await osKeychainUnavailableReason(SERVICE);

describeIf(reason === undefined, `backup status needs the OS keychain: ${reason ?? ''}`)('keys status reports the backup of the active key', () => {
  const name = `st-${randomBytes(4).toString('hex')}`;
  let dir: string;
  let pubPath: string;
  const run = (args: string[]) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, MONGO_CAPSULE_STATE_DIR: join(dir, 'state') });
  const status = async () => {
    const r = await run(['keys', 'status', '--name', name, '--json']);
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-bkstatus-'));
    pubPath = join(dir, `${name}.pub.json`);
    expect((await run(['init', '--name', name, '--pub-out', pubPath])).code).toBe(0);
  });
  afterAll(async () => {
    await run(['keys', 'delete', '--name', name, '--yes']);
    rmSync(dir, { recursive: true, force: true });
  });

  it('none, then current after keys backup, then stale after keys rotate; old shares restore an older generation', async () => {
    expect((await status()).backup).toEqual({ state: 'none', current: null, latest: null, recorded: 0 });

    const out = join(dir, 'shares');
    mkdirSync(out);
    const b = await run(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', out, '--pub', pubPath]);
    expect(b.code).toBe(0);
    const oldKid = decodePublicIdentity(readFileSync(pubPath)).kid;
    const backupId = /backup ([0-9a-f]{32}) of identity/.exec(b.stdout)![1];
    const current = await status();
    expect(current.backup.state).toBe('current');
    expect(current.backup.recorded).toBe(1);
    expect(current.backup.current).toEqual(current.backup.latest);
    expect(current.backup.current).toMatchObject({ backupId, kid: oldKid, threshold: 2, shares: 3, outDir: out });
    expect(current.backup.current.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // Public facts only: no share bytes, commitment or share field in the record or the status.
    const share1 = JSON.parse(readFileSync(join(out, `${name}.share-1-of-3.json`), 'utf8'));
    const recordText = readdirSync(join(dir, 'state', 'recovery-backups')).map((f) => readFileSync(join(dir, 'state', 'recovery-backups', f), 'utf8')).join('');
    for (const text of [JSON.stringify(current), recordText]) {
      expect(text).not.toContain(share1.share);
      expect(text).not.toContain(share1.commitment);
      expect(text).not.toMatch(/"share"/);
    }
    expect((await run(['keys', 'status', '--name', name])).stdout).toMatch(new RegExp(`^backup: 2-of-3 shares of the active key, backup ${backupId}, `, 'm'));

    const capsules = join(dir, 'capsules');
    mkdirSync(capsules);
    const rot = await run(['keys', 'rotate', '--name', name, '--capsules', capsules, '--pub-out', pubPath, '--replace', '--retire-unused']);
    expect(rot.code).toBe(0);
    const newKid = decodePublicIdentity(readFileSync(pubPath)).kid;
    expect(newKid).not.toBe(oldKid);
    const stale = await status();
    expect(stale.kid).toBe(newKid);
    expect(stale.backup).toMatchObject({ state: 'stale', current: null, recorded: 1, latest: { backupId, kid: oldKid } });
    const text = (await run(['keys', 'status', '--name', name])).stdout;
    expect(text).toMatch(new RegExp(`^backup: none of the active key ${newKid}; the last backup \\(${backupId}, [^)]+\\) is of retired key ${oldKid}: stale, its shares restore that older generation`, 'm'));

    const shares = ['1', '2'].flatMap((i) => ['--share', join(out, `${name}.share-${i}-of-3.json`)]);
    const held = await run(['keys', 'restore', '--name', name, ...shares]);
    expect(held.code).toBe(1);
    expect(held.stderr).toMatch(new RegExp(`already holds identity ${name} with key ${newKid}; the shares \\(backup ${backupId} of [^)]+\\) are of key ${oldKid}: a backup made before a rotation, which restores an older generation of the key`));
    expect((await run(['keys', 'delete', '--name', name, '--yes'])).code).toBe(0);
    const fresh = await run(['keys', 'restore', '--name', name, ...shares, '--pub', pubPath]);
    expect(fresh.code).toBe(1);
    expect(fresh.stderr).toMatch(/the identity was rotated after this backup, whose shares restore an older generation of the key/);
    expect((await run(['keys', 'status', '--name', name])).code).toBe(3);

    const again = join(dir, 'again');
    mkdirSync(again);
    expect((await run(['init', '--name', name, '--pub-out', join(dir, 'n.pub.json')])).code).toBe(0);
    expect((await run(['keys', 'backup', '--name', name, '--shares', '2', '--threshold', '2', '--out-dir', again])).code).toBe(0);
    const renewed = await status();
    expect(renewed.backup.state).toBe('current');
    expect(renewed.backup.recorded).toBe(2);
    expect(renewed.backup.current.kid).toBe(renewed.kid);

    const recordFile = join(dir, 'state', 'recovery-backups', `${name}.json`);
    const record = JSON.parse(readFileSync(recordFile, 'utf8'));
    for (const bad of ['{"format":"x"}', JSON.stringify({ ...record, backups: record.backups.map((r: object) => ({ ...r, custodians: 'alice' })) })]) {
      writeFileSync(recordFile, bad);
      const damaged = await status();
      expect(damaged.backup.state).toBe('unknown');
      expect(damaged.backup.error).toMatch(/backup records .* are damaged/);
      expect((await run(['keys', 'status', '--name', name])).stdout).toMatch(/^backup: unknown \(the backup records .* are damaged\)/m);
    }
  });
});
