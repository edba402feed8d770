/**
 * `npm run up`, `npm run down` and `npm run e2e` against the real engine of the run, with a stand-in `pulumi` only
 * (test/scripts/support/run.ts; the real `docker` client answers): the leftover refusal and its commands, the image
 * pre-check before anything is created, the member watcher stopping `pulumi up` with mongod's own words (the
 * stand-in creates member 0 from the failing test image, as the program would name and label it), down's report
 * of a lost stack's objects, and e2e's progress while a cancel and the teardown run.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { leftoverCleanup } from '../../scripts/lib/prereqs.mjs';
import { fakeTools, nodeScript, run, STACK_FRAME, type FakeTools } from '../scripts/support/run.ts';
import { describeWithTestImage, docker, dockerEnv, labels, testStack } from './support/gate.ts';

const KEYFILE_TOO_OPEN = [
  '{"t":{"$date":"2026-12-02T10:00:00.000+00:00"},"s":"I","c":"ACCESS","id":20254,"ctx":"initandlisten","msg":"Read security file failed","attr":{"error":{"code":30,"codeName":"InvalidPath","errmsg":"permissions on /etc/mongo-capsule/keyfile are too open"}}}',
  '{"t":{"$date":"2026-12-02T10:00:00.001+00:00"},"s":"F","c":"CONTROL","id":20575,"ctx":"main","msg":"Error creating service context","attr":{"error":"Location5579201: Unable to acquire security key[s]"}}',
].join('\n');

function dockerRun(args: string[]): string {
  const r = spawnSync('docker', args, { encoding: 'utf8', env: dockerEnv(), timeout: 30_000 });
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

describeWithTestImage('the scripts against a real Docker engine (stand-in pulumi)', () => {
  let tools: FakeTools;
  let idDir: string;
  let pub: string;
  let env: NodeJS.ProcessEnv;
  const stacks: string[] = [];
  const newStack = () => {
    const s = testStack('ds');
    stacks.push(s);
    return s;
  };
  type Call = ReturnType<FakeTools['calls']>[number];
  const pulumiVerbs = (from: number) =>
    tools
      .calls()
      .slice(from)
      .filter((c: Call) => c.tool === 'pulumi' && c.args)
      .map((c: Call) => (c.args![0] === 'stack' || c.args![0] === 'config' ? `${c.args![0]} ${c.args![1]}` : c.args![0]));

  beforeAll(async () => {
    tools = fakeTools({ docker: false });
    idDir = mkdtempSync(join(tmpdir(), 'mongo-capsule-docker-id-'));
    pub = join(idDir, 'default.pub.json');
    const secret = join(idDir, 'default.secret.json');
    const r = await run(process.execPath, ['bin/mongo-capsule', 'keygen', '--pub-out', pub, '--secret-out', secret]);
    expect(r.code, r.stderr).toBe(0);
    env = tools.env({ ...(docker.host ? { DOCKER_HOST: docker.host } : {}), MONGO_CAPSULE_SECRET_IDENTITY_FILE: secret, FAKE_CONFIG_image: docker.image, FAKE_TEST_RUN: docker.runId });
  });
  afterEach(() => {
    for (const s of stacks.splice(0)) for (const line of leftoverCleanup(s)) spawnSync('sh', ['-c', `${line} 2>/dev/null`], { env: dockerEnv() });
  });
  afterAll(() => {
    rmSync(tools.dir, { recursive: true, force: true });
    rmSync(idDir, { recursive: true, force: true });
  });

  it('up on a new stack refuses the real objects of a lost one; the commands it prints remove them; then it runs', async () => {
    const s = newStack();
    dockerRun(['volume', 'create', ...labels(s), `mongo-capsule-${s}-0-db`]);
    dockerRun(['network', 'create', ...labels(s), `mongo-capsule-${s}-net`]);
    const before = tools.calls().length;
    const refused = await nodeScript('up', ['--pub', pub, '--stack', s], { env });
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`Docker still has 0 container\\(s\\), 1 volume\\(s\\) and 1 network\\(s\\) of a stack ${s}`));
    expect(pulumiVerbs(before)).not.toContain('stack select');
    const commands = refused.stderr.split('\n').filter((l) => /^\s+docker /.test(l)).map((l) => l.trim());
    // Only the kinds that exist: `docker rm` without a container would be an error.
    expect(commands).toEqual(leftoverCleanup(s, { containers: [], volumes: ['x'], networks: ['x'] }));
    for (const c of commands) expect(spawnSync('sh', ['-c', c], { env: dockerEnv() }).status, c).toBe(0);
    const ran = await nodeScript('up', ['--pub', pub, '--stack', s], { env });
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).not.toMatch(STACK_FRAME);
  });

  it('up with an image that cannot be pulled stops before the stack is even selected, and says how to use a local image', async () => {
    const s = newStack();
    const before = tools.calls().length;
    const r = await nodeScript('up', ['--pub', pub, '--stack', s], { env: { ...env, FAKE_CONFIG_image: '127.0.0.1:9/mongo-capsule-test/absent:1' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^missing: image 127\.0\.0\.1:9\/mongo-capsule-test\/absent:1: the image .* is not on this machine and cannot be pulled/m);
    expect(r.stderr).toContain(`pulumi config set mongo-capsule:image <name:tag> --stack ${s}`);
    expect(r.stderr).toMatch(/up: nothing was created/);
    const verbs = pulumiVerbs(before);
    expect(verbs).not.toContain('stack select');
    expect(verbs).not.toContain('up');
  });

  it('a member that dies like mongod on a bad keyfile: progress, then pulumi cancelled once, the log tail and the hint, long before 180 s', async () => {
    const s = newStack();
    const before = tools.calls().length;
    const r = await nodeScript('up', ['--pub', pub, '--stack', s, '--verbose'], {
      env: { ...env, FAKE_UP: 'member', FAKE_MEMBER_IMAGE: docker.image, FAKE_MEMBER_LINES: KEYFILE_TOO_OPEN },
      timeoutMs: 90_000,
    });
    expect(r.code, r.stderr).toBe(1);
    expect(r.ms).toBeLessThan(60_000);
    expect(r.stderr).toMatch(new RegExp(`^  mongo-capsule-${s}-0: `, 'm'));
    expect(r.stderr).toMatch(new RegExp(`mongo-capsule-${s}-0 will not become healthy: mongod exited with code 1 and Docker restarted the container`));
    expect(r.stderr).toMatch(/^ {2}\| .*permissions on \/etc\/mongo-capsule\/keyfile are too open/m);
    expect(r.stderr).toMatch(/^ {2}\| .*Unable to acquire security key/m);
    expect(r.stderr).toMatch(/^hint: mongod refuses a keyfile with any group or other permission bit; .*5\.2\.0/m);
    expect(r.stderr).toMatch(/`npm run down -- --stack ds-[0-9a-f]+` removes it/);
    // One graceful cancel, never a second (forcing) signal.
    const cancels = tools.calls().slice(before).filter((c: Call) => c.cancelled);
    expect(cancels).toHaveLength(1);
    expect(cancels[0]!.cancelled).toBe('SIGINT');
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });

  it('down without the stack in the state: reports the lost stack\'s objects with the commands; nothing left: nothing to do', async () => {
    const s = newStack();
    dockerRun(['create', '--name', `mongo-capsule-${s}-0`, ...labels(s), docker.image]);
    const r = await nodeScript('down', ['--stack', s], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`there is no stack ${s} in .*, but Docker still has 1 container\\(s\\) of a stack ${s}`));
    const commands = r.stderr.split('\n').filter((l) => /^\s+docker /.test(l)).map((l) => l.trim());
    expect(commands).toEqual(leftoverCleanup(s, { containers: ['x'], volumes: [], networks: [] }));
    for (const c of commands) expect(spawnSync('sh', ['-c', c], { env: dockerEnv() }).status, c).toBe(0);
    const clean = await nodeScript('down', ['--stack', s], { env });
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stderr).toMatch(/nothing to do/);
  });

  it('e2e after SIGTERM: while pulumi cancels and while the teardown runs, lines say what is still in Docker', async () => {
    const s = newStack();
    // The stack's member, as pulumi would have created it by the time of the signal.
    dockerRun(['run', '-d', '--name', `mongo-capsule-${s}-0`, ...labels(s), docker.image]);
    let child: import('node:child_process').ChildProcess | undefined;
    // A temporary directory of its own: e2e's throwaway identity must not show up in another test file's /tmp checks.
    const tmp = mkdtempSync(join(tmpdir(), 'mongo-capsule-docker-e2e-tmp-'));
    const running = nodeScript('e2e', ['--stack', s], {
      env: { ...env, TMPDIR: tmp, FAKE_UP: 'hang', FAKE_CANCEL_MS: '2500', FAKE_DESTROY_MS: '2500', MONGO_CAPSULE_PROGRESS_INTERVAL_MS: '700' },
      timeoutMs: 90_000,
      onSpawn: (c) => (child = c),
    });
    const deadline = Date.now() + 30_000;
    while (!tools.calls().some((c: Call) => c.args?.[0] === 'up' && c.args.includes(s))) {
      if (Date.now() > deadline) throw new Error('pulumi up never started');
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    child!.kill('SIGTERM');
    const r = await running;
    // Torn down: the throwaway identity is gone with the stack.
    const identities = readdirSync(tmp).filter((n) => n.startsWith('mongo-capsule-e2e-'));
    rmSync(tmp, { recursive: true, force: true });
    expect(identities).toEqual([]);
    expect(r.code, r.stderr).toBe(143);
    expect(r.stderr).toMatch(/e2e: waiting for the running step to stop/);
    expect(r.stderr).toMatch(new RegExp(`e2e: cancel: still waiting after \\d+ s; in Docker: mongo-capsule-${s}-0 running`));
    expect(r.stderr).toMatch(new RegExp(`e2e: pulumi destroy \\(stack ${s}\\): still waiting after \\d+ s; in Docker: mongo-capsule-${s}-0 running, in all 1 container\\(s\\)`));
    expect(r.stderr).not.toMatch(STACK_FRAME);
  }, 120_000);
});
