/**
 * A real Docker engine for the tests: the one that answers already (DOCKER_HOST or the default socket), or, when
 * none does and we are root with a `dockerd` binary, a private `dockerd` started for the run: its own data root,
 * exec root, pid file and unix socket in one temporary directory, no default bridge and no iptables rules (so it
 * cannot collide with another engine on the machine), stopped at the end with everything under that directory
 * verified gone (processes, mounts, files).
 *
 * It also imports the test image: a busybox-static root filesystem whose entrypoint prints the lines in FAIL_LINES
 * to stderr and exits with FAIL_EXIT (default 1), the way mongod dies on a bad keyfile, or sleeps when FAIL_LINES is
 * empty. It is a test image and says so in its name and label; it is never MongoDB.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startReaper } from '../../../scripts/lib/reaper.mjs';

export const TEST_IMAGE = 'mongo-capsule-test/failing-mongod:busybox';
/**
 * Every object a Docker test creates carries this label with the run's id, so the end of the run can prove none is
 * left, without touching another run's objects on a shared engine (a nested `npm test`, another checkout).
 */
export const TEST_LABEL = 'mongo-capsule.test';

export interface ProvidedDocker {
  available: boolean;
  /** Why not, when not available (printed by the skipped tests). */
  reason: string;
  /** DOCKER_HOST of the engine (`unix:///…`), '' for the client's default. */
  host: string;
  /** The test image, or '' when it could not be built (then `imageReason` says why). */
  image: string;
  imageReason: string;
  /** Whether this run started the engine itself. */
  started: boolean;
  version: string;
  /** Value of TEST_LABEL on this run's objects. */
  runId: string;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;

function docker(args: string[], host: string, opts: { timeout?: number; input?: string } = {}) {
  const env = { ...process.env };
  if (host) env.DOCKER_HOST = host;
  return spawnSync('docker', args, { encoding: 'utf8', env, timeout: opts.timeout ?? 15_000, input: opts.input });
}

function onPath(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, bin))) return join(dir, bin);
  }
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin']) if (existsSync(join(dir, bin))) return join(dir, bin);
  return undefined;
}

function serverVersion(host: string): string | undefined {
  const r = docker(['info', '--format', '{{.ServerVersion}}'], host, { timeout: 5_000 });
  const v = r.stdout?.trim();
  return r.status === 0 && v ? v : undefined;
}

/** A statically linked busybox (no ELF interpreter), the one binary the test image needs. */
function staticBusybox(): string | undefined {
  for (const p of ['/bin/busybox', '/usr/bin/busybox', onPath('busybox')]) {
    if (!p || !existsSync(p)) continue;
    const head = readFileSync(p).subarray(0, 8192).toString('latin1');
    if (head.startsWith('\x7fELF') && !/ld-linux|ld-musl/.test(head)) return p;
  }
  return undefined;
}

const ENTRYPOINT = `#!/bin/sh
# Test image of mongo-capsule (not MongoDB): print FAIL_LINES to stderr and exit, like a mongod that refuses to
# start, so that Docker's restart policy restarts it; without FAIL_LINES, stay up.
if [ -n "$FAIL_LINES" ]; then printf '%s\\n' "$FAIL_LINES" >&2; exit "\${FAIL_EXIT:-1}"; fi
exec sleep 86400
`;

/** Imports the test image into the engine at `host`; returns '' or why it could not. */
function importTestImage(host: string, workDir: string): string {
  const busybox = staticBusybox();
  if (!busybox) return 'no statically linked busybox (Debian package busybox-static; `npm run setup` installs it as root)';
  const rootfs = join(workDir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync(busybox, join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'sleep', 'true', 'false']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  writeFileSync(join(rootfs, 'bin', 'entrypoint'), ENTRYPOINT, { mode: 0o755 });
  const tar = join(workDir, 'rootfs.tar');
  const t = spawnSync('tar', ['-C', rootfs, '-cf', tar, '.'], { encoding: 'utf8' });
  rmSync(rootfs, { recursive: true, force: true });
  if (t.status !== 0) return `tar failed: ${t.stderr?.trim()}`;
  const r = docker(
    [
      'import',
      '--change', 'ENTRYPOINT ["/bin/entrypoint"]',
      '--change', 'LABEL org.opencontainers.image.description="mongo-capsule test image (busybox): prints FAIL_LINES and exits; not MongoDB"',
      tar,
      TEST_IMAGE,
    ],
    host,
    { timeout: 60_000 },
  );
  rmSync(tar, { force: true });
  return r.status === 0 ? '' : `docker import failed: ${(r.stderr || r.stdout || '').trim()}`;
}

/** Mount points at or under `dir` (the engine's overlay and netns mounts), deepest first. */
function mountsUnder(dir: string): string[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  return lines
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/** Processes whose command line names `dir` (dockerd, its containerd and shims). */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(dir)) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface DockerEngine {
  provided: ProvidedDocker;
  /** Stops what was started, removes what was made; returns what it found left behind (empty: nothing). */
  stop(): Promise<string[]>;
}

function unavailable(reason: string): DockerEngine {
  return {
    provided: { available: false, reason, host: '', image: '', imageReason: reason, started: false, version: '', runId: '' },
    stop: async () => [],
  };
}

export async function startDockerEngine(log: (msg: string) => void = () => {}): Promise<DockerEngine> {
  if (process.env.MONGO_CAPSULE_TEST_DOCKER === '0') return unavailable('Docker tests disabled (MONGO_CAPSULE_TEST_DOCKER=0)');
  if (!onPath('docker')) return unavailable('no docker client on PATH (`npm run setup` installs docker.io as root on Debian)');

  const runId = randomBytes(6).toString('hex');
  const existingHost = process.env.DOCKER_HOST ?? '';
  const existing = serverVersion(existingHost);
  if (existing) {
    // Someone else's engine: the image may be in use by another run (a nested one); only remove what we added.
    const hadImage = docker(['image', 'inspect', TEST_IMAGE], existingHost).status === 0;
    const work = mkdtempSync(join(tmpdir(), 'mc-docker-img-'));
    const imageReason = hadImage ? '' : importTestImage(existingHost, work);
    rmSync(work, { recursive: true, force: true });
    log(`using the running engine ${existing}${existingHost ? ` at ${existingHost}` : ''}`);
    return {
      provided: { available: true, reason: '', host: existingHost, image: imageReason ? '' : TEST_IMAGE, imageReason, started: false, version: existing, runId },
      stop: async () => {
        const left = leftoverTestObjects(existingHost, runId);
        if (!imageReason && !hadImage) docker(['image', 'rm', TEST_IMAGE], existingHost);
        return left;
      },
    };
  }

  if (process.getuid?.() !== 0) return unavailable('no Docker engine answers, and starting one needs root (this run is not root)');
  const dockerd = onPath('dockerd');
  if (!dockerd) return unavailable('no Docker engine answers and there is no dockerd binary (`npm run setup` installs docker.io as root on Debian)');

  // Short: the socket path must fit a unix socket address (108 bytes).
  const dir = mkdtempSync(join(tmpdir(), 'mc-dockerd-'));
  const host = `unix://${join(dir, 'docker.sock')}`;
  const logFile = join(dir, 'dockerd.log');
  const out = openSync(logFile, 'a');
  const t0 = Date.now();
  const child: ChildProcess = spawn(
    dockerd,
    [
      '--data-root', join(dir, 'data'),
      '--exec-root', join(dir, 'exec'),
      '--pidfile', join(dir, 'dockerd.pid'),
      '-H', host,
      // Another engine may own docker0 and the iptables chains: this one needs neither (user networks have their own
      // bridges, published ports go through docker-proxy).
      '--bridge=none',
      '--iptables=false',
      '--ip-masq=false',
    ],
    { stdio: ['ignore', out, out], detached: true },
  );
  let exited: string | undefined;
  child.on('exit', (code, signal) => (exited = `dockerd exited (${code ?? signal})`));
  // dockerd is detached (its own process group): an interrupted run (Ctrl-C, a killed runner) never reaches its
  // teardown, so a watchdog stops dockerd and everything under `dir` when this process ends without cleaning up.
  const reaper = startReaper({ dir, pids: child.pid === undefined ? [] : [child.pid], label: 'docker' });

  const cleanup = async (): Promise<string[]> => {
    reaper.kill();
    const left: string[] = [];
    if (exited === undefined && child.pid !== undefined) {
      for (const c of leftoverTestObjects(host, runId)) left.push(c);
      child.kill('SIGTERM');
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while (exited === undefined && Date.now() < deadline) await sleep(100);
      if (exited === undefined) {
        left.push('dockerd did not stop within 20 s after SIGTERM: killed');
        child.kill('SIGKILL');
        await sleep(500);
      }
    }
    // containerd and shims it started stop with it; wait a moment, then say (and end) what did not.
    for (let i = 0; i < 50 && processesUnder(dir).length > 0; i++) await sleep(100);
    for (const pid of processesUnder(dir)) {
      left.push(`process ${pid} of the test engine was still running: killed`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const m of mountsUnder(dir)) {
      left.push(`mount ${m} was left: unmounted`);
      spawnSync('umount', ['-l', m]);
    }
    rmSync(dir, { recursive: true, force: true });
    if (existsSync(dir)) left.push(`${dir} could not be removed`);
    return left;
  };

  let version: string | undefined;
  while (!version && exited === undefined && Date.now() - t0 < START_TIMEOUT_MS) {
    await sleep(100);
    version = serverVersion(host);
  }
  if (!version) {
    const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join(' | ') : '';
    const why = exited ?? `dockerd did not answer within ${START_TIMEOUT_MS / 1000} s`;
    await cleanup();
    return unavailable(`no Docker engine answers and starting dockerd failed: ${why}${tail ? `: ${tail}` : ''}`);
  }
  const imageReason = importTestImage(host, dir);
  log(`started dockerd ${version} at ${host} in ${Date.now() - t0} ms${imageReason ? `; no test image: ${imageReason}` : `, test image ${TEST_IMAGE}`}`);
  return {
    provided: { available: true, reason: '', host, image: imageReason ? '' : TEST_IMAGE, imageReason, started: true, version, runId },
    stop: cleanup,
  };
}

/** Objects a test made and did not remove (they carry TEST_LABEL): named, then removed. */
function leftoverTestObjects(host: string, runId: string): string[] {
  const left: string[] = [];
  const filter = ['--filter', `label=${TEST_LABEL}=${runId}`];
  const kinds: Array<[string, string[], string[]]> = [
    ['container', ['ps', '-aq', ...filter], ['rm', '-f']],
    ['network', ['network', 'ls', '-q', ...filter], ['network', 'rm']],
    ['volume', ['volume', 'ls', '-q', ...filter], ['volume', 'rm', '-f']],
  ];
  for (const [kind, list, remove] of kinds) {
    const ids = (docker(list, host).stdout ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
    if (ids.length === 0) continue;
    left.push(`${ids.length} test ${kind}(s) left by a test: removed`);
    docker([...remove, ...ids], host);
  }
  return left;
}
