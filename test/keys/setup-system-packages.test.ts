/** The setup step that installs the Secret Service packages: what it runs as root, and what it prints otherwise. */
import type { SpawnSyncReturns } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const calls: Array<{ cmd: string; args: string[]; env: NodeJS.ProcessEnv | undefined }> = [];
let installed = new Set<string>();

vi.mock('node:child_process', () => ({
  spawnSync: (cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) => {
    calls.push({ cmd, args, env: opts.env });
    if (cmd === 'dpkg-query') {
      const pkg = args[args.length - 1]!;
      return { status: 0, stdout: installed.has(pkg) ? 'install ok installed' : 'unknown ok not-installed' } as SpawnSyncReturns<string>;
    }
    if (cmd === 'apt-get' && args[0] === 'install') for (const p of args.slice(3)) installed.add(p);
    return { status: 0, stdout: '' } as SpawnSyncReturns<string>;
  },
}));

type SetupStep = (ctx: { root: string; cacheDir: string; ci: boolean; log(m: string): void; warn(m: string): void }) => Promise<void>;
const stepUrl = new URL('../../scripts/setup/system-packages.mjs', import.meta.url).href;
const { default: systemPackages } = (await import(stepUrl)) as { default: SetupStep };
const ctx = { root: '/', cacheDir: '/tmp', ci: true, log: () => undefined, warn: () => undefined };
const linuxWithApt = process.platform === 'linux' && (await import('node:fs')).existsSync('/usr/bin/apt-get');

beforeEach(() => {
  calls.length = 0;
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe.skipIf(!linuxWithApt)('scripts/setup/system-packages.mjs', () => {
  it('as root: apt-get update, then installs only what is missing, non-interactively', async () => {
    installed = new Set(['dbus']);
    vi.spyOn(process, 'getuid').mockReturnValue(0);
    await systemPackages(ctx);
    const apt = calls.filter((c) => c.cmd === 'apt-get');
    expect(apt.map((c) => c.args)).toEqual([['update'], ['install', '-y', '--no-install-recommends', 'gnome-keyring', 'libsecret-tools']]);
    for (const c of apt) expect(c.env?.DEBIAN_FRONTEND).toBe('noninteractive');
  });

  it('does nothing when everything is installed', async () => {
    installed = new Set(['dbus', 'gnome-keyring', 'libsecret-tools']);
    vi.spyOn(process, 'getuid').mockReturnValue(0);
    await systemPackages(ctx);
    expect(calls.filter((c) => c.cmd === 'apt-get')).toEqual([]);
  });

  it('not root: throws with the exact command to run, installing nothing', async () => {
    installed = new Set(['dbus']);
    vi.spyOn(process, 'getuid').mockReturnValue(1000);
    await expect(systemPackages(ctx)).rejects.toThrow(
      "sudo env DEBIAN_FRONTEND=noninteractive sh -c 'apt-get update && apt-get install -y --no-install-recommends gnome-keyring libsecret-tools'",
    );
    expect(calls.filter((c) => c.cmd === 'apt-get')).toEqual([]);
  });
});
