/** Crypto core benchmarks: keygen / wrap / unwrap / sign / verify per suite, and the cached unwrap path target. */
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import {
  generateCmk,
  generateIdentity,
  listSuites,
  parseCapsule,
  toPublicIdentity,
  unwrapKey,
  wrapKey,
} from '../src/crypto/index.ts';
import { measure, type BenchResult } from './harness.ts';

export default async function cryptoBench(): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  for (const suite of listSuites()) {
    if (!suite.available()) {
      console.warn(`[bench] ${suite.id}: not available here (native addon not built), skipped`);
      continue;
    }
    const g = `crypto ${suite.id}`;
    results.push(await measure(g, 'identity keygen (KEM + ML-DSA-87)', () => generateIdentity(suite.id), { iterations: 30 }));
    results.push(await measure(g, 'KEM keygen', () => suite.keygen(), { iterations: 50 }));
    const id = generateIdentity(suite.id);
    const pub = toPublicIdentity(id);
    const cmk = generateCmk();
    results.push(await measure(g, 'wrap (unsigned)', () => wrapKey(cmk, pub, { name: 'bench' }), { iterations: 100 }));
    results.push(await measure(g, 'wrap + sign', () => wrapKey(cmk, pub, { name: 'bench', signer: id }), { iterations: 50 }));
    const unsigned = wrapKey(cmk, pub, { name: 'bench' });
    const signed = wrapKey(cmk, pub, { name: 'bench', signer: id });
    results.push(await measure(g, 'unwrap (unsigned)', () => unwrapKey(unsigned, id).fill(0), { iterations: 100 }));
    const target = suite.id === 'ml-kem-1024' ? 'target ≤ 5 ms median (DESIGN §7)' : undefined;
    results.push({
      ...(await measure(g, 'verify + unwrap (signed, key in memory)', () => unwrapKey(signed, id).fill(0), { iterations: 100 })),
      ...(target ? { note: target } : {}),
    });
  }
  const signer = generateIdentity('ml-kem-768');
  const msg = parseCapsule(wrapKey(generateCmk(), signer, { name: 'bench' })).signedPart;
  const sig = ml_dsa87.sign(msg, signer.signerSecretKey, { context: new TextEncoder().encode('mongo-capsule/v1') });
  const ctx = { context: new TextEncoder().encode('mongo-capsule/v1') };
  results.push(await measure('crypto ml-dsa-87', 'sign (capsule body)', () => ml_dsa87.sign(msg, signer.signerSecretKey, ctx), { iterations: 50 }));
  results.push(await measure('crypto ml-dsa-87', 'verify (capsule body)', () => ml_dsa87.verify(sig, msg, signer.signer.publicKey, ctx), { iterations: 100 }));
  return results;
}
