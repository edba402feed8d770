// Types of scripts/lib/pulumi.mjs for the TypeScript tests.
import type { ProcessPromise } from 'zx';

export { DEFAULT_STACK, pulumiEnvironment } from '../../infra/backend.ts';
export const CONFIG_NAMESPACE: string;
export const OUTPUT_NAMES: string[];
export const BACKEND_HELP: string[];
export const pulumiArgs: {
  select(stack: string): string[];
  configSet(stack: string, key: string, value: string | number): string[];
  configSetSecret(stack: string, key: string): string[];
  configGet(stack: string, key: string): string[];
  up(stack: string): string[];
  outputs(stack: string, showSecrets?: boolean): string[];
  destroy(stack: string): string[];
  refresh(stack: string): string[];
  stackRm(stack: string): string[];
  stackLs(): string[];
};
export function checkStackName(stack: string): string;
export function e2eStackName(now?: Date, random?: string): string;
export function describeBackend(root?: string, env?: NodeJS.ProcessEnv): { state: string; secrets: string; stateDir: string | undefined; passphraseFile: string | undefined };
export function displayCommand(args: string[]): string;
export function runPulumi(args: string[], options?: { env?: Record<string, string>; stream?: boolean; quiet?: boolean; detached?: boolean; input?: string }): ProcessPromise;
export function stackExists(stack: string, env?: Record<string, string>): Promise<boolean>;
export function failureTail(e: unknown, lines?: number): string;
export function parseOutputs(stdout: string): Record<string, unknown>;
export function formatOutputs(outputs: Record<string, unknown>, options?: { stack?: string; showSecrets?: boolean }): string[];
export function findFreePortRange(count: number, options?: { from?: number; to?: number; attempts?: number }): Promise<number>;
export function stackMode(stack: string, root?: string, env?: NodeJS.ProcessEnv): Promise<'docker' | 'external' | undefined>;
export function dropDockerIfExternal<C extends { id: string; ok: boolean }>(checks: C[], stack: string, log?: (message: string) => void): Promise<C[]>;
export function stackConfig(stack: string, key: string, root?: string, env?: NodeJS.ProcessEnv): Promise<string | undefined>;
