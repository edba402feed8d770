/**
 * The mongo-capsule command line: one dispatcher, one module per command group under `src/cli/`.
 * Expected failures are `MongoCapsuleError`s: printed as one line plus a hint, exit code 1, no stack trace.
 * Anything else is a bug: printed as one line with a request to report it, exit code 70.
 */
import { isMongoCapsuleError, UsageError } from './errors.ts';
import type { CliIO, Command } from './cli/types.ts';
import { cryptoCommands } from './cli/crypto-commands.ts';
import { keysCommands } from './cli/keys-commands.ts';
import { mongoCommands } from './cli/mongo-commands.ts';
import { provisionCommands } from './cli/provision-command.ts';

const COMMANDS: Record<string, Command> = {
  ...cryptoCommands,
  ...keysCommands,
  ...mongoCommands,
  ...provisionCommands,
};

function helpText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'mongo-capsule: keyfile-secured MongoDB clusters with a post-quantum sealed CSFLE master key',
    '',
    'Usage: mongo-capsule <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Options:',
    '  --help, -h     this text',
    '  --version, -V  the version of mongo-capsule',
    '',
    'Run `mongo-capsule <command> --help` for the options of one command.',
    '',
  ].join('\n');
}

function defaultIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

/** Runs the CLI with `argv` (without `node` and the script path); resolves to the exit code. */
export async function main(argv: string[], io: CliIO = defaultIO()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(helpText());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    const { createRequire } = await import('node:module');
    const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
    io.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  try {
    const command = COMMANDS[name];
    if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(`${command.usage.trimEnd()}\n`);
      return 0;
    }
    return await command.run(rest, io);
  } catch (e) {
    return reportError(e, io);
  }
}

export function reportError(e: unknown, io: Pick<CliIO, 'stderr' | 'env'>): number {
  if (isMongoCapsuleError(e)) {
    io.stderr.write(`error: ${e.message}\n`);
    if (e.hint) io.stderr.write(`hint: ${e.hint}\n`);
    if (io.env.MONGO_CAPSULE_DEBUG === '1' && e.cause !== undefined) io.stderr.write(`cause: ${String(e.cause)}\n`);
    return 1;
  }
  const message = e instanceof Error ? e.message : String(e);
  io.stderr.write(`error: unexpected failure: ${message.split('\n')[0]}\n`);
  io.stderr.write('hint: this is a bug in mongo-capsule; rerun with MONGO_CAPSULE_DEBUG=1 and report it\n');
  if (io.env.MONGO_CAPSULE_DEBUG === '1' && e instanceof Error && e.stack) io.stderr.write(`${e.stack}\n`);
  return 70;
}
