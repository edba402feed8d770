/**
 * The capsules of a cluster: one live capsule per name in `encryption.capsules` (configurable), plus the
 * metadata of every version that was ever live in `<collection>.history`.
 *
 * Document (one per capsule name):
 *   name, version, suite, kid, signerKid, createdAt   header fields, queryable; must agree with `bytes`
 *   bytes        BinData 0: the canonical capsule encoding (what the crypto layer parses and authenticates)
 *   sha256       hex digest of `bytes`: the compare-and-swap token
 *   generation   1 for the seeded capsule, +1 for every swap
 *   kmsProvider  name of the CSFLE local KMS provider whose key the capsule holds (see kmsProviderName)
 *   storedAt     when this version became live
 *   pendingRotation  present only while a CMK rotation is under way (see rotation.ts)
 *   publicIdentity, recipientTag   the `.pub.json` text of the recipient `bytes` is sealed for, and its recipient
 *                tag (crypto/recipients.ts); absent on capsules stored before recipient lists
 *   recipients   further recipients of the same CMK: [{ kid, bytes, sha256, publicIdentity, tag }], each `bytes`
 *                a capsule of the same name sealed for that kid (absent or empty: one recipient)
 *   dataKeyEpoch which data keys new values are encrypted with (absent: 0); a revocation raises it, in the same
 *                update that announces the next CMK, so writes after it use data keys the revoked key never saw
 *                (key-vault.ts names them)
 *
 * Invariants:
 * - A unique index on `name`: seeding is insert-if-absent, so concurrent seeders end with exactly one capsule.
 * - A capsule is replaced only by compare-and-swap on its digest, and never while a CMK rotation is pending
 *   (the check and the swap are one single-document update, so they cannot interleave).
 * - History keeps metadata only, never old capsule bytes: after a KEM-key rotation an old capsule would still
 *   open with the retired (perhaps compromised) key.
 */
import { createHash } from 'node:crypto';
import { Binary, MongoServerError, type Collection, type Document, MongoClient, type UpdateFilter } from 'mongodb';
import { capsuleFromDocument, capsuleToDocument, parseCapsule, type CapsuleHeader } from '../crypto/index.ts';
import { CapsuleConflictError, CapsuleFormatError, CapsuleNotFoundError, InvalidArgumentError } from '../errors.ts';
import type { CapsuleRepository, RecipientBinding, StoredCapsule } from '../keys/capsule-repository.ts';
import { DURABLE, mongoError, parseNamespace } from './connection.ts';

export const DEFAULT_CAPSULE_NAMESPACE = 'encryption.capsules';
/**
 * The named local KMS provider of a capsule generation: `local:g<generation>_<capsule name>`, with every
 * character outside [A-Za-z0-9] of the name escaped ('_' → '__', others → '_<hex>'), so distinct capsules never
 * share a provider name. Why not plain `local` → `local:<n>`: data keys record only their provider name, so
 * when several capsules (several CMKs) share one key vault, `rewrapManyDataKey` selecting by provider would
 * try to open other capsules' keys with the wrong CMK (HMAC failure) and a rotation could not finish.
 */
export function kmsProviderName(capsuleName: string, generation: number): string {
  const escaped = capsuleName.replace(/[^A-Za-z0-9]/g, (c) => (c === '_' ? '__' : `_${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
  return `local:g${generation}_${escaped}`;
}

const DUPLICATE_KEY = 11000;
/** Fields of a stored document that are ours, not the capsule's (allowed by capsuleFromDocument). */
const BOOKKEEPING_FIELDS = ['_id', 'sha256', 'generation', 'kmsProvider', 'storedAt', 'pendingRotation', 'publicIdentity', 'recipientTag', 'recipients', 'recipientsDigest', 'dataKeyEpoch'] as const;
const RECIPIENT_FIELDS = ['kid', 'bytes', 'sha256', 'publicIdentity', 'tag'];

/** A CMK rotation in progress, kept inside the capsule document so it changes atomically with it. */
export interface PendingRotation {
  /** Random id of this rotation attempt. */
  id: string;
  /** Provider the data keys are being moved to. */
  toProvider: string;
  /** The next capsule (the new CMK, sealed for the same recipient); it becomes live at the end. */
  next: Uint8Array;
  startedAt: Date;
  /** 'prepared' → 'rewrapped'; the swap removes the field. */
  phase: 'prepared' | 'rewrapped';
  /**
   * The next CMK sealed for every recipient, `[0]` being `next` (with its binding); empty for a rotation started
   * before recipient lists, which seals for the `next` recipient only.
   */
  recipients: SealedRecipient[];
  /** The recipient this rotation removes (keys revoke), if any: it is gone from the live list already. */
  revokedKid: string | null;
  /**
   * The revoked recipient's entry as it was on the live list (set by beginRotation), so that abandoning the
   * revocation puts it back: the revoked key still holds the live CMK then, and the list must say so.
   */
  revokedEntry?: SealedRecipient | null;
}

/** A capsule sealed for one recipient, with what binds that recipient to the CMK (crypto/recipients.ts). */
export interface SealedRecipient {
  bytes: Uint8Array;
  /** The `.pub.json` text of the recipient; null on a capsule stored before recipient lists. */
  publicIdentity: string | null;
  tag: Uint8Array | null;
}

/** One recipient of a live capsule. */
export interface RecipientEntry extends SealedRecipient {
  header: CapsuleHeader;
  sha256: string;
}

export interface CapsuleRecord extends StoredCapsule {
  header: CapsuleHeader;
  sha256: string;
  generation: number;
  kmsProvider: string;
  storedAt: Date;
  pendingRotation: PendingRotation | null;
  /** Every recipient of the CMK: `[0]` is the one `bytes` is sealed for, then the others (keys grant). */
  recipients: RecipientEntry[];
  /** @internal The stored digest of the further recipients' list (its compare-and-swap token); null when absent. */
  recipientsDigest: string | null;
  /** The data-key epoch: 0 until the first revocation, +1 for each (see key-vault.ts, epochAltName). */
  dataKeyEpoch: number;
}

export interface CapsuleHistoryEntry {
  name: string;
  generation: number;
  sha256: string;
  kid: string;
  suite: string;
  signerKid: string | null;
  createdAt: Date;
  kmsProvider: string;
  storedAt: Date;
  /** When a newer version replaced it; null for the live version. */
  replacedAt: Date | null;
  /** Why it was replaced ('cmk-rotation', 'kem-rotation', …); null for the live version. */
  replacedBy: string | null;
}

export interface CapsuleStoreOptions {
  /** "database.collection" (default encryption.capsules); history goes to "<collection>.history". */
  namespace?: string;
}

export interface SeedResult {
  /** True when this call stored the capsule; false when one with that name already existed. */
  created: boolean;
  /** The live capsule after the call: ours when created, otherwise the one that was already there. */
  record: CapsuleRecord;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function toBytes(b: unknown): Uint8Array {
  if (b instanceof Binary) return new Uint8Array(b.value());
  if (b instanceof Uint8Array) return Uint8Array.from(b);
  throw new CapsuleFormatError('stored capsule field is not binary');
}

/** `srv:<host>` or the sorted seed list, plus `/<replicaSet>`: never a user name or password. */
export function clusterLocator(client: MongoClient): string {
  const o = client.options as { srvHost?: string; hosts?: { toString(): string }[]; replicaSet?: string };
  const where = o.srvHost ? `srv:${o.srvHost.toLowerCase()}` : (o.hosts ?? []).map((h) => String(h).toLowerCase()).sort().join(',');
  return `${where}/${o.replicaSet ?? ''}`;
}

/** The locator of the cluster a connection string names, without connecting. */
export function clusterLocatorOf(uri: string): string {
  return clusterLocator(new MongoClient(uri));
}

export class CapsuleStore implements CapsuleRepository {
  readonly namespace: string;
  readonly description: string;
  /**
   * Which cluster this is, without credentials: the seed list (or SRV host) and the replica set name. Keys the
   * local replay marks (capsule-watermarks.ts).
   */
  readonly locator: string;
  readonly #capsules: Collection;
  readonly #history: Collection;
  #indexes: Promise<void> | undefined;

  constructor(client: MongoClient, options: CapsuleStoreOptions = {}) {
    this.namespace = options.namespace ?? DEFAULT_CAPSULE_NAMESPACE;
    this.locator = clusterLocator(client);
    const { db, collection } = parseNamespace(this.namespace, 'CapsuleStore');
    // The capsule is the only copy of the CMK: read it from the primary, and count a write only once a majority
    // has it, so that a failover can neither roll a capsule back nor show a stale one, whatever read and write
    // settings the connection string carries.
    const database = client.db(db, DURABLE);
    this.#capsules = database.collection(collection);
    this.#history = database.collection(`${collection}.history`);
    this.description = `capsules in ${this.namespace}`;
  }

  /** Creates the indexes (idempotent; once per store instance). */
  ensureIndexes(): Promise<void> {
    this.#indexes ??= (async () => {
      try {
        await this.#capsules.createIndex({ name: 1 }, { unique: true, name: 'name_unique' });
        await this.#history.createIndex({ name: 1, sha256: 1 }, { unique: true, name: 'name_sha256_unique' });
      } catch (e) {
        this.#indexes = undefined;
        throw mongoError(e, `creating the indexes of ${this.namespace}`);
      }
    })();
    return this.#indexes;
  }

  /**
   * Stores `bytes` as capsule `header.name` unless a capsule with that name exists (insert-if-absent).
   * Concurrent calls for one name: exactly one is created, every caller gets the same live record.
   */
  async seed(bytes: Uint8Array, recipients: { binding?: RecipientBinding; others?: readonly SealedRecipient[] } = {}): Promise<SeedResult> {
    const doc = capsuleToDocument(bytes); // parses: malformed bytes never reach the database
    const kmsProvider = kmsProviderName(doc.name, 1);
    const others = (recipients.others ?? []).map((r) => recipientDocument(doc.name, r));
    const kids = new Set([doc.kid]);
    for (const o of others) {
      if (kids.has(o.kid)) throw new InvalidArgumentError(`seed: capsule ${doc.name} names recipient ${o.kid} twice`);
      kids.add(o.kid);
    }
    await this.ensureIndexes();
    const now = new Date();
    const stored = {
      ...doc,
      bytes: new Binary(doc.bytes),
      sha256: sha256Hex(doc.bytes),
      generation: 1,
      kmsProvider,
      storedAt: now,
      ...bindingFields(recipients.binding),
      ...(others.length > 0 ? { recipients: others, recipientsDigest: listDigest(others) } : {}),
    };
    try {
      await this.#capsules.insertOne(stored);
      await this.#recordHistory(stored.name, this.#historyEntry(stored, 1));
      return { created: true, record: await this.load(doc.name) };
    } catch (e) {
      if (!(e instanceof MongoServerError && e.code === DUPLICATE_KEY)) throw mongoError(e, `seeding capsule ${doc.name}`);
    }
    return { created: false, record: await this.load(doc.name) };
  }

  /** The live capsule, or null. */
  async find(name: string): Promise<CapsuleRecord | null> {
    checkName('load', name);
    let doc: Document | null;
    try {
      doc = await this.#capsules.findOne({ name });
    } catch (e) {
      throw mongoError(e, `loading capsule ${name}`);
    }
    return doc === null ? null : this.#toRecord(doc);
  }

  /** The live capsule; CapsuleNotFoundError when there is none. */
  async load(name: string): Promise<CapsuleRecord> {
    const record = await this.find(name);
    if (record === null) throw new CapsuleNotFoundError(name, this.namespace);
    return record;
  }

  /** Every live capsule (CapsuleRepository). */
  async list(): Promise<CapsuleRecord[]> {
    try {
      const docs = await this.#capsules.find({}).sort({ name: 1 }).toArray();
      return docs.map((d) => this.#toRecord(d));
    } catch (e) {
      throw mongoError(e, `listing ${this.namespace}`);
    }
  }

  /** Every version of capsule `name` that was ever live, oldest first (metadata only). */
  async history(name: string): Promise<CapsuleHistoryEntry[]> {
    checkName('history', name);
    try {
      const docs = await this.#history.find({ name }).sort({ generation: 1, storedAt: 1 }).toArray();
      return docs.map((d) => ({
        name: String(d.name),
        generation: Number(d.generation),
        sha256: String(d.sha256),
        kid: String(d.kid),
        suite: String(d.suite),
        signerKid: (d.signerKid as string | null) ?? null,
        createdAt: d.createdAt as Date,
        kmsProvider: String(d.kmsProvider),
        storedAt: d.storedAt as Date,
        replacedAt: (d.replacedAt as Date | null) ?? null,
        replacedBy: (d.replacedBy as string | null) ?? null,
      }));
    } catch (e) {
      throw mongoError(e, `reading the history of capsule ${name}`);
    }
  }

  /**
   * CapsuleRepository: replace capsule `name` with `next` iff its stored bytes still equal `expected` and no
   * CMK rotation is pending. Resolves false (and changes nothing) otherwise. `next` must seal the same CMK
   * (KEM-key rotation): the KMS provider name is kept.
   */
  async compareAndSwap(name: string, expected: Uint8Array, next: Uint8Array): Promise<boolean> {
    return this.swap(name, expected, next, { reason: 'kem-rotation' });
  }

  /** Like compareAndSwap, throwing CapsuleConflictError instead of resolving false. */
  async replace(name: string, expected: Uint8Array, next: Uint8Array, options: { reason: string; binding?: RecipientBinding; recipients?: readonly SealedRecipient[] }): Promise<void> {
    if (!(await this.swap(name, expected, next, options))) {
      throw new CapsuleConflictError(`capsule ${name} changed since it was read, or a CMK rotation is pending; nothing was replaced`);
    }
  }

  /** @internal The compare-and-swap behind compareAndSwap/replace and the last step of a CMK rotation. */
  async swap(
    name: string,
    expected: Uint8Array,
    next: Uint8Array,
    {
      reason,
      kmsProvider,
      pendingRotationId,
      binding,
      recipients,
    }: { reason: string; kmsProvider?: string; pendingRotationId?: string; binding?: RecipientBinding; recipients?: readonly SealedRecipient[] },
  ): Promise<boolean> {
    checkName('compareAndSwap', name);
    const doc = capsuleToDocument(next);
    if (doc.name !== name) throw new InvalidArgumentError(`compareAndSwap: the new capsule is named ${JSON.stringify(doc.name)}, not ${JSON.stringify(name)}`);
    const expectedSha = sha256Hex(expected);
    const nextSha = sha256Hex(doc.bytes);
    const current = await this.find(name);
    if (current === null || current.sha256 !== expectedSha) return false;
    if (nextSha === expectedSha && pendingRotationId === undefined) return true;
    // A KEM-key swap must not race a CMK rotation; a rotation's own swap names its id.
    const pendingFilter = pendingRotationId === undefined ? { pendingRotation: { $exists: false } } : { 'pendingRotation.id': pendingRotationId };
    const now = new Date();
    // Record the outgoing version first: a crash right after leaves history naming a version that is still
    // live, which history() shows correctly (replacedAt set later is the only difference).
    const h = current.header;
    await this.#recordHistory(
      name,
      this.#historyEntry({ name, sha256: current.sha256, kid: h.kid, suite: h.suite, signerKid: h.signerKid, createdAt: h.createdAt, kmsProvider: current.kmsProvider, storedAt: current.storedAt }, current.generation),
    );
    let matched: number;
    try {
      const r = await this.#capsules.updateOne(
        { name, sha256: expectedSha, ...pendingFilter },
        {
          $set: {
            ...doc,
            bytes: new Binary(doc.bytes),
            sha256: nextSha,
            generation: current.generation + 1,
            kmsProvider: kmsProvider ?? current.kmsProvider,
            storedAt: now,
            ...(binding === undefined ? {} : bindingFields(binding)),
            ...(recipients === undefined ? {} : listFields(recipients.map((r) => recipientDocument(name, r)))),
          },
          $unset: { pendingRotation: '', ...(binding === undefined ? { publicIdentity: '', recipientTag: '' } : {}) },
        },
      );
      matched = r.matchedCount;
    } catch (e) {
      throw mongoError(e, `replacing capsule ${name}`);
    }
    if (matched !== 1) return false;
    await this.#markReplaced(name, expectedSha, now, reason);
    await this.#recordHistory(name, this.#historyEntry({ ...doc, sha256: nextSha, kmsProvider: kmsProvider ?? current.kmsProvider, storedAt: now }, current.generation + 1));
    return true;
  }

  /** @internal Starts a CMK rotation: attaches `pending` iff the capsule is still `expectedSha` with none pending. */
  async beginRotation(name: string, expectedSha: string, pending: PendingRotation): Promise<boolean> {
    const stored: Document = {
      id: pending.id,
      toProvider: pending.toProvider,
      next: new Binary(pending.next),
      startedAt: pending.startedAt,
      phase: pending.phase,
      recipients: pending.recipients.map((r) => recipientDocument(name, r)),
      revokedKid: pending.revokedKid,
    };
    let filter: Document = { name, sha256: expectedSha, pendingRotation: { $exists: false } };
    const set: Document = { pendingRotation: stored };
    // Revoking also raises the data-key epoch in this same update: from the moment the revocation is recorded,
    // new values get data keys made under the next CMK, which the revoked key never held.
    const inc: Document = pending.revokedKid === null ? {} : { $inc: { dataKeyEpoch: 1 } };
    if (pending.revokedKid !== null) {
      // Revoking: the recipient leaves the live list in the same update that announces the next CMK, so no state
      // exists in which the rotation is pending and the revoked key still opens the live capsule. (The first
      // recipient, whose capsule is `bytes`, leaves at the swap: it holds only the live CMK meanwhile.)
      const current = await this.find(name);
      if (current === null || current.sha256 !== expectedSha) return false;
      const others = current.recipients.slice(1);
      const revoked = others.find((e) => e.header.kid === pending.revokedKid);
      if (revoked !== undefined) {
        stored.revokedEntry = recipientDocument(name, revoked);
        filter = { ...filter, ...sameRecipients(current) };
        Object.assign(set, listFields(others.filter((e) => e.header.kid !== pending.revokedKid).map((e) => recipientDocument(name, e))));
      }
    }
    try {
      const r = await this.#capsules.updateOne(filter, { $set: set, ...inc });
      return r.matchedCount === 1;
    } catch (e) {
      throw mongoError(e, `starting the CMK rotation of capsule ${name}`);
    }
  }

  /** @internal Advances the phase of a pending rotation (no-op when it is no longer pending). */
  async setRotationPhase(name: string, id: string, phase: PendingRotation['phase']): Promise<void> {
    try {
      await this.#capsules.updateOne({ name, 'pendingRotation.id': id }, { $set: { 'pendingRotation.phase': phase } });
    } catch (e) {
      throw mongoError(e, `recording the CMK rotation of capsule ${name}`);
    }
  }

  #historyEntry(r: { name: string; sha256: string; kid: string; suite: string; signerKid: string | null; createdAt: Date; kmsProvider: string; storedAt: Date }, generation: number): Document {
    return {
      name: r.name,
      generation,
      sha256: r.sha256,
      kid: r.kid,
      suite: r.suite,
      signerKid: r.signerKid,
      createdAt: r.createdAt,
      kmsProvider: r.kmsProvider,
      storedAt: r.storedAt,
      replacedAt: null,
      replacedBy: null,
    };
  }

  async #recordHistory(name: string, entry: Document): Promise<void> {
    try {
      await this.#history.updateOne({ name, sha256: entry.sha256 }, { $setOnInsert: entry }, { upsert: true });
    } catch (e) {
      // Two writers recording the same version concurrently: the unique index keeps one, which is the point.
      if (!(e instanceof MongoServerError && e.code === DUPLICATE_KEY)) throw mongoError(e, `recording the history of capsule ${name}`);
    }
  }

  async #markReplaced(name: string, sha256: string, at: Date, reason: string): Promise<void> {
    try {
      await this.#history.updateOne({ name, sha256 }, { $set: { replacedAt: at, replacedBy: reason } });
    } catch (e) {
      throw mongoError(e, `recording the history of capsule ${name}`);
    }
  }

  #toRecord(doc: Document): CapsuleRecord {
    const bytes = capsuleFromDocument(
      {
        name: doc.name,
        version: doc.version,
        suite: doc.suite,
        kid: doc.kid,
        signerKid: doc.signerKid,
        createdAt: doc.createdAt,
        bytes: toBytes(doc.bytes),
      },
      [],
    );
    for (const k of Object.keys(doc)) {
      if (!(['name', 'version', 'suite', 'kid', 'signerKid', 'createdAt', 'bytes', ...BOOKKEEPING_FIELDS] as string[]).includes(k)) {
        throw new CapsuleFormatError(`capsule document ${String(doc.name)} in ${this.namespace} has an unexpected field ${k}`);
      }
    }
    const sha = sha256Hex(bytes);
    if (doc.sha256 !== sha) throw new CapsuleFormatError(`capsule document ${String(doc.name)} in ${this.namespace}: sha256 does not match its bytes`);
    const p = doc.pendingRotation as Document | undefined;
    const name = String(doc.name);
    const header = parseCapsule(bytes).header;
    const primary: RecipientEntry = { bytes, header, sha256: sha, ...this.#binding(name, doc.publicIdentity, doc.recipientTag) };
    const others = this.#recipientList(name, doc.recipients).map((r) => this.#entry(name, r));
    const kids = new Set([header.kid]);
    for (const o of others) {
      if (kids.has(o.header.kid)) throw new CapsuleFormatError(`capsule document ${name} in ${this.namespace} names recipient ${o.header.kid} twice`);
      kids.add(o.header.kid);
    }
    return {
      name,
      bytes,
      header,
      sha256: sha,
      generation: Number(doc.generation),
      kmsProvider: String(doc.kmsProvider),
      storedAt: doc.storedAt as Date,
      recipients: [primary, ...others],
      recipientsDigest: typeof doc.recipientsDigest === 'string' ? doc.recipientsDigest : null,
      dataKeyEpoch: dataKeyEpochOf(name, this.namespace, doc.dataKeyEpoch),
      pendingRotation:
        p === undefined || p === null
          ? null
          : {
              id: String(p.id),
              toProvider: String(p.toProvider),
              next: toBytes(p.next),
              startedAt: p.startedAt as Date,
              phase: p.phase as PendingRotation['phase'],
              recipients: this.#recipientList(name, p.recipients).map((r) => {
                const e = this.#entry(name, r);
                return { bytes: e.bytes, publicIdentity: e.publicIdentity, tag: e.tag };
              }),
              revokedKid: typeof p.revokedKid === 'string' ? p.revokedKid : null,
              revokedEntry: p.revokedEntry === undefined || p.revokedEntry === null ? null : (({ bytes, publicIdentity, tag }) => ({ bytes, publicIdentity, tag }))(this.#entry(name, p.revokedEntry as Document)),
            },
    };
  }

  #recipientList(name: string, list: unknown): Document[] {
    if (list === undefined || list === null) return [];
    if (!Array.isArray(list)) throw new CapsuleFormatError(`capsule document ${name} in ${this.namespace}: recipients is not a list`);
    return list as Document[];
  }

  #binding(name: string, publicIdentity: unknown, tag: unknown): Pick<SealedRecipient, 'publicIdentity' | 'tag'> {
    if (publicIdentity === undefined || publicIdentity === null) return { publicIdentity: null, tag: null };
    if (typeof publicIdentity !== 'string') throw new CapsuleFormatError(`capsule document ${name} in ${this.namespace}: a recipient's public identity is not text`);
    return { publicIdentity, tag: tag === undefined || tag === null ? null : toBytes(tag) };
  }

  #entry(name: string, r: Document): RecipientEntry {
    if (r === null || typeof r !== 'object') throw new CapsuleFormatError(`capsule document ${name} in ${this.namespace}: a recipient entry is not a document`);
    for (const k of Object.keys(r)) {
      if (!RECIPIENT_FIELDS.includes(k)) throw new CapsuleFormatError(`capsule document ${name} in ${this.namespace}: a recipient entry has an unexpected field ${k}`);
    }
    const bytes = toBytes(r.bytes);
    const header = parseCapsule(bytes).header;
    if (header.name !== name) throw new CapsuleFormatError(`capsule document ${name} in ${this.namespace}: a recipient entry holds a capsule named ${JSON.stringify(header.name)}`);
    if (r.kid !== header.kid) throw new CapsuleFormatError(`capsule document ${name} in ${this.namespace}: a recipient entry says kid ${String(r.kid)} but its capsule is sealed for ${header.kid}`);
    const sha = sha256Hex(bytes);
    if (r.sha256 !== sha) throw new CapsuleFormatError(`capsule document ${name} in ${this.namespace}: a recipient entry's sha256 does not match its bytes`);
    return { bytes, header, sha256: sha, ...this.#binding(name, r.publicIdentity, r.tag) };
  }

  /**
   * Adds a recipient (keys grant): `entry` seals the live CMK for another key. Applied only while the capsule is
   * still `expectedSha` with no CMK rotation pending and that key is not a recipient yet; false otherwise.
   */
  async addRecipient(name: string, expectedSha: string, entry: SealedRecipient): Promise<boolean> {
    checkName('addRecipient', name);
    const d = recipientDocument(name, entry);
    const current = await this.find(name);
    if (current === null || current.sha256 !== expectedSha || current.pendingRotation !== null) return false;
    if (current.recipients.some((e) => e.header.kid === d.kid)) return false;
    const list = [...current.recipients.slice(1).map((e) => recipientDocument(name, e)), d];
    try {
      const r = await this.#capsules.updateOne({ name, sha256: expectedSha, pendingRotation: { $exists: false }, ...sameRecipients(current) }, { $set: listFields(list) });
      return r.matchedCount === 1;
    } catch (e) {
      throw mongoError(e, `adding a recipient to capsule ${name}`);
    }
  }

  /**
   * Replaces one further recipient's capsule (a KEM-key rotation of that recipient) iff it is still `expected`
   * and no CMK rotation is pending; false otherwise.
   */
  async replaceRecipient(name: string, expected: Uint8Array, next: Uint8Array, binding: RecipientBinding | undefined): Promise<boolean> {
    checkName('replaceRecipient', name);
    const replacement = { bytes: next, publicIdentity: binding?.publicIdentity ?? null, tag: binding?.tag ?? null };
    const expectedSha = sha256Hex(expected);
    const current = await this.find(name);
    if (current === null || current.pendingRotation !== null) return false;
    const others = current.recipients.slice(1);
    if (!others.some((e) => e.sha256 === expectedSha)) return false;
    const list = others.map((e) => recipientDocument(name, e.sha256 === expectedSha ? replacement : e));
    try {
      // Compare-and-swap on the whole list, so a concurrent grant is never lost.
      const r = await this.#capsules.updateOne({ name, sha256: current.sha256, pendingRotation: { $exists: false }, ...sameRecipients(current) }, { $set: listFields(list) });
      return r.matchedCount === 1;
    } catch (e) {
      throw mongoError(e, `replacing a recipient of capsule ${name}`);
    }
  }

  /**
   * The store as KEM-key rotation sees it: every recipient's capsule is one stored capsule, so rotating the key
   * of any recipient re-seals that recipient's entry and leaves the others alone.
   */
  recipientView(): CapsuleRepository {
    return {
      description: this.description,
      list: async () => (await this.list()).flatMap((r) => r.recipients.map((e) => ({ name: r.name, bytes: e.bytes }))),
      compareAndSwap: async (name, expected, next, binding) => {
        const current = await this.find(name);
        if (current === null) return false;
        if (current.sha256 === sha256Hex(expected)) return this.swap(name, expected, next, { reason: 'kem-rotation', ...(binding === undefined ? {} : { binding }) });
        return this.replaceRecipient(name, expected, next, binding);
      },
    };
  }

  /**
   * @internal Abandons a CMK rotation: removes `pendingRotation` iff it is still rotation `id` on capsule
   * `expectedSha`; a revocation's removed recipient goes back on the list in the same update.
   */
  async abandonRotation(name: string, expectedSha: string, id: string): Promise<boolean> {
    const current = await this.find(name);
    if (current === null || current.sha256 !== expectedSha || current.pendingRotation?.id !== id) return false;
    const back = current.pendingRotation.revokedEntry;
    const others = current.recipients.slice(1);
    const restore = back === undefined || back === null || others.some((e) => e.header.kid === parseCapsule(back.bytes).header.kid) ? null : back;
    try {
      const r = await this.#capsules.updateOne(
        { name, sha256: expectedSha, 'pendingRotation.id': id, ...(restore === null ? {} : sameRecipients(current)) },
        { $unset: { pendingRotation: '' }, ...(restore === null ? {} : { $set: listFields([...others, restore].map((e) => recipientDocument(name, e))) }) },
      );
      return r.matchedCount === 1;
    } catch (e) {
      throw mongoError(e, `abandoning the CMK rotation of capsule ${name}`);
    }
  }
}

/**
 * A filter matching a capsule document whose further recipients are still those of `record`: every writer of
 * the list stores its digest beside it (`recipientsDigest`), the compare-and-swap token of the list.
 */
function sameRecipients(record: Pick<CapsuleRecord, 'recipientsDigest'>): Document {
  return record.recipientsDigest === null ? { recipientsDigest: { $exists: false } } : { recipientsDigest: record.recipientsDigest };
}

/** The list of further recipients and its digest, as stored. */
function listFields(list: Document[]): Document {
  return { recipients: list, recipientsDigest: listDigest(list) };
}

function listDigest(list: readonly Document[]): string {
  return sha256Hex(new TextEncoder().encode(`recipients\0${list.map((d) => String(d.sha256)).join(',')}`));
}

/** The stored form of a further recipient (the kid repeated, so that updates can select by it). */
function recipientDocument(name: string, r: SealedRecipient): Document {
  const header = parseCapsule(r.bytes).header;
  if (header.name !== name) throw new InvalidArgumentError(`a recipient capsule is named ${JSON.stringify(header.name)}, not ${JSON.stringify(name)}`);
  return {
    kid: header.kid,
    bytes: new Binary(r.bytes),
    sha256: sha256Hex(r.bytes),
    ...(r.publicIdentity === null ? {} : { publicIdentity: r.publicIdentity }),
    ...(r.tag === null ? {} : { tag: new Binary(r.tag) }),
  };
}

function bindingFields(b: RecipientBinding | undefined): Document {
  return b === undefined ? {} : { publicIdentity: b.publicIdentity, recipientTag: new Binary(b.tag) };
}

/** The stored epoch, checked: a whole number ≥ 0 (absent: 0, a capsule no revocation touched). */
function dataKeyEpochOf(name: string, namespace: string, v: unknown): number {
  if (v === undefined || v === null) return 0;
  const n = typeof v === 'number' ? v : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new CapsuleFormatError(`capsule document ${name} in ${namespace}: dataKeyEpoch must be a whole number ≥ 0, not ${JSON.stringify(String(v))}`);
  return n;
}

function checkName(op: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(name)) {
    throw new InvalidArgumentError(`${op}: capsule name must be 1-255 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}
