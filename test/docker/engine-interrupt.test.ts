/**
 * An interrupted run leaves no private dockerd behind: a child process starts the test engine the way the global
 * setup does (test/docker/support/engine.ts) and is then ended by SIGINT, as Ctrl-C ends vitest before its
 * teardown. The engine's directory, its dockerd, containerd and shims must all be gone shortly after.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { processesNaming } from '../../scripts/lib/reaper.mjs';
import { spawnAnnouncing, waitWhile } from '../scripts/support/interrupt.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENGINE = pathToFileURL(fileURLToPath(new URL('./support/engine.ts', import.meta.url))).href;

function cannotStart(): string {
  if (process.env.MONGO_CAPSULE_TEST_DOCKER === '0') return 'Docker tests disabled (MONGO_CAPSULE_TEST_DOCKER=0)';
  if (process.platform !== 'linux') return 'a private dockerd is started on Linux only';
  if (process.getuid?.() !== 0) return 'starting a private dockerd needs root';
  if (spawnSync('sh', ['-c', 'command -v dockerd || test -x /usr/sbin/dockerd || test -x /usr/bin/dockerd']).status !== 0) return 'no dockerd binary (`npm run setup` installs docker.io as root on Debian)';
  if (spawnSync('sh', ['-c', 'command -v docker']).status !== 0) return 'no docker client on PATH';
  return '';
}
const reason = cannotStart();

describe.skipIf(reason !== '')(`the private test engine after an interrupted run${reason ? ` [skipped: ${reason}]` : ''}`, () => {
  it('is stopped and removed when the process that started it ends by SIGINT without its teardown', async () => {
    const code = `const { startDockerEngine } = await import(${JSON.stringify(ENGINE)});
      const engine = await startDockerEngine();
      console.log(JSON.stringify(engine.provided));
      setInterval(() => {}, 1000);`;
    // An engine address that answers nothing: the child must start its own dockerd, not reuse the run's engine.
    const env = { ...process.env, DOCKER_HOST: 'unix:///nonexistent/mongo-capsule-test.sock' };
    const { child, started: provided, stderr } = await spawnAnnouncing<{ available: boolean; started: boolean; host: string; reason: string }>(['--import', 'tsx/esm', '--input-type=module', '-e', code], { cwd: ROOT, env, timeoutMs: 90_000 });
    expect(provided.available, `${provided.reason ?? ''} ${stderr}`).toBe(true);
    expect(provided.started).toBe(true);
    const dir = provided.host!.replace(/^unix:\/\//, '').replace(/\/docker\.sock$/, '');
    expect(processesNaming(dir).length).toBeGreaterThan(0);

    child.kill('SIGINT');
    await waitWhile(() => existsSync(dir) || processesNaming(dir).length > 0, 45_000, 250);
    const left = processesNaming(dir);
    // A failure must not leave the engine running for the next run: end it here, then report.
    for (const pid of left) spawnSync('kill', ['-9', String(pid)]);
    expect(left).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  }, 180_000);
});
