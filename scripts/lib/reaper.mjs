// A watchdog for what a test run starts outside its own process group (the private dockerd of the Docker tests is
// detached, so a Ctrl-C on the terminal never reaches it). When the watched process (the test runner) ends
// without having removed the work directory itself, which is what its normal teardown does, the watchdog stops
// the given processes and every process whose command line names the directory, unmounts what is mounted under
// it, removes it, and says so on stderr. Plain Node, no dependencies.
//
// Its configuration travels in the environment, not in its arguments, so its own command line never names the
// directory and a scan for leftover processes never mistakes it for one.
//
// With `environment: true` a process also counts when its environment names the directory (what a private session
// starts, such as its dbus-daemon, names its directories only there). Other watchdogs are left alone then: they
// inherit the same environment, and each cleans up after its own run.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CONFIG_ENV = 'MONGO_CAPSULE_REAPER_CONFIG';
const POLL_MS = 250;
const STOP_TIMEOUT_MS = 20_000;

/**
 * Starts the watchdog and returns it (already unref'd: it never keeps the caller alive). Stop it with
 * `.kill()` after a normal teardown, or just remove `dir`: it exits when it sees `dir` gone.
 * @param {{ dir: string, pids?: number[], watch?: number, label?: string }} options
 */
export function startReaper({ dir, pids = [], watch = process.pid, label = 'reaper', environment = false, alsoRemove = [] }) {
  const env = { ...process.env, [CONFIG_ENV]: JSON.stringify({ dir, pids, watch, label, environment, alsoRemove }) };
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], { detached: true, stdio: ['ignore', 'ignore', 'inherit'], env });
  child.unref();
  return child;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/**
 * Processes other than this one whose command line names `dir` (or, with `environment`, whose environment does;
 * watchdogs excepted).
 * @param {string} dir
 * @param {{ environment?: boolean }} [options]
 */
export function processesNaming(dir, { environment = false } = {}) {
  const pids = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(dir)) {
        pids.push(Number(name));
        continue;
      }
      if (!environment) continue;
      const environ = readFileSync(`/proc/${name}/environ`, 'utf8');
      if (environ.includes(dir) && !environ.includes(`${CONFIG_ENV}=`)) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function mountsUnder(dir) {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m) => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function signal(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * Stops `pids` and every process naming `dir` (SIGTERM, then SIGKILL after 20 s), unmounts what is mounted under
 * `dir` and removes it and `alsoRemove`. What the watchdog does; a normal teardown can call it too, to sweep what
 * is left (a daemon that outlives its session, such as gnome-keyring-daemon, or what a signal left): then `quiet`
 * keeps it silent unless a process had to be killed or a directory could not be removed.
 * @param {{ dir: string, pids?: number[], label?: string, environment?: boolean, alsoRemove?: string[], quiet?: boolean }} options
 */
export async function reap({ dir, pids = [], label = 'reaper', environment = false, alsoRemove = [], quiet = false }) {
  const say = (msg) => process.stderr.write(`[${label}] ${msg}\n`);
  const targets = () => [...new Set([...pids.filter(alive), ...processesNaming(dir, { environment })])];
  const first = targets();
  if (!quiet) say(`the test run ended without its teardown (interrupted?): stopping what it started under ${dir}`);
  for (const pid of first) signal(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (targets().length > 0 && Date.now() < deadline) await sleep(100);
  const stubborn = targets();
  for (const pid of stubborn) signal(pid, 'SIGKILL');
  if (stubborn.length > 0) say(`killed ${stubborn.length} process(es) that did not stop: ${stubborn.join(', ')}`);
  for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m]);
  for (const d of [dir, ...alsoRemove]) rmSync(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  const left = [dir, ...alsoRemove].filter((d) => existsSync(d));
  if (left.length > 0) say(`could not remove ${left.join(', ')}`);
  else if (!quiet) say('stopped and removed; nothing left behind');
}

async function watchdog() {
  const config = JSON.parse(process.env[CONFIG_ENV]);
  for (;;) {
    if (!existsSync(config.dir)) return;
    if (!alive(config.watch)) return reap(config);
    await sleep(POLL_MS);
  }
}

if (process.env[CONFIG_ENV] && process.argv[1] === fileURLToPath(import.meta.url)) await watchdog();
