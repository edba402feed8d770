/**
 * Where mongo-capsule keeps small per-user state that is not secret but must survive restarts: which capsule
 * generations this machine has already seen, where an identity's capsules live, which backups exist.
 * One directory for every layer, so that tests can move all of it with one variable.
 *
 * `MONGO_CAPSULE_STATE_DIR`, else `$XDG_STATE_HOME/mongo-capsule`, else the platform's per-user state location
 * (`~/.local/state` on Linux and other Unixes, `~/Library/Application Support` on macOS, `%LOCALAPPDATA%` on
 * Windows). Created with mode 0700 by whoever first writes there.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MONGO_CAPSULE_STATE_DIR) return env.MONGO_CAPSULE_STATE_DIR;
  if (env.XDG_STATE_HOME) return join(env.XDG_STATE_HOME, 'mongo-capsule');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Application Support', 'mongo-capsule');
  if (process.platform === 'win32') return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'mongo-capsule');
  return join(homedir(), '.local', 'state', 'mongo-capsule');
}
