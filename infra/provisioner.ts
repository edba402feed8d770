/**
 * The dynamic provider behind `Provisioning`: create and update run `mongo-capsule provision --json`, delete runs
 * `mongo-capsule deprovision --json` when (and only when) the stack was told to remove its capsule.
 *
 * Why a child process: Pulumi serializes a dynamic provider's functions into the state and runs them later in
 * its dynamic-provider host, a CommonJS process without tsx, where our TypeScript sources (`src/mongo`,
 * `src/crypto`, the keychain) cannot be imported. The project CLI registers tsx itself, so the provider stays a
 * few self-contained functions and all the logic stays in `src/`. Secrets (root password, an external URI)
 * travel on the child's stdin as JSON: never in argv, which other local users can read.
 *
 * Everything here must survive serialization: no imports are referenced from the functions, Node's built-ins
 * come from `process.getBuiltinModule` (Node ≥ 20.16), and helpers are plain module-level functions.
 */
import type * as pulumi from '@pulumi/pulumi';

/** The request protocol version shared with `src/cli/provision-command.ts`. */
export const PROVISION_PROTOCOL = 1;

export interface ProvisionInputs {
  /** Absolute path of `bin/mongo-capsule` when the program ran (the current directory's copy is the fallback). */
  cliPath: string;
  mode: 'docker' | 'external';
  /** Where to connect from this machine, credentials included. */
  uri: string;
  /** docker mode: the `host:port` of every member, for replSetInitiate. */
  members: string[] | null;
  /** docker mode: the root user created by the image's init phase on member 0. */
  rootUsername: string | null;
  rootPassword: string | null;
  capsuleName: string;
  /** The recipient's public identity file (`<name>.pub.json` text). */
  recipient: string;
  /** Sign the capsule with the identity's ML-DSA key from the OS keychain. */
  sign: boolean;
  dataKeyAltNames: string[];
  timeoutMs: number;
  deleteCapsuleOnDestroy: boolean;
}

export interface ProvisionOutputs extends ProvisionInputs {
  kid: string;
  /** keyAltName → data key id (UUID string). */
  dataKeyIds: Record<string, string>;
  /** True when this stack seeded the capsule (false when it found one already there). */
  seededCapsule: boolean;
}

/** What `mongo-capsule provision --json` prints on success. */
export interface ProvisionResponse {
  capsuleName: string;
  kid: string;
  created: boolean;
  dataKeyIds: Record<string, string>;
}

/** Input properties whose change re-runs provisioning; the others are how, not what. */
export const DESIRED_STATE_KEYS = [
  'mode',
  'uri',
  'members',
  'rootUsername',
  'rootPassword',
  'capsuleName',
  'recipient',
  'sign',
  'dataKeyAltNames',
  'deleteCapsuleOnDestroy',
] as const satisfies readonly (keyof ProvisionInputs)[];

/** Output properties that hold secrets; `Provisioning` lists them in `additionalSecretOutputs`. */
export const SECRET_OUTPUT_KEYS = ['uri', 'rootPassword'] as const satisfies readonly (keyof ProvisionOutputs)[];

/** The JSON request written to the CLI's stdin for `provision`. */
export function provisionRequest(inputs: ProvisionInputs) {
  return {
    protocol: PROVISION_PROTOCOL,
    uri: inputs.uri,
    replicaSet: inputs.members ? { members: inputs.members } : null,
    rootUser: inputs.rootUsername && inputs.rootPassword ? { username: inputs.rootUsername, password: inputs.rootPassword } : null,
    capsuleName: inputs.capsuleName,
    recipient: inputs.recipient,
    sign: inputs.sign,
    dataKeyAltNames: inputs.dataKeyAltNames,
    timeoutMs: inputs.timeoutMs,
  };
}

/**
 * Strings that must never appear in an error: the password, the URI, the URI's user info and the values of its
 * options. It follows the rules of src/uri-redaction.mjs (the user info ends at the last '@'; a password may hold
 * ':' or '@'), restated here because this module must stay free of imports (see the header).
 */
export function secretsOf(inputs: Pick<ProvisionInputs, 'uri' | 'rootPassword'>): string[] {
  const found: string[] = [];
  const add = (s: string) => {
    found.push(s);
    try {
      found.push(decodeURIComponent(s));
    } catch {
      /* not percent-encoded */
    }
    found.push(encodeURIComponent(s));
    for (const item of s.split(',')) if (item.includes(':')) found.push(item.slice(item.indexOf(':') + 1));
  };
  if (inputs.rootPassword) add(inputs.rootPassword);
  if (inputs.uri) {
    found.push(inputs.uri);
    const rest = inputs.uri.replace(/^[a-z+]+:\/\//i, '');
    const at = rest.lastIndexOf('@');
    if (at !== -1) {
      const userinfo = rest.slice(0, at);
      const starts = [0];
      const ends = [userinfo.length];
      for (let i = 0; i < userinfo.length; i++) {
        if (userinfo[i] === ':' || userinfo[i] === '@') starts.push(i + 1);
        if (userinfo[i] === '@') ends.push(i);
      }
      for (const a of starts) for (const b of ends) if (b > a) add(userinfo.slice(a, b));
    } else {
      // No '@': what follows the first ':' may be a password that lost its '@', ending at any '/' or '?'.
      for (let colon = rest.indexOf(':'); colon !== -1; colon = rest.indexOf(':', colon + 1)) {
        const tail = rest.slice(colon + 1);
        if (/^\d{1,5}(?:[,/?]|$)/.test(tail)) continue;
        for (let i = 1; i <= tail.length; i++) if (i === tail.length || tail[i] === '/' || tail[i] === '?') add(tail.slice(0, i));
      }
    }
    // Option values: any may carry a secret (proxyPassword, authMechanismProperties, a typo), and a '?' or '&'
    // may hide in one; the short harmless ones ("true", "rs0") are below the length floor.
    const all = inputs.uri.replace(/^[a-z+]+:\/\//i, '');
    for (let q = all.indexOf('?'); q !== -1; q = all.indexOf('?', q + 1)) {
      let offset = q + 1;
      for (const pair of all.slice(q + 1).split(/[&;]/)) {
        const start = offset + pair.indexOf('=') + 1;
        for (const value of [pair.slice(pair.indexOf('=') + 1), all.slice(start)]) {
          if (value.length < 6) continue;
          add(value);
          try {
            add(decodeURIComponent(value));
          } catch {
            /* not percent-encoded */
          }
        }
        offset += pair.length + 1;
      }
    }
  }
  // Longest first, so that a secret containing another is replaced whole.
  return [...new Set(found)].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
}

export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join('<redacted>');
  return out;
}

/**
 * Runs `node bin/mongo-capsule <command> --json` with `request` on stdin and resolves to the parsed JSON it
 * prints. Its stderr (message + hint, already free of secrets by the CLI's contract) becomes the error, with
 * every known secret redacted once more.
 */
export async function runMongoCapsuleCli(
  command: string,
  request: unknown,
  options: { cliPath: string; timeoutMs: number; secrets: readonly string[] },
): Promise<unknown> {
  const { spawn } = process.getBuiltinModule('node:child_process');
  const { existsSync } = process.getBuiltinModule('node:fs');
  const { join } = process.getBuiltinModule('node:path');
  const candidates = [options.cliPath, join(process.cwd(), 'bin', 'mongo-capsule')];
  const cli = candidates.find((p) => typeof p === 'string' && p.length > 0 && existsSync(p));
  if (cli === undefined) {
    throw new Error(`mongo-capsule ${command}: the mongo-capsule CLI was not found (looked for ${candidates.join(' and ')}); run pulumi from the mongo-capsule checkout`);
  }
  // The child needs the user's environment (HOME, the D-Bus session for the keychain) but not Pulumi's own secrets.
  const env: Record<string, string | undefined> = { ...process.env };
  for (const k of ['PULUMI_CONFIG_PASSPHRASE', 'PULUMI_CONFIG_PASSPHRASE_FILE', 'PULUMI_ACCESS_TOKEN']) delete env[k];
  const scrub = (text: string) => redactSecrets(text, options.secrets).trim();
  return await new Promise((resolvePromise, rejectPromise) => {
    const child = spawn(process.execPath, [cli, command, '--json'], { stdio: ['pipe', 'pipe', 'pipe'], env, windowsHide: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (stdout += d));
    child.stderr.on('data', (d: string) => (stderr += d));
    // A bounded wait: the CLI has its own timeouts; this only catches a hung process.
    const timer = setTimeout(() => child.kill('SIGTERM'), options.timeoutMs + 60_000);
    child.on('error', (e: Error) => {
      clearTimeout(timer);
      rejectPromise(new Error(`mongo-capsule ${command}: could not start the CLI: ${scrub(e.message)}`));
    });
    child.on('close', (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      if (code === 0) {
        try {
          resolvePromise(JSON.parse(stdout));
        } catch {
          rejectPromise(new Error(`mongo-capsule ${command}: the CLI printed something that is not JSON`));
        }
        return;
      }
      const why = signal ? `killed by ${signal}` : `exit code ${String(code)}`;
      rejectPromise(new Error(`mongo-capsule ${command} failed (${why}): ${scrub(stderr) || 'no message'}`));
    });
    // EPIPE when the CLI exits before reading everything: its exit code and stderr say why.
    child.stdin.on('error', () => {});
    child.stdin.end(JSON.stringify(request));
  });
}

async function provision(inputs: ProvisionInputs): Promise<ProvisionOutputs> {
  const r = (await runMongoCapsuleCli('provision', provisionRequest(inputs), {
    cliPath: inputs.cliPath,
    timeoutMs: inputs.timeoutMs,
    secrets: secretsOf(inputs),
  })) as Partial<ProvisionResponse> | null;
  if (!r || typeof r.kid !== 'string' || typeof r.dataKeyIds !== 'object' || r.dataKeyIds === null || Array.isArray(r.dataKeyIds)) {
    throw new Error('mongo-capsule provision: the CLI answered without a kid or data key ids');
  }
  const dataKeyIds: Record<string, string> = {};
  for (const [altName, id] of Object.entries(r.dataKeyIds)) dataKeyIds[altName] = String(id);
  return { ...inputs, kid: r.kid, dataKeyIds, seededCapsule: r.created === true };
}

export const provisioner: pulumi.dynamic.ResourceProvider<ProvisionInputs, ProvisionOutputs> = {
  async diff(_id, olds, news) {
    // Inputs are compared as JSON: arrays by value, and unknown values (previews) always differ.
    const changed = DESIRED_STATE_KEYS.filter((k) => JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null));
    return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
  },

  async create(inputs) {
    const outs = await provision(inputs);
    return { id: `${outs.capsuleName}@${outs.kid}`, outs };
  },

  async update(_id, olds, news) {
    // Provisioning is idempotent: running it again converges to the new inputs and changes nothing else.
    const outs = await provision(news);
    // "Seeded by this stack" carries over only for the same capsule in the same cluster.
    const sameCapsule = olds.capsuleName === news.capsuleName && olds.uri === news.uri;
    return { outs: { ...outs, seededCapsule: outs.seededCapsule || (sameCapsule && olds.seededCapsule) } };
  },

  async delete(_id, props) {
    // Docker mode: the containers and volumes go away with their own resources. External mode: a capsule is
    // removed only when asked, and only if this stack seeded it, never one it found there.
    if (props.mode !== 'external' || !props.deleteCapsuleOnDestroy || !props.seededCapsule) return;
    await runMongoCapsuleCli(
      'deprovision',
      { protocol: PROVISION_PROTOCOL, uri: props.uri, capsuleName: props.capsuleName, kid: props.kid, timeoutMs: props.timeoutMs },
      { cliPath: props.cliPath, timeoutMs: props.timeoutMs, secrets: secretsOf(props) },
    );
  },
};
