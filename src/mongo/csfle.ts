/**
 * Whether client-side field level encryption can run here: the optional `mongodb-client-encryption` addon
 * (libmongocrypt) must load. Checked before anything is written, so a missing addon never leaves half work.
 */
import { createRequire } from 'node:module';
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

/** Throws CsfleUnavailableError (naming `npm run setup`) unless the addon loads. */
export function requireCsfle(what: string): void {
  const s = csfleStatus();
  if (!s.available) {
    throw new CsfleUnavailableError(`${what} needs client-side field level encryption, but mongodb-client-encryption cannot be loaded (${s.reason ?? 'unknown reason'})`);
  }
}
