/**
 * NTRU: the native addon (ntrust-native, Rust) against the liboqs WASM build (`@openforge-sh/liboqs`,
 * PQClean C) in the same process and run. Target (DESIGN.md §7): native encaps and decaps faster than the
 * liboqs WASM peer. Keygen is listed too; it is dominated by two polynomial inversions.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { defaultCacheDir, oraclePaths } from '../scripts/setup/oracle.mjs';
import { getSuite } from '../src/crypto/kem.ts';
import '../src/crypto/ntru.ts';
import { measure, type BenchResult } from './harness.ts';

interface OqsKem {
  generateKeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array };
  encapsulate(publicKey: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(ciphertext: Uint8Array, secretKey: Uint8Array): Uint8Array;
  destroy(): void;
}

const SETS = [
  { id: 'ntru-hps-4096-821', oqs: 'createNTRUHps4096821' },
  { id: 'ntru-hrss-701', oqs: 'createNTRUHrss701' },
] as const;

const KEYGEN = { iterations: 30, warmup: 3 };
const KEM_OPS = { iterations: 200, warmup: 20 };

/**
 * liboqs in this process: an installed copy, else the one `npm run setup -- --only oracle` put in the cache (its
 * `engines` asks for Node 22, but the WASM build runs here too; in-process, so the timings carry no IPC).
 */
async function importOqs(): Promise<Record<string, () => Promise<unknown>>> {
  try {
    return (await import('@openforge-sh/liboqs')) as unknown as Record<string, () => Promise<unknown>>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
    const dir = oraclePaths(defaultCacheDir()).liboqs;
    const entry = join(dir, 'src', 'index.js');
    if (!existsSync(entry)) throw new Error('not installed: `npm run setup -- --only oracle` (or `npm install --no-save @openforge-sh/liboqs@0.14.3`)');
    return (await import(pathToFileURL(entry).href)) as Record<string, () => Promise<unknown>>;
  }
}

async function loadOqs(factory: (typeof SETS)[number]['oqs']): Promise<OqsKem | string> {
  try {
    const oqs = await importOqs();
    return (await oqs[factory]!()) as OqsKem;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

export default async function ntruBench(): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  for (const { id, oqs } of SETS) {
    const group = id;
    const suite = getSuite(id);
    const peer = await loadOqs(oqs);

    let native: Record<'keygen' | 'encaps' | 'decaps', BenchResult> | undefined;
    if (suite.available()) {
      const { publicKey, secretKey } = suite.keygen();
      const { cipherText } = suite.encapsulate(publicKey);
      native = {
        keygen: await measure(group, 'native keygen', () => suite.keygen(), KEYGEN),
        encaps: await measure(group, 'native encaps', () => suite.encapsulate(publicKey), KEM_OPS),
        decaps: await measure(group, 'native decaps', () => suite.decapsulate(cipherText, secretKey), KEM_OPS),
      };
      secretKey.fill(0);
    } else {
      results.push({ group, name: 'native', medianMs: Number.NaN, p90Ms: Number.NaN, iterations: 0, note: 'addon not built: npm run build:native' });
    }

    if (typeof peer === 'string') {
      results.push({ group, name: 'liboqs wasm', medianMs: Number.NaN, p90Ms: Number.NaN, iterations: 0, note: `did not load: ${peer}` });
      if (native) results.push(native.keygen, native.encaps, native.decaps);
      continue;
    }
    try {
      const kp = peer.generateKeyPair();
      const { ciphertext } = peer.encapsulate(kp.publicKey);
      const wasm = {
        keygen: await measure(group, 'liboqs wasm keygen', () => peer.generateKeyPair(), KEYGEN),
        encaps: await measure(group, 'liboqs wasm encaps', () => peer.encapsulate(kp.publicKey), KEM_OPS),
        decaps: await measure(group, 'liboqs wasm decaps', () => peer.decapsulate(ciphertext, kp.secretKey), KEM_OPS),
      };
      if (native) {
        for (const op of ['keygen', 'encaps', 'decaps'] as const) {
          const ratio = wasm[op].medianMs / native[op].medianMs;
          const target = op === 'keygen' ? '' : ratio > 1 ? ' (target met)' : ' (target: faster than liboqs wasm)';
          native[op].note = `${ratio.toFixed(2)}x liboqs wasm speed${target}`;
        }
        results.push(native.keygen, native.encaps, native.decaps);
      }
      results.push(wasm.keygen, wasm.encaps, wasm.decaps);
    } finally {
      peer.destroy();
    }
  }
  return results;
}
