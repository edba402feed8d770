import { describe, expect, it } from 'vitest';
import {
  describeHosts,
  directConnectionUri,
  kmsProviderName,
  nextProvider,
  parseNamespace,
  redactUri,
  replicaSetConfig,
  retryUntil,
  scrubCredentials,
} from '../../src/mongo/index.ts';
import { InvalidArgumentError, OperationTimeoutError } from '../../src/errors.ts';

describe('connection strings', () => {
  it('redacts credentials and keeps hosts and options', () => {
    expect(redactUri('mongodb://root:s3cret@db1:27017,db2:27017/admin?replicaSet=rs0')).toBe('mongodb://<credentials>@db1:27017,db2:27017/admin?replicaSet=rs0');
    expect(redactUri('mongodb+srv://u:p%40ss@cluster0.example.net/?retryWrites=true')).toBe('mongodb+srv://<credentials>@cluster0.example.net/?retryWrites=true');
    expect(redactUri('mongodb://127.0.0.1:27017/?directConnection=true')).toBe('mongodb://127.0.0.1:27017/?directConnection=true');
    expect(redactUri('postgres://u:p@h/')).toBe('<invalid connection string>');
    expect(describeHosts('mongodb://root:s3cret@db1:27017,db2:27017/admin?replicaSet=rs0')).toBe('db1:27017,db2:27017');
    expect(scrubCredentials('failed for mongodb://root:s3cret@db1:27017/ and MONGODB+SRV://a:b@x')).toBe('failed for mongodb://<credentials>@db1:27017/ and MONGODB+SRV://<credentials>@x');
  });

  it('derives a direct connection to one member, keeping credentials and options', () => {
    expect(directConnectionUri('mongodb://root:pw@a:1,b:2/?replicaSet=rs0&authSource=admin', 'a:1')).toBe('mongodb://root:pw@a:1/?authSource=admin&directConnection=true');
    expect(directConnectionUri('mongodb://localhost:27017', 'mongo-0:27017')).toBe('mongodb://mongo-0:27017/?directConnection=true');
    expect(() => directConnectionUri('mongodb+srv://u:pw@c.example.net/', 'a:1')).toThrow(InvalidArgumentError);
    expect(() => directConnectionUri('mongodb+srv://u:pw@c.example.net/', 'a:1')).not.toThrow(/pw/);
  });

  it('splits namespaces', () => {
    expect(parseNamespace('encryption.__keyVault', 'x')).toEqual({ db: 'encryption', collection: '__keyVault' });
    expect(parseNamespace('db.capsules.history', 'x')).toEqual({ db: 'db', collection: 'capsules.history' });
    for (const bad of ['nodot', '.coll', 'db.', '']) expect(() => parseNamespace(bad, 'x')).toThrow(InvalidArgumentError);
  });
});

describe('replica-set configuration', () => {
  it('numbers members in order with an explicit host list', () => {
    expect(replicaSetConfig('rs0', [{ host: 'mongo-0:27017' }, { host: 'mongo-1:27018', priority: 0 }])).toEqual({
      _id: 'rs0',
      members: [
        { _id: 0, host: 'mongo-0:27017' },
        { _id: 1, host: 'mongo-1:27018', priority: 0 },
      ],
    });
  });

  it('rejects what mongod would reject later, naming the argument', () => {
    expect(() => replicaSetConfig('rs0', [])).toThrow(/at least one host/);
    expect(() => replicaSetConfig('rs0', [{ host: 'mongo-0' }])).toThrow(/members\[0\]\.host/);
    expect(() => replicaSetConfig('rs0', [{ host: 'a:1' }, { host: 'A:1' }])).toThrow(/listed twice/);
    expect(() => replicaSetConfig('rs 0', [{ host: 'a:1' }])).toThrow(/setName/);
  });
});

describe('retryUntil', () => {
  it('returns the first value that satisfies the predicate, treating errors as not yet', async () => {
    let n = 0;
    const v = await retryUntil(
      async () => {
        n++;
        if (n < 3) throw new Error('starting');
        return n;
      },
      (x) => x >= 4,
      5000,
      'n to reach 4',
      { intervalMs: 1 },
    );
    expect(v).toBe(4);
  });

  it('times out naming what it waited for, for how long, and what it last saw', async () => {
    const progress: string[] = [];
    const err = await retryUntil(async () => ({ isWritablePrimary: false }), (h) => h.isWritablePrimary, 120, 'a writable primary', {
      intervalMs: 20,
      onProgress: (m) => progress.push(m),
      describe: () => 'member is secondary',
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationTimeoutError);
    expect((err as Error).message).toMatch(/timed out after \d+\.\d s \(limit 0\.1 s, \d+ attempts\) waiting for a writable primary; last: member is secondary/);
    expect(progress.length).toBeGreaterThan(0);
  });
});

describe('KMS provider names', () => {
  it('are per capsule and generation, valid, and injective', () => {
    expect(kmsProviderName('default', 1)).toBe('local:g1_default');
    expect(nextProvider({ name: 'default', generation: 1 })).toBe('local:g2_default');
    const names = ['a.b', 'a-b', 'a_b', 'a__b', 'a_2eb', 'A.b'];
    const providers = names.map((n) => kmsProviderName(n, 7));
    expect(new Set(providers).size).toBe(names.length);
    for (const p of providers) expect(p).toMatch(/^local:[A-Za-z0-9_]+$/);
  });
});
