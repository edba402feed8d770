// The test harness never runs against the cluster a user exported for their own work (MONGODB_URI): only a
// server named by its own variable, MONGO_CAPSULE_TEST_URI, or one it starts itself.
import { describe, expect, it } from 'vitest';
import { redactUri, startTestServer, TEST_URI_ENV } from '../../scripts/lib/test-server.mjs';

describe('scripts/lib/test-server.mjs', () => {
  it('ignores MONGODB_URI, and says so', async () => {
    const logs: string[] = [];
    const server = await startTestServer({
      env: { MONGODB_URI: 'mongodb://admin:Atlas-Secret-9@cluster0.example.invalid/', MONGO_CAPSULE_TEST_SERVER: 'none' },
      log: (m) => logs.push(m),
    });
    expect(server.kind).toBe('none');
    expect(server.uri).toBe('');
    expect(logs.join('\n')).toMatch(/MONGODB_URI is set and ignored.*MONGO_CAPSULE_TEST_URI/);
    expect(logs.join('\n')).not.toContain('Atlas-Secret-9');
  });

  it('uses MONGO_CAPSULE_TEST_URI, and an unreachable one is an error free of its password', async () => {
    expect(TEST_URI_ENV).toBe('MONGO_CAPSULE_TEST_URI');
    const err = await startTestServer({ env: { [TEST_URI_ENV]: 'mongodb://u:Pa/ss-w0rd-9@127.0.0.1:1/?serverSelectionTimeoutMS=300' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/MONGO_CAPSULE_TEST_URI \(mongodb:\/\/<credentials>@127\.0\.0\.1:1\/.*\) is set but the server does not answer/);
    expect((err as Error).message).not.toContain('Pa/ss-w0rd-9');
  });

  it('shares the one redaction of src/uri-redaction.mjs', () => {
    expect(redactUri('mongodb://admin:CorrectHorseBattery/@db.example.com:27017/')).toBe('mongodb://<credentials>@db.example.com:27017/');
  });
});
