/**
 * `keys backup` and `keys restore`: recovery shares of a keychain identity (src/keys/recovery-backup.ts).
 * They are subcommands of `keys`; `withRecoveryCommands` adds them to the `keys` command of keys-commands.ts.
 */
import { existsSync } from 'node:fs';
import { decodePublicIdentity } from '../crypto/index.ts';
import { isMongoCapsuleError, RecoveryShareFormatError, UsageError } from '../errors.ts';
import { KEYCHAIN_SERVICE, OsKeychain, type Keychain } from '../keys/keychain.ts';
import { backupIdentity, restoreIdentity, type PublicFile } from '../keys/recovery-backup.ts';
import { decodePrintableShares, decodeShareInput, MAX_SHARES, MIN_SHARES, wipeShares, type RecoveryShare } from '../keys/recovery-shares.ts';
import { resolveKeychain } from '../keys/secret-source.ts';
import { parseCommandArgs, required } from './args.ts';
import { readInput } from './files.ts';
import { KEYCHAIN_SERVICE_ENV } from './keys-commands.ts';
import type { CliIO, Command } from './types.ts';

export const RECOVERY_USAGE = `
  backup  --name <identity> --shares <n> --threshold <k> --out-dir <dir> [--pub <file>] [--printable]
          split the identity into n recovery share files (mode 0600) of which any k rebuild it
          (${MIN_SHARES} ≤ k ≤ n ≤ ${MAX_SHARES}); the identity is first checked against its public file (--pub, default
          <identity>.pub.json when present); refused if any share file exists; --printable also writes each share
          as text to type back (ML-KEM and X-Wing identities); hand each share to a different custodian
  restore --name <identity> (--share <file>... | --stdin) [--pub <file>] [--capsule <file>] [--allow-stale]
          rebuild the identity from at least k shares of one backup (files, or printed shares typed on stdin),
          check it against its kid, the public file (default <identity>.pub.json when present) and a capsule,
          and store it in the keychain; refused when the keychain holds another key under the name, and for a
          backup of a rotated-out key unless --allow-stale`;

async function keychainFor(io: CliIO): Promise<Keychain> {
  return resolveKeychain({ env: io.env, warn: (m) => io.stderr.write(`${m}\n`), keychain: new OsKeychain({ service: io.env[KEYCHAIN_SERVICE_ENV] || KEYCHAIN_SERVICE }) });
}

function count(command: string, flag: string, value: string): number {
  if (!/^\d{1,2}$/.test(value) || Number(value) < MIN_SHARES || Number(value) > MAX_SHARES) {
    throw new UsageError(`${command}: --${flag} must be a whole number from ${MIN_SHARES} to ${MAX_SHARES}`, 'for example --shares 5 --threshold 3: five custodians, any three restore');
  }
  return Number(value);
}

/** `--pub <file>`, else `<name>.pub.json` when it exists; undefined when neither. */
async function publicFile(command: string, given: string | undefined, name: string, io: CliIO): Promise<PublicFile | undefined> {
  const path = given ?? (existsSync(`${name}.pub.json`) ? `${name}.pub.json` : undefined);
  if (path === undefined) return undefined;
  const identity = decodePublicIdentity(await readInput(path, io));
  if (identity.name !== name) io.stderr.write(`warning: ${command}: ${path} is the public file of identity ${identity.name}; checking its key against ${name} anyway\n`);
  return { path, identity };
}

async function backup(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys backup', args, {
    name: { type: 'string' },
    shares: { type: 'string' },
    threshold: { type: 'string' },
    'out-dir': { type: 'string' },
    pub: { type: 'string' },
    printable: { type: 'boolean' },
  });
  const name = required('keys backup', values, 'name');
  const shares = count('keys backup', 'shares', required('keys backup', values, 'shares'));
  const threshold = count('keys backup', 'threshold', required('keys backup', values, 'threshold'));
  if (threshold > shares) throw new UsageError(`keys backup: --threshold ${threshold} is larger than --shares ${shares}`, 'the threshold is how many of the shares restore the identity');
  const outDir = required('keys backup', values, 'out-dir');
  const pub = await publicFile('keys backup', values.pub, name, io);
  const result = await backupIdentity({
    keychain: await keychainFor(io),
    name,
    shares,
    threshold,
    outDir,
    printable: values.printable === true,
    env: io.env,
    ...(pub ? { publicFile: pub } : {}),
  });
  const b = result.backup;
  if (result.resumed) io.stdout.write('finished a backup that was interrupted\n');
  io.stdout.write(`checked: ${result.checked}\n`);
  io.stdout.write(`backup ${b.backupId} of identity ${b.name} (${b.suite}, kid ${b.kid}): ${b.shares} shares, any ${b.threshold} restore it\n`);
  for (const f of result.files) io.stdout.write(`  ${f}\n`);
  io.stdout.write(`give each share to a different custodian and delete it here; fewer than ${b.threshold} shares reveal nothing; after \`keys rotate\` make a new backup (this one stays a backup of key ${b.kid})\n`);
  return 0;
}

async function restore(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys restore', args, {
    name: { type: 'string' },
    share: { type: 'string', multiple: true },
    stdin: { type: 'boolean' },
    pub: { type: 'string' },
    capsule: { type: 'string' },
    'allow-stale': { type: 'boolean' },
  });
  const name = required('keys restore', values, 'name');
  const files = values.share ?? [];
  if (files.length === 0 && !values.stdin) throw new UsageError('keys restore: missing --share <file> (one per share) or --stdin', 'pass at least as many shares as the backup\'s threshold');
  if (files.includes('-')) throw new UsageError('keys restore: use --stdin for shares typed on standard input');
  const shares: RecoveryShare[] = [];
  try {
    for (const f of files) shares.push(...decodeShareInput(await readInput(f, io), f));
    if (values.stdin) {
      if ((io.stdin as NodeJS.ReadStream).isTTY) io.stderr.write('type or paste the printed shares (each from its line 01), then Ctrl-D:\n');
      const typed = new TextDecoder().decode(await readInput('-', io));
      try {
        shares.push(...decodePrintableShares(typed, 'stdin'));
      } catch (e) {
        if (e instanceof RecoveryShareFormatError && typed.trimStart().startsWith('{')) throw new UsageError('keys restore: --stdin takes printed shares; pass share files with --share <file>');
        throw e;
      }
    }
    const pub = await publicFile('keys restore', values.pub, name, io);
    const capsule = values.capsule === undefined ? undefined : { path: values.capsule, bytes: await readInput(values.capsule, io) };
    const result = await restoreIdentity({
      keychain: await keychainFor(io),
      name,
      shares,
      env: io.env,
      allowStale: values['allow-stale'] === true,
      ...(pub ? { publicFile: pub } : {}),
      ...(capsule ? { capsule } : {}),
    });
    for (const c of result.checked) io.stdout.write(`checked: ${c}\n`);
    if (pub === undefined && capsule === undefined) io.stdout.write('not checked against a public file or a capsule (pass --pub or --capsule to make sure this is the current key)\n');
    const p = result.publicIdentity;
    io.stdout.write(`${result.alreadyPresent ? 'already present' : 'stored in the keychain'}: identity ${p.name}: suite ${p.suite}, kid ${p.kid}, signer kid ${p.signer.kid}\n`);
    return 0;
  } catch (e) {
    if (isMongoCapsuleError(e) && 'source' in e && typeof e.source === 'string') io.stderr.write(`share: ${e.source}\n`);
    throw e;
  } finally {
    wipeShares(shares);
  }
}

const RECOVERY_SUBCOMMANDS: Record<string, (args: string[], io: CliIO) => Promise<number>> = { backup, restore };

/** The `keys` command with `backup` and `restore` added to its subcommands and its usage. */
export function withRecoveryCommands(commands: Record<string, Command>): Record<string, Command> {
  const keys = commands.keys!;
  return {
    ...commands,
    keys: {
      summary: keys.summary.replace(/, migrate$/, ', migrate, backup, restore'),
      usage: keys.usage.replace(/\n\nEnvironment:/, `${RECOVERY_USAGE}\n\nEnvironment:`),
      run(args, io) {
        const sub = RECOVERY_SUBCOMMANDS[args[0] ?? ''];
        return sub === undefined ? keys.run(args, io) : sub(args.slice(1), io);
      },
    },
  };
}
