#!/usr/bin/env node
// `npm run e2e`: a throwaway stack up, the integration suite against it, and the stack always torn down.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { $, echo } from 'zx';
import { DEFAULT_SUITE, doctorArgs, E2E_IDENTITY, e2eConfig, e2ePlanLines, keygenArgs, suiteArgs } from './lib/e2e-plan.mjs';
import { describeMemberState, describeObjects, memberState, stackContainers } from './lib/docker.mjs';
import { checkPrerequisites, CLI, dockerLeftovers, failureLines, ROOT } from './lib/prereqs.mjs';
import { withSpinner } from './lib/progress.mjs';
import { checkStackName, displayCommand, e2eStackName, failureTail, findFreePortRange, parseOutputs, pulumiArgs, pulumiEnvironment, runPulumi, stackExists } from './lib/pulumi.mjs';
import { parseScriptArgs, runScript, ScriptUsageError } from './lib/script-args.mjs';

const USAGE = `Usage: npm run e2e -- [options] [vitest filters…]

Creates a throwaway stack (its own identity, its own free ports), runs the integration suite against its
connection string (default filters: ${DEFAULT_SUITE.join(' ')}), then destroys and removes the stack, also after
a failure or Ctrl-C/SIGTERM. Exits with the suite's status (1 when the cluster could not be created or removed).

  --stack <name>     stack name (default: e2e-<timestamp>-<random>; CI can pass e2e-$GITHUB_RUN_ID to clean up
                     in a later step with \`npm run down -- --stack <name> --remove-stack\`)
  --members <1|3>    replica-set members (default 1)
  --keep             leave the cluster up afterwards (prints how to remove it)
  --skip-doctor      do not run \`mongo-capsule doctor\` on the provisioned cluster before the suite
  --verbose          show pulumi's own progress instead of a spinner (default when CI=true)
  --dry-run          print the plan, run nothing`;

const OPTIONS = {
  stack: { type: 'string' },
  members: { type: 'string' },
  keep: { type: 'boolean' },
  'skip-doctor': { type: 'boolean' },
  verbose: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
};
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 };
const log = (msg) => process.stderr.write(`e2e: ${msg}\n`);

// Interruption: the first SIGINT/SIGTERM stops the running step (pulumi cancels cleanly, vitest stops) and goes
// straight to the teardown. Teardown commands run in their own process group, so a terminal's Ctrl-C does not
// reach them; a third signal gives up and says what may be left behind.
let interrupted;
let signals = 0;
let current;
// How to stop the running step: pulumi gets exactly one SIGINT (its graceful cancel; a second signal makes it
// terminate at once and can leave pending creates behind), anything else the signal we got, to its whole tree.
let cancel;
let abandon = () => process.exit(1);
// The stack being worked on, for the progress lines while a cancel or the teardown runs.
let activeStack;
/** How often to say what a long wait is waiting for (MONGO_CAPSULE_PROGRESS_INTERVAL_MS: shorter, for the tests). */
const PROGRESS_EVERY_MS = Number(process.env.MONGO_CAPSULE_PROGRESS_INTERVAL_MS) || 10_000;

/**
 * Every PROGRESS_EVERY_MS while `what` runs: one line with the time waited and what of the stack is still in Docker
 * (each member's state, the other objects), so that a cancel or a teardown that takes minutes is never silent.
 * Returns the function that stops it.
 */
function progressWhile(what, stack = activeStack) {
  const started = Date.now();
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const seconds = Math.round((Date.now() - started) / 1000);
      let detail = '';
      if (stack) {
        const members = await Promise.all((await stackContainers(stack)).map(async (c) => `${c} ${describeMemberState(await memberState(c))}`));
        const left = describeObjects(await dockerLeftovers(stack));
        detail = members.length > 0 || left ? `; in Docker: ${[...members, left ? `in all ${left}` : ''].filter(Boolean).join(', ')}` : '; nothing of the stack left in Docker';
      }
      log(`${what}: still waiting after ${seconds} s${detail}`);
    } finally {
      busy = false;
    }
  }, PROGRESS_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}

let stopCancelProgress = () => {};
function onSignal(signal) {
  signals += 1;
  if (interrupted === undefined) {
    interrupted = signal;
    log(`${signal}: stopping, then tearing the stack down (signal twice more to abandon the teardown)`);
    if (cancel) {
      log('waiting for the running step to stop (pulumi lets the operations in flight finish: a member waits up to 180 s to become healthy)');
      stopCancelProgress = progressWhile('cancel');
    }
    cancel?.(signal);
  } else if (signals >= 3) {
    abandon(signal);
  } else {
    log(`${signal}: the teardown is running; once more to abandon it`);
  }
}

/** Starts `proc` as the running step: what a signal stops (see `cancel`). */
function track(proc, { graceful = false } = {}) {
  current = proc;
  cancel = graceful
    ? () => {
        try {
          process.kill(-proc.pid, 'SIGINT'); // its own process group (detached): one signal, to pulumi only
        } catch {
          /* already gone */
        }
      }
    : (signal) => proc.kill(signal);
  return proc;
}

/**
 * Runs one step unless an interruption already happened; returns false when the step failed. `pulumi: true`
 * steps run detached (a terminal's Ctrl-C reaches only this script), and are cancelled with one SIGINT.
 */
async function step(title, run, { stream, pulumi = false }) {
  if (interrupted) return false;
  try {
    if (stream) {
      log(`${title}…`);
      await track(run({ stream: true, detached: pulumi }), { graceful: pulumi });
    } else {
      track(run({ stream: false, detached: pulumi }), { graceful: pulumi });
      await withSpinner(`${title}…`, () => current);
    }
    return true;
  } catch (e) {
    if (interrupted) log(`${title}: interrupted`);
    else {
      log(`${title} failed:`);
      process.stderr.write(`${stream ? `exit code ${e.exitCode}` : failureTail(e) || e.message}\n`);
    }
    return false;
  } finally {
    current = undefined;
    cancel = undefined;
    stopCancelProgress();
    stopCancelProgress = () => {};
  }
}

async function main() {
  const { values, positionals } = parseScriptArgs('e2e', process.argv.slice(2), OPTIONS, { allowPositionals: true });
  if (values.help) {
    echo(USAGE);
    return 0;
  }
  const stack = checkStackName(values.stack ?? e2eStackName());
  const members = values.members ?? '1';
  if (members !== '1' && members !== '3') throw new ScriptUsageError(`e2e: --members must be 1 or 3, got ${JSON.stringify(members)}`);
  const keep = values.keep === true;
  const stream = values.verbose === true || process.env.CI === 'true';

  if (values['dry-run']) {
    echo(e2ePlanLines({ stack, members, keep, filters: positionals, doctor: values['skip-doctor'] !== true }).join('\n'));
    return 0;
  }

  const missing = failureLines(await checkPrerequisites(['node', 'docker', 'pulumi']));
  if (missing.length > 0) {
    for (const line of missing) process.stderr.write(`${line}\n`);
    log(`${missing.length} prerequisite(s) missing; nothing was created`);
    return 1;
  }

  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const { env: pulumiEnv, notes } = await pulumiEnvironment(ROOT);
  // e2e destroys and removes its stack at the end: never one that exists already (someone's cluster).
  const exists = await stackExists(stack, pulumiEnv).catch((e) => {
    log(`could not list the stacks: ${failureTail(e) || e.message}`);
    return true; // unknown: do not risk someone's stack
  });
  if (exists) {
    log(`stack ${stack} already exists; e2e creates and destroys a stack of its own, so it will not touch this one`);
    log(`pick another --stack (or none: a fresh e2e-<timestamp> name), or remove it first: npm run down -- --stack ${stack} --remove-stack`);
    return 1;
  }
  for (const note of notes) log(note);
  activeStack = stack;
  const identityDir = await mkdtemp(join(tmpdir(), 'mongo-capsule-e2e-'));
  const pubFile = join(identityDir, `${E2E_IDENTITY}.pub.json`);
  // The provisioning step (run by pulumi) reads the throwaway identity from here instead of a keychain.
  const env = { ...pulumiEnv, MONGO_CAPSULE_SECRET_IDENTITY_FILE: join(identityDir, `${E2E_IDENTITY}.secret.json`) };
  // An inline identity of the caller would clash with the file above (the CLI refuses both); it is not ours to use.
  delete process.env.MONGO_CAPSULE_SECRET_IDENTITY;

  abandon = (signal) => {
    log(`${signal}: teardown abandoned; stack ${stack} may still exist: npm run down -- --stack ${stack} --remove-stack`);
    log(`containers: docker ps -a --filter label=mongo-capsule.stack=${stack}; throwaway identity: ${identityDir}`);
    process.exit(SIGNAL_EXIT[signal] ?? 1);
  };

  let created = false;
  let suiteStatus;
  let failed = false;
  try {
    const identityOk = await step('throwaway identity', () => $({ quiet: true })`${process.execPath} ${CLI} ${keygenArgs(identityDir)}`, { stream: false });
    const basePort = identityOk ? await findFreePortRange(Number(members)) : undefined;
    const pulumiSteps = [
      [`stack ${stack}`, pulumiArgs.select(stack)],
      ...e2eConfig({ pubFile, basePort, members }).map(([k, v]) => [`config ${k}`, pulumiArgs.configSet(stack, k, v)]),
    ];
    let ok = identityOk;
    for (const [title, args] of pulumiSteps) {
      if (!ok) break;
      // From the moment the stack may exist, the teardown must run (removing a stack that never came is harmless).
      if (args[0] === 'stack') created = true;
      ok = await step(title, ({ detached }) => runPulumi(args, { env, quiet: true, detached }), { stream: false, pulumi: true });
    }
    ok = ok && (await step(`pulumi up (stack ${stack}, ${members} member(s) from port ${basePort})`, ({ stream: s, detached }) => runPulumi(pulumiArgs.up(stack), { env, stream: s, detached }), { stream, pulumi: true }));

    let uri;
    if (ok && !interrupted) {
      try {
        uri = parseOutputs((await runPulumi(pulumiArgs.outputs(stack, true), { env, quiet: true })).stdout).connectionString;
        if (typeof uri !== 'string' || uri === '') throw new Error('the stack has no connectionString output');
      } catch (e) {
        log(`reading the connection string failed: ${e.stderr?.trim() || e.message}`);
        ok = false;
      }
    }
    if (ok && uri && !interrupted && values['skip-doctor'] !== true) {
      // Our own provisioning, checked from the outside: the capsule exists, opens with the identity it was sealed
      // for, and the key vault and CSFLE work. The suite below tests the library with capsules of its own.
      log(`checking the provisioned cluster: mongo-capsule ${doctorArgs().join(' ')}`);
      const doctor = await track($({ cwd: ROOT, env: { ...process.env, ...env, MONGODB_URI: uri }, nothrow: true, stdio: ['ignore', 2, 2] })`${process.execPath} ${CLI} ${doctorArgs()}`);
      current = undefined;
      cancel = undefined;
      if (doctor.exitCode !== 0 && !interrupted) {
        log('mongo-capsule doctor found a problem with the provisioned cluster (see above); e2e will fail');
        failed = true;
      }
    }
    if (ok && uri && !interrupted) {
      log(`running the suite: node ${suiteArgs(positionals).join(' ')} (MONGO_CAPSULE_TEST_URI from the stack)`);
      // Required: a cluster that does not answer must fail the suite, not skip it.
      const suiteEnv = { ...process.env, MONGO_CAPSULE_TEST_URI: uri, MONGO_CAPSULE_SKIP_TYPECHECK: '1', MONGO_CAPSULE_TEST_SERVER_REQUIRED: '1' };
      const result = await track($({ cwd: ROOT, env: suiteEnv, nothrow: true, stdio: ['ignore', 'inherit', 'inherit'] })`${process.execPath} ${suiteArgs(positionals)}`);
      current = undefined;
      cancel = undefined;
      suiteStatus = result.exitCode ?? (interrupted ? SIGNAL_EXIT[interrupted] : 1);
      log(`suite finished with exit code ${suiteStatus}`);
    } else {
      failed = true;
    }
  } finally {
    if (keep && !interrupted) {
      log(`--keep: stack ${stack} stays up. Connection string: npm run up -- --stack ${stack} --outputs-only --show-connection-string`);
      log(`remove it with: npm run down -- --stack ${stack} --remove-stack (the throwaway identity is in ${identityDir})`);
    } else if (created) {
      const torn = await teardown(stack, env, stream);
      if (!torn) failed = true;
      if (torn) await rm(identityDir, { recursive: true, force: true });
      else log(`kept the throwaway identity in ${identityDir} for a later \`npm run down -- --stack ${stack} --remove-stack\``);
    } else {
      await rm(identityDir, { recursive: true, force: true });
    }
  }

  if (interrupted) return SIGNAL_EXIT[interrupted] ?? 1;
  if (suiteStatus !== undefined && suiteStatus !== 0) return suiteStatus;
  return failed ? 1 : (suiteStatus ?? 1);
}

/** destroy (with one refresh-and-retry for an interrupted update), then stack rm. Never throws. */
async function teardown(stack, env, stream) {
  // The doctor and suite steps are tracked outside `step`: their cancel is over once the teardown starts.
  stopCancelProgress();
  // Detached: a Ctrl-C in the terminal goes to the foreground process group, and this must finish.
  const run = (args) => (o) => runPulumi(args, { env, stream: o.stream, detached: true });
  const again = async (title, args) => {
    const stop = progressWhile(title, stack);
    try {
      if (stream) {
        log(`${title}…`);
        await run(args)({ stream: true });
      } else {
        await withSpinner(`${title}…`, () => run(args)({ stream: false }));
      }
      return true;
    } catch (e) {
      log(`${title} failed:`);
      process.stderr.write(`${stream ? `exit code ${e.exitCode}` : failureTail(e) || e.message}\n`);
      return false;
    } finally {
      stop();
    }
  };
  let destroyed = await again(`pulumi destroy (stack ${stack})`, pulumiArgs.destroy(stack));
  if (!destroyed) {
    destroyed = (await again(`pulumi refresh (stack ${stack})`, pulumiArgs.refresh(stack))) && (await again(`pulumi destroy, second attempt (stack ${stack})`, pulumiArgs.destroy(stack)));
  }
  if (!destroyed) {
    log(`stack ${stack} could not be destroyed; it is kept so that you can retry: npm run down -- --stack ${stack} --remove-stack`);
    log(`containers: docker ps -a --filter label=mongo-capsule.stack=${stack}`);
    return false;
  }
  const removed = await again(`removing stack ${stack}`, pulumiArgs.stackRm(stack));
  if (!removed) log(`the cluster is gone but the stack record is left: ${displayCommand(pulumiArgs.stackRm(stack))}`);
  return removed;
}

process.exitCode = await runScript('e2e', USAGE, main);
