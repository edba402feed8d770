// Types of scripts/lib/docker-plugin.mjs for the TypeScript tests.
import type { Check } from './prereqs.mjs';

export const MIN_DOCKER_PLUGIN_VERSION: string;
export const PLUGIN_BINARY: string;
export interface PluginCheck extends Check {
  warning?: string;
}
export function sdkPluginVersion(root?: string): string;
export function versionBelow(a: string, b: string): boolean | undefined;
export function versionFromPath(path: string): string | undefined;
export function parsePluginList(stdout: string): string[];
export function pluginDirVersions(env?: NodeJS.ProcessEnv): string[];
export function evaluateDockerPlugin(found: {
  ambient?: { path: string; version?: string | undefined } | undefined;
  installed?: string[];
  ignoreAmbient?: boolean;
  min?: string;
  wanted?: string;
}): PluginCheck;
export function ambientPluginVersion(path: string, env?: NodeJS.ProcessEnv): Promise<string | undefined>;
export function checkDockerPlugin(options?: { env?: NodeJS.ProcessEnv; root?: string }): Promise<PluginCheck>;
