/**
 * A test run killed hard (SIGKILL, or SIGTERM with no handler) leaves no FerretDB behind: a child process starts the
 * server the way the global setup does (scripts/lib/test-server.mjs) and is then killed before its teardown. The
 * server's directory and every process naming it must be gone shortly after.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { processesNaming } from '../../scripts/lib/reaper.mjs';
import { defaultCacheDir } from '../../scripts/lib/test-server.mjs';
import { describeIf } from '../support/skip.ts';
import { spawnAnnouncing, waitWhile } from './support/interrupt.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER = pathToFileURL(fileURLToPath(new URL('../../scripts/lib/test-server.mjs', import.meta.url))).href;
const FERRETDB = process.env.FERRETDB_BIN ?? `${defaultCacheDir()}/ferretdb/v1.24.2/ferretdb`;

describeIf(existsSync(FERRETDB), `FerretDB is not built (${FERRETDB} is missing; run \`npm run setup\`): orphan check not run`)('the FerretDB test server after a killed run', () => {
  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`is stopped and its directory removed when the process that started it ends by ${signal}`, async () => {
      const code = `const { startTestServer } = await import(${JSON.stringify(SERVER)});
        const server = await startTestServer({ env: { ...process.env, MONGO_CAPSULE_TEST_SERVER: 'ferretdb' } });
        console.log(JSON.stringify({ kind: server.kind, dir: server.dir }));
        setInterval(() => {}, 1000);`;
      const { child, started, stderr } = await spawnAnnouncing<{ kind: string; dir: string }>(['--input-type=module', '-e', code], { cwd: ROOT, timeoutMs: 60_000 });
      expect(started.kind, stderr).toBe('ferretdb');
      const dir = started.dir!;
      expect(typeof dir).toBe('string');
      expect(processesNaming(dir).length).toBeGreaterThan(0);

      child.kill(signal);
      await waitWhile(() => existsSync(dir) || processesNaming(dir).length > 0, 20_000, 200);
      const left = processesNaming(dir);
      // A failure must not leave the server running: end it here, then report.
      for (const pid of left) spawnSync('kill', ['-9', String(pid)]);
      spawnSync('rm', ['-rf', dir]);
      expect(left).toEqual([]);
      expect(existsSync(dir)).toBe(false);
    }, 90_000);
  }
});
