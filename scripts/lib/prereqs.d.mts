// Types of scripts/lib/prereqs.mjs for the TypeScript tests.

export const ROOT: string;
export const CLI: string;
export const MIN_NODE_VERSION: string;

export interface Probe {
  found: boolean;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut?: boolean;
}

export interface Check {
  id: string;
  name: string;
  ok: boolean;
  detail: string;
  fix: string;
}

export interface IdentityStatus {
  name: string;
  initialized: boolean;
  suite: string | null;
  kid: string | null;
  rotationPending: boolean;
}

export interface KeychainCheck extends Check {
  identity?: IdentityStatus;
  keychain?: string;
  /** `warning:` lines the CLI printed (e.g. the identity comes from the environment opt-in). */
  warnings?: string[];
}

export type CheckId = 'node' | 'keychain' | 'docker' | 'pulumi';

export function checkNodeVersion(version?: string, min?: string): Check;
export function evaluateDocker(probe: Probe, platform?: NodeJS.Platform): Check;
export function evaluatePulumi(probe: Probe, platform?: NodeJS.Platform): Check;
export function evaluateKeychain(probe: Probe, name?: string): KeychainCheck;
export function probe(command: string, args: string[], options?: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string }): Promise<Probe>;
export function checkDocker(options?: { env?: NodeJS.ProcessEnv }): Promise<Check>;
export function checkPulumi(options?: { env?: NodeJS.ProcessEnv }): Promise<Check>;
export function checkKeychain(options?: { name?: string; env?: NodeJS.ProcessEnv }): Promise<KeychainCheck>;
export function checkPrerequisites(ids: CheckId[], options?: { name?: string; env?: NodeJS.ProcessEnv }): Promise<KeychainCheck[]>;
export function failureLines(checks: Check[]): string[];
export function identityMissing(name: string, how?: string): Check;
export function dockerLeftovers(stack: string, options?: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string }): Promise<{ containers: string[]; volumes: string[]; networks: string[] } | undefined>;
export function leftoverCleanup(stack: string, found?: { containers: string[]; volumes: string[]; networks: string[] }): string[];
