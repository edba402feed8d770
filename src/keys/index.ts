/** The keys layer: identities in the OS keychain, the key manager (cache, rotation), migration, secret sources. */
export * from './capsule-repository.ts';
export * from './keychain.ts';
export * from './manager.ts';
export * from './file-capsule-repository.ts';
export * from './migrate.ts';
export * from './secret-source.ts';
export { secureDelete } from './secure-file.ts';
