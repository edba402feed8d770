// Types of scripts/setup/docker.mjs for the TypeScript tests.

export const ENGINE_PACKAGE: string;
export const IMAGE_PACKAGE: string;
export interface Machine {
  platform: NodeJS.Platform;
  uid: number | undefined;
  exists(path: string): boolean;
  isInstalled(pkg: string): boolean;
}
export interface SetupContext {
  log(message: string): void;
  warn(message: string): void;
}
export function machine(): Machine & { aptGet(args: string[]): string };
export function dockerPlan(machine: Machine): { install: string[]; skip: string };
export function dockerStep(ctx: SetupContext, deps?: Machine & { aptGet(args: string[]): string }): Promise<void>;
export default function docker(ctx: SetupContext): Promise<void>;
