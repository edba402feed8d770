/**
 * Every path of scripts/lib that talks to Docker, against the real engine of the run (test/docker-global-setup.ts):
 * the engine check, the leftovers of a lost stack and the commands that remove them, the image pre-check, and the
 * member watcher with the test image (a busybox stand-in that dies the way mongod does; not MongoDB).
 */
import { spawnSync } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import { checkImage, containerLogTail, describeObjects, memberState, stackContainers, watchMembers } from '../../scripts/lib/docker.mjs';
import { checkDocker, dockerLeftovers, leftoverCleanup } from '../../scripts/lib/prereqs.mjs';
import { describeWithDocker, describeWithTestImage, docker, dockerEnv, labels, testStack } from './support/gate.ts';

function dockerRun(args: string[]): string {
  const r = spawnSync('docker', args, { encoding: 'utf8', env: dockerEnv(), timeout: 30_000 });
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

const made: string[] = [];
afterEach(() => {
  for (const stack of made.splice(0)) {
    for (const line of leftoverCleanup(stack)) spawnSync('sh', ['-c', `${line} 2>/dev/null`], { env: dockerEnv() });
  }
});
function stack(): string {
  const s = testStack();
  made.push(s);
  return s;
}

// mongod 6's own lines (JSON log) when it refuses the keyfile, and when its port is taken; a command-line BadValue.
const KEYFILE_TOO_OPEN = [
  '{"t":{"$date":"2026-12-02T10:00:00.000+00:00"},"s":"I","c":"ACCESS","id":20254,"ctx":"initandlisten","msg":"Read security file failed","attr":{"error":{"code":30,"codeName":"InvalidPath","errmsg":"permissions on /etc/mongo-capsule/keyfile are too open"}}}',
  '{"t":{"$date":"2026-12-02T10:00:00.001+00:00"},"s":"F","c":"CONTROL","id":20575,"ctx":"main","msg":"Error creating service context","attr":{"error":"Location5579201: Unable to acquire security key[s]"}}',
].join('\n');
const ADDRESS_IN_USE =
  '{"t":{"$date":"2026-12-02T10:00:00.000+00:00"},"s":"E","c":"NETWORK","id":23024,"ctx":"initandlisten","msg":"Failed to set up listener","attr":{"error":{"code":9001,"codeName":"SocketException","errmsg":"Address already in use"}}}';
const BAD_VALUE = 'BadValue: security.keyFile is required when authorization is enabled with replica sets';

describeWithDocker('the engine check (prereqs) against a real engine', () => {
  it('answers with the engine version', async () => {
    const c = await checkDocker({ env: dockerEnv() });
    expect(c).toMatchObject({ ok: true, detail: `Docker engine ${docker.version}` });
  });
  it('a socket where no engine listens: "no engine answers", with Docker\'s own words and how to start one', async () => {
    const c = await checkDocker({ env: dockerEnv({ DOCKER_HOST: 'unix:///nonexistent/mongo-capsule-test.sock' }) });
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(/no engine answers \(.*(Cannot connect|no such file)/i);
    expect(c.fix).toMatch(/systemctl start docker|DOCKER_HOST/);
  });
});

describeWithTestImage('leftovers of a lost stack (labels), and the commands that remove them', () => {
  it('finds the containers, volumes and networks of that stack only; the printed commands remove them all', async () => {
    const s = stack();
    const other = stack();
    dockerRun(['network', 'create', ...labels(s), `${s}-net`]);
    dockerRun(['volume', 'create', ...labels(s), `${s}-0-db`]);
    dockerRun(['volume', 'create', ...labels(s), `${s}-0-configdb`]);
    dockerRun(['create', '--name', `${s}-0`, ...labels(s), '--network', `${s}-net`, '-v', `${s}-0-db:/data/db`, docker.image]);
    dockerRun(['volume', 'create', ...labels(other), `${other}-0-db`]);

    const left = await dockerLeftovers(s, { env: dockerEnv() });
    expect(left).toBeDefined();
    expect(left!.containers).toHaveLength(1);
    expect(left!.volumes).toHaveLength(2);
    expect(left!.networks).toHaveLength(1);
    expect(describeObjects(left)).toBe('1 container(s), 2 volume(s), 1 network(s)');

    const commands = leftoverCleanup(s, left);
    expect(commands).toHaveLength(3);
    for (const command of commands) {
      const r = spawnSync('sh', ['-c', command], { encoding: 'utf8', env: dockerEnv() });
      expect(r.status, `${command}: ${r.stderr}`).toBe(0);
    }
    expect(await dockerLeftovers(s, { env: dockerEnv() })).toEqual({ containers: [], volumes: [], networks: [] });
    // The other stack's volume is untouched.
    expect((await dockerLeftovers(other, { env: dockerEnv() }))!.volumes).toHaveLength(1);
    expect(leftoverCleanup(s, { containers: [], volumes: [], networks: [] })).toEqual([]);
  });
  it('an engine that cannot be asked gives undefined, not "nothing left"', async () => {
    expect(await dockerLeftovers('dt-x', { env: dockerEnv({ DOCKER_HOST: 'unix:///nonexistent/mongo-capsule-test.sock' }) })).toBeUndefined();
  });
});

describeWithTestImage('the image pre-check', () => {
  it('a local-only image is accepted as it is, without a pull', async () => {
    expect(await checkImage(docker.image, { env: dockerEnv() })).toMatchObject({ ok: true, local: true });
  });
  it('an image that cannot be pulled fails at once, plainly, with how to use a local image', async () => {
    const t0 = Date.now();
    const c = await checkImage('127.0.0.1:9/mongo-capsule-test/absent:1', { env: dockerEnv() });
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(/^the image 127\.0\.0\.1:9\/mongo-capsule-test\/absent:1 is not on this machine and cannot be pulled \(offline, a private registry/);
    expect(c.detail).toMatch(/connection refused|dial tcp|error/i);
    expect(c.fix).toContain('pulumi config set mongo-capsule:image <name:tag>');
    expect(c.fix).toMatch(/docker image ls/);
  });
});

describeWithTestImage('the member watcher against a container that dies the way mongod does', () => {
  const cases = [
    { name: 'keyfile too open', lines: KEYFILE_TOO_OPEN, id: 'keyfile-too-open', said: 'permissions on /etc/mongo-capsule/keyfile are too open' },
    { name: 'port taken', lines: ADDRESS_IN_USE, id: 'address-in-use', said: 'Address already in use' },
    { name: 'bad option', lines: BAD_VALUE, id: 'bad-value', said: 'BadValue' },
  ];
  for (const c of cases) {
    it(`${c.name}: stops at the first restart, with the log tail and the matching hint`, async () => {
      const s = stack();
      const progress: string[] = [];
      const name = `${s}-0`;
      const t0 = Date.now();
      dockerRun(['run', '-d', '--name', name, ...labels(s), '--restart', 'unless-stopped', '-e', `FAIL_LINES=${c.lines}`, docker.image]);
      const failure = await watchMembers(() => stackContainers(s, { env: dockerEnv() }), { env: dockerEnv(), intervalMs: 200, onProgress: (l) => progress.push(l) });
      expect(Date.now() - t0).toBeLessThan(20_000);
      expect(failure).toBeDefined();
      expect(failure!.container).toBe(name);
      expect(failure!.reason).toMatch(/mongod exited with code 1 and Docker restarted the container|exited/);
      expect(failure!.log).toContain(c.said);
      expect(failure!.diagnosis?.id).toBe(c.id);
      expect(failure!.diagnosis?.line).toContain(c.said);
      expect(progress.length).toBeGreaterThan(0);
      expect(progress[0]).toMatch(new RegExp(`^${name}: `));
    });
  }

  it('a member whose health check keeps failing is reported after the streak, not after the 180 s wait', async () => {
    const s = stack();
    const name = `${s}-0`;
    dockerRun(['run', '-d', '--name', name, ...labels(s), '--health-cmd', 'false', '--health-interval', '1s', '--health-retries', '12', '--health-timeout', '1s', docker.image]);
    const t0 = Date.now();
    const failure = await watchMembers([name], { env: dockerEnv(), intervalMs: 300, failingStreakLimit: 3 });
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(failure?.reason).toMatch(/health check failed [3-9] times in a row/);
    expect((await memberState(name, { env: dockerEnv() }))?.status).toBe('running');
  });

  it('healthy members: progress lines as they change, nothing reported, and it stops when told', async () => {
    const s = stack();
    const name = `${s}-0`;
    dockerRun(['run', '-d', '--name', name, ...labels(s), '--health-cmd', 'true', '--health-interval', '1s', docker.image]);
    const progress: string[] = [];
    const stop = new AbortController();
    const watching = watchMembers(() => stackContainers(s, { env: dockerEnv() }), { env: dockerEnv(), intervalMs: 200, signal: stop.signal, onProgress: (l) => progress.push(l) });
    const deadline = Date.now() + 15_000;
    while (!progress.some((l) => /: healthy/.test(l)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    stop.abort();
    expect(await watching).toBeUndefined();
    expect(progress.some((l) => /: starting \(waiting for its health check\)/.test(l))).toBe(true);
    expect(progress.some((l) => new RegExp(`^${name}: healthy \\(\\d+ s\\)$`).test(l))).toBe(true);
    expect(await containerLogTail(name, { env: dockerEnv() })).toBe('');
  });
});
