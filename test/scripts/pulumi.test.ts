/**
 * The pulumi command lines of the scripts, stack naming, backend description and output formatting.
 */
import { describe, expect, it } from 'vitest';
import { resourcePrefix } from '../../infra/topology.ts';
import { e2eConfig, e2ePlanLines, keygenArgs, suiteArgs } from '../../scripts/lib/e2e-plan.mjs';
import {
  checkStackName,
  describeBackend,
  displayCommand,
  e2eStackName,
  failureTail,
  findFreePortRange,
  formatOutputs,
  parseOutputs,
  pulumiArgs,
} from '../../scripts/lib/pulumi.mjs';

describe('pulumiArgs', () => {
  it('every command names its stack and never prompts', () => {
    const all = [
      pulumiArgs.select('s1'),
      pulumiArgs.configSet('s1', 'members', 3),
      pulumiArgs.configGet('s1', 'mode'),
      pulumiArgs.up('s1'),
      pulumiArgs.outputs('s1'),
      pulumiArgs.destroy('s1'),
      pulumiArgs.refresh('s1'),
      pulumiArgs.stackRm('s1'),
    ];
    for (const args of all) {
      expect(args).toContain('--non-interactive');
      expect(args).toContain('s1');
    }
    for (const args of [pulumiArgs.up('s1'), pulumiArgs.destroy('s1'), pulumiArgs.refresh('s1'), pulumiArgs.stackRm('s1')]) expect(args).toContain('--yes');
    expect(pulumiArgs.up('s1')).toContain('--skip-preview');
  });
  it('the stack is created with the passphrase secrets provider', () => {
    expect(pulumiArgs.select('dev')).toEqual(['stack', 'select', '--create', 'dev', '--secrets-provider', 'passphrase', '--non-interactive']);
  });
  it('config values come after `--` (a value starting with "-" is a value) under the mongo-capsule namespace', () => {
    expect(pulumiArgs.configSet('dev', 'basePort', 27017).slice(-3)).toEqual(['mongo-capsule:basePort', '--', '27017']);
  });
  it('secrets only on request', () => {
    expect(pulumiArgs.outputs('dev')).not.toContain('--show-secrets');
    expect(pulumiArgs.outputs('dev', true)).toContain('--show-secrets');
  });
  it('refresh clears pending creates left by an interrupted update', () => {
    expect(pulumiArgs.refresh('dev')).toContain('--clear-pending-creates');
  });
});

describe('stack names', () => {
  it('e2e names are unique, valid, and keep container names short', () => {
    const name = e2eStackName(new Date('2026-11-22T08:15:00.123Z'), 'a1b2c3');
    expect(name).toBe('e2e-20261122-081500-a1b2c3');
    expect(checkStackName(name)).toBe(name);
    expect(e2eStackName()).not.toBe(e2eStackName());
    // Container names are <prefix>-<i>; the prefix must not be truncated (two stacks would collide).
    expect(resourcePrefix('mongo-capsule', name)).toBe(`mongo-capsule-${name}`);
  });
  it('invalid names are refused with a hint', () => {
    expect(() => checkStackName('my stack')).toThrow(/invalid stack name/);
    expect(() => checkStackName('-x')).toThrow();
  });
});

describe('describeBackend', () => {
  it('defaults: local file state under .pulumi-state and a passphrase file, nothing created', () => {
    const b = describeBackend('/work/x', {});
    expect(b.state).toBe('file:///work/x/.pulumi-state (local files)');
    expect(b.passphraseFile).toBe('/work/x/.pulumi-state/passphrase');
    expect(b.secrets).toContain('/work/x/.pulumi-state/passphrase');
  });
  it("the user's environment wins and its secret value is never repeated", () => {
    const b = describeBackend('/work/x', { PULUMI_BACKEND_URL: 's3://bucket', PULUMI_CONFIG_PASSPHRASE: 'hunter2-secret' });
    expect(b.state).toBe('PULUMI_BACKEND_URL from the environment');
    expect(b.stateDir).toBeUndefined();
    expect(b.passphraseFile).toBeUndefined();
    expect(JSON.stringify(b)).not.toContain('hunter2-secret');
  });
});

describe('outputs', () => {
  const outputs = { connectionString: 'mongodb://root:pw-123456@127.0.0.1:27017/?directConnection=true', capsuleName: 'default', kid: 'abc', members: ['localhost:27017'] };
  it('the connection string is hidden unless asked for', () => {
    const hidden = formatOutputs({ ...outputs, connectionString: '[secret]' }, { stack: 'dev' }).join('\n');
    expect(hidden).toContain('connection:   [secret] (npm run up -- --outputs-only --show-connection-string)');
    expect(formatOutputs(outputs, { stack: 'dev', showSecrets: false }).join('\n')).not.toContain('pw-123456');
    expect(formatOutputs(outputs, { stack: 'dev', showSecrets: true }).join('\n')).toContain(outputs.connectionString);
    expect(formatOutputs(outputs, { stack: 'e2e-1' }).join('\n')).toContain('--stack e2e-1');
  });
  it('parseOutputs wants an object', () => {
    expect(parseOutputs('{"kid":"a"}')).toEqual({ kid: 'a' });
    expect(parseOutputs('')).toEqual({});
    expect(() => parseOutputs('[1]')).toThrow(/JSON object/);
  });
  it('failureTail keeps the last non-empty lines of stdout and stderr', () => {
    const e = { stdout: Array.from({ length: 60 }, (_, i) => `line ${i}`).join('\n'), stderr: '\nerror: update failed\n' };
    const tail = failureTail(e, 3).split('\n');
    expect(tail).toEqual(['line 58', 'line 59', 'error: update failed']);
  });
});

describe('displayCommand', () => {
  it('quotes what a shell would split', () => {
    expect(displayCommand(['config', 'set', 'mongo-capsule:publicKeyPath', '--', '/tmp/a b.json'])).toBe("pulumi config set mongo-capsule:publicKeyPath -- '/tmp/a b.json'");
  });
});

describe('findFreePortRange', () => {
  it('finds consecutive free ports', async () => {
    const base = await findFreePortRange(3);
    expect(base).toBeGreaterThanOrEqual(20_000);
    expect(base + 2).toBeLessThan(40_000);
  });
});

describe('e2e plan', () => {
  const plan = e2ePlanLines({ stack: 'e2e-t', members: '3', keep: false, filters: [], env: {} }).join('\n');
  it('lists every step in order, with the real commands', () => {
    const order = [
      'check prerequisites',
      'mongo-capsule keygen --name e2e',
      'pulumi stack select --create e2e-t',
      'mongo-capsule:publicKeyPath',
      'mongo-capsule:basePort',
      'mongo-capsule:members -- 3',
      'pulumi up --stack e2e-t --yes --skip-preview --non-interactive',
      'pulumi stack output --stack e2e-t --json --non-interactive --show-secrets',
      'MONGODB_URI=<connectionString> mongo-capsule doctor --name e2e',
      'MONGO_CAPSULE_TEST_URI=<connectionString> node scripts/test.mjs test/mongo',
      'pulumi destroy --stack e2e-t',
      'pulumi refresh --stack e2e-t',
      'pulumi stack rm e2e-t',
    ];
    let at = -1;
    for (const s of order) {
      const i = plan.indexOf(s);
      expect(i, s).toBeGreaterThan(at);
      at = i;
    }
    expect(plan).toMatch(/always, also after a failure or Ctrl-C\/SIGTERM/);
  });
  it('--keep replaces the teardown with how to remove it later', () => {
    const kept = e2ePlanLines({ stack: 'e2e-t', members: '1', keep: true, filters: ['test/mongo/rotation.test.ts'], env: {} }).join('\n');
    expect(kept).not.toContain('pulumi destroy');
    expect(kept).toContain('npm run down -- --stack e2e-t --remove-stack');
    expect(kept).toContain('node scripts/test.mjs test/mongo/rotation.test.ts');
  });
  it('helpers', () => {
    expect(keygenArgs('/t')).toEqual(['keygen', '--name', 'e2e', '--pub-out', '/t/e2e.pub.json', '--secret-out', '/t/e2e.secret.json']);
    expect(e2eConfig({ pubFile: '/t/e2e.pub.json', basePort: 30000, members: '1' })).toEqual([
      ['publicKeyPath', '/t/e2e.pub.json'],
      ['basePort', 30000],
      ['members', '1'],
    ]);
    expect(suiteArgs([])).toEqual(['scripts/test.mjs', 'test/mongo']);
  });
});
