/**
 * `keys grant` and `keys revoke` survive a SIGKILL at any step and a rerun. The real CLI (bin/mongo-capsule) runs
 * as a child process against the test server, with every identity in the OS keychain (a test service of its own),
 * and is killed when one of its progress lines appears, or after a random delay. After each kill the capsule
 * document must be consistent (unchanged, or with exactly one well-formed entry for the new recipient), every old
 * recipient must still open it, and a rerun must finish the job exactly once.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Binary, type Document, type MongoClient } from 'mongodb';
import { main } from '../../src/cli.ts';
import type { CliIO } from '../../src/cli/types.ts';
import { decodePublicIdentity, encodePublicIdentity, parseCapsule, recipientTag, type PublicIdentity } from '../../src/crypto/index.ts';
import { KeyManager, OsKeychain } from '../../src/keys/index.ts';
import { CapsuleStore, openEncryptedClient } from '../../src/mongo/index.ts';
import { csfleStatus } from '../../src/mongo/csfle.ts';
import { osKeychainUnavailableReason } from '../support/os-keychain.ts';
import { describeIf } from '../support/skip.ts';
import { connectTestClient, server, uniqueDbName } from './support/server.ts';

const SERVICE = `mongo-capsule-test-grantkill-${randomBytes(6).toString('hex')}`;
const BIN = fileURLToPath(new URL('../../bin/mongo-capsule', import.meta.url));
const keychainReason = server.kind === 'none' ? undefined : await osKeychainUnavailableReason(SERVICE);
const csfle = csfleStatus();
const reason =
  server.kind === 'none'
    ? server.reason
    : keychainReason !== undefined
      ? `grant/revoke kill tests need the OS keychain: ${keychainReason}`
      : !csfle.available
        ? `grant/revoke kill tests need mongodb-client-encryption (run \`npm run setup\`): ${csfle.reason ?? ''}`
        : '';

const env = () => ({ ...process.env, MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, MONGODB_URI: server.uri });

/** In-process CLI, for the setup only (creating identities, seeding). */
async function runInProcess(args: string[]) {
  let out = '';
  let err = '';
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  stdout.on('data', (c) => (out += String(c)));
  stderr.on('data', (c) => (err += String(c)));
  const io: CliIO = { stdout, stderr, stdin: new PassThrough(), env: { MONGO_CAPSULE_KEYCHAIN_SERVICE: SERVICE, MONGODB_URI: server.uri } };
  const code = await main(args, io);
  return { code, stdout: out, stderr: err };
}

interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** ms from the spawn to the exit. */
  ms: number;
}

/** When to SIGKILL: `delayMs` (default 0) after `killOn` first appears on stderr or stdout, or after the spawn. */
interface KillPoint {
  killOn?: RegExp;
  delayMs?: number;
}

/** The real CLI as a child process, killed at `kill` when given. */
function spawnCli(args: string[], kill?: KillPoint): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [BIN, ...args], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killSent = false;
    const killNow = () => {
      if (!killSent && child.exitCode === null && child.signalCode === null) {
        killSent = true;
        child.kill('SIGKILL');
      }
    };
    let timer: NodeJS.Timeout | undefined;
    let armed = false;
    const arm = () => {
      armed = true;
      if (kill?.delayMs) timer = setTimeout(killNow, kill.delayMs);
      else killNow();
    };
    const watch = () => {
      if (!armed && kill?.killOn !== undefined && (kill.killOn.test(stderr) || kill.killOn.test(stdout))) arm();
    };
    child.stdout.on('data', (c) => {
      stdout += String(c);
      watch();
    });
    child.stderr.on('data', (c) => {
      stderr += String(c);
      watch();
    });
    if (kill !== undefined && kill.killOn === undefined) arm();
    // A run that hangs is a failure, not a kill point.
    let hung = false;
    const guard = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, 25_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      clearTimeout(timer);
      if (hung) reject(new Error(`mongo-capsule ${args.join(' ')} hung for 25 s; its stderr: ${stderr}`));
      else resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

const sha256Hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const bytesOf = (b: unknown) => (b instanceof Binary ? new Uint8Array(b.buffer) : (b as Uint8Array));

describeIf(reason === '', reason)(`keys grant and keys revoke survive a SIGKILL at any step (${server.description})`, () => {
  // The grant and the revoke tests run side by side, each on a cluster database of its own (capsule, key vault, data).
  const grantDb = uniqueDbName('grantkill');
  const revokeDb = uniqueDbName('revokekill');
  const nsOf = (db: string) => ['--capsules', `${db}.capsules`, '--key-vault', `${db}.__keyVault`];
  const tag = randomBytes(3).toString('hex');
  const capsule = 'team';
  const granter = `alice-${tag}`;
  const member = `bob-${tag}`;
  /** One new identity per kill point, so that every grant starts from "not a recipient". */
  const grantees = Array.from({ length: 4 }, (_, i) => `g${i}-${tag}`);
  /** Recipients from the start in the revoke test's capsule: one revoked per kill point, the last one stays. */
  const revokees = Array.from({ length: 4 }, (_, i) => `v${i}-${tag}`);
  const all = [granter, member, ...grantees, ...revokees];
  const pubs = new Map<string, PublicIdentity>();
  let dir: string;
  let plain: MongoClient;
  const pubFile = (n: string) => join(dir, `${n}.pub.json`);
  const capsules = (db: string) => plain.db(db).collection('capsules');
  /** Documents written before any grant: every grantee must read them. */
  const written = ['before-grant-1', 'before-grant-2'];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-grantkill-'));
    plain = await connectTestClient();
    // The identities as `init` makes them (the key manager's), without a process each.
    const keys = new KeyManager({ keychain: new OsKeychain({ service: SERVICE }) });
    await Promise.all(
      all.map(async (n) => {
        const pub = await keys.initialize(n);
        writeFileSync(pubFile(n), encodePublicIdentity(pub));
        pubs.set(n, pub);
      }),
    );
    keys.clearCache();
    for (const [db, others] of [[grantDb, [member]], [revokeDb, [member, ...revokees]]] as const) {
      const seeded = await runInProcess(['seed', ...[granter, ...others].flatMap((n) => ['--pub', pubFile(n)]), '--identity', granter, '--capsule', capsule, ...nsOf(db)]);
      expect(seeded.code, seeded.stderr).toBe(0);
      for (const v of written) await write(db, granter, v);
    }
  }, 120_000);
  afterAll(async () => {
    // Once both tests are done (they run side by side): no CLI process outlived its kill.
    if (plain !== undefined) expect(leftovers(), 'a killed CLI left a process running').toEqual([]);
    // A lock a killed run left is taken over by the next writer (its holder is gone), and a temporary file of an
    // interrupted atomic write is never read: neither blocks a rerun, but say whether one was left.
    const state = process.env.MONGO_CAPSULE_STATE_DIR;
    if (state !== undefined) {
      const left = (readdirSync(state, { recursive: true }) as string[]).filter((f) => /\.lock|\.tmp$/.test(f));
      console.log(`[grant-kill] lock or temporary files left in the state directory: ${left.join(', ') || 'none'}`);
    }
    for (const n of all) await runInProcess(['keys', 'delete', '--name', n, '--yes']);
    for (const db of [grantDb, revokeDb]) await plain?.db(db).dropDatabase();
    await plain?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const keyManager = () => new KeyManager({ keychain: new OsKeychain({ service: SERVICE }), trustedSigners: [...pubs.values()] });

  async function withClient<T>(db: string, identity: string, f: (enc: Awaited<ReturnType<typeof openEncryptedClient>>) => Promise<T>): Promise<T> {
    const keys = keyManager();
    const enc = await openEncryptedClient({ uri: server.uri, capsuleName: capsule, capsuleNamespace: `${db}.capsules`, keyVaultNamespace: `${db}.__keyVault`, unwrap: keys, identity, refreshIntervalMS: 0 });
    try {
      return await f(enc);
    } finally {
      await enc.close();
      keys.clearCache();
    }
  }
  async function write(db: string, identity: string, v: string): Promise<void> {
    await withClient(db, identity, async (enc) => {
      await enc.client.db(db).collection('data').insertOne({ v: await enc.encryptRandom(v, 'notes') });
    });
  }
  async function read(db: string, identity: string): Promise<string[]> {
    return withClient(db, identity, async (enc) => (await enc.client.db(db).collection('data').find({}).toArray()).map((d) => d.v as string).sort());
  }
  /** The live CMK, opened by `identity` from its own entry. */
  async function cmkOf(identity: string, bytes: Uint8Array): Promise<Uint8Array> {
    const keys = keyManager();
    try {
      return await keys.unwrap(bytes, identity);
    } finally {
      keys.clearCache();
    }
  }

  const rawCapsule = async (db: string) => {
    const d = await capsules(db).findOne({ name: capsule });
    expect(d, 'the capsule document is gone').not.toBeNull();
    return d!;
  };
  const json = (d: Document) => JSON.stringify(d, (_k, v: unknown) => (v instanceof Binary ? sha256Hex(v.buffer) : v));
  const wholeDocument = json;
  /** Everything of the document but the list of further recipients (which a grant may change). */
  const fixedPart = (d: Document) => {
    const { recipients: _r, recipientsDigest: _d, ...rest } = d;
    return json(rest);
  };
  const entryKids = (d: Document) => (d.recipients as Document[]).map((e) => e.kid as string);

  /**
   * The document is the one of `before`, with its recipient list unchanged or with exactly one more entry: a
   * well-formed one for `newName`, which opens to the live CMK. Returns whether the entry is there.
   */
  async function expectConsistent(db: string, before: Document, newName: string): Promise<boolean> {
    const now = await rawCapsule(db);
    const newKid = pubs.get(newName)!.kid;
    expect(fixedPart(now), 'the live capsule changed').toBe(fixedPart(before));
    const list = now.recipients as Document[];
    const kids = [parseCapsule(bytesOf(now.bytes)).header.kid, ...entryKids(now)];
    expect(new Set(kids).size, `duplicate kid in ${kids.join(', ')}`).toBe(kids.length);
    expect(now.recipientsDigest).toBe(sha256Hex(new TextEncoder().encode(`recipients\0${list.map((e) => String(e.sha256)).join(',')}`)));
    // The store's own reading of it (which checks the list against its digest) agrees.
    const record = await new CapsuleStore(plain, { namespace: `${db}.capsules` }).load(capsule);
    expect(record.recipients.map((e) => e.header.kid)).toEqual([record.header.kid, ...entryKids(now)]);
    const old = before.recipients as Document[];
    expect(list.slice(0, old.length).map((e) => e.sha256)).toEqual(old.map((e) => e.sha256));
    if (list.length === old.length) return false;
    expect(list.length, 'more than one entry was added').toBe(old.length + 1);
    const e = list[old.length]!;
    const bytes = bytesOf(e.bytes);
    const header = parseCapsule(bytes).header;
    expect(e.kid).toBe(newKid);
    expect(header.kid).toBe(newKid);
    expect(header.name).toBe(capsule);
    expect(header.signerKid).toBe(pubs.get(granter)!.signer.kid);
    expect(e.sha256).toBe(sha256Hex(bytes));
    expect(decodePublicIdentity(new TextEncoder().encode(e.publicIdentity as string)).kid).toBe(newKid);
    const live = await cmkOf(granter, bytesOf(now.bytes));
    const theirs = await cmkOf(newName, bytes);
    try {
      expect(timingSafeEqual(live, theirs), 'the new entry opens to another key').toBe(true);
      expect(sha256Hex(bytesOf(e.tag))).toBe(sha256Hex(recipientTag(live, capsule, e.publicIdentity as string)));
    } finally {
      live.fill(0);
      theirs.fill(0);
    }
    return true;
  }

  const grantArgs = (n: string) => ['keys', 'grant', '--pub', pubFile(n), '--identity', granter, '--capsule', capsule, ...nsOf(grantDb)];
  /** Which kill points were reached, for the summary. */
  const outcomes: string[] = [];

  /** Kill one grant of `grantee`, check, rerun twice. */
  async function killGrantAndRerun(grantee: string, point: string, kill: KillPoint, options: { killNoOp?: boolean } = {}) {
    const before = await rawCapsule(grantDb);
    const killed = await spawnCli(grantArgs(grantee), kill);
    const kid = pubs.get(grantee)!.kid;
    const wasKilled = killed.signal === 'SIGKILL';
    if (!wasKilled) expect(killed.code, `${point}: ${killed.stderr}`).toBe(0);
    const added = await expectConsistent(grantDb, before, grantee);
    outcomes.push(`${point}: ${wasKilled ? 'killed' : 'finished first'} after ${killed.ms} ms, entry ${added ? 'written' : 'not written'}`);
    // Every old recipient still opens it.
    expect(await Promise.all([read(grantDb, granter), read(grantDb, member)])).toEqual([written, written]);

    const rerun = await spawnCli(grantArgs(grantee));
    expect(rerun.code, `${point}, rerun: ${rerun.stderr}`).toBe(0);
    expect(rerun.stdout).toContain(added ? `key ${kid} (${grantee}) already is a recipient (unchanged)` : `granted to key ${kid} (${grantee})`);
    expect(await expectConsistent(grantDb, before, grantee)).toBe(true);
    expect(entryKids(await rawCapsule(grantDb)).filter((k) => k === kid)).toHaveLength(1);
    // The granted identity opens the same CMK: it reads what was written before the grant.
    expect(await read(grantDb, grantee)).toEqual(written);

    if (options.killNoOp) {
      // The line of a grant that finds the recipient there already: killed at it, the run changed nothing.
      const done = await rawCapsule(grantDb);
      const noOp = await spawnCli(grantArgs(grantee), { killOn: new RegExp(`key ${kid} \\(${grantee}\\) already is a recipient; nothing changed\\n`) });
      outcomes.push(`${point}, then a no-op rerun at "already is a recipient; nothing changed": ${noOp.signal === 'SIGKILL' ? 'killed' : 'finished first'} after ${noOp.ms} ms`);
      if (noOp.signal !== 'SIGKILL') expect(noOp.code, noOp.stderr).toBe(0);
      expect(wholeDocument(await rawCapsule(grantDb))).toBe(wholeDocument(done));
    }
    // The third run in this process (a child process costs a second or two of start-up on a busy machine).
    const third = await runInProcess(grantArgs(grantee));
    expect(third.code, `${point}, third run: ${third.stderr}`).toBe(0);
    expect(third.stdout).toContain(`key ${kid} (${grantee}) already is a recipient (unchanged)`);
    return { killed, rerun };
  }

  /** Processes of the CLI still running (where /proc exists): a killed one must leave nothing behind. */
  function leftovers(): string[] {
    if (process.platform !== 'linux') return [];
    const found: string[] = [];
    for (const pid of readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p))) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        if (cmdline.includes(BIN)) found.push(`${pid}: ${cmdline.join(' ')}`);
      } catch {
        /* gone meanwhile */
      }
    }
    return found;
  }

  it.concurrent('keys grant: killed at each progress line and at random delays, a rerun adds the recipient exactly once', async () => {
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const [g0, g1, r0, r1] = grantees as [string, string, string, string];
    const started = Date.now();
    // The progress lines of grantRecipient on stderr (src/mongo/recipients.ts), in order (the third, "already is a
    // recipient; nothing changed", on a rerun). What follows the last one (closing, recording the location, the
    // result on stdout) is covered by the random delays.
    const first = await killGrantAndRerun(g0, 'at "the CMK ... opens its data keys"', { killOn: new RegExp(`the CMK of capsule ${esc(capsule)} opens its data keys\\n`) });
    await killGrantAndRerun(g1, 'at "sealed for key ... too"', { killOn: new RegExp(`capsule ${esc(capsule)}: sealed for key ${pubs.get(g1)!.kid} \\(${esc(g1)}\\) too\\n`) }, { killNoOp: true });
    // Random delays: one from the spawn over the span of an uninterrupted run (mostly start-up: keychain, connect,
    // opening the capsule), one from the first progress line (the last steps: seal, write, close, record).
    const fromSpawn = randomInt(0, first.rerun.ms + 1);
    const fromLine = randomInt(0, 100);
    await killGrantAndRerun(r0, `${fromSpawn} ms after the spawn (random)`, { delayMs: fromSpawn });
    await killGrantAndRerun(r1, `${fromLine} ms after the first progress line (random)`, { killOn: /\n/, delayMs: fromLine });
    console.log(`[grant-kill] ${outcomes.filter((o) => !o.startsWith('revoke')).join('\n[grant-kill] ')}\n[grant-kill] ${Date.now() - started} ms`);
    const record = await new CapsuleStore(plain, { namespace: `${grantDb}.capsules` }).load(capsule);
    expect(record.recipients.map((e) => e.header.kid)).toEqual([granter, member, ...grantees].map((n) => pubs.get(n)!.kid));
  }, 120_000);

  it.concurrent('keys revoke: killed during its CMK rotation, a rerun finishes it; the revoked key opens nothing, the others read everything', async () => {
    const started = Date.now();
    const docs = [...written];
    // The progress lines of rotateCmk (src/mongo/rotation.ts) after the checks: before the rotation is recorded,
    // after the data keys moved, and after the swap (before the last sweep of data keys).
    // The first lands before or after the rotation is recorded (both happen), the second before or after the
    // phase is set to "rewrapped".
    const points: [string, KillPoint][] = [
      ['at "rotation ...: new CMK sealed"', { killOn: /rotation [0-9a-f]+: new CMK sealed for / }],
      ['at "rewrapped ... data key(s)"', { killOn: /rewrapped [0-9]+ data key\(s\) to / }],
      ['at "now holds the new CMK"', { killOn: /now holds the new CMK/ }],
    ];
    for (const [i, [point, kill]] of points.entries()) {
      const who = revokees[i]!;
      const kid = pubs.get(who)!.kid;
      const args = ['keys', 'revoke', '--kid', kid, '--identity', granter, '--capsule', capsule, '--client-wait-ms', '0', ...nsOf(revokeDb)];
      const before = await rawCapsule(revokeDb);
      const killed = await spawnCli(args, kill);
      const after = await rawCapsule(revokeDb);
      const kids = [parseCapsule(bytesOf(after.bytes)).header.kid, ...entryKids(after)];
      expect(new Set(kids).size, `${point}: duplicate kid in ${kids.join(', ')}`).toBe(kids.length);
      const state = after.sha256 !== before.sha256 ? 'swapped' : after.pendingRotation ? `pending (${String(after.pendingRotation.phase)})` : 'not started';
      outcomes.push(`revoke ${point}: ${killed.signal === 'SIGKILL' ? 'killed' : 'finished first'} after ${killed.ms} ms, rotation ${state}`);
      if (killed.signal !== 'SIGKILL') expect(killed.code, `${point}: ${killed.stderr}`).toBe(0);
      const digestOk = (d: Document) => d.recipientsDigest === sha256Hex(new TextEncoder().encode(`recipients\0${(d.recipients as Document[]).map((e) => String(e.sha256)).join(',')}`));
      expect(digestOk(after), `${point}: recipients' digest`).toBe(true);
      if (state === 'not started') expect(wholeDocument(after)).toBe(wholeDocument(before));
      if (state.startsWith('pending')) {
        // The rotation was recorded, and in the same update the revoked entry left the live list and the data-key
        // epoch went up by one; nothing else changed.
        expect(after.dataKeyEpoch).toBe(((before.dataKeyEpoch as number | undefined) ?? 0) + 1);
        expect(fixedPart({ ...after, pendingRotation: undefined, dataKeyEpoch: before.dataKeyEpoch })).toBe(fixedPart(before));
        const kept = (before.recipients as Document[]).filter((e) => e.kid !== kid).map((e) => e.sha256);
        expect((after.recipients as Document[]).map((e) => e.sha256)).toEqual(kept);
        expect(after.pendingRotation.revokedKid).toBe(kid);
        expect((after.pendingRotation.recipients as Document[]).map((e) => parseCapsule(bytesOf(e.bytes)).header.kid)).not.toContain(kid);
        // No state in which the rotation is pending and the revoked key still opens the live capsule.
        await expect(read(revokeDb, who), `${point}: the revoked key opens the capsule mid-rotation`).rejects.toThrow(/holds none of them|does not hold/);
      }
      if (state === 'swapped') expect(kids).not.toContain(kid);
      // Whoever is not being revoked still reads everything, mid-rotation or not.
      expect(await Promise.all([read(revokeDb, granter), read(revokeDb, member)]), point).toEqual([docs, docs]);

      const rerun = await spawnCli(args);
      expect(rerun.code, `${point}, rerun: ${rerun.stderr}`).toBe(0);
      expect(rerun.stdout).toMatch(new RegExp(`key ${kid} (revoked; the CMK was rotated|was already revoked)`));
      const done = await rawCapsule(revokeDb);
      expect(done.pendingRotation).toBeUndefined();
      expect(done.sha256).not.toBe(before.sha256);
      expect([parseCapsule(bytesOf(done.bytes)).header.kid, ...entryKids(done)]).not.toContain(kid);
      await expect(read(revokeDb, who), `${point}: the revoked key still opens the capsule`).rejects.toThrow(/holds none of them|does not hold/);
      const v = `after-revoke-${i}`;
      await write(revokeDb, granter, v);
      docs.push(v);
      docs.sort();
      const others = [granter, member, revokees[revokees.length - 1]!];
      expect(await Promise.all(others.map((o) => read(revokeDb, o))), `${point}: ${others.join(', ')}`).toEqual(others.map(() => docs));
      const third = await runInProcess(args);
      expect(third.code, `${point}, third run: ${third.stderr}`).toBe(0);
      expect(third.stdout).toContain(`key ${kid} was already revoked`);
    }
    console.log(`[grant-kill] ${outcomes.filter((o) => o.startsWith('revoke')).join('\n[grant-kill] ')}\n[grant-kill] ${Date.now() - started} ms`);
  }, 120_000);
});
