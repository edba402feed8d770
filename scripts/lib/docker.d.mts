// Types of scripts/lib/docker.mjs for the TypeScript tests.

export const STACK_LABEL: string;
export const FAILING_STREAK_LIMIT: number;
export const LOG_TAIL_LINES: number;
export const MONGOD_HINTS: ReadonlyArray<{ id: string; pattern: RegExp; hint: string }>;

export interface Diagnosis {
  id: string;
  line: string;
  hint: string;
}
export interface MemberState {
  status: string;
  restarts: number;
  health: string | undefined;
  failingStreak: number;
  exitCode: number;
}
export interface MemberFailure {
  container: string;
  reason: string;
  log: string;
  diagnosis: Diagnosis | undefined;
}
type DockerOptions = { env?: NodeJS.ProcessEnv };

export function diagnoseMongodLog(log: string): Diagnosis | undefined;
export function containerLogTail(container: string, options?: DockerOptions & { lines?: number }): Promise<string>;
export function memberState(container: string, options?: DockerOptions): Promise<MemberState | undefined>;
export function memberFailure(state: MemberState | undefined, options?: { failingStreakLimit?: number; baseRestarts?: number }): string | undefined;
export function describeMemberState(state: MemberState | undefined): string;
export function stackContainers(stack: string, options?: DockerOptions): Promise<string[]>;
export function watchMembers(
  containers: string[] | (() => Promise<string[]>),
  options?: DockerOptions & { signal?: AbortSignal; intervalMs?: number; onProgress?: (line: string) => void; failingStreakLimit?: number },
): Promise<MemberFailure | undefined>;
export function failureReport(failure: MemberFailure): string[];
export function checkImage(
  image: string,
  options?: DockerOptions & { pull?: boolean; pullTimeoutMs?: number; stack?: string },
): Promise<{ ok: boolean; local: boolean; pulled?: boolean; detail: string; fix: string }>;
export function describeObjects(found: { containers: string[]; volumes: string[]; networks: string[] } | undefined): string;
export function isAuthFailure(text: string): boolean;
export function dockerAuthHint(stack: string): string[];
