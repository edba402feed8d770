/**
 * `keys backup` and `keys restore`: an identity of the keychain split into k-of-n recovery share files, and an
 * identity rebuilt from k of them into the keychain (shares and their format: recovery-shares.ts).
 *
 * Backup writes all n files or none: they are written into a hidden staging directory inside the output directory,
 * read back and combined, then hard-linked into place one by one; an error undoes the links it made. A kill
 * while linking leaves the staging directory holding the whole set, and the next `keys backup` finishes it (or,
 * when nothing was published yet, discards it and starts over).
 * Restore stores the identity only after the shares combined to the committed secret, the keys were re-derived and
 * the kid checked (against the shares, the public file and a capsule when given). It never replaces a key: a
 * different key under the name is refused (a backup of a rotated-out key is named stale), the same key is "already
 * present"; a failed store is removed again, so nothing half-stored is left.
 * Backups made on this machine are recorded (ids, kids, k, n, time; never share bytes) under the state directory,
 * so that `keys status` says whether the active key has one.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { link, lstat, mkdir, readdir, readFile, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import {
  decodeSecretIdentity,
  encodeSecretIdentity,
  getSuite,
  parseCapsule,
  toPublicIdentity,
  unwrapKey,
  wipeSecretIdentity,
  type PublicIdentity,
  type SecretIdentity,
} from '../crypto/index.ts';
import {
  AlreadyInitializedError,
  FileExistsError,
  FileNotFoundError,
  KeychainEntryCorruptError,
  KeychainReadOnlyError,
  MigrationVerifyError,
  MongoCapsuleError,
  NotInitializedError,
  RecoveryShareSealedError,
  RecoveryShareStaleError,
  UsageError,
} from '../errors.ts';
import { syncDirectory, writeFileAtomic } from '../files.ts';
import { stateDir } from '../state-dir.ts';
import { withIdentityLock } from './identity-lock.ts';
import { equalBytes, type Keychain } from './keychain.ts';
import { slotAccount } from './manager.ts';
import {
  combineShares,
  decodeShareFile,
  encodePrintableShare,
  encodeShareFile,
  printable,
  secretMaterial,
  splitIdentity,
  wipeShares,
  type BackupDescription,
  type RecoveryShare,
} from './recovery-shares.ts';
import { decodeSealedShare, isSealedShareDocument, openSealedShare, sealedMatches, sealShare, type SealedShare } from './recovery-sealed.ts';
import { loadSecretIdentity } from './secret-source.ts';
import { secureDelete } from './secure-file.ts';

/** A public identity file that was read, for the checks and for saying what was checked. */
export interface PublicFile {
  path: string;
  identity: PublicIdentity;
}

export interface BackupOptions {
  keychain: Keychain;
  name: string;
  threshold: number;
  shares: number;
  outDir: string;
  /** Checked against the keychain's identity before anything is written. */
  publicFile?: PublicFile;
  /** Also write each share in its printable form (`.txt`), for seeded suites. */
  printable?: boolean;
  /**
   * Seal share i for custodian i (exactly one per share, in share-index order): share files of version 2, which
   * only that custodian's secret key opens, signed by the identity.
   */
  custodians?: readonly PublicFile[];
  /** Where the state directory is found (MONGO_CAPSULE_STATE_DIR etc.; default process.env). */
  env?: NodeJS.ProcessEnv;
  now?: () => number;
  /** Test hooks that run before the i-th (1-based) staged write and before the i-th link into place. */
  faults?: { beforeWrite?: (i: number) => Promise<void>; beforeLink?: (i: number) => Promise<void> };
}

export interface BackupResult {
  backup: BackupDescription;
  /** The share files written (JSON, then the printable `.txt` files), in index order. */
  files: string[];
  /** What the identity was checked against, in words. */
  checked: string;
  /** True when this call finished a backup that an interrupted earlier call had staged. */
  resumed: boolean;
}

/** File names of the shares of one backup: fixed names, so that a second backup into one directory is refused. */
export function shareFileNames(name: string, shares: number, withPrintable: boolean): string[] {
  const files: string[] = [];
  for (let i = 1; i <= shares; i++) files.push(`${name}.share-${i}-of-${shares}.json`);
  if (withPrintable) for (let i = 1; i <= shares; i++) files.push(`${name}.share-${i}-of-${shares}.txt`);
  return files;
}

const STAGING = (name: string) => new RegExp(`^\\.${name.replace(/[.]/g, '\\.')}\\.backup-([0-9a-f]{32})\\.staging$`);

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** The active identity `name`, decoded (the caller wipes it); refuses while a rotation is unfinished. */
async function readActive(keychain: Keychain, name: string, op: string): Promise<SecretIdentity> {
  for (const slot of ['next', 'prev'] as const) {
    if (await keychain.exists(slotAccount(name, slot))) {
      throw new MongoCapsuleError('USAGE', `${op}: a rotation of identity ${JSON.stringify(name)} is unfinished`, { hint: `finish it first: \`mongo-capsule keys rotate --name ${name}\`` });
    }
  }
  const bytes = await keychain.retrieve(slotAccount(name, 'active'));
  if (bytes === undefined) throw new NotInitializedError(name);
  try {
    const id = decodeSecretIdentity(bytes);
    if (id.name !== name) {
      wipeSecretIdentity(id);
      throw new KeychainEntryCorruptError(`keychain entry ${name} holds identity ${JSON.stringify(id.name)}`);
    }
    return id;
  } catch (e) {
    if (e instanceof KeychainEntryCorruptError) throw e;
    throw new KeychainEntryCorruptError(`keychain entry ${name} does not hold a valid secret identity`, { cause: e });
  } finally {
    bytes.fill(0);
  }
}

/**
 * Checks that `id` opens what `pub` seals and signs what `pub` verifies: a probe encapsulation to the file's KEM key
 * decapsulated with the keychain's secret key, and a probe signature verified with the file's signer key.
 */
export function checkAgainstPublicFile(id: SecretIdentity, pub: PublicFile): string {
  const p = pub.identity;
  if (p.kid !== id.kid || p.signer.kid !== id.signer.kid) {
    throw new MongoCapsuleError('USAGE', `${pub.path} is key ${p.kid} (signer ${p.signer.kid}), but identity ${id.name} is key ${id.kid} (signer ${id.signer.kid}); nothing was written`, {
      hint: 'pass the public file of this identity (after a rotation, the one `keys rotate --pub-out` wrote), or write it with `mongo-capsule keys status --pub-out <file>`',
    });
  }
  const suite = getSuite(id.suite);
  const probe = suite.encapsulate(p.publicKey);
  const back = suite.decapsulate(probe.cipherText, id.kemSecretKey);
  const opens = equalBytes(back, probe.sharedSecret);
  probe.sharedSecret.fill(0);
  back.fill(0);
  const message = randomBytes(32);
  const signs = ml_dsa87.verify(ml_dsa87.sign(message, id.signerSecretKey), message, p.signer.publicKey);
  if (!opens || !signs) {
    throw new KeychainEntryCorruptError(`identity ${id.name} does not ${opens ? 'sign for' : 'open'} the key in ${pub.path} although the kids match; the keychain entry or the file is damaged`);
  }
  return `${pub.path}: kid ${p.kid} and signer kid ${p.signer.kid}; the keychain's key opened a probe sealed for it and its signature verified`;
}

/**
 * Split identity `name` from the keychain into share files in `outDir`. Refuses when any of the files exists,
 * checking all of them before writing any.
 */
export async function backupIdentity(options: BackupOptions): Promise<BackupResult> {
  const { keychain, name } = options;
  return withIdentityLock(keychain, name, async () => {
    const resumed = await finishStaged(options);
    if (resumed !== undefined) return resumed;
    const id = await readActive(keychain, name, 'keys backup');
    let shares: RecoveryShare[] = [];
    try {
      if (options.printable && !printable(id.suite)) {
        throw new UsageError(`keys backup: ${id.suite} identities keep their whole secret key (${secretMaterial(id).fill(0).length} bytes), too long to type back; --printable is for ML-KEM and X-Wing identities`, 'keep the share files (print them as files, or store them on separate media)');
      }
      const custodians = options.custodians ?? [];
      if (custodians.length > 0 && custodians.length !== options.shares) {
        throw new UsageError(
          `keys backup: ${custodians.length} custodian${custodians.length === 1 ? '' : 's'} for ${options.shares} shares; nothing was written`,
          'pass --custodian <pub file> exactly once per share, in share-index order (the first custodian gets share 1)',
        );
      }
      if (custodians.length > 0 && options.printable) {
        throw new UsageError('keys backup: --printable writes shares in the clear, --custodian seals them; choose one', 'sealed shares are files to mail: drop --printable');
      }
      const seenKids = new Set<string>();
      for (const c of custodians) {
        if (c.identity.kid === id.kid) throw new UsageError(`keys backup: custodian ${c.path} is the identity being backed up; nothing was written`, 'a custodian is someone else: pass their public file');
        if (seenKids.has(c.identity.kid)) throw new UsageError(`keys backup: custodian ${c.path} (key ${c.identity.kid}) is given twice; nothing was written`, 'one share per custodian: a custodian holding two shares holds more than the others');
        seenKids.add(c.identity.kid);
      }
      const checked =
        options.publicFile !== undefined
          ? checkAgainstPublicFile(id, options.publicFile)
          : `no public file given or found: checked only that the keychain's identity is consistent (kid ${id.kid} re-derived from its keys)`;
      const names = shareFileNames(name, options.shares, options.printable === true);
      const taken = [];
      for (const f of names) if (await exists(join(options.outDir, f))) taken.push(f);
      if (taken.length > 0) {
        throw new MongoCapsuleError('FILE_EXISTS', `keys backup: ${taken.map((f) => join(options.outDir, f)).join(', ')} already exist${taken.length === 1 ? 's' : ''}; nothing was written`, {
          hint: 'write the backup into another --out-dir (or move the old shares away: a new backup does not invalidate them)',
        });
      }
      if (!(await stat(options.outDir).then((s) => s.isDirectory(), () => false))) throw new FileNotFoundError(options.outDir, 'the --out-dir directory must exist');
      await listBackups(name, options.env); // damaged records must stop the backup before any share is written
      shares = await splitIdentity(id, { threshold: options.threshold, shares: options.shares, ...(options.now ? { now: options.now } : {}) });
      const contents =
        custodians.length > 0
          ? shares.map((s, i) => sealShare(s, custodians[i]!.identity, id))
          : [...shares.map((s) => encodeShareFile(s)), ...(options.printable ? shares.map((s) => encodePrintableShare(s)) : [])];
      const backup: BackupDescription = { ...describe(shares[0]!), ...(custodians.length > 0 ? { custodians: custodians.map((c) => ({ name: c.identity.name, kid: c.identity.kid })) } : {}) };
      const files = await stageAndPublish(options, backup, names, contents, shares);
      await recordBackup(backup, options);
      return { backup, files, checked, resumed: false };
    } finally {
      wipeSecretIdentity(id);
      wipeShares(shares);
    }
  });
}

/** A staged or published share file of either version: a plain share (v1), or a sealed one (v2, still sealed). */
function decodeAnyShareFile(bytes: Uint8Array, source: string): { plain?: RecoveryShare; sealed?: SealedShare } {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    doc = undefined;
  }
  if (isSealedShareDocument(doc)) return { sealed: decodeSealedShare(doc as Record<string, unknown>, source) };
  return { plain: decodeShareFile(bytes, source) };
}

function describe(s: RecoveryShare | SealedShare): BackupDescription {
  return { backupId: s.backupId, name: s.name!, suite: s.suite, kid: s.kid!, signerKid: s.signerKid!, threshold: s.threshold, shares: s.shares, createdAt: s.createdAt! };
}

async function stageAndPublish(options: BackupOptions, backup: BackupDescription, names: string[], contents: string[], made: readonly RecoveryShare[]): Promise<string[]> {
  const staging = join(options.outDir, `.${options.name}.backup-${backup.backupId}.staging`);
  await mkdir(staging, { mode: 0o700 });
  const published: string[] = [];
  try {
    for (let i = 0; i < names.length; i++) {
      await options.faults?.beforeWrite?.(i + 1);
      await writeFileAtomic(join(staging, names[i]!), contents[i]!, { mode: 0o600 });
    }
    await syncDirectory(staging);
    // What will be published is read back and must combine to this identity (sealed shares, which this machine
    // cannot open: must verify and hold the very shares that were split).
    const read = await Promise.all(names.filter((n) => n.endsWith('.json')).map(async (n) => decodeAnyShareFile(await readFile(join(staging, n)), join(staging, n))));
    const back = read.flatMap((r) => (r.plain ? [r.plain] : []));
    const sealedBack = read.flatMap((r) => (r.sealed ? [r.sealed] : []));
    if (sealedBack.length > 0 && (sealedBack.length !== made.length || sealedBack.some((s, i) => !sealedMatches(s, made[i]!)))) {
      throw new MigrationVerifyError('keys backup: the staged sealed shares do not hold the shares that were split; nothing was published');
    }
    if (back.length > 0) try {
      const { identity } = await combineShares(back, options.name);
      const ok = identity.kid === backup.kid;
      wipeSecretIdentity(identity);
      if (!ok) throw new MigrationVerifyError('keys backup: the staged shares do not rebuild the identity; nothing was published');
    } finally {
      wipeShares(back);
    }
    for (let i = 0; i < names.length; i++) {
      await options.faults?.beforeLink?.(i + 1);
      const target = join(options.outDir, names[i]!);
      try {
        await link(join(staging, names[i]!), target);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new FileExistsError(target);
        throw e;
      }
      published.push(target);
    }
    await syncDirectory(options.outDir);
  } catch (e) {
    // All or nothing: undo the links made, then destroy the staged copies.
    for (const p of published) await unlink(p).catch(() => undefined);
    await syncDirectory(options.outDir);
    await discardStaging(staging);
    throw e;
  }
  // The published names keep the data; only the staging names go (a secure delete would erase the shares).
  for (const n of names) await unlink(join(staging, n));
  await rmdir(staging);
  await syncDirectory(options.outDir);
  return published;
}

async function discardStaging(staging: string): Promise<void> {
  const entries = await readdir(staging).catch(() => [] as string[]);
  for (const e of entries) {
    const p = join(staging, e);
    const st = await lstat(p).catch(() => undefined);
    if (st?.isFile() && st.nlink === 1) await secureDelete(p).catch(() => unlink(p).catch(() => undefined));
    else await unlink(p).catch(() => undefined);
  }
  await rmdir(staging).catch(() => undefined);
}

/**
 * A staging directory of this identity left by a killed backup: when some of its files were already linked into
 * place, link the rest (the set is complete and was verified before linking began); otherwise discard it.
 */
async function finishStaged(options: BackupOptions): Promise<BackupResult | undefined> {
  const entries = await readdir(options.outDir).catch(() => [] as string[]);
  for (const entry of entries) {
    const m = STAGING(options.name).exec(entry);
    if (m === null) continue;
    const staging = join(options.outDir, entry);
    const files = (await readdir(staging)).sort();
    let publishedAny = false;
    for (const f of files) {
      const a = await lstat(join(staging, f));
      const b = await lstat(join(options.outDir, f)).catch(() => undefined);
      if (b !== undefined && a.ino === b.ino && a.dev === b.dev) publishedAny = true;
    }
    if (!publishedAny) {
      await discardStaging(staging);
      continue;
    }
    const read = await Promise.all(files.filter((f) => f.endsWith('.json')).map(async (f) => decodeAnyShareFile(await readFile(join(staging, f)), join(staging, f))));
    const shares = read.flatMap((r) => (r.plain ? [r.plain] : []));
    try {
      const first = (read[0]?.plain ?? read[0]?.sealed)!;
      const names = shareFileNames(options.name, first.shares, files.some((f) => f.endsWith('.txt')));
      if (names.length !== files.length || names.some((n) => !files.includes(n))) {
        throw new MongoCapsuleError('FILE_EXISTS', `keys backup: ${staging} holds an incomplete backup`, { hint: `remove it and the share files of backup ${first.backupId} in ${options.outDir}, then rerun` });
      }
      const out: string[] = [];
      for (const n of names) {
        const target = join(options.outDir, n);
        const b = await lstat(target).catch(() => undefined);
        const a = await lstat(join(staging, n));
        if (b === undefined) await link(join(staging, n), target);
        else if (a.ino !== b.ino || a.dev !== b.dev) throw new FileExistsError(target);
        out.push(target);
      }
      await syncDirectory(options.outDir);
      for (const n of names) await unlink(join(staging, n));
      await rmdir(staging);
      const sealedFirst = read[0]?.sealed;
      const backup: BackupDescription = { ...describe(first), ...(sealedFirst ? { custodians: read.map((r) => ({ name: r.sealed!.custodian.name, kid: r.sealed!.custodian.kid })) } : {}) };
      await recordBackup(backup, options);
      return { backup, files: out, checked: 'finished an interrupted backup (its shares were verified before it was interrupted)', resumed: true };
    } finally {
      wipeShares(shares);
    }
  }
  return undefined;
}

// ---- records of backups made on this machine ----

const RECORDS_FORMAT = 'mongo-capsule-backup-records';
const MAX_RECORDS = 100;

export interface BackupRecord extends BackupDescription {
  /** Where the shares were written (they usually move on to custodians). */
  outDir: string;
}

function recordsPath(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(stateDir(env), 'recovery-backups', `${name}.json`);
}

/** The backups of identity `name` recorded on this machine, oldest first. */
export async function listBackups(name: string, env: NodeJS.ProcessEnv = process.env): Promise<BackupRecord[]> {
  let text: string;
  try {
    text = await readFile(recordsPath(name, env), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  try {
    const doc = JSON.parse(text) as { format?: unknown; backups?: unknown };
    if (doc.format !== RECORDS_FORMAT || !Array.isArray(doc.backups)) throw new Error('format');
    const str = (v: unknown) => typeof v === 'string' && v.length <= 4096;
    const int = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 255;
    const ok = (r: unknown): r is BackupRecord => {
      if (typeof r !== 'object' || r === null) return false;
      const b = r as Record<string, unknown>;
      const custodians = b.custodians === undefined || (Array.isArray(b.custodians) && b.custodians.every((c) => typeof c === 'object' && c !== null && str((c as Record<string, unknown>).name) && str((c as Record<string, unknown>).kid)));
      return ['backupId', 'name', 'suite', 'kid', 'signerKid', 'createdAt', 'outDir'].every((k) => str(b[k])) && int(b.threshold) && int(b.shares) && custodians;
    };
    if (!doc.backups.every(ok)) throw new Error('entry');
    return doc.backups;
  } catch {
    throw new MongoCapsuleError('CONFIG_INVALID', `the backup records ${recordsPath(name, env)} are damaged`, { hint: 'they only feed `keys status`: remove the file, then run `keys backup` again to record a backup' });
  }
}

async function recordBackup(backup: BackupDescription, options: Pick<BackupOptions, 'env' | 'outDir'>): Promise<void> {
  const path = recordsPath(backup.name, options.env);
  await mkdir(join(stateDir(options.env), 'recovery-backups'), { recursive: true, mode: 0o700 });
  const backups = [...(await listBackups(backup.name, options.env)).filter((b) => b.backupId !== backup.backupId), { ...backup, outDir: options.outDir }].slice(-MAX_RECORDS);
  await writeFileAtomic(path, `${JSON.stringify({ format: RECORDS_FORMAT, version: 1, backups }, null, 2)}\n`, { mode: 0o600, replace: true });
}

/** A recorded backup as `keys status --json` shows it: public facts only. */
export type BackupSummary = Omit<BackupRecord, 'name'>;

/**
 * Whether the active key of `name` has a backup recorded on this machine: `current` (a backup of the active key
 * exists), `stale` (backups exist, but only of keys that a rotation retired: they rebuild an older generation),
 * `none`, or `unknown` (the records are damaged). A backup's generation is the key it is of, its `kid`.
 */
export interface BackupStatus {
  state: 'current' | 'stale' | 'none' | 'unknown';
  /** The newest backup of the active key, if any. */
  current: BackupSummary | null;
  /** The newest backup recorded for the identity, of whatever key. */
  latest: BackupSummary | null;
  /** How many backups are recorded for the identity on this machine. */
  recorded: number;
  /** Why the state is unknown. */
  error?: string;
}

const summary = (r: BackupRecord | undefined): BackupSummary | null => {
  if (r === undefined) return null;
  const { name: _name, ...rest } = r;
  return rest;
};

/** The backup state of identity `name`, whose active key is `kid`, from the records of this machine. */
export async function backupStatus(name: string, kid: string, env: NodeJS.ProcessEnv = process.env): Promise<BackupStatus> {
  let records: BackupRecord[];
  try {
    records = await listBackups(name, env);
  } catch (e) {
    return { state: 'unknown', current: null, latest: null, recorded: 0, error: (e as Error).message };
  }
  const current = records.filter((r) => r.kid === kid).pop();
  const latest = records[records.length - 1];
  return { state: current !== undefined ? 'current' : latest !== undefined ? 'stale' : 'none', current: summary(current), latest: summary(latest), recorded: records.length };
}

/** One line for `keys status`: whether the active key `kid` of `name` has a backup recorded on this machine. */
export async function backupStatusLine(name: string, kid: string | null, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (kid === null) return '';
  const s = await backupStatus(name, kid, env);
  const advice = `run \`mongo-capsule keys backup --name ${name} --shares <n> --threshold <k> --out-dir <dir>\``;
  switch (s.state) {
    case 'unknown':
      return `backup: unknown (${s.error})\n`;
    case 'current': {
      const c = s.current!;
      return `backup: ${c.threshold}-of-${c.shares} shares of the active key, backup ${c.backupId}, ${c.createdAt}${c.custodians ? `, sealed for ${c.custodians.map((x) => x.name).join(', ')}` : ''}\n`;
    }
    case 'stale': {
      const l = s.latest!;
      return `backup: none of the active key ${kid}; the last backup (${l.backupId}, ${l.createdAt}) is of retired key ${l.kid}: stale, its shares restore that older generation, not the active key: ${advice}\n`;
    }
    default:
      return `backup: none recorded on this machine: ${advice}\n`;
  }
}

// ---- restore ----

export interface RestoreOptions {
  keychain: Keychain;
  name: string;
  shares: readonly RecoveryShare[];
  /** The identity's current public file: the rebuilt key must be the key it names. */
  publicFile?: PublicFile;
  /** A capsule sealed for the identity: the rebuilt key must open it. */
  capsule?: { path: string; bytes: Uint8Array };
  /** Store the key even though the public file names another key (a backup of a rotated-out key). */
  allowStale?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface RestoreResult {
  publicIdentity: PublicIdentity;
  backup: Omit<BackupDescription, 'createdAt'> & { createdAt: string | undefined };
  /** True when the keychain already held this very key (nothing was written). */
  alreadyPresent: boolean;
  /** What the rebuilt identity was checked against, in words. */
  checked: string[];
}

function staleHint(name: string): string {
  return (
    `restore from a backup of the current key (\`mongo-capsule keys status --name ${name}\` on the machine that made it shows whether one exists); ` +
    'shares of a rotated-out key only open capsules still sealed for that old key: pass --allow-stale to store it anyway (only into an empty keychain slot)'
  );
}

/** Rebuild identity `name` from `shares` and store it in the keychain (never replacing another key). */
export async function restoreIdentity(options: RestoreOptions): Promise<RestoreResult> {
  const { keychain, name } = options;
  if (keychain.readOnly) {
    throw new KeychainReadOnlyError(`keys restore: ${keychain.description} is read-only`, { hint: 'unset MONGO_CAPSULE_SECRET_IDENTITY and MONGO_CAPSULE_SECRET_IDENTITY_FILE to restore into the OS keychain' });
  }
  const { identity, backup } = await combineShares(options.shares, name);
  try {
    const checked = [`${options.shares.length} shares of backup ${backup.backupId} (${backup.threshold}-of-${backup.shares}) combined to the committed secret; keys re-derived: kid ${identity.kid}, signer kid ${identity.signer.kid}`];
    const when = backup.createdAt ? ` of ${backup.createdAt}` : '';
    if (options.publicFile !== undefined) {
      const p = options.publicFile.identity;
      if (p.kid !== identity.kid || p.signer.kid !== identity.signer.kid) {
        if (!options.allowStale) {
          throw new RecoveryShareStaleError(
            `the shares (backup ${backup.backupId}${when}) rebuild key ${identity.kid}, but ${options.publicFile.path} names key ${p.kid}: the identity was rotated after this backup, whose shares restore an older generation of the key (or the public file is another identity's); nothing was stored`,
            { hint: staleHint(name) },
          );
        }
        checked.push(`${options.publicFile.path} names another key (${p.kid}): stored anyway (--allow-stale)`);
      } else {
        checked.push(checkAgainstPublicFile(identity, options.publicFile));
      }
    }
    if (options.capsule !== undefined) {
      const { header } = parseCapsule(options.capsule.bytes);
      if (header.kid !== identity.kid) {
        throw new RecoveryShareStaleError(`${options.capsule.path} is sealed for key ${header.kid}; the shares (backup ${backup.backupId}${when}) rebuild key ${identity.kid}, which cannot open it (a backup made before a rotation restores an older generation of the key); nothing was stored`, {
          hint: staleHint(name),
        });
      }
      const signers = options.publicFile ? [options.publicFile.identity] : [];
      unwrapKey(options.capsule.bytes, identity, { signers }).fill(0);
      checked.push(`${options.capsule.path}: capsule ${JSON.stringify(header.name)} opened${header.signed ? ', signature verified' : ''}`);
    }
    const alreadyPresent = await withIdentityLock(keychain, name, () => storeNew(keychain, identity, backup, when));
    return { publicIdentity: toPublicIdentity(identity), backup, alreadyPresent, checked };
  } finally {
    wipeSecretIdentity(identity);
  }
}

async function storeNew(keychain: Keychain, identity: SecretIdentity, backup: RestoreResult['backup'], when: string): Promise<boolean> {
  const name = identity.name;
  for (const slot of ['next', 'prev'] as const) {
    if (await keychain.exists(slotAccount(name, slot))) {
      throw new AlreadyInitializedError(name, { hint: `a rotation of ${name} is unfinished: finish it with \`mongo-capsule keys rotate --name ${name}\`; it needs no restore` });
    }
  }
  const account = slotAccount(name, 'active');
  const existing = await keychain.retrieve(account);
  if (existing !== undefined) {
    let held: SecretIdentity | undefined;
    try {
      held = decodeSecretIdentity(existing);
    } catch (e) {
      throw new KeychainEntryCorruptError(`keychain entry ${name} is damaged; the restore did not replace it`, {
        hint: `remove it with \`mongo-capsule keys delete --name ${name} --yes\`, then rerun the restore`,
        cause: e,
      });
    } finally {
      existing.fill(0);
    }
    const a = secretMaterial(held);
    const b = secretMaterial(identity);
    const same = held.kid === identity.kid && held.signer.kid === identity.signer.kid && a.length === b.length && timingSafeEqual(a, b);
    const heldKid = held.kid;
    a.fill(0);
    b.fill(0);
    wipeSecretIdentity(held);
    if (same) return true;
    throw new RecoveryShareStaleError(
      `the keychain already holds identity ${name} with key ${heldKid}; the shares (backup ${backup.backupId}${when}) are of key ${identity.kid}: a backup made before a rotation, which restores an older generation of the key, or of another identity; nothing was changed`,
      { hint: `the key in the keychain is the one in use; make a backup of it with \`mongo-capsule keys backup --name ${name}\`` },
    );
  }
  const encoded = new TextEncoder().encode(encodeSecretIdentity(identity));
  let back: Uint8Array | undefined;
  try {
    await keychain.store(account, encoded);
    back = await keychain.retrieve(account);
    if (back === undefined || !equalBytes(back, encoded)) {
      throw new MigrationVerifyError(`the keychain did not return identity ${JSON.stringify(name)} as written`, { hint: `check the keychain (${keychain.description}) and rerun the restore` });
    }
    return false;
  } catch (e) {
    // Nothing was there before: leave nothing there now.
    await keychain.delete(account).catch(() => undefined);
    throw e;
  } finally {
    encoded.fill(0);
    back?.fill(0);
  }
}

// ---- sealed shares (version 2) ----

/** The sealed share in `bytes`, checked and its signature verified; undefined when `bytes` is not a sealed share. */
export function readSealedShare(bytes: Uint8Array, source: string): SealedShare | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
  return isSealedShareDocument(doc) ? decodeSealedShare(doc as Record<string, unknown>, source) : undefined;
}

/**
 * Open sealed share `sealed` with the custodian identity of this keychain: the identity the share names
 * (`custodianName`), or `identity` when given. A custodian whose key is not here is RecoveryShareSealedError, another
 * key is RecoveryShareWrongCustodianError. The caller wipes the share.
 */
export async function openSealedShareFromKeychain(keychain: Keychain, sealed: SealedShare, identity?: string): Promise<RecoveryShare> {
  const name = identity ?? sealed.custodian.name;
  let custodian: SecretIdentity;
  try {
    custodian = await loadSecretIdentity(name, { keychain, env: {} });
  } catch (e) {
    if (e instanceof NotInitializedError) {
      throw new RecoveryShareSealedError(
        `${sealed.source} is sealed for custodian ${sealed.custodian.name} (key ${sealed.custodian.kid}), whose key is not in ${keychain.description}${identity === undefined ? '' : ` (no identity ${identity} here)`}; nothing was written`,
        { source: sealed.source, hint: `send it to custodian ${sealed.custodian.name}, who opens it with \`mongo-capsule keys open-share --share <file> --identity ${sealed.custodian.name} --out <file>\` and returns the opened share` },
      );
    }
    throw e;
  }
  try {
    return openSealedShare(sealed, custodian);
  } finally {
    wipeSecretIdentity(custodian);
  }
}
