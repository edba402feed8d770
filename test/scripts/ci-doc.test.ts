/**
 * docs/ci.md: the workflow is valid YAML, every `npm run` it uses exists, and the e2e and cleanup commands it runs
 * are accepted as written (checked with --dry-run, which needs neither Docker nor Pulumi).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { YAML } from 'zx';
import { describe, expect, it } from 'vitest';
import { npmRun, ROOT } from './support/run.ts';

const doc = readFileSync(join(ROOT, 'docs', 'ci.md'), 'utf8');
const workflow = YAML.parse(/```yaml\n([\s\S]*?)```/.exec(doc)![1]!) as {
  on: unknown;
  jobs: Record<string, { steps: Array<{ run?: string; uses?: string; if?: string }>; env?: Record<string, string> }>;
};
const scripts = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
const runs = Object.values(workflow.jobs).flatMap((j) => j.steps.flatMap((s) => (s.run ?? '').split('\n'))).map((l) => l.trim());

describe('docs/ci.md workflow', () => {
  it('runs npm test on every push and e2e after it, on a runner with Docker', () => {
    expect(workflow.on).toHaveProperty('push');
    expect(runs).toContain('npm run setup');
    expect(runs).toContain('npm test');
    expect(workflow.jobs.e2e!.steps.some((s) => s.uses?.startsWith('pulumi/actions@'))).toBe(true);
    expect(workflow.jobs.e2e!.steps.some((s) => s.if === 'always()' && /npm run down/.test(s.run ?? ''))).toBe(true);
  });

  it('every `npm run <script>` exists in package.json', () => {
    const used = [...doc.matchAll(/npm run ([a-z0-9:-]+)/g)].map((m) => m[1]!);
    expect(used.length).toBeGreaterThan(3);
    for (const s of used) expect(scripts, s).toContain(s);
  });

  it('the e2e and cleanup commands are accepted as written', async () => {
    const stack = 'e2e-123456-1';
    for (const line of runs.filter((l) => /^npm run (e2e|down) -- /.test(l))) {
      const [, script, rest] = /^npm run (e2e|down) -- (.*)$/.exec(line)!;
      const args = rest!.replace(/"\$E2E_STACK"/g, stack).split(/\s+/);
      const r = await npmRun(script!, [...args, '--dry-run']);
      expect(r.code, `${line}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toContain(stack);
    }
  });
});
