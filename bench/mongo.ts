/**
 * MongoDB + CSFLE benchmarks (DESIGN.md §7), against the same server the integration tests use (started here
 * through scripts/lib/test-server.mjs, stopped at the end):
 * - CSFLE decrypt of one document holding 1500 deterministic-encrypted strings, read through the encrypted
 *   client (automatic decryption): docs/s, target ≥ 130 (libmongocrypt's spec benchmark, Python: ~132);
 * - insert throughput of 1 KiB documents with 2 explicitly encrypted fields vs the same documents in plain
 *   text: ratio, target ≥ 0.7;
 * - 20 concurrent seeders of one capsule: exactly one capsule, the same CMK for every caller (checked each round);
 * - opening an encrypted client from a capsule (load, verify signature, unwrap) vs from a raw local key:
 *   ratio, target ≤ 1.2.
 * Each one names the server kind: FerretDB adds its own overhead to both sides of a ratio.
 */
import { randomBytes } from 'node:crypto';
import { BSON, ClientEncryption, MongoClient } from 'mongodb';
import { generateIdentity, toPublicIdentity, unwrapKey } from '../src/crypto/index.ts';
import { CapsuleStore, csfleStatus, openEncryptedClient, provisionCluster, seedCapsule } from '../src/mongo/index.ts';
import { startTestServer } from '../scripts/lib/test-server.mjs';
import { measure, type BenchResult } from './harness.ts';

const GROUP = 'mongo';
const FIELDS = 1500;
const BATCH = 100;

export default async function benchMongo(): Promise<BenchResult[]> {
  const csfle = csfleStatus();
  if (!csfle.available) throw new Error(`CSFLE benchmarks need mongodb-client-encryption (run \`npm run setup\`): ${csfle.reason ?? ''}`);
  const server = await startTestServer({ log: (m) => console.error(`[bench] ${m}`) });
  if (server.kind === 'none') throw new Error(server.reason);
  const results: BenchResult[] = [];
  const db = `bench_${randomBytes(4).toString('hex')}`;
  const capsuleNamespace = `${db}.capsules`;
  const keyVaultNamespace = `${db}.__keyVault`;
  const secret = generateIdentity('ml-kem-1024', { name: 'bench' });
  const unwrap = async (c: Uint8Array) => unwrapKey(c, secret);
  const on = `${server.kind}`;
  const plain = new MongoClient(server.uri);
  try {
    await plain.connect();
    await provisionCluster({ uri: server.uri, capsuleName: 'bench', recipient: toPublicIdentity(secret), signer: secret, unwrap, dataKeyAltNames: ['det', 'rnd'], capsuleNamespace, keyVaultNamespace });
    const enc = await openEncryptedClient({ uri: server.uri, capsuleName: 'bench', unwrap, capsuleNamespace, keyVaultNamespace });
    try {
      // 1. Decrypt one document with 1500 deterministic-encrypted strings.
      const big: Record<string, unknown> = { _id: 'big' };
      for (let i = 0; i < FIELDS; i++) big[`f${i}`] = await enc.encryptDeterministic(`value ${i} ${'x'.repeat(16)}`, 'det');
      await plain.db(db).collection('big').insertOne(big as never);
      const encBig = enc.client.db(db).collection('big');
      const plainBig = plain.db(db).collection('big');
      const check = await encBig.findOne({ _id: 'big' as never });
      if (check?.f1499 !== `value 1499 ${'x'.repeat(16)}`) throw new Error('decrypt benchmark: the document did not decrypt');
      const dec = await measure(GROUP, `decrypt 1 doc × ${FIELDS} det. strings (${on})`, () => encBig.findOne({ _id: 'big' as never }), { iterations: 30, warmup: 3 });
      const raw = await measure(GROUP, `same doc, plain findOne, no decrypt (${on})`, () => plainBig.findOne({ _id: 'big' as never }), { iterations: 30, warmup: 3 });
      // What libmongocrypt's spec benchmark measures: decrypting the document's bytes, no server round trip.
      // The driver's auto-decrypter is internal API; a benchmark may use it, the product does not.
      const autoEncrypter = (enc.client as unknown as { autoEncrypter?: { decrypt(b: Uint8Array): Promise<unknown> } }).autoEncrypter;
      if (autoEncrypter === undefined) throw new Error('decrypt benchmark: the encrypted client has no auto-decrypter');
      const bytes = BSON.serialize(big);
      const only = await measure(GROUP, `decrypt 1 doc × ${FIELDS} det. strings, no I/O`, () => autoEncrypter.decrypt(bytes), { iterations: 30, warmup: 3 });
      results.push(
        { ...only, note: `${(1000 / only.medianMs).toFixed(0)} docs/s (target ≥ 130, 1 thread)` },
        { ...dec, note: `${(1000 / dec.medianMs).toFixed(0)} docs/s including the fetch` },
        { ...raw, note: 'the fetch alone' },
      );

      // 2. Insert throughput, 1 KiB docs with 2 encrypted fields, vs plain.
      const filler = 'y'.repeat(1024 - 200);
      const mkDoc = (i: number) => ({ i, email: `user${i}@example.com`, ssn: `${100 + (i % 900)}-45-${1000 + (i % 9000)}`, notes: filler });
      let n = 0;
      const encColl = enc.client.db(db).collection('enc_insert');
      const plainColl = plain.db(db).collection('plain_insert');
      const encryptBatch = async () => {
        const base = n;
        n += BATCH;
        // Independent encryptions run concurrently: libmongocrypt work interleaves with the driver's async steps.
        return Promise.all(
          Array.from({ length: BATCH }, async (_, k) => {
            const d = mkDoc(base + k);
            const [email, ssn] = await Promise.all([enc.encryptDeterministic(d.email, 'det'), enc.encryptRandom(d.ssn, 'rnd')]);
            return { ...d, email, ssn };
          }),
        );
      };
      // What one field costs (libmongocrypt's context + finalize dominate), to read the insert ratio against.
      const det = await measure(GROUP, 'explicit encrypt, 1 short string, deterministic', () => enc.encryptDeterministic('user1@example.com', 'det'), { iterations: 2000, warmup: 100 });
      const rnd = await measure(GROUP, 'explicit encrypt, 1 short string, random', () => enc.encryptRandom('123-45-6789', 'rnd'), { iterations: 2000, warmup: 100 });
      results.push({ ...det, note: 'per field' }, { ...rnd, note: 'per field' });
      const encInsert = await measure(GROUP, `insert ${BATCH} × 1 KiB docs, 2 encrypted fields (${on})`, async () => encColl.insertMany(await encryptBatch()), { iterations: 20, warmup: 2 });
      // A steady writer overlaps encrypting the next batch with inserting this one (CPU with I/O).
      const ROUNDS = 10;
      const pipelined = await measure(
        GROUP,
        `insert ${ROUNDS}×${BATCH} docs, encrypt next batch during insert (${on})`,
        async () => {
          let next = encryptBatch();
          for (let r = 0; r < ROUNDS; r++) {
            const docs = await next;
            next = r + 1 < ROUNDS ? encryptBatch() : Promise.resolve([]);
            await encColl.insertMany(docs);
          }
          await next;
        },
        { iterations: 5, warmup: 1 },
      );
      const plainInsert = await measure(
        GROUP,
        `insert ${BATCH} × 1 KiB docs, plain (${on})`,
        async () => {
          const docs = [];
          for (let k = 0; k < BATCH; k++) docs.push(mkDoc(n++));
          await plainColl.insertMany(docs);
        },
        { iterations: 20, warmup: 2 },
      );
      const rate = (ms: number, docs: number) => (docs * 1000) / ms;
      const plainRate = rate(plainInsert.medianMs, BATCH);
      results.push(
        { ...encInsert, note: `${rate(encInsert.medianMs, BATCH).toFixed(0)} docs/s; encrypted/plain ${(rate(encInsert.medianMs, BATCH) / plainRate).toFixed(2)} (target ≥ 0.7)` },
        { ...pipelined, note: `${rate(pipelined.medianMs, ROUNDS * BATCH).toFixed(0)} docs/s; encrypted/plain ${(rate(pipelined.medianMs, ROUNDS * BATCH) / plainRate).toFixed(2)} (target ≥ 0.7)` },
        { ...plainInsert, note: `${plainRate.toFixed(0)} docs/s` },
      );
    } finally {
      await enc.close();
    }

    // 3. 20 concurrent seeders of one capsule name: exactly one capsule, and every caller learns the same CMK.
    let round = 0;
    const seeders = await measure(
      GROUP,
      `20 concurrent seeders of one capsule (${on})`,
      async () => {
        const name = `race-${round++}`;
        const results = await Promise.all(
          Array.from({ length: 20 }, () => seedCapsule(new CapsuleStore(plain, { namespace: capsuleNamespace }), { name, recipient: toPublicIdentity(secret), signer: secret, unwrap })),
        );
        try {
          const cmks = new Set(results.map((r) => Object.values(r.keys!.kmsProviders as unknown as Record<string, { key: Buffer }>)[0]!.key.toString('hex')));
          const stored = await plain.db(db).collection('capsules').countDocuments({ name });
          if (stored !== 1 || cmks.size !== 1 || results.filter((r) => r.created).length !== 1) {
            throw new Error(`concurrent seeding: ${stored} capsule(s), ${cmks.size} distinct CMK(s) among 20 callers`);
          }
        } finally {
          for (const r of results) r.keys?.wipe();
        }
      },
      { iterations: 5, warmup: 1 },
    );
    results.push({ ...seeders, note: 'checked every round: 1 capsule stored, 1 creator, the same CMK for all 20' });

    // 4. Opening an encrypted client from the capsule vs from a raw key.
    const rawKey = await unwrap((await plain.db(db).collection('capsules').findOne({ name: 'bench' }))!.bytes.value());
    const provider = String((await plain.db(db).collection('capsules').findOne({ name: 'bench' }))!.kmsProvider);
    const fromCapsule = await measure(
      GROUP,
      `open encrypted client from capsule (${on})`,
      async () => {
        const c = await openEncryptedClient({ uri: server.uri, capsuleName: 'bench', unwrap, capsuleNamespace, keyVaultNamespace });
        await c.close();
      },
      { iterations: 20, warmup: 3 },
    );
    const fromKey = await measure(
      GROUP,
      `open encrypted client from raw local key (${on})`,
      async () => {
        const kmsProviders = { [provider]: { key: Buffer.from(rawKey) } } as never;
        const c = new MongoClient(server.uri, { autoEncryption: { keyVaultNamespace, kmsProviders, bypassAutoEncryption: true } });
        new ClientEncryption(c, { keyVaultNamespace, kmsProviders });
        await c.connect();
        await c.close();
      },
      { iterations: 20, warmup: 3 },
    );
    rawKey.fill(0);
    results.push(
      { ...fromCapsule, note: `capsule/raw ${(fromCapsule.medianMs / fromKey.medianMs).toFixed(2)}× (target ≤ 1.2×); adds a connection to load the capsule + verify + unwrap` },
      { ...fromKey, note: 'baseline' },
    );
    return results;
  } finally {
    await plain.db(db).dropDatabase().catch(() => {});
    await plain.close();
    await server.stop();
  }
}
