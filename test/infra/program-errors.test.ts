/** The program's expected failures: one clean message with its hint (pulumi.RunError: no stack, no source dump). */
import * as pulumi from '@pulumi/pulumi';
import { describe, expect, it } from 'vitest';
import { installMocks } from './support/pulumi-mocks.ts';

describe('program, before any resource', () => {
  it('stops with "run npm run init" when the public identity file is missing, creating nothing', async () => {
    const { registrations } = await installMocks({ config: { 'mongo-capsule:publicKeyPath': '/nonexistent/default.pub.json' } });
    const error = await import('../../infra/index.ts').catch((e: unknown) => e);
    expect(pulumi.RunError.isInstance(error)).toBe(true);
    expect((error as Error).message).toBe(
      'mongo-capsule:publicKeyPath: no public identity at /nonexistent/default.pub.json\n' +
        'hint: run `npm run init` to create your identity, or point mongo-capsule:publicKeyPath at an existing <name>.pub.json',
    );
    expect(registrations.filter((r) => r.custom)).toEqual([]);
  });
});
