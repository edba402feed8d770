/**
 * Key manager benchmarks: `KeyManager.unwrap` of a signed capsule with a cold cache (every call reads the
 * keychain and re-derives the identity from its seeds) versus a warm one (identity cached; what an application
 * pays per unwrap). In-memory keychain always; the OS keychain too when one is reachable (under a throwaway
 * service name that is removed afterwards). Target (DESIGN.md §7): warm, ML-KEM-1024, signature verified ≤ 5 ms.
 */
import { randomBytes } from 'node:crypto';
import { generateCmk, getSuite, hasSuite, unwrapKey, wrapKey } from '../src/crypto/index.ts';
import { MemoryKeychain, OsKeychain, type Keychain } from '../src/keys/keychain.ts';
import { KeyManager } from '../src/keys/manager.ts';
import { measure, type BenchResult } from './harness.ts';

async function pair(keychainName: string, keychain: Keychain, suite: string, iterations: number): Promise<BenchResult[]> {
  const name = `bench-${randomBytes(4).toString('hex')}`;
  const setup = new KeyManager({ keychain });
  const pub = await setup.initialize(name, suite);
  try {
    const signer = await setup.getSecretIdentity(name);
    const capsule = wrapKey(generateCmk(), pub, { name: 'bench', signer });
    setup.clearCache();
    const cold = new KeyManager({ keychain, cacheTtlMs: 0 });
    const warm = new KeyManager({ keychain, cacheTtlMs: 60 * 60_000 });
    const coldResult = await measure('keys', `unwrap ${suite}, cold cache (${keychainName})`, async () => (await cold.unwrap(capsule, name)).fill(0), { iterations, warmup: 2 });
    const warmResult = await measure('keys', `unwrap ${suite}, warm cache (${keychainName})`, async () => (await warm.unwrap(capsule, name)).fill(0), { iterations: 100, warmup: 5 });
    warm.clearCache();
    // The same work without the manager: what the warm path costs on top of the crypto.
    const identity = await warm.getSecretIdentity(name);
    const baseline = await measure('keys', `unwrapKey ${suite}, no manager (baseline)`, () => unwrapKey(capsule, identity).fill(0), { iterations: 100, warmup: 5 });
    warm.clearCache();
    baseline.note = `manager overhead when warm: ${(warmResult.medianMs - baseline.medianMs).toFixed(3)} ms`;
    const ratio = coldResult.medianMs / warmResult.medianMs;
    coldResult.note = 'keychain read + identity decode (keygen from seeds) + verify + decaps';
    warmResult.note = `${ratio.toFixed(1)}x faster than cold${suite === 'ml-kem-1024' ? `; target <= 5 ms: ${warmResult.medianMs <= 5 ? 'met' : 'missed'}` : ''}`;
    return keychainName === 'memory keychain' ? [coldResult, warmResult, baseline] : [coldResult, warmResult];
  } finally {
    await setup.delete(name).catch(() => undefined);
  }
}

async function osKeychainReachable(keychain: OsKeychain): Promise<string | undefined> {
  if (process.platform === 'linux' && !process.env.DBUS_SESSION_BUS_ADDRESS) return 'no D-Bus session bus';
  try {
    await keychain.store('probe', new Uint8Array([1]));
    await keychain.delete('probe');
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

export default async function keysBench(): Promise<BenchResult[]> {
  const suites = ['ml-kem-1024', ...(hasSuite('ntru-hps-4096-821') && getSuite('ntru-hps-4096-821').available() ? ['ntru-hps-4096-821'] : [])];
  const results: BenchResult[] = [];
  for (const suite of suites) results.push(...(await pair('memory keychain', new MemoryKeychain(), suite, 30)));
  const os = new OsKeychain({ service: `mongo-capsule-bench-${randomBytes(4).toString('hex')}` });
  const why = await osKeychainReachable(os);
  if (why === undefined) {
    for (const suite of suites) results.push(...(await pair(os.description.replace(/ \(service .*\)$/, ''), os, suite, 30)));
  } else {
    console.warn(`[bench] keys: OS keychain not reachable (${why}); run inside a keyring session for those rows`);
  }
  return results;
}
