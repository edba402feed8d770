#!/usr/bin/env node
// `npm run down`: the undo of `npm run up`: destroys the stack's containers, network and volumes (its data too).
import { existsSync } from 'node:fs';
import { echo } from 'zx';
import { describeObjects } from './lib/docker.mjs';
import { checkPrerequisites, dockerLeftovers, failureLines, leftoverCleanup, ROOT } from './lib/prereqs.mjs';
import { withSpinner } from './lib/progress.mjs';
import {
  checkStackName,
  DEFAULT_STACK,
  describeBackend,
  displayCommand,
  dropDockerIfExternal,
  failureTail,
  pulumiArgs,
  pulumiEnvironment,
  runPulumi,
  stackExists,
} from './lib/pulumi.mjs';
import { parseScriptArgs, runScript } from './lib/script-args.mjs';

const USAGE = `Usage: npm run down -- [options]

Destroys everything the stack created (containers, network, volumes: the cluster's data is lost). An external
cluster keeps its capsule unless the stack was told otherwise (mongo-capsule:deleteCapsuleOnDestroy).

  --stack <name>     stack to destroy (default ${DEFAULT_STACK})
  --remove-stack     also remove the stack itself and its Pulumi.<stack>.yaml
  --verbose          show pulumi's own progress instead of a spinner (default when CI=true)
  --dry-run          print what would run, change nothing`;

const OPTIONS = {
  stack: { type: 'string' },
  'remove-stack': { type: 'boolean' },
  verbose: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
};

const log = (msg) => process.stderr.write(`${msg}\n`);

async function main() {
  const { values } = parseScriptArgs('down', process.argv.slice(2), OPTIONS);
  if (values.help) {
    echo(USAGE);
    return 0;
  }
  const stack = checkStackName(values.stack ?? DEFAULT_STACK);
  const stream = values.verbose === true || process.env.CI === 'true';
  const commands = [pulumiArgs.destroy(stack), ...(values['remove-stack'] ? [pulumiArgs.stackRm(stack)] : [])];

  if (values['dry-run']) {
    const backend = describeBackend();
    echo([`plan for stack ${stack} (nothing is changed):`, `  state: ${backend.state}`, ...commands.map((c, i) => `  ${i + 1}. ${displayCommand(c)}`)].join('\n'));
    return 0;
  }

  const checks = await dropDockerIfExternal(await checkPrerequisites(['node', 'docker', 'pulumi']), stack);
  const missing = failureLines(checks);
  const dockerOk = checks.some((c) => c.id === 'docker' && c.ok);
  if (missing.length > 0) {
    for (const line of missing) log(line);
    log(`down: ${missing.length} prerequisite(s) missing; nothing was changed`);
    return 1;
  }

  const { stateDir } = describeBackend();
  if (stateDir !== undefined && !existsSync(stateDir)) {
    return reportOrphans(stack, dockerOk, `no local Pulumi state (${stateDir}): no stack to destroy`);
  }
  const { env } = await pulumiEnvironment(ROOT);
  let exists;
  try {
    exists = await stackExists(stack, env);
  } catch (e) {
    log(`down: listing stacks failed: ${e.stderr?.trim() || e.message}`);
    return 1;
  }
  if (!exists) {
    return reportOrphans(stack, dockerOk, `there is no stack ${stack} in ${describeBackend().state}`);
  }

  for (const args of commands) {
    const title = args[0] === 'destroy' ? `pulumi destroy (stack ${stack})` : `removing stack ${stack}`;
    try {
      if (stream) {
        log(`${title}…`);
        await runPulumi(args, { env, stream: true });
      } else {
        await withSpinner(`${title}…`, () => runPulumi(args, { env }));
      }
    } catch (e) {
      log(`down: ${title} failed:`);
      log(stream ? `pulumi exited with ${e.exitCode}` : failureTail(e) || e.message);
      if (args[0] === 'destroy') {
        log(`hint: after an interrupted \`npm run up\`, run \`${displayCommand(pulumiArgs.refresh(stack))}\` (with the same PULUMI_* environment) and then \`npm run down\` again; leftover containers: docker ps -a --filter label=mongo-capsule.stack=${stack}`);
      }
      return 1;
    }
  }
  log(values['remove-stack'] ? `stack ${stack} destroyed and removed` : `stack ${stack} destroyed (the stack itself is kept: --remove-stack removes it)`);
  return 0;
}

/**
 * Without a stack in the state, pulumi cannot remove anything, but Docker may still hold objects of a stack of that
 * name whose state was lost (they carry its label): say so, with the commands that remove them, and fail, since
 * the machine is not clean. Nothing there: nothing to do.
 */
async function reportOrphans(stack, dockerOk, why) {
  const left = dockerOk ? await dockerLeftovers(stack) : undefined;
  const what = describeObjects(left);
  if (!what) {
    log(`down: ${why}; nothing to do`);
    return 0;
  }
  log(`down: ${why}, but Docker still has ${what} of a stack ${stack} (label mongo-capsule.stack=${stack}) that no state knows; pulumi cannot remove them`);
  log('hint: remove them by hand (the data in the volumes goes with them):');
  for (const line of leftoverCleanup(stack, left)) log(`  ${line}`);
  return 1;
}

process.exitCode = await runScript('down', USAGE, main);
