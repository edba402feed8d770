/**
 * Recovery shares: an identity's secret material split k-of-n with Shamir's secret sharing (GF(2^8), the audited
 * `shamir-secret-sharing` library; nothing here splits or interpolates by itself), in a self-describing share
 * format that can be checked on its own, plus a printable form a person can type back.
 *
 * - What is shared ("the material"): for suites with seeded key generation the KEM seed and the ML-DSA-87 seed
 *   (96 bytes for ML-KEM, 64 for X-Wing); for NTRU the KEM secret key, its public key and the ML-DSA-87 seed.
 *   Every key is re-derived (or, for NTRU, the pair checked) when the shares are combined.
 * - A share file carries an integrity check over all its fields (SHA-256 of a canonical encoding), so a damaged
 *   share is named before anything is combined, and a commitment to the material (SHA-256 over a label, the
 *   backup id, the suite and the material), so a wrong combination is caught before any key is derived from it.
 *   The check is not a MAC: someone who alters a share on purpose can recompute it; the commitment, the kid and
 *   the public file catch that at combination.
 * - Caveats: the library's internal buffers (polynomial coefficients) are not wiped; JavaScript strings holding
 *   base64 or base32 of a share cannot be wiped either. Shares are secret, like the identity, only weaker alone.
 * Format: docs/keys.md, "Recovery shares".
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { base32nopad } from '@scure/base';
import { combine, split } from 'shamir-secret-sharing';
import {
  computeKid,
  decodeSecretIdentity,
  generateIdentity,
  getSuite,
  SIGNATURE_ALGORITHM,
  wipeSecretIdentity,
  type SecretIdentity,
} from '../crypto/index.ts';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import {
  InvalidArgumentError,
  isMongoCapsuleError,
  RecoveryCombineError,
  RecoveryShareDamagedError,
  RecoveryShareFormatError,
  RecoveryShareMismatchError,
  RecoverySharesInsufficientError,
} from '../errors.ts';

export const SHARE_FORMAT = 'mongo-capsule-recovery-share';
export const MIN_SHARES = 2;
export const MAX_SHARES = 16;
const SIGNER_SEED_BYTES = 32;
const BACKUP_ID_BYTES = 16;
const CHECK_LABEL = 'mongo-capsule/recovery-share/v1\0';
const COMMITMENT_LABEL = 'mongo-capsule/recovery-share/commitment/v1\0';
const LINE_LABEL = 'mongo-capsule/recovery-share/line/v1\0';
const FIELDS = ['format', 'version', 'name', 'suite', 'kid', 'signerKid', 'threshold', 'shares', 'index', 'backupId', 'createdAt', 'commitment', 'share', 'check'] as const;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Suites with a printable form, by the one-byte code a printed share stores. Codes are a contract: never reuse one.
 * NTRU has none: its material is 2.8-3.1 KB, thousands of characters to type.
 */
export const PRINTABLE_SUITE_CODES: Readonly<Record<string, number>> = { 'ml-kem-768': 1, 'ml-kem-1024': 2, 'x-wing': 3 };

/** One share, from a file or a printed text. Printed shares carry only what combining needs. */
export interface RecoveryShare {
  /** Where it came from, for error messages: a file name or "stdin share 2". */
  source: string;
  form: 'file' | 'printable';
  suite: string;
  threshold: number;
  shares: number;
  index: number;
  /** 32 hex digits, the same in every share of one backup. */
  backupId: string;
  commitment: Uint8Array;
  /** The Shamir share: material length + 1 bytes, the last one its x-coordinate. */
  share: Uint8Array;
  /** File form only. */
  name?: string;
  kid?: string;
  signerKid?: string;
  createdAt?: string;
}

/** Non-secret facts of one backup, as every share of it states them. */
export interface BackupDescription {
  backupId: string;
  name: string;
  suite: string;
  kid: string;
  signerKid: string;
  threshold: number;
  shares: number;
  createdAt: string;
  /** Sealed backups: the custodian of each share, in share-index order (names and kids, public). */
  custodians?: { name: string; kid: string }[];
}

export function wipeShares(shares: readonly RecoveryShare[]): void {
  for (const s of shares) s.share.fill(0);
}

/** Length of the shared material of `suite`. */
export function materialLength(suiteId: string): number {
  const suite = getSuite(suiteId);
  return suite.lengths.seed !== undefined ? suite.lengths.seed + SIGNER_SEED_BYTES : suite.lengths.secretKey + suite.lengths.publicKey + SIGNER_SEED_BYTES;
}

/** The identity's secret material as one byte string (the caller wipes it). */
export function secretMaterial(id: SecretIdentity): Uint8Array {
  const parts = id.kemSeed !== undefined ? [id.kemSeed, id.signerSeed] : [id.kemSecretKey, id.publicKey, id.signerSeed];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Rebuild the identity `name` from its material: keys re-derived, the NTRU pair checked. The caller wipes it. */
export function identityFromMaterial(name: string, suiteId: string, material: Uint8Array): SecretIdentity {
  const suite = getSuite(suiteId);
  if (material.length !== materialLength(suiteId)) throw new InvalidArgumentError(`identityFromMaterial: ${suiteId} material must be ${materialLength(suiteId)} bytes`);
  if (suite.lengths.seed !== undefined) {
    const kemSeed = material.subarray(0, suite.lengths.seed);
    return generateIdentity(suiteId, { name, kemSeed, signerSeed: material.subarray(suite.lengths.seed) });
  }
  const sk = material.subarray(0, suite.lengths.secretKey);
  const pk = material.subarray(suite.lengths.secretKey, suite.lengths.secretKey + suite.lengths.publicKey);
  const signerSeed = material.subarray(suite.lengths.secretKey + suite.lengths.publicKey);
  const signerPublic = ml_dsa87.keygen(signerSeed);
  signerPublic.secretKey.fill(0);
  // The secret-identity decoder is the one place that checks that an NTRU secret key belongs to its public key.
  const text = JSON.stringify({
    format: 'mongo-capsule-secret-identity',
    version: 1,
    name,
    suite: suiteId,
    kid: computeKid(suiteId, pk),
    kem: { secretKey: b64(sk), publicKey: b64(pk) },
    signer: { algorithm: SIGNATURE_ALGORITHM, kid: computeKid(SIGNATURE_ALGORITHM, signerPublic.publicKey), seed: b64(signerSeed) },
  });
  return decodeSecretIdentity(text);
}

function commitmentOf(backupId: string, suite: string, material: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(COMMITMENT_LABEL).update(Buffer.from(backupId, 'hex')).update(`${suite}\0`).update(material).digest());
}

export interface SplitOptions {
  threshold: number;
  shares: number;
  /** Creation time (default now). */
  now?: () => number;
}

function checkCounts(op: string, threshold: unknown, shares: unknown): void {
  if (!Number.isInteger(shares) || (shares as number) < MIN_SHARES || (shares as number) > MAX_SHARES) {
    throw new InvalidArgumentError(`${op}: the number of shares must be an integer from ${MIN_SHARES} to ${MAX_SHARES}`);
  }
  if (!Number.isInteger(threshold) || (threshold as number) < MIN_SHARES || (threshold as number) > (shares as number)) {
    throw new InvalidArgumentError(`${op}: the threshold must be an integer from ${MIN_SHARES} to the number of shares (${String(shares)})`);
  }
}

/**
 * Split identity `id` into `shares` shares of which any `threshold` rebuild it. Before returning, every share
 * is shown to take part in a combination that gives the material back (windows of `threshold` consecutive shares).
 * @example
 * const shares = await splitIdentity(id, { threshold: 2, shares: 3 });
 * try { for (const s of shares) await writeFile(`${s.index}.json`, encodeShareFile(s), { mode: 0o600 }); } finally { wipeShares(shares); }
 */
export async function splitIdentity(id: SecretIdentity, options: SplitOptions): Promise<RecoveryShare[]> {
  checkCounts('splitIdentity', options.threshold, options.shares);
  const material = secretMaterial(id);
  const raw: Uint8Array[] = [];
  try {
    raw.push(...(await split(material, options.shares, options.threshold)));
    for (let start = 0; start < options.shares; start++) {
      const window = Array.from({ length: options.threshold }, (_, j) => raw[(start + j) % options.shares]!);
      const back = await combine(window);
      const same = back.length === material.length && timingSafeEqual(back, material);
      back.fill(0);
      if (!same) throw new RecoveryCombineError('splitIdentity: the shares do not combine back to the identity; nothing was written');
    }
    const backupId = randomBytes(BACKUP_ID_BYTES).toString('hex');
    const commitment = commitmentOf(backupId, id.suite, material);
    const createdAt = new Date((options.now ?? Date.now)()).toISOString();
    return raw.map((share, i) => ({
      source: `share ${i + 1}`,
      form: 'file',
      name: id.name,
      suite: id.suite,
      kid: id.kid,
      signerKid: id.signer.kid,
      threshold: options.threshold,
      shares: options.shares,
      index: i + 1,
      backupId,
      createdAt,
      commitment: Uint8Array.from(commitment),
      share,
    }));
  } catch (e) {
    for (const r of raw) r.fill(0);
    throw e;
  } finally {
    material.fill(0);
  }
}

const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function checkOf(values: readonly unknown[]): string {
  return createHash('sha256').update(CHECK_LABEL).update(JSON.stringify(values)).digest('hex');
}

function fileValues(s: RecoveryShare): unknown[] {
  return [SHARE_FORMAT, 1, s.name, s.suite, s.kid, s.signerKid, s.threshold, s.shares, s.index, s.backupId, s.createdAt, hex(s.commitment), b64(s.share)];
}

/** JSON text of a share file. */
export function encodeShareFile(s: RecoveryShare): string {
  if (s.form !== 'file') throw new InvalidArgumentError('encodeShareFile: a printed share lacks the file form\'s fields');
  const values = fileValues(s);
  const doc: Record<string, unknown> = {};
  FIELDS.forEach((f, i) => (doc[f] = i < values.length ? values[i] : checkOf(values)));
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * Parse and check one share file. Errors are typed and name `source`: RecoveryShareFormatError for what is not a
 * share or breaks the format, RecoveryShareDamagedError when the integrity check fails.
 */
export function decodeShareFile(text: string | Uint8Array, source: string): RecoveryShare {
  const bad = (why: string): never => {
    throw new RecoveryShareFormatError(`${source}: ${why}`, { source });
  };
  let json: unknown;
  try {
    json = JSON.parse(typeof text === 'string' ? text : new TextDecoder('utf-8', { fatal: true }).decode(text));
  } catch {
    // The parser's message would quote the input, which holds share bytes.
    bad('not a recovery share (not valid JSON)');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad('not a recovery share (not a JSON object)');
  const doc = json as Record<string, unknown>;
  if (doc.format !== SHARE_FORMAT) bad(`not a recovery share (format ${JSON.stringify(doc.format)?.slice(0, 60)})`);
  for (const k of Object.keys(doc)) if (!(FIELDS as readonly string[]).includes(k)) bad(`unknown field ${JSON.stringify(k.slice(0, 40))}`);
  for (const k of FIELDS) if (!(k in doc)) bad(`missing field ${k}`);
  if (doc.version !== 1) bad(`unsupported version ${JSON.stringify(doc.version)?.slice(0, 20)}`);
  const str = (f: string, re: RegExp, what: string): string => {
    const v = doc[f];
    if (typeof v !== 'string' || !re.test(v)) bad(`field ${f} must be ${what}`);
    return v as string;
  };
  const int = (f: string): number => {
    const v = doc[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 255) bad(`field ${f} must be an integer from 1 to 255`);
    return v as number;
  };
  const name = str('name', NAME, 'an identity name');
  const suite = str('suite', /^[a-z0-9-]{1,40}$/, 'a suite id');
  const kid = str('kid', HEX32, '32 lowercase hex digits');
  const signerKid = str('signerKid', HEX32, '32 lowercase hex digits');
  const backupId = str('backupId', HEX32, '32 lowercase hex digits');
  const createdAt = str('createdAt', ISO_TIME, 'a UTC time like 2026-01-02T03:04:05.678Z');
  const time = new Date(createdAt);
  if (Number.isNaN(time.getTime()) || time.toISOString() !== createdAt) bad('field createdAt is not a valid time');
  const commitmentHex = str('commitment', HEX64, '64 lowercase hex digits');
  const check = str('check', HEX64, '64 lowercase hex digits');
  const threshold = int('threshold');
  const shares = int('shares');
  const index = int('index');
  if (typeof doc.share !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(doc.share) || doc.share.length % 4 !== 0) bad('field share must be base64');
  // Checked before the semantic checks, so that a damaged share says "damaged" rather than what the damage hit.
  const values = [SHARE_FORMAT, 1, name, suite, kid, signerKid, threshold, shares, index, backupId, createdAt, commitmentHex, doc.share];
  if (checkOf(values) !== check) {
    throw new RecoveryShareDamagedError(`${source}: the share is damaged: its integrity check does not match its content`, { source });
  }
  let expected: number;
  try {
    expected = materialLength(suite) + 1;
  } catch (e) {
    if (isMongoCapsuleError(e)) throw new RecoveryShareFormatError(`${source}: ${e.message}`, { source, ...(e.hint ? { hint: e.hint } : {}), cause: e });
    throw e;
  }
  try {
    checkCounts('share', threshold, shares);
  } catch {
    bad(`threshold ${threshold} of ${shares} shares is outside ${MIN_SHARES} ≤ threshold ≤ shares ≤ ${MAX_SHARES}`);
  }
  if (index > shares) bad(`index ${index} is larger than the number of shares ${shares}`);
  const share = canonicalBase64(doc.share as string, expected, source);
  if (share[share.length - 1] === 0) {
    share.fill(0);
    bad('the share has x-coordinate 0, which no share may have');
  }
  return { source, form: 'file', name, suite, kid, signerKid, threshold, shares, index, backupId, createdAt, commitment: new Uint8Array(Buffer.from(commitmentHex, 'hex')), share };
}

function canonicalBase64(value: string, length: number, source: string): Uint8Array {
  // Decoded into memory of its own, out of Node's shared pool, so that wiping the share wipes every copy we made.
  const buf = Buffer.alloc(Buffer.byteLength(value, 'base64'));
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.write(value, 'base64'));
  if (b64(bytes) !== value || bytes.length !== length) {
    bytes.fill(0);
    throw new RecoveryShareFormatError(`${source}: field share must be canonical base64 of ${length} bytes`, { source });
  }
  return bytes;
}

// ---- printable form ----

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const GROUP = 4;
const GROUPS_PER_LINE = 8;
const LINE_CHARS = GROUP * GROUPS_PER_LINE;
const PRINT_HEADER = 5 + BACKUP_ID_BYTES + 32;

/** 20-bit checksum of printed line `lineNo`, as 4 base32 letters. */
function lineCheck(lineNo: number, chars: string): string {
  const d = createHash('sha256').update(LINE_LABEL).update(`${lineNo}\0${chars}`).digest();
  const v = (d[0]! << 12) | (d[1]! << 4) | (d[2]! >> 4);
  return [15, 10, 5, 0].map((s) => ALPHABET[(v >> s) & 31]).join('');
}

/** Whether a share of `suite` can be printed. */
export function printable(suite: string): boolean {
  return PRINTABLE_SUITE_CODES[suite] !== undefined;
}

/**
 * The printed form of a share: base32 (RFC 4648) of a binary record, in numbered lines of 8 groups of 4
 * letters, each line ending with its own 4-letter checksum; '#' lines are comments for the reader.
 */
export function encodePrintableShare(s: RecoveryShare): string {
  const code = PRINTABLE_SUITE_CODES[s.suite];
  if (code === undefined) throw new InvalidArgumentError(`encodePrintableShare: ${s.suite} shares are too long to print; keep the share files`);
  const record = new Uint8Array(PRINT_HEADER + s.share.length);
  record.set([1, code, s.threshold, s.shares, s.index]);
  record.set(Buffer.from(s.backupId, 'hex'), 5);
  record.set(s.commitment, 5 + BACKUP_ID_BYTES);
  record.set(s.share, PRINT_HEADER);
  const text = base32nopad.encode(record);
  record.fill(0);
  const lines = [
    `# mongo-capsule recovery share ${s.index} of ${s.shares} (any ${s.threshold} restore the identity)`,
    `# identity ${s.name ?? '?'}, ${s.suite}, kid ${s.kid ?? '?'}, backup ${s.backupId}${s.createdAt ? `, ${s.createdAt}` : ''}`,
    `# type it back with: mongo-capsule keys restore --name ${s.name ?? '<identity>'} --stdin`,
  ];
  for (let at = 0, n = 1; at < text.length; at += LINE_CHARS, n++) {
    const chars = text.slice(at, at + LINE_CHARS);
    const groups = chars.match(/.{1,4}/g)!.join(' ');
    lines.push(`${String(n).padStart(2, '0')}: ${groups}  ${lineCheck(n, chars)}`);
  }
  return `${lines.join('\n')}\n`;
}

const LOOKALIKE: Record<string, string> = { '0': 'O', '1': 'I or L', '8': 'B', '9': 'g' };

/** The group of printed line `lineNo` that a single typo in it most likely hit, if exactly one fits the checksum. */
function locateTypo(lineNo: number, chars: string, check: string): string | undefined {
  const hits = new Set<number>();
  for (let i = 0; i < chars.length; i++) {
    for (const c of ALPHABET) {
      if (c === chars[i]) continue;
      if (lineCheck(lineNo, chars.slice(0, i) + c + chars.slice(i + 1)) === check) hits.add(Math.floor(i / GROUP) + 1);
    }
  }
  if (hits.size === 0 && [...ALPHABET].some((c) => [0, 1, 2, 3].some((i) => lineCheck(lineNo, chars) === check.slice(0, i) + c + check.slice(i + 1)))) return 'the checksum group';
  return hits.size === 1 ? `group ${[...hits][0]}` : undefined;
}

/**
 * Parse one or more printed shares (each starts at its line 01; '#' and blank lines are ignored). A mistyped line
 * is a RecoveryShareDamagedError naming the line, and the group when a single typo explains it.
 */
export function decodePrintableShares(text: string, source: string): RecoveryShare[] {
  const blocks: { first: number; lines: { no: number; at: number; chars: string; check: string }[] }[] = [];
  const raw = text.split(/\r?\n/);
  for (let i = 0; i < raw.length; i++) {
    const line = raw[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `${source}, line ${i + 1}`;
    const m = /^(\d{1,2})\s*[:.]\s*(.*)$/.exec(line);
    if (m === null) throw new RecoveryShareFormatError(`${where}: expected "NN: XXXX XXXX … CCCC" (a numbered line of a printed share)`, { source });
    const no = Number(m[1]);
    const tokens = m[2]!.toUpperCase().split(/[\s-]+/).filter((t) => t !== '');
    for (const t of tokens) {
      const badChar = [...t].find((c) => !ALPHABET.includes(c));
      if (badChar !== undefined) {
        const hint = LOOKALIKE[badChar] ? ` (did you mean ${LOOKALIKE[badChar]}? printed shares use only A-Z and 2-7)` : ' (printed shares use only A-Z and 2-7)';
        throw new RecoveryShareDamagedError(`${where}: ${JSON.stringify(badChar)} is not a letter of a printed share${hint}`, { source });
      }
    }
    if (tokens.length < 2 || tokens[tokens.length - 1]!.length !== GROUP) throw new RecoveryShareFormatError(`${where}: the line must end with its 4-letter checksum`, { source });
    const check = tokens.pop()!;
    const chars = tokens.join('');
    if (no === 1) blocks.push({ first: i + 1, lines: [] });
    const block = blocks[blocks.length - 1];
    if (block === undefined) throw new RecoveryShareFormatError(`${where}: a printed share starts at its line 01`, { source });
    const expectedNo = block.lines.length + 1;
    if (no !== expectedNo) throw new RecoveryShareFormatError(`${where}: expected line ${String(expectedNo).padStart(2, '0')} here, found line ${String(no).padStart(2, '0')} (a line is missing or out of order)`, { source });
    if (chars.length > LINE_CHARS) throw new RecoveryShareFormatError(`${where}: line ${m[1]} has ${chars.length} letters, at most ${LINE_CHARS} (8 groups of 4) before the checksum`, { source });
    if (lineCheck(no, chars) !== check) {
      const group = locateTypo(no, chars, check);
      throw new RecoveryShareDamagedError(`${where}: line ${String(no).padStart(2, '0')} does not match its checksum: ${group ? `${group} is probably mistyped` : 'a letter in it is mistyped'}`, { source });
    }
    block.lines.push({ no, at: i + 1, chars, check });
  }
  if (blocks.length === 0) throw new RecoveryShareFormatError(`${source}: no printed share found (its lines start with "01:", "02:", …)`, { source });
  return blocks.map((b, k) => decodePrintableBlock(b.lines.map((l) => l.chars), blocks.length === 1 ? source : `${source} share ${k + 1} (line ${b.first})`));
}

function decodePrintableBlock(lines: string[], source: string): RecoveryShare {
  const bad = (why: string): never => {
    throw new RecoveryShareFormatError(`${source}: ${why}`, { source });
  };
  for (let i = 0; i < lines.length - 1; i++) if (lines[i]!.length !== LINE_CHARS) bad(`line ${String(i + 1).padStart(2, '0')} is short: only the last line may have fewer than ${LINE_CHARS} letters`);
  let record: Uint8Array;
  try {
    record = base32nopad.decode(lines.join(''));
  } catch {
    return bad('the letters do not form a complete share (the last line is cut short, or a line is missing)');
  }
  try {
    const suite = Object.keys(PRINTABLE_SUITE_CODES).find((s) => PRINTABLE_SUITE_CODES[s] === record[1]);
    if (record.length < PRINT_HEADER + 2 || record[0] !== 1) bad('not a printed recovery share of a version this tool knows');
    if (suite === undefined) return bad(`unknown suite code ${record[1]}`);
    const expected = PRINT_HEADER + materialLength(suite) + 1;
    if (record.length !== expected) bad(`a ${suite} share has ${Math.ceil((expected * 8) / 5 / LINE_CHARS)} lines; this one ${record.length < expected ? 'is missing some' : 'has too many'}`);
    const [, , threshold, shares, index] = record as unknown as number[];
    try {
      checkCounts('share', threshold, shares);
    } catch {
      bad(`threshold ${threshold} of ${shares} shares is outside ${MIN_SHARES} ≤ threshold ≤ shares ≤ ${MAX_SHARES}`);
    }
    if (index! < 1 || index! > shares!) bad(`index ${index} is outside 1..${shares}`);
    const share = Uint8Array.from(record.subarray(PRINT_HEADER));
    if (share[share.length - 1] === 0) {
      share.fill(0);
      bad('the share has x-coordinate 0, which no share may have');
    }
    return {
      source,
      form: 'printable',
      suite,
      threshold: threshold!,
      shares: shares!,
      index: index!,
      backupId: hex(record.subarray(5, 5 + BACKUP_ID_BYTES)),
      commitment: Uint8Array.from(record.subarray(5 + BACKUP_ID_BYTES, PRINT_HEADER)),
      share,
    };
  } finally {
    record.fill(0);
  }
}

/** A share given as bytes: a share file (JSON) or printed text, by its first character. */
export function decodeShareInput(data: Uint8Array, source: string): RecoveryShare[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new RecoveryShareFormatError(`${source}: not a recovery share (not UTF-8 text)`, { source });
  }
  return text.trimStart().startsWith('{') ? [decodeShareFile(text, source)] : decodePrintableShares(text, source);
}

// ---- combining ----

function describeShare(s: RecoveryShare): string {
  return `${s.source} (share ${s.index} of ${s.shares} of backup ${s.backupId}${s.name ? `, identity ${s.name}` : ''})`;
}

/**
 * Check that `shares` belong to one backup of identity `name` and are enough, then combine them, verify the
 * commitment and rebuild the identity (kid and signer kid checked against the shares). The caller wipes the result.
 * Every error names the share it is about.
 */
export async function combineShares(shares: readonly RecoveryShare[], name: string): Promise<{ identity: SecretIdentity; backup: Omit<BackupDescription, 'createdAt'> & { createdAt: string | undefined } }> {
  if (shares.length === 0) throw new RecoverySharesInsufficientError('no shares given');
  for (const s of shares) {
    if (s.name !== undefined && s.name !== name) {
      throw new RecoveryShareMismatchError(`${s.source} is a share of identity ${JSON.stringify(s.name)}, not ${JSON.stringify(name)}`, { source: s.source });
    }
  }
  // The reference is the backup most shares belong to, so that the odd ones out are the ones named.
  const byBackup = new Map<string, RecoveryShare[]>();
  for (const s of shares) byBackup.set(s.backupId, [...(byBackup.get(s.backupId) ?? []), s]);
  const main = [...byBackup.values()].sort((a, b) => b.length - a.length)[0]!;
  const ref = main[0]!;
  if (byBackup.size > 1) {
    const odd = shares.filter((s) => s.backupId !== ref.backupId);
    throw new RecoveryShareMismatchError(
      `shares of ${byBackup.size} different backups: ${odd.map(describeShare).join('; ')} ${odd.length === 1 ? 'does' : 'do'} not belong to backup ${ref.backupId} of ${main.map((s) => s.source).join(', ')}`,
      { source: odd[0]!.source },
    );
  }
  const fileShare = shares.find((s) => s.form === 'file');
  for (const s of shares) {
    const disagree = (['suite', 'threshold', 'shares'] as const).find((f) => s[f] !== ref[f]) ?? (timingSafeEqualBytes(s.commitment, ref.commitment) ? undefined : 'commitment');
    const disagreeFile = fileShare && s.form === 'file' ? (['kid', 'signerKid', 'createdAt'] as const).find((f) => s[f] !== fileShare[f]) : undefined;
    if (disagree ?? disagreeFile) {
      throw new RecoveryShareMismatchError(`${s.source} claims backup ${s.backupId} but its ${disagree ?? disagreeFile} differs from ${s === ref ? fileShare!.source : ref.source}'s: it was altered`, { source: s.source });
    }
  }
  const seen = new Map<number, RecoveryShare>();
  const xs = new Map<number, RecoveryShare>();
  for (const s of shares) {
    const dup = seen.get(s.index);
    if (dup !== undefined) throw new RecoveryShareMismatchError(`${s.source} and ${dup.source} are both share ${s.index} of backup ${s.backupId}: pass each share once`, { source: s.source });
    seen.set(s.index, s);
    const x = s.share[s.share.length - 1]!;
    const dupX = xs.get(x);
    if (dupX !== undefined) throw new RecoveryShareMismatchError(`${s.source} holds the same share point as ${dupX.source} under another index: one of them was altered`, { source: s.source });
    xs.set(x, s);
  }
  if (shares.length < ref.threshold) {
    throw new RecoverySharesInsufficientError(
      `backup ${ref.backupId} needs ${ref.threshold} of its ${ref.shares} shares; ${shares.length} given (${shares.map((s) => `share ${s.index}`).join(', ')})`,
    );
  }
  const material = await combineChecked(shares, ref);
  try {
    let identity: SecretIdentity;
    try {
      identity = identityFromMaterial(name, ref.suite, material);
    } catch (e) {
      throw new RecoveryCombineError(`the shares of backup ${ref.backupId} combine to material that is not a valid ${ref.suite} identity`, { cause: e });
    }
    if (fileShare !== undefined && (identity.kid !== fileShare.kid || identity.signer.kid !== fileShare.signerKid)) {
      const got = identity.kid;
      wipeSecretIdentity(identity);
      throw new RecoveryCombineError(`the shares of backup ${ref.backupId} rebuild key ${got}, but they name key ${fileShare.kid}`);
    }
    return {
      identity,
      backup: {
        backupId: ref.backupId,
        name,
        suite: ref.suite,
        kid: identity.kid,
        signerKid: identity.signer.kid,
        threshold: ref.threshold,
        shares: ref.shares,
        createdAt: fileShare?.createdAt,
      },
    };
  } finally {
    material.fill(0);
  }
}

function timingSafeEqualBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Combine and verify against the commitment; with more shares than needed, name the ones that break it. */
async function combineChecked(shares: readonly RecoveryShare[], ref: RecoveryShare): Promise<Uint8Array> {
  const attempt = async (subset: readonly RecoveryShare[]): Promise<Uint8Array | undefined> => {
    const m = await combine(subset.map((s) => s.share));
    if (timingSafeEqualBytes(commitmentOf(ref.backupId, ref.suite, m), ref.commitment)) return m;
    m.fill(0);
    return undefined;
  };
  const all = await attempt(shares);
  if (all !== undefined) return all;
  // Some share is wrong although its own check passed (altered on purpose). With spare shares, find a subset of
  // `threshold` that meets the commitment and name the others; the search is bounded (n ≤ 16).
  let good: RecoveryShare[] | undefined;
  let tried = 0;
  const pick = async (from: number, chosen: RecoveryShare[]): Promise<void> => {
    if (good !== undefined || tried > 20_000) return;
    if (chosen.length === ref.threshold) {
      tried++;
      const m = await attempt(chosen);
      if (m !== undefined) {
        m.fill(0);
        good = [...chosen];
      }
      return;
    }
    for (let i = from; i < shares.length && good === undefined; i++) await pick(i + 1, [...chosen, shares[i]!]);
  };
  if (shares.length > ref.threshold) await pick(0, []);
  if (good === undefined) {
    throw new RecoveryCombineError(
      `the ${shares.length} shares of backup ${ref.backupId} (${shares.map((s) => s.source).join(', ')}) do not combine to the secret the backup committed to: at least one of them was altered`,
    );
  }
  const odd = shares.filter((s) => !good!.includes(s));
  throw new RecoveryCombineError(`${odd.map((s) => s.source).join(', ')} ${odd.length === 1 ? 'does' : 'do'} not fit the other shares of backup ${ref.backupId}: altered (its integrity check was recomputed)`, {
    source: odd[0]!.source,
    hint: `restore without ${odd.length === 1 ? 'it' : 'them'}: ${good.map((s) => s.source).join(', ')} are enough`,
  });
}
