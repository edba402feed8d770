// Types of scripts/lib/rs-setup.mjs for the TypeScript tests.

export const PASSWORD_ENV: string;
export function uriHosts(uri: string): string[];
export function uriHasPassword(uri: string): boolean;
export function parseMembers(raw: string | undefined): Array<{ host: string }> | undefined;
export function readPassword(o: {
  passwordFile?: string;
  passwordStdin?: boolean;
  env?: NodeJS.ProcessEnv;
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
  warn?: (message: string) => void;
}): Promise<string | undefined>;
export function rsSetupPlanLines(o: { target: string; setName: string; members: Array<{ host: string }>; username: string; hasPassword: boolean }): string[];
