import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli.ts';
import type { CliIO } from '../../src/cli/types.ts';

const BIN = new URL('../../bin/mongo-capsule', import.meta.url).pathname;

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}

async function run(args: string[], stdin: Uint8Array = new Uint8Array()): Promise<Run> {
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks: Buffer[] = [];
  const errChunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  err.on('data', (c: Buffer) => errChunks.push(c));
  const io: CliIO = { stdout: out, stderr: err, stdin: Readable.from([Buffer.from(stdin)]), env: {} };
  const code = await main(args, io);
  return { code, stdout: Buffer.concat(chunks), stderr: Buffer.concat(errChunks).toString() };
}

let dir: string;
const p = (name: string) => join(dir, name);
const cmk = crypto.getRandomValues(new Uint8Array(96));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-cli-'));
  await writeFile(p('cmk.bin'), cmk);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('keygen', () => {
  it('writes a public file and a 0600 secret file', async () => {
    const r = await run(['keygen', '--suite', 'ml-kem-768', '--name', 'alice', '--pub-out', p('alice.pub.json'), '--secret-out', p('alice.secret.json')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toMatch(/identity alice: suite ml-kem-768, kid [0-9a-f]{32}/);
    expect((await stat(p('alice.secret.json'))).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(p('alice.pub.json'), 'utf8'))).toMatchObject({ suite: 'ml-kem-768', name: 'alice' });
  });

  it('refuses to overwrite an existing secret file and leaves it unchanged', async () => {
    const before = await readFile(p('alice.secret.json'));
    const r = await run(['keygen', '--pub-out', p('other.pub.json'), '--secret-out', p('alice.secret.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: refusing to overwrite existing file .*alice\.secret\.json\nhint: /);
    expect(await readFile(p('alice.secret.json'))).toEqual(before);
    await expect(stat(p('other.pub.json'))).rejects.toThrow();
  });

  it('reports an unknown suite with the list of known ones', async () => {
    const r = await run(['keygen', '--suite', 'rsa', '--pub-out', p('x.pub'), '--secret-out', p('x.sec')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown KEM suite "rsa"');
    expect(r.stderr).toContain('ml-kem-1024');
  });
});

describe('wrap, inspect, unwrap', () => {
  it('round-trips a key through files, signed and verified', async () => {
    expect((await run(['wrap', '--pub', p('alice.pub.json'), '--in', p('cmk.bin'), '--out', p('c.cap'), '--sign', p('alice.secret.json'), '--capsule-name', 'prod-eu'])).code).toBe(0);
    const inspected = await run(['inspect', p('c.cap')]);
    expect(inspected.code).toBe(0);
    const header = JSON.parse(inspected.stdout.toString());
    expect(header).toMatchObject({ format: 'mongo-capsule', name: 'prod-eu', suite: 'ml-kem-768', signed: true });
    expect(inspected.stdout.toString()).not.toContain(Buffer.from(cmk).toString('hex').slice(0, 12));
    const opened = await run(['unwrap', '--secret', p('alice.secret.json'), '--in', p('c.cap'), '--out', p('cmk.out'), '--require-signature']);
    expect(opened.code).toBe(0);
    expect(new Uint8Array(await readFile(p('cmk.out')))).toEqual(cmk);
    expect((await stat(p('cmk.out'))).mode & 0o777).toBe(0o600);
  });

  it('works through stdin and stdout', async () => {
    const wrapped = await run(['wrap', '--pub', p('alice.pub.json'), '--in', '-', '--out', '-'], cmk);
    expect(wrapped.code).toBe(0);
    await writeFile(p('piped.cap'), wrapped.stdout);
    const opened = await run(['unwrap', '--secret', p('alice.secret.json'), '--in', '-', '--out', '-', '--allow-unsigned'], wrapped.stdout);
    expect(opened.code).toBe(0);
    expect(new Uint8Array(opened.stdout)).toEqual(cmk);
  });

  it('refuses to replace an existing capsule unless --force', async () => {
    const before = await readFile(p('c.cap'));
    const r = await run(['wrap', '--pub', p('alice.pub.json'), '--in', p('cmk.bin'), '--out', p('c.cap')]);
    expect(r.code).toBe(1);
    expect(await readFile(p('c.cap'))).toEqual(before);
    expect((await run(['wrap', '--pub', p('alice.pub.json'), '--in', p('cmk.bin'), '--out', p('c.cap'), '--force'])).code).toBe(0);
    expect(await readFile(p('c.cap'))).not.toEqual(before);
  });

  it('a wrong key is one clear line and a hint, no stack trace, nothing written', async () => {
    await run(['keygen', '--suite', 'ml-kem-768', '--pub-out', p('bob.pub.json'), '--secret-out', p('bob.secret.json')]);
    const r = await run(['unwrap', '--secret', p('bob.secret.json'), '--in', p('c.cap'), '--out', p('bob.out'), '--allow-unsigned']);
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^error: capsule unwrap failed: wrong key/);
    expect(lines[1]).toMatch(/^hint: /);
    expect(r.stderr).not.toMatch(/\bat .*\.ts:\d+/);
    await expect(stat(p('bob.out'))).rejects.toThrow();
  });

  it('an unsigned capsule is refused unless --allow-unsigned, which warns', async () => {
    const refused = await run(['unwrap', '--secret', p('alice.secret.json'), '--in', p('c.cap'), '--out', p('u.out')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/is not signed/);
    expect(refused.stderr).toMatch(/hint: .*--allow-unsigned/);
    await expect(stat(p('u.out'))).rejects.toThrow();
    const allowed = await run(['unwrap', '--secret', p('alice.secret.json'), '--in', p('c.cap'), '--out', p('u.out'), '--allow-unsigned']);
    expect(allowed.code).toBe(0);
    expect(allowed.stderr).toMatch(/warning: .*UNSIGNED/);
  });

  it('a tampered capsule is rejected', async () => {
    const bytes = await readFile(p('c.cap'));
    bytes[60]! ^= 0x01;
    await writeFile(p('tampered.cap'), bytes);
    const r = await run(['unwrap', '--secret', p('alice.secret.json'), '--in', p('tampered.cap'), '--out', p('t.out'), '--allow-unsigned']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/wrong key or tampered capsule|signature verification failed/);
  });

  it('rejects a key of the wrong length with the reason', async () => {
    const r = await run(['wrap', '--pub', p('alice.pub.json'), '--in', '-', '--out', p('short.cap')], new Uint8Array(32));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('96-byte CSFLE local master key, got 32 bytes');
  });

  it('inspect of a non-capsule is a format error', async () => {
    const r = await run(['inspect', p('cmk.bin')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('not a valid capsule');
  });
});

describe('usage errors', () => {
  it.each([
    [['frobnicate'], /unknown command "frobnicate"/],
    [['wrap', '--pub'], /wrap: /],
    [['wrap', '--bogus', 'x'], /Unknown option '--bogus'/],
    [['unwrap', '--secret', 'x', '--name', 'y', '--in', 'x', '--out', 'y'], /either --secret <file> or --name <identity>, not both/],
    [['inspect'], /expected exactly one capsule file/],
  ])('%j', async (args, message) => {
    const r = await run(args);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/hint: /);
  });
});

describe('bin/mongo-capsule', () => {
  it('runs straight from the repository with no build step', async () => {
    const { stdout } = await promisify(execFile)(BIN, ['--help']);
    expect(stdout).toContain('Usage: mongo-capsule <command>');
    for (const command of ['keygen', 'wrap', 'unwrap', 'inspect']) expect(stdout).toContain(command);
  });

  it('exits non-zero with message and hint on failure', async () => {
    const result = await promisify(execFile)(BIN, ['inspect', join(dir, 'missing.cap')]).catch((e: { code: number; stderr: string }) => e);
    expect(result).toMatchObject({ code: 1 });
    expect((result as { stderr: string }).stderr).toMatch(/^error: file not found: .*missing\.cap\nhint: /);
  });
});
