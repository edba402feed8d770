/**
 * The mongo-capsule command line: one dispatcher, one module per command group under `src/cli/`, loaded only when
 * one of its commands runs (src/cli/command-index.ts).
 * Expected failures are `MongoCapsuleError`s: printed as one line plus a hint, exit code 1, no stack trace.
 * Anything else is a bug: printed as one line with a request to report it, exit code 70.
 */
import { isMongoCapsuleError, UsageError } from './errors.ts';
import { scrubText } from './uri-redaction.mjs';
import type { CliIO } from './cli/types.ts';
import { COMMAND_INDEX, loadCommand } from './cli/command-index.ts';

function helpText(): string {
  const width = Math.max(...Object.keys(COMMAND_INDEX).map((n) => n.length));
  const lines = Object.entries(COMMAND_INDEX).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
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

/** A reader that went away (`mongo-capsule … | head -3`): stop at once, quietly, with the status of SIGPIPE. */
function exitOnBrokenPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(141);
    throw e;
  });
}

function defaultIO(): CliIO {
  exitOnBrokenPipe(process.stdout);
  exitOnBrokenPipe(process.stderr);
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

/** Connection strings the user handed this run (their secrets must not come back in an error). */
function knownUris(argv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const uris = env.MONGODB_URI ? [env.MONGODB_URI] : [];
  argv.forEach((a, i) => {
    if (a === '--uri' && argv[i + 1] !== undefined) uris.push(argv[i + 1]!);
    else if (a.startsWith('--uri=')) uris.push(a.slice('--uri='.length));
  });
  return uris;
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
    const command = await loadCommand(name);
    if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(`${command.usage.trimEnd()}\n`);
      return 0;
    }
    return await command.run(rest, io);
  } catch (e) {
    return reportError(e, io, knownUris(argv, io.env));
  }
}

/**
 * Prints an error: message + hint (exit 1), or, for what is not a MongoCapsuleError, a request to report a bug
 * (exit 70). Every line is scrubbed once more of the connection strings given (`uris`) and of any embedded one:
 * the layers below already keep secrets out, this is the last line of defence.
 */
export function reportError(e: unknown, io: Pick<CliIO, 'stderr' | 'env'>, uris: readonly string[] = []): number {
  const write = (text: string) => io.stderr.write(`${scrubText(text, uris)}\n`);
  if (isMongoCapsuleError(e)) {
    write(`error: ${e.message}`);
    if (e.hint) write(`hint: ${e.hint}`);
    if (io.env.MONGO_CAPSULE_DEBUG === '1' && e.cause !== undefined) write(`cause: ${String(e.cause)}`);
    return 1;
  }
  const message = e instanceof Error ? e.message : String(e);
  write(`error: unexpected failure: ${message.split('\n')[0]}`);
  write('hint: this is a bug in mongo-capsule; rerun with MONGO_CAPSULE_DEBUG=1 and report it');
  if (io.env.MONGO_CAPSULE_DEBUG === '1' && e instanceof Error && e.stack) write(e.stack);
  return 70;
}
