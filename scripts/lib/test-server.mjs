// Starts (or finds) the real MongoDB wire-protocol server the integration tests run against, and cleans it up.
//
// Order of preference:
//   1. MONGO_CAPSULE_TEST_URI: an existing server; nothing is started or stopped, its capabilities are probed;
//   2. MONGOD_BIN or `mongod` on PATH: a private keyfile-secured replica set `rs0` with a root user (full suite);
//   3. FerretDB built by `npm run setup` (SQLite backend): no replica set, auth, transactions or partial indexes;
//   4. none: integration tests skip, printing `reason`.
// MONGO_CAPSULE_TEST_SERVER=mongod|ferretdb|none forces one kind (an explicit MONGO_CAPSULE_TEST_URI always wins).
//
// MONGODB_URI is never used here, only reported as ignored: it is the variable users export for their own cluster
// (the README says so), and the tests create, change and drop databases.
//
// Used by test/global-setup.ts, bench/mongo.ts and scripts/test-server.mjs.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { defaultCacheDir } from './cache-dir.mjs';
import { join } from 'node:path';
import { which } from 'zx';
import { MongoClient } from 'mongodb';
import { redactUri, scrubText } from '../../src/uri-redaction.mjs';
import { startReaper } from './reaper.mjs';

export const REPLICA_SET_NAME = 'rs0';
/** The connection string of an existing server to run the integration tests against. */
export const TEST_URI_ENV = 'MONGO_CAPSULE_TEST_URI';
export const ROOT_USERNAME = 'root';
const FERRETDB_VERSION = 'v1.24.2';
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;
// 756 random bytes → 1008 base64 characters: within mongod's 6-1024 limit (DESIGN.md §6).
const KEYFILE_RANDOM_BYTES = 756;

/**
 * @typedef {'external' | 'mongod' | 'ferretdb' | 'none'} ServerKind
 * @typedef {{ replicaSet: boolean, auth: boolean, keyfile: boolean, transactions: boolean, partialIndexes: boolean }} Capabilities
 * @typedef {{ kind: ServerKind, uri: string, description: string, reason: string, capabilities: Capabilities, stop: () => Promise<void> }} TestServer
 */

const NO_CAPABILITIES = Object.freeze({ replicaSet: false, auth: false, keyfile: false, transactions: false, partialIndexes: false });

/** Where setup caches what it built (cache-dir.mjs), so the harness finds it. */
export { defaultCacheDir };

export { redactUri };

async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

async function sleep(ms) {
  await new Promise((r) => setTimeout(r, ms));
}

/** A child process whose exit we can await and whose output tail we keep for error messages. */
function startProcess(bin, args, { cwd }) {
  const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (chunk) => {
    tail = (tail + chunk.toString()).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  });
  return { child, exited, tail: () => tail };
}

async function stopProcess(proc) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await proc.exited;
  clearTimeout(timer);
}

/** Pings until the server answers, the process dies, or the time is up. */
async function waitForPing(uri, proc, what) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastError;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`${what} exited during start-up (${proc.child.exitCode ?? proc.child.signalCode}):\n${proc.tail().trim()}`);
    }
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 1000, connectTimeoutMS: 1000 });
    try {
      await client.db('admin').command({ ping: 1 });
      return;
    } catch (e) {
      lastError = e;
    } finally {
      await client.close().catch(() => {});
    }
    await sleep(200);
  }
  throw new Error(`${what} did not answer ping within ${START_TIMEOUT_MS / 1000} s: ${lastError?.message ?? 'no answer'}`);
}

/** What an existing server can do; decides which tests run. */
export async function probeCapabilities(uri) {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
  try {
    const admin = client.db('admin');
    const hello = await admin.command({ hello: 1 });
    const build = await admin.command({ buildInfo: 1 });
    const ferret = typeof build.ferretdbVersion === 'string' || Boolean(build.ferretdbFeatures);
    const replicaSet = typeof hello.setName === 'string' && !ferret;
    const auth = /^mongodb(\+srv)?:\/\/[^@/]+@/i.test(uri);
    return {
      ferret,
      capabilities: {
        replicaSet,
        auth,
        // A replica set with auth on implies internal authentication: a keyfile or x.509.
        keyfile: replicaSet && auth,
        transactions: replicaSet,
        partialIndexes: !ferret,
      },
    };
  } finally {
    await client.close().catch(() => {});
  }
}

async function startMongod(bin, log) {
  const dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-mongod-'));
  let proc;
  try {
    const dbPath = join(dir, 'db');
    await mkdir(dbPath);
    const keyFile = join(dir, 'keyfile');
    await writeFile(keyFile, randomBytes(KEYFILE_RANDOM_BYTES).toString('base64'), { mode: 0o400 });
    await chmod(keyFile, 0o400); // mongod rejects a keyfile with any group or other permission bit
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    // --keyFile implies --auth. Only the keyfile path is on the command line, never a secret.
    const args = ['--replSet', REPLICA_SET_NAME, '--keyFile', keyFile, '--bind_ip', '127.0.0.1', '--port', String(port), '--dbpath', dbPath, '--logpath', join(dir, 'mongod.log'), '--quiet'];
    log?.(`starting mongod (${bin}) on ${host}`);
    proc = startProcess(bin, args, { cwd: dir });
    const local = `mongodb://${host}/?directConnection=true`;
    await waitForPing(local, proc, 'mongod').catch(async (e) => {
      const logText = await readFile(join(dir, 'mongod.log'), 'utf8').catch(() => '');
      throw new Error(`${e.message}\n${logText.split('\n').slice(-20).join('\n')}`);
    });

    // The localhost exception (no users yet, loopback connection) allows exactly this bootstrap: initiate the
    // replica set and create the first user. Afterwards every connection must authenticate.
    const password = randomBytes(24).toString('base64url');
    const client = new MongoClient(local, { serverSelectionTimeoutMS: 10_000 });
    try {
      const admin = client.db('admin');
      await admin.command({ replSetInitiate: { _id: REPLICA_SET_NAME, members: [{ _id: 0, host }] } });
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!(await admin.command({ hello: 1 })).isWritablePrimary) {
        if (Date.now() > deadline) throw new Error(`mongod did not become a writable primary within ${START_TIMEOUT_MS / 1000} s`);
        await sleep(200);
      }
      await admin.command({ createUser: ROOT_USERNAME, pwd: password, roles: [{ role: 'root', db: 'admin' }] });
    } finally {
      await client.close().catch(() => {});
    }
    const uri = `mongodb://${ROOT_USERNAME}:${encodeURIComponent(password)}@${host}/?replicaSet=${REPLICA_SET_NAME}&authSource=admin`;
    const capabilities = { replicaSet: true, auth: true, keyfile: true, transactions: true, partialIndexes: true };
    return startedServer('mongod', uri, `mongod ${REPLICA_SET_NAME} (keyfile, auth) on ${host}`, capabilities, proc, dir);
  } catch (e) {
    await cleanUp(proc, dir);
    throw e;
  }
}

/** Stops the process (when started) and removes its directory. */
async function cleanUp(proc, dir) {
  if (proc) await stopProcess(proc);
  await rm(dir, { recursive: true, force: true });
}

/**
 * @returns {TestServer} a server this harness started in `dir`; `stop` cleans both up, and so does the end of this
 * process if `stop` was never reached (a benchmark or script that failed half-way).
 */
function startedServer(kind, uri, description, capabilities, proc, dir) {
  const atExit = () => {
    proc.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', atExit);
  // 'exit' never runs on SIGKILL or an unhandled SIGTERM: a watchdog stops the server and removes its directory
  // when this process dies without calling stop (the server's command line names the directory).
  const reaper = proc.child.pid === undefined ? undefined : startReaper({ dir, pids: [proc.child.pid], label: 'test-server' });
  const stop = async () => {
    process.off('exit', atExit);
    reaper?.kill();
    await cleanUp(proc, dir);
  };
  return { kind, uri, description, reason: '', capabilities, stop, dir };
}

async function startFerretdb(bin, log) {
  const dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-ferretdb-'));
  let proc;
  try {
    const data = join(dir, 'data');
    await mkdir(data);
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const args = [
      '--handler=sqlite',
      `--sqlite-url=file:${data}/`,
      `--listen-addr=${host}`,
      '--telemetry=disable',
      '--debug-addr=-',
      '--state-dir=-',
      '--log-level=warn',
    ];
    log?.(`starting FerretDB ${FERRETDB_VERSION} (SQLite) on ${host}`);
    proc = startProcess(bin, args, { cwd: dir });
    const uri = `mongodb://${host}/?directConnection=true`;
    await waitForPing(uri, proc, 'FerretDB');
    return startedServer('ferretdb', uri, `FerretDB ${FERRETDB_VERSION} (SQLite) on ${host}`, { ...NO_CAPABILITIES }, proc, dir);
  } catch (e) {
    await cleanUp(proc, dir);
    throw e;
  }
}

async function findMongod(env) {
  if (env.MONGOD_BIN) {
    if (!existsSync(env.MONGOD_BIN)) throw new Error(`MONGOD_BIN=${env.MONGOD_BIN} does not exist`);
    return env.MONGOD_BIN;
  }
  return (await which('mongod', { nothrow: true })) ?? undefined;
}

/**
 * Starts or finds a test server. Never throws for "nothing available": that is kind 'none' with a reason.
 * It throws only when a server that should work fails to start (a real problem worth a red build).
 * @param {{ env?: NodeJS.ProcessEnv, log?: (msg: string) => void }} [options]
 * @returns {Promise<TestServer>}
 */
export async function startTestServer({ env = process.env, log } = {}) {
  const forced = env.MONGO_CAPSULE_TEST_SERVER;
  if (env.MONGODB_URI) log?.(`MONGODB_URI is set and ignored: the tests never run against it; to test an existing server, set ${TEST_URI_ENV}`);
  if (env[TEST_URI_ENV]) {
    const uri = env[TEST_URI_ENV];
    const { ferret, capabilities } = await probeCapabilities(uri).catch((e) => {
      throw new Error(`${TEST_URI_ENV} (${redactUri(uri)}) is set but the server does not answer: ${scrubText(e.message, [uri])}`);
    });
    return {
      kind: 'external',
      uri,
      description: `${ferret ? 'FerretDB' : 'MongoDB'} at ${redactUri(uri)} (from ${TEST_URI_ENV})`,
      reason: '',
      capabilities,
      stop: async () => {},
    };
  }
  const reasons = [];
  if (forced === 'none') return none('MONGO_CAPSULE_TEST_SERVER=none');

  if (forced === undefined || forced === 'mongod') {
    const mongod = await findMongod(env);
    if (mongod) return startMongod(mongod, log);
    reasons.push('no mongod on PATH and MONGOD_BIN is not set');
  }
  if (forced === undefined || forced === 'ferretdb') {
    const ferret = env.FERRETDB_BIN ?? join(defaultCacheDir(env), 'ferretdb', FERRETDB_VERSION, 'ferretdb');
    if (existsSync(ferret)) return startFerretdb(ferret, log);
    reasons.push(`FerretDB is not built (${ferret} is missing; run \`npm run setup\`)`);
  }
  return none(reasons.join('; '));
}

function none(reason) {
  return {
    kind: 'none',
    uri: '',
    description: 'no test server',
    reason: `no MongoDB test server: ${reason}`,
    capabilities: { ...NO_CAPABILITIES },
    stop: async () => {},
  };
}
