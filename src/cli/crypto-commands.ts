/** CLI commands of the crypto core: keygen, wrap, unwrap, inspect, suites. Their flags are a contract. */
import {
  CMK_LENGTH,
  DEFAULT_SUITE,
  decodePublicIdentity,
  decodeSecretIdentity,
  describeCapsule,
  encodePublicIdentity,
  encodeSecretIdentity,
  generateIdentity,
  listSuites,
  parseCapsule,
  toPublicIdentity,
  unwrapKey,
  wipeSecretIdentity,
  wrapKey,
  type PublicIdentity,
  type SecretIdentity,
} from '../crypto/index.ts';
import { InvalidKeyLengthError, isMongoCapsuleError, SignatureInvalidError, SignerUnknownError, UsageError } from '../errors.ts';
import { unlink } from 'node:fs/promises';
import { readSecretFile } from '../keys/secret-source.ts';
import { parseCommandArgs, required } from './args.ts';
import { checkCreatable, INPUT_LIMITS, readInput, readTextFile, refuseExisting, writeOutput } from './files.ts';
import type { CliIO, Command } from './types.ts';

const INIT_HINT = 'create one with `mongo-capsule init --pub-out <file>` or `mongo-capsule keygen`';

/** A public identity file, decoded; a decoding error names the file. */
export async function loadPublicIdentityFile(path: string): Promise<PublicIdentity> {
  const text = await readTextFile(path, INIT_HINT, INPUT_LIMITS.publicIdentity, 'a public identity file');
  try {
    return decodePublicIdentity(text);
  } catch (e) {
    throw namingFile(e, path);
  }
}

/** The decoder's messages say what is wrong, not where: prefix the file (they never quote key material). */
export function namingFile(e: unknown, path: string): unknown {
  if (isMongoCapsuleError(e) && !e.message.includes(path)) e.message = `${path}: ${e.message}`;
  return e;
}

/**
 * A secret identity file (or stdin for `-`), under the same rule as the environment opt-in: not readable by
 * others, at most INPUT_LIMITS.secretIdentity bytes.
 */
export async function loadSecretIdentityFile(path: string, io: Pick<CliIO, 'stdin'>, label = '--secret'): Promise<SecretIdentity> {
  const bytes = path === '-' ? await readInput('-', io, INIT_HINT, INPUT_LIMITS.secretIdentity, 'a secret identity file') : await readSecretFile(path, label);
  try {
    return decodeSecretIdentity(bytes);
  } catch (e) {
    throw namingFile(e, path);
  } finally {
    bytes.fill(0);
  }
}

/**
 * Resolves the secret identity an `unwrap` or `wrap --sign` uses. Files are read directly; identities held
 * in the OS keychain are resolved by the keys module, registered here at start-up to keep this module free
 * of the keychain dependency.
 */
export type SecretIdentityResolver = (name: string, io: CliIO) => Promise<SecretIdentity>;
let keychainResolver: SecretIdentityResolver | undefined;
export function setKeychainResolver(resolver: SecretIdentityResolver): void {
  keychainResolver = resolver;
}

async function resolveSecret(command: string, values: { secret?: string; name?: string }, io: CliIO): Promise<SecretIdentity> {
  if (values.secret !== undefined && values.name !== undefined) {
    throw new UsageError(`${command}: give either --secret <file> or --name <identity>, not both`);
  }
  if (values.secret !== undefined) return loadSecretIdentityFile(values.secret, io, command === 'wrap' ? '--sign' : '--secret');
  if (keychainResolver === undefined) {
    throw new UsageError(`${command}: missing --secret <file>`, 'pass the secret identity file written by `mongo-capsule keygen`');
  }
  return keychainResolver(values.name ?? 'default', io);
}

const keygen: Command = {
  summary: 'create an identity (KEM + ML-DSA-87 key pairs) as a public file and a secret file',
  usage: `Usage: mongo-capsule keygen --pub-out <file> --secret-out <file> [--suite <id>] [--name <identity>]

Creates a new identity. The public file (<name>.pub.json) is safe to share and commit; the secret file is
written with mode 0600 and never overwrites an existing file. Prefer \`mongo-capsule init\`, which keeps the
secret keys in the OS keychain instead of a file.

  --suite <id>        KEM suite (default ${DEFAULT_SUITE}); see \`mongo-capsule suites\`
  --name <identity>   identity name stored in both files (default "default")
  --pub-out <file>    where to write the public identity
  --secret-out <file> where to write the secret identity (mode 0600, refused if it exists)`,
  async run(args, io) {
    const { values } = parseCommandArgs('keygen', args, {
      suite: { type: 'string' },
      name: { type: 'string' },
      'pub-out': { type: 'string' },
      'secret-out': { type: 'string' },
    });
    const pubOut = required('keygen', values, 'pub-out');
    const secretOut = required('keygen', values, 'secret-out');
    if (pubOut === secretOut) throw new UsageError('keygen: --pub-out and --secret-out must be different files');
    if (pubOut === '-' || secretOut === '-') throw new UsageError('keygen: --pub-out and --secret-out must be files');
    // Both targets are checked before anything is written: an existing file or a directory that refuses new
    // files must not leave one of the two behind.
    for (const target of [secretOut, pubOut]) {
      await refuseExisting(target);
      await checkCreatable(target);
    }
    const id = generateIdentity(values.suite ?? DEFAULT_SUITE, { name: values.name ?? 'default' });
    try {
      // The secret goes first: if it cannot be written, no orphan public file is left behind; if the public file
      // then fails after all (a race), the secret file this run created is removed again.
      await writeOutput(secretOut, encodeSecretIdentity(id), io, { mode: 0o600, secret: true });
      try {
        await writeOutput(pubOut, encodePublicIdentity(toPublicIdentity(id)), io);
      } catch (e) {
        await unlink(secretOut).catch(() => undefined);
        throw e;
      }
      io.stdout.write(`identity ${id.name}: suite ${id.suite}, kid ${id.kid}, signer kid ${id.signer.kid}\n`);
      io.stdout.write(`public: ${pubOut}\nsecret: ${secretOut} (mode 0600; keep it private)\n`);
      return 0;
    } finally {
      wipeSecretIdentity(id);
    }
  },
};

const wrap: Command = {
  summary: 'seal a 96-byte CSFLE master key into a capsule for a public identity',
  usage: `Usage: mongo-capsule wrap --pub <file> --in <file|-> --out <file|-> [--sign <secret file> | --sign-name <identity>]
                          [--capsule-name <name>] [--force]

  --pub <file>            recipient public identity (<name>.pub.json)
  --in <file|->           the 96-byte CSFLE local master key (raw bytes); - reads stdin
  --out <file|->          where to write the capsule; - writes stdout
  --sign <file>           sign with the ML-DSA-87 key of this secret identity file
  --sign-name <identity>  sign with an identity held in the OS keychain
  --capsule-name <name>   name stored in the capsule header (default "default")
  --force                 replace an existing --out file (atomically)`,
  async run(args, io) {
    const { values } = parseCommandArgs('wrap', args, {
      pub: { type: 'string' },
      in: { type: 'string' },
      out: { type: 'string' },
      sign: { type: 'string' },
      'sign-name': { type: 'string' },
      'capsule-name': { type: 'string' },
      force: { type: 'boolean' },
    });
    const recipient = await loadPublicIdentityFile(required('wrap', values, 'pub'));
    const input = required('wrap', values, 'in');
    const out = required('wrap', values, 'out');
    let signer: SecretIdentity | undefined;
    if (values.sign !== undefined || values['sign-name'] !== undefined) {
      signer = await resolveSecret('wrap', { secret: values.sign, name: values['sign-name'] }, io);
    }
    const cmk = await readInput(input, io, undefined, INPUT_LIMITS.keyFile, 'a CSFLE master key file');
    try {
      if (cmk.length !== CMK_LENGTH) {
        throw new InvalidKeyLengthError(`wrap: the input must be the ${CMK_LENGTH}-byte CSFLE local master key, got ${cmk.length} bytes`, {
          hint: 'pass the raw key bytes (not base64); a local KMS key for CSFLE is exactly 96 bytes',
        });
      }
      const capsule = wrapKey(cmk, recipient, { name: values['capsule-name'] ?? 'default', ...(signer ? { signer } : {}) });
      await writeOutput(out, capsule, io, { replace: values.force === true });
      if (out !== '-') io.stderr.write(`wrote capsule ${out} for kid ${recipient.kid}${signer ? `, signed by ${signer.signer.kid}` : ''}\n`);
      return 0;
    } finally {
      cmk.fill(0);
      if (signer) wipeSecretIdentity(signer);
    }
  },
};

const unwrap: Command = {
  summary: 'verify and open a capsule, writing the 96-byte CSFLE master key',
  usage: `Usage: mongo-capsule unwrap (--secret <file> | --name <identity>) --in <file|-> --out <file|->
                            [--trust <pub file>]... [--allow-unsigned]

The capsule must be signed by the recipient identity or by a --trust'ed one: anyone with the public file can
seal a CMK of their choosing, so unsigned capsules and unknown signers are refused.

  --secret <file>        secret identity file written by \`keygen\`
  --name <identity>      identity held in the OS keychain (default "default" when --secret is absent)
  --in <file|->          the capsule; - reads stdin
  --out <file|->         where to write the key (mode 0600, never to a terminal); - writes stdout
  --trust <pub file>     trust this identity's signing key too (repeatable); the recipient's own is trusted;
                         --verify <pub file> is the older spelling
  --allow-unsigned       UNSAFE: also open an unsigned capsule (warns); only for a capsule nobody else could write
  --require-signature    reject unsigned capsules (the default; kept for older scripts)`,
  async run(args, io) {
    const { values } = parseCommandArgs('unwrap', args, {
      secret: { type: 'string' },
      name: { type: 'string' },
      in: { type: 'string' },
      out: { type: 'string' },
      verify: { type: 'string', multiple: true },
      trust: { type: 'string', multiple: true },
      'require-signature': { type: 'boolean' },
      'allow-unsigned': { type: 'boolean' },
    });
    const input = required('unwrap', values, 'in');
    const out = required('unwrap', values, 'out');
    if (values['allow-unsigned'] && values['require-signature']) {
      throw new UsageError('unwrap: --allow-unsigned and --require-signature contradict each other', 'drop --allow-unsigned: signatures are required by default');
    }
    const signers = await Promise.all([...(values.trust ?? []), ...(values.verify ?? [])].map(loadPublicIdentityFile));
    const secret = await resolveSecret('unwrap', values, io);
    let cmk: Uint8Array | undefined;
    try {
      const capsule = await readInput(input, io, undefined, INPUT_LIMITS.capsule, 'a capsule');
      const { header } = parseCapsule(capsule);
      if (!header.signed) {
        if (!values['allow-unsigned']) {
          throw new SignatureInvalidError(`capsule ${JSON.stringify(header.name)} is not signed: anyone with the public identity can seal a CMK of their choosing, so it is refused`, {
            hint: 'if you seeded it from a machine without the identity, run `mongo-capsule endorse` (cluster) or re-wrap it with `wrap --sign-name`; if you made it yourself and nobody else could have written it, pass --allow-unsigned',
          });
        }
      }
      try {
        cmk = unwrapKey(capsule, secret, { signers });
      } catch (e) {
        if (e instanceof SignerUnknownError) {
          throw new SignerUnknownError(`capsule ${JSON.stringify(header.name)} is signed by key ${header.signerKid}, which is not trusted`, {
            hint: "pass the signer's public identity with `--trust <pub.json>` if you trust it; otherwise the capsule was replaced: restore it from a backup",
            cause: e,
          });
        }
        throw e;
      }
      if (!header.signed) io.stderr.write(`warning: capsule ${JSON.stringify(header.name)} is UNSIGNED; opened only because of --allow-unsigned\n`);
      await writeOutput(out, cmk, io, { mode: 0o600, secret: true });
      return 0;
    } finally {
      cmk?.fill(0);
      wipeSecretIdentity(secret);
    }
  },
};

const inspect: Command = {
  summary: 'print the header of a capsule as JSON (never any secret)',
  usage: `Usage: mongo-capsule inspect <file|->

Prints the capsule header (format version, suite, recipient kid, name, creation time, signer kid) as JSON.
Needs no key and reveals nothing secret; it does not verify the signature or open the capsule.`,
  async run(args, io) {
    const { positionals } = parseCommandArgs('inspect', args, {}, true);
    if (positionals.length !== 1) throw new UsageError('inspect: expected exactly one capsule file');
    const bytes = await readInput(positionals[0]!, io, undefined, INPUT_LIMITS.capsule, 'a capsule');
    io.stdout.write(`${JSON.stringify(describeCapsule(bytes), null, 2)}\n`);
    return 0;
  },
};

const suites: Command = {
  summary: 'list the KEM suites and whether each is available here',
  usage: 'Usage: mongo-capsule suites [--json]',
  async run(args, io) {
    const { values } = parseCommandArgs('suites', args, { json: { type: 'boolean' } });
    const rows = listSuites().map((s) => ({
      id: s.id,
      description: s.description,
      nistLevel: s.nistLevel,
      available: s.available(),
      default: s.id === DEFAULT_SUITE,
    }));
    if (values.json) {
      io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    } else {
      const w = Math.max(...rows.map((r) => r.id.length));
      for (const r of rows) {
        const flags = [r.default ? 'default' : '', r.available ? '' : 'not built: run `npm run build:native`'].filter(Boolean).join(', ');
        io.stdout.write(`${r.id.padEnd(w)}  ${r.description}${flags ? ` (${flags})` : ''}\n`);
      }
    }
    return 0;
  },
};

export const cryptoCommands: Record<string, Command> = { keygen, wrap, unwrap, inspect, suites };
