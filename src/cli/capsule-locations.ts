/**
 * The CLI side of the capsule location record (src/keys/capsule-locations.ts): the record for the keychain
 * profile the command runs with, and clusters described from a connection string without its credentials.
 */
import { isAbsolute, resolve } from 'node:path';
import { MongoClient } from 'mongodb';
import { CapsuleLocations, describeLocation, type CapsuleLocation, type ClusterLocation } from '../keys/capsule-locations.ts';
import { KEYCHAIN_SERVICE } from '../keys/keychain.ts';
import { stateDir } from '../state-dir.ts';
import { InvalidArgumentError } from '../errors.ts';
import { DEFAULT_CAPSULE_NAMESPACE, describeHosts } from '../mongo/index.ts';
import type { CliIO } from './types.ts';

/** The record of the keychain profile of `io` (MONGO_CAPSULE_KEYCHAIN_SERVICE), in the state directory. */
export function capsuleLocationsFor(io: Pick<CliIO, 'env'>): CapsuleLocations {
  // The process environment is the fallback: a caller's env that does not name a state directory still gets
  // the one this process was started with (the test runner's throwaway one, say).
  const env = { ...process.env, ...io.env };
  return new CapsuleLocations({ service: env.MONGO_CAPSULE_KEYCHAIN_SERVICE || KEYCHAIN_SERVICE, directory: stateDir(env) });
}

/**
 * The cluster of `uri` and its capsule collection, from the parsed connection string: hosts (or the SRV host) and
 * replica set only, never the user or password. Parsing connects nowhere.
 */
export function clusterLocation(uri: string, namespace: string = DEFAULT_CAPSULE_NAMESPACE): ClusterLocation {
  let o: MongoClient['options'];
  try {
    const client = new MongoClient(uri);
    o = client.options;
    void client.close().catch(() => {});
  } catch (e) {
    // The parser's message may quote the connection string: keep only the error's class name.
    throw new InvalidArgumentError(`invalid MongoDB connection string (${e instanceof Error ? e.name : 'error'}) for ${describeHosts(uri)}`, {
      hint: 'check the syntax: mongodb://user:password@host:port/?options',
    });
  }
  const srvHost = typeof o.srvHost === 'string' && o.srvHost.length > 0 ? o.srvHost : undefined;
  return {
    kind: 'cluster',
    hosts: srvHost === undefined ? o.hosts.map((h) => h.toString()).sort() : [],
    ...(srvHost === undefined ? {} : { srvHost }),
    ...(typeof o.replicaSet === 'string' && o.replicaSet.length > 0 ? { replicaSet: o.replicaSet } : {}),
    namespace,
  };
}

export function directoryLocation(path: string): CapsuleLocation {
  return { kind: 'directory', path: isAbsolute(path) ? path : resolve(path) };
}

/**
 * Records that a capsule of identity `name` now lives in the cluster of `uri`. The capsule is stored already, so a
 * failure here does not fail the command: it is reported, with what it means for a later rotation.
 */
export async function recordSealedInCluster(io: Pick<CliIO, 'env' | 'stderr'>, name: string, uri: string, namespace?: string): Promise<void> {
  let location: ClusterLocation | undefined;
  try {
    location = clusterLocation(uri, namespace);
    await capsuleLocationsFor(io).record(name, [location]);
  } catch (e) {
    const where = location === undefined ? 'the cluster' : describeLocation(location);
    io.stderr.write(`warning: could not record ${where} as a location of identity ${name} (${e instanceof Error ? e.message : String(e)}); name it with --cluster when you run \`mongo-capsule keys rotate\`\n`);
  }
}
