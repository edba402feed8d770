/**
 * Recovery shares without a keychain: every k-subset restores and k−1 do not; mixed, foreign, duplicated, damaged
 * and forged shares are each a typed error naming the share; the printed form finds mistyped lines and groups;
 * the parsers under 4·10^4 fuzzed inputs raise only typed errors.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateIdentity, getSuite, type SecretIdentity } from '../../src/crypto/index.ts';
import {
  MongoCapsuleError,
  RecoveryCombineError,
  RecoveryShareDamagedError,
  RecoveryShareFormatError,
  RecoveryShareMismatchError,
  RecoverySharesInsufficientError,
} from '../../src/errors.ts';
import {
  combineShares,
  decodePrintableShares,
  decodeShareFile,
  decodeShareInput,
  encodePrintableShare,
  encodeShareFile,
  materialLength,
  secretMaterial,
  splitIdentity,
  type RecoveryShare,
} from '../../src/keys/recovery-shares.ts';

const parseAll = (shares: RecoveryShare[]) => shares.map((s, i) => decodeShareFile(encodeShareFile(s), `share-${i + 1}.json`));

function subsets<T>(items: T[], k: number): T[][] {
  if (k === 0) return [[]];
  return items.flatMap((x, i) => subsets(items.slice(i + 1), k - 1).map((rest) => [x, ...rest]));
}

async function rejects<E extends MongoCapsuleError>(p: Promise<unknown> | (() => unknown), type: new (...a: never[]) => E, message: RegExp): Promise<E> {
  let error: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    error = e;
  }
  expect(error, `expected ${type.name}`).toBeInstanceOf(type);
  expect((error as Error).message).toMatch(message);
  return error as E;
}

/** The documented integrity check (docs/keys.md), recomputed: what someone altering a share on purpose does. */
function recomputeCheck(doc: Record<string, unknown>): void {
  const { check: _check, ...rest } = doc;
  doc.check = createHash('sha256').update('mongo-capsule/recovery-share/v1\0').update(JSON.stringify(Object.values(rest))).digest('hex');
}

const suites = ['ml-kem-768', 'ml-kem-1024', 'x-wing', ...(getSuite('ntru-hps-4096-821').available() ? ['ntru-hps-4096-821'] : [])];

describe('splitting and combining', () => {
  for (const suite of suites) {
    it(`${suite}: every 3 of 5 shares rebuild the identity, 2 do not`, async () => {
      const id = generateIdentity(suite, { name: 'alice' });
      const material = secretMaterial(id);
      expect(material.length).toBe(materialLength(suite));
      const shares = parseAll(await splitIdentity(id, { threshold: 3, shares: 5 }));
      expect(new Set(shares.map((s) => s.backupId)).size).toBe(1);
      expect(shares.map((s) => s.index)).toEqual([1, 2, 3, 4, 5]);
      for (const subset of [...subsets(shares, 3), ...subsets(shares, 4), shares]) {
        const { identity, backup } = await combineShares(subset, 'alice');
        expect(identity.kid).toBe(id.kid);
        expect(identity.signer.kid).toBe(id.signer.kid);
        expect(Buffer.from(secretMaterial(identity))).toEqual(Buffer.from(material));
        expect(backup).toMatchObject({ threshold: 3, shares: 5, kid: id.kid, suite });
      }
      for (const subset of subsets(shares, 2)) await rejects(combineShares(subset, 'alice'), RecoverySharesInsufficientError, /needs 3 of its 5 shares; 2 given/);
    }, 60_000);
  }

  it('refuses counts outside 2 ≤ k ≤ n ≤ 16', async () => {
    const id = generateIdentity('ml-kem-768', { name: 'alice' });
    for (const [threshold, shares] of [[1, 3], [4, 3], [2, 17], [2, 1], [2.5, 3]] as const) {
      await expect(splitIdentity(id, { threshold, shares })).rejects.toBeInstanceOf(MongoCapsuleError);
    }
    expect((await splitIdentity(id, { threshold: 16, shares: 16 })).length).toBe(16);
  });
});

describe('shares that do not belong together', () => {
  let alice: SecretIdentity;
  let a: RecoveryShare[];
  let b: RecoveryShare[];
  it('setup', async () => {
    alice = generateIdentity('ml-kem-1024', { name: 'alice' });
    a = parseAll(await splitIdentity(alice, { threshold: 2, shares: 3 }));
    b = parseAll(await splitIdentity(alice, { threshold: 2, shares: 3 })).map((s) => ({ ...s, source: `other-${s.index}.json` }));
  });

  it('two backups of one identity: names the share of the other backup', async () => {
    const e = await rejects(combineShares([a[0]!, a[1]!, b[2]!], 'alice'), RecoveryShareMismatchError, /other-3\.json \(share 3 of 3 of backup [0-9a-f]{32}, identity alice\) does not belong to backup/);
    expect(e.source).toBe('other-3.json');
  });

  it('a share of another identity: named', async () => {
    const bob = parseAll(await splitIdentity(generateIdentity('ml-kem-1024', { name: 'bob' }), { threshold: 2, shares: 3 }));
    const e = await rejects(combineShares([a[0]!, { ...bob[1]!, source: 'bob-2.json' }], 'alice'), RecoveryShareMismatchError, /bob-2\.json is a share of identity "bob", not "alice"/);
    expect(e.source).toBe('bob-2.json');
  });

  it('the same share twice: named', async () => {
    await rejects(combineShares([a[0]!, { ...a[0]!, source: 'copy.json' }], 'alice'), RecoveryShareMismatchError, /copy\.json and share-1\.json are both share 1/);
  });

  it('a share altered with its check recomputed: the combination fails the commitment; with a spare share the odd one is named', async () => {
    const doc = JSON.parse(encodeShareFile(a[1]!)) as Record<string, unknown>;
    const bytes = Buffer.from(doc.share as string, 'base64');
    bytes[3]! ^= 1;
    doc.share = bytes.toString('base64');
    recomputeCheck(doc);
    const forged = decodeShareFile(JSON.stringify(doc), 'forged.json');
    await rejects(combineShares([a[0]!, forged], 'alice'), RecoveryCombineError, /do not combine to the secret the backup committed to/);
    const e = await rejects(combineShares([a[0]!, forged, a[2]!], 'alice'), RecoveryCombineError, /^forged\.json does not fit the other shares/);
    expect(e.source).toBe('forged.json');
    expect(e.hint).toMatch(/share-1\.json, share-3\.json are enough/);
  });

  it('a share whose kid was changed (check recomputed) disagrees with the others', async () => {
    const doc = JSON.parse(encodeShareFile(a[1]!)) as Record<string, unknown>;
    doc.kid = '0'.repeat(32);
    recomputeCheck(doc);
    await rejects(combineShares([a[0]!, decodeShareFile(JSON.stringify(doc), 'k.json')], 'alice'), RecoveryShareMismatchError, /k\.json claims backup .* its kid differs/);
  });
});

describe('the share file parser', () => {
  it('rejects unknown and missing fields, bad encodings and lengths with typed errors naming the file', async () => {
    const id = generateIdentity('ml-kem-768', { name: 'alice' });
    const [s] = await splitIdentity(id, { threshold: 2, shares: 2 });
    const good = JSON.parse(encodeShareFile(s!)) as Record<string, unknown>;
    const variant = (change: (d: Record<string, unknown>) => void, recheck = true) => {
      const d = structuredClone(good);
      change(d);
      if (recheck) recomputeCheck(d);
      return JSON.stringify(d);
    };
    const cases: [string, RegExp, new (...a: never[]) => MongoCapsuleError][] = [
      [variant((d) => (d.extra = 1), false), /f\.json: unknown field "extra"/, RecoveryShareFormatError],
      [variant((d) => delete d.backupId, false), /f\.json: missing field backupId/, RecoveryShareFormatError],
      [variant((d) => (d.version = 2)), /unsupported version 2/, RecoveryShareFormatError],
      [variant((d) => (d.share = `${(d.share as string).slice(0, -3)}B==`)), /share must be canonical base64|share must be base64/, RecoveryShareFormatError],
      [variant((d) => (d.share = Buffer.alloc(10, 1).toString('base64'))), /canonical base64 of 97 bytes/, RecoveryShareFormatError],
      [variant((d) => (d.kid = 'ABC')), /field kid must be 32 lowercase hex digits/, RecoveryShareFormatError],
      [variant((d) => (d.threshold = 3)), /threshold 3 of 2 shares is outside/, RecoveryShareFormatError],
      [variant((d) => (d.index = 3)), /index 3 is larger than the number of shares 2/, RecoveryShareFormatError],
      [variant((d) => (d.createdAt = '2026-02-30T00:00:00.000Z')), /createdAt is not a valid time/, RecoveryShareFormatError],
      [variant((d) => (d.suite = 'rot13')), /unknown KEM suite|rot13/, RecoveryShareFormatError],
      [variant((d) => (d.threshold = 1), false), /damaged: its integrity check does not match/, RecoveryShareDamagedError],
      [JSON.stringify({ format: 'mongo-capsule-public-identity' }), /not a recovery share \(format "mongo-capsule-public-identity"\)/, RecoveryShareFormatError],
      ['{ "format": ', /not a recovery share \(not valid JSON\)/, RecoveryShareFormatError],
    ];
    for (const [text, message, type] of cases) {
      const e = await rejects(() => decodeShareFile(text, 'f.json'), type, message);
      expect((e as { source?: string }).source).toBe('f.json');
    }
  });

  it('any single changed character of a share file is caught: a typed error, or the same share (whitespace)', async () => {
    const id = generateIdentity('x-wing', { name: 'alice' });
    const [s] = await splitIdentity(id, { threshold: 2, shares: 3 });
    const text = encodeShareFile(s!);
    let damaged = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i] === 'A' ? 'B' : text[i] === '"' ? 'x' : String.fromCharCode(text.charCodeAt(i) ^ 1);
      const mutated = text.slice(0, i) + c + text.slice(i + 1);
      try {
        const back = decodeShareFile(mutated, 'f');
        expect(Buffer.from(back.share)).toEqual(Buffer.from(s!.share));
        expect(back.backupId).toBe(s!.backupId);
      } catch (e) {
        expect(e).toBeInstanceOf(MongoCapsuleError);
        if (e instanceof RecoveryShareDamagedError) damaged++;
      }
    }
    expect(damaged).toBeGreaterThan(100);
  });
});

describe('printed shares', () => {
  it('round-trip, mix with share files, accept lower case and extra spaces', async () => {
    const id = generateIdentity('ml-kem-1024', { name: 'alice' });
    const shares = await splitIdentity(id, { threshold: 2, shares: 3 });
    const text = encodePrintableShare(shares[2]!);
    expect(text).toMatch(/^01: [A-Z2-7]{4}( [A-Z2-7]{4}){7} {2}[A-Z2-7]{4}$/m);
    const typed = text.toLowerCase().replace(/ /g, '  ');
    const [p] = decodePrintableShares(typed, 'stdin');
    expect(p!.form).toBe('printable');
    const { identity } = await combineShares([decodeShareFile(encodeShareFile(shares[0]!), 'a.json'), p!], 'alice');
    expect(identity.kid).toBe(id.kid);
    expect(decodeShareInput(new TextEncoder().encode(text), 'f.txt')).toHaveLength(1);
  });

  it('several shares on one input, each starting at line 01', async () => {
    const id = generateIdentity('x-wing', { name: 'alice' });
    const shares = await splitIdentity(id, { threshold: 3, shares: 4 });
    const parsed = decodePrintableShares([0, 1, 3].map((i) => encodePrintableShare(shares[i]!)).join('\n'), 'stdin');
    expect(parsed.map((s) => s.index)).toEqual([1, 2, 4]);
    expect(parsed[1]!.source).toMatch(/^stdin share 2 \(line \d+\)$/);
    expect((await combineShares(parsed, 'alice')).identity.kid).toBe(id.kid);
  });

  it('a typo names its line and group; a missing line, a wrong letter and NTRU are explained', async () => {
    const id = generateIdentity('ml-kem-1024', { name: 'alice' });
    const [s] = await splitIdentity(id, { threshold: 2, shares: 2 });
    const lines = encodePrintableShare(s!).split('\n');
    const at = lines.findIndex((l) => l.startsWith('03: '));
    const groups = lines[at]!.split(' ');
    const g = groups[5]!; // group 5 of line 03 (groups[0] is "03:")
    groups[5] = (g[0] === 'A' ? 'B' : 'A') + g.slice(1);
    const typo = [...lines.slice(0, at), groups.join(' '), ...lines.slice(at + 1)].join('\n');
    await rejects(() => decodePrintableShares(typo, 'stdin'), RecoveryShareDamagedError, new RegExp(`stdin, line ${at + 1}: line 03 does not match its checksum: group 5 is probably mistyped`));
    const missing = lines.filter((l) => !l.startsWith('04: ')).join('\n');
    await rejects(() => decodePrintableShares(missing, 'stdin'), RecoveryShareFormatError, /expected line 04 here, found line 05/);
    const cut = lines.filter((l) => !l.startsWith('08: ')).join('\n');
    await rejects(() => decodePrintableShares(cut, 'stdin'), RecoveryShareFormatError, /has 8 lines; this one is missing some/);
    const zero = lines.join('\n').replace(/^(01: )./m, '$10');
    await rejects(() => decodePrintableShares(zero, 'stdin'), RecoveryShareDamagedError, /"0" is not a letter of a printed share \(did you mean O\?/);
    if (getSuite('ntru-hps-4096-821').available()) {
      const [n] = await splitIdentity(generateIdentity('ntru-hps-4096-821', { name: 'n' }), { threshold: 2, shares: 2 });
      expect(() => encodePrintableShare(n!)).toThrow(MongoCapsuleError);
    }
  });
});

function rng(seed: number) {
  return (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
}

const ODD: unknown[] = [null, true, 0, -1, 1.5, 256, 2 ** 53, '', 'x', 'ml-kem-1024', '====', 'AAAA', [], {}, 'mongo-capsule-recovery-share'];

function expectTyped(fn: () => unknown, i: number): unknown {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof MongoCapsuleError)) throw new Error(`untyped error on input ${i}: ${String(e)}`);
    return undefined;
  }
}

describe('share parsers under fuzzing', () => {
  it('decodeShareFile: 30,000 inputs, only typed errors, and what decodes is the same share', async () => {
    const id = generateIdentity('ml-kem-768', { name: 'fuzz' });
    const [s] = await splitIdentity(id, { threshold: 2, shares: 3 });
    const text = encodeShareFile(s!);
    const rand = rng(0x5eed1);
    let decoded = 0;
    for (let i = 0; i < 30_000; i++) {
      let input: string | Uint8Array;
      switch (i % 5) {
        case 0: {
          const b = Buffer.from(text);
          for (let k = 0, m = 1 + rand(4); k < m; k++) b[rand(b.length)] = rand(256);
          input = new Uint8Array(b);
          break;
        }
        case 1:
          input = text.slice(0, rand(text.length));
          break;
        case 2: {
          const doc = JSON.parse(text) as Record<string, unknown>;
          const keys = Object.keys(doc);
          const r = rand(8);
          if (r === 0) delete doc[keys[rand(keys.length)]!];
          else if (r === 1) doc[`x${rand(3)}`] = 1;
          else doc[keys[rand(keys.length)]!] = ODD[rand(ODD.length)];
          if (rand(2) === 0) recomputeCheck(doc);
          input = JSON.stringify(doc);
          break;
        }
        case 3:
          input = crypto.getRandomValues(new Uint8Array(rand(400)));
          break;
        default:
          input = JSON.stringify(ODD[rand(ODD.length)]);
      }
      const out = expectTyped(() => decodeShareFile(input, 'fuzz'), i) as RecoveryShare | undefined;
      if (out !== undefined) {
        decoded++;
        expect(out.backupId).toBe(s!.backupId);
      }
    }
    expect(decoded).toBeLessThan(30_000 / 5);
  }, 120_000);

  it('decodePrintableShares: 10,000 inputs, only typed errors', async () => {
    const id = generateIdentity('x-wing', { name: 'fuzz' });
    const [s] = await splitIdentity(id, { threshold: 2, shares: 3 });
    const text = encodePrintableShare(s!);
    const rand = rng(0xabcdef);
    const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ2345670189 :#\n-';
    for (let i = 0; i < 10_000; i++) {
      let input: string;
      if (i % 3 === 0) {
        const chars = [...text];
        for (let k = 0, m = 1 + rand(3); k < m; k++) chars[rand(chars.length)] = letters[rand(letters.length)]!;
        input = chars.join('');
      } else if (i % 3 === 1) {
        const lines = text.split('\n');
        const a = rand(lines.length);
        const b = rand(lines.length);
        [lines[a], lines[b]] = [lines[b]!, lines[a]!];
        input = rand(2) === 0 ? lines.join('\n') : lines.slice(0, rand(lines.length)).join('\n');
      } else {
        input = Array.from({ length: rand(300) }, () => letters[rand(letters.length)]).join('');
      }
      const out = expectTyped(() => decodePrintableShares(input, 'fuzz'), i) as RecoveryShare[] | undefined;
      if (out !== undefined) for (const p of out) expect(p.backupId).toBe(s!.backupId);
    }
  }, 120_000);
});
