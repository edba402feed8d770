/**
 * The watchdog (scripts/lib/reaper.mjs) that stops a detached helper of an interrupted test run: its "parent"
 * here is a throwaway node process that starts the watchdog and a detached child naming the work directory, as
 * the Docker harness does with dockerd, and is then killed the way Ctrl-C or a killed runner ends vitest.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { processesNaming } from '../../scripts/lib/reaper.mjs';

const REAPER = pathToFileURL(fileURLToPath(new URL('../../scripts/lib/reaper.mjs', import.meta.url))).href;
const linux = process.platform === 'linux';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (what()) return true;
    await sleep(100);
  }
  return what();
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) {
    for (const pid of processesNaming(d)) process.kill(pid, 'SIGKILL');
    rmSync(d, { recursive: true, force: true });
  }
});

/** A parent that starts a detached worker naming `dir` (and, unless told not to, the watchdog), prints its pid, and waits. */
function startParent(withReaper: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'mc-reaper-'));
  dirs.push(dir);
  const code = `
    import { spawn } from 'node:child_process';
    import { startReaper } from ${JSON.stringify(REAPER)};
    const worker = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', ${JSON.stringify(dir)}], { detached: true, stdio: 'ignore' });
    worker.unref();
    if (${withReaper}) startReaper({ dir: ${JSON.stringify(dir)}, pids: [worker.pid], label: 'reaper-test' });
    console.log(worker.pid);
    setInterval(() => {}, 1000);
  `;
  const parent = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  parent.stderr.on('data', (c) => (err += String(c)));
  const workerPid = new Promise<number>((resolve) => parent.stdout.once('data', (c) => resolve(Number(String(c).trim()))));
  return { dir, parent, workerPid, stderr: () => err };
}

const alive = (pid: number) => spawnSync('kill', ['-0', String(pid)]).status === 0 && !readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2]!.startsWith('Z');

describe.skipIf(!linux)(`the test-run watchdog${linux ? '' : ' [skipped: it reads /proc, Linux only]'}`, () => {
  it('without it, a detached helper outlives its killed parent (the defect it exists for)', async () => {
    const p = startParent(false);
    const pid = await p.workerPid;
    p.parent.kill('SIGKILL');
    await sleep(1500);
    expect(alive(pid)).toBe(true);
    expect(existsSync(p.dir)).toBe(true);
  }, 30_000);

  for (const sig of ['SIGINT', 'SIGKILL'] as const) {
    it(`stops the helper and removes the directory when the parent ends by ${sig} without a teardown`, async () => {
      const p = startParent(true);
      const pid = await p.workerPid;
      expect(alive(pid)).toBe(true);
      p.parent.kill(sig);
      expect(await until(() => !alive(pid) && !existsSync(p.dir), 15_000)).toBe(true);
      expect(processesNaming(p.dir)).toEqual([]);
    }, 30_000);
  }

  it('after a normal teardown (the directory removed) it leaves quietly and touches nothing', async () => {
    const p = startParent(true);
    const pid = await p.workerPid;
    process.kill(pid, 'SIGKILL');
    rmSync(p.dir, { recursive: true, force: true });
    await sleep(600);
    p.parent.kill('SIGKILL');
    await sleep(1000);
    expect(p.stderr()).not.toMatch(/reaper-test/);
  }, 30_000);
});
