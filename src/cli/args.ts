/** Strict option parsing for CLI commands: unknown or malformed options are usage errors, not surprises. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.ts';
import { redactUri } from '../uri-redaction.mjs';
import type { CliIO } from './types.ts';

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseCommandArgs<O extends Options>(command: string, args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals });
  } catch (e) {
    const message = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    throw new UsageError(`${command}: ${message}`, `run \`mongo-capsule ${command} --help\` for usage`);
  }
}

/** The value of a required string option, or a usage error naming it. */
export function required(command: string, values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) {
    throw new UsageError(`${command}: missing required option --${name}`, `run \`mongo-capsule ${command} --help\` for usage`);
  }
  return v;
}

/** An optional whole number of milliseconds (`--client-wait-ms`), or a usage error naming the option. */
export function millisFrom(command: string, values: Record<string, unknown>, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v) || !Number.isSafeInteger(n)) {
    throw new UsageError(`${command}: --${name} must be a whole number of milliseconds, not ${JSON.stringify(v)}`);
  }
  return n;
}

/**
 * The connection string of a command: `--uri`, else the MONGODB_URI variable (preferred: it keeps passwords off
 * command lines and out of shell history). A password given with --uri is used, with a warning.
 */
export function uriFrom(command: string, values: { uri?: string | undefined }, io: CliIO): string {
  const uri = values.uri ?? io.env.MONGODB_URI;
  if (uri === undefined || uri.length === 0) {
    throw new UsageError(`${command}: no connection string`, 'set MONGODB_URI (preferred) or pass --uri <mongodb://…>');
  }
  // Allowed (it is the user's choice), but never silently: argv is readable by every user of the machine.
  if (values.uri !== undefined && holdsSecret(values.uri)) {
    io.stderr.write(`warning: ${command}: the --uri holds a password, which other users of this machine can read in the process list; prefer MONGODB_URI\n`);
  }
  return uri;
}

/** A password in the user info (a ':' before the last '@'), or an option whose value is secret. */
function holdsSecret(uri: string): boolean {
  const authority = uri.replace(/^mongodb(\+srv)?:\/\//i, '');
  return authority.slice(0, Math.max(0, authority.lastIndexOf('@'))).includes(':') || redactUri(uri).includes('=<redacted>');
}
