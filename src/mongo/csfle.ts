/**
 * Whether client-side field level encryption can run here: the optional `mongodb-client-encryption` addon
 * (libmongocrypt) must load. Checked before anything is written, so a missing addon never leaves half work.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CsfleUnavailableError } from '../errors.ts';

export interface CsfleStatus {
  available: boolean;
  /** libmongocrypt version reported by the addon, when available. */
  libmongocryptVersion?: string;
  /** Why it is unavailable (first line of the load error). */
  reason?: string;
}

let cached: CsfleStatus | undefined;

/** Loads the addon once and reports; never throws. */
export function csfleStatus(): CsfleStatus {
  if (cached) return cached;
  try {
    const mod = createRequire(import.meta.url)('mongodb-client-encryption') as { MongoCrypt?: { libmongocryptVersion?: string } };
    const version = mod.MongoCrypt?.libmongocryptVersion;
    cached = version === undefined ? { available: true } : { available: true, libmongocryptVersion: String(version) };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    cached = { available: false, reason: message.split('\n')[0] ?? message };
  }
  return cached;
}

/** The package root: two levels above this module both in src/mongo/ (a checkout) and in dist/mongo/ (installed). */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * What to do when the addon does not load. A checkout has `npm run setup`, which builds the addon against
 * libmongocrypt; an application that installed the package has no such script, so it is told to install the
 * optional dependency itself, at the version this package was tested with.
 */
export function csfleInstallHint(root: string = PACKAGE_ROOT): string {
  if (existsSync(join(root, 'scripts', 'setup.mjs'))) {
    return 'run `npm run setup` in the mongo-capsule checkout (it builds mongodb-client-encryption against libmongocrypt), then try again';
  }
  let version = '';
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { optionalDependencies?: Record<string, string> };
    version = pkg.optionalDependencies?.['mongodb-client-encryption'] ?? '';
  } catch {
    // No readable package.json: name the package without a version.
  }
  const spec = version ? `mongodb-client-encryption@${version}` : 'mongodb-client-encryption';
  return `mongodb-client-encryption is an optional dependency of mongo-capsule and is not usable in this project: run \`npm install ${spec}\` in the application (it needs its prebuilt binary or a C++ toolchain to build one; \`npm install --foreground-scripts\` shows why it failed), then try again`;
}

/** Throws CsfleUnavailableError, with the hint that fits a checkout or an installed package, unless the addon loads. */
export function requireCsfle(what: string): void {
  const s = csfleStatus();
  if (!s.available) {
    throw new CsfleUnavailableError(`${what} needs client-side field level encryption, but mongodb-client-encryption cannot be loaded (${s.reason ?? 'unknown reason'})`, { hint: csfleInstallHint() });
  }
}
