/**
 * Where `pulumi` keeps this project's state and how it encrypts the stack's secrets, for the scripts that run
 * it (`npm run up`, `npm run down`, `npm run e2e`). No cloud account is needed:
 *
 * - state: the file backend in `<project>/.pulumi-state` (git-ignored; Pulumi writes under its `.pulumi/`);
 * - secrets: the passphrase provider; the passphrase is generated once into `<project>/.pulumi-state/passphrase`
 *   (mode 0600) and handed to pulumi as `PULUMI_CONFIG_PASSPHRASE_FILE`, never on a command line.
 *
 * Whatever the user already set wins: `PULUMI_BACKEND_URL` (e.g. `file://~` or a cloud backend),
 * `PULUMI_CONFIG_PASSPHRASE` or `PULUMI_CONFIG_PASSPHRASE_FILE`. Losing the passphrase file makes the stack's
 * secrets unreadable, `npm run down` included: docs/infra.md says how to remove the cluster by hand and start over.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigInvalidError } from '../src/errors.ts';

export const STATE_DIR = '.pulumi-state';
export const PASSPHRASE_FILE = 'passphrase';
export const DEFAULT_STACK = 'dev';

/** The file backend URL of a project root: `file://` + absolute path, as `pulumi login` takes it (not percent-encoded). */
export function fileBackendUrl(projectRoot: string): string {
  return `file://${join(resolve(projectRoot), STATE_DIR)}`;
}

/** Arguments that select the stack, creating it with the passphrase secrets provider the first time. */
export function selectStackArgs(stack: string = DEFAULT_STACK): string[] {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(stack)) {
    throw new ConfigInvalidError(`invalid stack name ${JSON.stringify(stack)}`, { hint: 'use letters, digits, ".", "_" and "-"' });
  }
  return ['stack', 'select', '--create', stack, '--secrets-provider', 'passphrase'];
}

export interface PulumiEnvironment {
  /** Variables to add to pulumi's environment. */
  env: Record<string, string>;
  /** Human-readable notes on what was chosen (no secret in them). */
  notes: string[];
}

/**
 * The environment for running `pulumi` in `projectRoot`: creates the state directory and the passphrase file
 * when the defaults apply. Idempotent and safe to call before every pulumi command.
 */
export async function pulumiEnvironment(projectRoot: string, current: NodeJS.ProcessEnv = process.env): Promise<PulumiEnvironment> {
  const env: Record<string, string> = {
    // Keeps `npm run up` quiet and offline apart from what it needs (plugins, images).
    PULUMI_SKIP_UPDATE_CHECK: 'true',
  };
  const notes: string[] = [];
  const stateDir = join(resolve(projectRoot), STATE_DIR);

  if (current.PULUMI_BACKEND_URL) {
    notes.push('state: PULUMI_BACKEND_URL from the environment');
  } else {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    env.PULUMI_BACKEND_URL = fileBackendUrl(projectRoot);
    notes.push(`state: ${env.PULUMI_BACKEND_URL}`);
  }

  if (current.PULUMI_CONFIG_PASSPHRASE !== undefined || current.PULUMI_CONFIG_PASSPHRASE_FILE) {
    notes.push('secrets: passphrase from the environment');
  } else {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const file = join(stateDir, PASSPHRASE_FILE);
    const created = await ensurePassphraseFile(file);
    env.PULUMI_CONFIG_PASSPHRASE_FILE = file;
    notes.push(`secrets: passphrase file ${file}${created ? ' (new)' : ''}`);
  }
  return { env, notes };
}

/** Creates the passphrase file (32 random bytes, hex, mode 0600) unless it exists; true when it was created. */
export async function ensurePassphraseFile(file: string): Promise<boolean> {
  try {
    const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.writeFile(randomBytes(32).toString('hex'));
      await handle.sync();
    } finally {
      await handle.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  // An existing file must not be readable by others, and must not be empty.
  await chmod(file, 0o600);
  if ((await readFile(file, 'utf8')).trim().length === 0) {
    throw new ConfigInvalidError(`the Pulumi passphrase file ${file} is empty`, {
      hint: 'restore it from a backup, or remove the stack state (.pulumi-state) and run `npm run up` again',
    });
  }
  return false;
}
