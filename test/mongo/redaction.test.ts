// No password ever leaves in a message: 10^4 generated connection strings with passwords drawn from the characters
// that break naive parsers, through the redaction functions, the driver-error mapping, connect(), the CLI in
// process (stdout, stderr, MONGO_CAPSULE_DEBUG=1) and, for a sample, the real CLI process.
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MongoError, MongoParseError } from 'mongodb';
import { encodePublicIdentity, encodeSecretIdentity } from '../../src/crypto/index.ts';
import { main } from '../../src/cli.ts';
import type { CliIO } from '../../src/cli/types.ts';
import { connect, describeHosts, mongoError, redactUri, scrubText } from '../../src/mongo/index.ts';
import { redactSecrets, secretsOf } from '../../infra/provisioner.ts';
import { testIdentity } from './support/identity.ts';

const HARD = '/?#@:%&=;,+ "\'\\[]!$()*<>~`^|{}';
const PLAIN = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._';

/** A deterministic generator, so that a failure names a reproducible case. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function password(r: () => number): string {
  const len = 10 + Math.floor(r() * 14);
  let pw = '';
  for (let i = 0; i < len; i++) {
    const roll = r();
    if (roll < 0.35) pw += HARD[Math.floor(r() * HARD.length)];
    else if (roll < 0.45) pw += ['%2F', '%40', '%3A', '%25', '%', '%zz', 'é', '€'][Math.floor(r() * 8)];
    else pw += PLAIN[Math.floor(r() * PLAIN.length)];
  }
  // At least two hard characters, and long enough that it cannot appear by chance in a host name.
  return `${HARD[Math.floor(r() * HARD.length)]}${pw}${HARD[Math.floor(r() * 6)]}Z9`;
}

const HOSTS = ['127.0.0.1:27017', 'db.example.com:27017', 'db1.example.com:27017,db2.example.com:27018', '[::1]:27017', 'localhost', 'cluster0.abcde.mongodb.net'];
const SECRET_OPTIONS = ['proxyPassword', 'tlsCertificateKeyFilePassword', 'authMechanismProperties', 'PROXYPASSWORD', 'proxyUsername', 'unknownOption'];

interface Case {
  uri: string;
  pw: string;
}

function generate(r: () => number, port?: number): Case {
  const pw = password(r);
  const enc = encodeURIComponent(pw);
  const scheme = r() < 0.3 ? 'mongodb+srv://' : r() < 0.5 ? 'MONGODB://' : 'mongodb://';
  const host = port !== undefined ? `127.0.0.1:${port}` : HOSTS[Math.floor(r() * HOSTS.length)]!;
  const path = ['/', '', '/admin', '/app'][Math.floor(r() * 4)]!;
  const user = ['admin', 'u', 'a:b', 'user%40corp'][Math.floor(r() * 4)]!;
  const form = Math.floor(r() * 6);
  const opt = SECRET_OPTIONS[Math.floor(r() * SECRET_OPTIONS.length)]!;
  const value = opt === 'authMechanismProperties' ? `AWS_SESSION_TOKEN:${enc}` : r() < 0.5 ? enc : pw;
  const more = r() < 0.5 ? '&replicaSet=rs0' : '';
  switch (form) {
    case 0: // raw password in the user info (not percent-encoded: the driver rejects it, we must still redact)
      return { pw, uri: `${scheme}${user}:${pw}@${host}${path}?authSource=admin${more}` };
    case 1: // properly percent-encoded
      return { pw, uri: `${scheme}${user}:${enc}@${host}${path}${more ? `?${more.slice(1)}` : ''}` };
    case 2: // a secret-carrying option
      return { pw, uri: `${scheme}${host}/?${more.slice(1)}${more ? '&' : ''}${opt}=${value}` };
    case 3: // both
      return { pw, uri: `${scheme}${user}:${enc}@${host}${path}?${opt}=${value}${more}` };
    case 4: {
      // a password without the '@' that should end it
      const bare = pw.replace(/@/g, '');
      return { pw: bare, uri: `${scheme}${user}:${bare}/${path}` };
    }
    default: // the password then a second '@'
      return { pw, uri: `${scheme}${user}:${pw}@@${host}${path}` };
  }
}

/** Every form the password may take in text: raw, percent-encoded, decoded. */
function forms(c: Case): string[] {
  const out = new Set([c.pw, encodeURIComponent(c.pw)]);
  try {
    out.add(decodeURIComponent(c.pw));
  } catch {
    /* not decodable */
  }
  return [...out].filter((s) => s.length >= 6);
}

function leaks(c: Case, text: string): string | undefined {
  return forms(c).find((f) => text.includes(f));
}

function errorText(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 10 && cur !== undefined && cur !== null; i++) {
    if (cur instanceof Error) {
      parts.push(cur.message, String(cur.stack), String((cur as { hint?: unknown }).hint ?? ''), String(cur));
      cur = cur.cause;
    } else {
      parts.push(String(cur));
      break;
    }
  }
  return parts.join('\n');
}

function capture(env: NodeJS.ProcessEnv): { io: CliIO; text: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let t = '';
  stdout.on('data', (c) => (t += String(c)));
  stderr.on('data', (c) => (t += String(c)));
  return { io: { stdout, stderr, stdin: new PassThrough(), env }, text: () => t };
}

async function closedPort(): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, 'close');
  return port;
}

describe('connection strings: no password in any message', () => {
  it('the issue\'s example: a "/" in the password', () => {
    const uri = 'mongodb://admin:CorrectHorseBattery/@db.example.com:27017/';
    expect(redactUri(uri)).toBe('mongodb://<credentials>@db.example.com:27017/');
    expect(describeHosts(uri)).toBe('db.example.com:27017');
    expect(redactUri('mongodb://admin:CorrectHorseBattery/')).not.toContain('CorrectHorseBattery');
    expect(redactUri('mongodb://h:1/?replicaSet=rs0&proxyPassword=hunter2hunter2')).toBe('mongodb://h:1/?replicaSet=rs0&proxyPassword=<redacted>');
  });

  it('10^4 generated URIs: redactUri, describeHosts, scrubText and mongoError never show the password', () => {
    const r = rng(13);
    const failures: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      const c = generate(r);
      const outputs: Record<string, string> = {
        redactUri: redactUri(c.uri),
        describeHosts: describeHosts(c.uri),
        scrubText: scrubText(`failed to connect to "${c.uri}": timeout\nsecond line ${c.uri}`),
        scrubTextKnown: scrubText(`Password ${c.pw} and ${encodeURIComponent(c.pw)} rejected`, [c.uri]),
        mongoError: errorText(mongoError(new MongoParseError(`Invalid connection string ${c.uri}`), 'connecting', c.uri)),
        mongoErrorNested: errorText(
          mongoError(new Error(`outer ${c.uri}`, { cause: new MongoError(`inner ${c.pw} / ${encodeURIComponent(c.pw)}`) }), 'seeding', c.uri),
        ),
        mongoErrorNoUri: errorText(mongoError(new MongoError(`server said mongodb://x:${encodeURIComponent(c.pw)}@h:1/`), 'listing')),
        infra: redactSecrets(`mongo-capsule provision failed: ${c.uri} ${c.pw}`, secretsOf({ uri: c.uri, rootPassword: null })),
      };
      for (const [where, text] of Object.entries(outputs)) {
        const leaked = leaks(c, text);
        if (leaked !== undefined && failures.length < 10) failures.push(`#${i} ${where}: ${JSON.stringify(c.uri)} -> ${JSON.stringify(text.slice(0, 200))}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('connect() on 200 generated URIs (nothing listening): typed errors free of the password', async () => {
    const r = rng(7);
    const port = await closedPort();
    const failures: string[] = [];
    for (let i = 0; i < 200; i++) {
      const c = generate(r, port);
      // SRV lookups need DNS; this sample is about the parser and the network error path.
      const uri = c.uri.replace(/^mongodb\+srv:/i, 'mongodb:');
      const err = await connect(uri, { serverSelectionTimeoutMS: 200, connectTimeoutMS: 200 }).then(
        (client) => client.close().then(() => undefined),
        (e: unknown) => e,
      );
      expect(err, `#${i}`).toBeInstanceOf(Error);
      const leaked = leaks({ uri, pw: c.pw }, errorText(err));
      if (leaked !== undefined) failures.push(`#${i} ${JSON.stringify(uri)}: ${errorText(err).slice(0, 300)}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);

  describe('the CLI', () => {
    let dir: string;
    let pub: string;
    let secretFile: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'mongo-capsule-redaction-'));
      const id = testIdentity('default');
      pub = join(dir, 'default.pub.json');
      secretFile = join(dir, 'default.secret.json');
      await writeFile(pub, encodePublicIdentity(id.pub));
      await writeFile(secretFile, encodeSecretIdentity(id.secret), { mode: 0o600 });
    });
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    const commands = (p: string, d: string): string[][] => [
      ['seed', '--pub', p],
      ['keys', 'rotate', '--cluster', '--pub-out', join(d, 'new.pub.json')],
      ['doctor'],
    ];

    it('seed, keys rotate --cluster and doctor with MONGODB_URI set, MONGO_CAPSULE_DEBUG=1, in process (30 URIs each)', async () => {
      const r = rng(99);
      const port = await closedPort();
      const failures: string[] = [];
      for (let i = 0; i < 30; i++) {
        // Every host is a closed local port (a mongodb+srv:// one then fails to parse: no DNS needed).
        const c = generate(r, port);
        for (const argv of commands(pub, dir)) {
          const env = { MONGODB_URI: c.uri, MONGO_CAPSULE_DEBUG: '1', MONGO_CAPSULE_SECRET_IDENTITY_FILE: secretFile };
          const run = capture(env);
          const code = await main(argv, run.io);
          expect(code, `${argv.join(' ')} #${i}`).not.toBe(0);
          const leaked = leaks({ uri: env.MONGODB_URI, pw: c.pw }, run.text());
          if (leaked !== undefined) failures.push(`${argv.join(' ')} #${i} ${JSON.stringify(env.MONGODB_URI)}: ${run.text().slice(0, 400)}`);
        }
      }
      expect(failures).toEqual([]);
    }, 300_000);

    it('the real CLI process (a sample): stdout and stderr free of the password', async () => {
      const r = rng(5);
      const port = await closedPort();
      const failures: string[] = [];
      for (let i = 0; i < 3; i++) {
        const c = generate(r, port);
        const uri = c.uri.replace(/^mongodb\+srv:/i, 'mongodb:');
        for (const argv of commands(pub, dir)) {
          const res = spawnSync(process.execPath, ['bin/mongo-capsule', ...argv], {
            env: { ...process.env, MONGODB_URI: uri, MONGO_CAPSULE_DEBUG: '1', MONGO_CAPSULE_SECRET_IDENTITY_FILE: secretFile },
            encoding: 'utf8',
            timeout: 60_000,
          });
          expect(res.status, `${argv.join(' ')}: ${res.stderr}`).not.toBe(0);
          expect(res.status).not.toBe(70);
          const text = `${res.stdout}\n${res.stderr}`;
          if (leaks({ uri, pw: c.pw }, text) !== undefined) failures.push(`${argv.join(' ')} ${JSON.stringify(uri)}: ${text.slice(0, 400)}`);
        }
      }
      expect(failures).toEqual([]);
    }, 300_000);
  });
});
