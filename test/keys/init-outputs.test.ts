// `init` checks its output before its side effect: a --pub-out that cannot be written must leave the keychain
// as it was (it used to store the identity, then fail on the file).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OsKeychain } from '../../src/keys/keychain.ts';
import { runCli } from '../support/cli.ts';
import { osKeychainUnavailableReason } from '../support/os-keychain.ts';
import { describeIf } from '../support/skip.ts';

const SERVICE = `mongo-capsule-test-init-out-${randomBytes(4).toString('hex')}`;
const reason = await osKeychainUnavailableReason(SERVICE);

const run = (args: string[]) => runCli(args, { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE });

describeIf(reason === undefined, `init outputs against the OS keychain: ${reason ?? ''}`)('init: outputs before side effects', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-init-out-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a --pub-out in a missing directory, or a directory itself: refused, nothing stored in the keychain', async () => {
    const keychain = new OsKeychain({ service: SERVICE });
    for (const [i, pubOut] of [join(dir, 'nonexistent', 'x.pub.json'), dir].entries()) {
      const name = `init-out-${i}`;
      const r = await run(['init', '--name', name, '--pub-out', pubOut]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/does not exist; create it first|is a directory/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(await keychain.exists(name)).toBe(false);
      expect((await run(['keys', 'status', '--name', name])).code).toBe(3);
    }
  });
});
