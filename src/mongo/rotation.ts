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
 *
 * Before anything is written, the CMK(s) the caller unwraps are proven to decrypt every data key under the
 * capsule's providers: a capsule that does not belong to the key vault (restored from another cluster) would
 * otherwise start a rotation that can never finish. Between steps 1 and 2 the rotation waits
 * `clientRefreshWaitMS`, so that running encrypted clients (which check the capsule every
 * DEFAULT_REFRESH_INTERVAL_MS) load the next CMK before any data key moves to it.
 *
 * Abandoning (abandonCmkRotation) runs the rotation backwards while both CMKs are still in the document: keys
 * already moved go back to the live provider, then `pendingRotation` is removed (compare-and-swap on its id),
 * then keys a client created under the abandoned provider meanwhile are moved back too. A crash at any point
 * leaves a state that either command finishes.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { ClientEncryption, type MongoClient } from 'mongodb';
import { decodePublicIdentity, encodePublicIdentity, generateCmk, parseCapsule, recipientTag, verifyRecipientTag, wrapKey, type PublicIdentity, type SecretIdentity } from '../crypto/index.ts';
import { CapsuleAuthError, CapsuleConflictError, CmkMismatchError, InvalidArgumentError, isMongoCapsuleError, RecipientInvalidError, RecipientNotFoundError, RotationIncompleteError } from '../errors.ts';
import { CapsuleStore, DEFAULT_CAPSULE_NAMESPACE, kmsProviderName, sha256Hex, type CapsuleRecord, type PendingRotation } from './capsule-store.ts';
import { connect, DEFAULT_SERVER_SELECTION_TIMEOUT_MS, mongoError } from './connection.ts';
import { requireCsfle } from './csfle.ts';
import { capsuleKeys, DEFAULT_CAPSULE_NAME, DEFAULT_REFRESH_INTERVAL_MS, recipientMarkKey, toUnwrapFn, type CapsuleKeys, type ReplayGuard, type UnwrapFn, type Unwrapper } from './encrypted-client.ts';
import { checkWatermark } from '../keys/capsule-watermarks.ts';
import { DEFAULT_KEY_VAULT_NAMESPACE, isHmacFailure, keyVaultCollection, verifyDataKeys } from './key-vault.ts';

export type RotationStep = 'prepared' | 'rewrapped' | 'swapped';

/** How long a rotation waits, after announcing the next CMK, for running clients to load it. */
export const DEFAULT_CLIENT_REFRESH_WAIT_MS = DEFAULT_REFRESH_INTERVAL_MS + 5_000;

export interface RotateCmkOptions {
  uri: string;
  capsuleName?: string;
  /**
   * The public identity of the capsule's first recipient, needed only for a capsule stored before recipient
   * lists (which does not keep it); every other recipient's is read from the capsule document and checked
   * against the live CMK (crypto/recipients.ts). When given it must be one of the capsule's recipients.
   */
  recipient?: Pick<PublicIdentity, 'suite' | 'kid' | 'publicKey'> & Partial<Pick<PublicIdentity, 'name' | 'signer'>>;
  /**
   * Revoke this recipient (keys revoke): the next CMK is sealed for every recipient but this one, and its entry
   * leaves the live capsule when the rotation starts. The caller cannot revoke its own key.
   */
  revokeKid?: string;
  /** Signs the new capsule (recommended; the key manager verifies signatures when unwrapping). */
  signer?: Pick<SecretIdentity, 'signer' | 'signerSecretKey'>;
  /** Opens capsules (the live one, and the new one as a check before it is stored). */
  unwrap: Unwrapper;
  /**
   * Replay marks (capsule-watermarks.ts): refuse to rotate from a live capsule older than the newest this machine
   * opened (a retired generation written back), and raise the mark to it otherwise; once the rotation is done,
   * raise it to the new capsule. Default: no check.
   */
  replay?: ReplayGuard;
  keyVaultNamespace?: string;
  capsuleNamespace?: string;
  serverSelectionTimeoutMS?: number;
  onProgress?: (message: string) => void;
  /** Test hook, called after each step; throwing from it simulates a crash at that point. */
  afterStep?: (step: RotationStep) => void | Promise<void>;
  /**
   * Wait between announcing the next CMK and moving the first data key (default 15 s: longer than the encrypted
   * clients' refresh interval, so that running clients hold both CMKs before any key moves). 0 in tests.
   */
  clientRefreshWaitMS?: number;
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
  /** Every recipient of the new capsule. */
  recipientKids: string[];
  /** The recipient this rotation revoked, if any. */
  revokedKid: string | null;
  /** The capsule's data-key epoch after the rotation (a revocation raises it: new values get fresh data keys). */
  dataKeyEpoch: number;
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
    clientRefreshWaitMS = DEFAULT_CLIENT_REFRESH_WAIT_MS,
  } = options;
  const unwrap = toUnwrapFn(options.unwrap);
  const client = await connect(uri, { serverSelectionTimeoutMS, purpose: 'connecting for the CMK rotation' });
  try {
    const store = new CapsuleStore(client, capsuleNamespace === undefined ? {} : { namespace: capsuleNamespace });
    let record = await store.load(capsuleName);
    let resumed = record.pendingRotation !== null;
    if (record.pendingRotation === null) {
      // Prove that this caller opens the live capsule, and that its CMK opens the capsule's data keys, before
      // anything is written: a pending rotation that cannot finish would lock everyone out of the capsule.
      const liveKeys = await capsuleKeys(record, unwrap, options.replay);
      let pending: PendingRotation;
      try {
        await proveKeys(client, record, liveKeys, keyVaultNamespace, onProgress);
        const stale = await keyVaultCollection(client, keyVaultNamespace).countDocuments({ 'masterKey.provider': nextProvider(record) }).catch((e: unknown) => {
          throw mongoError(e, `reading the key vault ${keyVaultNamespace}`);
        });
        if (stale > 0) {
          throw new CmkMismatchError(
            `capsule ${capsuleName}: ${stale} data key(s) in ${keyVaultNamespace} are already under ${nextProvider(record)}, the provider the next CMK would get; nothing was changed`,
            { hint: 'they were made under a CMK that is no longer in the capsule (an abandoned rotation interrupted mid-way, or a key vault from another cluster); restore that capsule generation before rotating' },
          );
        }
        pending = await prepare(record, liveKeys, options, unwrap);
      } finally {
        liveKeys.wipe();
      }
      onProgress?.(
        `rotation ${pending.id}: new CMK sealed for ${pending.recipients.length} recipient(s)${pending.revokedKid === null ? '' : ` (revoking ${pending.revokedKid}; new values get fresh data keys, epoch ${record.dataKeyEpoch + 1})`}; data keys move ${record.kmsProvider} → ${pending.toProvider}`,
      );
      if (!(await store.beginRotation(capsuleName, record.sha256, pending).catch((e: unknown) => {
        // The update may or may not have been applied: say both outcomes.
        throw new RotationIncompleteError(`capsule ${capsuleName}: starting the CMK rotation failed, perhaps after it was recorded (${isMongoCapsuleError(e) ? e.message : String(e)})`, { cause: e });
      }))) {
        record = await store.load(capsuleName);
        if (record.pendingRotation === null) throw new CapsuleConflictError(`capsule ${capsuleName} changed while the CMK rotation was being prepared; nothing was changed`);
        resumed = true; // a concurrent run started one first: finish theirs
      } else {
        record = await store.load(capsuleName);
      }
      await afterStep?.('prepared');
    } else {
      if (options.revokeKid !== undefined && record.pendingRotation.revokedKid !== options.revokeKid) {
        throw new CapsuleConflictError(`capsule ${capsuleName}: another CMK rotation (${record.pendingRotation.id}${record.pendingRotation.revokedKid === null ? '' : `, revoking ${record.pendingRotation.revokedKid}`}) is pending; nothing was revoked`, {
          hint: `finish it first with \`mongo-capsule rotate-cmk --capsule ${capsuleName}\`, then revoke again`,
        });
      }
      onProgress?.(`resuming CMK rotation ${record.pendingRotation.id} (${record.pendingRotation.phase}) started ${record.pendingRotation.startedAt.toISOString()}`);
    }

    const pending = record.pendingRotation;
    if (pending === null) throw new CapsuleConflictError(`capsule ${capsuleName}: the CMK rotation just started is not visible; rerun rotate-cmk to finish it`);
    const fromProvider = record.kmsProvider;
    const keys = await capsuleKeys(record, unwrap, options.replay).catch((e: unknown) => {
      throw incomplete(e, capsuleName, pending.id);
    });
    let rewrapped = 0;
    try {
      const encryption = new ClientEncryption(client, { keyVaultNamespace, kmsProviders: keys.kmsProviders });
      if (resumed) {
        // A rotation started before the key vault was checked (or by an older version) may be one that can never
        // finish: say so, and how to undo it, rather than failing in rewrapManyDataKey on every run.
        await verifyProviders(encryption, client, keyVaultNamespace, record).catch((e: unknown) => {
          if (e instanceof CmkMismatchError) {
            throw new CmkMismatchError(`${e.message}; the pending CMK rotation ${pending.id} cannot finish`, {
              hint: `abandon it with \`mongo-capsule rotate-cmk --abandon --capsule ${capsuleName}\` (nothing is lost), then restore the capsule that belongs to this key vault`,
              cause: e,
            });
          }
          throw incomplete(e, capsuleName, pending.id);
        });
      }
      const waitMs = Math.max(0, pending.startedAt.getTime() + clientRefreshWaitMS - Date.now());
      if (pending.phase === 'prepared' && waitMs > 0) {
        onProgress?.(`waiting ${Math.ceil(waitMs / 1000)} s for running encrypted clients to load the next CMK`);
        await new Promise((r) => setTimeout(r, waitMs));
      }
      const step = <T>(p: Promise<T>) => p.catch((e: unknown) => {
        throw incomplete(e, capsuleName, pending.id);
      });
      rewrapped = await step(rewrapAll(encryption, client, keyVaultNamespace, fromProvider, pending.toProvider, capsuleName));
      onProgress?.(`rewrapped ${rewrapped} data key(s) to ${pending.toProvider}`);
      await step(store.setRotationPhase(capsuleName, pending.id, 'rewrapped'));
      await afterStep?.('rewrapped');

      const [nextPrimary, ...nextOthers] = pending.recipients;
      const swapped = await step(
        store.swap(capsuleName, record.bytes, pending.next, {
          reason: pending.revokedKid === null ? 'cmk-rotation' : `cmk-rotation (revoked ${pending.revokedKid})`,
          kmsProvider: pending.toProvider,
          pendingRotationId: pending.id,
          // A rotation started before recipient lists seals for `next` only and carries no bindings.
          ...(nextPrimary === undefined ? {} : { recipients: nextOthers }),
          ...(nextPrimary?.publicIdentity && nextPrimary.tag ? { binding: { publicIdentity: nextPrimary.publicIdentity, tag: nextPrimary.tag } } : {}),
        }),
      );
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
      rewrapped += await rewrapAll(encryption, client, keyVaultNamespace, fromProvider, pending.toProvider, capsuleName);
    } finally {
      keys.wipe();
    }
    const live = await store.load(capsuleName);
    const own = live.recipients.find((e) => e.header.kid === keys.kid);
    if (options.replay !== undefined && own !== undefined) {
      // Raised only now that the rotation is done (an abandoned one keeps the older capsule live): from here on a
      // write-back of the generation it retired is refused here, even before any client opened the new one.
      const { store: marks, key } = options.replay;
      await checkWatermark(marks, recipientMarkKey(key, live.header.kid, own.header.kid), { createdAt: own.header.createdAt.getTime(), sha256: own.sha256 }, `capsule ${capsuleName}`);
    }
    return {
      capsuleName,
      resumed,
      fromProvider,
      toProvider: pending.toProvider,
      rewrapped,
      generation: live.generation,
      kid: live.header.kid,
      recipientKids: live.recipients.map((r) => r.header.kid),
      revokedKid: pending.revokedKid,
      dataKeyEpoch: live.dataKeyEpoch,
    };
  } finally {
    await client.close().catch(() => {});
  }
}

/**
 * Seals a new CMK for every recipient of `record` (but a revoked one), each for the public identity its entry
 * is bound to by a recipient tag that verifies under the live CMK, and proves the caller's own opens.
 */
async function prepare(record: CapsuleRecord, live: CapsuleKeys, options: RotateCmkOptions, unwrap: UnwrapFn): Promise<PendingRotation> {
  const { revokeKid } = options;
  if (options.recipient !== undefined && !record.recipients.some((e) => e.header.kid === options.recipient!.kid)) {
    throw new CapsuleConflictError(
      `capsule ${record.name} is sealed for key(s) ${record.recipients.map((e) => e.header.kid).join(', ')}, but the CMK rotation was asked to seal the new CMK for ${options.recipient.kid}; nothing was changed`,
      { hint: 'finish the KEM-key rotation first (`mongo-capsule keys rotate --cluster`), rotate with an identity the capsule is sealed for, or add a recipient with `mongo-capsule keys grant`' },
    );
  }
  const keep = record.recipients.filter((e) => e.header.kid !== revokeKid);
  if (revokeKid !== undefined) {
    if (keep.length === record.recipients.length) throw new RecipientNotFoundError(`capsule ${record.name} has no recipient ${revokeKid} (its recipients: ${record.recipients.map((e) => e.header.kid).join(', ')}); nothing was changed`);
    if (revokeKid === live.kid) {
      throw new InvalidArgumentError(`capsule ${record.name}: the identity running the revocation is recipient ${revokeKid} itself; nothing was changed`, {
        hint: 'revoke it with the identity of another recipient (`--identity <name>`): the rotation must prove the new CMK opens for the one who runs it',
      });
    }
  }
  const recipients = keep.map((e) => recipientPublic(record, e, live.cmk, options.recipient));
  const cmk = generateCmk();
  let opened: Uint8Array | undefined;
  try {
    // One creation time for every recipient's capsule of the generation: replay marks compare them.
    const createdAt = new Date();
    const sealed = recipients.map(({ pub, text }) => ({
      bytes: wrapKey(cmk, pub, { name: record.name, createdAt, ...(options.signer === undefined ? {} : { signer: options.signer }) }),
      publicIdentity: text,
      tag: text === null ? null : recipientTag(cmk, record.name, text),
    }));
    const own = sealed.find((s) => parseCapsule(s.bytes).header.kid === live.kid)!;
    // Never store a capsule its owner cannot open: that would strand every data key moved to it.
    opened = await unwrap(own.bytes);
    if (opened.length !== cmk.length || !timingSafeEqual(opened, cmk)) {
      throw new CapsuleAuthError('the new capsule does not open to the new CMK with the given unwrap; nothing was changed');
    }
    return {
      id: randomBytes(8).toString('hex'),
      toProvider: nextProvider(record),
      next: sealed[0]!.bytes,
      startedAt: new Date(),
      phase: 'prepared',
      recipients: sealed,
      revokedKid: revokeKid ?? null,
    };
  } finally {
    cmk.fill(0);
    opened?.fill(0);
  }
}

/**
 * The public identity the next CMK is sealed for, for one recipient entry: the stored `.pub.json` text, accepted
 * only when its tag verifies under the live CMK and it names the key the entry is sealed for. An entry without
 * one (a capsule stored before recipient lists) takes `fallback` when that is its key.
 */
function recipientPublic(
  record: CapsuleRecord,
  entry: CapsuleRecord['recipients'][number],
  cmk: Uint8Array,
  fallback: RotateCmkOptions['recipient'],
): { pub: Pick<PublicIdentity, 'suite' | 'kid' | 'publicKey'>; text: string | null } {
  const kid = entry.header.kid;
  if (entry.publicIdentity === null) {
    if (fallback !== undefined && fallback.kid === kid) {
      const full = fallback.name !== undefined && fallback.signer !== undefined ? (fallback as PublicIdentity) : undefined;
      return { pub: fallback, text: full === undefined ? null : encodePublicIdentity(full) };
    }
    throw new RecipientInvalidError(`capsule ${record.name}: recipient ${kid} has no public identity stored with it (the capsule predates recipient lists); nothing was changed`, {
      hint: `rotate with that identity (\`mongo-capsule rotate-cmk --identity <its name>\`), or pass its public identity (option \`recipient\`)`,
    });
  }
  let pub: PublicIdentity;
  try {
    pub = decodePublicIdentity(entry.publicIdentity);
  } catch (e) {
    throw new RecipientInvalidError(`capsule ${record.name}: the public identity stored for recipient ${kid} is not valid; nothing was changed`, { cause: e });
  }
  if (pub.kid !== kid) throw new RecipientInvalidError(`capsule ${record.name}: the public identity stored for recipient ${kid} is for key ${pub.kid}; nothing was changed`);
  if (!verifyRecipientTag(cmk, record.name, entry.publicIdentity, entry.tag)) {
    throw new RecipientInvalidError(`capsule ${record.name}: recipient ${kid} (${pub.name}) is not bound to the live CMK (its recipient tag does not verify): someone without the CMK wrote it, or it is left from an older generation; nothing was changed`);
  }
  return { pub, text: entry.publicIdentity };
}

/** The provider of the generation the capsule will have after the swap (`local:g<n+1>_<name>`). */
export function nextProvider(record: Pick<CapsuleRecord, 'name' | 'generation'>): string {
  return kmsProviderName(record.name, record.generation + 1);
}

async function rewrapAll(encryption: ClientEncryption, client: import('mongodb').MongoClient, keyVaultNamespace: string, from: string, to: string, capsuleName: string): Promise<number> {
  let moved = 0;
  // rewrapManyDataKey updates in one bulk write; loop in case keys appear while it runs.
  for (let i = 0; i < 5; i++) {
    try {
      const r = await encryption.rewrapManyDataKey({ 'masterKey.provider': from }, { provider: to as 'local' });
      moved += r.bulkWriteResult?.modifiedCount ?? 0;
      const left = await keyVaultCollection(client, keyVaultNamespace).countDocuments({ 'masterKey.provider': from });
      if (left === 0) return moved;
    } catch (e) {
      if (isHmacFailure(e)) throw new CmkMismatchError(`capsule ${capsuleName}: a data key under ${from} does not decrypt with the capsule's CMK (HMAC validation failure) while rewrapping to ${to}`, { cause: e });
      throw mongoError(e, `rewrapping data keys from ${from} to ${to}`);
    }
  }
  throw new CapsuleConflictError(`data keys keep appearing under ${from} during the CMK rotation; stop the writers that create keys and rerun rotate-cmk`);
}

/**
 * Proves, writing nothing, that `record` opens with `unwrap` and its CMK(s) decrypt the capsule's data keys
 * under its live (and pending) provider, at most `limit` per provider. Resolves to how many were checked (0:
 * no data key yet); CmkMismatchError when one does not decrypt.
 */
export async function proveCapsuleCmk(
  client: MongoClient,
  record: CapsuleRecord,
  { unwrap, keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE, limit }: { unwrap: Unwrapper; keyVaultNamespace?: string; limit?: number },
): Promise<{ checked: number; providers: string[] }> {
  const keys = await capsuleKeys(record, unwrap);
  try {
    const encryption = new ClientEncryption(client, { keyVaultNamespace, kmsProviders: keys.kmsProviders });
    return { checked: await verifyProviders(encryption, client, keyVaultNamespace, record, limit), providers: Object.keys(keys.kmsProviders) };
  } finally {
    keys.wipe();
  }
}

async function proveKeys(client: MongoClient, record: CapsuleRecord, keys: CapsuleKeys, keyVaultNamespace: string, onProgress?: (m: string) => void): Promise<void> {
  const encryption = new ClientEncryption(client, { keyVaultNamespace, kmsProviders: keys.kmsProviders });
  const n = await verifyProviders(encryption, client, keyVaultNamespace, record);
  onProgress?.(n === 0 ? `capsule ${record.name} has no data key yet (nothing to check against its CMK)` : `the CMK of capsule ${record.name} opens its ${n} data key(s)`);
}

/** verifyDataKeys for the live provider and, during a rotation, the pending one. */
async function verifyProviders(encryption: ClientEncryption, client: MongoClient, keyVaultNamespace: string, record: CapsuleRecord, limit?: number): Promise<number> {
  const lim = limit === undefined ? {} : { limit };
  let n = await verifyDataKeys(encryption, client, { keyVaultNamespace, provider: record.kmsProvider, capsuleName: record.name, ...lim });
  if (record.pendingRotation) n += await verifyDataKeys(encryption, client, { keyVaultNamespace, provider: record.pendingRotation.toProvider, capsuleName: record.name, ...lim });
  return n;
}

/**
 * An error after the rotation was recorded. Failures of the server or the network say that the rotation started
 * and that a rerun finishes it; every other typed error (wrong key, signature, key vault mismatch) stays as it
 * is, because rerunning would not help.
 */
const TRANSIENT = new Set(['MONGO_UNREACHABLE', 'MONGO_COMMAND', 'MONGO_AUTH', 'TIMEOUT']);
function incomplete(e: unknown, capsuleName: string, id: string): Error {
  if (isMongoCapsuleError(e) && !TRANSIENT.has(e.code)) return e;
  const cause = isMongoCapsuleError(e) ? e.message : e instanceof Error ? e.message : String(e);
  return new RotationIncompleteError(`capsule ${capsuleName}: the CMK rotation ${id} started but did not finish: ${cause}`, { cause: e });
}

export type AbandonCmkRotationOptions = Pick<RotateCmkOptions, 'uri' | 'capsuleName' | 'unwrap' | 'keyVaultNamespace' | 'capsuleNamespace' | 'serverSelectionTimeoutMS' | 'onProgress'> & {
  /** Test hook: called after the keys moved back, before pendingRotation is removed; throwing simulates a crash. */
  afterRewrap?: () => void | Promise<void>;
  /**
   * Abandon a rotation that revokes a recipient (keys revoke). Refused without it: the live CMK stays, which the
   * revoked key holds, and the data keys made for the revocation move back under it.
   */
  undoRevocation?: boolean;
};

export interface AbandonCmkRotationResult {
  capsuleName: string;
  /** False when no rotation was pending (nothing to do). */
  abandoned: boolean;
  /** The abandoned rotation's id. */
  rotationId?: string;
  /** Data keys moved back to the live provider. */
  movedBack: number;
  kmsProvider: string;
  generation: number;
}

/**
 * Undoes the pending CMK rotation of capsule `capsuleName` (see the top of this file); the live CMK stays.
 * @example
 * await abandonCmkRotation({ uri, capsuleName: 'default', unwrap: (c) => km.unwrap(c) });
 */
export async function abandonCmkRotation(options: AbandonCmkRotationOptions): Promise<AbandonCmkRotationResult> {
  requireCsfle('abandonCmkRotation');
  const {
    uri,
    capsuleName = DEFAULT_CAPSULE_NAME,
    keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE,
    capsuleNamespace,
    serverSelectionTimeoutMS = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    onProgress,
    afterRewrap,
  } = options;
  const unwrap = toUnwrapFn(options.unwrap);
  const client = await connect(uri, { serverSelectionTimeoutMS, purpose: 'connecting to abandon the CMK rotation' });
  try {
    const store = new CapsuleStore(client, capsuleNamespace === undefined ? {} : { namespace: capsuleNamespace });
    const record = await store.load(capsuleName);
    const pending = record.pendingRotation;
    if (pending === null) {
      onProgress?.(`capsule ${capsuleName}: no CMK rotation is pending; nothing to abandon`);
      return { capsuleName, abandoned: false, movedBack: 0, kmsProvider: record.kmsProvider, generation: record.generation };
    }
    if (pending.revokedKid !== null && options.undoRevocation !== true) {
      throw new CapsuleConflictError(
        `capsule ${capsuleName}: the pending CMK rotation ${pending.id} revokes ${pending.revokedKid}; abandoning it would keep the live CMK, which that key holds, so nothing was changed`,
        { hint: `finish the revocation instead: \`mongo-capsule keys revoke --kid ${pending.revokedKid} --capsule ${capsuleName}\` resumes it; to undo it anyway, add --undo-revocation` },
      );
    }
    let keys: CapsuleKeys | undefined;
    try {
      keys = await capsuleKeys(record, unwrap);
      const encryption = new ClientEncryption(client, { keyVaultNamespace, kmsProviders: keys.kmsProviders });
      onProgress?.(`abandoning CMK rotation ${pending.id}: data keys move back ${pending.toProvider} → ${record.kmsProvider}`);
      let movedBack = await rewrapAll(encryption, client, keyVaultNamespace, pending.toProvider, record.kmsProvider, capsuleName);
      await afterRewrap?.();
      if (!(await store.abandonRotation(capsuleName, record.sha256, pending.id))) {
        throw new CapsuleConflictError(`capsule ${capsuleName} changed while its CMK rotation ${pending.id} was being abandoned (finished or abandoned by another run)`, {
          hint: '`mongo-capsule doctor` shows the capsule as it is now',
        });
      }
      // A client that loaded the next CMK may have created a key under it meanwhile; both CMKs are still in memory.
      movedBack += await rewrapAll(encryption, client, keyVaultNamespace, pending.toProvider, record.kmsProvider, capsuleName);
      onProgress?.(`capsule ${capsuleName}: CMK rotation ${pending.id} abandoned; ${movedBack} data key(s) moved back; the CMK is unchanged`);
      return { capsuleName, abandoned: true, rotationId: pending.id, movedBack, kmsProvider: record.kmsProvider, generation: record.generation };
    } finally {
      keys?.wipe();
    }
  } finally {
    await client.close().catch(() => {});
  }
}

/**
 * Refuses a KEM-key rotation over `store` while one of its capsules sealed for `kids` has a CMK rotation
 * pending: the store's compare-and-swap refuses such a capsule, so the key rotation would only retry until it
 * gives up. Says which capsule and the command that finishes (or undoes) its CMK rotation.
 */
export async function assertNoPendingCmkRotation(store: CapsuleStore, kids: readonly string[]): Promise<void> {
  const pending = (await store.list()).filter((r) => r.pendingRotation !== null && r.recipients.some((e) => kids.includes(e.header.kid)));
  if (pending.length === 0) return;
  const names = pending.map((r) => r.name);
  throw new CapsuleConflictError(
    `a CMK rotation is pending on capsule(s) ${names.join(', ')} in ${store.namespace}; the KEM-key rotation would wait for it, so nothing was changed`,
    {
      hint: `finish it first with ${names.map((n) => `\`mongo-capsule rotate-cmk --capsule ${n}${store.namespace === DEFAULT_CAPSULE_NAMESPACE ? '' : ` --capsules ${store.namespace}`}\``).join(', ')} (or undo it with \`rotate-cmk --abandon\`), then run keys rotate again`,
    },
  );
}
