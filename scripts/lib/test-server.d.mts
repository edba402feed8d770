// Types of scripts/lib/test-server.mjs for the TypeScript callers (test/global-setup.ts, bench/mongo.ts).

export type ServerKind = 'external' | 'mongod' | 'ferretdb' | 'none';

/** What the server can do; integration tests gate on these and print why when they skip. */
export interface Capabilities {
  replicaSet: boolean;
  auth: boolean;
  keyfile: boolean;
  transactions: boolean;
  partialIndexes: boolean;
}

export interface TestServer {
  kind: ServerKind;
  /** Connection string; empty when kind is 'none'. May contain a generated password: never print it. */
  uri: string;
  /** Printable description (credentials redacted). */
  description: string;
  /** Why there is no server (kind 'none'); empty otherwise. */
  reason: string;
  capabilities: Capabilities;
  /** Stops what was started and deletes its data; a no-op for external servers. */
  stop(): Promise<void>;
  /** The private directory of a server this harness started (absent for external or none). */
  dir?: string;
}

export const REPLICA_SET_NAME: string;
export const ROOT_USERNAME: string;
export const TEST_URI_ENV: string;
export function defaultCacheDir(env?: NodeJS.ProcessEnv): string;
export function redactUri(uri: string): string;
export function probeCapabilities(uri: string): Promise<{ ferret: boolean; capabilities: Capabilities }>;
export function startTestServer(options?: { env?: NodeJS.ProcessEnv; log?: (msg: string) => void }): Promise<TestServer>;
