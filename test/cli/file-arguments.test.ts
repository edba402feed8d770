// Every file argument of every command, given something that is not the file it wants (missing, a directory, a
// socket nobody can read, a dangling link, empty, huge, /dev/zero, garbage): a typed error (exit 1, never 70 "a
// bug"), one line of message and one of hint, no stack trace, and nothing written.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePublicIdentity, encodeSecretIdentity, generateIdentity, toPublicIdentity, wrapKey, wipeSecretIdentity } from '../../src/crypto/index.ts';
import { main } from '../../src/cli.ts';
import { INPUT_LIMITS } from '../../src/files.ts';
import { captureCli } from '../support/cli.ts';


async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    out.push(e.name);
    if (e.isDirectory()) out.push(...(await listing(join(dir, e.name))).map((n) => `${e.name}/${n}`));
  }
  return out.sort();
}

let root: string;
let fx: Record<string, string>;
let out: string;
let socketServer: Server;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'mongo-capsule-files-'));
  const id = generateIdentity('ml-kem-768', { name: 'files' });
  const cmk = randomBytes(96);
  fx = {
    pub: join(root, 'files.pub.json'),
    secret: join(root, 'files.secret.json'),
    cmk: join(root, 'cmk.bin'),
    capsule: join(root, 'files.capsule'),
    missing: join(root, 'nope.json'),
    dir: join(root, 'a-directory'),
    socket: join(root, 'a.sock'),
    dangling: join(root, 'dangling-link'),
    empty: join(root, 'empty'),
    huge: join(root, 'huge'),
    garbage: join(root, 'garbage'),
    notDir: join(root, 'empty', 'child'),
  };
  await writeFile(fx.pub!, encodePublicIdentity(toPublicIdentity(id)));
  await writeFile(fx.secret!, encodeSecretIdentity(id), { mode: 0o600 });
  await writeFile(fx.cmk!, cmk);
  await writeFile(fx.capsule!, wrapKey(cmk, toPublicIdentity(id), { name: 'files', signer: id }));
  wipeSecretIdentity(id);
  await mkdir(fx.dir!);
  socketServer = createServer().listen(fx.socket);
  await once(socketServer, 'listening');
  await symlink(join(root, 'no-such-target'), fx.dangling!);
  await writeFile(fx.empty!, '');
  await writeFile(fx.huge!, '');
  await truncate(fx.huge!, 200 * 1024 * 1024); // sparse: large, costs no disk
  await writeFile(fx.garbage!, randomBytes(700));
  out = join(root, 'out');
  await mkdir(out);
  // The secret comes from the documented headless opt-in, never from the user's keychain; `migrate` gets a
  // keychain service of its own that is never reached (it fails on the file first).
  env = { MONGO_CAPSULE_SECRET_IDENTITY_FILE: fx.secret, MONGODB_URI: 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200', MONGO_CAPSULE_KEYCHAIN_SERVICE: 'mongo-capsule-test-files' };
});

afterAll(async () => {
  socketServer?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

const BAD = ['missing', 'dir', 'socket', 'dangling', 'empty', 'huge', 'zero', 'garbage', 'notDir'] as const;

/** Each file argument of each command, with valid values for all the others. */
const ARGUMENTS: { name: string; argv: (bad: string) => string[]; env?: (e: NodeJS.ProcessEnv) => NodeJS.ProcessEnv; skip?: readonly string[] }[] = [
  { name: 'inspect <file>', argv: (b) => ['inspect', b] },
  { name: 'wrap --pub', argv: (b) => ['wrap', '--pub', b, '--in', fx.cmk!, '--out', join(out, 'w.capsule')] },
  { name: 'wrap --in', argv: (b) => ['wrap', '--pub', fx.pub!, '--in', b, '--out', join(out, 'w.capsule')] },
  { name: 'wrap --sign', argv: (b) => ['wrap', '--pub', fx.pub!, '--in', fx.cmk!, '--out', join(out, 'w.capsule'), '--sign', b] },
  { name: 'unwrap --secret', argv: (b) => ['unwrap', '--secret', b, '--in', fx.capsule!, '--out', join(out, 'cmk.out')] },
  { name: 'unwrap --in', argv: (b) => ['unwrap', '--secret', fx.secret!, '--in', b, '--out', join(out, 'cmk.out')] },
  { name: 'unwrap --verify', argv: (b) => ['unwrap', '--secret', fx.secret!, '--in', fx.capsule!, '--out', join(out, 'cmk.out'), '--verify', b] },
  { name: 'seed --pub', argv: (b) => ['seed', '--pub', b] },
  { name: 'keys rotate --verify', argv: (b) => ['keys', 'rotate', '--name', 'files', '--capsules', out, '--pub-out', join(out, 'new.pub.json'), '--verify', b] },
  {
    name: 'keys migrate --from',
    argv: (b) => ['keys', 'migrate', '--from', b, '--keep-file', '--name', 'files-migrate'],
    env: (e) => ({ ...e, MONGO_CAPSULE_SECRET_IDENTITY_FILE: undefined }),
  },
  {
    name: 'keys migrate --public',
    argv: (b) => ['keys', 'migrate', '--from', fx.garbage!, '--public', b, '--keep-file', '--name', 'files-migrate'],
    env: (e) => ({ ...e, MONGO_CAPSULE_SECRET_IDENTITY_FILE: undefined }),
  },
  { name: 'keys backup --custodian', argv: (b) => ['keys', 'backup', '--name', 'files', '--shares', '2', '--threshold', '2', '--out-dir', out, '--custodian', fx.pub!, '--custodian', b] },
  { name: 'keys open-share --share', argv: (b) => ['keys', 'open-share', '--share', b, '--identity', 'files', '--out', join(out, 'opened.json')] },
  { name: 'keys restore --share', argv: (b) => ['keys', 'restore', '--name', 'files', '--share', b, '--share', b] },
  { name: 'env MONGO_CAPSULE_SECRET_IDENTITY_FILE', argv: () => ['keys', 'status', '--name', 'files'], env: () => ({}) },
];

describe('file arguments: a typed error for anything that is not the file wanted', () => {
  for (const arg of ARGUMENTS) {
    for (const kind of BAD) {
      it(`${arg.name}: ${kind}`, async () => {
        const bad = kind === 'zero' ? '/dev/zero' : fx[kind]!;
        const base = arg.env ? arg.env(env) : env;
        const runEnv = arg.name.startsWith('env ') ? { ...base, MONGO_CAPSULE_SECRET_IDENTITY_FILE: bad } : base;
        const before = await listing(root);
        const run = captureCli(Object.fromEntries(Object.entries(runEnv).filter(([, v]) => v !== undefined)));
        const started = Date.now();
        const code = await main(arg.argv(bad), run.io);
        const lines = run.err().trimEnd().split('\n');
        expect(code, run.err()).toBe(1);
        expect(Date.now() - started).toBeLessThan(5000);
        const errorLines = lines.filter((l) => l.startsWith('error: '));
        expect(errorLines, run.err()).toHaveLength(1);
        expect(lines.filter((l) => l.startsWith('hint: ')), run.err()).toHaveLength(1);
        expect(run.err()).not.toMatch(/\n\s+at |unexpected failure|this is a bug/);
        expect(await listing(root)).toEqual(before);
        // A secret file is refused for its mode (a sparse file made by this test is 0644) or its kind before its size.
        const secretFile = /--secret|--sign|^env /.test(arg.name);
        if (kind === 'huge' || kind === 'zero') {
          expect(run.err()).toMatch(secretFile ? /too large .*more than \d+ bytes \(the limit\)|not a regular file|accessible by other users/ : /too large .*more than \d+ bytes \(the limit\)/);
        }
        if (kind === 'missing' || kind === 'dangling') expect(run.err()).toMatch(/not found|does not exist/);
        if (kind === 'dir') expect(run.err()).toMatch(/is a directory|not a regular file/);
      });
    }
  }
});

describe('outputs: checked before anything is written', () => {
  it('keygen leaves no orphan secret file when the public file exists or its directory is missing', async () => {
    const before = await listing(root);
    for (const pubOut of [fx.pub!, join(root, 'missing-dir', 'x.pub.json'), fx.dir!]) {
      const run = captureCli({});
      const code = await main(['keygen', '--pub-out', pubOut, '--secret-out', join(out, 'k.secret.json')], run.io);
      expect(code, run.err()).toBe(1);
      expect(run.err()).not.toMatch(/\n\s+at /);
      expect(await listing(root)).toEqual(before);
    }
  });

  it('wrap --out <directory> says it wants the path of a file', async () => {
    const run = captureCli(env);
    expect(await main(['wrap', '--pub', fx.pub!, '--in', fx.cmk!, '--out', fx.dir!], run.io)).toBe(1);
    expect(run.err()).toMatch(/a-directory is a directory; an output must be the path of a file/);
  });

  it('a public identity that is not JSON: the message names the file', async () => {
    const run = captureCli(env);
    expect(await main(['wrap', '--pub', fx.garbage!, '--in', fx.cmk!, '--out', join(out, 'x.capsule')], run.io)).toBe(1);
    expect(run.err()).toContain(fx.garbage!);
  });

  it('stdin is bounded too: wrap --in - with more than a key file can hold', async () => {
    const stdin = new PassThrough();
    const run = captureCli(env, stdin);
    const pending = main(['wrap', '--pub', fx.pub!, '--in', '-', '--out', join(out, 'y.capsule')], run.io);
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 4; i++) stdin.write(chunk);
    stdin.end();
    expect(await pending).toBe(1);
    expect(run.err()).toMatch(new RegExp(`standard input is too large to be a CSFLE master key file: more than ${INPUT_LIMITS.keyFile} bytes`));
  });
});

describe('secret files: one permission rule everywhere', () => {
  it('unwrap --secret and wrap --sign refuse a secret file others can read, like the environment opt-in', async () => {
    const loose = join(root, 'loose.secret.json');
    await writeFile(loose, await import('node:fs/promises').then((f) => f.readFile(fx.secret!)));
    await chmod(loose, 0o644);
    try {
      for (const argv of [
        ['unwrap', '--secret', loose, '--in', fx.capsule!, '--out', join(out, 'cmk.out')],
        ['wrap', '--pub', fx.pub!, '--in', fx.cmk!, '--out', join(out, 'z.capsule'), '--sign', loose],
        ['keys', 'status', '--name', 'files'],
      ]) {
        const run = captureCli(argv[0] === 'keys' ? { MONGO_CAPSULE_SECRET_IDENTITY_FILE: loose } : env);
        expect(await main(argv, run.io), argv.join(' ')).toBe(1);
        expect(run.err()).toMatch(/is accessible by other users \(mode 644\)/);
        expect(run.err()).toMatch(/hint: restrict it: `chmod 600/);
      }
    } finally {
      await rm(loose, { force: true });
    }
  });
});

describe('the real process', () => {
  it('/dev/zero as any input ends quickly in the typed error, with bounded memory', () => {
    for (const argv of [
      ['inspect', '/dev/zero'],
      ['wrap', '--pub', fx.pub!, '--in', '/dev/zero', '--out', join(out, 'p.capsule')],
      ['unwrap', '--secret', fx.secret!, '--in', '/dev/zero', '--out', join(out, 'p.out')],
      ['wrap', '--pub', '/dev/zero', '--in', fx.cmk!, '--out', join(out, 'p.capsule')],
      ['seed', '--pub', '/dev/zero'],
    ]) {
      const r = spawnSync(process.execPath, ['--max-old-space-size=128', 'bin/mongo-capsule', ...argv], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, MONGODB_URI: 'mongodb://127.0.0.1:1/' } });
      expect(r.status, `${argv.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(/\/dev\/zero is too large to be/);
    }
  }, 120_000);

  it('a reader that goes away (| head) ends the CLI quietly, no EPIPE stack trace', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['bin/mongo-capsule', 'suites'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // the reader is gone before the first write
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += String(c)));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(stderr).not.toMatch(/EPIPE|\n\s+at /);
    expect([0, 141]).toContain(code);
  });
});
