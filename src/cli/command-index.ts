/**
 * The table `mongo-capsule --help` and the dispatcher read: every command's name, its one-line summary and the
 * group module that implements it. A group module (with its imports: the MongoDB driver, the crypto suites, the
 * keychain) is loaded only when one of its commands runs, so `--help`, `--version` and the light commands do not
 * pay for the others. test/cli/command-index.test.ts checks this table against the modules themselves.
 */
import type { Command } from './types.ts';

export type CommandGroup = 'crypto' | 'keys' | 'mongo' | 'provision';

/** Loads one group module and returns its commands by name. */
export const GROUP_LOADERS: Record<CommandGroup, () => Promise<Record<string, Command>>> = {
  crypto: async () => (await import('./crypto-commands.ts')).cryptoCommands,
  keys: async () => {
    const [{ keysCommands }, { withRecoveryCommands }, { withRecipientCommands }] = await Promise.all([
      import('./keys-commands.ts'),
      import('./backup-commands.ts'),
      import('./recipient-commands.ts'),
    ]);
    return withRecipientCommands(withRecoveryCommands(keysCommands));
  },
  mongo: async () => (await import('./mongo-commands.ts')).mongoCommands,
  provision: async () => (await import('./provision-command.ts')).provisionCommands,
};

export interface CommandEntry {
  group: CommandGroup;
  summary: string;
}

/** In the order `--help` lists them. */
export const COMMAND_INDEX: Readonly<Record<string, CommandEntry>> = {
  keygen: { group: 'crypto', summary: 'create an identity (KEM + ML-DSA-87 key pairs) as a public file and a secret file' },
  wrap: { group: 'crypto', summary: 'seal a 96-byte CSFLE master key into a capsule for a public identity' },
  unwrap: { group: 'crypto', summary: 'verify and open a capsule, writing the 96-byte CSFLE master key' },
  inspect: { group: 'crypto', summary: 'print the header of a capsule as JSON (never any secret)' },
  suites: { group: 'crypto', summary: 'list the KEM suites and whether each is available here' },
  init: { group: 'keys', summary: 'create an identity whose secret keys live in the OS keychain' },
  keys: { group: 'keys', summary: 'identities in the OS keychain: status, delete, rotate, migrate, backup, open-share, restore, grant, revoke' },
  seed: { group: 'mongo', summary: 'seal a new CSFLE master key for a public identity and store it in a cluster (once)' },
  endorse: { group: 'mongo', summary: 'vouch for a capsule seeded without the identity: replace it with a fresh CMK signed by its owner' },
  'rotate-cmk': { group: 'mongo', summary: 'rotate the CSFLE master key of a capsule (resumes an interrupted rotation, or abandons it)' },
  doctor: { group: 'mongo', summary: 'check what works and what is missing: server, auth, key vault, capsule, signature, CMK, identity, libmongocrypt' },
  provision: { group: 'provision', summary: 'provision a cluster from a JSON request on stdin (driven by `pulumi up`)' },
  deprovision: { group: 'provision', summary: 'remove a capsule that provision seeded, from a JSON request on stdin (driven by `pulumi destroy`)' },
};

/** The command `name`, loading its group module; undefined for a name that is not a command. */
export async function loadCommand(name: string): Promise<Command | undefined> {
  const entry = Object.hasOwn(COMMAND_INDEX, name) ? COMMAND_INDEX[name] : undefined;
  if (entry === undefined) return undefined;
  return (await GROUP_LOADERS[entry.group]())[name];
}
