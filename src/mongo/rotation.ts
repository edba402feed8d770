/**
 * CSFLE master key (CMK) rotation, resumable after a crash at any step.
 *
 * Steps (the state lives in the capsule document itself, so each transition is one atomic update):
 *   1. prepare: a new CMK is generated, sealed into the *next* capsule for the recipient, and that capsule is
 *      proven to open with the caller's unwrap before anything is written; then `pendingRotation`
 *      { id, toProvider: kmsProviderName(name, generation + 1), next } is attached to the live capsule (compare-and-swap on its
 *      digest, and only when no rotation is pending). The new CMK now exists only sealed in the database.
 *   2. rewrap: `rewrapManyDataKey` moves every data key from the live provider to `toProvider` (re-runnable: it
 *      selects keys still under the old provider; keys already moved are left alone).
 *   3. swap: the next capsule becomes live, `kmsProvider` becomes `toProvider` and `pendingRotation` disappears,
 *      in one compare-and-swap.
 * Invariant: at every moment each data key is under the live provider or the pending `toProvider`, and both
 * CMKs can be unwrapped from the one capsule document; `openEncryptedClient` loads both while a rotation is
 * pending. So no data key is ever unreadable, and data encrypted before the rotation decrypts after it.
 * Providers are named per capsule and generation (see kmsProviderName), so capsules sharing a key vault rotate
 * independently. A KEM-key rotation of a capsule waits until its pending CMK rotation is finished (the
 * compare-and-swap refuses meanwhile).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { ClientEncryption } from 'mongodb';
import { generateCmk, wrapKey, type PublicIdentity, type SecretIdentity } from '../crypto/index.ts';
import { CapsuleAuthError, CapsuleConflictError } from '../errors.ts';
import { CapsuleStore, kmsProviderName, sha256Hex, type CapsuleRecord, type PendingRotation } from './capsule-store.ts';
import { connect, DEFAULT_SERVER_SELECTION_TIMEOUT_MS, mongoError } from './connection.ts';
import { requireCsfle } from './csfle.ts';
import { capsuleKeys, DEFAULT_CAPSULE_NAME, toUnwrapFn, type Unwrapper } from './encrypted-client.ts';
import { DEFAULT_KEY_VAULT_NAMESPACE, keyVaultCollection } from './key-vault.ts';

export type RotationStep = 'prepared' | 'rewrapped' | 'swapped';

export interface RotateCmkOptions {
  uri: string;
  capsuleName?: string;
  /** Who the new capsule is sealed for (normally the identity of the live capsule). */
  recipient: Pick<PublicIdentity, 'suite' | 'kid' | 'publicKey'>;
  /** Signs the new capsule (recommended; the key manager verifies signatures when unwrapping). */
  signer?: Pick<SecretIdentity, 'signer' | 'signerSecretKey'>;
  /** Opens capsules (the live one, and the new one as a check before it is stored). */
  unwrap: Unwrapper;
  keyVaultNamespace?: string;
  capsuleNamespace?: string;
  serverSelectionTimeoutMS?: number;
  onProgress?: (message: string) => void;
  /** Test hook, called after each step; throwing from it simulates a crash at that point. */
  afterStep?: (step: RotationStep) => void | Promise<void>;
}

export interface RotateCmkResult {
  capsuleName: string;
  /** True when this call finished a rotation an earlier (crashed or concurrent) run had started. */
  resumed: boolean;
  fromProvider: string;
  toProvider: string;
  /** Data keys moved to the new CMK by this call. */
  rewrapped: number;
  generation: number;
  kid: string;
}

/**
 * Rotates the CMK of capsule `capsuleName`, or finishes the rotation that is already pending.
 * @example
 * await rotateCmk({ uri, recipient: await km.getPublicIdentity(), signer: await km.getSecretIdentity(), unwrap: (c) => km.unwrap(c) });
 */
export async function rotateCmk(options: RotateCmkOptions): Promise<RotateCmkResult> {
  requireCsfle('rotateCmk');
  const {
    uri,
    capsuleName = DEFAULT_CAPSULE_NAME,
    keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE,
    capsuleNamespace,
    serverSelectionTimeoutMS = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    onProgress,
    afterStep,
  } = options;
  const unwrap = toUnwrapFn(options.unwrap);
  const client = await connect(uri, { serverSelectionTimeoutMS, purpose: 'connecting for the CMK rotation' });
  try {
    const store = new CapsuleStore(client, capsuleNamespace === undefined ? {} : { namespace: capsuleNamespace });
    let record = await store.load(capsuleName);
    let resumed = record.pendingRotation !== null;

    if (record.pendingRotation === null) {
      // A CMK rotation changes the key, never who can open it (that is the KEM-key rotation's job). Sealing the
      // next CMK for another key than the live capsule's would, after a KEM rotation retires that key, strand
      // every data key moved to it.
      if (options.recipient.kid !== record.header.kid) {
        throw new CapsuleConflictError(
          `capsule ${capsuleName} is sealed for key ${record.header.kid}, but the CMK rotation would seal the new CMK for ${options.recipient.kid}; nothing was changed`,
          { hint: 'finish the KEM-key rotation first (`mongo-capsule keys rotate --cluster`), or rotate with the identity the capsule is sealed for' },
        );
      }
      // Prove that this caller opens the live capsule before anything is written: a pending rotation that its
      // owner cannot finish would lock everyone out of the capsule.
      (await capsuleKeys(record, unwrap)).wipe();
      const pending = await prepare(record, options, unwrap);
      onProgress?.(`rotation ${pending.id}: new CMK sealed for key ${options.recipient.kid}; data keys move ${record.kmsProvider} → ${pending.toProvider}`);
      if (!(await store.beginRotation(capsuleName, record.sha256, pending))) {
        record = await store.load(capsuleName);
        if (record.pendingRotation === null) throw new CapsuleConflictError(`capsule ${capsuleName} changed while the CMK rotation was being prepared; nothing was changed`);
        resumed = true; // a concurrent run started one first: finish theirs
      } else {
        record = await store.load(capsuleName);
      }
      await afterStep?.('prepared');
    } else {
      onProgress?.(`resuming CMK rotation ${record.pendingRotation.id} (${record.pendingRotation.phase}) started ${record.pendingRotation.startedAt.toISOString()}`);
    }

    const pending = record.pendingRotation;
    if (pending === null) throw new CapsuleConflictError(`capsule ${capsuleName}: the CMK rotation just started is not visible; rerun rotate-cmk to finish it`);
    const fromProvider = record.kmsProvider;
    const keys = await capsuleKeys(record, unwrap);
    let rewrapped = 0;
    try {
      const encryption = new ClientEncryption(client, { keyVaultNamespace, kmsProviders: keys.kmsProviders });
      rewrapped = await rewrapAll(encryption, client, keyVaultNamespace, fromProvider, pending.toProvider);
      onProgress?.(`rewrapped ${rewrapped} data key(s) to ${pending.toProvider}`);
      await store.setRotationPhase(capsuleName, pending.id, 'rewrapped');
      await afterStep?.('rewrapped');

      const swapped = await store.swap(capsuleName, record.bytes, pending.next, {
        reason: 'cmk-rotation',
        kmsProvider: pending.toProvider,
        pendingRotationId: pending.id,
      });
      if (!swapped) {
        const now = await store.load(capsuleName);
        if (now.sha256 !== sha256Hex(pending.next)) {
          throw new CapsuleConflictError(`capsule ${capsuleName} changed during the CMK rotation; rerun rotate-cmk to finish it`);
        }
      }
      onProgress?.(`capsule ${capsuleName} now holds the new CMK (provider ${pending.toProvider})`);
      await afterStep?.('swapped');
      // A client opened before the rotation may have created a key under the old provider after step 2; the
      // old CMK is still in memory, so move such stragglers now.
      rewrapped += await rewrapAll(encryption, client, keyVaultNamespace, fromProvider, pending.toProvider);
    } finally {
      keys.wipe();
    }
    const live = await store.load(capsuleName);
    return { capsuleName, resumed, fromProvider, toProvider: pending.toProvider, rewrapped, generation: live.generation, kid: live.header.kid };
  } finally {
    await client.close().catch(() => {});
  }
}

async function prepare(record: CapsuleRecord, options: RotateCmkOptions, unwrap: (c: Uint8Array) => Promise<Uint8Array>): Promise<PendingRotation> {
  const cmk = generateCmk();
  let opened: Uint8Array | undefined;
  try {
    const next = wrapKey(cmk, options.recipient, {
      name: record.name,
      ...(options.signer === undefined ? {} : { signer: options.signer }),
    });
    // Never store a capsule its owner cannot open: that would strand every data key moved to it.
    opened = await unwrap(next);
    if (opened.length !== cmk.length || !timingSafeEqual(opened, cmk)) {
      throw new CapsuleAuthError('the new capsule does not open to the new CMK with the given unwrap; nothing was changed');
    }
    return { id: randomBytes(8).toString('hex'), toProvider: nextProvider(record), next, startedAt: new Date(), phase: 'prepared' };
  } finally {
    cmk.fill(0);
    opened?.fill(0);
  }
}

/** The provider of the generation the capsule will have after the swap (`local:g<n+1>_<name>`). */
export function nextProvider(record: Pick<CapsuleRecord, 'name' | 'generation'>): string {
  return kmsProviderName(record.name, record.generation + 1);
}

async function rewrapAll(encryption: ClientEncryption, client: import('mongodb').MongoClient, keyVaultNamespace: string, from: string, to: string): Promise<number> {
  let moved = 0;
  // rewrapManyDataKey updates in one bulk write; loop in case keys appear while it runs.
  for (let i = 0; i < 5; i++) {
    try {
      const r = await encryption.rewrapManyDataKey({ 'masterKey.provider': from }, { provider: to as 'local' });
      moved += r.bulkWriteResult?.modifiedCount ?? 0;
      const left = await keyVaultCollection(client, keyVaultNamespace).countDocuments({ 'masterKey.provider': from });
      if (left === 0) return moved;
    } catch (e) {
      throw mongoError(e, `rewrapping data keys from ${from} to ${to}`);
    }
  }
  throw new CapsuleConflictError(`data keys keep appearing under ${from} during the CMK rotation; stop the writers that create keys and rerun rotate-cmk`);
}
