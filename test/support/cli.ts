/**
 * The CLI run in-process by the tests: `main` with in-memory streams, giving back its exit code and what it
 * printed; and why the tests that drive it against the test server and the OS keychain cannot run here.
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

/**
 * Runs `mongo-capsule <args>` with `env` as its whole environment (nothing of the test process's leaks in) and
 * `stdin` as its standard input, which then ends.
 */
export async function runCli(args: string[], env: NodeJS.ProcessEnv, stdin = ''): Promise<CliRun> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const io: CliIO = { stdout, stderr, stdin: Readable.from([Buffer.from(stdin)]), env };
  const code = await main(args, io);
  // Decoded once at the end, so a character split across two writes comes out whole.
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
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
