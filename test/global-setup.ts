/**
 * Vitest global setup: starts (or finds) one real MongoDB-protocol server for the whole run and stops it at the
 * end. Tests read it with `inject('mongoServer')` (see test/mongo/support/server.ts) and gate on its kind and
 * capabilities, printing why when they skip.
 */
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

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
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
    return async () => {};
  }
  console.log(`[test-server] ${server.kind === 'none' ? server.reason : `using ${server.description}`}`);
  if (server.kind === 'none' && process.env.MONGO_CAPSULE_TEST_SERVER_REQUIRED === '1') {
    throw new Error(`no test server: ${server.reason} (MONGO_CAPSULE_TEST_SERVER_REQUIRED=1: not skipping)`);
  }
  const { kind, uri, description, reason, capabilities } = server;
  project.provide('mongoServer', { kind, uri, description, reason, capabilities });
  return async () => {
    await server.stop();
  };
}
