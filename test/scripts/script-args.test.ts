import { describe, expect, it } from 'vitest';
import { describeFailure, integerOption, parseScriptArgs, ScriptUsageError, userPath } from '../../scripts/lib/script-args.mjs';

describe('parseScriptArgs', () => {
  const options = { stack: { type: 'string' as const }, 'dry-run': { type: 'boolean' as const } };
  it('parses known options and always knows --help', () => {
    expect(parseScriptArgs('x', ['--stack', 'dev', '--dry-run'], options).values).toMatchObject({ stack: 'dev', 'dry-run': true });
    expect(parseScriptArgs('x', ['-h'], options).values.help).toBe(true);
  });
  it('refuses unknown options (a typo never runs the real thing)', () => {
    expect(() => parseScriptArgs('up', ['--dryrun'], options)).toThrow(ScriptUsageError);
    expect(() => parseScriptArgs('up', ['--dryrun'], options)).toThrow(/^up: .*--dryrun/);
  });
  it('refuses forbidden options with their reason, in both spellings', () => {
    const forbidden = { password: 'use a file' };
    expect(() => parseScriptArgs('rs-setup', ['--password', 'x'], options, { forbidden })).toThrow(/--password is not accepted: use a file/);
    expect(() => parseScriptArgs('rs-setup', ['--password=x'], options, { forbidden })).toThrow(/not accepted/);
  });
  it('positionals only when allowed', () => {
    expect(() => parseScriptArgs('up', ['extra'], options)).toThrow(ScriptUsageError);
    expect(parseScriptArgs('e2e', ['test/mongo'], options, { allowPositionals: true }).positionals).toEqual(['test/mongo']);
  });
});

describe('integerOption', () => {
  it('bounds and messages', () => {
    expect(integerOption('up', 'base-port', undefined)).toBeUndefined();
    expect(integerOption('up', 'base-port', '27017', { min: 1024, max: 65533 })).toBe(27017);
    expect(() => integerOption('up', 'base-port', '80', { min: 1024, max: 65533 })).toThrow(/--base-port must be an integer from 1024 to 65533, got "80"/);
    expect(() => integerOption('up', 'base-port', '2e4')).toThrow(ScriptUsageError);
  });
});

describe('describeFailure', () => {
  it("prefers a child's stderr, else the first line of the message", () => {
    expect(describeFailure({ stderr: '  boom \n', message: 'ignored' })).toBe('boom');
    expect(describeFailure(new Error('first\n    at somewhere (x.js:1:1)'))).toBe('first');
  });
});

describe('withSpinner', () => {
  it('on a pipe: one plain line, then the step', async () => {
    const { withSpinner } = await import('../../scripts/lib/progress.mjs');
    let written = '';
    const stream = Object.assign(new (await import('node:stream')).Writable({ write: (c, _e, cb) => ((written += c), cb()) }), { isTTY: false });
    expect(await withSpinner('pulumi up…', async () => 42, { stream })).toBe(42);
    expect(written).toBe('pulumi up…\n');
  });
});

describe('userPath', () => {
  it('resolves against the directory npm was run from (INIT_CWD), not the project root', () => {
    expect(userPath('x.pub.json', { INIT_CWD: '/home/me/app' })).toBe('/home/me/app/x.pub.json');
    expect(userPath('/abs/x.pub.json', { INIT_CWD: '/home/me/app' })).toBe('/abs/x.pub.json');
    expect(userPath('x', {})).toBe(`${process.cwd()}/x`);
  });
});
