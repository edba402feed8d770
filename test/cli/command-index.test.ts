/**
 * The CLI's command table (src/cli/command-index.ts) against the group modules it stands for, and the point of it:
 * `--help` and `--version` start without loading the MongoDB driver, the crypto suites or the keychain addon.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMAND_INDEX, GROUP_LOADERS, loadCommand, type CommandGroup } from '../../src/cli/command-index.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('the command table', () => {
  it('names every command of every group module, in the group it lives in, with the summary the module gives', async () => {
    const fromModules: Array<[string, CommandGroup, string]> = [];
    for (const group of Object.keys(GROUP_LOADERS) as CommandGroup[]) {
      for (const [name, command] of Object.entries(await GROUP_LOADERS[group]())) fromModules.push([name, group, command.summary]);
    }
    const fromIndex = Object.entries(COMMAND_INDEX).map(([name, e]): [string, CommandGroup, string] => [name, e.group, e.summary]);
    expect(fromIndex).toEqual(fromModules);
  });

  it('loads a command by name, and nothing for a name that is not one (nor an Object prototype key)', async () => {
    expect((await loadCommand('keygen'))?.usage).toMatch(/keygen/);
    expect(await loadCommand('nope')).toBeUndefined();
    expect(await loadCommand('constructor')).toBeUndefined();
    expect(await loadCommand('__proto__')).toBeUndefined();
  });
});

describe('lazy loading', () => {
  const temp = mkdtempSync(join(tmpdir(), 'mongo-capsule-lazy-'));
  afterAll(() => rmSync(temp, { recursive: true, force: true }));
  // A resolve hook that refuses the heavy dependencies: a run that does not need them must not notice it.
  const hooks = join(temp, 'hooks.mjs');
  writeFileSync(hooks, `const heavy = /^(mongodb|mongodb-client-encryption|@noble\\/post-quantum|@napi-rs\\/keyring)(\\/|$)/;
export async function resolve(specifier, context, next) {
  if (heavy.test(specifier)) throw new Error('refused heavy import ' + specifier);
  return next(specifier, context);
}
`);
  const register = join(temp, 'register.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);

  function cli(argv: string[]) {
    const code = `const { main } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'src', 'cli.ts')).href)}); process.exitCode = await main(${JSON.stringify(argv)});`;
    return spawnSync(process.execPath, ['--import', 'tsx/esm', '--import', register, '--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  }

  it('--help, --version and an unknown command load no heavy dependency', () => {
    const help = cli(['--help']);
    expect(help.stderr).toBe('');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/rotate-cmk/);
    expect(cli(['--version']).status).toBe(0);
    const unknown = cli(['nope']);
    expect(unknown.stderr).toMatch(/unknown command "nope"/);
    expect(unknown.stderr).not.toMatch(/refused heavy import/);
  }, 120_000);

  it('the hook does bite: a command that needs the crypto suites fails under it (the control)', () => {
    const keygen = cli(['keygen', '--pub-out', join(temp, 'a.pub.json'), '--secret-out', join(temp, 'a.secret.json')]);
    expect(keygen.status).not.toBe(0);
    expect(`${keygen.stdout}${keygen.stderr}`).toMatch(/refused heavy import/);
  }, 120_000);
});
