import { connect as connectTcp, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { MongoNetworkTimeoutError } from 'mongodb';
import { connect, DEFAULT_SOCKET_TIMEOUT_MS, openEncryptedClient, provisionCluster } from '../../src/mongo/index.ts';
import { describeWithServer, server } from './support/server.ts';
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

describeWithServer(`a server that stops answering mid-operation (${server.description})`, () => {
  /** A TCP proxy to the test server that can stop passing the server's replies on. */
  async function stallingProxy(target: string) {
    const [host, port] = new URL(target.replace(/^mongodb:/, 'http:')).host.split(':');
    const sockets = new Set<Socket>();
    const state = { stalled: false };
    const proxy = createServer((client) => {
      const upstream = connectTcp(Number(port), host!);
      sockets.add(client).add(upstream);
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d) => {
        if (!state.stalled) client.write(d);
      });
      for (const s of [client, upstream]) s.on('error', () => {}).on('close', () => (client.destroy(), upstream.destroy()));
    }).listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    const { port: proxyPort } = proxy.address() as { port: number };
    return {
      uri: target.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${proxyPort}`),
      stall: () => (state.stalled = true),
      close: async () => {
        for (const s of sockets) s.destroy();
        proxy.close();
      },
    };
  }

  it('connect() bounds every operation by default; the connection string can say otherwise', async () => {
    const proxy = await stallingProxy(server.uri);
    const defaults = await connect(proxy.uri);
    const own = await connect(`${proxy.uri}${proxy.uri.includes('?') ? '&' : '?'}socketTimeoutMS=700`);
    try {
      expect(defaults.options.socketTimeoutMS).toBe(DEFAULT_SOCKET_TIMEOUT_MS);
      expect(own.options.socketTimeoutMS).toBe(700);
      await own.db('admin').command({ ping: 1 });
      proxy.stall();
      const started = Date.now();
      const err = await own.db('admin').command({ ping: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MongoNetworkTimeoutError);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await proxy.close();
      await defaults.close().catch(() => {});
      await own.close().catch(() => {});
    }
  });
});
