// Prerequisite checks for the scripts: each missing thing becomes one line naming it and what to install.
//
// Every check is split in two: a probe that runs the real command (bounded by a timeout, never throwing) and a
// pure `evaluate*` function that turns the probe's answer into a verdict, so the verdicts are unit-tested
// with recorded answers and the probes are exercised for real on whatever machine runs the tests.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { $, which } from 'zx';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'bin', 'mongo-capsule');
/** package.json `engines.node`; mongodb 7 and mongodb-client-encryption 7 need it. */
export const MIN_NODE_VERSION = '20.19.0';
const PROBE_TIMEOUT_MS = 15_000;
/** The Secret Service may take a moment to start its daemon on first use. */
const KEYCHAIN_TIMEOUT_MS = 30_000;

/**
 * @typedef {{ found: boolean, exitCode: number | null, stdout: string, stderr: string, timedOut?: boolean }} Probe
 * @typedef {{ id: string, name: string, ok: boolean, detail: string, fix: string }} Check
 */

function firstLine(text) {
  return (text ?? '').trim().split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
}

function compareVersions(a, b) {
  const pa = a.replace(/^v/, '').split('.').map((n) => Number.parseInt(n, 10) || 0);
  const pb = b.replace(/^v/, '').split('.').map((n) => Number.parseInt(n, 10) || 0);
  for (let i = 0; i < 3; i++) {
    if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  }
  return 0;
}

/** @returns {Check} */
export function checkNodeVersion(version = process.versions.node, min = MIN_NODE_VERSION) {
  const ok = compareVersions(version, min) >= 0;
  return {
    id: 'node',
    name: 'Node.js',
    ok,
    detail: ok ? `Node.js ${version}` : `Node.js ${version} is too old (need ${min} or newer)`,
    fix: `install Node.js ${min.replace(/\.0$/, '')} or newer (https://nodejs.org, or \`nvm install 20\`)`,
  };
}

/** @param {Probe} probe @returns {Check} */
export function evaluateDocker(probe, platform = process.platform) {
  const base = { id: 'docker', name: 'Docker engine' };
  const desktop = platform === 'darwin' || platform === 'win32';
  if (!probe.found) {
    return {
      ...base,
      ok: false,
      detail: 'the docker command is not installed',
      fix: desktop
        ? 'install Docker Desktop (https://docs.docker.com/desktop/) and start it'
        : 'install Docker Engine (https://docs.docker.com/engine/install/; Debian/Ubuntu: `curl -fsSL https://get.docker.com | sudo sh`) and start it',
    };
  }
  if (probe.exitCode === 0 && !probe.timedOut) {
    const version = firstLine(probe.stdout);
    return { ...base, ok: true, detail: version ? `Docker engine ${version}` : 'Docker engine reachable', fix: '' };
  }
  const why = probe.timedOut ? 'docker info did not answer in time' : firstLine(probe.stderr) || `docker info exited with ${probe.exitCode}`;
  let fix;
  if (/permission denied/i.test(why)) {
    fix = 'allow your user to use the engine: `sudo usermod -aG docker "$USER"`, then log in again (or use rootless Docker)';
  } else if (desktop) {
    fix = 'start Docker Desktop (or point DOCKER_HOST / `docker context use` at a running engine)';
  } else {
    fix = 'start the engine: `sudo systemctl start docker` (rootless: `systemctl --user start docker`), or point DOCKER_HOST at a remote engine';
  }
  return { ...base, ok: false, detail: `the docker client is installed but no engine answers (${why})`, fix };
}

/** @param {Probe} probe @returns {Check} */
export function evaluatePulumi(probe, platform = process.platform) {
  const base = { id: 'pulumi', name: 'Pulumi CLI' };
  const install =
    platform === 'win32'
      ? 'install the Pulumi CLI: `winget install pulumi` (https://www.pulumi.com/docs/install/)'
      : 'install the Pulumi CLI: `curl -fsSL https://get.pulumi.com | sh` and add ~/.pulumi/bin to PATH' +
        (platform === 'darwin' ? ', or `brew install pulumi/tap/pulumi`' : '') +
        ' (https://www.pulumi.com/docs/install/)';
  if (!probe.found) return { ...base, ok: false, detail: 'pulumi is not on PATH', fix: install };
  if (probe.exitCode === 0 && !probe.timedOut) return { ...base, ok: true, detail: `Pulumi ${firstLine(probe.stdout)}`, fix: '' };
  const why = probe.timedOut ? 'pulumi version did not answer in time' : firstLine(probe.stderr) || `pulumi version exited with ${probe.exitCode}`;
  return { ...base, ok: false, detail: `pulumi is on PATH but does not run (${why})`, fix: `reinstall it: ${install.replace(/^install the Pulumi CLI: /, '')}` };
}

/**
 * The keychain check from `mongo-capsule keys status --json --name <name>` (exit 0: identity present, 3: keychain
 * fine but no identity, 1: keychain unreachable or refused, with the CLI's own `hint:` line).
 * @param {Probe} probe
 * @returns {Check & { identity?: { name: string, initialized: boolean, suite: string | null, kid: string | null, rotationPending: boolean }, keychain?: string, warnings?: string[] }}
 */
export function evaluateKeychain(probe, name = 'default') {
  const base = { id: 'keychain', name: 'OS keychain' };
  if (probe.timedOut) {
    return { ...base, ok: false, detail: 'the keychain did not answer in time (a locked keyring waiting for a prompt?)', fix: 'unlock the login keyring, or in CI opt in with MONGO_CAPSULE_SECRET_IDENTITY_FILE (see docs/ci.md)' };
  }
  if (probe.exitCode === 0 || probe.exitCode === 3) {
    let status;
    try {
      status = JSON.parse(probe.stdout);
    } catch {
      return { ...base, ok: false, detail: 'mongo-capsule keys status printed something unexpected', fix: 'run `npx mongo-capsule keys status` to see what is wrong' };
    }
    return {
      ...base,
      ok: true,
      // e.g. the CLI's warning that the identity comes from the environment opt-in: worth passing on.
      warnings: (probe.stderr ?? '').split('\n').map((l) => l.trim()).filter((l) => l.startsWith('warning: ')),
      detail: String(status.keychain ?? 'keychain reachable'),
      fix: '',
      keychain: String(status.keychain ?? ''),
      identity: { name: status.name ?? name, initialized: status.initialized === true, suite: status.suite ?? null, kid: status.kid ?? null, rotationPending: status.rotationPending === true },
    };
  }
  const lines = (probe.stderr ?? '').split('\n').map((l) => l.trim());
  const error = lines.find((l) => l.startsWith('error: '))?.slice('error: '.length) || firstLine(probe.stderr) || `mongo-capsule keys status exited with ${probe.exitCode}`;
  const hint = lines.find((l) => l.startsWith('hint: '))?.slice('hint: '.length) || 'see docs/keys.md';
  return { ...base, ok: false, detail: error, fix: hint };
}

/** Runs `command args` without a shell, bounded by `timeoutMs`; never throws. @returns {Promise<Probe>} */
export async function probe(command, args, { timeoutMs = PROBE_TIMEOUT_MS, env = process.env, cwd = ROOT } = {}) {
  const bin = command.includes('/') ? command : await which(command, { nothrow: true, path: env.PATH });
  if (!bin) return { found: false, exitCode: null, stdout: '', stderr: '' };
  const p = $({ nothrow: true, quiet: true, env, cwd, timeout: timeoutMs, timeoutSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'] })`${bin} ${args}`;
  const out = await p;
  // zx reports a timeout as a kill by the timeout signal.
  const timedOut = out.exitCode === null && out.signal === 'SIGKILL';
  return { found: true, exitCode: out.exitCode, stdout: out.stdout, stderr: out.stderr, timedOut };
}

export async function checkDocker(options = {}) {
  return evaluateDocker(await probe('docker', ['info', '--format', '{{.ServerVersion}}'], options));
}

/**
 * Docker objects that carry the label of `stack` (containers, volumes, networks): what a stack that the state
 * does not know would collide with. Docker reuses a volume whose name exists, so a new stack on old volumes
 * would start on old data with an old root password. Undefined when Docker cannot be asked.
 * @returns {Promise<{ containers: string[], volumes: string[], networks: string[] } | undefined>}
 */
export async function dockerLeftovers(stack, options = {}) {
  const filter = ['--filter', `label=mongo-capsule.stack=${stack}`];
  const kinds = { containers: ['ps', '-aq', ...filter], volumes: ['volume', 'ls', '-q', ...filter], networks: ['network', 'ls', '-q', ...filter] };
  const found = {};
  for (const [kind, args] of Object.entries(kinds)) {
    const r = await probe('docker', args, options);
    if (!r.found || r.exitCode !== 0) return undefined;
    found[kind] = r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  }
  return found;
}

/**
 * The commands that remove what `dockerLeftovers` found (the data in the volumes goes with them), containers first
 * (they hold the network and the volumes). Given `found`, only the kinds that have objects: `docker rm` with no
 * argument is an error.
 */
export function leftoverCleanup(stack, found) {
  const label = `label=mongo-capsule.stack=${stack}`;
  const all = [
    ['containers', `docker rm -f $(docker ps -aq --filter ${label})`],
    ['networks', `docker network rm $(docker network ls -q --filter ${label})`],
    ['volumes', `docker volume rm $(docker volume ls -q --filter ${label})`],
  ];
  return all.filter(([kind]) => found === undefined || (found[kind]?.length ?? 0) > 0).map(([, command]) => command);
}

export async function checkPulumi(options = {}) {
  return evaluatePulumi(await probe('pulumi', ['version'], options));
}

/** Asks the CLI (the keys module's own probe: a miss is only believed after a write/read/delete check). */
export async function checkKeychain({ name = 'default', env = process.env } = {}) {
  return evaluateKeychain(await probe(process.execPath, [CLI, 'keys', 'status', '--json', '--name', name], { env, timeoutMs: KEYCHAIN_TIMEOUT_MS }), name);
}

const CHECKS = {
  node: async () => checkNodeVersion(),
  keychain: (o) => checkKeychain(o),
  docker: (o) => checkDocker(o),
  pulumi: (o) => checkPulumi(o),
};

/**
 * Runs the named checks concurrently (so a machine missing everything hears about everything at once) and
 * returns them in the order asked.
 * @param {Array<'node' | 'keychain' | 'docker' | 'pulumi'>} ids
 */
export async function checkPrerequisites(ids, options = {}) {
  return Promise.all(ids.map((id) => CHECKS[id](options)));
}

/** One line per failed check: what is missing, why, and what to do. */
export function failureLines(checks) {
  return checks.filter((c) => !c.ok).map((c) => `missing: ${c.name}: ${c.detail}; fix: ${c.fix}`);
}

/** A check that failed because the identity is absent (the keychain itself is fine). */
export function identityMissing(name, how = '`npm run init`') {
  return {
    id: 'identity',
    name: `identity "${name}"`,
    ok: false,
    detail: 'not in the keychain',
    fix: `create it with ${how}${name === 'default' ? '' : ` (npm run init -- --name ${name})`}`,
  };
}
