// The steps of `npm run e2e`, as data: the script runs them and `--dry-run` prints them, so the plan shown is
// the plan run. No secret is ever part of a step: the connection string and the throwaway identity's secret
// file travel in environment variables, named here but never valued.
import { describeBackend, displayCommand, pulumiArgs } from './pulumi.mjs';

/** What the suite runs against the cluster by default: the integration tests that need a real server. */
export const DEFAULT_SUITE = ['test/mongo'];
/** Name of the throwaway identity the e2e cluster seals its capsule for. */
export const E2E_IDENTITY = 'e2e';

/** The CLI arguments that create the throwaway identity in `dir`. */
export function keygenArgs(dir) {
  return ['keygen', '--name', E2E_IDENTITY, '--pub-out', `${dir}/${E2E_IDENTITY}.pub.json`, '--secret-out', `${dir}/${E2E_IDENTITY}.secret.json`];
}

/** Stack configuration of the throwaway stack, as [key, value] pairs. */
export function e2eConfig({ pubFile, basePort, members }) {
  return [
    ['publicKeyPath', pubFile],
    ['basePort', basePort],
    ['members', members],
  ];
}

/** The CLI arguments of the health check of the provisioned cluster (server, auth, key vault, capsule, identity). */
export function doctorArgs() {
  return ['doctor', '--name', E2E_IDENTITY];
}

/** The command that runs the suite (`npm test`'s runner: private D-Bus session, vitest), given filters. */
export function suiteArgs(filters) {
  return ['scripts/test.mjs', ...(filters.length > 0 ? filters : DEFAULT_SUITE)];
}

/**
 * @param {{ stack: string, members: string, keep: boolean, filters: string[], doctor?: boolean, basePort?: number | string, identityDir?: string, env?: NodeJS.ProcessEnv }} o
 * @returns {string[]} printable lines
 */
export function e2ePlanLines({ stack, members, keep, filters, doctor = true, basePort = '<free port>', identityDir = '<temporary directory>', env = process.env }) {
  const backend = describeBackend(undefined, env);
  const steps = [
    'check prerequisites: Node.js, Docker engine, Pulumi CLI (stop at once if one is missing)',
    `state: ${backend.state}; secrets: ${backend.secrets}`,
    `throwaway identity (no keychain needed): mongo-capsule ${keygenArgs(identityDir).join(' ')}; later steps get MONGO_CAPSULE_SECRET_IDENTITY_FILE`,
    displayCommand(pulumiArgs.select(stack)),
    ...e2eConfig({ pubFile: `${identityDir}/${E2E_IDENTITY}.pub.json`, basePort, members }).map(([k, v]) => displayCommand(pulumiArgs.configSet(stack, k, v))),
    displayCommand(pulumiArgs.up(stack)),
    `${displayCommand(pulumiArgs.outputs(stack, true))}  (read in memory: connectionString, never printed)`,
    ...(doctor ? [`MONGODB_URI=<connectionString> mongo-capsule ${doctorArgs().join(' ')}  (the capsule pulumi seeded opens with the throwaway identity; a failure fails e2e)`] : []),
    `MONGO_CAPSULE_TEST_URI=<connectionString> node ${suiteArgs(filters).join(' ')}  (its exit status is e2e's)`,
  ];
  const teardown = keep
    ? [`--keep: leave stack ${stack} up; remove it later with: npm run down -- --stack ${stack} --remove-stack`]
    : [
        `always, also after a failure or Ctrl-C/SIGTERM: ${displayCommand(pulumiArgs.destroy(stack))}`,
        `  if destroy fails: ${displayCommand(pulumiArgs.refresh(stack))}, then destroy again`,
        `  ${displayCommand(pulumiArgs.stackRm(stack))}`,
        '  delete the throwaway identity directory',
      ];
  const lines = [`e2e plan for throwaway stack ${stack} (nothing is run):`];
  let n = 0;
  for (const s of [...steps, ...teardown]) lines.push(s.startsWith('  ') ? `      ${s.trim()}` : `  ${String(++n).padStart(2)}. ${s}`);
  return lines;
}
