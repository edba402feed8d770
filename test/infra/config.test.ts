/** Stack configuration: defaults, validation messages that name the key, and the recipient file. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { checkExternalUri, DEFAULTS, loadRecipient, parseStackConfig, unknownConfigKeys } from '../../infra/config.ts';
import { encodeSecretIdentity, generateIdentity, wipeSecretIdentity } from '../../src/crypto/index.ts';
import { ConfigInvalidError } from '../../src/errors.ts';
import { writePublicIdentity } from './support/identity.ts';

const ROOT = '/repo';

function rejects(raw: Parameters<typeof parseStackConfig>[0]): ConfigInvalidError {
  try {
    parseStackConfig(raw, ROOT);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigInvalidError);
    expect((e as ConfigInvalidError).code).toBe('CONFIG_INVALID');
    expect((e as ConfigInvalidError).hint).toBeTruthy();
    return e as ConfigInvalidError;
  }
  throw new Error('expected a ConfigInvalidError');
}

describe('parseStackConfig', () => {
  it('fills in every default from an empty configuration', () => {
    expect(parseStackConfig({}, ROOT)).toEqual({
      mode: 'docker',
      members: 1,
      image: 'mongo:6',
      basePort: 27017,
      publicKeyPath: '/repo/default.pub.json',
      capsuleName: 'default',
      sign: true,
      deleteCapsuleOnDestroy: false,
    });
    expect(DEFAULTS.image).toBe('mongo:6');
  });

  it('accepts every key in docker mode', () => {
    expect(
      parseStackConfig({ members: '3', image: 'mongo:6.0.14', basePort: '28017', publicKeyPath: 'keys/ops.pub.json', capsuleName: 'orders.v2', sign: 'false' }, ROOT),
    ).toMatchObject({ members: 3, image: 'mongo:6.0.14', basePort: 28017, publicKeyPath: '/repo/keys/ops.pub.json', capsuleName: 'orders.v2', sign: false });
    expect(parseStackConfig({ publicKeyPath: '/abs/me.pub.json' }, ROOT).publicKeyPath).toBe('/abs/me.pub.json');
  });

  it('accepts external mode with a uri, and deleteCapsuleOnDestroy', () => {
    expect(parseStackConfig({ mode: 'external', hasUri: true, deleteCapsuleOnDestroy: 'true' }, ROOT)).toMatchObject({
      mode: 'external',
      deleteCapsuleOnDestroy: true,
    });
  });

  it.each([
    [{ members: '2' }, 'mongo-capsule:members must be 1 or 3, got "2"'],
    [{ members: 'three' }, 'mongo-capsule:members must be 1 or 3'],
    [{ basePort: '80' }, 'mongo-capsule:basePort must be a port from 1024 to 65535'],
    [{ basePort: '65535', members: '3' }, 'mongo-capsule:basePort must be a port from 1024 to 65533'],
    [{ basePort: '27017.5' }, 'mongo-capsule:basePort'],
    [{ image: 'mongo 6' }, 'mongo-capsule:image must be a Docker image reference'],
    [{ capsuleName: '-x' }, 'mongo-capsule:capsuleName must be 1-255 letters'],
    [{ capsuleName: 'a/b' }, 'mongo-capsule:capsuleName'],
    [{ mode: 'atlas' }, 'mongo-capsule:mode must be "docker" or "external", got "atlas"'],
    [{ mode: 'external' }, 'mongo-capsule:uri is required when mongo-capsule:mode is external'],
    [{ hasUri: true }, 'mongo-capsule:uri is only used when mongo-capsule:mode is external'],
    [{ mode: 'external', hasUri: true, members: '3' }, 'mongo-capsule:members has no effect when mongo-capsule:mode is external'],
    [{ sign: 'yes' }, 'mongo-capsule:sign must be true or false, got "yes"'],
    [{ deleteCapsuleOnDestroy: '1' }, 'mongo-capsule:deleteCapsuleOnDestroy must be true or false'],
    [{ publicKeyPath: '  ' }, 'mongo-capsule:publicKeyPath must not be empty'],
  ])('rejects %j with a message naming the key', (raw, message) => {
    expect(rejects(raw).message).toContain(message);
  });

  it('tells how to store the uri as a secret', () => {
    expect(rejects({ mode: 'external' }).hint).toContain('pulumi config set --secret mongo-capsule:uri');
  });
});

describe('unknownConfigKeys', () => {
  it('reports typos under the namespace and ignores other namespaces', () => {
    expect(unknownConfigKeys(['mongo-capsule:members', 'mongo-capsule:member', 'docker:host', 'mongo-capsule:uri'])).toEqual(['mongo-capsule:member']);
  });
});

describe('checkExternalUri', () => {
  it('accepts mongodb:// and mongodb+srv:// and never echoes a rejected value', () => {
    expect(() => checkExternalUri('mongodb://u:p@h:27017/?tls=true')).not.toThrow();
    expect(() => checkExternalUri('mongodb+srv://u:p@cluster0.example.net/')).not.toThrow();
    for (const bad of ['postgres://u:hunter2@h/', 'mongodb://', 'hunter2', 'mongodb://u:hunter2@h /']) {
      let message = '';
      try {
        checkExternalUri(bad);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigInvalidError);
        message = `${(e as Error).message} ${(e as ConfigInvalidError).hint}`;
      }
      expect(message).toContain('mongo-capsule:uri');
      expect(message).not.toContain('hunter2');
    }
  });
});

describe('loadRecipient', () => {
  it('loads a public identity file', async () => {
    const file = await writePublicIdentity('alice');
    const r = await loadRecipient(file.path, (p) => import('node:fs/promises').then((fs) => fs.readFile(p, 'utf8')));
    expect(r.identity.kid).toBe(file.kid);
    expect(r.identity.name).toBe('alice');
    expect(r.text).toBe(file.text);
  });

  it('tells the user to run npm run init when the file is missing', async () => {
    const error = await loadRecipient('/nowhere/default.pub.json', (p) => import('node:fs/promises').then((fs) => fs.readFile(p, 'utf8'))).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigInvalidError);
    expect(error.message).toBe('mongo-capsule:publicKeyPath: no public identity at /nowhere/default.pub.json');
    expect(error.hint).toContain('npm run init');
  });

  it('refuses a secret identity file without printing any of it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-cfg-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const id = generateIdentity('ml-kem-1024');
    const secretText = encodeSecretIdentity(id);
    wipeSecretIdentity(id);
    const path = join(dir, 'default.secret.json');
    await writeFile(path, secretText);
    const error = await loadRecipient(path, (p) => import('node:fs/promises').then((fs) => fs.readFile(p, 'utf8'))).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigInvalidError);
    expect(error.message).toContain('is not a valid public identity');
    const secretFields = JSON.parse(secretText) as Record<string, unknown>;
    for (const v of Object.values(secretFields)) {
      if (typeof v === 'string' && v.length > 40) expect(`${error.message} ${error.hint}`).not.toContain(v);
    }
  });
});
