/**
 * The CLI run in-process by the tests: in-memory streams for `main` (captureCli), or a whole run giving back its
 * exit code and what it printed (runCli); and why the tests that drive it against the test server and the OS
 * keychain cannot run here.
 */
import { Readable, PassThrough } from 'node:stream';
import { main } from '../../src/cli.ts';
import type { CliIO } from '../../src/cli/types.ts';
import { csfleStatus } from '../../src/mongo/csfle.ts';
import { osKeychainUnavailableReason } from './os-keychain.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliCapture {
  io: CliIO;
  /** What was written to stdout so far. */
  out(): string;
  /** What was written to stderr so far. */
  err(): string;
}

/**
 * Streams for one CLI run: `env` as its whole environment (nothing of the test process's leaks in), `stdin` as its
 * standard input (by default one that is empty and ended), and what it writes kept. The text is decoded when read,
 * so a character split across two writes comes out whole.
 */
export function captureCli(env: NodeJS.ProcessEnv, stdin: NodeJS.ReadableStream = Readable.from([])): CliCapture {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  return { io: { stdout, stderr, stdin, env }, out: () => Buffer.concat(out).toString(), err: () => Buffer.concat(err).toString() };
}

/** Runs `mongo-capsule <args>` on `captureCli(env)` with `stdin` as its standard input, which then ends. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv, stdin = ''): Promise<CliRun> {
  const run = captureCli(env, Readable.from([Buffer.from(stdin)]));
  const code = await main(args, run.io);
  return { code, stdout: run.out(), stderr: run.err() };
}

/**
 * Why tests that need the test server, the OS keychain under `service` and (with `csfle`) a loadable
 * mongodb-client-encryption cannot run, or '' when they can. `needs` names the tests with their verb, as the
 * printed reason begins: `team CLI tests need`, `keys rotate needs`.
 */
export async function serverKeychainSkipReason(
  server: { kind: string; reason: string },
  service: string,
  needs: string,
  { csfle = false }: { csfle?: boolean } = {},
): Promise<string> {
  if (server.kind === 'none') return server.reason;
  const keychainReason = await osKeychainUnavailableReason(service);
  if (keychainReason !== undefined) return `${needs} the OS keychain: ${keychainReason}`;
  if (!csfle) return '';
  const status = csfleStatus();
  return status.available ? '' : `${needs} mongodb-client-encryption (run \`npm run setup\`): ${status.reason ?? ''}`;
}
