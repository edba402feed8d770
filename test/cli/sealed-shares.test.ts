/**
 * Sealed recovery shares end to end, through the CLI and the real OS keychain. Every person has a keychain of their
 * own (a test service each): the owner, whose identity is backed up, and three custodians. The owner seals share i
 * for custodian i; a custodian opens their own share on their machine; restore on the owner's new machine opens
 * directly the share sealed for a custodian identity it holds (the restorer is custodian carol) and takes the
 * opened ones. Wrong custodian, custodian key absent, damaged, swapped and altered shares are typed errors that name
 * the share, and nothing is written.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodePublicIdentity } from '../../src/crypto/index.ts';
import { runCli } from '../support/cli.ts';
import { osKeychainUnavailableReason } from '../support/os-keychain.ts';
import { describeIf } from '../support/skip.ts';

const tag = randomBytes(5).toString('hex');
const OWNER = `mongo-capsule-test-sealed-owner-${tag}`;
const CUSTODIANS = ['alice', 'bob', 'carol'].map((who) => ({ who, service: `mongo-capsule-test-sealed-${who}-${tag}` }));
const reason = await osKeychainUnavailableReason(OWNER);

describeIf(reason === undefined, `sealed shares need the OS keychain: ${reason ?? ''}`)('keys backup --custodian, keys open-share, keys restore of sealed shares', () => {
  const name = `own-${tag}`;
  let dir: string;
  let out: string;
  let pubPath: string;
  let custodianPubs: string[];
  let sealed: string[];

  const run = (service: string, args: string[]) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: service, MONGO_CAPSULE_STATE_DIR: join(dir, 'state', service) });
  const owner = (args: string[]) => run(OWNER, args);
  const custodian = (i: number, args: string[]) => run(CUSTODIANS[i]!.service, args);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-sealed-'));
    out = join(dir, 'shares');
    mkdirSync(out);
    pubPath = join(dir, `${name}.pub.json`);
    expect((await owner(['init', '--name', name, '--pub-out', pubPath])).code).toBe(0);
    custodianPubs = [];
    for (const [i, c] of CUSTODIANS.entries()) {
      const p = join(dir, `${c.who}.pub.json`);
      // Custodians use different suites, so sealing works for every KEM the project has.
      // Carol is the one who restores: her key is in the keychain of the owner's (new) machine.
      const args = ['init', '--name', c.who, '--pub-out', p, '--suite', ['ml-kem-1024', 'x-wing', 'ml-kem-768'][i]!];
      expect((c.who === 'carol' ? await owner(args) : await custodian(i, args)).code).toBe(0);
      custodianPubs.push(p);
    }
  });
  afterAll(async () => {
    await owner(['keys', 'delete', '--name', name, '--yes']);
    await owner(['keys', 'delete', '--name', 'carol', '--yes']);
    for (const [i, c] of CUSTODIANS.slice(0, 2).entries()) await custodian(i, ['keys', 'delete', '--name', c.who, '--yes']);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a custodian count that differs from the share count, and --printable with custodians, before writing anything', async () => {
    const two = await owner(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', out, '--custodian', custodianPubs[0]!, '--custodian', custodianPubs[1]!]);
    expect(two.code).toBe(1);
    expect(two.stderr).toMatch(/error: keys backup: 2 --custodian files for 3 shares; nothing was written/);
    expect(two.stderr).toMatch(/hint: pass --custodian <pub file> exactly once per share, in share-index order/);
    const printed = await owner(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', out, '--printable', ...custodianPubs.flatMap((p) => ['--custodian', p])]);
    expect(printed.code).toBe(1);
    expect(printed.stderr).toMatch(/--printable writes shares in the clear, --custodian seals them/);
    const twice = await owner(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', out, '--custodian', custodianPubs[0]!, '--custodian', custodianPubs[0]!, '--custodian', custodianPubs[1]!]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/is given twice; nothing was written/);
    expect(readdirSync(out)).toEqual([]);
    expect((await owner(['keys', 'status', '--name', name])).stdout).toMatch(/^backup: none recorded on this machine/m);
  });

  it('seals share i for custodian i: self-describing, signed, mode 0600, no share bytes in the clear', async () => {
    const r = await owner(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', out, '--pub', pubPath, ...custodianPubs.flatMap((p) => ['--custodian', p])]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    sealed = readdirSync(out).sort().map((f) => join(out, f));
    expect(sealed).toHaveLength(3);
    const ownerPub = decodePublicIdentity(readFileSync(pubPath));
    for (const [i, f] of sealed.entries()) {
      expect(statSync(f).mode & 0o777).toBe(0o600);
      const doc = JSON.parse(readFileSync(f, 'utf8'));
      const pub = decodePublicIdentity(readFileSync(custodianPubs[i]!));
      expect(r.stdout).toContain(`${f} (sealed for custodian ${pub.name}, key ${pub.kid})`);
      expect(doc).toMatchObject({ format: 'mongo-capsule-recovery-share', version: 2, name, kid: ownerPub.kid, signerKid: ownerPub.signer.kid, threshold: 2, shares: 3, index: i + 1, custodianName: pub.name, custodianSuite: pub.suite, custodianKid: pub.kid });
      expect(doc).not.toHaveProperty('share');
      expect(doc.sealed).toMatch(/^[A-Za-z0-9+/]+=*$/);
    }
    const status = await owner(['keys', 'status', '--name', name]);
    expect(status.stdout).toMatch(/^backup: 2-of-3 shares of the active key, backup [0-9a-f]{32}/m);
  });

  it('a custodian opens only their own share; damaged, altered and swapped sealed shares are named and nothing is written', async () => {
    const opened = join(dir, 'alice-opened.json');
    const wrong = await custodian(0, ['keys', 'open-share', '--share', sealed[1]!, '--identity', 'alice', '--out', opened]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/is sealed for custodian bob \(key [0-9a-f]{32}\), not for identity alice/);
    expect(wrong.stderr).toMatch(/RECOVERY_SHARE_WRONG_CUSTODIAN|hint: send it to custodian bob/);
    const absent = await custodian(0, ['keys', 'open-share', '--share', sealed[0]!, '--identity', 'nobody', '--out', opened]);
    expect(absent.code).toBe(1);
    expect(absent.stderr).toMatch(/whose key is not in .*\(no identity nobody here\)/);

    const doc = JSON.parse(readFileSync(sealed[0]!, 'utf8'));
    // A second backup sealed for the same custodians: its share 1 is also alice's, of the same length.
    const out2 = join(dir, 'second');
    mkdirSync(out2);
    expect((await owner(['keys', 'backup', '--name', name, '--shares', '3', '--threshold', '2', '--out-dir', out2, ...custodianPubs.flatMap((p) => ['--custodian', p])])).code).toBe(0);
    const other = JSON.parse(readFileSync(join(out2, `${name}.share-1-of-3.json`), 'utf8'));
    expect(other.custodianKid).toBe(doc.custodianKid);
    const variants: [string, Record<string, unknown>, RegExp][] = [
      ['damaged', { ...doc, sealed: (doc.sealed[0] === 'A' ? 'B' : 'A') + doc.sealed.slice(1) }, /signature does not verify .*damaged, altered or swapped/],
      ['altered', { ...doc, index: 2 }, /signature does not verify/],
      ['swapped', { ...doc, kemCipherText: other.kemCipherText, sealed: other.sealed, shareDigest: other.shareDigest }, /signature does not verify/],
      ['resigned', { ...doc, custodianKid: decodePublicIdentity(readFileSync(custodianPubs[1]!)).kid }, /signature does not verify/],
    ];
    for (const [what, v, message] of variants) {
      const f = join(dir, `${what}.json`);
      writeFileSync(f, JSON.stringify(v), { mode: 0o600 });
      const r = await custodian(0, ['keys', 'open-share', '--share', f, '--identity', 'alice', '--out', opened]);
      expect(r.code, what).toBe(1);
      expect(r.stderr, what).toMatch(message);
      expect(existsSync(opened)).toBe(false);
    }

    const wrongPub = await custodian(0, ['keys', 'open-share', '--share', sealed[0]!, '--identity', 'alice', '--out', opened, '--pub', custodianPubs[1]!]);
    expect(wrongPub.code).toBe(1);
    expect(wrongPub.stderr).toMatch(/is signed by key [0-9a-f]{32} for key [0-9a-f]{32}, but .* is key/);
    const ok = await custodian(0, ['keys', 'open-share', '--share', sealed[0]!, '--identity', 'alice', '--out', opened, '--pub', pubPath]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`opened share 1 of 3 of backup [0-9a-f]{32} .*signature by [0-9a-f]{32} verified against`));
    expect(statSync(opened).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(opened, 'utf8'))).toMatchObject({ version: 1, index: 1, name });
    const again = await custodian(0, ['keys', 'open-share', '--share', sealed[0]!, '--identity', 'alice', '--out', opened]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/refusing to overwrite existing file/);
  });

  it('with the owner key lost: a share whose custodian is not here is refused by name; one opened share plus carol\'s sealed one restore it', async () => {
    const before = (await owner(['keys', 'status', '--name', name, '--json'])).stdout;
    const kid = JSON.parse(before).kid as string;
    expect((await owner(['keys', 'delete', '--name', name, '--yes'])).code).toBe(0);

    const notHere = await owner(['keys', 'restore', '--name', name, '--share', sealed[1]!, '--share', sealed[2]!, '--pub', pubPath]);
    expect(notHere.code).toBe(1);
    expect(notHere.stderr).toMatch(/is sealed for custodian bob \(key [0-9a-f]{32}\), whose key is not in .*; nothing was written/);
    expect(notHere.stderr).toContain(`share: ${sealed[1]}`);
    expect(notHere.stderr).toMatch(/hint: send it to custodian bob, who opens it with `mongo-capsule keys open-share/);
    expect((await owner(['keys', 'status', '--name', name])).code).toBe(3);

    const opened = join(dir, 'alice-opened.json');
    const r = await owner(['keys', 'restore', '--name', name, '--share', opened, '--share', sealed[2]!, '--pub', pubPath]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/opened: .*share 3 of 3, sealed for custodian carol \(key [0-9a-f]{32}\), held in this keychain/);
    expect(r.stdout).toMatch(/^stored in the keychain: identity /m);
    expect(JSON.parse((await owner(['keys', 'status', '--name', name, '--json'])).stdout).kid).toBe(kid);
  });
});
