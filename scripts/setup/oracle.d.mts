// Types of scripts/setup/oracle.mjs for the TypeScript tests.

export const disables: string;
export const NODE_PACKAGE: string;
export const NODE_VERSION: string;
export const NODE_INTEGRITY: string;
export const LIBOQS_PACKAGE: string;
export const LIBOQS_VERSION: string;
export const LIBOQS_INTEGRITY: string;
export function defaultCacheDir(env?: NodeJS.ProcessEnv): string;
export interface OraclePaths {
  dir: string;
  node: string;
  lib: string;
  liboqs: string;
  manifest: string;
}
export function oraclePaths(cacheDir: string, pins?: { nodeVersion: string; liboqsVersion: string }): OraclePaths;
export function oracleReady(paths: OraclePaths): boolean;
export function sha512Integrity(file: string): Promise<string>;
export function verifyIntegrity(file: string, expected: string, what: string): Promise<void>;
export function npmPackTarball(spec: string, dest: string): string;
export function oracleStep(
  ctx: { cacheDir: string; log(message: string): void },
  deps?: { fetchTarball?: (spec: string, dest: string) => string | Promise<string>; nodeIntegrity?: string; liboqsIntegrity?: string; installLiboqs?: boolean },
): Promise<{ cached: boolean; paths: OraclePaths }>;
export default function oracle(ctx: { cacheDir: string; log(message: string): void }): Promise<void>;
