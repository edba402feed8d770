/**
 * The server of the integration tests (started by test/global-setup.ts), with gates that skip and print why.
 */
import { inject } from 'vitest';
import { MongoClient } from 'mongodb';
import { randomBytes } from 'node:crypto';
import { describeIf } from '../../support/skip.ts';
import { csfleStatus } from '../../../src/mongo/csfle.ts';

export const server = inject('mongoServer');

type Body = () => void;

/** Integration tests: any real server. */
export function describeWithServer(name: string, body: Body): void {
  describeIf(server.kind !== 'none', server.reason || 'no MongoDB test server')(name, body);
}

/** Tests that need a replica set, keyfile and auth: a real mongod only. */
export function describeWithReplicaSet(name: string, body: Body): void {
  describeIf(
    server.capabilities.replicaSet && server.capabilities.auth,
    server.kind === 'none'
      ? server.reason
      : `${name}: needs a real mongod replica set with auth (this run uses ${server.description}); set MONGOD_BIN or MONGO_CAPSULE_TEST_URI`,
  )(name, body);
}

/** Tests that encrypt: a server and a loadable mongodb-client-encryption. */
export function describeWithCsfle(name: string, body: Body): void {
  const csfle = csfleStatus();
  describeIf(
    server.kind !== 'none' && csfle.available,
    server.kind === 'none' ? server.reason : `${name}: needs mongodb-client-encryption (run \`npm run setup\`): ${csfle.reason ?? ''}`,
  )(name, body);
}

/** A database name of its own for one test file, so files running in parallel never share state. */
export function uniqueDbName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

export async function connectTestClient(): Promise<MongoClient> {
  const client = new MongoClient(server.uri, { serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  return client;
}
