/**
 * Several recipients per capsule: `grantRecipient` seals the live CMK for one more identity; revoking is a CMK
 * rotation that leaves a recipient out (`rotateCmk({ revokeKid })`, rotation.ts).
 *
 * Every recipient gets its own v1 capsule of the same CMK, stored in the capsule document's `recipients` list
 * with its `.pub.json` text and a recipient tag (crypto/recipients.ts): only a holder of the CMK can add one
 * that a later rotation accepts. Who may grant: anyone who can open the capsule (they hold the CMK already).
 * Who is trusted by an opener: whoever signed its entry, as for any capsule (the granter's public identity must
 * be among the opener's trusted signers).
 */
import { encodePublicIdentity, recipientTag, wrapKey, type PublicIdentity, type SecretIdentity } from '../crypto/index.ts';
import { CapsuleConflictError, CapsuleAuthError, InvalidArgumentError } from '../errors.ts';
import { timingSafeEqual } from 'node:crypto';
import { CapsuleStore } from './capsule-store.ts';
import { connect, DEFAULT_SERVER_SELECTION_TIMEOUT_MS } from './connection.ts';
import { capsuleKeys, DEFAULT_CAPSULE_NAME, toUnwrapFn, type ReplayGuard, type Unwrapper } from './encrypted-client.ts';
import { DEFAULT_KEY_VAULT_NAMESPACE } from './key-vault.ts';
import { proveCapsuleCmk } from './rotation.ts';

export interface GrantRecipientOptions {
  uri: string;
  capsuleName?: string;
  /** The identity that gets access (its public part: a `.pub.json`). */
  recipient: PublicIdentity;
  /** Opens the capsule: the granter is one of its recipients. */
  unwrap: Unwrapper;
  /** Signs the new recipient's capsule (the recipient must trust this signer to open it). Recommended. */
  signer?: Pick<SecretIdentity, 'signer' | 'signerSecretKey'>;
  /**
   * Proves the new entry opens before it is stored: the recipient's own unwrap, when the granter holds that
   * identity too (tests, a machine with both). Optional: without it the entry is proven by construction only.
   */
  recipientUnwrap?: Unwrapper;
  capsuleNamespace?: string;
  keyVaultNamespace?: string;
  serverSelectionTimeoutMS?: number;
  onProgress?: (message: string) => void;
  /**
   * Replay marks (capsule-watermarks.ts): refuse to seal a live capsule older than the newest this machine opened
   * (a retired generation written back) for anyone, and raise the mark to it otherwise. Default: no check.
   */
  replay?: ReplayGuard;
}

export interface GrantRecipientResult {
  capsuleName: string;
  kid: string;
  /** False when the identity already was a recipient (nothing changed). */
  added: boolean;
  recipientKids: string[];
  generation: number;
}

/**
 * Seals the live CMK of capsule `capsuleName` for `recipient` too. Idempotent; refused while a CMK rotation is
 * pending (it would have to seal the next CMK as well: finish the rotation first).
 * @example
 * await grantRecipient({ uri, recipient: decodePublicIdentity(await readFile('bob.pub.json')), unwrap: keys, signer: await keys.getSecretIdentity() });
 */
export async function grantRecipient(options: GrantRecipientOptions): Promise<GrantRecipientResult> {
  const { uri, capsuleName = DEFAULT_CAPSULE_NAME, recipient, signer, capsuleNamespace, keyVaultNamespace = DEFAULT_KEY_VAULT_NAMESPACE, onProgress } = options;
  if (recipient === null || typeof recipient !== 'object' || typeof recipient.kid !== 'string' || recipient.signer === undefined) {
    throw new InvalidArgumentError('grantRecipient: recipient must be a public identity (a decoded .pub.json)');
  }
  const unwrap = toUnwrapFn(options.unwrap);
  const client = await connect(uri, { serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? DEFAULT_SERVER_SELECTION_TIMEOUT_MS, purpose: 'connecting to grant access to the capsule' });
  try {
    const store = new CapsuleStore(client, capsuleNamespace === undefined ? {} : { namespace: capsuleNamespace });
    for (let attempt = 0; attempt < 5; attempt++) {
      const record = await store.load(capsuleName);
      const kids = () => record.recipients.map((e) => e.header.kid);
      if (kids().includes(recipient.kid)) {
        onProgress?.(`capsule ${capsuleName}: key ${recipient.kid} (${recipient.name}) already is a recipient; nothing changed`);
        return { capsuleName, kid: recipient.kid, added: false, recipientKids: kids(), generation: record.generation };
      }
      if (record.pendingRotation !== null) {
        throw new CapsuleConflictError(`capsule ${capsuleName}: a CMK rotation (${record.pendingRotation.id}) is pending; nothing was granted`, {
          hint:
            record.pendingRotation.revokedKid === null
              ? `finish it first with \`mongo-capsule rotate-cmk --capsule ${capsuleName}\` (or undo it with \`--abandon\`), then grant again`
              : `finish the revocation first with \`mongo-capsule keys revoke --kid ${record.pendingRotation.revokedKid} --capsule ${capsuleName}\`, then grant again`,
        });
      }
      // Opening verifies the signature of the granter's own entry; its CMK must also open the capsule's data keys,
      // so that nobody is granted a CMK that was substituted in the database.
      const keys = await capsuleKeys(record, unwrap, options.replay);
      try {
        const { checked } = await proveCapsuleCmk(client, record, { unwrap, keyVaultNamespace, limit: 1 });
        onProgress?.(checked === 0 ? `capsule ${capsuleName} has no data key yet (nothing to check its CMK against)` : `the CMK of capsule ${capsuleName} opens its data keys`);
        const text = encodePublicIdentity(recipient);
        const bytes = wrapKey(keys.cmk, recipient, { name: capsuleName, ...(signer === undefined ? {} : { signer }) });
        if (options.recipientUnwrap !== undefined) {
          const opened = await toUnwrapFn(options.recipientUnwrap)(bytes);
          try {
            if (opened.length !== keys.cmk.length || !timingSafeEqual(opened, keys.cmk)) throw new CapsuleAuthError('the new recipient capsule opens to another key; nothing was granted');
          } finally {
            opened.fill(0);
          }
        }
        if (await store.addRecipient(capsuleName, record.sha256, { bytes, publicIdentity: text, tag: recipientTag(keys.cmk, capsuleName, text) })) {
          const after = await store.load(capsuleName);
          onProgress?.(`capsule ${capsuleName}: sealed for key ${recipient.kid} (${recipient.name}) too`);
          return { capsuleName, kid: recipient.kid, added: true, recipientKids: after.recipients.map((e) => e.header.kid), generation: after.generation };
        }
      } finally {
        keys.wipe();
      }
      // The capsule changed meanwhile (a concurrent grant, a rotation): look again.
    }
    throw new CapsuleConflictError(`capsule ${capsuleName} kept changing while access was being granted; nothing was granted`, {
      hint: 'stop the other writers (rotations, grants) and rerun the same command',
    });
  } finally {
    await client.close().catch(() => {});
  }
}
