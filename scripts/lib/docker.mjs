// What the scripts ask the Docker engine directly, next to pulumi: is the image there (or can it be pulled) before
// anything is created; how are the members doing while `pulumi up` waits for them; and, when one never becomes
// healthy, what mongod itself said, with the hint that matches it.
//
// Every call goes through `probe` (no shell, bounded, never throws), so DOCKER_HOST and the caller's environment
// decide which engine answers, and the watcher can run next to a pulumi process without ever failing the run itself.
import { probe } from './prereqs.mjs';

/** Label every Docker object of a stack carries (infra/index.ts). */
export const STACK_LABEL = 'mongo-capsule.stack';
/**
 * Consecutive failed health checks after which a member counts as failing. Docker does not count failures in the
 * start period, so with the program's timing this is 6 × 5 s after the minute a first start is given (Docker itself
 * gives up after 12), not 6 probes after creation.
 */
export const FAILING_STREAK_LIMIT = 6;
/** Lines of a failing container's log shown to the user. */
export const LOG_TAIL_LINES = 20;
/** A pull can take minutes on a slow link; a registry that cannot be reached fails well before this. */
const PULL_TIMEOUT_MS = 10 * 60_000;

const KEYFILE_FIX =
  'the program uploads the keyfile as 999:999 mode 0400, which needs the Docker provider plugin ≥ 5.2.0 (see "docker provider plugin" in the README); if you changed the image or mount your own keyfile, give it owner 999 and mode 0400';

/**
 * mongod's own fatal messages (and Docker's, for an image without mongod), most specific first: the first entry
 * that matches any line of the log wins. The patterns follow the texts of mongod's sources
 * (src/mongo/db/auth/security_file.cpp and the start-up errors), which mongod 6 writes inside its JSON log lines.
 */
export const MONGOD_HINTS = [
  {
    id: 'keyfile-too-open',
    pattern: /permissions on \S+ are too open/,
    hint: `mongod refuses a keyfile with any group or other permission bit; ${KEYFILE_FIX}`,
  },
  {
    id: 'keyfile-unreadable',
    pattern: /(error opening file: |Error reading file )\S+: (Permission denied|No such file or directory)/,
    hint: `mongod (uid 999) cannot read the keyfile; ${KEYFILE_FIX}`,
  },
  {
    id: 'keyfile-content',
    pattern: /invalid char in key file|security key (file )?(is )?too (short|long)/i,
    hint: 'the keyfile must be 6 to 1024 base64 characters; the stack generates a valid one, so something replaced it: `npm run down`, then `npm run up`',
  },
  {
    id: 'security-key',
    pattern: /Unable to acquire security key/,
    hint: `mongod could not load the keyfile (the lines above say why); ${KEYFILE_FIX}`,
  },
  {
    id: 'address-in-use',
    pattern: /Address already in use/,
    hint: 'another process already listens on this port inside the container: give the stack another port (`npm run up -- --base-port <port>`)',
  },
  {
    id: 'data-dir-locked',
    pattern: /Unable to lock the lock file|DBPathInUse/,
    hint: 'another mongod uses the same data volume; stop it (`docker ps --filter volume=<volume>`), or `npm run down` and `npm run up` to start on fresh volumes',
  },
  {
    id: 'old-volume',
    pattern: /UPGRADE PROBLEM|Wrong mongod version|Invalid feature compatibility version/i,
    hint: 'the data volume holds files of another mongod version (an old volume of an earlier stack or image): restore the old `mongo-capsule:image`, or remove the volumes with `npm run down` (the data goes with them) and rerun `npm run up`',
  },
  {
    id: 'bad-value',
    pattern: /BadValue|Error parsing command line|unrecognised option/,
    hint: 'mongod refused its settings: the image must be an official-compatible mongo image (mongo:6 or newer with the same entrypoint); check `mongo-capsule:image`',
  },
  {
    id: 'not-mongod',
    pattern: /executable file not found|exec: "?mongod"?|mongod: not found|docker-entrypoint\.sh: not found/,
    hint: 'the image has no mongod: set `mongo-capsule:image` to a MongoDB image (default mongo:6)',
  },
];

/**
 * The hint for a container log, from the first table entry that matches one of its lines.
 * @param {string} log
 * @returns {{ id: string, line: string, hint: string } | undefined}
 */
export function diagnoseMongodLog(log) {
  const lines = String(log ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
  for (const { id, pattern, hint } of MONGOD_HINTS) {
    const line = lines.find((l) => pattern.test(l));
    if (line !== undefined) return { id, line, hint };
  }
  return undefined;
}

/** The last `lines` lines a container printed (stdout and stderr), or '' when Docker cannot say. */
export async function containerLogTail(container, { lines = LOG_TAIL_LINES, env = process.env } = {}) {
  const r = await probe('docker', ['logs', '--tail', String(lines), container], { env });
  if (!r.found || r.exitCode !== 0) return '';
  return [r.stdout, r.stderr].filter((s) => s.trim() !== '').join('\n').trimEnd();
}

/**
 * One member's state as `docker inspect` reports it, or undefined while the container does not exist yet.
 * @returns {Promise<{ status: string, restarts: number, health: string | undefined, failingStreak: number, exitCode: number } | undefined>}
 */
export async function memberState(container, { env = process.env } = {}) {
  const r = await probe('docker', ['inspect', '--type', 'container', '--format', '{{json .State}}|{{.RestartCount}}', container], { env });
  if (!r.found || r.exitCode !== 0) return undefined;
  const text = r.stdout.trim();
  const cut = text.lastIndexOf('|');
  try {
    const state = JSON.parse(text.slice(0, cut));
    return {
      status: String(state.Status ?? 'unknown'),
      restarts: Number.parseInt(text.slice(cut + 1), 10) || 0,
      health: state.Health?.Status,
      failingStreak: Number(state.Health?.FailingStreak ?? 0),
      exitCode: Number(state.ExitCode ?? 0),
    };
  } catch {
    return undefined;
  }
}

/**
 * Whether a member's state means it will not become healthy by waiting: it restarted since the watch began (mongod
 * exited and Docker's restart policy brought it back), it stopped, or its health check failed repeatedly after the
 * start period. `baseRestarts`: the restart count when the watch first saw it (an old member may have restarted
 * days ago).
 * @returns {string | undefined} why, in words
 */
export function memberFailure(state, { failingStreakLimit = FAILING_STREAK_LIMIT, baseRestarts = 0 } = {}) {
  if (state === undefined) return undefined;
  const restarts = state.restarts - baseRestarts;
  if (restarts > 0 || state.status === 'restarting') {
    return `mongod exited${state.exitCode ? ` with code ${state.exitCode}` : ''} and Docker restarted the container${restarts > 1 ? ` ${restarts} times` : ''}`;
  }
  if (state.status === 'exited' || state.status === 'dead') return `the container stopped (exit code ${state.exitCode})`;
  if (state.health === 'unhealthy' || state.failingStreak >= failingStreakLimit) return `its health check failed ${state.failingStreak} times in a row`;
  return undefined;
}

/** A member's state as a few words for a progress line. */
export function describeMemberState(state) {
  if (state === undefined) return 'not created yet';
  if (state.status !== 'running') return state.status;
  if (state.health === undefined) return 'running';
  return state.health === 'starting' ? 'starting (waiting for its health check)' : state.health;
}

/** Names of the containers that carry the stack's label (the members, once pulumi has created them). */
export async function stackContainers(stack, { env = process.env } = {}) {
  const r = await probe('docker', ['ps', '-a', '--filter', `label=${STACK_LABEL}=${stack}`, '--format', '{{.Names}}'], { env });
  if (!r.found || r.exitCode !== 0) return [];
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean).sort();
}

/**
 * Watches the members while pulumi creates them: calls `onProgress` with a line whenever a member's state changes,
 * and resolves with the first failure (container, why, log tail, matching hint) as soon as one member will not
 * become healthy by waiting. Resolves undefined once `signal` aborts (pulumi finished). Never rejects.
 * @param {string[] | (() => Promise<string[]>)} containers the names, or how to list them on each round
 * @param {{ signal?: AbortSignal, intervalMs?: number, onProgress?: (line: string) => void, env?: NodeJS.ProcessEnv, failingStreakLimit?: number }} options
 * @returns {Promise<{ container: string, reason: string, log: string, diagnosis: ReturnType<typeof diagnoseMongodLog> } | undefined>}
 */
export async function watchMembers(containers, { signal, intervalMs = 2_000, onProgress = () => {}, env = process.env, failingStreakLimit = FAILING_STREAK_LIMIT } = {}) {
  const shown = new Map();
  const baseRestarts = new Map();
  const started = Date.now();
  try {
    while (!signal?.aborted) {
      const names = typeof containers === 'function' ? await containers() : containers;
      for (const container of names) {
        const state = await memberState(container, { env });
        if (state === undefined || signal?.aborted) continue;
        if (!baseRestarts.has(container)) baseRestarts.set(container, state.status === 'restarting' ? Math.max(0, state.restarts - 1) : state.restarts);
        const words = describeMemberState(state);
        if (shown.get(container) !== words) {
          shown.set(container, words);
          onProgress(`${container}: ${words} (${Math.round((Date.now() - started) / 1000)} s)`);
        }
        const reason = memberFailure(state, { failingStreakLimit, baseRestarts: baseRestarts.get(container) });
        if (reason !== undefined) {
          const log = await containerLogTail(container, { env });
          return { container, reason, log, diagnosis: diagnoseMongodLog(log) };
        }
      }
      await new Promise((r) => {
        const t = setTimeout(r, intervalMs);
        signal?.addEventListener('abort', () => {
          clearTimeout(t);
          r(undefined);
        }, { once: true });
      });
    }
  } catch {
    // a watcher never fails the run it watches
  }
  return undefined;
}

/** The lines `npm run up` prints for a failing member: what happened, mongod's own words, the hint. */
export function failureReport({ container, reason, log, diagnosis }) {
  const lines = [`${container} will not become healthy: ${reason}. Its last log lines:`];
  lines.push(...(log ? log.split('\n').map((l) => `  | ${l}`) : ['  (the container printed nothing)']));
  if (diagnosis) lines.push(`hint: ${diagnosis.hint}`);
  else lines.push(`hint: read the log above (\`docker logs ${container}\`); \`npm run down\` removes the stack and its volumes`);
  return lines;
}

/**
 * Whether `image` can be used before anything is created: present locally (then the provider does not pull it), or
 * pulled now. A failed pull says so plainly, with how to use a local image instead.
 * @returns {Promise<{ ok: boolean, local: boolean, pulled?: boolean, detail: string, fix: string }>}
 */
export async function checkImage(image, { env = process.env, pull = true, pullTimeoutMs = PULL_TIMEOUT_MS, stack = '<stack>' } = {}) {
  const inspect = await probe('docker', ['image', 'inspect', '--format', '{{.Id}}', image], { env });
  if (inspect.found && inspect.exitCode === 0) return { ok: true, local: true, detail: `image ${image} is present locally`, fix: '' };
  if (!pull) return { ok: false, local: false, detail: `image ${image} is not present locally`, fix: '' };
  const r = await probe('docker', ['pull', '--quiet', image], { env, timeoutMs: pullTimeoutMs });
  if (r.found && r.exitCode === 0 && !r.timedOut) return { ok: true, local: false, pulled: true, detail: `pulled image ${image}`, fix: '' };
  const why = r.timedOut ? 'the pull did not finish in time' : (r.stderr || r.stdout).trim().split('\n').filter(Boolean).at(-1) || `docker pull exited with ${r.exitCode}`;
  return {
    ok: false,
    local: false,
    detail: `the image ${image} is not on this machine and cannot be pulled (offline, a private registry without \`docker login\`, or a mistyped name): ${why}`,
    fix: `pull it once where the registry is reachable (or \`docker login <registry>\`), or use an image this engine already has: \`docker image ls\`, then \`pulumi config set mongo-capsule:image <name:tag> --stack ${stack}\` (a local image is used as it is, never pulled)`,
  };
}

/** "2 container(s), 1 volume(s)" for what `dockerLeftovers` found, or '' when nothing is left. */
export function describeObjects(found) {
  if (!found) return '';
  return ['containers', 'volumes', 'networks']
    .filter((k) => found[k].length > 0)
    .map((k) => `${found[k].length} ${k.slice(0, -1)}(s)`)
    .join(', ');
}

/** Provisioning could not log in as root (what MongoAuthError says). */
export function isAuthFailure(text) {
  return /authentication failed/i.test(String(text ?? ''));
}

/**
 * Docker mode made the connection string itself, so the generic hint (check the connection string) does not apply:
 * the likely cause is a volume of an earlier cluster with the same name (Docker reuses a volume whose name exists),
 * which keeps the root password it was initialised with.
 */
export function dockerAuthHint(stack) {
  return [
    `hint: the cluster of stack ${stack} refused the root password this stack generated. The likely cause is an old data volume with the same name (of an earlier cluster named ${stack}; Docker reuses a volume whose name exists): mongod keeps the root user it was first initialised with, and the image's init phase never runs again on a volume that has data.`,
    `hint: to start over (the cluster's data goes with the volumes): \`npm run down${stack === 'dev' ? '' : ` -- --stack ${stack}`}\` (it removes the stack's containers, network and volumes), then \`npm run up\`; the volumes: docker volume ls --filter name=mongo-capsule-${stack}-`,
  ];
}
