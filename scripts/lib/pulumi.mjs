// Pulumi for the scripts: the command lines they run (one place, shared by the real run and `--dry-run`),
// stack naming, where state and secrets live, and how outputs are shown.
//
// Where state and the passphrase live is decided by infra/backend.ts (the same module the docs describe); this
// file only builds argument arrays and runs them. Secrets never appear in an argument: the passphrase travels
// as PULUMI_CONFIG_PASSPHRASE_FILE, the connection string only as stdout of `stack output --show-secrets`.
//
// Loaded through `node --import tsx` (the npm scripts) or vitest, because it imports TypeScript.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { $ } from 'zx';
import { DEFAULT_STACK, fileBackendUrl, PASSPHRASE_FILE, pulumiEnvironment, selectStackArgs, STATE_DIR } from '../../infra/backend.ts';
import { ROOT } from './prereqs.mjs';

export { DEFAULT_STACK, pulumiEnvironment };
export const CONFIG_NAMESPACE = 'mongo-capsule';
/** Output names of the program (infra/index.ts). */
export const OUTPUT_NAMES = ['connectionString', 'capsuleName', 'kid', 'members'];
/** How many lines of a failed pulumi run to show when its output was captured behind a spinner. */
const FAILURE_TAIL_LINES = 40;

/** Every pulumi invocation of the scripts: never interactive, always an explicit stack. */
export const pulumiArgs = {
  select: (stack) => [...selectStackArgs(stack), '--non-interactive'],
  configSet: (stack, key, value) => ['config', 'set', '--stack', stack, '--non-interactive', `${CONFIG_NAMESPACE}:${key}`, '--', String(value)],
  // The value comes on stdin (pulumi reads a non-terminal stdin to its end), so it never appears in an argument.
  configSetSecret: (stack, key) => ['config', 'set', '--stack', stack, '--non-interactive', '--secret', `${CONFIG_NAMESPACE}:${key}`],
  configGet: (stack, key) => ['config', 'get', '--stack', stack, '--non-interactive', `${CONFIG_NAMESPACE}:${key}`],
  up: (stack) => ['up', '--stack', stack, '--yes', '--skip-preview', '--non-interactive'],
  outputs: (stack, showSecrets = false) => ['stack', 'output', '--stack', stack, '--json', '--non-interactive', ...(showSecrets ? ['--show-secrets'] : [])],
  destroy: (stack) => ['destroy', '--stack', stack, '--yes', '--skip-preview', '--non-interactive'],
  // After an interrupted update: drops creates that never finished so that destroy can proceed.
  refresh: (stack) => ['refresh', '--stack', stack, '--yes', '--skip-preview', '--non-interactive', '--clear-pending-creates'],
  stackRm: (stack) => ['stack', 'rm', stack, '--yes', '--non-interactive'],
  stackLs: () => ['stack', 'ls', '--json', '--non-interactive'],
};

/** Checks a stack name the way the backend module does (throws ConfigInvalidError with a hint). */
export function checkStackName(stack) {
  selectStackArgs(stack);
  return stack;
}

/**
 * A throwaway stack name: `e2e-<UTC timestamp>-<random>`, unique per run, short enough for container names.
 * @example e2eStackName(new Date('2026-11-22T08:15:00Z'), 'a1b2c3') // 'e2e-20261122-081500-a1b2c3'
 */
export function e2eStackName(now = new Date(), random = randomBytes(3).toString('hex')) {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, ''); // 20261122T081500
  return checkStackName(`e2e-${t.slice(0, 8)}-${t.slice(9, 15)}-${random}`.toLowerCase());
}

/**
 * Where state and secrets will live, without creating anything (for plans and messages).
 * @returns {{ state: string, secrets: string, stateDir: string | undefined, passphraseFile: string | undefined }}
 */
export function describeBackend(root = ROOT, env = process.env) {
  const stateDir = join(resolve(root), STATE_DIR);
  const ownState = !env.PULUMI_BACKEND_URL;
  const ownSecrets = env.PULUMI_CONFIG_PASSPHRASE === undefined && !env.PULUMI_CONFIG_PASSPHRASE_FILE;
  return {
    state: ownState ? `${fileBackendUrl(root)} (local files)` : 'PULUMI_BACKEND_URL from the environment',
    secrets: ownSecrets
      ? `passphrase secrets provider, passphrase in ${join(stateDir, PASSPHRASE_FILE)} (mode 0600, created on first use)`
      : env.PULUMI_CONFIG_PASSPHRASE_FILE
        ? `passphrase secrets provider, passphrase from PULUMI_CONFIG_PASSPHRASE_FILE (${env.PULUMI_CONFIG_PASSPHRASE_FILE})`
        : 'passphrase secrets provider, passphrase from PULUMI_CONFIG_PASSPHRASE',
    stateDir: ownState ? stateDir : undefined,
    passphraseFile: ownSecrets ? join(stateDir, PASSPHRASE_FILE) : undefined,
  };
}

/** How to move state or secrets elsewhere; printed by `up` next to where they are now. */
export const BACKEND_HELP = [
  'to keep state elsewhere, export PULUMI_BACKEND_URL before `npm run up` (e.g. file://~/.mongo-capsule/pulumi, s3://bucket, or https://api.pulumi.com after `pulumi login`);',
  'to use your own passphrase, export PULUMI_CONFIG_PASSPHRASE_FILE=<file>; for a KMS, `pulumi stack change-secrets-provider <awskms://…|gcpkms://…|azurekeyvault://…|hashivault://…> --stack <stack>` with the same environment;',
  'keep the passphrase file: without it the stack\'s secrets cannot be read (then `npm run down` and `npm run up` start over).',
];

/** `pulumi` as a shell-free display string (for plans and logs; arguments never hold secrets). */
export function displayCommand(args) {
  return ['pulumi', ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * Runs pulumi in the project root with `env` added. `stream: true` shows pulumi's own progress, on stderr (stdout
 * is kept for results such as `up --json`); otherwise the
 * output is captured (for a spinner) and, on failure, its last lines are attached as `e.stderr` so the caller's
 * usual `e.stderr?.trim() || e.message` shows the diagnostics. `detached` runs it in its own process group, out of
 * reach of a terminal's Ctrl-C (for teardown steps that must finish). `input` is written to its stdin (secrets).
 * @returns {import('zx').ProcessPromise}
 */
export function runPulumi(args, { env = {}, stream = false, quiet = false, detached = false, input } = {}) {
  const stdin = input === undefined ? 'ignore' : 'pipe';
  const options = { cwd: ROOT, env: { ...process.env, ...env }, quiet: quiet || !stream, detached, stdio: stream ? [stdin, 2, 2] : [stdin, 'pipe', 'pipe'] };
  return input === undefined ? $(options)`pulumi ${args}` : $({ ...options, input })`pulumi ${args}`;
}

/** The last lines of what a captured pulumi run printed, for a failure message. */
export function failureTail(e, lines = FAILURE_TAIL_LINES) {
  const text = [e?.stdout ?? '', e?.stderr ?? ''].join('\n');
  const kept = text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '');
  return kept.slice(-lines).join('\n');
}

/** Parses `pulumi stack output --json`. */
export function parseOutputs(stdout) {
  const parsed = JSON.parse(stdout || '{}');
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('pulumi stack output did not print a JSON object');
  return parsed;
}

/**
 * Human-readable outputs. The connection string is shown only when it was fetched with secrets; otherwise a
 * line says how to get it.
 */
export function formatOutputs(outputs, { stack, showSecrets = false } = {}) {
  const lines = [];
  const members = Array.isArray(outputs.members) ? outputs.members.join(', ') : String(outputs.members ?? '');
  lines.push(`stack:        ${stack}`);
  lines.push(`capsule:      ${outputs.capsuleName ?? '(none)'}`);
  lines.push(`kid:          ${outputs.kid ?? '(none)'}`);
  lines.push(`members:      ${members || '(external cluster)'}`);
  if (showSecrets && typeof outputs.connectionString === 'string' && outputs.connectionString !== '[secret]') {
    lines.push(`connection:   ${outputs.connectionString}`);
  } else {
    lines.push(`connection:   [secret] (npm run up -- --outputs-only --show-connection-string${stack === DEFAULT_STACK ? '' : ` --stack ${stack}`})`);
  }
  return lines;
}

/**
 * A plain (non-secret) configuration value `mongo-capsule:<key>` of an existing stack, or undefined when the stack
 * or the key does not exist. Creates nothing when there is no state yet.
 */
export async function stackConfig(stack, key, root = ROOT, env = process.env) {
  const { stateDir } = describeBackend(root, env);
  if (stateDir !== undefined && !existsSync(stateDir)) return undefined;
  const { env: extra } = await pulumiEnvironment(root, env);
  const out = await $({ cwd: root, env: { ...env, ...extra }, nothrow: true, quiet: true, stdio: ['ignore', 'pipe', 'pipe'] })`pulumi ${pulumiArgs.configGet(stack, key)}`;
  return out.exitCode === 0 ? out.stdout.trim() : undefined;
}

/** Whether the backend has `stack` (`pulumi stack ls --json`; names may be qualified, `org/project/stack`). Throws if listing fails. */
export async function stackExists(stack, env) {
  const listed = JSON.parse((await runPulumi(pulumiArgs.stackLs(), { env, quiet: true })).stdout || '[]');
  return Array.isArray(listed) && listed.some((s) => s?.name === stack || String(s?.name ?? '').endsWith(`/${stack}`));
}

/** 'external' or 'docker' for an existing stack, undefined without one (the program's default is docker). */
export async function stackMode(stack, root = ROOT, env = process.env) {
  const mode = await stackConfig(stack, 'mode', root, env);
  if (mode === undefined) return undefined;
  return mode === 'external' ? 'external' : 'docker';
}

/**
 * Prerequisite checks without the Docker one when the stack provisions an external cluster (Atlas, self-hosted):
 * such a stack needs no engine. Asked only when Docker is missing and the Pulumi CLI works.
 */
export async function dropDockerIfExternal(checks, stack, log = (m) => process.stderr.write(`${m}\n`)) {
  const docker = checks.find((c) => c.id === 'docker');
  const pulumi = checks.find((c) => c.id === 'pulumi');
  if (!docker || docker.ok || !pulumi?.ok) return checks;
  if ((await stackMode(stack)) !== 'external') return checks;
  log(`stack ${stack} provisions an external cluster (mongo-capsule:mode external): no Docker engine needed`);
  return checks.filter((c) => c !== docker);
}

/** `count` consecutive free TCP ports on 127.0.0.1 (the e2e cluster must not collide with `npm run up`'s). */
export async function findFreePortRange(count, { from = 20_000, to = 40_000, attempts = 50 } = {}) {
  for (let i = 0; i < attempts; i++) {
    const base = from + Math.floor(Math.random() * (to - from - count));
    const servers = [];
    try {
      for (let p = base; p < base + count; p++) {
        const srv = createServer();
        srv.listen(p, '127.0.0.1');
        await once(srv, 'listening');
        servers.push(srv);
      }
      return base;
    } catch {
      // taken: try another range
    } finally {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(() => r()))));
    }
  }
  throw new Error(`no ${count} consecutive free ports found between ${from} and ${to}`);
}
