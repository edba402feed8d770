// Where the project's slow builds and downloads are cached (FerretDB, libmongocrypt, the native addon, the NTRU
// interop oracle), outside the repository and keyed by version below it: one definition for setup, the native
// build, the test harness and the bench. Plain Node, no dependencies.
import { homedir } from 'node:os';
import { join } from 'node:path';

/** MONGO_CAPSULE_CACHE, else $XDG_CACHE_HOME/mongo-capsule, else ~/.cache/mongo-capsule. */
export function defaultCacheDir(env = process.env) {
  return env.MONGO_CAPSULE_CACHE ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mongo-capsule');
}
