/** A fresh public identity file for the program tests (the secret half is wiped at once). */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { encodePublicIdentity, generateIdentity, toPublicIdentity, wipeSecretIdentity } from '../../../src/crypto/index.ts';

export interface PublicIdentityFile {
  path: string;
  text: string;
  kid: string;
  dir: string;
}

// The program tests read the files until their last test (Pulumi resolves outputs late): removed after the file's
// tests, by a hook this module registers when a test file imports it.
const created: string[] = [];
afterAll(async () => {
  await Promise.all(created.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

export async function writePublicIdentity(name = 'default'): Promise<PublicIdentityFile> {
  const dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-infra-'));
  created.push(dir);
  const id = generateIdentity('ml-kem-1024', { name });
  try {
    const text = encodePublicIdentity(toPublicIdentity(id));
    const path = join(dir, `${name}.pub.json`);
    await writeFile(path, text);
    return { path, text, kid: id.kid, dir };
  } finally {
    wipeSecretIdentity(id);
  }
}
