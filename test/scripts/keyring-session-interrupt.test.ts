/**
 * A test run killed hard (SIGKILL) or by SIGTERM leaves no private keyring session behind: a child process runs a
 * command through runInKeyringSession (scripts/lib/keyring-session.mjs), the way `npm test` runs vitest, and is
 * then killed. Its session's dbus-daemon, gnome-keyring-daemon and command, and its temporary directories, must
 * be gone shortly after. Only processes of this test's own session are looked at: they carry its unique
 * directories in their environment or arguments.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { describeIf } from '../support/skip.ts';
import { spawnAnnouncing, waitWhile } from './support/interrupt.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SESSION = pathToFileURL(fileURLToPath(new URL('../../scripts/lib/keyring-session.mjs', import.meta.url))).href;

const onPath = (command: string) =>
  (process.env.PATH ?? '').split(delimiter).some((d) => d !== '' && existsSync(join(d, command)));
const usable = process.platform === 'linux' && onPath('dbus-run-session') && onPath('gnome-keyring-daemon');

/** Processes (other than this one) whose environment or command line names one of `dirs`. */
function sessionProcesses(dirs: string[]): { pid: number; cmd: string }[] {
  const found = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const environ = readFileSync(`/proc/${name}/environ`, 'utf8');
      if (dirs.some((d) => cmd.includes(d) || environ.includes(d))) found.push({ pid: Number(name), cmd: cmd.replaceAll('\0', ' ').trim() });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

describeIf(usable, 'dbus-run-session or gnome-keyring-daemon is not installed (`npm run setup` installs them): keyring-session orphan check not run')(
  'the private keyring session after a killed run',
  () => {
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      it(`is stopped and its directories removed when the process that started it ends by ${signal}`, async () => {
        const inner = `console.log(JSON.stringify({ state: process.env.MONGO_CAPSULE_STATE_DIR, data: process.env.XDG_DATA_HOME })); setInterval(() => {}, 1000);`;
        const code = `const { runInKeyringSession } = await import(${JSON.stringify(SESSION)});
          await runInKeyringSession([process.execPath, '-e', ${JSON.stringify(inner)}], { cwd: process.cwd(), log: (m) => console.error(m) });
          setInterval(() => {}, 1000);`;
        const env = { ...process.env };
        delete env.MONGO_CAPSULE_TEST_KEYRING;
        const { child, started, stderr } = await spawnAnnouncing<{ state: string; data: string }>(['--input-type=module', '-e', code], { cwd: ROOT, env, timeoutMs: 30_000 });
        expect(typeof started.state, stderr).toBe('string');
        expect(typeof started.data, stderr).toBe('string');
        const keyringDir = dirname(started.data!);
        const dirs = [started.state!, keyringDir];
        expect(keyringDir).toMatch(/mongo-capsule-keyring-/);
        const before = sessionProcesses(dirs);
        // At least the session bus and the command itself (gnome-keyring-daemon too, when it started).
        expect(before.some((p) => p.cmd.includes('dbus-daemon')), JSON.stringify(before)).toBe(true);
        expect(before.length).toBeGreaterThanOrEqual(2);

        child.kill(signal);
        await waitWhile(() => dirs.some((d) => existsSync(d)) || sessionProcesses(dirs).length > 0, 20_000, 200);
        const left = sessionProcesses(dirs);
        // A failure must not leave the session running: end exactly this session's processes here, then report.
        for (const p of left) spawnSync('kill', ['-9', String(p.pid)]);
        child.kill('SIGKILL');
        for (const d of dirs) spawnSync('rm', ['-rf', d]);
        expect(left.map((p) => p.cmd)).toEqual([]);
        expect(dirs.filter((d) => existsSync(d))).toEqual([]);
      }, 60_000);
    }

    it('ends silently after a normal run, leaving no process and no directory (gnome-keyring-daemon outlives the bus)', async () => {
      // The command stores a secret, as the tests do: the keyring daemon then has work to finish when the bus goes.
      const inner = `const { Entry } = await import('@napi-rs/keyring');
        new Entry('mongo-capsule-test-normal-end', 'probe').setPassword('x');
        console.log(JSON.stringify({ state: process.env.MONGO_CAPSULE_STATE_DIR, data: process.env.XDG_DATA_HOME }));`;
      const code = `const { runInKeyringSession } = await import(${JSON.stringify(SESSION)});
        process.exitCode = await runInKeyringSession([process.execPath, '--input-type=module', '-e', ${JSON.stringify(inner)}], { cwd: process.cwd(), log: () => {} });`;
      const env = { ...process.env };
      delete env.MONGO_CAPSULE_TEST_KEYRING;
      const { child, started } = await spawnAnnouncing<{ state: string; data: string }>(['--input-type=module', '-e', code], { cwd: ROOT, env, timeoutMs: 30_000 });
      let stderr = '';
      child.stderr.on('data', (c) => (stderr += String(c)));
      const status = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.on('exit', (c) => r(c))));
      expect(typeof started.data, stderr).toBe('string');
      const dirs = [started.state!, dirname(started.data!)];
      const left = sessionProcesses(dirs);
      for (const p of left) spawnSync('kill', ['-9', String(p.pid)]);
      for (const d of dirs) spawnSync('rm', ['-rf', d]);
      expect(status, stderr).toBe(0);
      expect(left.map((p) => p.cmd)).toEqual([]);
      expect(stderr).not.toMatch(/\[keyring-session\]/);
    }, 60_000);
  },
);
