/**
 * Connecting to MongoDB with bounded waits and typed errors.
 *
 * Every driver failure that leaves this layer is one of our typed errors, and no message or hint ever holds
 * a connection string with credentials: hosts are printed through `redactUri`, and driver messages for
 * unparseable URIs (which may echo the URI) are never passed on.
 */
import {
  MongoClient,
  MongoError,
  MongoServerError,
  MongoServerSelectionError,
  ReadConcern,
  ReadPreference,
  WriteConcern,
  type DbOptions,
  type MongoClientOptions,
} from 'mongodb';
import { CapsuleConflictError, InvalidArgumentError, MongoAuthError, MongoCapsuleError, MongoCommandError, MongoUnreachableError } from '../errors.ts';

/** How long to look for a server before failing (the driver's default is 30 s, too long for a CLI). */
export const DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 10_000;
/**
 * How long one of our operations may wait for a reply once sent (the driver's default is forever). Generous:
 * rewrapManyDataKey and index builds on a large key vault are the slowest things this toolkit asks for.
 */
export const DEFAULT_SOCKET_TIMEOUT_MS = 120_000;

const SCHEME = /^(mongodb(?:\+srv)?:\/\/)/i;

/** A connection string safe to print: user and password replaced, hosts and options kept. */
export function redactUri(uri: string): string {
  const m = SCHEME.exec(uri);
  if (!m) return '<invalid connection string>';
  const rest = uri.slice(m[0].length);
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const at = authority.lastIndexOf('@');
  if (at === -1) return uri;
  return `${m[1]}<credentials>@${rest.slice(at + 1)}`;
}

/** The host list of a connection string, for messages ("127.0.0.1:27017,db2:27017"). */
export function describeHosts(uri: string): string {
  const redacted = redactUri(uri);
  const m = SCHEME.exec(redacted);
  if (!m) return redacted;
  const rest = redacted.slice(m[0].length).replace(/^<credentials>@/, '');
  const end = rest.search(/[/?]/);
  return end === -1 ? rest : rest.slice(0, end);
}

/**
 * Read and write settings for what must survive a failover (capsules, key-vault bookkeeping): read from the
 * primary, and count a write only once a majority has it, whatever the connection string says.
 */
export const DURABLE: DbOptions = Object.freeze({
  readPreference: ReadPreference.primary,
  readConcern: new ReadConcern('majority'),
  writeConcern: new WriteConcern('majority'),
});

export interface ConnectOptions extends MongoClientOptions {
  /** What the connection is for, used in error messages ("loading the capsule"). */
  purpose?: string;
}

/** A connected `MongoClient`, or a typed error within about `serverSelectionTimeoutMS`. */
export async function connect(uri: string, options: ConnectOptions = {}): Promise<MongoClient> {
  const { purpose, ...clientOptions } = options;
  if (typeof uri !== 'string' || !SCHEME.test(uri)) {
    throw new InvalidArgumentError('invalid MongoDB connection string: it must start with mongodb:// or mongodb+srv://', {
      hint: 'pass --uri mongodb://user:password@host:27017/?authSource=admin, or set MONGODB_URI',
    });
  }
  let client: MongoClient;
  try {
    // Our bounded defaults apply unless the connection string sets its own (the URI is the user's explicit choice).
    const defaults: MongoClientOptions = { appName: 'mongo-capsule' };
    if (!uriHasOption(uri, 'serverSelectionTimeoutMS')) defaults.serverSelectionTimeoutMS = DEFAULT_SERVER_SELECTION_TIMEOUT_MS;
    if (!uriHasOption(uri, 'connectTimeoutMS')) defaults.connectTimeoutMS = DEFAULT_SERVER_SELECTION_TIMEOUT_MS;
    // A server that accepts a command and never answers is an error after a while, not a hang.
    if (!uriHasOption(uri, 'socketTimeoutMS')) defaults.socketTimeoutMS = DEFAULT_SOCKET_TIMEOUT_MS;
    for (const k of ['serverSelectionTimeoutMS', 'connectTimeoutMS', 'socketTimeoutMS'] as const) {
      if (uriHasOption(uri, k)) delete clientOptions[k];
    }
    client = new MongoClient(uri, { ...defaults, ...clientOptions });
  } catch (e) {
    // The constructor only parses and validates (connection-string errors come from several classes, some
    // outside the driver). Their messages may quote the connection string: keep neither message nor cause,
    // only the error's class name.
    const kind = e instanceof Error ? e.name : 'error';
    throw new InvalidArgumentError(`invalid MongoDB connection string or client options (${kind}) for ${describeHosts(uri)}`, {
      hint: 'check the syntax: mongodb://user:password@host:port/?options (percent-encode special characters in the user and password)',
    });
  }
  try {
    await client.connect();
    return client;
  } catch (e) {
    await client.close().catch(() => {});
    throw mongoError(e, purpose ?? 'connecting', uri);
  }
}

function uriHasOption(uri: string, name: string): boolean {
  const q = uri.indexOf('?');
  return q !== -1 && new RegExp(`(^|&)${name}=`, 'i').test(uri.slice(q + 1));
}

/** Maps any driver failure to a typed error whose message names the operation and never holds credentials. */
export function mongoError(e: unknown, what: string, uri?: string): MongoCapsuleError {
  if (e instanceof MongoCapsuleError) return e;
  const where = uri === undefined ? '' : ` (${describeHosts(uri)})`;
  if (e instanceof MongoServerSelectionError) {
    return new MongoUnreachableError(`${what}: no MongoDB server answered${where}: ${firstLine(e.message)}`, { cause: e });
  }
  if (e instanceof MongoServerError) {
    if (e.code === 18 || e.codeName === 'AuthenticationFailed') {
      return new MongoAuthError(`${what}: authentication failed${where}`, { cause: e });
    }
    if (e.code === 13 || e.codeName === 'Unauthorized') {
      return new MongoAuthError(`${what}: not authorized: ${firstLine(e.message)}`, { cause: e });
    }
    return new MongoCommandError(`${what}: ${e.codeName ?? 'server error'} (code ${String(e.code)}): ${firstLine(e.message)}`, { cause: e });
  }
  if (e instanceof MongoError) {
    // libmongocrypt names the KMS provider a data key is under when this client lacks it: after a CMK rotation,
    // the keys are under the next generation's provider, which a client opened before it does not hold.
    if (/kms provider .*not configured/i.test(e.message)) {
      return new CapsuleConflictError(`${what}: this client does not hold the CMK the data key is under now (the CMK was rotated after the client was opened)`, {
        hint: 'open a new encrypted client: a client loads the CMK once, when it is opened',
        cause: e,
      });
    }
    if (/auth/i.test(e.name) || /authentication/i.test(e.message)) {
      return new MongoAuthError(`${what}: authentication failed${where}: ${firstLine(e.message)}`, { cause: e });
    }
    return new MongoCommandError(`${what}: ${firstLine(e.message)}`, { cause: e });
  }
  const message = e instanceof Error ? e.message : String(e);
  return new MongoCommandError(`${what}: ${firstLine(message)}`, { cause: e });
}

/** Removes credentials from any connection string embedded in free text (driver messages). */
export function scrubCredentials(text: string): string {
  return text.replace(/(mongodb(?:\+srv)?:\/\/)[^\s/@]*@/gi, '$1<credentials>@');
}

function firstLine(s: string): string {
  return scrubCredentials(s.split('\n')[0] ?? '').slice(0, 300);
}

/** Splits "db.collection" (the collection part may contain dots). */
export function parseNamespace(ns: string, what: string): { db: string; collection: string } {
  const dot = typeof ns === 'string' ? ns.indexOf('.') : -1;
  if (dot <= 0 || dot === ns.length - 1) {
    throw new InvalidArgumentError(`${what}: namespace must look like "database.collection", got ${JSON.stringify(ns)}`);
  }
  return { db: ns.slice(0, dot), collection: ns.slice(dot + 1) };
}

/**
 * The same connection string aimed at one member directly (`directConnection=true`, no `replicaSet`): what
 * replica-set initiation needs, since there is no set to discover yet. Credentials and other options are kept.
 */
export function directConnectionUri(uri: string, host: string): string {
  const m = /^mongodb:\/\/([^/?]*)(\/[^?]*)?(\?.*)?$/i.exec(uri);
  if (!m) {
    throw new InvalidArgumentError(`cannot derive a direct connection from ${redactUri(uri)}: it must be a mongodb:// connection string (not mongodb+srv)`);
  }
  const authority = m[1] ?? '';
  const at = authority.lastIndexOf('@');
  const credentials = at === -1 ? '' : authority.slice(0, at + 1);
  const params = new URLSearchParams((m[3] ?? '').replace(/^\?/, ''));
  params.delete('replicaSet');
  params.set('directConnection', 'true');
  return `mongodb://${credentials}${host}${m[2] ?? '/'}?${params.toString()}`;
}
