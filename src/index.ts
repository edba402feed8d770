/**
 * mongo-capsule's public API for application code: the package entry point (`main` in package.json).
 *
 * One import gives the three layers an application needs: the capsule crypto core (`src/crypto`), the key
 * manager over the OS keychain (`src/keys`) and the MongoDB layer with the encrypted client (`src/mongo`), plus
 * the typed errors every layer throws. The CLI and the Pulumi program are entry points of their own and are not
 * part of it.
 *
 * @example
 * import { KeyManager, openEncryptedClient } from 'mongo-capsule';
 * await using db = await openEncryptedClient({ uri: process.env.MONGODB_URI!, unwrap: new KeyManager() });
 * await db.client.db('app').collection('people').insertOne({ ssn: await db.encryptDeterministic('123-45-6789', 'default') });
 */
export * from './errors.ts';
export * from './crypto/index.ts';
export * from './keys/index.ts';
export * from './mongo/index.ts';
