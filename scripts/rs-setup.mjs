#!/usr/bin/env node
// `npm run rs-setup`: initiate rs0 and create the root user on a cluster started some other way (compose, docker run).
import { echo } from 'zx';
import { directConnectionUri, connect, redactUri } from '../src/mongo/connection.ts';
import { DEFAULT_PRIMARY_TIMEOUT_MS, DEFAULT_REPLICA_SET_NAME, ensureReplicaSet, ensureRootUser, replicaSetConfig } from '../src/mongo/replica-set.ts';
import { checkPrerequisites, failureLines } from './lib/prereqs.mjs';
import { parseMembers, PASSWORD_ENV, readPassword, rsSetupPlanLines, uriHasPassword, uriHosts } from './lib/rs-setup.mjs';
import { integerOption, parseScriptArgs, runScript, ScriptUsageError, userPath } from './lib/script-args.mjs';

const USAGE = `Usage: npm run rs-setup -- [options]

For a replica set started some other way (a compose file, docker run): initiates it with an explicit member list
and creates the root user, through the same code as \`npm run up\`. Safe to run again: what exists is kept.

  --uri <uri>              where to connect (default: MONGODB_URI); a URI holding a password must come from
                           MONGODB_URI, not from the command line. The first host should be the member meant
                           to become primary; rs-setup connects to it directly.
  --members <h:p,h:p,…>    member addresses as the members reach each other (default: the URI's hosts)
  --set-name <name>        replica set name (default ${DEFAULT_REPLICA_SET_NAME})
  --username <name>        root user to create (default root)
  --password-file <file>   root password from a file (mode 0600)
  --password-stdin         root password from stdin
                           (or ${PASSWORD_ENV}; without a password no user is created)
  --timeout <seconds>      wait at most this long for a writable primary (default ${DEFAULT_PRIMARY_TIMEOUT_MS / 1000})
  --dry-run                print what would be done, change nothing

Auth: once a user exists, initiating needs its credentials in the URI (e.g. the user the image created from
MONGO_INITDB_ROOT_USERNAME/_PASSWORD). Without any user, only a loopback connection to mongod itself may
initiate (the localhost exception); a port published by Docker is not loopback for mongod.`;

const OPTIONS = {
  uri: { type: 'string' },
  members: { type: 'string' },
  'set-name': { type: 'string' },
  username: { type: 'string' },
  'password-file': { type: 'string' },
  'password-stdin': { type: 'boolean' },
  timeout: { type: 'string' },
  'dry-run': { type: 'boolean' },
};
const FORBIDDEN = { password: `a password on the command line is visible to other local users; use --password-file, --password-stdin or ${PASSWORD_ENV}` };

const log = (msg) => process.stderr.write(`${msg}\n`);

async function main() {
  const { values } = parseScriptArgs('rs-setup', process.argv.slice(2), OPTIONS, { forbidden: FORBIDDEN });
  if (values.help) {
    echo(USAGE);
    return 0;
  }
  if (values.uri !== undefined && uriHasPassword(values.uri)) {
    throw new ScriptUsageError('rs-setup: --uri holds a password, which the command line exposes to other local users; pass it as MONGODB_URI instead');
  }
  const uri = values.uri ?? process.env.MONGODB_URI;
  if (!uri) throw new ScriptUsageError('rs-setup: no cluster given: pass --uri mongodb://host:port or set MONGODB_URI');
  const hosts = uriHosts(uri);
  const members = parseMembers(values.members) ?? hosts.map((host) => ({ host }));
  const setName = values['set-name'] ?? DEFAULT_REPLICA_SET_NAME;
  replicaSetConfig(setName, members); // validates names and hosts before anything happens
  const username = values.username ?? 'root';
  const timeoutMs = (integerOption('rs-setup', 'timeout', values.timeout, { min: 1, max: 3600 }) ?? DEFAULT_PRIMARY_TIMEOUT_MS / 1000) * 1000;
  const passwordFile = values['password-file'] === undefined ? undefined : userPath(values['password-file']);
  const password = await readPassword({ passwordFile, passwordStdin: values['password-stdin'] === true, warn: log });
  const target = directConnectionUri(uri, hosts[0]);

  const plan = rsSetupPlanLines({ target: redactUri(target), setName, members, username, hasPassword: password !== undefined });
  if (values['dry-run']) {
    echo(['rs-setup plan (nothing is changed):', ...plan.map((l, i) => `  ${i + 1}. ${l}`)].join('\n'));
    return 0;
  }

  const missing = failureLines(await checkPrerequisites(['node']));
  if (missing.length > 0) {
    for (const line of missing) log(line);
    return 1;
  }

  const client = await connect(target, { purpose: 'connecting to set up the replica set' });
  try {
    const rs = await ensureReplicaSet(client, { setName, members, timeoutMs, onProgress: (m) => log(`  ${m}`) });
    echo(`replica set ${rs.setName}: ${rs.initiated ? 'initiated' : 'already initiated'}; members ${rs.members.join(', ')}; primary ${rs.primary}`);
    if (password !== undefined) {
      const { created } = await ensureRootUser(client, { username, password });
      echo(created ? `user ${username} created on admin` : `user ${username} already exists on admin (its password was not changed)`);
    }
    const seeds = members.map((m) => m.host).join(',');
    echo(`connect with: mongodb://${password !== undefined ? `${username}:<password>@` : ''}${seeds}/?replicaSet=${rs.setName}${password !== undefined ? '&authSource=admin' : ''}`);
  } finally {
    await client.close().catch(() => {});
  }
  return 0;
}

process.exitCode = await runScript('rs-setup', USAGE, main);
