// Inputs of `npm run rs-setup`: member list, connection string checks, and the root password, which is read from
// a file, stdin or the environment and never accepted as an argument (other local users can read argv).
import { readFile, stat } from 'node:fs/promises';
import { ScriptUsageError } from './script-args.mjs';

export const PASSWORD_ENV = 'MONGO_CAPSULE_ROOT_PASSWORD';
const SCHEME = /^mongodb(\+srv)?:\/\//i;

/** `host:port` entries of a connection string's seed list (credentials and options left out). */
export function uriHosts(uri) {
  if (typeof uri !== 'string' || !SCHEME.test(uri)) throw new ScriptUsageError('rs-setup: the connection string must start with mongodb:// (or mongodb+srv://)');
  const rest = uri.replace(SCHEME, '');
  const authority = rest.split(/[/?]/, 1)[0] ?? '';
  const hosts = authority.slice(authority.lastIndexOf('@') + 1);
  return hosts.split(',').filter((h) => h !== '').map((h) => (/:\d+$/.test(h) || h.startsWith('[') ? h : `${h}:27017`));
}

/** True when the connection string carries a password (then it must not come from argv). */
export function uriHasPassword(uri) {
  const authority = uri.replace(SCHEME, '').split(/[/?]/, 1)[0] ?? '';
  const at = authority.lastIndexOf('@');
  return at !== -1 && authority.slice(0, at).includes(':');
}

/** `--members a:1,b:2` → [{ host }]; each entry must be host:port (validated again by src/mongo). */
export function parseMembers(raw) {
  if (raw === undefined) return undefined;
  const hosts = raw.split(',').map((h) => h.trim()).filter((h) => h !== '');
  if (hosts.length === 0) throw new ScriptUsageError('rs-setup: --members needs at least one host:port');
  for (const h of hosts) if (!/^[A-Za-z0-9._-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/.test(h)) throw new ScriptUsageError(`rs-setup: --members entry ${JSON.stringify(h)} is not host:port`);
  return hosts.map((host) => ({ host }));
}

/** Drops one trailing newline (files and `echo` add one; a password may legitimately end in spaces). */
function chompNewline(s) {
  return s.replace(/\r?\n$/, '');
}

async function readAll(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The root password from exactly one source: `--password-file`, `--password-stdin` or MONGO_CAPSULE_ROOT_PASSWORD.
 * Resolves undefined when none is given (then no user is created). `warn` receives non-fatal remarks.
 */
export async function readPassword({ passwordFile, passwordStdin = false, env = process.env, stdin = process.stdin, warn = () => {} }) {
  const sources = [passwordFile !== undefined && '--password-file', passwordStdin && '--password-stdin', env[PASSWORD_ENV] !== undefined && PASSWORD_ENV].filter(Boolean);
  if (sources.length > 1) throw new ScriptUsageError(`rs-setup: give the password one way, not ${sources.join(' and ')}`);
  let password;
  if (passwordFile !== undefined) {
    let st;
    try {
      st = await stat(passwordFile);
    } catch {
      throw new ScriptUsageError(`rs-setup: --password-file ${passwordFile} does not exist`);
    }
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) warn(`warning: ${passwordFile} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    password = chompNewline(await readFile(passwordFile, 'utf8'));
  } else if (passwordStdin) {
    if (stdin.isTTY) throw new ScriptUsageError('rs-setup: --password-stdin reads a pipe, e.g. `printf %s "$PASS" | npm run rs-setup -- --password-stdin …`');
    password = chompNewline(await readAll(stdin));
  } else if (env[PASSWORD_ENV] !== undefined) {
    password = env[PASSWORD_ENV];
  }
  if (password !== undefined && password.length < 8) throw new ScriptUsageError('rs-setup: the root password must have at least 8 characters');
  return password;
}

/** What rs-setup will do, printable (no secret: the connection string is redacted by the caller). */
export function rsSetupPlanLines({ target, setName, members, username, hasPassword }) {
  return [
    `connect directly to ${target}`,
    `replica set ${setName}: initiate with members ${members.map((m) => m.host).join(', ')} unless already initiated, then wait for a writable primary`,
    hasPassword ? `user ${username} on admin (role root): create unless it exists (an existing user keeps its password)` : 'no password given: no user is created',
  ];
}
