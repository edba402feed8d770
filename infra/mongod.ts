/**
 * How each `mongod` container is configured: arguments, health check, environment and the files uploaded into
 * it. Plain functions, no Pulumi, so every requirement of DESIGN.md §6 is checked by unit tests.
 *
 * Keyfile ownership (§6.2): `@pulumi/docker` 5.2.0's container uploads take numeric `owner`, `group` and
 * `permissions`, so the keyfile lands as 999:999 mode 0400 before the container first starts. The image's own
 * entrypoint then starts mongod as uid 999 (it drops root with gosu); no wrapper script and no `exec mongod` as
 * root are needed.
 */
import { InvalidArgumentError } from '../src/errors.ts';
import { REPLICA_SET_NAME } from './topology.ts';

/** uid and gid of the `mongodb` user in the official image. Numeric: names would resolve on the host. */
export const MONGODB_UID = '999';
/** Directory created by the upload itself (root-owned, 0755), outside the data volumes. */
export const SECRETS_DIR = '/etc/mongo-capsule';
export const KEYFILE_PATH = `${SECRETS_DIR}/keyfile`;
export const ROOT_PASSWORD_PATH = `${SECRETS_DIR}/root-password`;
/** 756 random bytes encode to exactly 1008 base64 characters (mongod accepts 6 to 1024). */
export const KEYFILE_RANDOM_BYTES = 756;
export const KEYFILE_LENGTH = 1008;
/** 32 random bytes as hex: no character needs escaping in a URI, a file or SCRAM. */
export const ROOT_PASSWORD_RANDOM_BYTES = 32;
export const ROOT_USERNAME = 'root';
/** Seconds the Docker provider waits for a new container to report healthy. */
export const HEALTHY_TIMEOUT_SECONDS = 180;

function checkPort(op: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`${op}: invalid port ${String(port)}`);
}

/**
 * The container command. It starts with `mongod` so the image's entrypoint recognises it (data-dir ownership,
 * init scripts, privilege drop). `--port` is explicit because each member listens on its own port, the same
 * inside and outside, so that advertised addresses work from the host too.
 */
export function mongodCommand(port: number): string[] {
  checkPort('mongodCommand', port);
  return ['mongod', '--replSet', REPLICA_SET_NAME, '--keyFile', KEYFILE_PATH, '--bind_ip_all', '--port', String(port)];
}

/**
 * What the health check evaluates: healthy only when the server answering is the replica-set member itself.
 * A plain `ping` is not enough: on member 0's first start the image's init phase runs a temporary mongod on
 * 127.0.0.1:27017 without `--replSet` (to create the root user), which would answer a ping on the default port
 * and report the member healthy while it is about to restart. `hello` needs no credentials, like `ping`, and
 * shows `isreplicaset` (before initiation) or `setName` (after) only on a server started with `--replSet`.
 */
export const HEALTHCHECK_EVAL = 'const h = db.adminCommand({ hello: 1 }); if (!h.setName && !h.isreplicaset) quit(1)';

/** Docker health check: it needs no credentials, so no secret is ever on this command line. */
export function healthcheckTest(port: number): string[] {
  checkPort('healthcheckTest', port);
  return ['CMD', 'mongosh', '--quiet', '--port', String(port), '--eval', HEALTHCHECK_EVAL];
}

/**
 * Durations are written the way Go prints them (`time.Duration.String()`: `1m0s`, not `60s`), because the
 * Docker provider reads them back from the engine in that form; any other spelling of the same value would
 * show as a change on every later `pulumi up`.
 */
export const HEALTHCHECK_TIMING = {
  interval: '5s',
  timeout: '5s',
  retries: 12,
  // The first start of member 0 runs the image's init phase (a temporary server creates the root user).
  startPeriod: '1m0s',
} as const;

/**
 * Environment of member `index`. Only member 0 gets `MONGO_INITDB_ROOT_*`: the image's init phase creates the
 * root user there (without --replSet and --keyFile); the other members must start empty or initiate fails
 * (§6.4). The password is read from a file, never passed in the environment.
 */
export function memberEnvironment(index: number): string[] {
  if (index !== 0) return [];
  return [`MONGO_INITDB_ROOT_USERNAME=${ROOT_USERNAME}`, `MONGO_INITDB_ROOT_PASSWORD_FILE=${ROOT_PASSWORD_PATH}`];
}

/** One file uploaded into a container before it starts (mirrors `@pulumi/docker`'s ContainerUpload). */
export interface UploadSpec<T> {
  file: string;
  content: T;
  owner: string;
  group: string;
  permissions: string;
}

/** Files uploaded into member `index`: the shared keyfile everywhere, the root password only on member 0. */
export function memberUploads<T>(index: number, keyfile: T, rootPassword: T): UploadSpec<T>[] {
  const secretFile = (file: string, content: T): UploadSpec<T> => ({
    file,
    content,
    owner: MONGODB_UID,
    group: MONGODB_UID,
    // mongod rejects a keyfile with any group or other permission bit.
    permissions: '0400',
  });
  const uploads = [secretFile(KEYFILE_PATH, keyfile)];
  if (index === 0) uploads.push(secretFile(ROOT_PASSWORD_PATH, rootPassword));
  return uploads;
}

/** Checks a keyfile the way mongod does: 6 to 1024 characters of the base64 alphabet (whitespace ignored). */
export function checkKeyfileContent(content: string): void {
  const body = content.replace(/\s+/g, '');
  if (body.length < 6 || body.length > 1024 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
    throw new InvalidArgumentError('keyfile: must be 6 to 1024 base64 characters');
  }
}
