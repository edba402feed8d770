/**
 * Connecting to MongoDB with bounded waits and typed errors.
 *
 * Every driver failure that leaves this layer is one of our typed errors, and no message or hint ever holds
 * a connection string with credentials: hosts are printed through `redactUri` (src/uri-redaction.mjs), driver
 * messages for unparseable URIs (which may echo the URI) are never passed on, and every other driver error, the
 * one kept as `cause` included, has its message and stack scrubbed of the URI's secrets and of any embedded
 * connection string before it leaves.
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
import { describeHosts, redactUri, scrubText, uriSecrets } from '../uri-redaction.mjs';

/** How long to look for a server before failing (the driver's default is 30 s, too long for a CLI). */
export const DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 10_000;
/**
 * How long one of our operations may wait for a reply once sent (the driver's default is forever). Generous:
 * rewrapManyDataKey and index builds on a large key vault are the slowest things this toolkit asks for.
 */
export const DEFAULT_SOCKET_TIMEOUT_MS = 120_000;

const SCHEME = /^(mongodb(?:\+srv)?:\/\/)/i;

export { describeHosts, redactUri, scrubText, uriSecrets };

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
  const uris = uri === undefined ? [] : [uri];
  scrubError(e, uris);
  const where = uri === undefined ? '' : ` (${describeHosts(uri)})`;
  const line = (s: string) => firstLine(s, uris);
  if (e instanceof MongoServerSelectionError) {
    return new MongoUnreachableError(`${what}: no MongoDB server answered${where}: ${line(e.message)}`, { cause: e, ...networkHint(e.message) });
  }
  if (e instanceof MongoServerError) {
    if (e.code === 18 || e.codeName === 'AuthenticationFailed') {
      return new MongoAuthError(`${what}: authentication failed${where}`, { cause: e });
    }
    if (e.code === 13 || e.codeName === 'Unauthorized') {
      return new MongoAuthError(`${what}: not authorized: ${line(e.message)}`, { cause: e });
    }
    return new MongoCommandError(`${what}: ${e.codeName ?? 'server error'} (code ${String(e.code)}): ${line(e.message)}`, { cause: e });
  }
  const message = e instanceof Error ? e.message : String(e);
  const network = networkHint(message);
  if (network.hint !== undefined) return new MongoUnreachableError(`${what}: no MongoDB server answered${where}: ${line(message)}`, { cause: e, ...network });
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
      return new MongoAuthError(`${what}: authentication failed${where}: ${line(e.message)}`, { cause: e });
    }
    return new MongoCommandError(`${what}: ${line(e.message)}`, { cause: e });
  }
  return new MongoCommandError(`${what}: ${line(message)}`, { cause: e });
}

/** What to do about the network failures users meet most: nothing listening, and a name that does not resolve. */
function networkHint(message: string): { hint?: string } {
  if (/querySrv\s+(ENOTFOUND|ENODATA|ESERVFAIL|ECONNREFUSED|ETIMEOUT)/i.test(message)) {
    return {
      hint: 'the DNS SRV record of the mongodb+srv:// host was not found: check the cluster host name (copy it again from Atlas or your provider) and that this machine can resolve it (DNS, VPN, proxy)',
    };
  }
  if (/\bECONNREFUSED\b/.test(message)) {
    return { hint: 'nothing listens there: check the host, port and network of the connection string, or start the server (`npm run up` for a local one)' };
  }
  if (/\b(ENOTFOUND|EAI_AGAIN)\b/.test(message)) {
    return { hint: 'the host name does not resolve: check the spelling of the host in the connection string and this machine\'s DNS' };
  }
  return {};
}

/** Removes credentials from any connection string embedded in free text (driver messages). */
export function scrubCredentials(text: string, uris: readonly string[] = []): string {
  return scrubText(text, uris);
}

/**
 * Scrubs a driver error in place, and the errors it holds (`cause`, the server's `errmsg`), so that keeping it as
 * the `cause` of a typed error (printed with MONGO_CAPSULE_DEBUG=1) never carries a secret along.
 */
export function scrubError(e: unknown, uris: readonly string[] = []): void {
  const seen = new Set<unknown>();
  let current: unknown = e;
  for (let depth = 0; depth < 8 && current instanceof Error && !seen.has(current); depth++) {
    seen.add(current);
    const err = current as Error & { errmsg?: unknown; errorResponse?: { errmsg?: unknown } };
    try {
      err.message = scrubText(err.message, uris);
      if (typeof err.stack === 'string') err.stack = scrubText(err.stack, uris);
      if (typeof err.errmsg === 'string') err.errmsg = scrubText(err.errmsg, uris);
      if (err.errorResponse && typeof err.errorResponse.errmsg === 'string') err.errorResponse.errmsg = scrubText(err.errorResponse.errmsg, uris);
    } catch {
      /* a read-only property: the typed error's own message is scrubbed regardless */
    }
    current = err.cause;
  }
}

function firstLine(s: string, uris: readonly string[] = []): string {
  return scrubText(s.split('\n')[0] ?? '', uris).slice(0, 300);
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
