/**
 * `keys backup` and `keys restore`: recovery shares of a keychain identity (src/keys/recovery-backup.ts).
 * They are subcommands of `keys`; `withRecoveryCommands` adds them to the `keys` command of keys-commands.ts.
 */
import { existsSync } from 'node:fs';
import { decodePublicIdentity } from '../crypto/index.ts';
import { isMongoCapsuleError, RecoveryShareFormatError, UsageError } from '../errors.ts';
import { KEYCHAIN_SERVICE, OsKeychain, type Keychain } from '../keys/keychain.ts';
import { backupIdentity, openSealedShareFromKeychain, readSealedShare, restoreIdentity, type PublicFile } from '../keys/recovery-backup.ts';
import { decodePrintableShares, decodeShareInput, encodeShareFile, MAX_SHARES, MIN_SHARES, wipeShares, type RecoveryShare } from '../keys/recovery-shares.ts';
import { writeFileAtomic } from '../files.ts';
import { resolveKeychain } from '../keys/secret-source.ts';
import { parseCommandArgs, required } from './args.ts';
import { readInput } from './files.ts';
import { KEYCHAIN_SERVICE_ENV } from './keys-commands.ts';
import type { CliIO, Command } from './types.ts';

export const RECOVERY_USAGE = `
  backup  --name <identity> --shares <n> --threshold <k> --out-dir <dir> [--pub <file>] [--printable]
          [--custodian <pub file>]...
          split the identity into n recovery share files (mode 0600) of which any k rebuild it
          (${MIN_SHARES} ≤ k ≤ n ≤ ${MAX_SHARES}); the identity is first checked against its public file (--pub, default
          <identity>.pub.json when present); refused if any share file exists; --printable also writes each share
          as text to type back (ML-KEM and X-Wing identities); hand each share to a different custodian;
          --custodian (exactly one per share, in share order) seals share i for custodian i's public identity
          and signs it, so that it can be mailed: only that custodian opens it
  open-share --share <sealed file> --identity <custodian> --out <file> [--pub <file>]
          a custodian opens the share sealed for them with their keychain identity and writes the plain share
          (mode 0600, refused if it exists) to hand to whoever restores; --pub checks the signer against the
          backed-up identity's public file
  restore --name <identity> (--share <file>... | --stdin) [--pub <file>] [--capsule <file>] [--allow-stale]
          rebuild the identity from at least k shares of one backup (files, or printed shares typed on stdin),
          check it against its kid, the public file (default <identity>.pub.json when present) and a capsule,
          and store it in the keychain; refused when the keychain holds another key under the name, and for a
          backup of a rotated-out key unless --allow-stale; sealed shares whose custodian identity is in this
          keychain are opened directly, the others must be opened by their custodian (open-share) first`;

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
    custodian: { type: 'string', multiple: true },
  });
  const name = required('keys backup', values, 'name');
  const shares = count('keys backup', 'shares', required('keys backup', values, 'shares'));
  const threshold = count('keys backup', 'threshold', required('keys backup', values, 'threshold'));
  if (threshold > shares) throw new UsageError(`keys backup: --threshold ${threshold} is larger than --shares ${shares}`, 'the threshold is how many of the shares restore the identity');
  const outDir = required('keys backup', values, 'out-dir');
  const custodianPaths = values.custodian ?? [];
  if (custodianPaths.length > 0 && custodianPaths.length !== shares) {
    throw new UsageError(
      `keys backup: ${custodianPaths.length} --custodian file${custodianPaths.length === 1 ? '' : 's'} for ${shares} shares; nothing was written`,
      'pass --custodian <pub file> exactly once per share, in share-index order (the first custodian gets share 1)',
    );
  }
  const custodians: PublicFile[] = [];
  for (const path of custodianPaths) custodians.push({ path, identity: decodePublicIdentity(await readInput(path, io)) });
  const pub = await publicFile('keys backup', values.pub, name, io);
  const result = await backupIdentity({
    ...(custodians.length > 0 ? { custodians } : {}),
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
  result.files.forEach((f, i) => io.stdout.write(`  ${f}${b.custodians?.[i] ? ` (sealed for custodian ${b.custodians[i]!.name}, key ${b.custodians[i]!.kid})` : ''}\n`));
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
    let keychain: Keychain | undefined;
    for (const f of files) {
      const bytes = await readInput(f, io);
      const sealed = readSealedShare(bytes, f);
      if (sealed === undefined) {
        shares.push(...decodeShareInput(bytes, f));
        continue;
      }
      keychain ??= await keychainFor(io);
      shares.push(await openSealedShareFromKeychain(keychain, sealed));
      io.stdout.write(`opened: ${f}: share ${sealed.index} of ${sealed.shares}, sealed for custodian ${sealed.custodian.name} (key ${sealed.custodian.kid}), held in this keychain\n`);
    }
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

async function openShare(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandArgs('keys open-share', args, { share: { type: 'string' }, identity: { type: 'string' }, out: { type: 'string' }, pub: { type: 'string' } });
  const file = required('keys open-share', values, 'share');
  const identity = required('keys open-share', values, 'identity');
  const out = required('keys open-share', values, 'out');
  const bytes = await readInput(file, io);
  const sealed = readSealedShare(bytes, file);
  if (sealed === undefined) {
    decodeShareInput(bytes, file).forEach((s) => s.share.fill(0));
    throw new UsageError(`keys open-share: ${file} is a plain share (not sealed for a custodian): there is nothing to open`, 'pass it to `mongo-capsule keys restore --share` as it is');
  }
  if (values.pub !== undefined) {
    const owner = decodePublicIdentity(await readInput(values.pub, io));
    if (owner.signer.kid !== sealed.signerKid || owner.kid !== sealed.kid) {
      throw new UsageError(`keys open-share: ${file} is signed by key ${sealed.signerKid} for key ${sealed.kid}, but ${values.pub} is key ${owner.kid} (signer ${owner.signer.kid}); nothing was written`, 'check with the owner of the identity which public file is current');
    }
  }
  const share = await openSealedShareFromKeychain(await keychainFor(io), sealed, identity);
  try {
    await writeFileAtomic(out, encodeShareFile(share), { mode: 0o600 });
  } finally {
    share.share.fill(0);
  }
  io.stdout.write(`opened share ${sealed.index} of ${sealed.shares} of backup ${sealed.backupId} (identity ${sealed.name}, key ${sealed.kid}; signature by ${sealed.signerKid} verified${values.pub ? ` against ${values.pub}` : ''}) into ${out}\n`);
  io.stdout.write(`hand ${out} to whoever restores over a channel you trust (it is a secret share now), then delete it\n`);
  return 0;
}

const RECOVERY_SUBCOMMANDS: Record<string, (args: string[], io: CliIO) => Promise<number>> = { backup, restore, 'open-share': openShare };

/** The `keys` command with `backup` and `restore` added to its subcommands and its usage. */
export function withRecoveryCommands(commands: Record<string, Command>): Record<string, Command> {
  const keys = commands.keys!;
  return {
    ...commands,
    keys: {
      summary: keys.summary.replace(/, migrate$/, ', migrate, backup, open-share, restore'),
      usage: keys.usage.replace(/\n\nEnvironment:/, `${RECOVERY_USAGE}\n\nEnvironment:`),
      run(args, io) {
        const sub = RECOVERY_SUBCOMMANDS[args[0] ?? ''];
        return sub === undefined ? keys.run(args, io) : sub(args.slice(1), io);
      },
    },
  };
}
