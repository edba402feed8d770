/**
 * The engine of the Docker tests (test/docker-global-setup.ts) and the gates that skip, printing why, without one.
 */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { describeIf } from '../../support/skip.ts';
import { TEST_LABEL } from './engine.ts';

export const docker = inject('docker');

/** The environment for code under test: DOCKER_HOST of the test engine (unless `extra` says otherwise). */
export function dockerEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (docker.host) env.DOCKER_HOST = docker.host;
  return { ...env, ...extra };
}

/** Tests that need a Docker engine. */
export function describeWithDocker(name: string, body: () => void): void {
  describeIf(docker.available, `${name}: ${docker.reason}`)(name, body);
}

/** Tests that also need the test image (a failing stand-in for mongod). */
export function describeWithTestImage(name: string, body: () => void): void {
  describeIf(docker.available && docker.image !== '', `${name}: ${docker.available ? `no test image: ${docker.imageReason}` : docker.reason}`)(name, body);
}

/** A stack name of its own per test, so that files running in parallel never see each other's objects. */
export function testStack(prefix = 'dt'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The labels a test object carries: the stack's (what the code under test looks for) and the test run's. */
export function labels(stack: string): string[] {
  return ['--label', `mongo-capsule.stack=${stack}`, '--label', `${TEST_LABEL}=${docker.runId}`];
}
