// The layering of DESIGN §2, checked on the import statements of every source file: dependencies point
// down only, and the crypto core imports nothing that talks to a database, a cloud or the keychain.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|mts|mjs)$/.test(name) && !name.endsWith('.d.ts') && !name.endsWith('.d.mts')) out.push(path);
  }
  return out;
}

function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g), ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)];
  return specs.map((m) => m[1]!);
}

/** Which top-level area a relative import lands in, seen from `file`. */
function area(file: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const target = relative(ROOT, join(ROOT, file, '..', spec));
  const parts = target.split('/');
  return parts[0] === 'src' && parts.length > 2 ? `src/${parts[1]}` : parts[0] === 'src' ? target : parts[0]!;
}

const LAYERS: Record<string, { forbiddenPackages: RegExp[]; forbiddenAreas: string[] }> = {
  'src/crypto': {
    forbiddenPackages: [/^mongodb/, /^@pulumi\//, /^@napi-rs\/keyring/, /^zx/, /^node:(fs|net|http|https|child_process)/],
    forbiddenAreas: ['src/keys', 'src/mongo', 'src/cli', 'src/cli.ts', 'infra', 'scripts'],
  },
  'src/keys': {
    forbiddenPackages: [/^mongodb/, /^@pulumi\//],
    forbiddenAreas: ['src/mongo', 'src/cli', 'src/cli.ts', 'infra', 'scripts'],
  },
  'src/mongo': {
    forbiddenPackages: [/^@pulumi\//],
    forbiddenAreas: ['src/cli', 'src/cli.ts', 'infra', 'scripts'],
  },
};

describe('layering (DESIGN §2)', () => {
  for (const [layer, rules] of Object.entries(LAYERS)) {
    it(`${layer} depends only on the layers below it`, () => {
      const files = sourceFiles(layer);
      expect(files.length).toBeGreaterThan(0);
      const violations: string[] = [];
      for (const file of files) {
        for (const spec of imports(file)) {
          // The one exception: the NTRU suite locates its native addon (a layer below crypto) on disk.
          if (file === 'src/crypto/ntru.ts' && spec === 'node:fs') continue;
          if (rules.forbiddenPackages.some((re) => re.test(spec))) violations.push(`${file} imports ${spec}`);
          const a = area(file, spec);
          if (a !== null && rules.forbiddenAreas.includes(a)) violations.push(`${file} imports ${spec} (${a})`);
        }
      }
      expect(violations).toEqual([]);
    });
  }

  it('the native addon is loaded only by the NTRU suite module', () => {
    const loaders = sourceFiles('src').filter((f) => /\.node['"]|createRequire/.test(readFileSync(join(ROOT, f), 'utf8')));
    expect(loaders.filter((f) => f.startsWith('src/crypto/') && f !== 'src/crypto/ntru.ts')).toEqual([]);
  });
});
