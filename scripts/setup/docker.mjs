// Setup step (optional): a Docker engine for the Docker tests, and the static busybox their test image is made of.
// Plain Node on purpose, like scripts/setup.mjs: it may run before node_modules exists.
//
// Installs Debian's `docker.io` (dockerd, containerd, runc) only where that is safe and possible: Linux, root, apt,
// and no engine binary yet (a Docker Desktop, docker-ce or rootless install is never replaced). The tests start
// their own dockerd from it (test/docker/support/engine.ts); nothing is started or enabled here. `busybox-static`
// is the one binary of the test image. This step never fails setup: what it cannot do, it says in one line, and the
// Docker tests then skip with their reason.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const ENGINE_PACKAGE = 'docker.io';
export const IMAGE_PACKAGE = 'busybox-static';
const ENGINE_BINARIES = ['/usr/bin/dockerd', '/usr/sbin/dockerd', '/usr/local/bin/dockerd'];

/** This machine, as dockerPlan and dockerStep see it. */
export function machine() {
  return {
    platform: process.platform,
    uid: typeof process.getuid === 'function' ? process.getuid() : undefined,
    exists: existsSync,
    isInstalled: (pkg) => {
      const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
      return r.status === 0 && r.stdout.trim() === 'install ok installed';
    },
    aptGet: (args) => {
      const r = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
      return r.error ? `apt-get could not start: ${r.error.message}` : r.status === 0 ? '' : `apt-get ${args[0]} failed with exit code ${r.status ?? r.signal}`;
    },
  };
}

/** What to install, or why nothing: pure, from what the machine looks like. */
export function dockerPlan({ platform, uid, exists, isInstalled }) {
  if (platform !== 'linux') return { install: [], skip: `skipped: the Docker tests start an engine on Linux only (${platform}: use Docker Desktop; the tests use it when it answers)` };
  if (!exists('/usr/bin/apt-get') || !exists('/usr/bin/dpkg-query')) return { install: [], skip: 'skipped: not a Debian-based system (install a Docker engine and busybox-static with your package manager to run the Docker tests)' };
  const engine = ENGINE_BINARIES.find((b) => exists(b));
  const wanted = [...(engine ? [] : [ENGINE_PACKAGE]), IMAGE_PACKAGE].filter((p) => !isInstalled(p));
  if (wanted.length === 0) return { install: [], skip: `already there: ${engine ? `an engine (${engine})` : ENGINE_PACKAGE}, ${IMAGE_PACKAGE}` };
  if (uid !== 0) {
    return { install: [], skip: `skipped: installing ${wanted.join(', ')} needs root (sudo apt-get install -y ${wanted.join(' ')}); without them the Docker tests skip` };
  }
  return { install: wanted, skip: engine ? `an engine is installed already (${engine}): not replaced` : '' };
}

export async function dockerStep(ctx, deps = machine()) {
  try {
    const plan = dockerPlan(deps);
    if (plan.skip) ctx.log(plan.skip);
    if (plan.install.length === 0) return;
    const install = ['install', '-y', '--no-install-recommends', ...plan.install];
    ctx.log(`apt-get ${install.join(' ')}`);
    // Package lists may be missing on a fresh image: update once, only when the install needs it.
    let failed = deps.aptGet(install);
    if (failed) {
      ctx.log('apt-get update (the package lists are missing or stale)');
      failed = deps.aptGet(['update']) || deps.aptGet(install);
    }
    const still = plan.install.filter((p) => !deps.isInstalled(p));
    if (failed || still.length > 0) ctx.warn(`${still.join(', ') || plan.install.join(', ')} not installed (${failed || 'apt-get reported success'}); the Docker tests will skip`);
    else ctx.log(`installed: ${plan.install.join(', ')} (no engine is started here; the tests start their own)`);
  } catch (e) {
    ctx.warn(`the docker step could not run (${e?.message ?? e}); the Docker tests will skip`);
  }
}

export default function docker(ctx) {
  return dockerStep(ctx);
}
