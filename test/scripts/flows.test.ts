/**
 * The whole flow of `up`, `down` and `e2e` with stand-ins for `pulumi` and `docker` (see support/run.ts): the
 * commands in order, the environment they get (passphrase file, throwaway identity), what is printed and what is
 * never printed, and the teardown after success, failure and SIGTERM. What only a Docker host with the real
 * Pulumi CLI can show (containers, provisioning) is out of reach here by construction.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { describeIf } from '../support/skip.ts';
import { fakeTools, nodeScript, ROOT, run, STACK_FRAME, type FakeTools } from './support/run.ts';

const SECRET_URI = 'mongodb://root:flow-secret-4242@127.0.0.1:9/?directConnection=true&authSource=admin';
const SECRET = 'flow-secret-4242';

type Call = ReturnType<FakeTools['calls']>[number];
const pulumiCalls = (tools: FakeTools) => tools.calls().filter((c: Call) => c.tool === 'pulumi' && c.args);
const verbs = (calls: Call[]) => calls.map((c) => (c.args![0] === 'stack' || c.args![0] === 'config' ? `${c.args![0]} ${c.args![1]}` : c.args![0]));

function identityDirs(): Set<string> {
  return new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('mongo-capsule-e2e-')));
}

describe('npm run up / down (stand-in pulumi and docker)', () => {
  let tools: FakeTools;
  let idDir: string;
  let pub: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    tools = fakeTools();
    idDir = mkdtempSync(join(tmpdir(), 'mongo-capsule-flow-id-'));
    pub = join(idDir, 'default.pub.json');
    const secret = join(idDir, 'default.secret.json');
    const r = await run(process.execPath, ['bin/mongo-capsule', 'keygen', '--pub-out', pub, '--secret-out', secret]);
    expect(r.code, r.stderr).toBe(0);
    // The keychain check goes through the CLI's explicit opt-in: the same path CI uses without a keychain.
    env = tools.env({ FAKE_URI: SECRET_URI, MONGO_CAPSULE_SECRET_IDENTITY_FILE: secret });
  });
  afterAll(() => {
    rmSync(tools.dir, { recursive: true, force: true });
    rmSync(idDir, { recursive: true, force: true });
  });

  it('up: checks, selects the stack, sets the public key path, updates, prints outputs without the secret', async () => {
    const r = await nodeScript('up', ['--pub', pub], { env });
    expect(r.code, r.stderr).toBe(0);
    const calls = pulumiCalls(tools);
    // stack ls: the leftover check; config get mode, plugin ls, config get image: the Docker checks before anything is created.
    expect(verbs(calls)).toEqual(['version', 'stack ls', 'config get', 'plugin', 'config get', 'stack select', 'config set', 'up', 'stack output']);
    expect(calls[6]!.args).toEqual(['config', 'set', '--stack', 'dev', '--non-interactive', 'mongo-capsule:publicKeyPath', '--', pub]);
    for (const c of calls.slice(1)) {
      expect(c.passphraseFile).toBe(env.PULUMI_CONFIG_PASSPHRASE_FILE);
      expect(c.backend).toBe(env.PULUMI_BACKEND_URL);
    }
    expect(calls.at(-1)!.args).not.toContain('--show-secrets');
    expect(r.stdout).toContain('capsule:      default');
    expect(r.stdout).toContain('connection:   [secret] (npm run up -- --outputs-only --show-connection-string)');
    expect(r.stdout + r.stderr).not.toContain(SECRET);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });

  it('up --external: mode and the URI as a stack secret on stdin, no Docker engine needed, the URI never shown', async () => {
    const before = pulumiCalls(tools).length;
    const r = await nodeScript('up', ['--pub', pub, '--external'], { env: { ...env, MONGODB_URI: SECRET_URI, FAKE_DOCKER: 'down' } });
    expect(r.code, r.stderr).toBe(0);
    const calls = pulumiCalls(tools).slice(before);
    expect(verbs(calls)).toEqual(['version', 'stack select', 'config set', 'config set', 'config set', 'up', 'stack output']);
    expect(calls[3]!.args).toEqual(['config', 'set', '--stack', 'dev', '--non-interactive', 'mongo-capsule:mode', '--', 'external']);
    expect(calls[4]!.args).toEqual(['config', 'set', '--stack', 'dev', '--non-interactive', '--secret', 'mongo-capsule:uri']);
    expect(calls[4]!.stdin).toBe(SECRET_URI);
    for (const c of calls) expect(c.args!.join(' ')).not.toContain(SECRET);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('up --external refuses a missing MONGODB_URI and Docker-only options, before running anything', async () => {
    const before = pulumiCalls(tools).length;
    const noUri = { ...env };
    delete noUri.MONGODB_URI;
    for (const [args, extra, message] of [
      [['--external'], noUri, /--external needs the cluster's connection string in MONGODB_URI/],
      [['--external', '--members', '3'], { ...env, MONGODB_URI: SECRET_URI }, /--members and --base-port describe a cluster in Docker/],
    ] as const) {
      const r = await nodeScript('up', [...args], { env: extra });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain(SECRET);
    }
    const dry = await nodeScript('up', ['--external', '--dry-run'], { env: { ...env, MONGODB_URI: SECRET_URI } });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('pulumi config set --stack dev --non-interactive --secret mongo-capsule:uri  (value from MONGODB_URI, on stdin)');
    expect(dry.stdout).not.toMatch(/Docker engine/);
    expect(dry.stdout + dry.stderr).not.toContain(SECRET);
    expect(pulumiCalls(tools).length).toBe(before);
  });

  it('up on a new stack refuses Docker objects left by a stack whose state is gone, and says how to remove them', async () => {
    const before = pulumiCalls(tools).length;
    const r = await nodeScript('up', ['--pub', pub, '--stack', 'leftover'], { env: { ...env, FAKE_DOCKER_LEFTOVERS: 'volume,network' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/stack leftover is new to .*, but Docker still has 0 container\(s\), 1 volume\(s\) and 1 network\(s\)/);
    expect(r.stderr).toContain('docker volume rm $(docker volume ls -q --filter label=mongo-capsule.stack=leftover)');
    expect(verbs(pulumiCalls(tools).slice(before))).toEqual(['version', 'stack ls']);
    // A stack the backend knows manages its own objects: no refusal.
    const known = await nodeScript('up', ['--pub', pub, '--stack', 'leftover'], { env: { ...env, FAKE_DOCKER_LEFTOVERS: 'volume,network', FAKE_STACKS: 'leftover' } });
    expect(known.code, known.stderr).toBe(0);
  });

  it('up --json --show-connection-string: outputs as JSON on stdout, progress (CI streams pulumi) on stderr only', async () => {
    const r = await nodeScript('up', ['--pub', pub, '--json', '--show-connection-string'], { env: { ...env, CI: 'true' } });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ connectionString: SECRET_URI, capsuleName: 'default', kid: 'fakekid' });
    expect(r.stderr).toContain('Resources: 7 created');
    expect(r.stderr).not.toContain(SECRET);
  });

  it('up --outputs-only changes nothing and --json hides the secret without the flag', async () => {
    const before = pulumiCalls(tools).length;
    const r = await nodeScript('up', ['--outputs-only', '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(verbs(pulumiCalls(tools).slice(before))).toEqual(['version', 'stack output']);
    expect(JSON.parse(r.stdout).connectionString).toBe('[secret]');
  });

  it('up without an identity says to run npm run init, and changes nothing', async () => {
    const before = pulumiCalls(tools).length;
    const r = await nodeScript('up', ['--name', 'nobody'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^missing: (identity "nobody"|OS keychain): /m);
    expect(r.stderr).toMatch(/npm run init|MONGO_CAPSULE_SECRET_IDENTITY/);
    expect(verbs(pulumiCalls(tools).slice(before))).toEqual(['version']);
  });

  it('no Docker engine: a docker-mode stack stops; an external-mode stack goes on without one', async () => {
    const stopped = await nodeScript('up', ['--pub', pub], { env: { ...env, FAKE_DOCKER: 'down' } });
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toMatch(/^missing: Docker engine: the docker client is installed but no engine answers/m);
    const before = pulumiCalls(tools).length;
    const external = await nodeScript('up', ['--pub', pub], { env: { ...env, FAKE_DOCKER: 'down', FAKE_CONFIG_mode: 'external' } });
    expect(external.code, external.stderr).toBe(0);
    expect(external.stderr).toMatch(/provisions an external cluster .*no Docker engine needed/);
    expect(verbs(pulumiCalls(tools).slice(before))).toEqual(['version', 'config get', 'stack select', 'config set', 'up', 'stack output']);
  });

  it("without --name/--pub, the identity is the one named in the stack's own public file", async () => {
    const before = pulumiCalls(tools).length;
    const r = await nodeScript('up', [], { env: { ...env, FAKE_CONFIG_publicKeyPath: pub } });
    expect(r.code, r.stderr).toBe(0);
    // No config set: the stack keeps its publicKeyPath; the keychain was asked for "default", the name in that file.
    expect(verbs(pulumiCalls(tools).slice(before))).toEqual(['version', 'config get', 'stack ls', 'config get', 'plugin', 'config get', 'stack select', 'up', 'stack output']);
    const other = await nodeScript('up', [], { env: { ...env, FAKE_CONFIG_publicKeyPath: join(idDir, 'missing.pub.json') } });
    expect(other.code).toBe(0);
    expect(existsSync(join(idDir, 'missing.pub.json'))).toBe(true); // written from the (opt-in) keychain
  });

  it('a failing pulumi up: its diagnostics, a hint, exit 1', async () => {
    const r = await nodeScript('up', ['--pub', pub], { env: { ...env, FAKE_UP: 'fail' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/up: pulumi up \(stack dev\).* failed:/);
    expect(r.stderr).toContain('error: provisioning failed: fake failure');
    expect(r.stderr).toMatch(/hint: rerun with --verbose/);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });

  it('an old Docker provider plugin on PATH: refused before the stack is selected, with the exact fix', async () => {
    const pluginDir = mkdtempSync(join(tmpdir(), 'mongo-capsule-old-plugin-'));
    writeFileSync(join(pluginDir, 'pulumi-resource-docker'), '#!/bin/sh\n[ "$1" = "-version" ] && echo 4.5.1\n', { mode: 0o755 });
    try {
      const before = pulumiCalls(tools).length;
      const r = await nodeScript('up', ['--pub', pub], { env: { ...env, PATH: `${pluginDir}:${env.PATH}` } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^missing: Pulumi Docker provider plugin: Pulumi would use .*pulumi-resource-docker from PATH, version 4\.5\.1; .*Invalid or unknown key/m);
      expect(r.stderr).toMatch(/PULUMI_IGNORE_AMBIENT_PLUGINS=true/);
      expect(r.stderr).toMatch(/up: nothing was created/);
      expect(verbs(pulumiCalls(tools).slice(before))).not.toContain('stack select');
    } finally {
      rmSync(pluginDir, { recursive: true, force: true });
    }
  });

  it('--verbose (or CI): pulumi\'s output streams, and no "rerun with --verbose" follows it', async () => {
    for (const extra of [{ args: ['--verbose'], env: {} }, { args: [], env: { CI: 'true' } }]) {
      const r = await nodeScript('up', ['--pub', pub, ...extra.args], { env: { ...env, ...extra.env, FAKE_UP: 'fail' } });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('error: provisioning failed: fake failure');
      expect(r.stderr).not.toMatch(/rerun with --verbose/);
      expect(r.stderr).toMatch(/hint: re-running `npm run up` resumes/);
    }
  });

  it('an existing external stack run without --external: the step names the cluster, not containers, and no Docker check runs', async () => {
    const before = pulumiCalls(tools).length;
    const r = await nodeScript('up', ['--pub', pub], { env: { ...env, FAKE_CONFIG_mode: 'external' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/pulumi up \(stack dev\): capsule and data key in the existing cluster/);
    expect(r.stderr).not.toMatch(/containers/);
    expect(verbs(pulumiCalls(tools).slice(before))).not.toContain('plugin');
  });

  it('docker mode, authentication failure: the likely cause (an old volume) and how to reset, not the connection string', async () => {
    for (const extra of [[], ['--verbose']]) {
      const r = await nodeScript('up', ['--pub', pub, ...extra], { env: { ...env, FAKE_UP: 'auth' } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/authentication failed/);
      expect(r.stderr).toMatch(/hint: .*old data volume/);
      expect(r.stderr).toMatch(/hint: to start over .*`npm run down` \(it removes the stack's containers, network and volumes\), then `npm run up`/);
      // The generic hint is dropped from the captured output (with --verbose pulumi already printed it).
      if (extra.length === 0) expect(r.stderr).not.toMatch(/hint: check the user name, password and authSource of the connection string/);
    }
    // External mode: the connection string is the user's, so the generic hint stays and no volume is blamed.
    const ext = await nodeScript('up', ['--pub', pub, '--external'], { env: { ...env, FAKE_UP: 'auth', MONGODB_URI: SECRET_URI } });
    expect(ext.code).toBe(1);
    expect(ext.stderr).toMatch(/hint: check the user name, password and authSource of the connection string/);
    expect(ext.stderr).not.toMatch(/old data volume/);
    expect(ext.stderr).not.toContain(SECRET);
  });

  it.skipIf(existsSync(join(ROOT, '.pulumi-state')))('down without any local state: nothing to do, and no state directory is created', async () => {
    const noState = { ...env };
    delete noState.PULUMI_BACKEND_URL;
    delete noState.PULUMI_CONFIG_PASSPHRASE_FILE;
    const r = await nodeScript('down', [], { env: noState });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/no local Pulumi state .*nothing to do/);
    expect(existsSync(join(ROOT, '.pulumi-state'))).toBe(false);
  });

  it('down: nothing to do for an unknown stack; destroy (and stack rm) otherwise', async () => {
    const none = await nodeScript('down', [], { env: { ...env, FAKE_STACKS: '' } });
    expect(none.code, none.stderr).toBe(0);
    expect(none.stderr).toMatch(/there is no stack dev .*nothing to do/);
    const before = pulumiCalls(tools).length;
    const r = await nodeScript('down', ['--remove-stack'], { env: { ...env, FAKE_STACKS: 'organization/mongo-capsule/dev' } });
    expect(r.code, r.stderr).toBe(0);
    expect(verbs(pulumiCalls(tools).slice(before))).toEqual(['version', 'stack ls', 'destroy', 'stack rm']);
    expect(r.stderr).toMatch(/stack dev destroyed and removed/);
  });
});

// The stack's connection string, as the stand-in pulumi reports it: a server that answers (the suite must reach
// it: e2e makes an unreachable one a failure, not a skip), with a password in it like the real one.
const testServer = inject('mongoServer');
const STACK_URI =
  testServer.kind === 'ferretdb'
    ? `${testServer.uri.replace('mongodb://', `mongodb://root:${SECRET}@`)}&authMechanism=PLAIN&authSource=%24external` // FerretDB takes any PLAIN credentials
    : testServer.uri;
const STACK_SECRET = testServer.kind === 'ferretdb' ? SECRET : decodeURIComponent(/^mongodb:\/\/[^:@/]*:([^@/]*)@/.exec(testServer.uri)?.[1] ?? SECRET);

describeIf(testServer.kind !== 'none', `npm run e2e flows need a test server for the suite to reach: ${testServer.reason}`)('npm run e2e (stand-in pulumi and docker)', () => {
  let tools: FakeTools;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => {
    tools = fakeTools();
    env = tools.env({ FAKE_URI: STACK_URI });
    delete env.MONGO_CAPSULE_SECRET_IDENTITY_FILE;
  });
  afterAll(() => rmSync(tools.dir, { recursive: true, force: true }));

  const sinceLast = (() => {
    let seen = 0;
    return () => {
      const all = pulumiCalls(tools);
      const fresh = all.slice(seen);
      seen = all.length;
      return fresh;
    };
  })();

  it('success: throwaway identity and ports, up, the suite with MONGODB_URI, then destroy and stack rm; exit 0', { timeout: 120_000 }, async () => {
    sinceLast();
    const dirsBefore = identityDirs();
    // A small, server-independent test file stands in for the integration suite.
    const r = await nodeScript('e2e', ['--stack', 'e2e-flow-ok', '--skip-doctor', 'test/scripts/script-args.test.ts'], { env, timeoutMs: 110_000 });
    expect(r.code, r.stderr).toBe(0);
    const calls = sinceLast();
    expect(verbs(calls)).toEqual(['version', 'stack ls', 'stack select', 'config set', 'config set', 'config set', 'up', 'stack output', 'destroy', 'stack rm']);
    const config = calls.filter((c) => c.args![0] === 'config').map((c) => c.args!.slice(-3));
    expect(config[0]![0]).toBe('mongo-capsule:publicKeyPath');
    expect(config[0]![2]).toMatch(/mongo-capsule-e2e-.*\/e2e\.pub\.json$/);
    expect(config[1]![0]).toBe('mongo-capsule:basePort');
    expect(Number(config[1]![2])).toBeGreaterThanOrEqual(20_000);
    expect(config[2]).toEqual(['mongo-capsule:members', '--', '1']);
    const up = calls.find((c) => c.args![0] === 'up')!;
    expect(up.identityFile).toMatch(/e2e\.secret\.json$/);
    expect(up.identityFileExists).toBe(true);
    expect(calls.find((c) => c.args![0] === 'stack' && c.args![1] === 'output')!.args).toContain('--show-secrets');
    expect(r.stderr).toMatch(/suite finished with exit code 0/);
    expect(r.stdout + r.stderr).not.toContain(STACK_SECRET);
    for (const c of calls) expect(c.args!.join(' ')).not.toContain(STACK_SECRET);
    // The throwaway identity is gone.
    expect([...identityDirs()].filter((d) => !dirsBefore.has(d))).toEqual([]);
  });

  it("a failing suite: its exit status is e2e's, and the stack is still removed", { timeout: 120_000 }, async () => {
    sinceLast();
    const r = await nodeScript('e2e', ['--stack', 'e2e-flow-red', '--skip-doctor', 'test/scripts/no-such-file.test.ts'], { env, timeoutMs: 110_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/suite finished with exit code 1/);
    expect(verbs(sinceLast()).slice(-2)).toEqual(['destroy', 'stack rm']);
  });

  it('the doctor check of the provisioned cluster runs before the suite, and its failure fails e2e', { timeout: 120_000 }, async () => {
    sinceLast();
    // The stand-in provisions nothing: doctor finds the server but no capsule, and reports FAIL.
    const r = await nodeScript('e2e', ['--stack', 'e2e-flow-doctor', 'test/scripts/script-args.test.ts'], { env, timeoutMs: 110_000 });
    expect(r.stderr).toMatch(/checking the provisioned cluster: mongo-capsule doctor --name e2e/);
    expect(r.stderr).toMatch(/^FAIL\s+capsule/m);
    expect(r.stderr).toMatch(/suite finished with exit code 0/);
    expect(r.code).toBe(1);
    expect(verbs(sinceLast()).slice(-2)).toEqual(['destroy', 'stack rm']);
    expect(r.stdout + r.stderr).not.toContain(STACK_SECRET);
  });

  it('a cluster that does not answer fails the suite instead of skipping it, even without doctor', { timeout: 120_000 }, async () => {
    sinceLast();
    const r = await nodeScript('e2e', ['--stack', 'e2e-flow-unreachable', '--skip-doctor', 'test/scripts/script-args.test.ts'], { env: { ...env, FAKE_URI: SECRET_URI }, timeoutMs: 110_000 });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/MONGO_CAPSULE_TEST_SERVER_REQUIRED=1: not skipping/);
    expect(r.stderr).toMatch(/suite finished with exit code [1-9]/);
    expect(verbs(sinceLast()).slice(-2)).toEqual(['destroy', 'stack rm']);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('refuses a stack that already exists: e2e destroys its stack, never someone else\'s', { timeout: 60_000 }, async () => {
    sinceLast();
    const r = await nodeScript('e2e', ['--stack', 'dev'], { env: { ...env, FAKE_STACKS: 'dev,other' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/stack dev already exists; e2e creates and destroys a stack of its own/);
    expect(verbs(sinceLast())).toEqual(['version', 'stack ls']);
  });

  it('pulumi up fails: no suite, destroy and stack rm, exit 1', { timeout: 60_000 }, async () => {
    sinceLast();
    const r = await nodeScript('e2e', ['--stack', 'e2e-flow-upfail'], { env: { ...env, FAKE_UP: 'fail' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: provisioning failed: fake failure');
    expect(r.stderr).not.toMatch(/running the suite/);
    expect(verbs(sinceLast()).slice(-3)).toEqual(['up', 'destroy', 'stack rm']);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });

  it('SIGTERM during pulumi up: up is cancelled, the stack destroyed and removed, exit 143', { timeout: 60_000 }, async () => {
    sinceLast();
    let child: import('node:child_process').ChildProcess | undefined;
    const running = nodeScript('e2e', ['--stack', 'e2e-flow-sigterm'], { env: { ...env, FAKE_UP: 'hang' }, onSpawn: (c) => (child = c) });
    const deadline = Date.now() + 30_000;
    while (!tools.calls().some((c) => c.args?.[0] === 'up' && c.args.includes('e2e-flow-sigterm'))) {
      if (Date.now() > deadline) throw new Error('pulumi up never started');
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    child!.kill('SIGTERM');
    const r = await running;
    expect(r.code).toBe(143);
    expect(r.stderr).toMatch(/SIGTERM: stopping, then tearing the stack down/);
    // pulumi is asked to cancel the way a terminal would ask, once: SIGINT.
    expect(tools.calls().filter((c) => c.cancelled !== undefined && c.stack === 'e2e-flow-sigterm').map((c) => c.cancelled)).toEqual(['SIGINT']);
    expect(verbs(sinceLast()).slice(-3)).toEqual(['up', 'destroy', 'stack rm']);
  });

  it('Ctrl-C in a terminal (SIGINT to the whole process group): pulumi up cancels, the teardown still runs, exit 130', { timeout: 60_000 }, async () => {
    sinceLast();
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/e2e.mjs', '--stack', 'e2e-flow-ctrlc'], {
      cwd: ROOT,
      env: { ...env, FAKE_UP: 'hang' },
      detached: true, // its own process group, like a foreground job in a terminal
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c) => (stderr += c));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    const deadline = Date.now() + 30_000;
    while (!tools.calls().some((c) => c.args?.[0] === 'up' && c.args.includes('e2e-flow-ctrlc'))) {
      if (Date.now() > deadline) throw new Error('pulumi up never started');
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    process.kill(-child.pid!, 'SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/SIGINT: stopping, then tearing the stack down/);
    const calls = sinceLast();
    expect(verbs(calls).slice(-3)).toEqual(['up', 'destroy', 'stack rm']);
    // Exactly one signal reached pulumi (a second would make it terminate at once, leaving pending creates):
    // the terminal's SIGINT stops at e2e, which cancels pulumi, running in its own process group, once.
    expect(tools.calls().filter((c) => c.cancelled !== undefined && c.stack === 'e2e-flow-ctrlc').map((c) => c.cancelled)).toEqual(['SIGINT']);
  });

  it('a destroy that fails once is retried after a refresh that clears pending creates', { timeout: 60_000 }, async () => {
    sinceLast();
    const r = await nodeScript('e2e', ['--stack', 'e2e-flow-retry'], { env: { ...env, FAKE_UP: 'fail', FAKE_DESTROY: 'fail-once' } });
    expect(r.code).toBe(1);
    const calls = sinceLast();
    expect(verbs(calls).slice(-5)).toEqual(['up', 'destroy', 'refresh', 'destroy', 'stack rm']);
    expect(calls.find((c) => c.args![0] === 'refresh')!.args).toContain('--clear-pending-creates');
  });

  it('--keep leaves the stack and says how to remove it', { timeout: 120_000 }, async () => {
    sinceLast();
    const dirsBefore = identityDirs();
    const r = await nodeScript('e2e', ['--stack', 'e2e-flow-keep', '--keep', '--skip-doctor', 'test/scripts/script-args.test.ts'], { env, timeoutMs: 110_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(verbs(sinceLast())).not.toContain('destroy');
    expect(r.stderr).toContain('npm run down -- --stack e2e-flow-keep --remove-stack');
    for (const d of [...identityDirs()].filter((n) => !dirsBefore.has(n))) rmSync(join(tmpdir(), d), { recursive: true, force: true });
  });

  it('the stand-ins never leave a state directory in the project', () => {
    expect(existsSync(join(tools.dir, 'state'))).toBe(false);
  });
});
