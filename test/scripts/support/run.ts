/**
 * Spawning the scripts for real, and stand-ins for `pulumi` and `docker` on PATH so that the scripts' whole flow
 * (order of commands, environment, cleanup) runs on a machine without either. The stand-ins record every call;
 * they never replace the prerequisite checks' real probes, which the fail-fast tests exercise on this machine.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
  /** Called with each stderr chunk; may signal the child (e.g. once a step has started). */
  onStderr?: (text: string, child: ReturnType<typeof spawn>) => void;
  /** Called once the child exists (to signal it later). */
  onSpawn?: (child: ReturnType<typeof spawn>) => void;
}

/** Runs `command args` in the project root and collects its output. */
export function run(command: string, args: string[], { env = process.env, input, timeoutMs = 60_000, onStderr, onSpawn }: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => {
      stderr += c;
      onStderr?.(stderr, child);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin.end(input ?? '');
  });
}

/** `npm run <script> -- args` (what a user types). */
export function npmRun(script: string, args: string[] = [], options: RunOptions = {}): Promise<RunResult> {
  return run('npm', ['run', '--silent', script, '--', ...args], options);
}

/** The script itself (`node --import tsx scripts/<name>.mjs`): signals reach it directly, without npm between. */
export function nodeScript(name: string, args: string[] = [], options: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, ['--import', 'tsx', join('scripts', `${name}.mjs`), ...args], options);
}

/** A JavaScript stack frame ("    at fn (file:line:col)"): must never reach a user. */
export const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

const FAKE_PULUMI = `#!/usr/bin/env node
const fs = require('node:fs');
const args = process.argv.slice(2);
const env = process.env;
// A config value not given as an argument is read from stdin, as pulumi does; record it to check what was sent.
const stdin = args[0] === 'config' && args[1] === 'set' && !args.includes('--') ? fs.readFileSync(0, 'utf8') : undefined;
fs.appendFileSync(env.FAKE_LOG, JSON.stringify({
  tool: 'pulumi', args, stdin,
  backend: env.PULUMI_BACKEND_URL ?? null,
  passphraseFile: env.PULUMI_CONFIG_PASSPHRASE_FILE ?? null,
  identityFile: env.MONGO_CAPSULE_SECRET_IDENTITY_FILE ?? null,
  identityFileExists: env.MONGO_CAPSULE_SECRET_IDENTITY_FILE ? fs.existsSync(env.MONGO_CAPSULE_SECRET_IDENTITY_FILE) : false,
}) + '\\n');
const [a, b] = args;
const out = (s) => process.stdout.write(s + '\\n');
if (a === 'version') out('v3.999.0');
else if (a === 'stack' && b === 'ls') out(JSON.stringify((env.FAKE_STACKS ?? '').split(',').filter(Boolean).map((name) => ({ name }))));
else if (a === 'stack' && b === 'output') out(JSON.stringify({ connectionString: args.includes('--show-secrets') ? env.FAKE_URI : '[secret]', capsuleName: 'default', kid: 'fakekid', members: ['localhost:27017'] }));
else if (a === 'config' && b === 'get') {
  const value = env['FAKE_CONFIG_' + String(args.at(-1)).replace('mongo-capsule:', '')];
  if (value === undefined) { process.stderr.write('error: configuration key not found\\n'); process.exit(255); }
  out(value);
} else if (a === 'up') {
  out('Updating (' + args[args.indexOf('--stack') + 1] + ')');
  if (env.FAKE_UP === 'fail') { out('error: provisioning failed: fake failure'); process.exit(255); }
  if (env.FAKE_UP === 'auth') {
    out('error: provisioning failed: provision: authentication failed (root@admin on 127.0.0.1:27017)');
    out('hint: check the user name, password and authSource of the connection string, and the roles of that user');
    process.exit(255);
  }
  // A member that fails the way mongod does, created for real (the Docker tests): FAKE_MEMBER_IMAGE with
  // FAIL_LINES=FAKE_MEMBER_LINES, named and labelled like the program's member 0, then wait like 'hang'.
  if (env.FAKE_UP === 'member') {
    const stack = args[args.indexOf('--stack') + 1];
    require('node:child_process').execFileSync('docker', ['run', '-d', '--name', 'mongo-capsule-' + stack + '-0', '--label', 'mongo-capsule.stack=' + stack, '--label', 'mongo-capsule.test=' + env.FAKE_TEST_RUN, '--restart', 'unless-stopped', '-e', 'FAIL_LINES=' + env.FAKE_MEMBER_LINES, env.FAKE_MEMBER_IMAGE], { stdio: 'ignore' });
  }
  if (env.FAKE_UP === 'hang' || env.FAKE_UP === 'member') {
    process.stderr.write('fake pulumi up: waiting\\n');
    // Like pulumi: the first signal starts a graceful cancel that takes a moment; every signal is recorded, so
    // a test can tell one graceful cancel from a second, forcing signal.
    let stopping = false;
    const stop = (s) => {
      fs.appendFileSync(env.FAKE_LOG, JSON.stringify({ tool: 'pulumi', cancelled: s, stack: args[args.indexOf('--stack') + 1] }) + '\\n');
      if (stopping) return;
      stopping = true;
      out('cancelled by ' + s);
      setTimeout(() => process.exit(255), Number(env.FAKE_CANCEL_MS ?? 400));
    };
    process.on('SIGINT', stop); process.on('SIGTERM', stop);
    setInterval(() => {}, 1000);
  } else out('Resources: 7 created');
} else if (a === 'destroy') {
  const marker = env.FAKE_LOG + '.destroyed-once';
  if (env.FAKE_DESTROY === 'fail-once' && !fs.existsSync(marker)) { fs.writeFileSync(marker, ''); out('error: pending operations'); process.exit(255); }
  if (env.FAKE_DESTROY_MS) { setTimeout(() => out('Resources: 7 deleted'), Number(env.FAKE_DESTROY_MS)); return; }
  out('Resources: 7 deleted');
}
`;

const FAKE_DOCKER = `#!/usr/bin/env node
if (process.argv[2] === 'info' && process.env.FAKE_DOCKER === 'down') {
  process.stderr.write('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\\n');
  process.exit(1);
}
if (process.argv[2] === 'info') { process.stdout.write('28.0.0\\n'); process.exit(0); }
// The image pre-check of npm run up: every image is "local" here, so nothing is pulled.
if (process.argv[2] === 'image' && process.argv[3] === 'inspect') { process.stdout.write('sha256:fake\\n'); process.exit(0); }
// Member names by label (the health watcher): none, so the watcher has nothing to watch.
if (process.argv[2] === 'ps' && process.argv.includes('--format')) process.exit(0);
// Listing objects by label (the leftover check of npm run up): FAKE_DOCKER_LEFTOVERS=container,volume,… lists one of each.
const listed = { ps: 'container', volume: 'volume', network: 'network' }[process.argv[2]];
if (listed && process.argv.some((a) => /^-[a-z]*q$/.test(a))) {
  if ((process.env.FAKE_DOCKER_LEFTOVERS ?? '').split(',').includes(listed)) process.stdout.write('0123456789ab\\n');
  process.exit(0);
}
process.stderr.write('fake docker: unsupported\\n'); process.exit(1);
`;

export interface FakeTools {
  dir: string;
  binDir: string;
  log: string;
  /** Environment for a script run: the stand-ins first on PATH, state and passphrase in the temp dir. */
  env(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  calls(): Array<{ tool: string; args?: string[]; stdin?: string; cancelled?: string; stack?: string; backend?: string | null; passphraseFile?: string | null; identityFile?: string | null; identityFileExists?: boolean }>;
}

/** Stand-ins on PATH; `docker: false` keeps the real docker client (the Docker tests, against the test engine). */
export function fakeTools({ docker = true }: { docker?: boolean } = {}): FakeTools {
  const dir = mkdtempSync(join(tmpdir(), 'mongo-capsule-fake-tools-'));
  // The scripts' own temporary directories (e2e keeps its throwaway identity when a teardown fails, on purpose)
  // go inside this one, which goes when the test worker ends.
  const scriptTmp = join(dir, 'tmp');
  mkdirSync(scriptTmp);
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const binDir = join(dir, 'bin');
  const log = join(dir, 'calls.jsonl');
  const passphrase = join(dir, 'passphrase');
  writeFileSync(passphrase, 'not-a-real-passphrase', { mode: 0o600 });
  mkdirSync(binDir);
  for (const [name, text] of [['pulumi', FAKE_PULUMI], ...(docker ? [['docker', FAKE_DOCKER]] : [])] as const) {
    const file = join(binDir, name);
    writeFileSync(file, text);
    chmodSync(file, 0o755);
  }
  writeFileSync(log, '');
  return {
    dir,
    binDir,
    log,
    env: (extra = {}) => {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        PATH: `${binDir}:${process.env.PATH ?? ''}`,
        TMPDIR: scriptTmp,
        PULUMI_BACKEND_URL: `file://${join(dir, 'state')}`,
        PULUMI_CONFIG_PASSPHRASE_FILE: passphrase,
        FAKE_LOG: log,
        ...extra,
      };
      delete env.CI;
      delete env.PULUMI_CONFIG_PASSPHRASE;
      if (extra.CI !== undefined) env.CI = extra.CI;
      return env;
    },
    calls: () =>
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l)),
  };
}

