#!/usr/bin/env node
// `npm test`: typecheck, then vitest inside a private D-Bus session with a fresh, unlocked gnome-keyring, so the
// OS-keychain tests run against a real Secret Service without ever touching the user's own keyring.
// Plain Node (no dependencies). Extra arguments go to `vitest run`. Exits with vitest's status.
//
// Environment:
//   MONGO_CAPSULE_SKIP_TYPECHECK=1   skip `tsc --noEmit`
//   MONGO_CAPSULE_TEST_KEYRING=0     do not start a D-Bus session / keyring (the OS keychain tests then skip)
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const VITEST = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
// Runs inside dbus-run-session: unlock a new login keyring with a per-run password read from the environment
// (printf is a shell builtin, so the password never appears in a process's arguments), then exec vitest.
const SESSION_SCRIPT = [
  'printf %s "$MONGO_CAPSULE_TEST_KEYRING_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets >/dev/null',
  'status=$?',
  'unset MONGO_CAPSULE_TEST_KEYRING_PASSWORD',
  'if [ "$status" -ne 0 ]; then echo "[test] gnome-keyring-daemon failed to start (exit $status); the OS keychain tests will skip" >&2; fi',
  'exec "$@"',
].join('\n');

const args = process.argv.slice(2);
const log = (msg) => console.error(`[test] ${msg}`);

function onPath(command) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, command)));
}

if (!existsSync(VITEST) || !existsSync(TSC)) {
  log('vitest or typescript is not installed: run `npm ci` (or `npm run setup`) first');
  process.exit(1);
}

if (process.env.MONGO_CAPSULE_SKIP_TYPECHECK !== '1') {
  log('typecheck: tsc --noEmit -p tsconfig.json');
  const tsc = spawnSync(process.execPath, [TSC, '--noEmit', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'inherit' });
  if (tsc.status !== 0) {
    log(`typecheck failed (exit ${tsc.status ?? tsc.signal}); not running the tests`);
    process.exit(tsc.status || 1);
  }
}

const vitestArgv = [process.execPath, VITEST, 'run', ...args];
const wantKeyring = process.env.MONGO_CAPSULE_TEST_KEYRING !== '0' && process.platform === 'linux';
const haveKeyring = onPath('dbus-run-session') && onPath('gnome-keyring-daemon');

let command;
let argv;
let env = { ...process.env };
let tempDir;
if (wantKeyring && haveKeyring) {
  // A fresh XDG_DATA_HOME per run: a keyring left by an earlier run (another password) would make every call
  // fail with "unlock prompt was dismissed". XDG_RUNTIME_DIR keeps the daemon's control socket in it too.
  tempDir = mkdtempSync(join(tmpdir(), 'mongo-capsule-test-'));
  const data = join(tempDir, 'data');
  const runtime = join(tempDir, 'runtime');
  mkdirSync(data, { mode: 0o700 });
  mkdirSync(runtime, { mode: 0o700 });
  env = {
    ...env,
    XDG_DATA_HOME: data,
    XDG_RUNTIME_DIR: runtime,
    MONGO_CAPSULE_TEST_KEYRING_PASSWORD: randomBytes(18).toString('base64'),
  };
  delete env.DBUS_SESSION_BUS_ADDRESS;
  delete env.GNOME_KEYRING_CONTROL;
  command = 'dbus-run-session';
  argv = ['--', 'sh', '-c', SESSION_SCRIPT, 'sh', ...vitestArgv];
  log(`vitest in a private D-Bus session with a fresh gnome-keyring (XDG_DATA_HOME=${data})`);
} else {
  const why = !wantKeyring
    ? process.platform === 'linux'
      ? 'MONGO_CAPSULE_TEST_KEYRING=0'
      : `${process.platform} uses its own keychain`
    : 'dbus-run-session or gnome-keyring-daemon is not installed (`npm run setup` installs them)';
  log(`vitest without a private keyring session: ${why}; Secret Service tests skip unless one is reachable`);
  [command, ...argv] = vitestArgv;
}

const child = spawn(command, argv, { cwd: ROOT, env, stdio: 'inherit' });
const forward = (signal) => child.kill(signal);
process.on('SIGINT', forward);
process.on('SIGTERM', forward);

const code = await new Promise((resolveExit) => {
  child.on('error', (e) => {
    log(`could not start ${command}: ${e.message}`);
    resolveExit(1);
  });
  child.on('exit', (status, signal) => resolveExit(status ?? (signal ? 128 + (signalNumber(signal) ?? 0) : 1)));
});

if (tempDir !== undefined) {
  // The daemon exits with its session bus; a short retry covers files it is still closing.
  rmSync(tempDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}
process.exit(code);

function signalNumber(signal) {
  return { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }[signal];
}
