/** Strict option parsing for CLI commands: unknown or malformed options are usage errors, not surprises. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.ts';

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
