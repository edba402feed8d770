/** The MongoDB layer: replica-set admin, capsule store, CSFLE client, CMK rotation, provisioning. */
export * from './connection.ts';
export * from './retry.ts';
export * from './replica-set.ts';
export * from './capsule-store.ts';
export * from './csfle.ts';
export * from './key-vault.ts';
export * from './encrypted-client.ts';
export * from './rotation.ts';
export * from './provision.ts';
export * from './recipients.ts';
