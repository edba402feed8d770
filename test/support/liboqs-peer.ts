/**
 * The liboqs NTRU peer of test/native/ntru-interop.test.ts, wherever it can come from:
 *
 * - in-process, when this Node is >= 22 and `@openforge-sh/liboqs` can be imported (installed with
 *   `npm install --no-save`, or the copy in the oracle cache);
 * - otherwise test/support/liboqs-oracle.mjs as a child of the pinned Node 22 in the cache
 *   (`npm run setup -- --only oracle`), over JSON lines (protocol in liboqs-oracle.d.mts);
 * - otherwise nothing, and a reason that names the missing piece and the command that provides it.
 * A peer that is installed but does not start is a failure, never a skip.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { defaultCacheDir, LIBOQS_PACKAGE, LIBOQS_VERSION, NODE_VERSION, oraclePaths } from '../../scripts/setup/oracle.mjs';
import type { Oracle, OracleAlgorithm, OracleHello, OracleRequest, OracleResponse } from './liboqs-oracle.mjs';

const ORACLE_SCRIPT = fileURLToPath(new URL('./liboqs-oracle.mjs', import.meta.url));
const SETUP_HINT = '`npm run setup -- --only oracle`';
const START_TIMEOUT_MS = 30_000;

export interface LiboqsPeer {
  /** How the peer runs, for the test's title and log: in-process or the child's Node and liboqs versions. */
  readonly via: string;
  keygen(alg: OracleAlgorithm): Promise<{ publicKey: Uint8Array; secretKey: Uint8Array }>;
  encapsulate(alg: OracleAlgorithm, publicKey: Uint8Array): Promise<{ ciphertext: Uint8Array; sharedSecret: Uint8Array }>;
  decapsulate(alg: OracleAlgorithm, ciphertext: Uint8Array, secretKey: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

type Request = OracleRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
const bytes = (text: unknown, field: string): Uint8Array => {
  if (typeof text !== 'string') throw new Error(`liboqs oracle answer has no ${field}`);
  return new Uint8Array(Buffer.from(text, 'base64'));
};

/** The typed operations over a function that sends one request and resolves with its answer. */
function peerOver(via: string, send: (req: Request) => Promise<OracleResponse>, close: () => Promise<void>): LiboqsPeer {
  const call = async (req: Request): Promise<Record<string, unknown>> => {
    const res = await send(req);
    if (!res.ok) throw new Error(`liboqs oracle ${req.op} (${req.alg}) failed: ${res.error}`);
    return res as unknown as Record<string, unknown>;
  };
  return {
    via,
    async keygen(alg) {
      const r = await call({ op: 'keygen', alg });
      return { publicKey: bytes(r.publicKey, 'publicKey'), secretKey: bytes(r.secretKey, 'secretKey') };
    },
    async encapsulate(alg, publicKey) {
      const r = await call({ op: 'encapsulate', alg, publicKey: b64(publicKey) });
      return { ciphertext: bytes(r.ciphertext, 'ciphertext'), sharedSecret: bytes(r.sharedSecret, 'sharedSecret') };
    },
    async decapsulate(alg, ciphertext, secretKey) {
      const r = await call({ op: 'decapsulate', alg, ciphertext: b64(ciphertext), secretKey: b64(secretKey) });
      return bytes(r.sharedSecret, 'sharedSecret');
    },
    close,
  };
}

async function inProcess(module: unknown, version: string): Promise<LiboqsPeer> {
  const { createOracle } = await import('./liboqs-oracle.mjs');
  const oracle: Oracle = await createOracle(module);
  let id = 0;
  // The same handler the child runs, with the same base64 encoding, so both paths test the same protocol code.
  return peerOver(`in-process liboqs ${version} on Node ${process.versions.node}`, (req) => oracle.handle({ ...req, id: ++id } as OracleRequest), async () => oracle.close());
}

function child(node: string, packageDir: string): Promise<LiboqsPeer> {
  return new Promise((resolve, reject) => {
    const proc: ChildProcessWithoutNullStreams = spawn(node, [ORACLE_SCRIPT, packageDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = `${stderr}${d}`.slice(-4000)));
    const pending = new Map<number, { resolve: (r: OracleResponse) => void; reject: (e: Error) => void }>();
    let hello: OracleHello | undefined;
    let ended: Error | undefined;
    let nextId = 0;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the liboqs oracle (${node}) did not answer within ${START_TIMEOUT_MS / 1000} s${stderr ? `: ${stderr.trim()}` : ''}`));
    }, START_TIMEOUT_MS);
    const fail = (e: Error) => {
      ended = e;
      clearTimeout(timer);
      if (hello === undefined) reject(e);
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    };
    proc.on('error', (e) => fail(new Error(`the liboqs oracle (${node}) could not start: ${e.message}`)));
    proc.on('exit', (code, signal) => fail(new Error(`the liboqs oracle exited (${code ?? signal})${stderr ? `: ${stderr.trim()}` : ''}`)));
    createInterface({ input: proc.stdout, crlfDelay: Infinity }).on('line', (line) => {
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        fail(new Error(`the liboqs oracle printed a line that is not JSON: ${line.slice(0, 200)}`));
        proc.kill('SIGKILL');
        return;
      }
      if (hello === undefined) {
        hello = msg as OracleHello;
        clearTimeout(timer);
        if (!hello.ready) {
          reject(new Error(`the liboqs oracle could not load liboqs: ${hello.error}`));
          return;
        }
        const closed = new Promise<void>((done) => proc.once('exit', () => done()));
        const via = `liboqs ${hello.liboqs} in a child process on Node ${hello.node}`;
        resolve(
          peerOver(
            via,
            (req) =>
              new Promise<OracleResponse>((res, rej) => {
                if (ended) return rej(ended);
                const id = ++nextId;
                pending.set(id, { resolve: res, reject: rej });
                proc.stdin.write(`${JSON.stringify({ ...req, id })}\n`);
              }),
            async () => {
              if (proc.exitCode === null && proc.signalCode === null) {
                proc.stdin.end();
                await closed;
              }
            },
          ),
        );
        return;
      }
      const res = msg as OracleResponse;
      const waiter = res.id === undefined ? undefined : pending.get(res.id);
      if (waiter === undefined) {
        fail(new Error(`the liboqs oracle answered a request it was not sent: ${line.slice(0, 200)}`));
        return;
      }
      pending.delete(res.id!);
      waiter.resolve(res);
    });
  });
}

export type PeerResult = { peer: LiboqsPeer } | { skip: string } | { broken: string };

/**
 * The peer; or why there is none, as `skip` when a piece is missing (naming it and the command that provides it)
 * or as `broken` when everything is there and still does not run, which the test reports as a failure.
 */
export async function openLiboqsPeer(env: NodeJS.ProcessEnv = process.env): Promise<PeerResult> {
  const paths = oraclePaths(defaultCacheDir(env));
  const major = Number(process.versions.node.split('.')[0]);
  try {
    if (major >= 22) {
      try {
        const module: unknown = await import('@openforge-sh/liboqs');
        return { peer: await inProcess(module, 'from node_modules') };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
      }
      if (existsSync(paths.liboqs)) {
        const { importLiboqs } = await import('./liboqs-oracle.mjs');
        const loaded = await importLiboqs(paths.liboqs);
        return { peer: await inProcess(loaded.module, loaded.version) };
      }
    }
    const missing = [
      existsSync(paths.node) ? undefined : `Node ${NODE_VERSION} (${paths.node})`,
      existsSync(paths.liboqs) ? undefined : `${LIBOQS_PACKAGE}@${LIBOQS_VERSION} (${paths.liboqs})`,
    ].filter((m) => m !== undefined);
    if (missing.length > 0) {
      return { skip: `the liboqs oracle is not set up: ${missing.join(' and ')} missing (this Node is ${process.versions.node}, the package needs >= 22); ${SETUP_HINT} installs it` };
    }
    return { peer: await child(paths.node, paths.liboqs) };
  } catch (e) {
    return { broken: `${(e as Error).message} (oracle cache: ${paths.dir}; remove it and rerun ${SETUP_HINT} to reinstall)` };
  }
}
