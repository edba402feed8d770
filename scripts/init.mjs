#!/usr/bin/env node
// `npm run init`: creates your identity (secret keys in the OS keychain, public file beside the project), once.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { $, echo } from 'zx';
import { checkPrerequisites, CLI, failureLines, ROOT } from './lib/prereqs.mjs';
import { parseScriptArgs, runScript, ScriptUsageError, userPath } from './lib/script-args.mjs';
import { checkIdentityName } from '../src/crypto/index.ts';

const USAGE = `Usage: npm run init -- [--name <identity>] [--suite <id>] [--pub-out <file>] [--dry-run]

Creates the identity the cluster's master key is sealed for: a KEM key pair and an ML-DSA-87 signing key pair.
The secret keys go to the OS keychain (service "mongo-capsule", account = the identity name); the public
identity goes to --pub-out (safe to commit and share). Running it again changes nothing: an existing identity
is reported (and its public file written if it is missing), never replaced.

  --name <identity>   identity name (default "default")
  --suite <id>        KEM suite (default ml-kem-1024; \`npx mongo-capsule suites\` lists them)
  --pub-out <file>    public identity file (default <identity>.pub.json in the project, where \`npm run up\` looks)
  --dry-run           check the prerequisites and say what would happen, change nothing`;

const OPTIONS = {
  name: { type: 'string' },
  suite: { type: 'string' },
  'pub-out': { type: 'string' },
  'dry-run': { type: 'boolean' },
};

const log = (msg) => process.stderr.write(`${msg}\n`);

async function main() {
  const { values } = parseScriptArgs('init', process.argv.slice(2), OPTIONS);
  if (values.help) {
    echo(USAGE);
    return 0;
  }
  const name = values.name ?? 'default';
  // A bad name is the user's typo, not a missing prerequisite: say what is wrong with it before checking anything.
  try {
    checkIdentityName('init: --name', name);
  } catch (e) {
    throw new ScriptUsageError(`${e.message}, got ${JSON.stringify(name)}`);
  }
  // The default is where `npm run up` looks for it (mongo-capsule:publicKeyPath defaults to default.pub.json).
  const pubOut = values['pub-out'] !== undefined ? userPath(values['pub-out']) : join(ROOT, `${name}.pub.json`);
  const cli = (args) => $({ quiet: true })`${process.execPath} ${CLI} ${args}`;

  const checks = await checkPrerequisites(['node', 'keychain'], { name });
  const missing = failureLines(checks);
  if (missing.length > 0) {
    for (const line of missing) log(line);
    log(`init: ${missing.length} prerequisite(s) missing; nothing was created`);
    return 1;
  }
  const { identity, keychain, warnings = [] } = checks.find((c) => c.id === 'keychain');
  for (const w of warnings) log(w);

  if (identity.initialized || identity.rotationPending) {
    echo(`identity ${name} already exists in ${keychain}: suite ${identity.suite ?? '?'}, kid ${identity.kid ?? '?'}`);
    if (identity.rotationPending) {
      echo(
        `a rotation of ${name} is unfinished: finish it with \`MONGODB_URI=<uri> npx mongo-capsule keys rotate --name ${name} --cluster --capsules <dir> --pub-out ${pubOut} --replace\`, ` +
          'naming every cluster (--cluster, with --collection if not the default; a further cluster as --cluster VAR:<db.coll>, its connection string in the variable VAR) and every directory (--capsules) that holds its capsules; ' +
          `\`npx mongo-capsule keys status --name ${name}\` lists the locations recorded on this machine`,
      );
    }
    if (!existsSync(pubOut)) {
      if (values['dry-run']) {
        echo(`would write its public identity to ${pubOut}`);
      } else {
        try {
          await cli(['keys', 'status', '--name', name, '--pub-out', pubOut]);
          echo(`wrote its public identity to ${pubOut}`);
        } catch (e) {
          log(`init: writing ${pubOut} failed: ${e.stderr?.trim() || e.message}`);
          return 1;
        }
      }
    } else {
      echo(`public identity: ${pubOut}`);
    }
    echo(
      `nothing to do: the identity is kept as it is. New keys for it come from a rotation that names every cluster and directory holding its capsules (each is re-sealed, none is lost): ` +
        `\`MONGODB_URI=<uri> npx mongo-capsule keys rotate --name ${name} --cluster [--capsules <dir>]… --pub-out ${pubOut} --replace\``,
    );
    if (values.suite) echo(`(--suite ${values.suite} is ignored: the identity exists; \`keys rotate --suite ${values.suite}\` changes it)`);
    return 0;
  }

  const args = ['init', '--name', name, '--pub-out', pubOut, ...(values.suite ? ['--suite', values.suite] : [])];
  if (values['dry-run']) {
    echo(`would run: mongo-capsule ${args.join(' ')}  (secret keys to ${keychain})`);
    return 0;
  }
  try {
    const out = await cli(args);
    echo(out.stdout.trim());
  } catch (e) {
    log(`init: ${e.stderr?.trim() || e.message}`);
    return 1;
  }
  echo(`next: \`npm run up\` brings up a cluster whose master key is sealed for this identity${name === 'default' ? '' : ` (npm run up -- --name ${name})`}`);
  return 0;
}

process.exitCode = await runScript('init', USAGE, main);
