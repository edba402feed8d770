/**
 * NTRU KEM suites (NIST PQC round 3 submission "NTRU", Chen et al., 2020), backed by the native addon in
 * `native/` (Rust, napi-rs, over the `ntrust-native` port of the round-3 reference implementation).
 *
 * - `ntru-hps-4096-821`: NTRU-HPS-4096-821, NIST category 5. pk 1230 / sk 1590 / ct 1230 bytes.
 * - `ntru-hrss-701`: NTRU-HRSS-701, NIST category 3. pk 1138 / sk 1450 / ct 1138 bytes.
 * Both share 32-byte secrets; the KEM is the round-3 one, so keys and ciphertexts interoperate with
 * PQClean and liboqs (the tests check this).
 *
 * Caveats:
 * - NTRU was a round-3 finalist and was not selected: it has no FIPS standard. Prefer ML-KEM unless a
 *   deployment needs NTRU (for example capsules made by the earlier NTRU prototype).
 * - Randomness: key generation and encapsulation draw from the OS CSPRNG inside the addon. There is no
 *   seeded key generation or caller-supplied encapsulation randomness (`lengths.seed` and
 *   `lengths.encapsRandomness` are absent, and passing either throws `InvalidArgumentError`). The NIST
 *   DRBG exists only behind `ntruKatResponseFile`, for the known-answer test.
 * - Constant time: the reference code is written without secret-dependent branches or memory indices
 *   (constant-time sort for fixed-weight sampling, masked conditional move for implicit rejection,
 *   constant-time inversions), but it is compiled Rust with no hardware-level guarantee and has had no
 *   dedicated side-channel audit. Length checks and the JavaScript glue are not constant time; they only
 *   see public lengths.
 * - Decapsulation never throws for a wrong key or a modified ciphertext (implicit rejection): it returns an
 *   unrelated secret, and the capsule's AEAD rejects it.
 * - Wiping: the addon zeroizes its own copies of secret keys and shared secrets; the returned byte arrays
 *   are the caller's to wipe. ntrust-native does not wipe its internal temporaries.
 * - Availability: the suites are always registered. Without the built addon `available()` is false and
 *   every operation throws `NativeAddonMissingError`, whose hint says how to get it (`npm run build:native` in a
 *   checkout; an installed package does not ship it). `suiteAvailable(id)` is the check to guard on. The addon is
 *   loaded on first use from `native/<suite>.node`, or from `$MONGO_CAPSULE_NATIVE_DIR` when set.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, NativeAddonMissingError } from '../errors.ts';
import { checkBytes, registerSuite, type KemLengths, type KemSuite } from './kem.ts';

/** What a built `native/<suite>.node` exports (see native/src/*.rs for the documentation of each). */
interface NtruAddon {
  parameterSet(): {
    suite: string;
    algorithm: string;
    publicKeyBytes: number;
    secretKeyBytes: number;
    cipherTextBytes: number;
    sharedSecretBytes: number;
  };
  keypair(): { publicKey: Buffer; secretKey: Buffer };
  encapsulate(publicKey: Uint8Array): { cipherText: Buffer; sharedSecret: Buffer };
  decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Buffer;
  katResponseFile(): string;
}

interface NtruParams {
  id: string;
  /** The algorithm name of the submission and its KAT files. */
  algorithm: string;
  description: string;
  nistLevel: 1 | 3 | 5;
  lengths: KemLengths;
}

const PARAMS: readonly NtruParams[] = [
  {
    id: 'ntru-hps-4096-821',
    algorithm: 'ntruhps4096821',
    description: 'NTRU-HPS-4096-821 (NIST PQC round 3 NTRU, not standardized), NIST level 5, native addon',
    nistLevel: 5,
    lengths: { publicKey: 1230, secretKey: 1590, cipherText: 1230, sharedSecret: 32 },
  },
  {
    id: 'ntru-hrss-701',
    algorithm: 'ntruhrss701',
    description: 'NTRU-HRSS-701 (NIST PQC round 3 NTRU, not standardized), NIST level 3, native addon',
    nistLevel: 3,
    lengths: { publicKey: 1138, secretKey: 1450, cipherText: 1138, sharedSecret: 32 },
  },
];

type LoadResult = { addon: NtruAddon } | { error: Error };
const loaded = new Map<string, LoadResult>();

function addonDir(): string {
  return process.env.MONGO_CAPSULE_NATIVE_DIR ?? fileURLToPath(new URL('../../native/', import.meta.url));
}

/** Loads `native/<suite>.node` once per process and checks that it implements exactly `params`. */
function load(params: NtruParams): LoadResult {
  const cached = loaded.get(params.id);
  if (cached !== undefined) return cached;
  let result: LoadResult;
  const file = join(addonDir(), `${params.id}.node`);
  if (!existsSync(file)) {
    result = { error: new Error(`${file} does not exist`) };
  } else {
    try {
      const addon = createRequire(import.meta.url)(file) as NtruAddon;
      const p = addon.parameterSet();
      const { lengths } = params;
      if (
        p.suite !== params.id ||
        p.algorithm !== params.algorithm ||
        p.publicKeyBytes !== lengths.publicKey ||
        p.secretKeyBytes !== lengths.secretKey ||
        p.cipherTextBytes !== lengths.cipherText ||
        p.sharedSecretBytes !== lengths.sharedSecret
      ) {
        throw new Error(`${file} implements ${p.suite} (${p.algorithm}), not ${params.id}`);
      }
      result = { addon };
    } catch (e) {
      result = { error: e instanceof Error ? e : new Error(String(e)) };
    }
  }
  loaded.set(params.id, result);
  return result;
}

/**
 * How to get the addon from where this module runs: a checkout holds the crate (native/Cargo.toml) and the
 * build script; an installed package ships neither, so the addon comes from a checkout of the same version.
 */
function addonHint(): string {
  const env = process.env.MONGO_CAPSULE_NATIVE_DIR;
  if (env !== undefined) return `MONGO_CAPSULE_NATIVE_DIR is ${env}: put the ntru-*.node files that \`npm run build:native\` builds there, or unset it`;
  if (existsSync(fileURLToPath(new URL('../../native/Cargo.toml', import.meta.url)))) {
    return 'run `npm run build:native` (needs Rust 1.88 or newer), then try again; ML-KEM and X-Wing need no addon';
  }
  return (
    'the installed package does not ship it: in a checkout of mongo-capsule run `npm run build:native` (needs Rust 1.88 or newer) ' +
    'and set MONGO_CAPSULE_NATIVE_DIR to its native/ directory; ML-KEM and X-Wing need no addon'
  );
}

function requireAddon(params: NtruParams): NtruAddon {
  const r = load(params);
  if ('error' in r) throw new NativeAddonMissingError(params.id, { cause: r.error, hint: addonHint() });
  return r.addon;
}

/** A view of the addon's Buffer as a plain Uint8Array (same memory, so wiping the view wipes the bytes). */
function bytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function ntruSuite(params: NtruParams): KemSuite {
  const { id, lengths } = params;
  return {
    id,
    description: params.description,
    nistLevel: params.nistLevel,
    lengths,
    available: () => 'addon' in load(params),
    keygen(seed) {
      const addon = requireAddon(params);
      if (seed !== undefined) {
        throw new InvalidArgumentError(`${id} keygen: seeded key generation is not supported; NTRU keys come from the OS CSPRNG`);
      }
      const kp = addon.keypair();
      return { publicKey: bytes(kp.publicKey), secretKey: bytes(kp.secretKey) };
    },
    encapsulate(publicKey, randomness) {
      const addon = requireAddon(params);
      if (randomness !== undefined) {
        throw new InvalidArgumentError(`${id} encapsulate: caller-supplied randomness is not supported; NTRU uses the OS CSPRNG`);
      }
      checkBytes(`${id} encapsulate`, 'public key', publicKey, lengths.publicKey);
      const out = addon.encapsulate(publicKey);
      return { cipherText: bytes(out.cipherText), sharedSecret: bytes(out.sharedSecret) };
    },
    decapsulate(cipherText, secretKey) {
      const addon = requireAddon(params);
      checkBytes(`${id} decapsulate`, 'ciphertext', cipherText, lengths.cipherText);
      checkBytes(`${id} decapsulate`, 'secret key', secretKey, lengths.secretKey);
      return bytes(addon.decapsulate(cipherText, secretKey));
    },
  };
}

for (const params of PARAMS) registerSuite(ntruSuite(params));

/** Ids of the NTRU suites, whether or not the addon is built. */
export const NTRU_SUITE_IDS: readonly string[] = PARAMS.map((p) => p.id);

/**
 * For the known-answer test only: the full 100-record NIST KAT response file (`PQCkemKAT_<sk>.rsp` text)
 * regenerated by the addon for `suiteId` with the deterministic NIST AES-256-CTR DRBG. Its keys derive
 * from public seeds; never use them. Throws `NativeAddonMissingError` when the addon is not built.
 * @example
 * const digest = createHash('sha256').update(ntruKatResponseFile('ntru-hrss-701')).digest('hex');
 */
export function ntruKatResponseFile(suiteId: string): string {
  const params = PARAMS.find((p) => p.id === suiteId);
  if (params === undefined) {
    throw new InvalidArgumentError(`ntruKatResponseFile: ${JSON.stringify(suiteId)} is not an NTRU suite (${NTRU_SUITE_IDS.join(', ')})`);
  }
  return requireAddon(params).katResponseFile();
}
