/**
 * Vitest global setup: a real Docker engine for the Docker tests (test/docker/support/engine.ts), found or started
 * once for the run and stopped at its end. Tests read it with `inject('docker')` and skip, printing the reason, when
 * no engine can be had. DOCKER_HOST is set for the workers, so every `docker` the code under test runs talks to it.
 */
import type { TestProject } from 'vitest/node';
import { startDockerEngine, type ProvidedDocker } from './docker/support/engine.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    docker: ProvidedDocker;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const log = (msg: string) => console.log(`[docker] ${msg}`);
  const t0 = Date.now();
  const engine = await startDockerEngine(log);
  if (!engine.provided.available) log(`no engine: ${engine.provided.reason}`);
  const previous = process.env.DOCKER_HOST;
  if (engine.provided.host) process.env.DOCKER_HOST = engine.provided.host;
  project.provide('docker', engine.provided);
  const setupMs = Date.now() - t0;
  return async () => {
    const t1 = Date.now();
    const left = await engine.stop();
    if (previous === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = previous;
    for (const l of left) console.warn(`[docker] left behind: ${l}`);
    if (engine.provided.available) {
      log(`${engine.provided.started ? 'stopped the test engine' : 'cleaned up'}${left.length === 0 ? ', nothing left behind' : ''} (setup ${setupMs} ms, teardown ${Date.now() - t1} ms)`);
    }
  };
}
