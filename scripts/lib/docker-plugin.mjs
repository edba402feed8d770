// Which Docker provider plugin will `pulumi up` load, and is it new enough? The program uploads files into the
// containers with `owner`/`group`, which the plugin knows from 5.2.0 on; an older one rejects every container with
// "Invalid or unknown key. Examine values at 'mongo-0.uploads'", after the network and volumes were created.
//
// Pulumi takes a `pulumi-resource-docker` found on PATH before anything in its plugin directory (unless
// PULUMI_IGNORE_AMBIENT_PLUGINS is set), then the installed plugins (`pulumi plugin ls --json`: an array of
// { name, kind, version, size, installTime?, lastUsedTime? }), and downloads the version the SDK asks for when
// none is installed. The verdicts are pure functions of what was found, so every branch is tested with fake
// binaries and directories; the probes run the real `which`, the real plugin binary and the real CLI.
import { readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { which } from 'zx';
import { probe, ROOT } from './prereqs.mjs';

/** The first plugin version with `ContainerUpload.owner` / `group`. */
export const MIN_DOCKER_PLUGIN_VERSION = '5.2.0';
export const PLUGIN_BINARY = 'pulumi-resource-docker';
const VERSION_PROBE_TIMEOUT_MS = 5_000;

/** The plugin version the installed @pulumi/docker SDK asks Pulumi for. */
export function sdkPluginVersion(root = ROOT) {
  try {
    return String(JSON.parse(readFileSync(join(root, 'node_modules', '@pulumi', 'docker', 'package.json'), 'utf8')).version);
  } catch {
    return MIN_DOCKER_PLUGIN_VERSION;
  }
}

function parseVersion(v) {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(String(v ?? '').trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** a < b for x.y.z versions (pre-release suffixes ignored); undefined when either is not a version. */
export function versionBelow(a, b) {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  if (!pa || !pb) return undefined;
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] < pb[i];
  return false;
}

/** The version in a plugin directory name (`resource-docker-v5.2.0`), if the path has one. */
export function versionFromPath(path) {
  const m = /resource-docker-v(\d+\.\d+\.\d+[\w.+-]*)/.exec(String(path));
  return m?.[1];
}

/** Installed docker resource plugins from `pulumi plugin ls --json` output. */
export function parsePluginList(stdout) {
  const list = JSON.parse(stdout || '[]');
  if (!Array.isArray(list)) throw new Error('pulumi plugin ls --json did not print an array');
  return list.filter((p) => p?.name === 'docker' && p?.kind === 'resource' && typeof p.version === 'string' && p.version !== '').map((p) => p.version.replace(/^v/, ''));
}

/** Installed docker resource plugins from the plugin directory itself (when the CLI cannot be asked). */
export function pluginDirVersions(env = process.env) {
  const dir = join(env.PULUMI_HOME || join(homedir(), '.pulumi'), 'plugins');
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && /^resource-docker-v\d/.test(d.name) && !d.name.endsWith('.partial'))
      .map((d) => d.name.slice('resource-docker-v'.length));
  } catch {
    return [];
  }
}


/**
 * The verdict, from what was found. `ambient`: a plugin binary on PATH ({ path, version? }); `installed`: the
 * versions in the plugin directory.
 * @returns {{ id: string, name: string, ok: boolean, detail: string, fix: string, warning?: string }}
 */
export function evaluateDockerPlugin({ ambient, installed = [], ignoreAmbient = false, min = MIN_DOCKER_PLUGIN_VERSION, wanted = min }) {
  const base = { id: 'docker-plugin', name: 'Pulumi Docker provider plugin' };
  const install = `pulumi plugin install resource docker ${wanted}`;
  if (ambient && !ignoreAmbient) {
    const { path, version } = ambient;
    const away = `remove ${path} from PATH (or replace it with ${min} or newer), or export PULUMI_IGNORE_AMBIENT_PLUGINS=true so that Pulumi uses its own plugins (then \`${install}\`)`;
    if (version === undefined) {
      return { ...base, ok: true, detail: `${path} on PATH (version unknown) takes precedence over installed plugins`, fix: '', warning: `warning: Pulumi will use ${path} from PATH, whose version could not be read; the program needs ${min} or newer (older ones fail with "Invalid or unknown key … uploads"); if it is older: ${away}` };
    }
    if (versionBelow(version, min)) {
      return { ...base, ok: false, detail: `Pulumi would use ${path} from PATH, version ${version}; the program needs ${min} or newer (container uploads with owner/group), and ${version} fails with "Invalid or unknown key. Examine values at 'mongo-0.uploads'"`, fix: away };
    }
    return { ...base, ok: true, detail: `${path} on PATH, version ${version}`, fix: '' };
  }
  const newEnough = installed.filter((v) => versionBelow(v, min) === false);
  if (newEnough.length > 0) return { ...base, ok: true, detail: `docker plugin ${newEnough.join(', ')} installed`, fix: '' };
  if (installed.length === 0) return { ...base, ok: true, detail: `no docker plugin installed yet: pulumi downloads ${wanted} on the first \`pulumi up\``, fix: '' };
  const stale = installed.join(', ');
  return {
    ...base,
    ok: false,
    detail: `only the docker plugin ${stale} is installed; the program needs ${min} or newer (container uploads with owner/group), and an older one fails with "Invalid or unknown key. Examine values at 'mongo-0.uploads'"`,
    fix: `\`${install}\`${installed.map((v) => ` (and remove the old one: \`pulumi plugin rm resource docker ${v} --yes\`)`).join('')}`,
  };
}

/** The version a plugin binary reports, from its directory name or its `-version` flag; undefined if neither says. */
export async function ambientPluginVersion(path, env = process.env) {
  const fromPath = versionFromPath(path);
  if (fromPath) return fromPath;
  const r = await probe(path, ['-version'], { env, timeoutMs: VERSION_PROBE_TIMEOUT_MS });
  if (r.exitCode !== 0 || r.timedOut) return undefined;
  return /^v?(\d+\.\d+\.\d+\S*)/m.exec(r.stdout.trim())?.[1];
}

/**
 * Looks for the plugin Pulumi will really load: PATH first, then `pulumi plugin ls --json` (or the plugin
 * directory when the CLI cannot list). Run after the Pulumi CLI check passed.
 */
export async function checkDockerPlugin({ env = process.env, root = ROOT } = {}) {
  // Pulumi skips PATH for any non-empty value (sdk/go/common/workspace/plugins.go, GetPluginPath).
  const ignoreAmbient = (env.PULUMI_IGNORE_AMBIENT_PLUGINS ?? '') !== '';
  const found = await which(PLUGIN_BINARY, { nothrow: true, path: env.PATH });
  const ambient = found ? { path: found, version: await ambientPluginVersion(found, env) } : undefined;
  let installed;
  const listed = await probe('pulumi', ['plugin', 'ls', '--json'], { env, cwd: root });
  try {
    if (!listed.found || listed.exitCode !== 0) throw new Error('not listed');
    installed = parsePluginList(listed.stdout);
  } catch {
    installed = pluginDirVersions(env);
  }
  return evaluateDockerPlugin({ ambient, installed, ignoreAmbient, wanted: sdkPluginVersion(root) });
}
