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
 *
 * Invariants:
 * - A unique index on `name`: seeding is insert-if-absent, so concurrent seeders end with exactly one capsule.
 * - A capsule is replaced only by compare-and-swap on its digest, and never while a CMK rotation is pending
 *   (the check and the swap are one single-document update, so they cannot interleave).
 * - History keeps metadata only, never old capsule bytes: after a KEM-key rotation an old capsule would still
 *   open with the retired (perhaps compromised) key.
 */
import { createHash } from 'node:crypto';
import { Binary, MongoServerError, type Collection, type Document, MongoClient } from 'mongodb';
import { capsuleFromDocument, capsuleToDocument, parseCapsule, type CapsuleHeader } from '../crypto/index.ts';
import { CapsuleConflictError, CapsuleFormatError, CapsuleNotFoundError, InvalidArgumentError } from '../errors.ts';
import type { CapsuleRepository, StoredCapsule } from '../keys/capsule-repository.ts';
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
const BOOKKEEPING_FIELDS = ['_id', 'sha256', 'generation', 'kmsProvider', 'storedAt', 'pendingRotation'] as const;

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
}

export interface CapsuleRecord extends StoredCapsule {
  header: CapsuleHeader;
  sha256: string;
  generation: number;
  kmsProvider: string;
  storedAt: Date;
  pendingRotation: PendingRotation | null;
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
  async seed(bytes: Uint8Array): Promise<SeedResult> {
    const doc = capsuleToDocument(bytes); // parses: malformed bytes never reach the database
    const kmsProvider = kmsProviderName(doc.name, 1);
    await this.ensureIndexes();
    const now = new Date();
    const stored = {
      ...doc,
      bytes: new Binary(doc.bytes),
      sha256: sha256Hex(doc.bytes),
      generation: 1,
      kmsProvider,
      storedAt: now,
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
  async replace(name: string, expected: Uint8Array, next: Uint8Array, options: { reason: string }): Promise<void> {
    if (!(await this.swap(name, expected, next, options))) {
      throw new CapsuleConflictError(`capsule ${name} changed since it was read, or a CMK rotation is pending; nothing was replaced`);
    }
  }

  /** @internal The compare-and-swap behind compareAndSwap/replace and the last step of a CMK rotation. */
  async swap(
    name: string,
    expected: Uint8Array,
    next: Uint8Array,
    { reason, kmsProvider, pendingRotationId }: { reason: string; kmsProvider?: string; pendingRotationId?: string },
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
          },
          $unset: { pendingRotation: '' },
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
    try {
      const r = await this.#capsules.updateOne(
        { name, sha256: expectedSha, pendingRotation: { $exists: false } },
        { $set: { pendingRotation: { ...pending, next: new Binary(pending.next) } } },
      );
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
    return {
      name: String(doc.name),
      bytes,
      header: parseCapsule(bytes).header,
      sha256: sha,
      generation: Number(doc.generation),
      kmsProvider: String(doc.kmsProvider),
      storedAt: doc.storedAt as Date,
      pendingRotation:
        p === undefined || p === null
          ? null
          : { id: String(p.id), toProvider: String(p.toProvider), next: toBytes(p.next), startedAt: p.startedAt as Date, phase: p.phase as PendingRotation['phase'] },
    };
  }

  /** @internal Abandons a CMK rotation: removes `pendingRotation` iff it is still rotation `id` on capsule `expectedSha`. */
  async abandonRotation(name: string, expectedSha: string, id: string): Promise<boolean> {
    try {
      const r = await this.#capsules.updateOne({ name, sha256: expectedSha, 'pendingRotation.id': id }, { $unset: { pendingRotation: '' } });
      return r.matchedCount === 1;
    } catch (e) {
      throw mongoError(e, `abandoning the CMK rotation of capsule ${name}`);
    }
  }
}

function checkName(op: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(name)) {
    throw new InvalidArgumentError(`${op}: capsule name must be 1-255 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}
