// A private D-Bus session with a fresh, unlocked gnome-keyring around one command, so that code using the OS
// keychain runs against a real Secret Service without ever touching the user's own keyring. Used by `npm test`
// (scripts/test.mjs) and `npm run bench` (scripts/bench.mjs). Plain Node, no dependencies.
//
// Environment: MONGO_CAPSULE_TEST_KEYRING=0 runs the command as it is, without the private session.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { reap, startReaper } from './reaper.mjs';

// Runs inside dbus-run-session: unlock a new login keyring with a per-run password read from the environment
// (printf is a shell builtin, so the password never appears in a process's arguments), then exec the command.
const SESSION_SCRIPT = [
  'printf %s "$MONGO_CAPSULE_TEST_KEYRING_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets >/dev/null',
  'status=$?',
  'unset MONGO_CAPSULE_TEST_KEYRING_PASSWORD',
  'if [ "$status" -ne 0 ]; then echo "gnome-keyring-daemon failed to start (exit $status); the OS keychain is unavailable in this run" >&2; fi',
  'exec "$@"',
].join('\n');

function onPath(command) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, command)));
}

/**
 * Runs `argv` (argv[0] is the program) inside a private keyring session when this machine can make one, else
 * directly, saying why through `log`. Resolves to the command's exit status; signals are forwarded to it.
 * @param {string[]} argv
 * @param {{ cwd: string, log: (message: string) => void, env?: NodeJS.ProcessEnv }} options
 * @returns {Promise<number>}
 */
export async function runInKeyringSession(argv, { cwd, log, env: baseEnv = process.env }) {
  // The run's own state directory (src/state-dir.ts): tests never read or write the user's own state.
  const stateDir = mkdtempSync(join(tmpdir(), 'mongo-capsule-state-'));
  baseEnv = { ...baseEnv, MONGO_CAPSULE_STATE_DIR: stateDir };
  const wanted = baseEnv.MONGO_CAPSULE_TEST_KEYRING !== '0' && process.platform === 'linux';
  const available = onPath('dbus-run-session') && onPath('gnome-keyring-daemon');
  let command;
  let args;
  let env = { ...baseEnv };
  let tempDir;
  if (wanted && available) {
    // A fresh XDG_DATA_HOME per run: a keyring left by an earlier run (another password) would make every call
    // fail with "unlock prompt was dismissed". XDG_RUNTIME_DIR keeps the daemon's control socket in it too.
    tempDir = mkdtempSync(join(tmpdir(), 'mongo-capsule-keyring-'));
    const data = join(tempDir, 'data');
    const runtime = join(tempDir, 'runtime');
    mkdirSync(data, { mode: 0o700 });
    mkdirSync(runtime, { mode: 0o700 });
    env = { ...env, XDG_DATA_HOME: data, XDG_RUNTIME_DIR: runtime, MONGO_CAPSULE_TEST_KEYRING_PASSWORD: randomBytes(18).toString('base64') };
    delete env.DBUS_SESSION_BUS_ADDRESS;
    delete env.GNOME_KEYRING_CONTROL;
    command = 'dbus-run-session';
    args = ['--', 'sh', '-c', SESSION_SCRIPT, 'sh', ...argv];
    log(`in a private D-Bus session with a fresh gnome-keyring (XDG_DATA_HOME=${data})`);
  } else {
    const why = !wanted
      ? process.platform === 'linux'
        ? 'MONGO_CAPSULE_TEST_KEYRING=0'
        : `${process.platform} uses its own keychain`
      : 'dbus-run-session or gnome-keyring-daemon is not installed (`npm run setup` installs them)';
    log(`without a private keyring session: ${why}; Secret Service code paths skip unless one is reachable`);
    [command, ...args] = argv;
  }

  const child = spawn(command, args, { cwd, env, stdio: 'inherit' });
  // Everything the command starts inherits MONGO_CAPSULE_STATE_DIR (the session's dbus-daemon and
  // gnome-keyring-daemon name their directories only in their environment): if this process is killed (SIGKILL
  // cannot be forwarded), the watchdog stops whatever carries it and removes both directories.
  const cleanup = { dir: stateDir, environment: true, alsoRemove: tempDir === undefined ? [] : [tempDir], label: 'keyring-session' };
  const reaper = child.pid === undefined ? undefined : startReaper({ ...cleanup, pids: [child.pid] });
  const forward = (signal) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const code = await new Promise((resolveExit) => {
    child.on('error', (e) => {
      log(`could not start ${command}: ${e.message}`);
      resolveExit(1);
    });
    child.on('exit', (status, signal) => resolveExit(status ?? (signal ? 128 + (SIGNALS[signal] ?? 0) : 1)));
  });
  process.off('SIGINT', forward);
  process.off('SIGTERM', forward);
  reaper?.kill();
  // gnome-keyring-daemon outlives dbus-run-session even on a normal end, and dbus-run-session ended by a signal
  // leaves its bus and the command running too: stop what is left of this session (silently: that is the normal
  // teardown), then remove its directories (a short retry covers files a daemon is still closing).
  await reap({ ...cleanup, quiet: true });
  return code;
}

const SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
