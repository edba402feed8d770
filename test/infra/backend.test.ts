/** What `npm run up` hands to pulumi: a file backend and a passphrase file, unless the user chose otherwise. */
import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ensurePassphraseFile, fileBackendUrl, pulumiEnvironment, selectStackArgs } from '../../infra/backend.ts';
import { ConfigInvalidError } from '../../src/errors.ts';

describe('pulumi environment', () => {
  it('defaults to a file backend under the project and a passphrase file generated once (mode 0600)', async () => {
    const root = await mkdtemp(join(tmpdir(), 'mongo-capsule-backend-'));
    onTestFinished(() => rm(root, { recursive: true, force: true }));
    const first = await pulumiEnvironment(root, {});
    expect(first.env.PULUMI_BACKEND_URL).toBe(`file://${root}/.pulumi-state`);
    expect(first.env.PULUMI_CONFIG_PASSPHRASE_FILE).toBe(join(root, '.pulumi-state', 'passphrase'));
    expect(first.env.PULUMI_CONFIG_PASSPHRASE).toBeUndefined();
    const file = first.env.PULUMI_CONFIG_PASSPHRASE_FILE!;
    const passphrase = await readFile(file, 'utf8');
    expect(passphrase).toMatch(/^[0-9a-f]{64}$/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(root, '.pulumi-state'))).mode & 0o077).toBe(0);
    expect(first.notes.join('\n')).not.toContain(passphrase);

    const second = await pulumiEnvironment(root, {});
    expect(second.env).toEqual(first.env);
    expect(await readFile(file, 'utf8')).toBe(passphrase);
  });

  it('keeps what the user set: backend URL, passphrase or passphrase file', async () => {
    const root = await mkdtemp(join(tmpdir(), 'mongo-capsule-backend-'));
    onTestFinished(() => rm(root, { recursive: true, force: true }));
    const r = await pulumiEnvironment(root, { PULUMI_BACKEND_URL: 'file://~', PULUMI_CONFIG_PASSPHRASE: '' });
    expect(r.env.PULUMI_BACKEND_URL).toBeUndefined();
    expect(r.env.PULUMI_CONFIG_PASSPHRASE_FILE).toBeUndefined();
    const f = await pulumiEnvironment(root, { PULUMI_CONFIG_PASSPHRASE_FILE: '/run/secrets/pulumi' });
    expect(f.env.PULUMI_CONFIG_PASSPHRASE_FILE).toBeUndefined();
    expect(f.env.PULUMI_BACKEND_URL).toBe(fileBackendUrl(root));
  });

  it('tightens an existing passphrase file and refuses an empty one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-backend-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'passphrase');
    await writeFile(file, 'kept');
    await chmod(file, 0o644);
    expect(await ensurePassphraseFile(file)).toBe(false);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).toBe('kept');
    await writeFile(file, '');
    await expect(ensurePassphraseFile(file)).rejects.toBeInstanceOf(ConfigInvalidError);
  });

  it('selects the stack, creating it with the passphrase secrets provider', () => {
    expect(selectStackArgs()).toEqual(['stack', 'select', '--create', 'dev', '--secrets-provider', 'passphrase']);
    expect(selectStackArgs('ci-1')).toContain('ci-1');
    expect(() => selectStackArgs('bad name')).toThrow(ConfigInvalidError);
  });
});
