/**
 * `npm run rs-setup`: its inputs (never a password in argv), its plan, and the real thing against the test server.
 * Initiating a replica set needs a real mongod: against FerretDB (standalone only) the script must fail with a
 * clear message; against a mongod it must initiate once and then find everything in place.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile, chmod } from 'node:fs/promises';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Readable } from 'node:stream';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseMembers, PASSWORD_ENV, readPassword, uriHasPassword, uriHosts } from '../../scripts/lib/rs-setup.mjs';
import { describeIf } from '../support/skip.ts';
import { nodeScript, npmRun, STACK_FRAME } from './support/run.ts';

const server = inject('mongoServer');
const baseEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => {
  const env = { ...process.env, ...extra };
  if (extra.MONGODB_URI === undefined) delete env.MONGODB_URI;
  if (extra[PASSWORD_ENV] === undefined) delete env[PASSWORD_ENV];
  return env;
};

describe('rs-setup inputs', () => {
  it('hosts of a connection string, with the default port', () => {
    expect(uriHosts('mongodb://u:p@a:1,b:2/?replicaSet=rs0')).toEqual(['a:1', 'b:2']);
    expect(uriHosts('mongodb://localhost')).toEqual(['localhost:27017']);
    expect(() => uriHosts('http://x')).toThrow(/must start with mongodb:\/\//);
  });
  it('knows when a connection string carries a password', () => {
    expect(uriHasPassword('mongodb://root:pw@h:1/')).toBe(true);
    expect(uriHasPassword('mongodb://root@h:1/')).toBe(false);
    expect(uriHasPassword('mongodb://h:1/?authSource=admin')).toBe(false);
  });
  it('members are host:port', () => {
    expect(parseMembers('mongo-0:27017, mongo-1:27018')).toEqual([{ host: 'mongo-0:27017' }, { host: 'mongo-1:27018' }]);
    expect(parseMembers(undefined)).toBeUndefined();
    expect(() => parseMembers('mongo-0')).toThrow(/not host:port/);
    expect(() => parseMembers(',')).toThrow(/at least one/);
  });
  it('the password comes from exactly one of file, stdin, environment', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rs-setup-pw-'));
    try {
      const file = join(dir, 'pw');
      await writeFile(file, 'file-password-1\n', { mode: 0o600 });
      expect(await readPassword({ passwordFile: file, env: {} })).toBe('file-password-1');
      const warnings: string[] = [];
      await chmod(file, 0o644);
      await readPassword({ passwordFile: file, env: {}, warn: (m) => warnings.push(m) });
      expect(warnings.join()).toMatch(/readable by other users/);
      expect(await readPassword({ passwordStdin: true, env: {}, stdin: Readable.from([Buffer.from('stdin-password-2\n')]) })).toBe('stdin-password-2');
      expect(await readPassword({ env: { [PASSWORD_ENV]: 'env-password-3' } })).toBe('env-password-3');
      expect(await readPassword({ env: {} })).toBeUndefined();
      await expect(readPassword({ passwordFile: file, env: { [PASSWORD_ENV]: 'x'.repeat(9) } })).rejects.toThrow(/one way/);
      await expect(readPassword({ env: { [PASSWORD_ENV]: 'short' } })).rejects.toThrow(/at least 8/);
      await expect(readPassword({ passwordFile: join(dir, 'missing'), env: {} })).rejects.toThrow(/does not exist/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('npm run rs-setup (no server needed)', () => {
  it('refuses a password on the command line, in either spelling, before doing anything', async () => {
    for (const arg of [['--password', 'hunter2-long'], ['--password=hunter2-long']]) {
      const r = await npmRun('rs-setup', ['--uri', 'mongodb://127.0.0.1:9', ...arg], { env: baseEnv() });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--password is not accepted/);
      expect(r.stderr).not.toMatch(STACK_FRAME);
    }
  });
  it('refuses a connection string with a password on the command line', async () => {
    const r = await npmRun('rs-setup', ['--uri', 'mongodb://root:hunter2-long@127.0.0.1:9/'], { env: baseEnv() });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pass it as MONGODB_URI/);
    expect(r.stderr.match(/hunter2-long/g)).toBeNull();
  });
  it('without a cluster: a usage error', async () => {
    const r = await npmRun('rs-setup', [], { env: baseEnv() });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no cluster given/);
  });
  it('--dry-run prints the plan, redacted, and connects to nothing', async () => {
    const uri = 'mongodb://admin:uri-secret-999@127.0.0.1:9/?authSource=admin';
    const r = await npmRun('rs-setup', ['--members', 'mongo-0:27017,mongo-1:27018,mongo-2:27019', '--dry-run'], {
      env: baseEnv({ MONGODB_URI: uri, [PASSWORD_ENV]: 'env-secret-12345' }),
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('connect directly to mongodb://<credentials>@127.0.0.1:9/?authSource=admin&directConnection=true');
    expect(r.stdout).toContain('replica set rs0: initiate with members mongo-0:27017, mongo-1:27018, mongo-2:27019');
    expect(r.stdout).toContain('user root on admin');
    expect(r.stdout + r.stderr).not.toMatch(/uri-secret-999|env-secret-12345/);
  });
  it('an unreachable server: a typed error within the selection timeout, no stack trace', async () => {
    const r = await npmRun('rs-setup', ['--uri', 'mongodb://127.0.0.1:9/'], { env: baseEnv(), timeoutMs: 30_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no MongoDB server answered/);
    expect(r.stderr).toMatch(/^hint: /m);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });
});

describeIf(server.kind === 'ferretdb', `rs-setup against a standalone server: this run uses ${server.description}`)('rs-setup against a standalone server (FerretDB)', () => {
  it('says the server is not a replica set member and how to start it, exit 1, no stack trace', async () => {
    const r = await npmRun('rs-setup', [], { env: baseEnv({ MONGODB_URI: server.uri }) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not running as a replica set member \(standalone\)/);
    expect(r.stderr).toMatch(/hint: start mongod with --replSet rs0/);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });
});

describeIf(server.capabilities.replicaSet && server.capabilities.auth, `rs-setup on an initiated replica set needs a real mongod (this run uses ${server.description})`)(
  'rs-setup against the test replica set (already initiated)',
  () => {
    it('finds everything in place and changes nothing', async () => {
      const r = await npmRun('rs-setup', ['--password-stdin'], { env: baseEnv({ MONGODB_URI: server.uri }), input: 'not-used-because-the-user-exists\n' });
      expect(r.stderr).not.toMatch(STACK_FRAME);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/replica set rs0: already initiated/);
      expect(r.stdout).toMatch(/user root already exists/);
    });
  },
);

function findMongod(): string | undefined {
  if (process.env.MONGOD_BIN && existsSync(process.env.MONGOD_BIN)) return process.env.MONGOD_BIN;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'mongod'))) return join(dir, 'mongod');
  }
  return undefined;
}
const mongod = findMongod();

describeIf(mongod !== undefined, 'rs-setup initiating a fresh keyfile-secured mongod: needs a mongod binary (MONGOD_BIN or on PATH)')('rs-setup on a fresh mongod', () => {
  let dir: string;
  let port: number;
  let child: ReturnType<typeof spawn> | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rs-setup-mongod-'));
    await mkdir(join(dir, 'db'));
    const keyFile = join(dir, 'keyfile');
    await writeFile(keyFile, randomBytes(756).toString('base64'), { mode: 0o400 });
    const srv = createServer().listen(0, '127.0.0.1');
    await once(srv, 'listening');
    port = (srv.address() as { port: number }).port;
    srv.close();
    await once(srv, 'close');
    child = spawn(mongod!, ['--replSet', 'rs0', '--keyFile', keyFile, '--bind_ip', '127.0.0.1', '--port', String(port), '--dbpath', join(dir, 'db'), '--logpath', join(dir, 'mongod.log')], { stdio: 'ignore' });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const c = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`, { serverSelectionTimeoutMS: 1000 });
      try {
        await c.db('admin').command({ ping: 1 });
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 250));
      } finally {
        await c.close();
      }
    }
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('initiates rs0 and creates the root user over loopback (localhost exception), then is idempotent with credentials', async () => {
    const password = randomBytes(18).toString('base64url');
    const host = `127.0.0.1:${port}`;
    const first = await nodeScript('rs-setup', ['--uri', `mongodb://${host}/`, '--members', host, '--password-stdin'], { env: baseEnv(), input: `${password}\n`, timeoutMs: 120_000 });
    expect(first.stderr).not.toMatch(STACK_FRAME);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/replica set rs0: initiated; members 127\.0\.0\.1:\d+; primary/);
    expect(first.stdout).toMatch(/user root created on admin/);
    expect(first.stdout + first.stderr).not.toContain(password);

    const uri = `mongodb://root:${encodeURIComponent(password)}@${host}/?authSource=admin`;
    const again = await nodeScript('rs-setup', ['--members', host], { env: baseEnv({ MONGODB_URI: uri, [PASSWORD_ENV]: password }) });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already initiated/);
    expect(again.stdout).toMatch(/user root already exists/);
    expect(again.stdout + again.stderr).not.toContain(password);

    const client = new MongoClient(`mongodb://root:${encodeURIComponent(password)}@${host}/?replicaSet=rs0&authSource=admin`, { serverSelectionTimeoutMS: 10_000 });
    try {
      const hello = await client.db('admin').command({ hello: 1 });
      expect(hello.setName).toBe('rs0');
      expect(hello.isWritablePrimary).toBe(true);
    } finally {
      await client.close();
    }
  });
});
