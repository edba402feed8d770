/** Where a command's connection string comes from, and the warning when a password is put on the command line. */
import { describe, expect, it } from 'vitest';
import { millisFrom, uriFrom } from '../../src/cli/args.ts';
import { UsageError } from '../../src/errors.ts';
import { captureCli } from '../support/cli.ts';


describe('uriFrom', () => {
  it('takes --uri first, then MONGODB_URI, and refuses neither with a usage error', () => {
    expect(uriFrom('seed', { uri: 'mongodb://a:27017' }, captureCli({ MONGODB_URI: 'mongodb://b:27017' }).io)).toBe('mongodb://a:27017');
    expect(uriFrom('seed', {}, captureCli({ MONGODB_URI: 'mongodb://b:27017' }).io)).toBe('mongodb://b:27017');
    expect(() => uriFrom('seed', {}, captureCli({}).io)).toThrow(UsageError);
  });

  it('warns, without echoing it, when --uri carries a password; never for MONGODB_URI', () => {
    const withPassword = captureCli({});
    uriFrom('seed', { uri: 'mongodb://root:s3cret-pw@db:27017/?authSource=admin' }, withPassword.io);
    expect(withPassword.err()).toMatch(/^warning: seed: the --uri holds a password/);
    expect(withPassword.err()).not.toContain('s3cret-pw');
    const fromEnv = captureCli({ MONGODB_URI: 'mongodb://root:s3cret-pw@db:27017/' });
    uriFrom('seed', {}, fromEnv.io);
    const userOnly = captureCli({});
    uriFrom('seed', { uri: 'mongodb+srv://x509user@cluster.example.net/' }, userOnly.io);
    expect(fromEnv.err() + userOnly.err()).toBe('');
  });
});

describe('millisFrom (--client-wait-ms of rotate-cmk and keys revoke)', () => {
  it('takes a whole number of milliseconds; absent is undefined; anything else is a usage error naming the option', () => {
    expect(millisFrom('rotate-cmk', { 'client-wait-ms': '0' }, 'client-wait-ms')).toBe(0);
    expect(millisFrom('rotate-cmk', { 'client-wait-ms': '15000' }, 'client-wait-ms')).toBe(15000);
    expect(millisFrom('rotate-cmk', {}, 'client-wait-ms')).toBeUndefined();
    for (const bad of ['-1', '1.5', '1e3', '', ' 5', '99999999999999999999']) {
      expect(() => millisFrom('keys revoke', { 'client-wait-ms': bad }, 'client-wait-ms')).toThrow(
        new UsageError(`keys revoke: --client-wait-ms must be a whole number of milliseconds, not ${JSON.stringify(bad)}`),
      );
    }
  });
});
