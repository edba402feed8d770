/** Members, advertised addresses, mongod arguments and connection strings: the logic under the components. */
import { MongoClient } from 'mongodb';
import { describe, expect, it } from 'vitest';
import { buildConnectionString } from '../../infra/connection-string.ts';
import {
  checkKeyfileContent,
  HEALTHCHECK_EVAL,
  HEALTHCHECK_TIMING,
  healthcheckTest,
  KEYFILE_LENGTH,
  KEYFILE_PATH,
  KEYFILE_RANDOM_BYTES,
  memberEnvironment,
  memberUploads,
  mongodCommand,
  ROOT_PASSWORD_PATH,
} from '../../infra/mongod.ts';
import { clientAddresses, hostsFileLine, planMembers, replicaSetAddresses, resourcePrefix, unresolvedMemberHosts } from '../../infra/topology.ts';
import { InvalidArgumentError } from '../../src/errors.ts';

describe('resourcePrefix', () => {
  it('makes a Docker- and DNS-safe prefix from the project and stack', () => {
    expect(resourcePrefix('mongo-capsule', 'dev')).toBe('mongo-capsule-dev');
    expect(resourcePrefix('mongo-capsule', 'Feature_X.y')).toBe('mongo-capsule-feature-x-y');
    expect(resourcePrefix('mongo-capsule', 'a'.repeat(200))).toHaveLength(56);
    expect(resourcePrefix('mongo-capsule', '___')).toBe('mongo-capsule');
  });
});

describe('planMembers', () => {
  it('1 member: advertises localhost on its own port; clients use 127.0.0.1', () => {
    const plan = planMembers({ prefix: 'mc-dev', members: 1, basePort: 27017 });
    expect(plan).toEqual([
      { index: 0, containerName: 'mc-dev-0', host: 'localhost', port: 27017, address: 'localhost:27017', networkAliases: ['mc-dev-0'] },
    ]);
    expect(clientAddresses(plan)).toEqual(['127.0.0.1:27017']);
    expect(hostsFileLine(plan)).toBeUndefined();
  });

  it('3 members: names under .localhost on consecutive ports, the same inside and outside', () => {
    const plan = planMembers({ prefix: 'mc-ci', members: 3, basePort: 28017 });
    expect(replicaSetAddresses(plan)).toEqual(['mc-ci-0.localhost:28017', 'mc-ci-1.localhost:28018', 'mc-ci-2.localhost:28019']);
    expect(clientAddresses(plan)).toEqual(replicaSetAddresses(plan));
    for (const m of plan) expect(m.networkAliases).toEqual([m.containerName, m.host]);
    expect(hostsFileLine(plan)).toBe('127.0.0.1 mc-ci-0.localhost mc-ci-1.localhost mc-ci-2.localhost');
  });

  it('rejects member counts other than 1 and 3, ports that overflow, bad prefixes', () => {
    expect(() => planMembers({ prefix: 'p', members: 2 as 1, basePort: 27017 })).toThrow(InvalidArgumentError);
    expect(() => planMembers({ prefix: 'p', members: 3, basePort: 65534 })).toThrow(/leaves no room/);
    expect(() => planMembers({ prefix: 'Bad_Prefix', members: 1, basePort: 27017 })).toThrow(/invalid prefix/);
  });
});

describe('unresolvedMemberHosts', () => {
  const three = planMembers({ prefix: 'mc', members: 3, basePort: 27017 });
  it('lists the names that do not resolve to 127.0.0.1 (errors, ::1 only, another address)', async () => {
    const answers: Record<string, { address: string; family: number }[]> = {
      'mc-0.localhost': [{ address: '::1', family: 6 }, { address: '127.0.0.1', family: 4 }],
      'mc-1.localhost': [{ address: '::1', family: 6 }],
    };
    const lookup = async (host: string) => {
      const a = answers[host];
      if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      return a;
    };
    expect(await unresolvedMemberHosts(three, lookup)).toEqual(['mc-1.localhost', 'mc-2.localhost']);
  });

  it('asks nothing for one member, which clients reach as 127.0.0.1', async () => {
    const lookup = async () => {
      throw new Error('must not be called');
    };
    expect(await unresolvedMemberHosts(planMembers({ prefix: 'mc', members: 1, basePort: 27017 }), lookup)).toEqual([]);
  });
});

describe('mongod container settings', () => {
  it('command: --replSet rs0, the keyfile, all interfaces, the member port; starts with mongod for the entrypoint', () => {
    expect(mongodCommand(27018)).toEqual(['mongod', '--replSet', 'rs0', '--keyFile', KEYFILE_PATH, '--bind_ip_all', '--port', '27018']);
    expect(() => mongodCommand(0)).toThrow(InvalidArgumentError);
  });

  it('health check: mongosh on the member port, no credentials', () => {
    const test = healthcheckTest(27019);
    expect(test).toEqual(['CMD', 'mongosh', '--quiet', '--port', '27019', '--eval', HEALTHCHECK_EVAL]);
    expect(test.join(' ')).not.toMatch(/-u\b|--username|--password|-p\b/);
  });

  it('health check durations are spelled as Go prints them, so the provider reads back the same value', () => {
    // time.Duration.String() for whole seconds: 5s, 1m0s, 1m30s, 1h0m0s.
    const go = (seconds: number) => {
      const h = Math.floor(seconds / 3600);
      const m = Math.floor((seconds % 3600) / 60);
      const sec = seconds % 60;
      return h > 0 ? `${h}h${m}m${sec}s` : m > 0 ? `${m}m${sec}s` : `${sec}s`;
    };
    const seconds = (d: string) => {
      const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)$/.exec(d);
      expect(m, d).not.toBeNull();
      return Number(m![1] ?? 0) * 3600 + Number(m![2] ?? 0) * 60 + Number(m![3] ?? 0);
    };
    for (const d of [HEALTHCHECK_TIMING.interval, HEALTHCHECK_TIMING.timeout, HEALTHCHECK_TIMING.startPeriod]) expect(d).toBe(go(seconds(d)));
    expect(seconds(HEALTHCHECK_TIMING.startPeriod)).toBe(60);
  });

  it('health check: healthy for a --replSet member before and after initiation, not for the init-phase server', () => {
    // mongosh evaluates the expression with a synchronous db.adminCommand and a quit(code) that ends it.
    const healthy = (hello: Record<string, unknown>) => {
      let code = 0;
      const quit = (c: number) => {
        code = c;
      };
      new Function('db', 'quit', HEALTHCHECK_EVAL)({ adminCommand: () => hello }, quit);
      return code === 0;
    };
    // What mongod answers in each phase (hello without credentials).
    expect(healthy({ isWritablePrimary: true, maxWireVersion: 17, ok: 1 })).toBe(false); // image init phase: no --replSet
    expect(healthy({ isWritablePrimary: false, secondary: false, isreplicaset: true, info: 'Does not have a valid replica set config', ok: 1 })).toBe(true);
    expect(healthy({ isWritablePrimary: true, setName: 'rs0', hosts: ['localhost:27017'], ok: 1 })).toBe(true);
  });

  it('environment: the root user only on member 0, the password by file', () => {
    expect(memberEnvironment(0)).toEqual(['MONGO_INITDB_ROOT_USERNAME=root', `MONGO_INITDB_ROOT_PASSWORD_FILE=${ROOT_PASSWORD_PATH}`]);
    expect(memberEnvironment(1)).toEqual([]);
    expect(memberEnvironment(2)).toEqual([]);
  });

  it('uploads: keyfile everywhere, password on member 0, all 999:999 mode 0400', () => {
    expect(memberUploads(0, 'K', 'P')).toEqual([
      { file: KEYFILE_PATH, content: 'K', owner: '999', group: '999', permissions: '0400' },
      { file: ROOT_PASSWORD_PATH, content: 'P', owner: '999', group: '999', permissions: '0400' },
    ]);
    expect(memberUploads(2, 'K', 'P')).toEqual([{ file: KEYFILE_PATH, content: 'K', owner: '999', group: '999', permissions: '0400' }]);
    expect(KEYFILE_PATH.startsWith('/data/')).toBe(false); // never inside a data volume
  });

  it('keyfile: 756 random bytes are exactly 1008 base64 characters, within mongod limits', () => {
    const keyfile = Buffer.alloc(KEYFILE_RANDOM_BYTES, 0xa5).toString('base64');
    expect(keyfile).toHaveLength(KEYFILE_LENGTH);
    expect(() => checkKeyfileContent(keyfile)).not.toThrow();
    expect(() => checkKeyfileContent('abc')).toThrow(InvalidArgumentError);
    expect(() => checkKeyfileContent('a'.repeat(1025))).toThrow(InvalidArgumentError);
    expect(() => checkKeyfileContent('not base64!')).toThrow(InvalidArgumentError);
  });
});

describe('buildConnectionString', () => {
  it('percent-encodes credentials and keeps options in order', () => {
    const uri = buildConnectionString({
      hosts: ['127.0.0.1:27017'],
      username: 'root',
      password: 'p@ss:/w?#%',
      options: { directConnection: 'true', authSource: 'admin' },
    });
    expect(uri).toBe('mongodb://root:p%40ss%3A%2Fw%3F%23%25@127.0.0.1:27017/?directConnection=true&authSource=admin');
    const client = new MongoClient(uri);
    expect(client.options.credentials?.password).toBe('p@ss:/w?#%');
    expect(client.options.directConnection).toBe(true);
  });

  it('writes a seed list the driver reads back host by host', () => {
    const hosts = ['a-0.localhost:27017', 'a-1.localhost:27018', 'a-2.localhost:27019'];
    const uri = buildConnectionString({ hosts, username: 'root', password: 'x', options: { replicaSet: 'rs0', authSource: 'admin' } });
    expect(uri).toBe('mongodb://root:x@a-0.localhost:27017,a-1.localhost:27018,a-2.localhost:27019/?replicaSet=rs0&authSource=admin');
    expect(new MongoClient(uri).options.hosts.map(String)).toEqual(hosts);
    expect(buildConnectionString({ hosts, options: { replicaSet: 'rs0' } })).toBe(`mongodb://${hosts.join(',')}/?replicaSet=rs0`);
  });

  it('refuses several hosts with directConnection=true, and anything that is not host:port', () => {
    expect(() => buildConnectionString({ hosts: ['a:1', 'b:2'], options: { directConnection: 'true' } })).toThrow(/exactly one host/);
    for (const h of ['localhost', 'a:b', 'x:1/y', 'u@h:1', 'h:1?x=y']) {
      expect(() => buildConnectionString({ hosts: [h] })).toThrow(InvalidArgumentError);
    }
    expect(() => buildConnectionString({ hosts: [] })).toThrow(/at least one host/);
    expect(() => buildConnectionString({ hosts: ['h:1'], password: 'p' })).toThrow(/needs a username/);
  });
});
