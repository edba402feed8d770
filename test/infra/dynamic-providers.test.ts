/**
 * The two dynamic providers, serialized and loaded as Pulumi's dynamic-provider host does, then run for real:
 * SecretBytes makes its bytes, and the provisioner drives a stand-in CLI through stdin without ever putting a
 * secret on its command line or in an error.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisioner, type ProvisionInputs, type ProvisionOutputs } from '../../infra/provisioner.ts';
import { secretBytesProvider } from '../../infra/secret-bytes.ts';
import { loadLikeTheHost } from './support/dynamic-host.ts';

type Provider<I, O> = import('@pulumi/pulumi').dynamic.ResourceProvider<I, O>;

describe('SecretBytes provider, as the dynamic-provider host runs it', () => {
  let p: typeof secretBytesProvider;
  let text: string;
  beforeAll(async () => {
    ({ provider: p, text } = await loadLikeTheHost(secretBytesProvider));
  });

  it('serializes without capturing any module of this project', () => {
    expect(text).not.toMatch(/require\(["']\.{1,2}\//);
    expect(text).not.toContain('/infra/');
  });

  it('creates 756 random bytes as 1008 base64 characters, fresh each time', async () => {
    const a = await p.create({ length: 756, encoding: 'base64' });
    const b = await p.create({ length: 756, encoding: 'base64' });
    expect(a.outs!.value).toHaveLength(1008);
    expect(Buffer.from(a.outs!.value, 'base64')).toHaveLength(756);
    expect(a.outs!.value).not.toBe(b.outs!.value);
    expect(a.id).not.toBe(b.id);
    const hex = await p.create({ length: 32, encoding: 'hex' });
    expect(hex.outs!.value).toMatch(/^[0-9a-f]{64}$/);
  });

  it('never regenerates for the same inputs, and replaces when the length or encoding changes', async () => {
    const olds = { length: 756, encoding: 'base64' as const, value: 'x' };
    expect(await p.diff!('id', olds, { length: 756, encoding: 'base64' })).toMatchObject({ changes: false, replaces: [] });
    expect(await p.diff!('id', olds, { length: 512, encoding: 'base64' })).toMatchObject({ changes: true, replaces: ['length'] });
    expect(await p.diff!('id', olds, { length: 756, encoding: 'hex' })).toMatchObject({ changes: true, replaces: ['encoding'] });
  });

  it('rejects bad inputs at check time, naming the property', async () => {
    const r = await p.check!({ length: 1, encoding: 'base64' }, { length: 0, encoding: 'binary' as never });
    expect(r.failures?.map((f) => f.property).sort()).toEqual(['encoding', 'length']);
  });
});

describe('provisioning provider, as the dynamic-provider host runs it', () => {
  let dir: string;
  let cliPath: string;
  let logPath: string;
  let p: Provider<ProvisionInputs, ProvisionOutputs>;
  const password = 'f'.repeat(20) + '0123456789abcdef'.repeat(2) + 'e'.repeat(12);
  const savedPassphrase = process.env.PULUMI_CONFIG_PASSPHRASE;

  const inputs = (over: Partial<ProvisionInputs> = {}): ProvisionInputs => ({
    cliPath,
    mode: 'docker',
    uri: `mongodb://root:${password}@127.0.0.1:27017/?directConnection=true&authSource=admin`,
    members: ['localhost:27017'],
    rootUsername: 'root',
    rootPassword: password,
    capsuleName: 'default',
    recipient: '{"format":"mongo-capsule-public-identity"}',
    sign: true,
    dataKeyAltNames: ['default'],
    timeoutMs: 20_000,
    deleteCapsuleOnDestroy: false,
    ...over,
  });

  async function lastCall(): Promise<{ argv: string[]; input: any; env: string[] } | undefined> {
    try {
      return JSON.parse(await readFile(logPath, 'utf8'));
    } catch {
      return undefined;
    }
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-provisioner-'));
    cliPath = join(dir, 'fake-mongo-capsule.mjs');
    logPath = join(dir, 'calls.json');
    // Stands in for bin/mongo-capsule: records what it got, answers like `provision --json` (the capsule "exists"
    // when named 'existing' or on a re-run with more data keys), or fails the way the CLI does (message on stderr,
    // non-zero exit); this one is careless and echoes secrets, to test the redaction.
    await writeFile(
      cliPath,
      `import { readFileSync, writeFileSync } from 'node:fs';
const raw = readFileSync(0, 'utf8');
const req = JSON.parse(raw);
writeFileSync(${JSON.stringify(logPath)}, JSON.stringify({ argv: process.argv.slice(2), input: req, env: Object.keys(process.env) }));
if (req.capsuleName === 'fail') {
  process.stderr.write('error: login failed for ' + req.uri + ' with ' + (req.rootUser ? req.rootUser.password : '') + '\\nhint: check it\\n');
  process.exit(1);
}
process.stdout.write(JSON.stringify({ capsuleName: req.capsuleName, kid: 'ab'.repeat(16), created: req.capsuleName !== 'existing' && (req.dataKeyAltNames || []).length === 1, dataKeyIds: { default: '6f0e1c2a-0000-4000-8000-000000000001' } }));
`,
    );
    await chmod(cliPath, 0o755);
    process.env.PULUMI_CONFIG_PASSPHRASE = 'must-not-reach-the-cli';
    ({ provider: p } = await loadLikeTheHost(provisioner));
  });

  afterAll(async () => {
    if (savedPassphrase === undefined) delete process.env.PULUMI_CONFIG_PASSPHRASE;
    else process.env.PULUMI_CONFIG_PASSPHRASE = savedPassphrase;
    await rm(dir, { recursive: true, force: true });
  });

  it('runs `provision --json` with the request on stdin, secrets never in argv, Pulumi secrets not inherited', async () => {
    const r = await p.create(inputs());
    expect(r.outs).toMatchObject({ kid: 'ab'.repeat(16), dataKeyIds: { default: '6f0e1c2a-0000-4000-8000-000000000001' }, seededCapsule: true, capsuleName: 'default' });
    expect(r.id).toBe(`default@${'ab'.repeat(16)}`);
    const call = (await lastCall())!;
    expect(call.argv).toEqual(['provision', '--json']);
    expect(JSON.stringify(call.argv)).not.toContain(password);
    expect(JSON.stringify(call.argv)).not.toContain('mongodb://');
    expect(call.input).toEqual({
      protocol: 1,
      uri: `mongodb://root:${password}@127.0.0.1:27017/?directConnection=true&authSource=admin`,
      replicaSet: { members: ['localhost:27017'] },
      rootUser: { username: 'root', password },
      capsuleName: 'default',
      recipient: '{"format":"mongo-capsule-public-identity"}',
      sign: true,
      dataKeyAltNames: ['default'],
      timeoutMs: 20_000,
    });
    expect(call.env).not.toContain('PULUMI_CONFIG_PASSPHRASE');
  });

  it('reports no change for the same inputs, and a change (an idempotent re-run) otherwise', async () => {
    const olds: ProvisionOutputs = { ...inputs(), kid: 'ab'.repeat(16), dataKeyIds: { default: 'x' }, seededCapsule: true };
    expect(await p.diff!('id', olds, inputs())).toMatchObject({ changes: false });
    expect(await p.diff!('id', olds, inputs({ timeoutMs: 1, cliPath: '/elsewhere' }))).toMatchObject({ changes: false });
    expect(await p.diff!('id', olds, inputs({ capsuleName: 'other' }))).toMatchObject({ changes: true, replaces: [] });
    expect(await p.diff!('id', olds, inputs({ members: ['localhost:27017', 'x:1'] }))).toMatchObject({ changes: true });
    // Same capsule: what this stack seeded stays its own. Another capsule found in place: not ours to delete.
    const rerun = await p.update!('id', olds, inputs({ dataKeyAltNames: ['default', 'extra'] }));
    expect(rerun.outs).toMatchObject({ capsuleName: 'default', seededCapsule: true });
    const renamed = await p.update!('id', olds, inputs({ capsuleName: 'existing' }));
    expect(renamed.outs).toMatchObject({ capsuleName: 'existing', seededCapsule: false });
  });

  it('turns a CLI failure into an error with every secret redacted', async () => {
    const uri = 'mongodb+srv://ops:pa%24%24word-123@cluster0.example.net/';
    const error = await p.create(inputs({ capsuleName: 'fail', mode: 'external', uri, members: null, rootUsername: null, rootPassword: null })).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toMatch(/^mongo-capsule provision failed \(exit code 1\): error: login failed for <redacted>/);
    expect(message).not.toContain('pa%24%24word');
    expect(message).not.toContain('ops:');
    const withPassword = await p.create(inputs({ capsuleName: 'fail' })).catch((e: Error) => e);
    expect((withPassword as Error).message).not.toContain(password);
    expect((withPassword as Error).message).toContain('<redacted>');
  });

  it('on delete, removes a capsule only in external mode, when asked, and only one this stack seeded', async () => {
    const outs = (over: Partial<ProvisionOutputs>): ProvisionOutputs => ({ ...inputs(), kid: 'ab'.repeat(16), dataKeyIds: {}, seededCapsule: true, ...over });
    await rm(logPath, { force: true });
    await p.delete!('id', outs({ mode: 'docker', deleteCapsuleOnDestroy: true }));
    await p.delete!('id', outs({ mode: 'external', members: null, deleteCapsuleOnDestroy: false }));
    await p.delete!('id', outs({ mode: 'external', members: null, deleteCapsuleOnDestroy: true, seededCapsule: false }));
    expect(await lastCall()).toBeUndefined();
    await p.delete!('id', outs({ mode: 'external', members: null, rootUsername: null, rootPassword: null, deleteCapsuleOnDestroy: true, capsuleName: 'orders' }));
    const call = (await lastCall())!;
    expect(call.argv).toEqual(['deprovision', '--json']);
    expect(call.input).toMatchObject({ protocol: 1, capsuleName: 'orders', kid: 'ab'.repeat(16) });
  });

  it('says where it looked when the CLI is missing', async () => {
    // The fallback is ./bin/mongo-capsule of the current directory: run from a directory without one.
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const error = await p.create(inputs({ cliPath: join(dir, 'nope') })).catch((e: Error) => e);
      expect((error as Error).message).toBe(
        `mongo-capsule provision: the mongo-capsule CLI was not found (looked for ${join(dir, 'nope')} and ${join(dir, 'bin', 'mongo-capsule')}); run pulumi from the mongo-capsule checkout`,
      );
    } finally {
      process.chdir(cwd);
    }
  });
});
