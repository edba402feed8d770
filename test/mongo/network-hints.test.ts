// The failures users meet first get a hint that says what to do: nothing listening, an SRV name that does not
// resolve, an unsigned capsule.
import { createServer } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { generateCmk, wrapKey, unwrapKey } from '../../src/crypto/capsule.ts';
import { generateIdentity, toPublicIdentity } from '../../src/crypto/identity.ts';
import { MongoUnreachableError, SignatureInvalidError } from '../../src/errors.ts';
import { connect } from '../../src/mongo/index.ts';

describe('hints for common failures', () => {
  it('connect ECONNREFUSED: nothing listens there', async () => {
    const srv = createServer().listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as { port: number };
    srv.close();
    await once(srv, 'close');
    const err = await connect(`mongodb://u:Hint-Secret-1@127.0.0.1:${port}/`, { serverSelectionTimeoutMS: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoUnreachableError);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
    expect((err as MongoUnreachableError).hint).toMatch(/nothing listens there: check the host, port/);
  });

  it('querySrv ENOTFOUND: the SRV record of the mongodb+srv host', async () => {
    const err = await connect('mongodb+srv://u:Hint-Secret-1@no-such-cluster.invalid/', { serverSelectionTimeoutMS: 2000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoUnreachableError);
    expect((err as Error).message).toMatch(/querySrv/);
    expect((err as MongoUnreachableError).hint).toMatch(/DNS SRV record .* check the cluster host name/);
    expect(`${(err as Error).message} ${(err as MongoUnreachableError).hint}`).not.toContain('Hint-Secret-1');
  });

  it('capsule is not signed: the hint names how to sign and what trusting a signer takes', () => {
    const id = generateIdentity('ml-kem-768', { name: 'hints' });
    const capsule = wrapKey(generateCmk(), toPublicIdentity(id), { name: 'hints' });
    let err: unknown;
    try {
      unwrapKey(capsule, id, { requireSignature: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SignatureInvalidError);
    expect((err as SignatureInvalidError).hint).toMatch(/--sign-name .*--trust <pub\.json>.*--allow-unsigned/);
  });
});
