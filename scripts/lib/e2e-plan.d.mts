// Types of scripts/lib/e2e-plan.mjs for the TypeScript tests.

export const DEFAULT_SUITE: string[];
export const E2E_IDENTITY: string;
export function keygenArgs(dir: string): string[];
export function e2eConfig(o: { pubFile: string; basePort: number | string | undefined; members: string }): Array<[string, string | number | undefined]>;
export function doctorArgs(): string[];
export function suiteArgs(filters: string[]): string[];
export function e2ePlanLines(o: {
  stack: string;
  members: string;
  keep: boolean;
  filters: string[];
  doctor?: boolean;
  basePort?: number | string;
  identityDir?: string;
  env?: NodeJS.ProcessEnv;
}): string[];
