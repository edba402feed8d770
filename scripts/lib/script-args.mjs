// Strict option parsing and error reporting shared by the user-facing scripts (init, rs-setup, up, down, e2e).
//
// Why node:util parseArgs and not zx's `argv` (minimist): minimist accepts any flag, so a typo such as
// `--dryrun` would silently run the real thing. Here an unknown or malformed option is a usage error.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** A wrong invocation: printed with the script's usage, exit code 2. */
export class ScriptUsageError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ScriptUsageError';
  }
}

/**
 * Parses `args` against `options` (node:util parseArgs format). `--help`/`-h` is always accepted.
 * Options listed in `forbidden` (name → reason) are refused with that reason, e.g. a `--password` flag.
 * @returns {{ values: Record<string, any>, positionals: string[] }}
 */
export function parseScriptArgs(script, args, options, { allowPositionals = false, forbidden = {} } = {}) {
  for (const arg of args) {
    if (arg === '--') break;
    const name = /^--([^=]+)/.exec(arg)?.[1];
    if (name !== undefined && Object.hasOwn(forbidden, name)) throw new ScriptUsageError(`${script}: --${name} is not accepted: ${forbidden[name]}`);
  }
  try {
    return parseArgs({ args, options: { help: { type: 'boolean', short: 'h' }, ...options }, strict: true, allowPositionals });
  } catch (e) {
    throw new ScriptUsageError(`${script}: ${String(e?.message ?? e).split('\n')[0]}`);
  }
}

/** One line for a failed step: the child's stderr when there is one, else the message; never a stack trace. */
export function describeFailure(e) {
  const stderr = typeof e?.stderr === 'string' ? e.stderr.trim() : '';
  if (stderr) return stderr;
  return String(e?.message ?? e).split('\n')[0];
}

/**
 * Runs a script's main function: usage errors print usage (exit 2), anything else prints one line (exit 1).
 * `main` resolves to the exit code.
 */
export async function runScript(name, usage, main) {
  try {
    return await main();
  } catch (e) {
    if (e instanceof ScriptUsageError) {
      process.stderr.write(`${e.message}\n\n${usage.trimEnd()}\n`);
      return 2;
    }
    process.stderr.write(`${name}: ${describeFailure(e)}\n`);
    if (e?.hint) process.stderr.write(`hint: ${e.hint}\n`);
    return 1;
  }
}

/** Parses a positive integer option value, or throws a usage error naming the option. */
export function integerOption(script, name, raw, { min = 1, max = Number.MAX_SAFE_INTEGER } = {}) {
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ScriptUsageError(`${script}: --${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * A path the user typed, made absolute against the directory they typed it in: `npm run` changes to the project
 * root but keeps the original directory in INIT_CWD.
 */
export function userPath(path, env = process.env) {
  return resolve(env.INIT_CWD ?? process.cwd(), path);
}
