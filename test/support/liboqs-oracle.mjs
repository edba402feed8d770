// The liboqs NTRU oracle of test/native/ntru-interop.test.ts. `@openforge-sh/liboqs` needs Node >= 22, so on the
// project's Node 20 the test runs this file as a child process of the pinned Node 22 that `npm run setup -- --only
// oracle` puts in the cache:
//
//   <node 22> test/support/liboqs-oracle.mjs <directory of the @openforge-sh/liboqs package>
//
// Protocol (types in liboqs-oracle.d.mts): one JSON object per line on stdin, one answer per line on stdout, in
// order. The first line out is a hello ({ ready: true, node, liboqs }) or, when liboqs does not load, a
// { ready: false, error } line before exit 1. Bytes travel as base64. The process ends when stdin ends.
// On Node >= 22 the test imports createOracle() instead and calls it in-process: one code path for both.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Our suite ids → the liboqs factory functions. */
export const ALGORITHMS = {
  'ntru-hps-4096-821': 'createNTRUHps4096821',
  'ntru-hrss-701': 'createNTRUHrss701',
};

const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const bytes = (text, field) => {
  if (typeof text !== 'string') throw new Error(`${field} must be a base64 string`);
  return new Uint8Array(Buffer.from(text, 'base64'));
};

/** Imports the package from its directory, through its own `exports` entry. */
export async function importLiboqs(packageDir) {
  const pkg = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  const entry = pkg.exports?.['.']?.import ?? pkg.main;
  return { version: pkg.version, module: await import(pathToFileURL(join(packageDir, entry)).href) };
}

/** A request handler over a loaded liboqs module; `close()` frees the WASM instances. */
export async function createOracle(oqs) {
  const kems = new Map();
  for (const [id, factory] of Object.entries(ALGORITHMS)) kems.set(id, await oqs[factory]());
  const handle = async (req) => {
    try {
      const kem = kems.get(req.alg);
      if (kem === undefined) throw new Error(`unknown algorithm ${JSON.stringify(req.alg)}; known: ${Object.keys(ALGORITHMS).join(', ')}`);
      switch (req.op) {
        case 'keygen': {
          const kp = await kem.generateKeyPair();
          return { id: req.id, ok: true, publicKey: b64(kp.publicKey), secretKey: b64(kp.secretKey) };
        }
        case 'encapsulate': {
          const r = await kem.encapsulate(bytes(req.publicKey, 'publicKey'));
          return { id: req.id, ok: true, ciphertext: b64(r.ciphertext), sharedSecret: b64(r.sharedSecret) };
        }
        case 'decapsulate': {
          const ss = await kem.decapsulate(bytes(req.ciphertext, 'ciphertext'), bytes(req.secretKey, 'secretKey'));
          return { id: req.id, ok: true, sharedSecret: b64(ss) };
        }
        default:
          throw new Error(`unknown op ${JSON.stringify(req.op)}; known: keygen, encapsulate, decapsulate`);
      }
    } catch (e) {
      return { id: req?.id, ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  };
  const close = () => {
    for (const kem of kems.values()) kem.destroy();
    kems.clear();
  };
  return { handle, close };
}

async function serve(packageDir) {
  const write = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
  let oracle;
  let version;
  try {
    if (!packageDir) throw new Error('usage: liboqs-oracle.mjs <directory of the @openforge-sh/liboqs package>');
    const loaded = await importLiboqs(packageDir);
    version = loaded.version;
    oracle = await createOracle(loaded.module);
  } catch (e) {
    write({ ready: false, error: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  }
  write({ ready: true, node: process.versions.node, liboqs: version });
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    let req;
    try {
      req = JSON.parse(line);
    } catch {
      write({ ok: false, error: 'request is not JSON' });
      continue;
    }
    write(await oracle.handle(req));
  }
  oracle.close();
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await serve(process.argv[2]);
