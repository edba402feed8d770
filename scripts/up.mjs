#!/usr/bin/env node
// `npm run up`: a keyfile-secured mongo:6 replica set in Docker with its CSFLE master key sealed for your identity.
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { $, echo } from 'zx';
import { checkPrerequisites, CLI, dockerLeftovers, failureLines, identityMissing, leftoverCleanup, ROOT } from './lib/prereqs.mjs';
import { checkImage, dockerAuthHint, failureReport, isAuthFailure, stackContainers, watchMembers } from './lib/docker.mjs';
import { checkDockerPlugin } from './lib/docker-plugin.mjs';
import { withSpinner } from './lib/progress.mjs';
import {
  BACKEND_HELP,
  checkStackName,
  DEFAULT_STACK,
  describeBackend,
  displayCommand,
  dropDockerIfExternal,
  failureTail,
  formatOutputs,
  parseOutputs,
  pulumiArgs,
  pulumiEnvironment,
  runPulumi,
  stackConfig,
  stackExists,
  stackMode,
} from './lib/pulumi.mjs';
import { checkExternalUri, DEFAULTS } from '../infra/config.ts';
import { integerOption, parseScriptArgs, runScript, ScriptUsageError, userPath } from './lib/script-args.mjs';

const USAGE = `Usage: npm run up -- [options]

Brings up (or updates) the stack: a keyfile-secured rs0 on mongo:6 in Docker, provisioned with a capsule sealed
for your identity. Re-running changes nothing when nothing changed. Undo with \`npm run down\`.

  --stack <name>              stack to create or update (default ${DEFAULT_STACK})
  --name <identity>           identity the capsule is sealed for; it must be in the keychain (\`npm run init\`)
  --pub <file>                its public file (default <identity>.pub.json in the project, written from the
                              keychain when missing). --name or --pub set mongo-capsule:publicKeyPath; without
                              them the stack keeps its own (default default.pub.json, identity "default")
  --external                  provision the existing cluster in MONGODB_URI (Atlas, self-hosted) instead of running
                              one in Docker: sets mongo-capsule:mode external and mongo-capsule:uri (a stack secret,
                              passed to pulumi on stdin, never on a command line); needs no Docker engine
  --members <1|3>             replica-set members (stack config mongo-capsule:members)
  --base-port <port>          host port of member 0 (stack config mongo-capsule:basePort)
  --show-connection-string    also print the connection string (it holds the root password); alias --show-secrets
  --json                      print the outputs as JSON on stdout (connection string only with the flag above)
  --outputs-only              print the outputs of the existing stack, change nothing
  --verbose                   show pulumi's own progress instead of a spinner (default when CI=true)
  --dry-run                   print what would run, change nothing

A stack in external mode (--external once; see docs/infra.md) needs no Docker engine afterwards either.

Environment: PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE_FILE (defaults: .pulumi-state/ in the project),
MONGO_CAPSULE_SECRET_IDENTITY_FILE (CI without a keychain; see docs/ci.md).`;

const OPTIONS = {
  stack: { type: 'string' },
  name: { type: 'string' },
  pub: { type: 'string' },
  external: { type: 'boolean' },
  members: { type: 'string' },
  'base-port': { type: 'string' },
  'show-connection-string': { type: 'boolean' },
  'show-secrets': { type: 'boolean' },
  json: { type: 'boolean' },
  'outputs-only': { type: 'boolean' },
  verbose: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
};

const log = (msg) => process.stderr.write(`${msg}\n`);

/** Inside the project a path is kept relative, so that the stack file works in another checkout too. */
function shown(file) {
  return file.startsWith(`${ROOT}${sep}`) ? relative(ROOT, file) : file;
}

/** The identity name a public identity file holds, or undefined when it is missing or unreadable. */
function nameInFile(file) {
  try {
    const name = JSON.parse(readFileSync(file, 'utf8')).name;
    return typeof name === 'string' && name !== '' ? name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Which public file the capsule is sealed for, and the identity named in it: --pub, else --name's
 * <name>.pub.json, else the stack's own mongo-capsule:publicKeyPath, else default.pub.json (the program's default).
 */
async function recipient(values, stack, { lookup }) {
  if (values.pub !== undefined) {
    const pubFile = userPath(values.pub);
    return { pubFile, name: values.name ?? nameInFile(pubFile) ?? 'default' };
  }
  if (values.name !== undefined) return { pubFile: join(ROOT, `${values.name}.pub.json`), name: values.name };
  const configured = lookup ? await stackConfig(stack, 'publicKeyPath') : undefined;
  const pubFile = resolve(ROOT, configured ?? 'default.pub.json');
  return { pubFile, name: nameInFile(pubFile) ?? 'default' };
}

async function main() {
  const { values } = parseScriptArgs('up', process.argv.slice(2), OPTIONS);
  if (values.help) {
    echo(USAGE);
    return 0;
  }
  const stack = checkStackName(values.stack ?? DEFAULT_STACK);
  const outputsOnly = values['outputs-only'] === true;
  const members = values.members;
  if (members !== undefined && members !== '1' && members !== '3') throw new ScriptUsageError(`up: --members must be 1 or 3, got ${JSON.stringify(members)}`);
  const basePort = integerOption('up', 'base-port', values['base-port'], { min: 1024, max: 65533 });
  const showSecrets = values['show-connection-string'] === true || values['show-secrets'] === true;
  const stream = values.verbose === true || process.env.CI === 'true';

  const external = values.external === true;
  if (outputsOnly) {
    const changing = ['external', 'members', 'base-port', 'name', 'pub'].filter((k) => values[k] !== undefined);
    if (changing.length > 0) throw new ScriptUsageError(`up: --outputs-only changes nothing; it does not go with ${changing.map((k) => `--${k}`).join(', ')}`);
  }
  if (external && (members !== undefined || basePort !== undefined)) {
    throw new ScriptUsageError('up: --members and --base-port describe a cluster in Docker; an external cluster has its own');
  }
  const externalUri = external ? process.env.MONGODB_URI : undefined;
  if (external) {
    if (externalUri === undefined || externalUri === '') {
      throw new ScriptUsageError('up: --external needs the cluster\'s connection string in MONGODB_URI (it is stored as a stack secret, never put on a command line)');
    }
    checkExternalUri(externalUri);
  }

  const config = [];
  if (external) config.push(['mode', 'external']);
  if (members !== undefined) config.push(['members', members]);
  if (basePort !== undefined) config.push(['basePort', basePort]);
  // Set like the others, but its value (credentials) goes to pulumi on stdin.
  const secretConfig = external ? [['uri', externalUri]] : [];

  if (values['dry-run']) {
    const { name, pubFile } = await recipient(values, stack, { lookup: false });
    const pathConfig = values.name !== undefined || values.pub !== undefined ? [['publicKeyPath', shown(pubFile)]] : [];
    const backend = describeBackend();
    const steps = [
      `check prerequisites: Node.js, OS keychain with identity "${name}", ${external ? '' : 'Docker engine, '}Pulumi CLI${external ? '' : ', Docker provider plugin ≥ 5.2.0, the image (pulled now if absent)'}`,
      existsSync(pubFile) ? `use the public identity ${shown(pubFile)}` : `write the public identity ${shown(pubFile)} from the keychain`,
      `state: ${backend.state}; secrets: ${backend.secrets}`,
      displayCommand(pulumiArgs.select(stack)),
      ...[...pathConfig, ...config].map(([k, v]) => displayCommand(pulumiArgs.configSet(stack, k, v))),
      ...secretConfig.map(([k]) => `${displayCommand(pulumiArgs.configSetSecret(stack, k))}  (value from MONGODB_URI, on stdin)`),
      displayCommand(pulumiArgs.up(stack)),
      displayCommand(pulumiArgs.outputs(stack, showSecrets)),
    ];
    const note = pathConfig.length === 0 ? ['(without --name/--pub, an existing stack keeps its own mongo-capsule:publicKeyPath)'] : [];
    echo([`plan for stack ${stack} (nothing is changed):`, ...steps.map((l, i) => `  ${i + 1}. ${l}`), ...note].join('\n'));
    return 0;
  }

  // 1. Prerequisites, all of them, before anything is created. The identity to look for is the one named in the
  //    public file the stack uses, so the stack's own configuration is read first when no flag says otherwise.
  const checks = await dropDockerIfExternal(await checkPrerequisites(outputsOnly || external ? ['node', 'pulumi'] : ['node', 'docker', 'pulumi']), stack);
  const pulumiOk = checks.find((c) => c.id === 'pulumi')?.ok === true;
  const { name, pubFile } = await recipient(values, stack, { lookup: pulumiOk && !outputsOnly });
  if (!outputsOnly) {
    const [keychain] = await checkPrerequisites(['keychain'], { name });
    for (const w of keychain.warnings ?? []) log(w);
    checks.push(keychain);
    if (keychain.ok && keychain.identity && !keychain.identity.initialized) checks.push(identityMissing(name));
  }
  const missing = failureLines(checks);
  if (missing.length > 0) {
    for (const line of missing) log(line);
    log(`up: ${missing.length} prerequisite(s) missing; nothing was changed`);
    return 1;
  }
  if (values.name !== undefined || values.pub !== undefined) config.unshift(['publicKeyPath', shown(pubFile)]);

  // 2. The public identity the program seals the capsule for (public data: safe to write).
  if (!outputsOnly && !existsSync(pubFile)) {
    try {
      await $({ quiet: true })`${process.execPath} ${CLI} keys status --name ${name} --pub-out ${pubFile}`;
      log(`wrote the public identity ${shown(pubFile)} from the keychain`);
    } catch (e) {
      log(`up: cannot write ${shown(pubFile)}: ${e.stderr?.trim() || e.message}`);
      return 1;
    }
  }

  // 3. Where state and secrets live.
  const { stateDir } = describeBackend();
  if (outputsOnly && stateDir !== undefined && !existsSync(stateDir)) {
    log(`up: no local Pulumi state (${stateDir}), so no stack ${stack} to show; run \`npm run up\` first`);
    return 1;
  }
  const { env, notes } = await pulumiEnvironment(ROOT);
  for (const note of notes) log(note);
  if (notes.some((n) => n.endsWith('(new)'))) for (const line of BACKEND_HELP) log(`  ${line}`);

  // 4. A new stack must not inherit Docker objects of an earlier one whose state is gone (lost passphrase or
  //    .pulumi-state): refuse, and say how to remove them.
  const dockerMode = checks.some((c) => c.id === 'docker' && c.ok); // absent for --external and external stacks
  if (!outputsOnly && dockerMode && !(await stackExists(stack, env).catch(() => true))) {
    const left = await dockerLeftovers(stack);
    const count = left === undefined ? 0 : left.containers.length + left.volumes.length + left.networks.length;
    if (left !== undefined && count > 0) {
      log(`up: stack ${stack} is new to ${describeBackend().state}, but Docker still has ${left.containers.length} container(s), ${left.volumes.length} volume(s) and ${left.networks.length} network(s) of a stack ${stack}`);
      log('up: its state is gone, so pulumi cannot manage them, and the new cluster would start on the old data with the old root password');
      log('hint: remove them (the data goes with them), then rerun `npm run up`:');
      for (const line of leftoverCleanup(stack, left)) log(`  ${line}`);
      return 1;
    }
  }

  // 5. What the Docker resources need, before anything is created: a provider plugin that knows container uploads
  //    with owner/group, and the image (local, or pulled now: a failed pull is said plainly, not after the network
  //    and volumes exist).
  const externalStack = external || (!outputsOnly && dockerMode && (await stackMode(stack).catch(() => undefined)) === 'external');
  const runsContainers = !outputsOnly && dockerMode && !externalStack;
  if (runsContainers) {
    const plugin = await checkDockerPlugin({ env: { ...process.env, ...env } });
    if (plugin.warning) log(plugin.warning);
    const image = (await stackConfig(stack, 'image')) ?? DEFAULTS.image;
    const imageCheck = plugin.ok ? await withSpinner(`checking the image ${image} (pulled now if it is not on this machine)…`, () => checkImage(image, { stack })) : undefined;
    const failed = [plugin, ...(imageCheck && !imageCheck.ok ? [{ name: `image ${image}`, ...imageCheck }] : [])].filter((c) => !c.ok);
    if (failed.length > 0) {
      for (const c of failed) log(`missing: ${c.name}: ${c.detail}; fix: ${c.fix}`);
      log('up: nothing was created');
      return 1;
    }
    if (imageCheck?.pulled) log(`pulled the image ${image}`);
  }

  // 6. Stack, configuration, update.
  // --outputs-only changes nothing: `stack select --create` would create a mistyped stack, and `stack output`
  // names its stack anyway.
  const steps = [
    ...(outputsOnly ? [] : [[`selecting stack ${stack}`, pulumiArgs.select(stack)]]),
    ...config.map(([k, v]) => [`setting ${k}`, pulumiArgs.configSet(stack, k, v)]),
    ...secretConfig.map(([k, v]) => [`setting ${k} (secret)`, pulumiArgs.configSetSecret(stack, k), v]),
  ];
  if (!outputsOnly) steps.push([`pulumi up (stack ${stack}): ${externalStack ? 'capsule and data key in the existing cluster' : 'containers, replica set, root user, capsule, data key'}`, pulumiArgs.up(stack)]);
  for (const [title, args, input] of steps) {
    const slow = args[0] === 'up';
    try {
      if (slow) {
        const failure = await updateWatched(title, args, { env, stream, stack, watch: runsContainers });
        if (failure) {
          log(`up: ${title} stopped:`);
          for (const line of failureReport(failure)) log(line);
          log(`up: the stack is left as far as it got; once the cause is fixed, \`npm run up\` resumes, or \`npm run down${stack === DEFAULT_STACK ? '' : ` -- --stack ${stack}`}\` removes it (containers, network, volumes)`);
          return 1;
        }
      } else {
        await runPulumi(args, { env, quiet: true, ...(input === undefined ? {} : { input }) });
      }
    } catch (e) {
      log(`up: ${title} failed:`);
      const tail = stream && slow ? '' : failureTail(e) || e.message;
      // Docker mode made the connection string itself: the generic "check the connection string" does not apply.
      const authInDocker = slow && runsContainers && (isAuthFailure(tail) || e.authFailed === true);
      if (tail) log(authInDocker ? tail.split('\n').filter((l) => !/^\s*hint: .*connection string/.test(l)).join('\n') : tail);
      else log(`pulumi exited with ${e.exitCode}`);
      if (authInDocker) for (const line of dockerAuthHint(stack)) log(line);
      if (slow && !stream) log(`hint: rerun with --verbose for pulumi's full output; re-running \`npm run up\` resumes where it stopped`);
      else if (slow) log('hint: re-running `npm run up` resumes where it stopped');
      return 1;
    }
  }

  // 7. Outputs.
  let outputs;
  try {
    outputs = parseOutputs((await runPulumi(pulumiArgs.outputs(stack, showSecrets), { env, quiet: true })).stdout);
  } catch (e) {
    log(`up: reading the stack outputs failed: ${e.stderr?.trim() || e.message}`);
    return 1;
  }
  if (values.json) {
    if (!showSecrets) outputs.connectionString = '[secret]';
    echo(JSON.stringify(outputs, null, 2));
  } else {
    echo(formatOutputs(outputs, { stack, showSecrets }).join('\n'));
  }
  return 0;
}

/**
 * `pulumi up`, with the members watched while it runs (docker mode): progress lines as they start, and as soon as
 * one will not become healthy (it restarts, or its health check keeps failing) pulumi is cancelled gracefully (one
 * SIGINT to its own process group, as e2e does) and the failure is returned: the container, why, its log tail and
 * the hint. Pulumi runs detached so that a terminal's Ctrl-C reaches this script only, which passes one SIGINT on.
 * Throws what runPulumi throws when pulumi fails by itself; `e.authFailed` marks an authentication failure seen in
 * streamed output.
 */
async function updateWatched(title, args, { env, stream, stack, watch }) {
  // Captured even when streamed (then passed on to stderr as it comes), so that the failure can be read.
  const proc = runPulumi(args, { env, detached: true });
  let sawAuthFailure = false;
  if (stream) {
    log(`${title}…`);
    for (const out of [proc.stdout, proc.stderr]) {
      out.on('data', (c) => {
        sawAuthFailure ||= isAuthFailure(c);
        process.stderr.write(c);
      });
    }
  }
  const cancel = () => {
    try {
      process.kill(-proc.pid, 'SIGINT');
    } catch {
      // already gone
    }
  };
  let signals = 0;
  const onSignal = (signal) => {
    signals += 1;
    if (signals === 1) {
      log(`${signal}: cancelling pulumi (it finishes the operations in flight; once more to stop waiting)`);
      cancel();
    } else {
      log(`${signal}: no longer waiting for pulumi; the stack may have pending operations: ${displayCommand(pulumiArgs.refresh(stack))}`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stop = new AbortController();
  const watcher = watch
    ? watchMembers(() => stackContainers(stack), { signal: stop.signal, onProgress: (line) => log(`  ${line}`) })
    : Promise.resolve(undefined);
  const done = proc.then(
    () => ({ ok: true }),
    (error) => ({ ok: false, error }),
  );
  try {
    const first = await (stream ? Promise.race([done, watcher.then((f) => f ?? done)]) : withSpinner(`${title}…`, () => Promise.race([done, watcher.then((f) => f ?? done)])));
    if (first && 'container' in first) {
      log(`up: ${first.container} will not become healthy; cancelling pulumi…`);
      cancel();
      const waited = Date.now();
      const ticker = setInterval(() => log(`  waiting for pulumi to cancel (${Math.round((Date.now() - waited) / 1000)} s)`), 15_000);
      await done;
      clearInterval(ticker);
      return first;
    }
    if (!first.ok) {
      if (sawAuthFailure) first.error.authFailed = true;
      throw first.error;
    }
    return undefined;
  } finally {
    stop.abort();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

process.exitCode = await runScript('up', USAGE, main);
