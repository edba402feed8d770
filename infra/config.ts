/**
 * Stack configuration of the Pulumi program: every key under the `mongo-capsule:` namespace is optional, has
 * a default, and is validated here with a message that names the key and a hint that shows the fix.
 *
 * Plain functions, no Pulumi: `index.ts` reads the raw strings with `pulumi.Config` and hands them over. The key
 * names are a contract (docs/infra.md); renaming one breaks every existing stack file.
 */
import { resolve } from 'node:path';
import { decodePublicIdentity, type PublicIdentity } from '../src/crypto/index.ts';
import { ConfigInvalidError, isMongoCapsuleError } from '../src/errors.ts';

export const CONFIG_NAMESPACE = 'mongo-capsule';

export type Mode = 'docker' | 'external';
export type MemberCount = 1 | 3;

export const DEFAULTS = {
  mode: 'docker' as Mode,
  members: 1 as MemberCount,
  /** The one place the image tag is pinned. */
  image: 'mongo:6',
  basePort: 27017,
  /** Written by `npm run init` (the `default` identity), relative to the project root. */
  publicKeyPath: 'default.pub.json',
  capsuleName: 'default',
  sign: true,
  deleteCapsuleOnDestroy: false,
} as const;

/** Every key the program reads; anything else under the namespace is a typo worth reporting. */
export const CONFIG_KEYS = [
  'mode',
  'members',
  'image',
  'basePort',
  'publicKeyPath',
  'capsuleName',
  'uri',
  'sign',
  'deleteCapsuleOnDestroy',
] as const;
export type ConfigKey = (typeof CONFIG_KEYS)[number];

/** Keys that only mean something when the program runs the containers itself. */
const DOCKER_ONLY_KEYS = ['members', 'image', 'basePort'] as const;

/**
 * The raw values as `pulumi.Config#get` returns them (always strings, whatever the YAML type). `uri` is a
 * secret and is never passed here: only whether it is set.
 */
export type RawStackConfig = Partial<Record<Exclude<ConfigKey, 'uri'>, string>> & { hasUri?: boolean };

export interface StackConfig {
  mode: Mode;
  /** Replica-set members (docker mode). */
  members: MemberCount;
  /** Docker image of every member (docker mode). */
  image: string;
  /** Host and container port of member 0; member i uses basePort + i (docker mode). */
  basePort: number;
  /** Absolute path of the recipient's public identity (`<name>.pub.json`). */
  publicKeyPath: string;
  capsuleName: string;
  /** Sign the capsule with the identity's ML-DSA key from the OS keychain. */
  sign: boolean;
  /** external mode: remove the capsule from the cluster on `pulumi destroy` (never by default). */
  deleteCapsuleOnDestroy: boolean;
}

// Same rule as the capsule header (src/crypto/capsule.ts, WrapOptions.name), checked here so that the error
// names the configuration key instead of surfacing from deep inside provisioning.
const CAPSULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
// A Docker image reference: [registry[:port]/]path[:tag][@digest]; loose on purpose, Docker has the last word.
const IMAGE_REFERENCE = /^[a-z0-9][a-z0-9._\-/:]*(@sha256:[a-f0-9]{64})?$/i;
const MIN_PORT = 1024;
const MAX_PORT = 65535;

function key(name: ConfigKey): string {
  return `${CONFIG_NAMESPACE}:${name}`;
}

function invalid(name: ConfigKey, problem: string, example: string): ConfigInvalidError {
  return new ConfigInvalidError(`${key(name)} ${problem}`, { hint: `for example: pulumi config set ${key(name)} ${example}` });
}

function parseBoolean(name: ConfigKey, raw: string | undefined, fallback: boolean): boolean {
  if (raw === undefined) return fallback;
  const v = raw.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw invalid(name, `must be true or false, got ${JSON.stringify(raw)}`, String(!fallback));
}

/**
 * Validates the raw stack configuration and fills in the defaults.
 * @param projectRoot directory of Pulumi.yaml; a relative `publicKeyPath` is resolved against it.
 * @example
 * parseStackConfig({ members: '3' }, '/repo') // { mode: 'docker', members: 3, basePort: 27017, ... }
 */
export function parseStackConfig(raw: RawStackConfig, projectRoot: string): StackConfig {
  const modeRaw = raw.mode?.trim() ?? DEFAULTS.mode;
  if (modeRaw !== 'docker' && modeRaw !== 'external') {
    throw invalid('mode', `must be "docker" or "external", got ${JSON.stringify(raw.mode)}`, 'external');
  }
  const mode: Mode = modeRaw;

  if (mode === 'external') {
    if (!raw.hasUri) {
      throw new ConfigInvalidError(`${key('uri')} is required when ${key('mode')} is external`, {
        hint: `store the connection string as a secret: pulumi config set --secret ${key('uri')} 'mongodb+srv://user:password@cluster.example.net/'`,
      });
    }
    for (const k of DOCKER_ONLY_KEYS) {
      if (raw[k] !== undefined) {
        throw new ConfigInvalidError(`${key(k)} has no effect when ${key('mode')} is external`, {
          hint: `remove it (pulumi config rm ${key(k)}), or use ${key('mode')} docker`,
        });
      }
    }
  } else if (raw.hasUri) {
    throw new ConfigInvalidError(`${key('uri')} is only used when ${key('mode')} is external`, {
      hint: `set ${key('mode')} external to provision an existing cluster, or remove it (pulumi config rm ${key('uri')})`,
    });
  }

  let members: MemberCount = DEFAULTS.members;
  if (raw.members !== undefined) {
    const m = raw.members.trim();
    if (m !== '1' && m !== '3') {
      throw invalid('members', `must be 1 or 3, got ${JSON.stringify(raw.members)} (a replica set needs an odd number of voting members; 1 is for development, 3 for failover tests)`, '3');
    }
    members = m === '1' ? 1 : 3;
  }

  const image = raw.image?.trim() ?? DEFAULTS.image;
  if (!IMAGE_REFERENCE.test(image)) {
    throw invalid('image', `must be a Docker image reference such as mongo:6, got ${JSON.stringify(raw.image)}`, 'mongo:6');
  }

  let basePort: number = DEFAULTS.basePort;
  if (raw.basePort !== undefined) {
    const p = raw.basePort.trim();
    const n = /^\d{1,5}$/.test(p) ? Number(p) : Number.NaN;
    const highest = MAX_PORT - (members - 1);
    if (!Number.isInteger(n) || n < MIN_PORT || n > highest) {
      throw invalid('basePort', `must be a port from ${MIN_PORT} to ${highest} (members use basePort … basePort+${members - 1}), got ${JSON.stringify(raw.basePort)}`, '27017');
    }
    basePort = n;
  }

  const capsuleName = raw.capsuleName?.trim() ?? DEFAULTS.capsuleName;
  if (!CAPSULE_NAME.test(capsuleName)) {
    throw invalid('capsuleName', `must be 1-255 letters, digits, '.', '_' or '-', starting with a letter or digit, got ${JSON.stringify(raw.capsuleName)}`, 'default');
  }

  const pubRaw = raw.publicKeyPath?.trim() ?? DEFAULTS.publicKeyPath;
  if (pubRaw.length === 0) throw invalid('publicKeyPath', 'must not be empty', 'default.pub.json');

  return {
    mode,
    members,
    image,
    basePort,
    publicKeyPath: resolve(projectRoot, pubRaw),
    capsuleName,
    sign: parseBoolean('sign', raw.sign, DEFAULTS.sign),
    deleteCapsuleOnDestroy: parseBoolean('deleteCapsuleOnDestroy', raw.deleteCapsuleOnDestroy, DEFAULTS.deleteCapsuleOnDestroy),
  };
}

/** Keys set under the namespace that the program does not know (typos such as `member`). */
export function unknownConfigKeys(fullKeys: readonly string[]): string[] {
  const known = new Set<string>(CONFIG_KEYS.map(key));
  return fullKeys.filter((k) => k.startsWith(`${CONFIG_NAMESPACE}:`) && !known.has(k));
}

/**
 * Checks the external connection string without ever echoing it (it usually holds a password).
 * Throws ConfigInvalidError naming the key.
 */
export function checkExternalUri(uri: string): void {
  if (typeof uri !== 'string' || !/^mongodb(\+srv)?:\/\/[^/?#\s]+/i.test(uri) || /\s/.test(uri)) {
    throw new ConfigInvalidError(`${key('uri')} is not a MongoDB connection string (expected mongodb:// or mongodb+srv://)`, {
      hint: `pulumi config set --secret ${key('uri')} 'mongodb+srv://user:password@cluster.example.net/'`,
    });
  }
}

export interface RecipientFile {
  identity: PublicIdentity;
  /** The file's text, handed to the provisioning step as is (public: safe in state and logs). */
  text: string;
}

/**
 * Loads and validates the recipient's public identity. A missing file means the identity was never created,
 * so the hint says how to create it.
 */
export async function loadRecipient(path: string, readText: (path: string) => Promise<string>): Promise<RecipientFile> {
  let text: string;
  try {
    text = await readText(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ConfigInvalidError(`${key('publicKeyPath')}: no public identity at ${path}`, {
        hint: `run \`npm run init\` to create your identity, or point ${key('publicKeyPath')} at an existing <name>.pub.json`,
      });
    }
    throw new ConfigInvalidError(`${key('publicKeyPath')}: cannot read ${path} (${code ?? 'unknown error'})`, {
      hint: 'check the path and its permissions',
    });
  }
  try {
    return { identity: decodePublicIdentity(text), text };
  } catch (e) {
    const detail = isMongoCapsuleError(e) ? e.message : 'not a public identity file';
    throw new ConfigInvalidError(`${key('publicKeyPath')}: ${path} is not a valid public identity (${detail})`, {
      hint: 'use the <name>.pub.json written by `npm run init` (never the secret identity file)',
    });
  }
}
