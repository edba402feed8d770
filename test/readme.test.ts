/**
 * README.md is what a new user follows, so its commands are checked against the code: every `npm run` script
 * exists and accepts the options shown, every `mongo-capsule` command exists and documents the options shown,
 * `.ci/run` runs exactly the README's install and test commands, and every configuration key is listed.
 * What the commands do is tested where each one lives (test/scripts, test/keys, test/mongo, test/infra).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli.ts';
import { CONFIG_KEYS } from '../infra/config.ts';
import { npmRun, ROOT } from './scripts/support/run.ts';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

/** Command lines of the README: shell code blocks and inline code, without trailing comments. */
function commandLines(): string[] {
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n'));
  const inline = [...readme.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);
  return [...blocks, ...inline]
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => /^(npm |npx --no-install mongo-capsule |node_modules\/\.bin\/mongo-capsule |mongo-capsule )/.test(l))
    // `…` stands for "any command" in prose, not for a command to check.
    .filter((l) => !/^\S+( --no-install)? mongo-capsule …$/.test(l) && !/^node_modules\/\.bin\/mongo-capsule …$/.test(l));
}

const lines = commandLines();
const flagsOf = (words: string[]) => words.filter((w) => /^--[a-z]/.test(w)).map((w) => w.replace(/=.*$/, ''));

async function cliUsage(command: string): Promise<string> {
  let out = '';
  const stdout = new PassThrough();
  stdout.on('data', (c) => (out += String(c)));
  const code = await main([command, '--help'], { stdout, stderr: new PassThrough(), stdin: new PassThrough(), env: {} });
  expect(code, `mongo-capsule ${command} --help`).toBe(0);
  return out;
}

describe('README.md', () => {
  it('shows one install and one test command, and .ci/run runs exactly those', () => {
    expect(lines).toContain('npm run setup');
    expect(lines).toContain('npm test');
    const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
    const setupAt = ci.search(/^npm run setup$/m);
    const testAt = ci.search(/^npm test$/m);
    expect(setupAt).toBeGreaterThan(-1);
    expect(testAt).toBeGreaterThan(setupAt);
  });

  it('every `npm run` script exists and accepts the options shown', async () => {
    const used = new Map<string, Set<string>>();
    for (const line of lines.filter((l) => l.startsWith('npm run '))) {
      const [, , script, ...rest] = line.split(/\s+/);
      expect(Object.keys(scripts), line).toContain(script);
      const flags = used.get(script!) ?? new Set<string>();
      for (const f of flagsOf(rest)) flags.add(f);
      used.set(script!, flags);
    }
    expect([...used.keys()]).toEqual(expect.arrayContaining(['setup', 'init', 'up', 'down', 'rs-setup', 'bench']));
    for (const [script, flags] of used) {
      if (flags.size === 0) continue;
      const help = await npmRun(script, ['--help']);
      expect(help.code, `npm run ${script} -- --help`).toBe(0);
      for (const f of flags) expect(help.stdout, `npm run ${script} ${f}`).toContain(f);
    }
  }, 60_000);

  it('every `mongo-capsule` command exists and documents the options shown', async () => {
    const cli = lines.filter((l) => !l.startsWith('npm ')).map((l) => l.replace(/^(npx --no-install |node_modules\/\.bin\/)/, '').split(/\s+/).slice(1));
    expect(cli.length).toBeGreaterThan(5);
    for (const [command, ...rest] of cli) {
      const usage = await cliUsage(command!);
      if (command === 'keys' && rest[0] !== undefined && !rest[0].startsWith('-')) expect(usage, `keys ${rest[0]}`).toMatch(new RegExp(`^  ${rest[0]} `, 'm'));
      for (const f of flagsOf(rest)) expect(usage, `mongo-capsule ${command} ${f}`).toContain(f);
    }
  });

  it('never shows a bare `npx mongo-capsule` to run (it could fetch a stranger\'s package): README and docs', () => {
    for (const file of ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      // Lines inside fenced blocks: a fence line toggles, so prose between two blocks never counts as code.
      let inside = false;
      const blocks = text.split('\n').filter((l) => (l.startsWith('```') ? ((inside = !inside), false) : inside));
      expect(blocks.filter((l) => /\bnpx\s+(?!--no-install\b)(-\S+\s+)*mongo-capsule\b/.test(l)), file).toEqual([]);
    }
    expect(readme).toMatch(/Security model[\s\S]*not ours yet[\s\S]*npx --no-install mongo-capsule/);
  });

  it('lists every stack configuration key, and its links lead to files that exist', () => {
    for (const key of CONFIG_KEYS) expect(readme, key).toContain(`\`${key}\``);
    for (const [, target] of readme.matchAll(/\]\(((?:docs|src|infra|scripts)\/[^)#]+)\)/g)) expect(existsSync(join(ROOT, target!)), target).toBe(true);
  });
});
