/**
 * scripts/setup.mjs on a machine that lacks the tools of some steps: an optional step that fails is a skip with
 * one summary line (what, what it disables, how to get it) and exit 0; a required step that fails is exit 1.
 * The real setup.mjs runs against stand-in step modules in a temporary copy, so no step installs anything.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = mkdtempSync(join(tmpdir(), 'mongo-capsule-setup-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
/** A copy of setup.mjs and the library module it imports under `dir`/scripts, with an empty scripts/setup. */
function copySetup(dir: string): void {
  mkdirSync(join(dir, 'scripts', 'setup'), { recursive: true });
  mkdirSync(join(dir, 'scripts', 'lib'));
  copyFileSync(new URL('../../scripts/setup.mjs', import.meta.url), join(dir, 'scripts', 'setup.mjs'));
  copyFileSync(new URL('../../scripts/lib/cache-dir.mjs', import.meta.url), join(dir, 'scripts', 'lib', 'cache-dir.mjs'));
}
copySetup(root);

function step(name: string, body: string): void {
  writeFileSync(join(root, 'scripts', 'setup', `${name}.mjs`), body);
}

function setup(...args: string[]) {
  const only = ['system-packages', 'native', 'ferretdb', 'libmongocrypt'].flatMap((s) => ['--only', s]);
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'setup.mjs'), ...only, ...args], {
    encoding: 'utf8',
    env: { ...process.env, MONGO_CAPSULE_CACHE: join(root, 'cache') },
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('npm run setup: optional and required steps', () => {
  it('skips failing optional steps with one line each and exits 0', () => {
    step('system-packages', "export default async () => {};\n");
    step('native', "export const disables = 'the NTRU suites';\nexport default async () => { throw new Error('cargo not found: install Rust with rustup'); };\n");
    // A step that declares nothing is optional, and its line says so.
    step('ferretdb', "export default async () => { throw new Error('go not found: install it from https://go.dev/dl/\\n    build output line'); };\n");
    step('libmongocrypt', "export const required = true;\nexport default async () => {};\n");
    const r = setup();
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('setup: skipped native. Disables: the NTRU suites. To get it: cargo not found: install Rust with rustup\n');
    expect(r.out).toContain('setup: skipped ferretdb. Disables: an optional feature (the step declares no `disables`). To get it: go not found: install it from https://go.dev/dl/\n');
    expect(r.out).not.toMatch(/failed/);
  });

  it('fails when a required step fails, and with --strict when any step fails', () => {
    step('libmongocrypt', "export const required = true;\nexport default async () => { throw new Error('cannot build mongodb-client-encryption; missing: python3'); };\n");
    const r = setup();
    expect(r.code).toBe(1);
    expect(r.out).toContain('failed: cannot build mongodb-client-encryption; missing: python3');
    expect(r.out).toContain('setup: 1 step(s) failed: libmongocrypt');

    step('libmongocrypt', "export const required = true;\nexport default async () => {};\n");
    const strict = setup('--strict');
    expect(strict.code).toBe(1);
    expect(strict.out).toContain('setup: 2 step(s) failed: native, ferretdb');
  });

  it('--skip npm skips the npm install; a mistyped step name is refused with the list instead of selecting nothing', () => {
    for (const name of ['system-packages', 'native', 'ferretdb', 'libmongocrypt']) step(name, 'export default async () => {};\n');
    const run = (...args: string[]) => {
      const r = spawnSync(process.execPath, [join(root, 'scripts', 'setup.mjs'), ...args], { encoding: 'utf8', env: { ...process.env, MONGO_CAPSULE_CACHE: join(root, 'cache') } });
      return { code: r.status, out: `${r.stdout}${r.stderr}` };
    };
    const skipped = run('--skip', 'npm', '--skip', 'docker');
    expect(skipped.code, skipped.out).toBe(0);
    expect(skipped.out).not.toContain('npm dependencies');
    expect(skipped.out).toContain('• native');
    const typo = run('--skip', 'natve');
    expect(typo.code).toBe(2);
    expect(typo.out).toContain('setup: unknown step "natve"; the steps are npm, system-packages, native, oracle, ferretdb, libmongocrypt, docker');
  });

  it('the real steps declare their class: only the CSFLE addon is required, the others say what they disable', async () => {
    const required: string[] = [];
    for (const name of ['system-packages', 'native', 'oracle', 'ferretdb', 'libmongocrypt']) {
      const url = new URL(`../../scripts/setup/${name}.mjs`, import.meta.url).href;
      const mod = (await import(url)) as { required?: boolean; disables?: string };
      if (mod.required === true) required.push(name);
      else expect(mod.disables, name).toMatch(/\w+ \w+ \w+/);
    }
    expect(required).toEqual(['libmongocrypt']);
  });

  it('the real Rust and Go steps on a machine without cargo, rustc or go: one skip line each, exit 0', () => {
    // The real native and ferretdb step modules in their own copy, a PATH that holds only node, an empty cache
    // and a HOME without ~/.cargo (the native step looks there too): what a machine without the toolchains sees.
    const real = mkdtempSync(join(tmpdir(), 'mongo-capsule-setup-real-'));
    try {
      copySetup(real);
      mkdirSync(join(real, 'bin'));
      mkdirSync(join(real, 'home'));
      for (const name of ['native', 'ferretdb']) {
        copyFileSync(new URL(`../../scripts/setup/${name}.mjs`, import.meta.url), join(real, 'scripts', 'setup', `${name}.mjs`));
      }
      symlinkSync(process.execPath, join(real, 'bin', 'node'));
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: join(real, 'bin'), HOME: join(real, 'home'), MONGO_CAPSULE_CACHE: join(real, 'cache') };
      delete env.CARGO_HOME;
      delete env.XDG_CACHE_HOME;
      const r = spawnSync(process.execPath, [join(real, 'scripts', 'setup.mjs'), '--only', 'native', '--only', 'ferretdb'], { encoding: 'utf8', env });
      const out = `${r.stdout}${r.stderr}`;
      expect(r.status, out).toBe(0);
      const lines = out.split('\n').filter((l) => l.startsWith('setup: '));
      expect(lines, out).toHaveLength(2);
      expect(lines[0]).toMatch(/^setup: skipped native\. Disables: the NTRU suites .*\. To get it: cargo not found: install Rust 1\.88 or newer with rustup \(https:\/\/rustup\.rs/);
      expect(lines[1]).toMatch(/^setup: skipped ferretdb\. Disables: the integration tests .*\. To get it: the Go toolchain \(go ≥ 1\.24\) is needed .*https:\/\/go\.dev\/dl\//);
      expect(out).not.toMatch(/failed/);
    } finally {
      rmSync(real, { recursive: true, force: true });
    }
  });
});
