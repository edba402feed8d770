// Types of test/support/liboqs-oracle.mjs: the JSON-lines protocol of the liboqs NTRU oracle and its in-process form.

/** The NTRU parameter sets the oracle serves, by our suite ids. */
export type OracleAlgorithm = 'ntru-hps-4096-821' | 'ntru-hrss-701';
export const ALGORITHMS: Record<OracleAlgorithm, string>;

/** One request line on stdin; byte fields are base64. `id` comes back in the answer. */
export type OracleRequest =
  | { id: number; op: 'keygen'; alg: OracleAlgorithm }
  | { id: number; op: 'encapsulate'; alg: OracleAlgorithm; publicKey: string }
  | { id: number; op: 'decapsulate'; alg: OracleAlgorithm; ciphertext: string; secretKey: string };

/** One answer line on stdout, in request order; byte fields are base64. */
export type OracleResponse =
  | { id: number; ok: true; publicKey: string; secretKey: string }
  | { id: number; ok: true; ciphertext: string; sharedSecret: string }
  | { id: number; ok: true; sharedSecret: string }
  | { id?: number; ok: false; error: string };

/** The first line the child prints: ready with the versions it runs, or why liboqs did not load (then it exits 1). */
export type OracleHello = { ready: true; node: string; liboqs: string } | { ready: false; error: string };

export interface Oracle {
  handle(request: OracleRequest): Promise<OracleResponse>;
  close(): void;
}
export function importLiboqs(packageDir: string): Promise<{ version: string; module: unknown }>;
export function createOracle(oqs: unknown): Promise<Oracle>;
