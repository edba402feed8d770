import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CsfleUnavailableError } from '../../src/errors.ts';
import { csfleInstallHint } from '../../src/mongo/csfle.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('the CSFLE_UNAVAILABLE hint fits where the code runs', () => {
  const temp = mkdtempSync(join(tmpdir(), 'mongo-capsule-csfle-hint-'));
  afterAll(() => rmSync(temp, { recursive: true, force: true }));

  it('in a checkout it names `npm run setup`', () => {
    expect(csfleInstallHint(ROOT)).toMatch(/`npm run setup` in the mongo-capsule checkout/);
  });

  it('in an installed package (no scripts/) it names the npm install of the tested addon version, never npm run setup', () => {
    const installed = join(temp, 'node_modules', 'mongo-capsule');
    mkdirSync(installed, { recursive: true });
    writeFileSync(join(installed, 'package.json'), JSON.stringify({ name: 'mongo-capsule', optionalDependencies: { 'mongodb-client-encryption': '7.2.1' } }));
    const hint = csfleInstallHint(installed);
    expect(hint).toMatch(/`npm install mongodb-client-encryption@7\.2\.1` in the application/);
    expect(hint).not.toMatch(/npm run setup/);
  });

  it('without a readable package.json it still names the package', () => {
    const bare = join(temp, 'bare');
    mkdirSync(bare);
    expect(csfleInstallHint(bare)).toMatch(/`npm install mongodb-client-encryption` in the application/);
  });

  it('an explicit hint passed to the error wins over its default', () => {
    const e = new CsfleUnavailableError('x needs CSFLE', { hint: csfleInstallHint(join(temp, 'bare')) });
    expect(e.code).toBe('CSFLE_UNAVAILABLE');
    expect(e.hint).toMatch(/npm install mongodb-client-encryption/);
  });
});
