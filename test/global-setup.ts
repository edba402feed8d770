/**
 * Vitest global setup: starts (or finds) one real MongoDB-protocol server for the whole run and stops it at the
 * end. Tests read it with `inject('mongoServer')` (see test/mongo/support/server.ts) and gate on its kind and
 * capabilities, printing why when they skip.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startTestServer, type Capabilities, type ServerKind } from '../scripts/lib/test-server.mjs';

export interface ProvidedServer {
  kind: ServerKind;
  uri: string;
  description: string;
  reason: string;
  capabilities: Capabilities;
}

declare module 'vitest' {
  export interface ProvidedContext {
    mongoServer: ProvidedServer;
  }
}

/**
 * Every temporary directory of the run goes under one directory of its own (TMPDIR, inherited by the test workers
 * and the processes they start): at the end, whatever a test left there (a throwaway secret identity, a capsule)
 * is counted, named, and removed, and the run fails, so that a test that does not clean up is fixed rather than
 * left to fill /tmp.
 */
function privateTmpdir(): () => void {
  const outer = tmpdir();
  const dir = mkdtempSync(join(outer, 'mongo-capsule-run-'));
  process.env.TMPDIR = dir;
  return () => {
    process.env.TMPDIR = outer;
    const left = readdirSync(dir).filter((n) => n.startsWith('mongo-capsule-') || n.startsWith('mc-'));
    rmSync(dir, { recursive: true, force: true });
    if (left.length > 0) {
      // vitest reports an error thrown here but still exits 0: fail the run explicitly.
      console.error(`[test-tmp] FAIL: ${left.length} temporary director${left.length === 1 ? 'y was' : 'ies were'} left behind by this run (now removed): ${left.join(', ')}`);
      process.exitCode = 1;
    }
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const checkTmp = privateTmpdir();
  let server;
  try {
    server = await startTestServer({ log: (msg) => console.log(`[test-server] ${msg}`) });
  } catch (e) {
    // A server that exists but does not start is a real failure; say so, and let the integration tests skip
    // with this reason rather than hang. When the run exists to test that server (npm run e2e), fail instead.
    const reason = `the test server failed to start: ${e instanceof Error ? e.message : String(e)}`;
    console.error(`[test-server] ${reason}`);
    if (process.env.MONGO_CAPSULE_TEST_SERVER_REQUIRED === '1') throw new Error(`${reason} (MONGO_CAPSULE_TEST_SERVER_REQUIRED=1: not skipping)`);
    project.provide('mongoServer', {
      kind: 'none',
      uri: '',
      description: 'no test server',
      reason,
      capabilities: { replicaSet: false, auth: false, keyfile: false, transactions: false, partialIndexes: false },
    });
    return async () => checkTmp();
  }
  console.log(`[test-server] ${server.kind === 'none' ? server.reason : `using ${server.description}`}`);
  if (server.kind === 'none' && process.env.MONGO_CAPSULE_TEST_SERVER_REQUIRED === '1') {
    throw new Error(`no test server: ${server.reason} (MONGO_CAPSULE_TEST_SERVER_REQUIRED=1: not skipping)`);
  }
  const { kind, uri, description, reason, capabilities } = server;
  project.provide('mongoServer', { kind, uri, description, reason, capabilities });
  return async () => {
    await server.stop();
    checkTmp();
  };
}
