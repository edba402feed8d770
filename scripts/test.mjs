#!/usr/bin/env node
// `npm test`: typecheck, then vitest inside a private D-Bus session with a fresh, unlocked gnome-keyring, so the
// OS-keychain tests run against a real Secret Service without ever touching the user's own keyring.
// Plain Node (no dependencies). Extra arguments go to `vitest run`. Exits with vitest's status.
//
// Environment:
//   MONGO_CAPSULE_SKIP_TYPECHECK=1   skip `tsc --noEmit`
//   MONGO_CAPSULE_TEST_KEYRING=0     do not start a D-Bus session / keyring (the OS keychain tests then skip)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInKeyringSession } from './lib/keyring-session.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const VITEST = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');

const log = (msg) => console.error(`[test] ${msg}`);

if (!existsSync(VITEST) || !existsSync(TSC)) {
  log('vitest or typescript is not installed: run `npm run setup` (or `npm ci`) first');
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

// runInKeyringSession also gives the run a throwaway MONGO_CAPSULE_STATE_DIR, never the user's own state.
const code = await runInKeyringSession([process.execPath, VITEST, 'run', ...process.argv.slice(2)], { cwd: ROOT, log: (m) => log(`vitest ${m}`) });
process.exit(code);
