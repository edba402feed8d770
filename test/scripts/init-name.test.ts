// `npm run init --name <bad>` says what is wrong with the name, instead of "1 prerequisite(s) missing".
import { describe, expect, it } from 'vitest';
import { npmRun } from './support/run.ts';

describe('npm run init: an invalid --name', () => {
  it('is a usage error naming the rule, before any prerequisite check', async () => {
    const r = await npmRun('init', ['--name', 'bad name!', '--dry-run']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/init: --name: identity name must be 1-64 characters .*got "bad name!"/);
    expect(r.stderr).not.toMatch(/prerequisite\(s\) missing/);
  });
});
