/** A fresh public identity file for the program tests (the secret half is wiped at once). */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePublicIdentity, generateIdentity, toPublicIdentity, wipeSecretIdentity } from '../../../src/crypto/index.ts';

export interface PublicIdentityFile {
  path: string;
  text: string;
  kid: string;
  dir: string;
}

export async function writePublicIdentity(name = 'default'): Promise<PublicIdentityFile> {
  const dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-infra-'));
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
