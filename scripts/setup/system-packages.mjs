// Setup step: the Debian packages behind the OS-keychain tests (a Secret Service on a private D-Bus session).
// Plain Node on purpose, like scripts/setup.mjs: it may run before node_modules exists.
//
// - dbus provides dbus-run-session (a throwaway session bus for each test run, see scripts/test.mjs);
// - gnome-keyring provides the Secret Service daemon that @napi-rs/keyring talks to;
// - libsecret-tools provides secret-tool, handy to inspect what the tests or users stored.
// dbus-x11 (dbus-launch) is not needed: dbus-run-session needs no X11 session.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PACKAGES = ['gnome-keyring', 'dbus', 'libsecret-tools'];

/** Optional (see scripts/setup.mjs): without these packages, what stops working. */
export const disables =
  'the OS-keychain tests and bench rows (a private Secret Service per run), and on a headless Linux machine the OS keychain itself ' +
  '(MONGO_CAPSULE_SECRET_IDENTITY_FILE is the opt-in there)';

function isInstalled(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() === 'install ok installed';
}

function aptGet(args, log) {
  log(`apt-get ${args.join(' ')}`);
  const r = spawnSync('apt-get', args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.error) throw new Error(`apt-get ${args[0]} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`apt-get ${args[0]} failed with exit code ${r.status ?? r.signal}`);
}

export default async function systemPackages(ctx) {
  if (process.platform !== 'linux') {
    ctx.log(`nothing to install on ${process.platform}: the OS keychain is built in`);
    return;
  }
  if (!existsSync('/usr/bin/dpkg-query') || !existsSync('/usr/bin/apt-get')) {
    throw new Error(
      `not a Debian-based system: install ${PACKAGES.join(', ')} (or your distribution's equivalents) with its package manager`,
    );
  }
  const missing = PACKAGES.filter((p) => !isInstalled(p));
  if (missing.length === 0) {
    ctx.log(`already installed: ${PACKAGES.join(', ')}`);
    return;
  }
  const command = `sudo env DEBIAN_FRONTEND=noninteractive sh -c 'apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}'`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(`installing ${missing.join(', ')} needs root: run \`${command}\`, then rerun \`npm run setup\``);
  }
  aptGet(['update'], ctx.log);
  aptGet(['install', '-y', '--no-install-recommends', ...missing], ctx.log);
  const still = missing.filter((p) => !isInstalled(p));
  if (still.length > 0) throw new Error(`apt-get reported success but these are not installed: ${still.join(', ')}`);
  ctx.log(`installed: ${missing.join(', ')}`);
}
