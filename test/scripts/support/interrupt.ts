/**
 * The interrupted-run checks: a child process starts something the way a test run does (a test server, a keyring
 * session, a Docker engine), prints one JSON line saying what it started, and stays until the test kills it; then
 * the test waits for what it started to be gone.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface AnnouncingChild<T> {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Its first line of stdout, parsed; `{}` when it printed none before it exited or the time was up. */
  started: Partial<T>;
  /** Its stderr so far (what to show when `started` is not what was expected). */
  stderr: string;
}

/**
 * Spawns `process.execPath nodeArgs` in `cwd` (stdin ignored, stdout and stderr collected) and waits until its
 * first line of stdout has come, it has exited, or `timeoutMs` have passed.
 */
export async function spawnAnnouncing<T>(nodeArgs: string[], { cwd, env, timeoutMs }: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<AnnouncingChild<T>> {
  const child = spawn(process.execPath, nodeArgs, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => (out += String(c)));
  child.stderr.on('data', (c) => (err += String(c)));
  const deadline = Date.now() + timeoutMs;
  while (!out.includes('\n') && child.exitCode === null && Date.now() < deadline) await sleep(100);
  const started = JSON.parse(out.split('\n')[0] || '{}') as Partial<T>;
  return { child, started, stderr: err };
}

/** Checks `pending` every `everyMs` until it is false or `timeoutMs` have passed. */
export async function waitWhile(pending: () => boolean, timeoutMs: number, everyMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pending() && Date.now() < deadline) await sleep(everyMs);
}
