/**
 * The capsule location record and the replay marks are read-modify-write files in the state directory that
 * several CLI processes may update at once (a seed and a rotation, two seeds). Ten processes each add entries of
 * their own at the same moment: every entry must be there afterwards (a lost location is one a later
 * `keys rotate` does not know about, and may retire a key that capsule still needs). And a lock left by a
 * process that died is taken over; one held by a live process is waited for.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CapsuleLocations, locationId } from '../../src/keys/capsule-locations.ts';
import { FileCapsuleWatermarks } from '../../src/keys/capsule-watermarks.ts';
import { withFileLock } from '../../src/keys/file-lock.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const CHILDREN = 10;
const PER_CHILD = 4;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mc-state-locks-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Starts `CHILDREN` processes that each wait for the `go` file, then run `body` (an async function body with
 * `i`, the child's index, and `dir` in scope); resolves with their exit codes and stderr.
 */
async function race(body: string): Promise<{ code: number | null; stderr: string }[]> {
  const go = join(dir, 'go');
  const ready = (i: number) => join(dir, `ready-${i}`);
  const code = `
    import { existsSync, writeFileSync } from 'node:fs';
    const i = Number(process.env.CHILD_INDEX);
    const dir = process.env.RACE_DIR;
    writeFileSync(process.env.READY_FILE, '');
    while (!existsSync(process.env.GO_FILE)) await new Promise((r) => setTimeout(r, 5));
    ${body}
  `;
  const children = Array.from({ length: CHILDREN }, (_, i) =>
    spawn(process.execPath, ['--import', 'tsx/esm', '--input-type=module', '-e', code], {
      cwd: ROOT,
      env: { ...process.env, CHILD_INDEX: String(i), RACE_DIR: dir, READY_FILE: ready(i), GO_FILE: go },
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  );
  const done = children.map(
    (c) =>
      new Promise<{ code: number | null; stderr: string }>((r) => {
        let stderr = '';
        c.stderr!.on('data', (d) => (stderr += String(d)));
        c.on('exit', (code) => r({ code, stderr }));
      }),
  );
  // Released together once every child has loaded its modules, so their updates overlap.
  const deadline = Date.now() + 90_000;
  while (!Array.from({ length: CHILDREN }, (_, i) => existsSync(ready(i))).every(Boolean) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  writeFileSync(go, '');
  return Promise.all(done);
}

describe('state files: concurrent read-modify-write across processes', () => {
  it(`${CHILDREN} processes adding capsule locations at once lose none`, async () => {
    const results = await race(`
      const { CapsuleLocations } = await import('./src/keys/capsule-locations.ts');
      const record = new CapsuleLocations({ service: 'svc', directory: dir });
      for (let k = 0; k < ${PER_CHILD}; k++) {
        await record.record('default', [{ kind: 'directory', path: '/capsules/child-' + i + '-' + k }]);
      }
    `);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const listed = (await new CapsuleLocations({ service: 'svc', directory: dir }).list('default')).map(locationId).sort();
    const expected = Array.from({ length: CHILDREN * PER_CHILD }, (_, n) => `directory /capsules/child-${Math.floor(n / PER_CHILD)}-${n % PER_CHILD}`).sort();
    expect(listed).toEqual(expected);
    expect(existsSync(join(dir, 'capsule-locations.json.lock'))).toBe(false);
  }, 180_000);

  it(`${CHILDREN} processes raising replay marks of different capsules at once lose none`, async () => {
    const results = await race(`
      const { FileCapsuleWatermarks } = await import('./src/keys/capsule-watermarks.ts');
      const marks = new FileCapsuleWatermarks(dir + '/capsule-watermarks.json');
      for (let k = 0; k < ${PER_CHILD}; k++) {
        await marks.raise('capsule-' + i + '-' + k, { createdAt: 1000 + k, sha256: 'h' + i + '-' + k });
      }
    `);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const file = JSON.parse(readFileSync(join(dir, 'capsule-watermarks.json'), 'utf8')) as Record<string, unknown>;
    const expected = Array.from({ length: CHILDREN * PER_CHILD }, (_, n) => `capsule-${Math.floor(n / PER_CHILD)}-${n % PER_CHILD}`).sort();
    expect(Object.keys(file).sort()).toEqual(expected);
    const marks = new FileCapsuleWatermarks(join(dir, 'capsule-watermarks.json'));
    expect(await marks.get('capsule-3-2')).toEqual({ createdAt: 1002, sha256: 'h3-2' });
  }, 180_000);
});

describe('state file lock: the stale-lock rule', () => {
  const target = () => join(dir, 'state.json');
  const lock = () => `${target()}.lock`;

  it('a lock left by a process that is gone is taken over at once', async () => {
    const child = spawn(process.execPath, ['-e', '']);
    const pid = child.pid!;
    await new Promise((r) => child.once('exit', r));
    writeFileSync(lock(), JSON.stringify({ pid, host: hostname(), since: new Date().toISOString(), nonce: 'x' }));
    const started = Date.now();
    await expect(withFileLock(target(), async () => 'ran', { what: 'a test record' })).resolves.toBe('ran');
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(existsSync(lock())).toBe(false);
  });

  it('a lock of a live process is waited for, then refused with a typed error naming the file and the holder', async () => {
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      writeFileSync(lock(), JSON.stringify({ pid: sleeper.pid, host: hostname(), since: new Date().toISOString(), nonce: 'y' }));
      const err = await withFileLock(target(), async () => 'ran', { what: 'a test record', timeoutMs: 300 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'STATE_FILE_LOCKED' });
      expect((err as Error).message).toContain(lock());
      expect((err as Error).message).toContain(`process ${sleeper.pid}`);
      expect((err as { hint?: string }).hint).toMatch(/rm /);
      expect(existsSync(lock())).toBe(true); // not ours to remove
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('a lock older than the stale age is taken over even when its pid is alive (reused) or it names another host', async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(lock(), JSON.stringify({ pid: process.pid, host: 'elsewhere', since: new Date(Date.now() - 120_000).toISOString(), nonce: 'z' }));
    await expect(withFileLock(target(), async () => 'ran', { what: 'a test record', staleMs: 60_000 })).resolves.toBe('ran');
    writeFileSync(lock(), '');
    // An empty lock file (its writer died between create and write) becomes stale by its age too.
    await expect(withFileLock(target(), async () => 'ran', { what: 'a test record', staleMs: 0 })).resolves.toBe('ran');
  });

  it('runs one holder at a time within a process too', async () => {
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 8 }, () =>
        withFileLock(target(), async () => {
          inside++;
          most = Math.max(most, inside);
          await new Promise((r) => setTimeout(r, 5));
          inside--;
        }, { what: 'a test record' }),
      ),
    );
    expect(most).toBe(1);
  });
});
