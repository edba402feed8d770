// Types of scripts/lib/script-args.mjs for the TypeScript tests.
import type { ParseArgsConfig } from 'node:util';

export class ScriptUsageError extends Error {}
export function parseScriptArgs(
  script: string,
  args: string[],
  options: NonNullable<ParseArgsConfig['options']>,
  extra?: { allowPositionals?: boolean; forbidden?: Record<string, string> },
): { values: Record<string, string | boolean | undefined>; positionals: string[] };
export function describeFailure(e: unknown): string;
export function runScript(name: string, usage: string, main: () => Promise<number>): Promise<number>;
export function integerOption(script: string, name: string, raw: string | undefined, bounds?: { min?: number; max?: number }): number | undefined;
export function userPath(path: string, env?: NodeJS.ProcessEnv): string;
