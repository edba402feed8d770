/**
 * A lock for read-modify-write of a small state file (the capsule location record, the replay marks) shared by
 * every mongo-capsule process of this user: `<file>.lock`, created exclusively next to the file and removed when
 * the update is done. Readers take no lock: every write is an atomic rename (src/files.ts), so a reader sees the
 * old or the new file, never a half-written one. Within one process, updates of one file are queued.
 *
 * Waiting: an update holds the lock for milliseconds, so a held lock is polled (short, growing, jittered sleeps)
 * for up to `timeoutMs` (default 15 s), then refused with StateFileLockedError naming the file and its holder.
 *
 * Stale-lock rule: a lock is taken over when its holder is provably gone (same host, and no process has its pid),
 * or when it is older than `staleMs` (default 30 s; no update of these files takes that long, so its holder is
 * hung, or the pid was reused, or the lock came from another host sharing the directory), or when it holds no
 * readable record (its writer died between creating and writing it) and is older than 2 s. A take-over is
 * serialized by a second, short-lived `<file>.lock.break` file and removes only the exact lock file it judged
 * stale (same inode, same content), never one a faster process created meanwhile.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { StateFileLockedError } from '../errors.ts';
import { fileError } from '../files.ts';

export interface FileLockOptions {
  /** What the file is, for messages: `the capsule location record`. */
  what: string;
  /** How long to wait for a live holder (default 15 s). */
  timeoutMs?: number;
  /** Age after which a lock is stale whoever holds it (default 30 s). */
  staleMs?: number;
}

export const DEFAULT_LOCK_TIMEOUT_MS = 15_000;
export const DEFAULT_LOCK_STALE_MS = 30_000;
/** A lock file without a readable record (created, never written) older than this is stale. */
const UNREADABLE_STALE_MS = 2_000;
/** A take-over marker older than this was left by a process that died while taking over. */
const BREAK_STALE_MS = 5_000;

interface Holder {
  raw: string;
  ino: number;
  ageMs: number;
  pid?: number;
  host?: string;
}

const queues = new Map<string, Promise<void>>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function inspect(lockPath: string): Promise<Holder | undefined> {
  try {
    const st = await stat(lockPath);
    const raw = await readFile(lockPath, 'utf8');
    const holder: Holder = { raw, ino: st.ino, ageMs: Date.now() - st.mtimeMs };
    try {
      const parsed = JSON.parse(raw) as { pid?: unknown; host?: unknown; since?: unknown };
      if (typeof parsed.pid === 'number') holder.pid = parsed.pid;
      if (typeof parsed.host === 'string') holder.host = parsed.host;
      const since = typeof parsed.since === 'string' ? Date.parse(parsed.since) : NaN;
      if (Number.isFinite(since)) holder.ageMs = Math.max(holder.ageMs, Date.now() - since);
    } catch {
      /* unreadable record: judged by its age */
    }
    return holder;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // released meanwhile
    throw fileError(e, lockPath);
  }
}

function isStale(h: Holder, staleMs: number): boolean {
  if (h.ageMs > staleMs) return true;
  if (h.pid === undefined) return h.ageMs > Math.min(staleMs, UNREADABLE_STALE_MS);
  return (h.host === undefined || h.host === hostname()) && !alive(h.pid);
}

function describeHolder(h: Holder | undefined): string {
  if (h?.pid === undefined) return 'another process';
  return `process ${h.pid}${h.host !== undefined && h.host !== hostname() ? ` on ${h.host}` : ''}`;
}

/** Removes `lockPath` if it is still exactly the stale lock `seen`; one breaker at a time. */
async function breakStale(lockPath: string, seen: Holder): Promise<void> {
  const breaker = `${lockPath}.break`;
  try {
    await (await open(breaker, 'wx', 0o600)).close();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fileError(e, breaker);
    const st = await stat(breaker).catch(() => undefined);
    if (st !== undefined && Date.now() - st.mtimeMs > BREAK_STALE_MS) await unlink(breaker).catch(() => undefined);
    return; // someone else is taking it over: try again
  }
  try {
    const now = await inspect(lockPath);
    if (now !== undefined && now.ino === seen.ino && now.raw === seen.raw) await unlink(lockPath).catch(() => undefined);
  } finally {
    await unlink(breaker).catch(() => undefined);
  }
}

async function acquire(path: string, lockPath: string, options: FileLockOptions): Promise<string> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const staleMs = options.staleMs ?? DEFAULT_LOCK_STALE_MS;
  const nonce = randomBytes(8).toString('hex');
  const record = JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString(), nonce });
  const deadline = Date.now() + timeoutMs;
  for (let delay = 2; ; delay = Math.min(delay * 2, 100)) {
    try {
      const handle = await open(lockPath, 'wx', 0o600);
      try {
        await handle.writeFile(record);
      } finally {
        await handle.close();
      }
      return record;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fileError(e, lockPath);
    }
    const holder = await inspect(lockPath);
    if (holder === undefined) continue;
    if (isStale(holder, staleMs)) {
      await breakStale(lockPath, holder);
      continue;
    }
    if (Date.now() >= deadline) throw new StateFileLockedError(options.what, path, lockPath, describeHolder(holder), timeoutMs);
    await sleep(delay + randomInt(0, delay + 1));
  }
}

/**
 * Runs `fn` (a read-modify-write of `path`, ending in an atomic replace) holding `<path>.lock`. The directory of
 * `path` must exist.
 * @example
 * await withFileLock(file, async () => writeFileAtomic(file, update(await read(file)), { replace: true }), { what: 'the record' });
 */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, options: FileLockOptions): Promise<T> {
  const lockPath = `${path}.lock`;
  const previous = queues.get(lockPath) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const tail = previous.then(() => mine);
  queues.set(lockPath, tail);
  await previous;
  try {
    const record = await acquire(path, lockPath, options);
    try {
      return await fn();
    } finally {
      // Only our own lock: had we been judged stale and taken over, the file is someone else's now.
      if ((await readFile(lockPath, 'utf8').catch(() => undefined)) === record) await unlink(lockPath).catch(() => undefined);
    }
  } finally {
    release();
    if (queues.get(lockPath) === tail) queues.delete(lockPath);
  }
}
