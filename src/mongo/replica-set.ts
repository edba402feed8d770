/**
 * Replica-set administration, re-runnable at any point: status → initiate (explicit member list) if needed →
 * wait for a writable primary; and the root user, created once.
 *
 * Why an explicit member list: a bare `replSetInitiate` advertises the container's hostname, which clients
 * outside the network cannot resolve (DESIGN.md §6.5). Connect these functions to one member directly
 * (`directConnection=true`); authenticate when a user exists, otherwise only the localhost exception applies.
 */
import type { Document, MongoClient } from 'mongodb';
import { MongoServerError } from 'mongodb';
import { InvalidArgumentError, MongoCommandError } from '../errors.ts';
import { mongoError } from './connection.ts';
import { retryUntil } from './retry.ts';

export const DEFAULT_REPLICA_SET_NAME = 'rs0';
export const DEFAULT_PRIMARY_TIMEOUT_MS = 60_000;

// Server error codes (src/mongo/base/error_codes.yml in the MongoDB server).
const UNAUTHORIZED = 13;
const ALREADY_INITIALIZED = 23;
const NO_REPLICATION_ENABLED = 76;
const USER_ALREADY_EXISTS = 51003;

export interface ReplicaSetMember {
  /** `host:port` as clients (and the other members) must reach it. */
  host: string;
  /** Election priority (default 1); 0 makes a member that never becomes primary. */
  priority?: number;
}

export interface ProgressOptions {
  timeoutMs?: number;
  onProgress?: (message: string) => void;
}

export interface EnsureReplicaSetOptions extends ProgressOptions {
  setName?: string;
  members: readonly ReplicaSetMember[];
}

export interface ReplicaSetState {
  setName: string;
  /** True when this call ran replSetInitiate; false when the set already existed. */
  initiated: boolean;
  /** Hosts of the configuration as the server has it. */
  members: string[];
  primary: string;
}

const HOST = /^[A-Za-z0-9._-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/;

/** The replSetInitiate configuration: members numbered in the given order. Pure, for tests and plans. */
export function replicaSetConfig(setName: string, members: readonly ReplicaSetMember[]): Document {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(setName)) throw new InvalidArgumentError(`ensureReplicaSet: invalid setName ${JSON.stringify(setName)}`);
  if (!Array.isArray(members) || members.length === 0) throw new InvalidArgumentError('ensureReplicaSet: members must list at least one host');
  if (members.length > 50) throw new InvalidArgumentError('ensureReplicaSet: a replica set has at most 50 members');
  const seen = new Set<string>();
  return {
    _id: setName,
    members: members.map((m, i) => {
      if (typeof m?.host !== 'string' || !HOST.test(m.host)) {
        throw new InvalidArgumentError(`ensureReplicaSet: members[${i}].host must be "host:port", got ${JSON.stringify(m?.host)}`);
      }
      if (seen.has(m.host.toLowerCase())) throw new InvalidArgumentError(`ensureReplicaSet: members[${i}].host ${m.host} is listed twice`);
      seen.add(m.host.toLowerCase());
      return m.priority === undefined ? { _id: i, host: m.host } : { _id: i, host: m.host, priority: m.priority };
    }),
  };
}

/**
 * Initiates the replica set unless it already exists, then waits for a writable primary.
 * @example
 * await ensureReplicaSet(directClient, { setName: 'rs0', members: [{ host: 'mongo-0:27017' }], timeoutMs: 60_000 });
 */
export async function ensureReplicaSet(client: MongoClient, options: EnsureReplicaSetOptions): Promise<ReplicaSetState> {
  const setName = options.setName ?? DEFAULT_REPLICA_SET_NAME;
  const config = replicaSetConfig(setName, options.members);
  const { timeoutMs = DEFAULT_PRIMARY_TIMEOUT_MS, onProgress } = options;
  const admin = client.db('admin');

  // `hello` needs no authentication, so this also works under the localhost exception before any user exists.
  let hello: Document;
  try {
    hello = await admin.command({ hello: 1 });
  } catch (e) {
    throw mongoError(e, 'reading the replica set status');
  }
  let initiated = false;
  if (typeof hello.setName === 'string') {
    if (hello.setName !== setName) {
      throw new MongoCommandError(`the server belongs to replica set ${JSON.stringify(hello.setName)}, not ${JSON.stringify(setName)}`, {
        hint: 'connect to a member of the intended set, or pass its actual name',
      });
    }
    onProgress?.(`replica set ${setName} already initiated`);
  } else if (hello.isreplicaset !== true) {
    throw new MongoCommandError('the server is not running as a replica set member (standalone)', {
      hint: `start mongod with --replSet ${setName} (and --keyFile when auth is on)`,
    });
  } else {
    onProgress?.(`initiating replica set ${setName} with ${config.members.length} member(s): ${options.members.map((m) => m.host).join(', ')}`);
    try {
      await admin.command({ replSetInitiate: config });
      initiated = true;
    } catch (e) {
      // Another provisioning run initiated it between our check and now: that is the same end state.
      if (e instanceof MongoServerError && e.code === ALREADY_INITIALIZED) {
        onProgress?.(`replica set ${setName} was initiated concurrently`);
      } else if (e instanceof MongoServerError && e.code === NO_REPLICATION_ENABLED) {
        throw new MongoCommandError('the server is not running as a replica set member', {
          hint: `start mongod with --replSet ${setName} (and --keyFile when auth is on)`,
          cause: e,
        });
      } else if (e instanceof MongoServerError && e.code === UNAUTHORIZED) {
        throw mongoError(e, 'initiating the replica set (authenticate as a root user, or use the localhost exception inside the container)');
      } else {
        throw mongoError(e, `initiating replica set ${setName}`);
      }
    }
  }

  // A set we just initiated elects the member we initiated through (the only one with the config at first). A
  // set that already existed may have failed over since: any primary will do, wherever it is.
  const primary = await waitForWritablePrimary(client, { timeoutMs, ...(onProgress === undefined ? {} : { onProgress }), anyMember: !initiated });
  const members = [...((primary.hosts as string[] | undefined) ?? []), ...((primary.passives as string[] | undefined) ?? []), ...((primary.arbiters as string[] | undefined) ?? [])];
  const wanted = options.members.map((m) => m.host.toLowerCase()).sort();
  const actual = members.map((h) => h.toLowerCase()).sort();
  if (!initiated && wanted.join(',') !== actual.join(',')) {
    // Changing membership is a reconfiguration with its own safety rules (one voting member at a time); it is
    // reported rather than attempted here.
    onProgress?.(`replica set ${setName} has members ${members.join(', ')}, not the requested ${options.members.map((m) => m.host).join(', ')}; leaving it unchanged`);
  }
  return { setName, initiated, members, primary: String(primary.primary ?? primary.me ?? '') };
}

export interface WaitForPrimaryOptions extends ProgressOptions {
  /** Done as soon as the set has a primary, even when it is not the connected member (default false). */
  anyMember?: boolean;
}

/** Waits until the connected member reports `isWritablePrimary` (or, with `anyMember`, names a primary); bounded. */
export async function waitForWritablePrimary(client: MongoClient, { timeoutMs = DEFAULT_PRIMARY_TIMEOUT_MS, onProgress, anyMember = false }: WaitForPrimaryOptions = {}): Promise<Document> {
  const admin = client.db('admin');
  return retryUntil(
    () => admin.command({ hello: 1 }),
    (h) => h.isWritablePrimary === true || (anyMember && typeof h.setName === 'string' && typeof h.primary === 'string' && h.primary !== ''),
    timeoutMs,
    'a writable primary',
    {
      intervalMs: 500,
      ...(onProgress === undefined ? {} : { onProgress }),
      describe: (h) => {
        const d = h as Document;
        return d.setName ? `member state: ${d.secondary ? 'secondary' : 'not primary yet'}${d.primary ? `, primary is ${String(d.primary)}` : ''}` : 'no replica set configuration yet';
      },
    },
  );
}

export interface RootUserOptions {
  username: string;
  /** Sent only inside the createUser command (never logged, never in process arguments or error messages). */
  password: string;
  /** Roles on `admin` (default: root). */
  roles?: string[];
}

/**
 * Creates the user on `admin` unless it exists. An existing user is left unchanged (its password is not reset).
 * @example
 * await ensureRootUser(client, { username: 'root', password: secret });
 */
export async function ensureRootUser(client: MongoClient, options: RootUserOptions): Promise<{ created: boolean }> {
  const { username, password, roles = ['root'] } = options;
  if (typeof username !== 'string' || username.length === 0 || username.length > 128) {
    throw new InvalidArgumentError('ensureRootUser: username must be 1-128 characters');
  }
  if (typeof password !== 'string' || password.length < 8) {
    throw new InvalidArgumentError('ensureRootUser: password must be a string of at least 8 characters');
  }
  const admin = client.db('admin');
  let exists = false;
  try {
    const info = await admin.command({ usersInfo: { user: username, db: 'admin' } });
    exists = Array.isArray(info.users) && info.users.length > 0;
  } catch (e) {
    // Under the localhost exception usersInfo is not authorized before the first user exists; createUser is.
    if (!(e instanceof MongoServerError && e.code === UNAUTHORIZED)) throw mongoError(e, `looking up user ${username}`);
  }
  if (exists) return { created: false };
  try {
    await admin.command({ createUser: username, pwd: password, roles: roles.map((role) => ({ role, db: 'admin' })) });
    return { created: true };
  } catch (e) {
    if (e instanceof MongoServerError && (e.code === USER_ALREADY_EXISTS || /already exists/i.test(e.message))) return { created: false };
    // The driver's message for createUser never includes the command; still, build ours from the code only.
    if (e instanceof MongoServerError) {
      throw new MongoCommandError(`creating user ${username} on admin failed: ${e.codeName ?? 'error'} (code ${String(e.code)})`, {
        hint: e.code === UNAUTHORIZED ? 'authenticate as a user with userAdmin rights, or use the localhost exception inside the container' : undefined,
      });
    }
    throw mongoError(e, `creating user ${username}`);
  }
}
