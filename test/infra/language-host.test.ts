/**
 * The program and its dynamic providers under `node --import tsx` (what Pulumi.yaml's runtime options make the
 * language host run), not under vitest's own transform.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { writePublicIdentity } from './support/identity.ts';

const run = promisify(execFile);
const FIXTURE = 'test/infra/fixtures/program-under-tsx.ts';

describe('program under node --import tsx, as the Pulumi language host runs it', () => {
  it.each([1, 3])('loads, registers every resource and serializes the dynamic providers (%i member)', async (members) => {
    const identity = await writePublicIdentity();
    const { stdout } = await run(process.execPath, ['--import', 'tsx', FIXTURE, identity.path, String(members), '--localhost-resolves'], {
      cwd: process.cwd(),
      timeout: 60_000,
    });
    const result = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(result.kid).toBe('kid-under-tsx');
    expect(result.members).toHaveLength(members);
    const types = (result.registrations as { type: string }[]).map((r) => r.type);
    expect(types.filter((t) => t === 'docker:index/container:Container')).toHaveLength(members);
    const dynamic = (result.registrations as { type: string; serializedProvider: boolean }[]).filter((r) => r.type.startsWith('pulumi-nodejs:dynamic:'));
    expect(dynamic).toHaveLength(3);
    for (const d of dynamic) expect(d.serializedProvider).toBe(true);
    expect(result.keyfileLength).toBe(1008);
    expect(result.provisionerLoaded).toBe(true);
  }, 90_000);

  it('stops before creating anything when the 3 member names do not resolve here, and says how to fix it', async () => {
    const identity = await writePublicIdentity();
    const error = await run(process.execPath, ['--import', 'tsx', FIXTURE, identity.path, '3'], { cwd: process.cwd(), timeout: 60_000 }).catch((e) => e);
    // Where this machine maps *.localhost to loopback the program runs instead; both are correct.
    if (error instanceof Error) {
      expect(String((error as { stderr?: string }).stderr)).toContain('do not resolve to 127.0.0.1 on this host');
      expect(String((error as { stderr?: string }).stderr)).toContain(
        'add this line to /etc/hosts (once, as root): 127.0.0.1 mongo-capsule-dev-0.localhost mongo-capsule-dev-1.localhost mongo-capsule-dev-2.localhost',
      );
    }
  }, 90_000);
});
