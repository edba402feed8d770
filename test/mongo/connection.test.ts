import { createServer } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { connect, openEncryptedClient, provisionCluster } from '../../src/mongo/index.ts';
import { InvalidArgumentError, MongoUnreachableError } from '../../src/errors.ts';
import { testIdentity } from './support/identity.ts';

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, 'close');
  return port;
}

// No server needed: these are about failing well.
describe('unreachable servers and bad connection strings', () => {
  const secret = 'pa55-w0rd-do-not-print';

  it('unreachable server: a typed error within the selection timeout, no credentials in it', async () => {
    const uri = `mongodb://admin:${secret}@127.0.0.1:${await closedPort()}/?directConnection=true`;
    const started = Date.now();
    const err = await connect(uri, { serverSelectionTimeoutMS: 1500 }).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(MongoUnreachableError);
    expect(elapsed).toBeLessThan(5000);
    const e = err as MongoUnreachableError;
    expect(e.message).toMatch(/no MongoDB server answered \(127\.0\.0\.1:\d+\)/);
    expect(e.hint).toMatch(/host, port/);
    expect(`${e.message} ${e.hint} ${String(e.stack)}`).not.toContain(secret);
  });

  it('high-level calls fail the same way, bounded', async () => {
    const uri = `mongodb://admin:${secret}@127.0.0.1:${await closedPort()}/`;
    const id = testIdentity();
    const started = Date.now();
    await expect(provisionCluster({ uri, recipient: id.pub, unwrap: id.unwrap, serverSelectionTimeoutMS: 1000 })).rejects.toBeInstanceOf(MongoUnreachableError);
    await expect(openEncryptedClient({ uri, unwrap: id.unwrap, serverSelectionTimeoutMS: 1000 })).rejects.toThrow(/no MongoDB server answered|mongodb-client-encryption/);
    expect(Date.now() - started).toBeLessThan(8000);
  });

  it('a host that does not resolve is reported as unreachable', async () => {
    const err = await connect(`mongodb://u:${secret}@no-such-host.invalid:27017/`, { serverSelectionTimeoutMS: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoUnreachableError);
    expect((err as Error).message).not.toContain(secret);
  });

  it('malformed connection strings: a typed error that never echoes the password', async () => {
    for (const uri of ['http://example.com', '', `mongodb://u:${secret}@h:notaport/`, `mongodb://u:${secret}@/`, `mongodb://u:${secret}@host/?replicaSet=a&directConnection=true&w=bogus&unknownOption=1&tls=maybe`]) {
      const err = await connect(uri, { serverSelectionTimeoutMS: 500 }).catch((e: unknown) => e);
      expect(err, uri.replace(secret, '***')).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).not.toContain(secret);
      expect(String((err as Error).cause ?? '')).not.toContain(secret);
    }
  });
});
