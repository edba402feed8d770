/**
 * Where the capsules of an identity live, as far as this machine has seen: every cluster and capsule directory
 * the tool sealed or re-sealed a capsule in for the identity. `keys rotate` retires an old key only when it has
 * searched every recorded location in the same run, so a capsule the user forgot to name is not lost.
 *
 * One JSON file, `capsule-locations.json` in the state directory (src/state-dir.ts), mode 0600, replaced
 * atomically. It holds no secret and no credential: a cluster is recorded by its hosts (or SRV host), replica set
 * and capsule collection, never by its connection string. Entries are grouped by keychain service, then by
 * identity name, because separate keychain profiles hold separate identities of the same name.
 * Every update is a read-modify-write under `capsule-locations.json.lock` (src/keys/file-lock.ts, with its
 * stale-lock rule), so concurrent commands on one machine never lose each other's entries: a lost entry would be
 * a location `keys rotate` does not know about, and might retire a key a capsule there still needs.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CapsuleLocationsCorruptError } from '../errors.ts';
import { writeFileAtomic } from '../files.ts';
import { stateDir } from '../state-dir.ts';
import { withFileLock } from './file-lock.ts';

export const CAPSULE_LOCATIONS_FILE = 'capsule-locations.json';

export interface ClusterLocation {
  kind: 'cluster';
  /** `host:port` of each seed host, sorted; empty for an SRV connection string. */
  hosts: string[];
  /** The SRV host of a `mongodb+srv://` connection string. */
  srvHost?: string;
  replicaSet?: string;
  /** The capsule collection, `db.collection`. */
  namespace: string;
}

export interface DirectoryLocation {
  kind: 'directory';
  /** Absolute path of the capsule directory. */
  path: string;
}

export type CapsuleLocation = ClusterLocation | DirectoryLocation;

interface LocationsFile {
  version: 1;
  services: Record<string, Record<string, CapsuleLocation[]>>;
}

/** A stable identity of a location: two records of the same place compare equal (host names as written). */
export function locationId(location: CapsuleLocation): string {
  if (location.kind === 'directory') return `directory ${location.path}`;
  const where = location.srvHost !== undefined ? `srv ${location.srvHost}` : [...location.hosts].sort().join(',');
  // The replica set name is left out: one cluster reached with and without `?replicaSet=` is one place.
  return `cluster ${where} ${location.namespace}`;
}

/** For messages: `capsule directory /x` or `cluster h1:27017,h2:27017 (replica set rs0), collection encryption.capsules`. */
export function describeLocation(location: CapsuleLocation): string {
  if (location.kind === 'directory') return `capsule directory ${location.path}`;
  const where = location.srvHost !== undefined ? `mongodb+srv://${location.srvHost}` : location.hosts.join(',');
  return `cluster ${where}${location.replicaSet === undefined ? '' : ` (replica set ${location.replicaSet})`}, collection ${location.namespace}`;
}

export interface CapsuleLocationsOptions {
  /** Keychain service the identities belong to (`mongo-capsule` unless a profile is selected). */
  service: string;
  /** Directory of the record (default: `stateDir()`). */
  directory?: string;
}

export class CapsuleLocations {
  readonly service: string;
  readonly path: string;
  readonly #directory: string;

  constructor(options: CapsuleLocationsOptions) {
    this.service = options.service;
    this.#directory = options.directory ?? stateDir();
    this.path = join(this.#directory, CAPSULE_LOCATIONS_FILE);
  }

  /** The recorded locations of identity `name` (empty when none is recorded). */
  async list(name: string): Promise<CapsuleLocation[]> {
    const file = await this.#load();
    return file.services[this.service]?.[name] ?? [];
  }

  /** Adds `locations` to the record of identity `name` (those already recorded are kept once). */
  async record(name: string, locations: readonly CapsuleLocation[]): Promise<void> {
    // Nothing new (the usual case): no lock, no write.
    const seen = new Set((await this.list(name)).map(locationId));
    if (locations.every((l) => seen.has(locationId(l)))) return;
    await mkdir(this.#directory, { recursive: true, mode: 0o700 });
    await withFileLock(
      this.path,
      async () => {
        const file = await this.#load();
        const byName = (file.services[this.service] ??= {});
        const known = byName[name] ?? [];
        const ids = new Set(known.map(locationId));
        const added = locations.filter((l) => !ids.has(locationId(l)) && ids.add(locationId(l)));
        if (added.length === 0) return;
        byName[name] = [...known, ...added.map(clean)];
        await writeFileAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, replace: true });
      },
      { what: 'the capsule location record' },
    );
  }

  async #load(): Promise<LocationsFile> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, services: {} };
      throw e;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new CapsuleLocationsCorruptError(this.path, 'it is not JSON', e);
    }
    return validate(parsed, this.path);
  }
}

function clean(l: CapsuleLocation): CapsuleLocation {
  if (l.kind === 'directory') return { kind: 'directory', path: l.path };
  return {
    kind: 'cluster',
    hosts: [...l.hosts].sort(),
    ...(l.srvHost === undefined ? {} : { srvHost: l.srvHost }),
    ...(l.replicaSet === undefined ? {} : { replicaSet: l.replicaSet }),
    namespace: l.namespace,
  };
}

function validate(v: unknown, path: string): LocationsFile {
  const bad = (why: string) => new CapsuleLocationsCorruptError(path, why);
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObject(v) || v.version !== 1 || !isObject(v.services)) throw bad('it is not a version 1 record');
  for (const [service, names] of Object.entries(v.services)) {
    if (!isObject(names)) throw bad(`service ${JSON.stringify(service)} is not an object`);
    for (const [name, list] of Object.entries(names)) {
      if (!Array.isArray(list)) throw bad(`identity ${JSON.stringify(name)} has no list of locations`);
      for (const l of list) {
        const ok =
          isObject(l) &&
          ((l.kind === 'directory' && typeof l.path === 'string') ||
            (l.kind === 'cluster' &&
              Array.isArray(l.hosts) &&
              l.hosts.every((h) => typeof h === 'string') &&
              typeof l.namespace === 'string' &&
              (l.srvHost === undefined || typeof l.srvHost === 'string') &&
              (l.replicaSet === undefined || typeof l.replicaSet === 'string')));
        if (!ok) throw bad(`identity ${JSON.stringify(name)} has an entry that is not a location`);
      }
    }
  }
  return v as unknown as LocationsFile;
}
